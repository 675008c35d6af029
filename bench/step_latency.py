"""Step latency of the exported policies: ONNX Runtime (1 thread) vs torch eager, batch 1/16/64, one run.

    python -m bench.step_latency [--quick] [--out bench/results]

Models at the paper's size (L4, d_model 128, H4 x 64): AGaLiTe (eta 4 r 2; eta 8; r 8), GaLiTe, GTrXL with
M = 32/64/128/256 in both memory forms, LSTM, and a dense floor (a stateless MLP with as many weights as the AGaLiTe
model: what any step of that size costs). Also export costs of the paper AGaLiTe (full export, session from bytes,
weights-only rebuild). Writes ``step_latency.json`` and ``step_latency.md``; the targets are ratios measured in this
one run, never absolute times (the machine is shared and its speed varies).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from gymnasium import spaces
from torch import nn

from bench.machine import machine_info
from bench.report import write_with_notes
from export import export_step_function, weights_for
from models.actor_critic import ActorCritic
from models.registry import build_actor_critic, paper_config
from policy.runtime import StepFunction
from policy.weights import replace_initializers

OBS_DIM = 16  # a T-Maze-like vector observation; the encoder is not what is measured
NUM_ACTIONS = 4
BATCHES = (1, 16, 64)

MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("agalite", "agalite", {}),
    ("agalite-eta8", "agalite", {"eta": 8}),
    ("agalite-r8", "agalite", {"r": 8}),
    ("galite", "galite", {}),
    *[
        (f"gtrxl-{m}-{form}", "gtrxl", {"memory_len": m, "memory_form": form})
        for m in (32, 64, 128, 256)
        for form in ("inputs", "kv")
    ],
    ("lstm", "lstm", {}),
]


def _machine() -> dict[str, Any]:
    """bench.machine's record plus the load average (this benchmark's times depend on it)."""
    return {**machine_info(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def _median_us(fn: Callable[[], Any], budget_s: float, max_calls: int, min_calls: int = 100) -> tuple[float, int]:
    """Median wall time of ``fn`` in microseconds, over as many calls as fit in ``budget_s`` (within the bounds)."""
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    n = int(min(max_calls, max(min_calls, budget_s / one)))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6, n


class DenseFloor(nn.Module):
    """A stateless MLP step with (about) ``target_params`` weights: the cost of touching that many weights once."""

    def __init__(self, target_params: int, obs_dim: int, num_actions: int) -> None:
        super().__init__()
        depth = 4
        # params ~ obs_dim*h + (depth-1)*h^2 + h*(A+1): solve for the hidden width h
        a, b, c = depth - 1, obs_dim + num_actions + 1 + depth, -target_params
        h = int((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a))
        layers: list[nn.Module] = [nn.Linear(obs_dim, h), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(h, h), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(h, num_actions + 1)

    def forward(self, obs: torch.Tensor, reset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(obs))
        return out[:, :-1], out[:, -1] + 0 * reset.float()


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def _dense_floor_bytes(model: DenseFloor) -> bytes:
    import io
    import warnings

    buf = io.BytesIO()
    obs, reset = torch.zeros(2, OBS_DIM), torch.zeros(2, dtype=torch.bool)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (obs, reset),
            buf,  # type: ignore[arg-type]  # export writes to a file object too; its annotation names only paths
            dynamo=False,
            input_names=["obs", "reset"],
            output_names=["logits", "value"],
            opset_version=17,
            dynamic_axes={n: {0: "batch"} for n in ("obs", "reset", "logits", "value")},
        )
    return buf.getvalue()


def _op_profile(onnx_bytes: bytes, feeds: dict[str, np.ndarray], calls: int = 300) -> list[tuple[str, float, int]]:
    """Share of kernel time per op type at one batch (ORT's profiler), biggest first: (op, percent, nodes)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "ort_step_profile")
    sess = ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        sess.run(None, feeds)
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    Path(path).unlink(missing_ok=True)
    per_op: Counter[str] = Counter()
    nodes: dict[str, set[str]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] += e.get("dur", 0)
            nodes.setdefault(op, set()).add(e["name"])
    total = sum(per_op.values()) or 1
    return [(op, 100.0 * d / total, len(nodes[op])) for op, d in per_op.most_common()]


def _optimized_node_count(onnx_bytes: bytes) -> int:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as d:
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        return len(onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node)


def export_costs(ac: ActorCritic, repeats: int) -> dict[str, float]:
    """Milliseconds (median of ``repeats``) for each way new weights reach an actor."""
    out: dict[str, list[float]] = {
        k: [] for k in ("full_export", "session_from_bytes", "weights_for", "with_weights", "learner_patch_bytes")
    }
    exported = export_step_function(ac)
    fn = StepFunction.from_bytes(exported.onnx_bytes)
    for _ in range(repeats):
        t = time.perf_counter()
        ex = export_step_function(ac)
        out["full_export"].append(time.perf_counter() - t)
        t = time.perf_counter()
        StepFunction.from_bytes(ex.onnx_bytes)
        out["session_from_bytes"].append(time.perf_counter() - t)
        t = time.perf_counter()
        w = weights_for(ac, exported)
        out["weights_for"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fn.with_weights(w)
        out["with_weights"].append(time.perf_counter() - t)
        t = time.perf_counter()
        replace_initializers(exported.onnx_bytes, w)
        out["learner_patch_bytes"].append(time.perf_counter() - t)
    res = {k: 1e3 * statistics.median(v) for k, v in out.items()}
    res["weights_only_total"] = res["weights_for"] + res["with_weights"]
    return res


def run(quick: bool, budget_s: float, max_calls: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    obs_space = spaces.Box(0.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
    act_space = spaces.Discrete(NUM_ACTIONS)
    rng = np.random.default_rng(0)
    models = (
        MODELS if not quick else [m for m in MODELS if m[0] in ("agalite", "gtrxl-128-inputs", "gtrxl-128-kv", "lstm")]
    )
    built: dict[str, dict[str, Any]] = {}
    for name, kind, overrides in models:
        torch.manual_seed(0)
        try:
            ac = build_actor_critic(paper_config(kind, **overrides), obs_space, act_space).eval()
        except NotImplementedError as exc:
            print(f"skip {name}: {exc}")
            continue
        exported = export_step_function(ac)
        meta = exported.policy_metadata
        graph = onnx.load_from_string(exported.onnx_bytes)
        built[name] = {
            "ac": ac,
            "fn": StepFunction.from_bytes(exported.onnx_bytes, providers=["CPUExecutionProvider"]),
            "bytes": exported.onnx_bytes,
            "info": {
                "kind": kind,
                "config": overrides,
                "params": sum(p.numel() for p in ac.parameters()),
                "state_bytes_per_env": meta.state_bytes_per_env,
                "state": {s.name: [list(s.shape), s.dtype] for s in meta.state},
                "onnx_bytes": len(exported.onnx_bytes),
                "nodes": len(graph.graph.node),
                "nodes_after_ort_optimisation": _optimized_node_count(exported.onnx_bytes),
            },
        }
        print(f"exported {name}: {built[name]['info']['params']} params, {len(graph.graph.node)} nodes")
    if "agalite" in built:
        floor = DenseFloor(built["agalite"]["info"]["params"], OBS_DIM, NUM_ACTIONS).eval()
        fb = _dense_floor_bytes(floor)
        built["dense-floor"] = {
            "ac": floor,
            "fn": None,
            "bytes": fb,
            "info": {
                "kind": "mlp",
                "config": {"depth": 4},
                "params": sum(p.numel() for p in floor.parameters()),
                "state_bytes_per_env": 0,
                "state": {},
                "onnx_bytes": len(fb),
                "nodes": len(onnx.load_from_string(fb).graph.node),
                "nodes_after_ort_optimisation": _optimized_node_count(fb),
            },
        }

    results: dict[str, Any] = {name: {**b["info"], "latency_us": {}} for name, b in built.items()}
    for batch in BATCHES:
        obs = rng.random((batch, OBS_DIM), dtype=np.float32)
        reset = np.zeros(batch, dtype=bool)
        for name, b in built.items():
            lat: dict[str, Any] = {}
            if b["fn"] is None:  # dense floor: stateless graph, raw session
                sess = _session(b["bytes"])
                feeds = {"obs": obs, "reset": reset}
                # functools.partial binds this iteration's objects (a lambda would read the loop variables)
                lat["onnxruntime"], lat["onnxruntime_calls"] = _median_us(
                    functools.partial(sess.run, None, feeds), budget_s, max_calls
                )
                tobs, treset = torch.from_numpy(obs), torch.from_numpy(reset)
                with torch.no_grad():
                    lat["torch"], lat["torch_calls"] = _median_us(
                        functools.partial(b["ac"], tobs, treset), budget_s, max_calls
                    )
            else:
                fn: StepFunction = b["fn"]
                state = fn.initial_state(batch)
                fn.run(obs, np.ones(batch, bool), state)
                lat["onnxruntime"], lat["onnxruntime_calls"] = _median_us(
                    functools.partial(fn.run, obs, reset, state), budget_s, max_calls
                )
                ac = b["ac"]
                tstate = {k: torch.from_numpy(v) for k, v in state.items()}
                tobs, treset = torch.from_numpy(obs)[None], torch.from_numpy(reset)[None]
                with torch.no_grad():
                    lat["torch"], lat["torch_calls"] = _median_us(
                        functools.partial(ac, tobs, treset, tstate), budget_s, max_calls
                    )
            results[name]["latency_us"][str(batch)] = lat
            print(f"B={batch:3d} {name:18s} ort {lat['onnxruntime']:9.1f} us   torch {lat['torch']:9.1f} us")

    profiles = {}
    for name in ("agalite", "gtrxl-128-inputs", "gtrxl-128-kv"):
        if name in built:
            fn = built[name]["fn"]
            feeds = {
                "obs": rng.random((1, OBS_DIM), dtype=np.float32),
                "reset": np.zeros(1, bool),
                **fn.initial_state(1),
            }
            profiles[name] = [
                {"op": op, "percent": round(p, 1), "nodes": n}
                for op, p, n in _op_profile(built[name]["bytes"], feeds)[:10]
            ]
    costs = export_costs(built["agalite"]["ac"], repeats=3 if quick else 7) if "agalite" in built else {}
    return {
        "machine": _machine(),
        "batches": list(BATCHES),
        "models": results,
        "op_profile_batch1": profiles,
        "export_ms_agalite_paper": costs,
        "targets": targets(results),
    }


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's target ratios, each with its measured value and met/missed."""

    def ort_us(name: str, batch: int) -> float | None:
        m = r.get(name)
        return None if m is None else m["latency_us"][str(batch)]["onnxruntime"]

    out = []

    def add(what: str, num: float | None, den: float | None, limit: float) -> None:
        if num is None or den is None:
            out.append({"target": what, "limit": limit, "ratio": None, "met": None})
            return
        ratio = num / den
        out.append({"target": what, "limit": round(limit, 4), "ratio": round(ratio, 4), "met": bool(ratio <= limit)})

    for b, lim in ((1, 0.25), (16, 0.1)):
        add(f"AGaLiTe / GTrXL-128(inputs), ORT, batch {b}", ort_us("agalite", b), ort_us("gtrxl-128-inputs", b), lim)
    for b, lim in ((1, 0.7), (16, 0.4), (64, 0.4)):
        fastest = [x for x in (ort_us("gtrxl-128-inputs", b), ort_us("gtrxl-128-kv", b)) if x is not None]
        add(
            f"AGaLiTe / fastest GTrXL-128 form, ORT, batch {b}",
            ort_us("agalite", b),
            min(fastest) if fastest else None,
            lim,
        )
    add("AGaLiTe / dense floor, ORT, batch 1", ort_us("agalite", 1), ort_us("dense-floor", 1), 1.5)
    if "agalite" in r:
        add(
            "AGaLiTe ONNX Runtime / torch eager, batch 1",
            ort_us("agalite", 1),
            r["agalite"]["latency_us"]["1"]["torch"],
            1 / 3,
        )
    a, g = r.get("agalite"), r.get("gtrxl-128-inputs")
    add(
        "AGaLiTe state / GTrXL-128 state (bytes per env)",
        a and a["state_bytes_per_env"],
        g and g["state_bytes_per_env"],
        0.2,
    )
    return out


def missed_notes(res: dict[str, Any]) -> list[str]:
    """How far each missed target is, and the floor that bounds it (the dense MLP of the same weight count)."""
    missed = [t for t in res["targets"] if t["met"] is False]
    if not missed:
        return []
    lines = ["", "## Missed targets: by how much, and why", ""]
    for t in missed:
        lines.append(
            f"- {t['target']}: {t['ratio']:.3f} vs <= {t['limit']:.3g} "
            f"({100 * (t['ratio'] / t['limit'] - 1):.0f}% over)."
        )
    models = res["models"]
    if "dense-floor" in models and "agalite" in models:
        lat = {n: m["latency_us"] for n, m in models.items()}
        parts = []
        for g in ("gtrxl-128-inputs", "gtrxl-128-kv"):
            if g in lat:
                floor = [
                    lat["dense-floor"][str(b)]["onnxruntime"] / lat[g][str(b)]["onnxruntime"] for b in res["batches"]
                ]
                parts.append(", ".join(f"B={b}: {f:.2f}" for b, f in zip(res["batches"], floor, strict=True)))
                parts[-1] = f"{g} ({parts[-1]})"
        lines += [
            "",
            "The dense floor (a stateless MLP with AGaLiTe's weight count) is what any step that reads those weights "
            "once costs; its ratio to GTrXL-128 in this run is " + "; ".join(parts) + ". A target below that ratio "
            "cannot be met by any model of this size. At batch 1 ONNX Runtime reads the weights at a few tens of "
            "GB/s (L3, shared machine), so the dense floor is mostly weight traffic; AGaLiTe adds ~290 small nodes "
            "(per-node cost ~0.3-0.5 us without profiling), 13 state inputs and 13 state outputs (~50 us of "
            "binding and copies at batch 1) and `StepFunction`'s input checks (~20 us).",
        ]
    return lines


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Step latency (ONNX Runtime, 1 intra-op thread) vs torch eager",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} logical cores (shared; load average {m['load_average']}), "
        f"{m['platform']}; onnxruntime {m['onnxruntime']}, torch {m['torch']}. Generated by "
        "`python -m bench.step_latency`. Median per call in microseconds; ratios are from this one run.",
        "",
        "| model | params | state B/env | ONNX size | nodes (ORT-optimised) | "
        + " | ".join(f"ORT B={b} | torch B={b}" for b in res["batches"])
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|---:|" * len(res["batches"]),
    ]
    for name, r in res["models"].items():
        lat = r["latency_us"]
        cells = " | ".join(f"{lat[str(b)]['onnxruntime']:.0f} | {lat[str(b)]['torch']:.0f}" for b in res["batches"])
        lines.append(
            f"| {name} | {r['params']:,} | {r['state_bytes_per_env']:,} | {r['onnx_bytes'] / 1e6:.2f} MB | "
            f"{r['nodes']} ({r['nodes_after_ort_optimisation']}) | {cells} |"
        )
    lines += ["", "## Targets", "", "| target | ratio | limit | met |", "|---|---:|---:|---|"]
    for t in res["targets"]:
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.3f}"
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "**missed**")
        lines.append(f"| {t['target']} | {ratio} | {t['limit']:.3g} | {met} |")
    lines += missed_notes(res)
    if res["op_profile_batch1"]:
        lines += ["", "## Where the time goes at batch 1 (share of ORT kernel time by op type)", ""]
        for name, ops in res["op_profile_batch1"].items():
            lines.append(f"- {name}: " + ", ".join(f"{o['op']} {o['percent']:.0f}% ({o['nodes']} nodes)" for o in ops))
    c = res["export_ms_agalite_paper"]
    if c:
        lines += [
            "",
            "## Getting new weights to an actor (paper AGaLiTe, milliseconds, median)",
            "",
            f"- full `torch.onnx.export` + checks: {c['full_export']:.0f} ms; session from bytes: "
            f"{c['session_from_bytes']:.0f} ms",
            f"- weights-only: `weights_for` {c['weights_for']:.1f} ms + `StepFunction.with_weights` "
            f"{c['with_weights']:.0f} ms = {c['weights_only_total']:.0f} ms (patched model bytes -> new session; "
            f"build it off the step path and swap)",
            "- learner-side alternative `policy.weights.replace_initializers` (bytes only): "
            f"{c['learner_patch_bytes']:.0f} ms, "
            "then a session from bytes on the actor",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="four models and short timings (a smoke run)")
    p.add_argument("--budget-s", type=float, default=None, help="time budget per (model, batch, backend)")
    p.add_argument("--max-calls", type=int, default=3000)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args()
    budget = args.budget_s if args.budget_s is not None else (0.3 if args.quick else 1.5)
    res = run(args.quick, budget, args.max_calls)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_latency.json").write_text(json.dumps(res, indent=2) + "\n")
    write_with_notes(out / "step_latency.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
