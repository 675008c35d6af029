"""The learner on 1 and 2 ranks (torch.distributed, gloo on this machine's CPUs): what data parallelism buys here.

    python -m bench.ddp_learner [--preset tmaze-agalite] [--ranks 1 2] [--seconds 30] [--e2e-seconds 45]

L  learner-only samples/s: N ranks (spawned processes, 1 torch thread each) train on the same synthetic batches of
   the preset's shape (``batch_envs`` env rows x ``segment_length`` steps, random observations and actions), as the
   run loop does: rank 0 broadcasts each batch (timed apart: the price of "rank 0 receives and broadcasts"), then
   every rank runs ``Trainer.update`` on its share of each minibatch, gradients all-reduced by DDP.
e2e: ``python -m learner.launch --learner-ranks N`` (the real stack, 2 actors over loopback) as in
   ``bench.e2e_throughput``: env steps/s from ``status.json`` after a warm-up.

Writes bench/results/ddp_learner.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.e2e_throughput import measure_e2e
from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes

RESULTS = Path(__file__).resolve().parent / "results"


def _synthetic_segments(trainer: Any, rows: int, t: int, envs_per_segment: int, seed: int) -> list[Any]:
    from gymnasium import spaces

    from protocol import Segment

    obs_space, act_space = trainer.observation_space, trainer.action_space
    assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Discrete)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(max(1, rows // envs_per_segment)):
        b = envs_per_segment
        reset = np.zeros((t + 1, b), dtype=bool)
        reset[0] = True
        out.append(
            Segment(
                actor_id=f"bench-{i}",
                run_id="bench",
                seq=0,
                policy_version=0,
                obs=rng.uniform(obs_space.low, obs_space.high, size=(t + 1, b, *obs_space.shape)).astype(np.float32),
                actions=rng.integers(0, int(act_space.n), size=(t, b)).astype(np.int64),
                logp=np.full((t, b), -math.log(int(act_space.n)), dtype=np.float32),
                rewards=rng.normal(size=(t, b)).astype(np.float32),
                terminated=np.zeros((t, b), dtype=bool),
                truncated=np.zeros((t, b), dtype=bool),
                reset=reset,
                bootstrap_values=np.zeros((t, b), dtype=np.float32),
                initial_state={k: v.numpy() for k, v in trainer.model.initial_state(b).items()},
                episodes=[],
            )
        )
    return out


def _learner_rank(rank: int, world: int, port: int, preset: str, seconds: float, out_path: str) -> None:
    import torch

    from envs import env_spaces
    from learner import distributed
    from learner.config import load_preset
    from learner.distributed import RankInfo
    from learner.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = RankInfo(rank=rank, world_size=world)
    distributed.init(info, torch.device("cpu"))
    try:
        cfg = load_preset(preset)
        obs_space, act_space = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
        trainer = Trainer(cfg, obs_space, act_space, ranks=info)
        batches = [
            _synthetic_segments(trainer, cfg.batch_envs, cfg.segment_length, cfg.envs_per_actor, seed)
            for seed in range(4)
        ]
        update_s: list[float] = []
        broadcast_s: list[float] = []
        samples = 0
        start = time.perf_counter()
        i = 0
        while True:
            t0 = time.perf_counter()
            segments = batches[i % len(batches)]
            if info.distributed:
                go = distributed.all_true(time.perf_counter() - start < seconds)  # every rank stops together
                if not go:
                    break
                shared = distributed.broadcast_batch(segments if rank == 0 else None)
                assert shared is not None
                segments = shared
            elif time.perf_counter() - start >= seconds:
                break
            t1 = time.perf_counter()
            trainer.update(segments)
            t2 = time.perf_counter()
            if i >= 2:  # warm-up
                broadcast_s.append(t1 - t0)
                update_s.append(t2 - t1)
                samples += sum(s.actions.size for s in segments)
            i += 1
        if rank == 0:
            measured = sum(broadcast_s) + sum(update_s)
            Path(out_path).write_text(
                json.dumps(
                    {
                        "ranks": world,
                        "samples_per_s": samples / measured,
                        "updates": len(update_s),
                        "update_ms_median": 1000 * statistics.median(update_s),
                        "broadcast_ms_median": 1000 * statistics.median(broadcast_s),
                        "samples_per_update": samples // max(1, len(update_s)),
                        "loadavg_after": os.getloadavg(),
                    }
                )
            )
    finally:
        distributed.shutdown()


def measure_learner(preset: str, world: int, seconds: float) -> dict[str, Any]:
    import torch.multiprocessing as mp

    from bench.learning_curve import free_ports

    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        load_before = os.getloadavg()
        mp.start_processes(
            _learner_rank, args=(world, port, preset, seconds, str(out)), nprocs=world, join=True, start_method="spawn"
        )
        result = json.loads(out.read_text())
    result["loadavg_before"] = load_before
    return result


def write_markdown(res: dict[str, Any], path: Path) -> None:
    lines = [
        "# The learner on several ranks (torch.distributed, gloo, CPU)",
        "",
        "Generated by `python -m bench.ddp_learner` (see its docstring for what each number is).",
        "",
        machine_markdown(res["machine"]),
        "",
        f"Preset `{res['preset']}`; every rank and every actor on the same machine.",
        "",
        "## Learner alone (synthetic batches of the preset's shape)",
        "",
        "| ranks | samples/s | update, median | broadcast of the batch, median | updates | load 1-min before / after |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["learner"]:
        lines.append(
            f"| {r['ranks']} | {r['samples_per_s']:,.0f} | {r['update_ms_median']:.1f} ms | "
            f"{r['broadcast_ms_median']:.2f} ms | {r['updates']} | "
            f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |"
        )
    lines += [
        "",
        "## End to end (`learner.launch --learner-ranks N`, 2 actors x 8 envs)",
        "",
        "| ranks | env steps/s | updates | load 1-min before / after |",
        "|---|---|---|---|",
    ]
    for r in res["e2e"]:
        lines.append(
            f"| {r['ranks']} | {r['sps']:,.0f} | {r['updates_measured']} | "
            f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |"
        )
    write_with_notes(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tmaze-agalite")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--e2e-seconds", type=float, default=45.0)
    parser.add_argument("--warmup", type=float, default=12.0)
    args = parser.parse_args(argv)
    res: dict[str, Any] = {"preset": args.preset, "machine": machine_info(), "learner": [], "e2e": []}
    for world in args.ranks:
        res["learner"].append(measure_learner(args.preset, world, args.seconds))
        print(json.dumps(res["learner"][-1]), flush=True)
    for world in args.ranks:
        extra = ["--learner-ranks", str(world)] if world > 1 else []
        e2e = measure_e2e(args.preset, 2, args.warmup, args.e2e_seconds, extra=extra)
        e2e["ranks"] = world
        res["e2e"].append(e2e)
        print(json.dumps({k: e2e[k] for k in ("ranks", "sps", "updates_measured")}), flush=True)
    (RESULTS / "ddp_learner.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, RESULTS / "ddp_learner.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
