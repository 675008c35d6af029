"""Before the junction: which way a long T-Maze's policy drifts while no episode has arrived, seed by seed.

    python -m bench.tmaze_arrival                                  # defaults below: corridor 100, 150k env steps
    python -m bench.tmaze_arrival --models agalite --seeds 11 12   # add rows to the saved result
    python -m bench.tmaze_arrival --report-only                    # rewrite the .md from the .json

Why: on a long corridor every T-Maze run has two phases (bench/results/peer_phases.md). Until an episode reaches
the junction every episode times out with the same return, so nothing rewards walking right; once episodes arrive,
the memory is learned (the default AGaLiTe in a fifth of the GRU's env steps at corridor 100). Which seeds arrive
early decides the medians there, so this bench looks at the first phase alone: a short run of the whole stack at
the defaults, then the exported policy itself, through ONNX Runtime as an actor runs it:

* its action probabilities along a walk straight to the junction (20 episodes, real observations, distractor bits
  included) and their mean over the corridor's inner positions: ``drift`` = p(right) - p(left) is the mean step a
  walk makes; a uniform policy has 0, and a walk of 1,000 steps needs about +0.1 to cover 100 positions;
* how far 16 episodes of its own sampled actions get (the largest position each reaches) and how many reach the
  junction;
* its value along the same walk: until an episode arrives every state's true value is the same, so a value that
  changes along the corridor is an error the policy climbs (docs/learning.md).

A run "arrived" when its own episodes reach the junction. Every run is ``python -m learner.launch`` at the default
preset with ``--env.id agalite/TMaze-v0``, the corridor as ``--env.kwargs``, the model's flags below, ``--seed`` and
``--total-steps``; runs are asynchronous (two actor processes), so a seed does not fix the outcome. One run at a
time, about a minute each on 2 cores. Rows are saved after every run and replaced when rerun with the same model,
corridor, steps and seed. Writes bench/results/tmaze_arrival.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.learning_curve import fresh_run_dir, launch, stop
from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from envs.tmaze import TMazeEnv
from learner.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PRESET = "tmaze-agalite"
MODELS: dict[str, tuple[str, list[str]]] = {
    "gru": ("GRU-128", ["--model.kind", "gru", "--model.rnn-hidden", "128"]),
    "agalite": ("AGaLiTe (default preset)", ["--model.kind", "agalite"]),
    # the value head's rescaling when the return statistics move (PPOConfig.preserve_values) against each kind's
    # default: on for the AGaLiTe since these rows, off for the GRU (learner.config.PRESERVE_VALUES_OFF_FOR)
    "gru-pv": (
        "GRU-128, --ppo.preserve-values",
        ["--model.kind", "gru", "--model.rnn-hidden", "128", "--ppo.preserve-values"],
    ),
    "agalite-no-pv": ("AGaLiTe, --ppo.no-preserve-values", ["--model.kind", "agalite", "--ppo.no-preserve-values"]),
}
WALKS, SAMPLED, TIME_LIMIT = 20, 16, 1000
ARRIVAL_DRIFT = 0.1
"""The drift a walk needs to cover 100 positions in 1,000 steps."""


def corridor_profile(policy: Path, corridor: int) -> dict[str, Any]:
    """The exported policy's action probabilities on a straight walk, and how far its own sampled walks get."""
    from policy.runtime import Policy, StepFunction  # the actor's runtime: what an actor would play
    from policy.sampling import log_softmax

    agent = Policy(StepFunction.from_file(policy))
    env = TMazeEnv(corridor_length=corridor)
    probs, values = np.zeros((corridor, 4)), np.zeros(corridor)
    for i in range(WALKS):
        obs, _ = env.reset(seed=10_000 + i)
        for t in range(corridor):
            logits, value = agent.step(obs[None], np.array([t == 0]))
            probs[t] += np.exp(log_softmax(logits[0]))
            values[t] += float(value[0])
            if t < corridor - 1:
                obs, *_ = env.step(3)
    probs /= WALKS
    values /= WALKS
    inner = probs[1 : corridor - 1].mean(0)  # position 0 clips left and the junction turns: neither is a walk step
    rng = np.random.default_rng(0)
    furthest = []
    for i in range(SAMPLED):
        obs, _ = env.reset(seed=20_000 + i)
        best = 0
        for t in range(TIME_LIMIT):
            logits, _ = agent.step(obs[None], np.array([t == 0]))
            obs, _, terminated, truncated, _ = env.step(int(rng.choice(4, p=np.exp(log_softmax(logits[0])))))
            best = max(best, env.position)
            if terminated or truncated:
                break
        furthest.append(best)
    return {
        "p_corridor": [round(float(x), 4) for x in inner],  # up, down, left, right
        "drift": round(float(inner[3] - inner[2]), 4),
        "p_right_by_position": [round(float(x), 4) for x in probs[:, 3]],
        "p_left_by_position": [round(float(x), 4) for x in probs[:, 2]],
        "value_by_position": [round(float(x), 4) for x in values],
        "furthest": sorted(furthest),
        "reached_junction": sum(b == corridor - 1 for b in furthest),
    }


def run_one(model: str, corridor: int, steps: int, seed: int, max_minutes: float) -> dict[str, Any]:
    """One short training run, then the exported policy's corridor profile."""
    name = f"tmaze-arrival-{model}-c{corridor}-s{seed}"
    run_dir = fresh_run_dir(name)
    log_path = run_dir.parent / f"{name}.log"
    flags = [
        "--env.id",
        "agalite/TMaze-v0",
        "--env.kwargs",
        json.dumps({"corridor_length": corridor}),
        *MODELS[model][1],
        "--seed",
        str(seed),
        "--total-steps",
        str(steps),
    ]
    load_before = os.getloadavg()[0]
    t0 = time.time()
    proc = launch(PRESET, run_dir, extra=flags, log_path=log_path)
    print(f"[tmaze_arrival] {model} corridor {corridor} seed {seed}: {steps:,} env steps in {run_dir}", flush=True)
    deadline = time.monotonic() + max_minutes * 60.0
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(1.0)
    code = stop(proc)
    policy = run_dir / "policy.onnx"
    if not policy.exists():
        raise RuntimeError(f"{name}: the run exported no policy (exit {code}); its log: {log_path}")
    status = json.loads((run_dir / "status.json").read_text())
    checkpoint = load_checkpoint(run_dir)
    weights = {} if checkpoint is None else checkpoint["model_state"]
    return_stats = {  # the value head's return statistics at the end (a lagging mean is why the values move)
        "return_mean": round(float(weights["value_norm.mean"]), 4) if "value_norm.mean" in weights else None,
        "return_std": round(float(weights["value_norm.var"]) ** 0.5, 4) if "value_norm.var" in weights else None,
    }
    row = {
        "model": model,
        "corridor": corridor,
        "steps": steps,
        "seed": seed,
        "env_steps": int(status.get("env_steps", 0)),
        "success_rate": status.get("success_rate"),
        "wall_s": round(time.time() - t0, 1),
        "load_before": round(load_before, 2),
        **return_stats,
        **corridor_profile(policy, corridor),
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    log_path.unlink(missing_ok=True)
    return row


def arrived(row: dict[str, Any]) -> bool:
    return row["reached_junction"] > 0


def write_markdown(result: dict[str, Any], path: Path) -> None:
    lines = [
        "# T-Maze before the junction: which way the policy drifts",
        "",
        "Written by `python -m bench.tmaze_arrival` (its docstring says how and why). Each row: one short run of the "
        "whole stack at the defaults, then its exported policy through ONNX Runtime. `p(left)`, `p(right)`: mean "
        "over the corridor's inner positions on a walk straight to the junction; `drift` = p(right) - p(left) "
        f"(a walk of {TIME_LIMIT:,} steps needs about +{ARRIVAL_DRIFT} to cover 100 positions); `furthest`: the "
        f"median and largest position that {SAMPLED} of its own sampled episodes reached; `arrived`: some of them "
        "reached the junction; `V`: the exported value on the straight walk, at the start and at positions 8-19 "
        "against it; `return mean / std`: the running return statistics the value head is standardised with, at the "
        "end.",
        "",
    ]
    rows = result["rows"]
    for corridor, steps in sorted({(r["corridor"], r["steps"]) for r in rows}):
        lines += [f"## Corridor {corridor}, {steps:,} env steps", ""]
        lines += ["| model | seeds | arrived | drift of the others (median) |", "|---|---|---|---|"]
        for model in MODELS:
            group = [r for r in rows if (r["model"], r["corridor"], r["steps"]) == (model, corridor, steps)]
            if not group:
                continue
            others = [r["drift"] for r in group if not arrived(r)]
            stuck = f"{statistics.median(others):+.3f}" if others else "-"
            lines.append(
                f"| {MODELS[model][0]} | {len(group)} | {sum(map(arrived, group))} of {len(group)} | {stuck} |"
            )
        lines += [
            "",
            "| model | seed | p(left) | p(right) | drift | furthest (median / max) | arrived | success rate | "
            "V(start) | V(8-19) - V(start) | return mean / std | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model in MODELS:
            group = sorted(
                (r for r in rows if (r["model"], r["corridor"], r["steps"]) == (model, corridor, steps)),
                key=lambda r: r["seed"],
            )
            for r in group:
                success = "-" if r["success_rate"] is None else f"{r['success_rate']:.2f}"
                v = r.get("value_by_position")  # rows written before it was recorded have none
                v0, v_past = ("-", "-") if v is None else (f"{v[0]:.2f}", f"{statistics.mean(v[8:20]) - v[0]:+.2f}")
                stats = "-" if r.get("return_mean") is None else f"{r['return_mean']:.2f} / {r['return_std']:.2f}"
                lines.append(
                    f"| {MODELS[model][0]} | {r['seed']} | {r['p_corridor'][2]:.3f} | {r['p_corridor'][3]:.3f} | "
                    f"{r['drift']:+.3f} | {statistics.median(r['furthest']):.0f} / {max(r['furthest'])} | "
                    f"{'yes' if arrived(r) else 'no'} | {success} | {v0} | {v_past} | {stats} | {r['load_before']} |"
                )
        lines.append("")
    lines += ["## Machine", "", machine_markdown(result["machine"]), ""]
    write_with_notes(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["agalite", "gru"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 9)))
    parser.add_argument("--corridor", type=int, default=100)
    parser.add_argument("--steps", type=int, default=150_000, help="env steps per run")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop a run that takes longer than this")
    parser.add_argument("--results", type=Path, default=RESULTS / "tmaze_arrival.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json; run nothing")
    args = parser.parse_args(argv)
    path: Path = args.results
    result = json.loads(path.read_text()) if path.exists() else {"rows": []}
    if not args.report_only:
        for model in args.models:
            for seed in args.seeds:
                row = run_one(model, args.corridor, args.steps, seed, args.max_minutes)
                key = (model, args.corridor, args.steps, seed)
                result["rows"] = [
                    r for r in result["rows"] if (r["model"], r["corridor"], r["steps"], r["seed"]) != key
                ]
                result["rows"].append(row)
                result["machine"] = machine_info()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result, indent=1) + "\n")
                print(
                    f"[tmaze_arrival]   drift {row['drift']:+.3f}, furthest {row['furthest']}, "
                    f"{'arrived' if arrived(row) else 'not arrived'}",
                    flush=True,
                )
    if not result["rows"]:
        parser.error(f"{path} holds no rows; run without --report-only first")
    write_markdown(result, path.with_suffix(".md"))
    print(f"[tmaze_arrival] wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
