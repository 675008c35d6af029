"""End-to-end throughput of the actor-learner stack on T-Maze, against its parts measured alone.

    python -m bench.e2e_throughput [--preset tmaze-agalite] [--actors 1 2 4] [--seconds 45] [--warmup 12]

In one run, one after another (nothing else of ours running meanwhile):

A  actor-only env steps/s: one actor's ``SegmentCollector`` + ONNX policy (1 thread) + ``encode(Segment)``, no
   network, in a torch-free subprocess, alone on the machine. It also writes the segments it made to a file.
L  learner-only samples/s: ``batch_from_segments`` + ``PPO.update`` + ``weights_for`` (the publish's copy) over
   those segments held in memory, no network, alone (torch threads as the learner: ``torch_threads`` of the preset).
   Decoding the segments (the server thread's work) is timed apart and reported.
e2e for K actors: ``python -m learner.launch --num-actors K`` (the real stack over loopback TCP); env steps/s
   from ``status.json`` deltas after a warm-up; policy lag (``lag/min|mean|max``) from the TensorBoard scalars of
   the measured window; dropped segments by reason from ``status.json``.

Pipeline efficiency = e2e * (1/A + 1/L): the e2e rate relative to doing the acting and the learning of each
sample back to back in one process. 1.0 means distribution (processes, sockets, encode/decode, flow control) costs
nothing net; above 1 the actor and the learner overlap on the two cores. Target: >= 0.9 for 2 actors.
Writes ``e2e_throughput.json`` and ``e2e_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import write_with_notes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# ---- A: actor alone (runs in a torch-free child process) ---------------------------------------------------------
def actor_only_child(policy_path: str, settings_json: str, seconds: float, segments_out: str, keep: int) -> None:
    import numpy as np

    from actor.rollout import SegmentCollector
    from envs import make_env
    from policy.runtime import Policy, StepFunction
    from protocol import encode

    assert "torch" not in sys.modules
    st = json.loads(settings_json)
    envs = [make_env(st["env_id"], **st["env_kwargs"]) for _ in range(st["envs_per_actor"])]
    collector = SegmentCollector(envs, st["segment_length"], seed=123)
    policy = Policy(StepFunction.from_file(policy_path, intra_op_threads=1), len(envs))
    load_before = os.getloadavg()
    kept: list[bytes] = []
    seq = 0
    steps = 0
    t_start = None
    while True:
        seg = collector.collect(policy, actor_id="bench", run_id="bench", seq=seq, policy_version=0)
        blob = encode(seg)
        seq += 1
        if len(kept) < keep:
            kept.append(blob)
        if t_start is None:  # the first segment is the warm-up (session start, first allocations)
            t_start = time.perf_counter()
            continue
        steps += seg.actions.size
        if time.perf_counter() - t_start >= seconds:
            break
    elapsed = time.perf_counter() - t_start
    with open(segments_out, "wb") as f:
        for blob in kept:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
    print(
        json.dumps(
            {
                "steps": steps,
                "seconds": elapsed,
                "steps_per_s": steps / elapsed,
                "segments": seq - 1,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "np_version": np.__version__,
            }
        )
    )


def read_blobs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        out.append(data[i + 8 : i + 8 + n])
        i += 8 + n
    return out


def measure_actor(cfg: Any, policy_path: Path, seconds: float, segments_out: Path, keep: int) -> dict[str, Any]:
    settings = {
        "env_id": cfg.env.id,
        "env_kwargs": cfg.env.kwargs_dict(),
        "envs_per_actor": cfg.envs_per_actor,
        "segment_length": cfg.segment_length,
    }
    code = (
        "import sys; from bench.e2e_throughput import actor_only_child as f; "
        "f(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(policy_path),
            json.dumps(settings),
            str(seconds),
            str(segments_out),
            str(keep),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- L: learner alone ----------------------------------------------------------------------------------------------
def measure_learner(cfg: Any, blobs: list[bytes], seconds: float) -> dict[str, Any]:
    import torch

    from envs import env_spaces
    from export import export_step_function, weights_for
    from learner.ppo import PPO, batch_from_segments
    from models.registry import build_actor_critic
    from protocol import Segment, decode

    torch.set_num_threads(max(1, cfg.torch_threads))
    torch.manual_seed(cfg.seed)
    obs_space, act_space = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
    model = build_actor_critic(cfg.model, obs_space, act_space)
    exported = export_step_function(model, policy_version=0, observation_space=obs_space, action_space=act_space)
    ppo = PPO(model, cfg.ppo, seed=cfg.seed)

    t0 = time.perf_counter()
    decoded = [decode(b) for b in blobs]
    decode_s = (time.perf_counter() - t0) / len(blobs)
    segments = [s for s in decoded if isinstance(s, Segment)]
    if len(segments) != len(decoded):
        raise RuntimeError("the actor run wrote something other than segments")
    per_batch = max(1, -(-cfg.batch_envs // cfg.envs_per_actor))
    batches = [segments[i : i + per_batch] for i in range(0, len(segments) - per_batch + 1, per_batch)]
    load_before = os.getloadavg()
    samples = updates = 0
    times: list[float] = []
    i = 0
    warm = 2
    t_start = 0.0  # set when the warm-up batches are done
    while True:
        b = batches[i % len(batches)]
        i += 1
        t = time.perf_counter()
        batch = batch_from_segments(b, torch.device("cpu"))
        ppo.update(batch)
        weights_for(model, exported)
        dt = time.perf_counter() - t
        if warm > 0:
            warm -= 1
            if warm == 0:
                t_start = time.perf_counter()
            continue
        times.append(dt)
        samples += batch.num_steps
        updates += 1
        if time.perf_counter() - t_start >= seconds:
            break
    elapsed = time.perf_counter() - t_start
    steps_per_batch = sum(s.actions.size for s in batches[0])
    return {
        "samples": samples,
        "updates": updates,
        "seconds": elapsed,
        "samples_per_s": samples / elapsed,
        "update_ms_median": 1000 * sorted(times)[len(times) // 2],
        "samples_per_update": steps_per_batch,
        "decode_ms_per_segment": 1000 * decode_s,
        "decode_share_of_learner_time": decode_s * per_batch / (elapsed / updates),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


# ---- e2e: the real stack --------------------------------------------------------------------------------------------
def read_status(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def measure_e2e(
    preset: str, num_actors: int, warmup: float, seconds: float, extra: list[str] | None = None
) -> dict[str, Any]:
    """``extra``: more learner.launch flags (``bench.ddp_learner`` adds ``--learner-ranks``)."""
    from bench.learning_curve import fresh_run_dir, launch, read_scalars, stop

    run_dir = fresh_run_dir(f"e2e-{preset}-{num_actors}" + "".join(extra or []).replace("-", "_"))
    load_before = os.getloadavg()
    proc = launch(preset, run_dir, num_actors=num_actors, extra=extra)
    try:
        t_launch = time.monotonic()
        while True:  # training has started when steps are counted
            st = read_status(run_dir)
            if st and st.get("env_steps", 0) > 0:
                break
            if proc.poll() is not None or time.monotonic() - t_launch > 180:
                raise RuntimeError(f"the stack did not start; see {run_dir.parent / (run_dir.name + '.log')}")
            time.sleep(0.5)
        startup_s = time.monotonic() - t_launch
        time.sleep(warmup)
        s0 = read_status(run_dir)
        samples = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(5.0)
            samples.append(read_status(run_dir))
        s1 = read_status(run_dir)
    finally:
        rc = stop(proc)
    load_after = os.getloadavg()
    assert s0 is not None and s1 is not None
    sps = (s1["env_steps"] - s0["env_steps"]) / (s1["time"] - s0["time"])
    window = []
    prev = s0
    for s in samples:
        if s and s["time"] > prev["time"]:
            window.append((s["env_steps"] - prev["env_steps"]) / (s["time"] - prev["time"]))
            prev = s
    scalars = read_scalars(run_dir / "tb", ("lag/min", "lag/mean", "lag/max"))

    def in_window(tag: str) -> list[float]:
        return [e["value"] for e in scalars.get(tag, []) if s0["env_steps"] < e["step"] <= s1["env_steps"]]

    lag_min, lag_mean, lag_max = in_window("lag/min"), in_window("lag/mean"), in_window("lag/max")
    return {
        "num_actors": num_actors,
        "sps": sps,
        "sps_5s_windows": window,
        "startup_s": startup_s,
        "measured_s": s1["time"] - s0["time"],
        "env_steps_measured": s1["env_steps"] - s0["env_steps"],
        "updates_measured": s1["updates"] - s0["updates"],
        "lag": {
            "min": min(lag_min) if lag_min else None,
            "mean": sum(lag_mean) / len(lag_mean) if lag_mean else None,
            "max": max(lag_max) if lag_max else None,
            "updates": len(lag_mean),
        },
        "dropped": s1.get("dropped", {}),
        "received_segments": s1.get("received_segments"),
        "accepted_segments": s1.get("accepted_segments"),
        "segments_per_actor": s1.get("segments_per_actor"),
        "live_actors": s1.get("live_actors"),
        "exit_code": rc,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


# ---- report ----------------------------------------------------------------------------------------------------------
def write_markdown(res: dict[str, Any], path: Path) -> None:
    from bench.machine import machine_markdown

    A, L = res["actor_only"]["steps_per_s"], res["learner_only"]["samples_per_s"]
    serial = 1.0 / (1.0 / A + 1.0 / L)
    c = res["config"]
    lines = [
        "# End-to-end throughput (T-Maze, local stack over loopback)",
        "",
        machine_markdown(res["machine"]),
        "",
        f"Preset `{res['preset']}`: {c['model']['kind']} L{c['model']['num_layers']} d_model {c['model']['d_model']}, "
        f"T-Maze {c['env']['kwargs']}, {c['envs_per_actor']} envs per actor, T={c['segment_length']}, "
        f"batch {c['batch_envs']} env rows, PPO {c['ppo']['epochs']} epochs x {c['ppo']['minibatches']} "
        f"minibatches, torch threads {c['torch_threads']}, ONNX Runtime 1 thread per actor. All numbers below come "
        "from one run of this script on a 2-core machine shared with other people's test runs (load averages "
        "recorded); compare only ratios.",
        "",
        "## Parts alone (no network)",
        "",
        "| part | rate | detail | load 1-min before / after |",
        "|---|---|---|---|",
        f"| A: one actor (collect + ONNX + encode) | {A:,.0f} env steps/s | {res['actor_only']['segments']} segments "
        f"in {res['actor_only']['seconds']:.1f} s | {res['actor_only']['loadavg_before'][0]:.2f} / "
        f"{res['actor_only']['loadavg_after'][0]:.2f} |",
        f"| L: learner (batch + PPO update + weights_for) | {L:,.0f} samples/s | {res['learner_only']['updates']} "
        f"updates of {res['learner_only']['samples_per_update']} samples, median "
        f"{res['learner_only']['update_ms_median']:.1f} ms | {res['learner_only']['loadavg_before'][0]:.2f} / "
        f"{res['learner_only']['loadavg_after'][0]:.2f} |",
        f"| back to back, 1/(1/A + 1/L) | {serial:,.0f} samples/s | | |",
        "",
        f"Decoding one segment (server thread): {res['learner_only']['decode_ms_per_segment']:.2f} ms "
        f"({100 * res['learner_only']['decode_share_of_learner_time']:.1f}% of the learner's time per batch).",
        "",
        "## End to end",
        "",
        "| actors | env steps/s | 5 s windows (min-max) | efficiency e2e*(1/A+1/L) | e2e / A | e2e / L "
        "| lag min / mean / max | dropped | updates | load 1-min before / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    for r in res["e2e"]:
        w = r["sps_5s_windows"]
        lag = r["lag"]
        lines.append(
            f"| {r['num_actors']} | {r['sps']:,.0f} | {min(w):,.0f}-{max(w):,.0f} | {r['efficiency']:.2f} | "
            f"{r['sps'] / A:.2f} | {r['sps'] / L:.2f} | {fmt(lag['min'])} / {fmt(lag['mean'])} / {fmt(lag['max'])} | "
            f"{sum(r['dropped'].values()) if r['dropped'] else 0} {r['dropped'] or ''} | {r['updates_measured']} | "
            f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |"
        )
    two = next((r for r in res["e2e"] if r["num_actors"] == 2), None)
    if two is not None:
        lines += [
            "",
            f"Target: efficiency >= 0.9 with 2 actors: **{two['efficiency']:.2f}** "
            f"({'met' if two['efficiency'] >= 0.9 else 'not met'}).",
        ]
    lines += [
        "",
        "Warm-up "
        f"{res['warmup_s']:g} s after the first counted steps, then {res['seconds']:g} s "
        "measured from `status.json` (`env_steps`, `time`). Lag from the TensorBoard scalars of the updates "
        "inside the window.",
        "",
    ]
    write_with_notes(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tmaze-agalite")
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=45.0, help="measured window of each e2e run")
    ap.add_argument("--warmup", type=float, default=12.0, help="seconds after the first steps before measuring")
    ap.add_argument("--part-seconds", type=float, default=20.0, help="duration of the actor-only / learner-only runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import torch

    from bench.machine import machine_info
    from envs import env_spaces
    from export import export_step_function, save_policy
    from learner.config import load_preset
    from models.registry import build_actor_critic

    cfg = load_preset(args.preset)
    torch.manual_seed(cfg.seed)
    obs_space, act_space = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
    model = build_actor_critic(cfg.model, obs_space, act_space)
    with tempfile.TemporaryDirectory() as tmp:
        policy_path = save_policy(
            export_step_function(model, policy_version=0, observation_space=obs_space, action_space=act_space),
            Path(tmp) / "policy.onnx",
        )
        seg_file = Path(tmp) / "segments.bin"
        print("[e2e] actor alone ...", flush=True)
        actor = measure_actor(cfg, policy_path, args.part_seconds, seg_file, keep=16)
        print(f"[e2e]   A = {actor['steps_per_s']:,.0f} env steps/s", flush=True)
        blobs = read_blobs(seg_file)
    print("[e2e] learner alone ...", flush=True)
    learner = measure_learner(cfg, blobs, args.part_seconds)
    print(f"[e2e]   L = {learner['samples_per_s']:,.0f} samples/s", flush=True)
    A, L = actor["steps_per_s"], learner["samples_per_s"]
    e2e = []
    for k in args.actors:
        print(f"[e2e] {k} actor(s) ...", flush=True)
        r = measure_e2e(args.preset, k, args.warmup, args.seconds)
        r["efficiency"] = r["sps"] * (1.0 / A + 1.0 / L)
        print(
            f"[e2e]   {r['sps']:,.0f} env steps/s, efficiency {r['efficiency']:.2f}, lag {r['lag']}, "
            f"dropped {r['dropped']}",
            flush=True,
        )
        e2e.append(r)
    res = {
        "preset": args.preset,
        "config": cfg.to_dict(),
        "machine": machine_info(),
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "actor_only": actor,
        "learner_only": learner,
        "e2e": e2e,
        "serial_samples_per_s": 1.0 / (1.0 / A + 1.0 / L),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e_throughput.json").write_text(json.dumps(res, indent=1))
    write_markdown(res, args.out / "e2e_throughput.md")
    print((args.out / "e2e_throughput.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
