"""Policy-update latency: from "update done" in the learner to every actor acting on the new version.

    python -m bench.policy_update_latency [--updates 50] [--full-updates 20] [--subscribers 1 2]

The paper-size AGaLiTe (``paper_config("agalite")``: L4, d_model 128, H4 x 64, eta 4, r 2) on T-Maze spaces, over
loopback TCP with real processes, as in training:

publisher (this process, the learner's side): perturbs the weights (not timed: stands for the optimiser step), then
    stamps ``t_done`` = weights ready, runs ``weights_for`` (stamp), ``encode(ModelUpdate)`` (stamp) and sends it
    on a PUB socket (stamp).
subscribers (N torch-free processes, each an actor's policy side with 8 envs): block on SUB, stamp on receipt,
    ``decode`` (stamp), ``StepFunction.with_weights`` (stamp), ``Policy.swap`` + one ``Policy.act`` step (stamp),
    and report the stamps back on a PUSH socket. All stamps are ``time.time()`` on the same machine clock.

Latency of an update = the last subscriber's first-step stamp minus ``t_done``; median and p90 over the updates,
for N = 1 and N = 2; target median < 100 ms. Broken down into weights_for, encode, send, transfer + decode,
with_weights, swap + first step. The same with the full re-export path (``export_step_function`` of a copy of the
model, ``kind="full"`` update, ``StepFunction.from_bytes`` on the actor) for comparison. Once, the weights-only
session an actor built is checked against a full re-export of the same weights (same inputs, max abs difference).
Writes ``policy_update_latency.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.report import write_with_notes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NUM_ENVS = 8


# ---- subscriber (torch-free child process) --------------------------------------------------------------------------
def subscriber(policy_path: str, pub_port: int, report_port: int, index: int) -> None:
    import numpy as np
    import zmq

    from policy.runtime import Policy, StepFunction
    from protocol import ModelUpdate, decode
    from protocol.sockets import connect_policies

    assert "torch" not in sys.modules
    fn = StepFunction.from_file(policy_path, intra_op_threads=1)
    meta = fn.metadata
    policy = Policy(fn, NUM_ENVS)
    rng = np.random.default_rng(index)
    obs = rng.random((NUM_ENVS, *meta.obs_shape)).astype(meta.obs_dtype)
    reset = np.ones(NUM_ENVS, dtype=bool)
    policy.act(obs, reset, rng)  # warm the session
    reset[:] = False
    check_obs = np.random.default_rng(99).random((2, *meta.obs_shape)).astype(meta.obs_dtype)
    check_reset = np.array([True, False])
    ctx = zmq.Context()
    sub = connect_policies(ctx, f"tcp://127.0.0.1:{pub_port}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{report_port}")
    push.send_json({"ready": index})
    while True:
        raw = sub.recv()
        t_recv = time.time()
        msg = decode(raw)
        t_decoded = time.time()
        if not isinstance(msg, ModelUpdate):  # Bye: the benchmark is over
            break
        if msg.weights is not None:  # kind "weights"
            new_fn = policy.step_function.with_weights(msg.weights)
        else:
            assert msg.onnx is not None  # kind "full": validated on decode
            new_fn = StepFunction.from_bytes(msg.onnx, intra_op_threads=1)
        t_built = time.time()
        policy.swap(new_fn)
        policy.act(obs, reset, rng)
        t_step = time.time()
        # Not timed: what this session computes on fixed inputs from a fresh state, for the equality check.
        state = new_fn.initial_state(2)
        logits, value, _ = new_fn.run(check_obs, check_reset, state)
        push.send_json(
            {
                "index": index,
                "version": msg.version,
                "kind": msg.kind,
                "t_recv": t_recv,
                "t_decoded": t_decoded,
                "t_built": t_built,
                "t_step": t_step,
                "bytes": len(raw),
                "check_logits": logits.tolist(),
                "check_value": value.tolist(),
            }
        )
    push.send_json({"bye": index})
    sub.close(linger=0)
    push.close(linger=1000)
    ctx.term()


# ---- publisher ------------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run_case(
    model: Any,
    exported: Any,
    spaces: tuple[Any, Any],
    policy_path: Path,
    n_subs: int,
    mode: str,
    updates: int,
    version0: int,
) -> tuple[dict[str, Any], int, dict[str, Any] | None]:
    import copy

    import torch
    import zmq

    from export import export_step_function, weights_for
    from protocol import Bye, ModelUpdate, encode
    from protocol.sockets import bind_policies, bound_port

    ctx = zmq.Context()
    pub = bind_policies(ctx, 0, "127.0.0.1")
    pull = ctx.socket(zmq.PULL)
    report_port = pull.bind_to_random_port("tcp://127.0.0.1")
    pub_port = bound_port(pub)
    code = (
        "import sys; from bench.policy_update_latency import subscriber as f; "
        "f(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(policy_path), str(pub_port), str(report_port), str(i)], cwd=ROOT
        )
        for i in range(n_subs)
    ]
    rows: list[dict[str, float]] = []
    last_reports: list[dict[str, Any]] = []
    version = version0
    load_before = os.getloadavg()
    try:
        ready = 0
        while ready < n_subs:
            if not pull.poll(120_000):
                raise RuntimeError("subscribers did not start")
            ready += "ready" in cast(dict[str, Any], pull.recv_json())
        time.sleep(1.0)  # let the subscriptions reach the publisher (PUB drops messages for unknown peers)
        gen = torch.Generator().manual_seed(version0)
        for _ in range(updates):
            with torch.no_grad():  # stands for the optimiser step; not timed
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
            version += 1
            t_done = time.time()
            if mode == "weights":
                weights = weights_for(model, exported)
                t_prep = time.time()
                update = ModelUpdate(
                    version=version,
                    kind="weights",
                    onnx=None,
                    weights=weights,
                    graph_sha256=exported.graph_sha256,
                    metadata={},
                )
            else:
                full = export_step_function(
                    copy.deepcopy(model), policy_version=version, observation_space=spaces[0], action_space=spaces[1]
                )
                t_prep = time.time()
                update = ModelUpdate(
                    version=version,
                    kind="full",
                    onnx=full.onnx_bytes,
                    weights=None,
                    graph_sha256=full.sha256,
                    metadata=full.metadata,
                )
            data = encode(update)
            t_encoded = time.time()
            pub.send(data, copy=False)
            t_sent = time.time()
            reports: list[dict[str, Any]] = []
            while len(reports) < n_subs:
                if not pull.poll(60_000):
                    raise RuntimeError(f"no report for version {version}")
                r = cast(dict[str, Any], pull.recv_json())  # the subscribers' JSON objects
                if r.get("version") == version:
                    reports.append(r)
            last = max(reports, key=lambda r: r["t_step"])
            rows.append(
                {
                    "latency_ms": 1000 * (last["t_step"] - t_done),
                    "prepare_ms": 1000 * (t_prep - t_done),
                    "encode_ms": 1000 * (t_encoded - t_prep),
                    "send_ms": 1000 * (t_sent - t_encoded),
                    "transfer_decode_ms": 1000 * statistics.mean(r["t_decoded"] - t_sent for r in reports),
                    "transfer_ms": 1000 * statistics.mean(r["t_recv"] - t_sent for r in reports),
                    "build_ms": 1000 * statistics.mean(r["t_built"] - r["t_decoded"] for r in reports),
                    "swap_step_ms": 1000 * statistics.mean(r["t_step"] - r["t_built"] for r in reports),
                    "subscriber_spread_ms": 1000
                    * (max(r["t_step"] for r in reports) - min(r["t_step"] for r in reports)),
                    "bytes": reports[0]["bytes"],
                }
            )
            last_reports = reports
            time.sleep(0.15)  # let the subscribers go idle again: updates never overlap
        pub.send(encode(Bye(actor_id="bench", run_id="bench", reason="done")))
    finally:
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        pub.close(linger=0)
        pull.close(linger=0)
        ctx.term()
    load_after = os.getloadavg()
    summary: dict[str, Any] = {
        "mode": mode,
        "subscribers": n_subs,
        "updates": len(rows),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    for key in rows[0]:
        vals = [r[key] for r in rows]
        summary[key] = {
            "median": statistics.median(vals),
            "p90": percentile(vals, 0.9),
            "min": min(vals),
            "max": max(vals),
        }
    summary["rows"] = rows
    return summary, version, (last_reports[0] if last_reports else None)


def equality_check(model: Any, spaces: tuple[Any, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The weights-only session a subscriber built vs a full re-export of the same weights, on the same inputs."""
    import copy

    import numpy as np

    from export import export_step_function
    from policy.runtime import StepFunction

    full = export_step_function(
        copy.deepcopy(model), policy_version=report["version"], observation_space=spaces[0], action_space=spaces[1]
    )
    fn = StepFunction.from_bytes(full.onnx_bytes)
    meta = fn.metadata
    check_obs = np.random.default_rng(99).random((2, *meta.obs_shape)).astype(meta.obs_dtype)
    logits, value, _ = fn.run(check_obs, np.array([True, False]), fn.initial_state(2))
    d_logits = float(np.abs(np.asarray(report["check_logits"], dtype=np.float32) - logits).max())
    d_value = float(np.abs(np.asarray(report["check_value"], dtype=np.float32) - value).max())
    return {
        "version": report["version"],
        "max_abs_diff_logits": d_logits,
        "max_abs_diff_value": d_value,
        "equal": d_logits <= 1e-6 and d_value <= 1e-6,
    }


def with_weights_parts(exported: Any, model: Any, reps: int = 15) -> dict[str, Any]:
    """In this process: what ``StepFunction.with_weights`` spends on patching the bytes vs building the session."""
    from export import weights_for
    from policy.runtime import StepFunction
    from policy.weights import replace_initializers

    base = StepFunction.from_bytes(exported.onnx_bytes)
    weights = weights_for(model, exported)
    parts: dict[str, list[float]] = {"replace_initializers_ms": [], "session_from_bytes_ms": [], "with_weights_ms": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        patched = replace_initializers(exported.onnx_bytes, weights)
        t1 = time.perf_counter()
        StepFunction.from_bytes(patched)
        t2 = time.perf_counter()
        base.with_weights(weights)
        t3 = time.perf_counter()
        parts["replace_initializers_ms"].append(1000 * (t1 - t0))
        parts["session_from_bytes_ms"].append(1000 * (t2 - t1))
        parts["with_weights_ms"].append(1000 * (t3 - t2))
    from google.protobuf.internal import api_implementation

    return {
        **{k: statistics.median(v) for k, v in parts.items()},
        "reps": reps,
        "protobuf_implementation": api_implementation.Type(),
    }


#: The per-update parts of the latency, in the report's column order.
PART_KEYS = (
    "prepare_ms",
    "encode_ms",
    "send_ms",
    "transfer_decode_ms",
    "build_ms",
    "swap_step_ms",
    "subscriber_spread_ms",
)


def write_markdown(res: dict[str, Any], path: Path) -> None:
    from bench.machine import machine_markdown

    lines = [
        "# Policy-update latency (paper-size AGaLiTe, loopback, real processes)",
        "",
        machine_markdown(res["machine"]),
        "",
        f'Model: `paper_config("agalite")` on T-Maze spaces, {res["num_params"]:,} parameters '
        f"({res['weights_bytes'] / 1e6:.2f} MB of float32 weights; the full ONNX file is "
        f"{res['onnx_bytes'] / 1e6:.2f} MB). Each subscriber is a separate torch-free process acting for "
        f'{NUM_ENVS} envs with ONNX Runtime (1 thread). Latency = from "weights ready in the learner" to the '
        "last subscriber's first step on the new version (same machine clock). One run of this script on a "
        "2-core machine shared with other people's test runs (load averages recorded); with 2 subscribers "
        "three processes share the two cores.",
        "",
        "| path | subscribers | updates | median (ms) | p90 (ms) | max (ms) | weights_for / export (ms) | "
        "encode (ms) | send (ms) | transfer + decode (ms) | with_weights / from_bytes (ms) | swap + first step "
        "(ms) | spread between subscribers (ms) | message | load 1-min before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cases"]:
        m = {k: f"{c[k]['median']:.1f}" for k in PART_KEYS}
        lines.append(
            f"| {'weights-only' if c['mode'] == 'weights' else 'full re-export'} | {c['subscribers']} | "
            f"{c['updates']} | **{c['latency_ms']['median']:.1f}** | {c['latency_ms']['p90']:.1f} | "
            f"{c['latency_ms']['max']:.1f} | {m['prepare_ms']} | {m['encode_ms']} | {m['send_ms']} | "
            f"{m['transfer_decode_ms']} | {m['build_ms']} | {m['swap_step_ms']} | {m['subscriber_spread_ms']} | "
            f"{c['bytes']['median'] / 1e6:.2f} MB | {c['loadavg_before'][0]:.2f} / {c['loadavg_after'][0]:.2f} |"
        )
    lines += [
        "",
        "Breakdown columns are medians of each part (transfer + decode, build and step: mean over the "
        "subscribers of one update), so they need not add up to the median latency exactly.",
        "",
    ]
    w = [c for c in res["cases"] if c["mode"] == "weights"]
    f = {c["subscribers"]: c for c in res["cases"] if c["mode"] == "full"}
    for c in w:
        ok = c["latency_ms"]["median"] < 100.0
        ratio = (
            f"; full re-export / weights-only median = "
            f"{f[c['subscribers']]['latency_ms']['median'] / c['latency_ms']['median']:.1f}x"
            if c["subscribers"] in f
            else ""
        )
        lines.append(
            f"- N = {c['subscribers']}: weights-only median {c['latency_ms']['median']:.1f} ms, "
            f"target < 100 ms {'met' if ok else 'not met'}{ratio}."
        )
    eq = res["equality_check"]
    wp = res.get("with_weights_parts")
    if wp:
        lines += [
            f"- Inside `with_weights` (this process, median of {wp['reps']}, protobuf "
            f"`{wp['protobuf_implementation']}`): patching the bytes (`replace_initializers`) "
            f"{wp['replace_initializers_ms']:.1f} ms + session from bytes {wp['session_from_bytes_ms']:.1f} ms; "
            f"`with_weights` as a whole {wp['with_weights_ms']:.1f} ms."
        ]
    lines += [
        f"- Equality check (version {eq['version']}): the session a subscriber built with `with_weights` vs "
        f"`StepFunction.from_bytes(export_step_function(model))`: max abs difference logits "
        f"{eq['max_abs_diff_logits']:.2e}, value {eq['max_abs_diff_value']:.2e} "
        f"({'equal' if eq['equal'] else 'DIFFERENT'}).",
        "",
    ]
    write_with_notes(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=50, help="weights-only updates per case")
    ap.add_argument("--full-updates", type=int, default=20, help="full re-export updates per case")
    ap.add_argument("--subscribers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import tempfile

    import torch

    from bench.machine import machine_info
    from envs import env_spaces
    from export import export_step_function, save_policy
    from models.registry import build_actor_critic, paper_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    spaces = env_spaces("agalite/TMaze-v0", corridor_length=120)
    model = build_actor_critic(paper_config("agalite"), *spaces)
    model.eval()
    exported = export_step_function(model, policy_version=0, observation_space=spaces[0], action_space=spaces[1])
    cases = []
    eq = None
    version = 0
    with tempfile.TemporaryDirectory() as tmp:
        policy_path = save_policy(exported, Path(tmp) / "policy.onnx")
        for n in args.subscribers:
            for mode, count in (("weights", args.updates), ("full", args.full_updates)):
                if count <= 0:
                    continue
                print(f"[latency] {mode} x{count}, {n} subscriber(s) ...", flush=True)
                summary, version, report = run_case(model, exported, spaces, policy_path, n, mode, count, version)
                print(
                    f"[latency]   median {summary['latency_ms']['median']:.1f} ms, "
                    f"p90 {summary['latency_ms']['p90']:.1f} ms",
                    flush=True,
                )
                cases.append(summary)
                if eq is None and mode == "weights" and report is not None:
                    eq = equality_check(model, spaces, report)
                    print(f"[latency]   equality check: {eq}", flush=True)
    print("[latency] with_weights parts ...", flush=True)
    parts = with_weights_parts(exported, model)
    print(f"[latency]   {parts}", flush=True)
    res = {
        "machine": machine_info(),
        "with_weights_parts": parts,
        "model": paper_config("agalite").to_dict(),
        "num_params": sum(p.numel() for p in model.parameters()),
        "weights_bytes": sum(a.nbytes for a in __import__("export").weights_for(model, exported).values()),
        "onnx_bytes": len(exported.onnx_bytes),
        "cases": cases,
        "equality_check": eq,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy_update_latency.json").write_text(json.dumps(res, indent=1))
    write_markdown(res, args.out / "policy_update_latency.md")
    print((args.out / "policy_update_latency.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
