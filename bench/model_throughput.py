"""Training throughput of each model at the paper's size: forward + backward samples/s, T=128, B=16, CPU.

Run: ``python -m bench.model_throughput [--threads 1] [--seconds 12]``. Writes bench/results/model_throughput.{json,md}.
Models run one after another in one process (compare ratios within one run, not times across runs). The whole
actor-critic is timed (16-float T-Maze-like observation, flatten encoder, 4 actions, both heads), starting from a
non-trivial stored state as PPO's truncated BPTT does; the loss touches logits and values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from models import build_actor_critic, paper_config

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = [
    ("AGaLiTe eta=4 r=2", "agalite", {}),
    ("GaLiTe", "galite", {}),
    ("GTrXL-128 inputs", "gtrxl", {"memory_form": "inputs"}),
    ("GTrXL-128 kv", "gtrxl", {"memory_form": "kv"}),
    ("LSTM 600", "lstm", {}),
    ("GRU 680", "gru", {}),
]


def bench_one(kind: str, overrides: dict, t_len: int, batch: int, seconds: float) -> dict:
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1.0, 1.0, (16,), np.float32)
    ac = build_actor_critic(paper_config(kind, **overrides), obs_space, gym.spaces.Discrete(4))
    params = sum(p.numel() for p in ac.parameters())
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(t_len, batch, 16, generator=g) * 2 - 1
    reset = torch.rand(t_len, batch, generator=g) < 0.01
    with torch.no_grad():
        _, _, state = ac(obs, reset, ac.initial_state(batch))  # a filled memory, as a stored PPO state would be

    def step() -> None:
        ac.zero_grad(set_to_none=True)
        logits, value, _ = ac(obs, reset, state)
        loss = torch.logsumexp(logits, -1).mean() + value.square().mean()
        loss.backward()

    step()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 50):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"iterations": len(times), "median_s": med, "samples_per_s": t_len * batch / med, "parameters": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=12.0, help="time budget per model (at least 3 iterations)")
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--B", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info()
    rows = []
    for label, kind, overrides in MODELS:
        try:
            r = bench_one(kind, overrides, args.T, args.B, args.seconds)
        except NotImplementedError as e:
            r = {"error": str(e)}
        rows.append({"model": label, "kind": kind, **overrides, **r})
        print(label, r, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"T": args.T, "B": args.B, "threads": args.threads, "device": "cpu"}
    (RESULTS / "model_throughput.json").write_text(
        json.dumps({"machine": info, "settings": settings, "models": rows}, indent=2) + "\n"
    )
    md = [f"# Training throughput (forward + backward), T={args.T}, B={args.B}, CPU, {args.threads} torch thread(s)",
          "", machine_markdown(info), "",
          "Whole actor-critic (16-float observation, 4 actions) at the paper's size; median over iterations.", "",
          "| model | parameters | samples/s | s / iteration | iterations |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            md.append(f"| {r['model']} | - | n/a ({r['error']}) | - | - |")
        else:
            md.append(f"| {r['model']} | {r['parameters']:,} | {r['samples_per_s']:,.0f} | {r['median_s']:.3f} "
                      f"| {r['iterations']} |")  # fmt: skip
    write_with_notes(RESULTS / "model_throughput.md", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
