"""Can the model learn to carry the T-Maze cue down the corridor, with RL taken out? A supervised probe.

Run: ``python -m bench.memory_probe --kinds gru,agalite --corridors 20,50,100``. Writes
bench/results/memory_probe.{json,md} (rows merge by label and corridor). Minutes on a CPU.

Why: a PPO run on the T-Maze mixes three things (finding the junction, the credit for the turn, and holding the cue) and
its seeds spread 3-10x, so telling two models' memories apart takes many 100k-step runs per setting. Here the real
actor-critic (the learner's own config: preset, encoder, observation normalisation, the episode-start input) reads whole
T-Maze episodes walked to the junction (straight, or wandering with ``--wander``; observations from the real env,
distractor bits included) and is trained by cross-entropy on its policy logits at the junction step only: the turn the
cue asked for. BPTT runs over the whole episode, so what remains is whether the gradient finds the cue and the state
keeps it. Reported: updates (batches of 16 episodes, Adam at lr 1e-3, gradient norm clipped at 0.5, as the PPO defaults)
until the accuracy on 512 fresh episodes reaches 0.95, and the accuracy at the end.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.machine import machine_info, machine_markdown
from bench.peer.run import median_or_none
from bench.report import write_with_notes
from envs.tmaze import CUE_BITS, DOWN, LEFT, POSITION_BITS, RIGHT, UP, TMazeEnv, decode_gray
from learner.cli import parse_config
from models.actor_critic import ActorCritic
from models.config import ModelConfig
from models.registry import build_actor_critic

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.95


def episodes(corridor: int, count: int, seed: int, wander: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` T-Maze episodes walked to the junction: observations [T, count, D], the correct turns, and the step
    at which each reached the junction (where the turn is asked for).

    ``wander`` 0 walks straight right (the junction at step ``corridor - 1`` in every episode). Above 0, each step
    in the corridor is another action (left, or up/down: no-ops) with that probability, as a policy still learning
    walks: the junction comes at a different step in each episode, which a memory whose read-out depends on the
    step count's parity (AGaLiTe's cosines) must cope with, as in the RL task. Sequences are padded to a common
    length with steps after the junction (no-ops there), which come after the only step the loss looks at.
    """
    env = TMazeEnv(corridor_length=corridor)
    length = corridor if wander == 0 else 3 * corridor
    obs = np.zeros((length, count, env.observation_space.shape[0]), dtype=np.float32)
    turns = np.empty(count, dtype=np.int64)
    decide = np.empty(count, dtype=np.int64)
    rng = np.random.default_rng(seed)
    i, attempt = 0, 0
    while i < count:
        o, info = env.reset(seed=seed + attempt)
        attempt += 1
        rows, at = [o], None
        for t in range(1, length):
            wandering = at is None and rng.random() < wander
            action = int(rng.choice([UP, DOWN, LEFT])) if wandering else RIGHT  # right: a no-op at the junction
            o, *_ = env.step(action)
            rows.append(o)
            if at is None and decode_gray(o[CUE_BITS : CUE_BITS + POSITION_BITS]) == corridor - 1:
                at = t
        if at is None:  # wandered too long: draw another episode
            continue
        obs[:, i], turns[i], decide[i] = np.stack(rows), info["cue"], at
        i += 1
    return obs, turns, decide


def model_config(kind: str, model_args: str) -> ModelConfig:
    argv = ["--model.kind", kind, *(["--model.rnn-hidden", "128"] if kind in ("gru", "lstm") else [])]
    return parse_config([*argv, *shlex.split(model_args)], "memory probe").model


def model_for(kind: str, model_args: str, env: TMazeEnv) -> ActorCritic:
    return build_actor_critic(model_config(kind, model_args), env.observation_space, env.action_space)


def first_step_resets(length: int, batch: int) -> torch.Tensor:
    """Reset flags [length, batch] for batches of whole episodes: each row's first step starts an episode."""
    reset = torch.zeros(length, batch, dtype=torch.bool)
    reset[0] = True
    return reset


def probe(
    kind: str, model_args: str, corridor: int, seed: int, max_updates: int, every: int, wander: float = 0.0
) -> dict[str, Any]:
    """One training run; returns updates to the target accuracy (None: not within ``max_updates``) and the curve."""
    torch.manual_seed(seed)
    train_obs, train_turn, train_at = episodes(corridor, 4096, seed=10_000 * seed, wander=wander)
    eval_obs, eval_turn, eval_at = episodes(corridor, 512, seed=10_000 * seed + 5_000, wander=wander)
    length = train_obs.shape[0]
    model = model_for(kind, model_args, TMazeEnv(corridor_length=corridor))
    settings = model.cfg.used()
    if model.obs_norm is not None:
        model.obs_norm.update(torch.from_numpy(train_obs))  # as the learner does from its first batch
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    reset, eval_reset = first_step_resets(length, 16), first_step_resets(length, 512)
    x_eval, y_eval = torch.from_numpy(eval_obs), torch.from_numpy(eval_turn)
    rows16, rows512 = torch.arange(16), torch.arange(512)
    rng = np.random.default_rng(seed)
    curve: list[tuple[int, float]] = []
    reached: int | None = None
    start = time.perf_counter()
    for update in range(1, max_updates + 1):
        idx = rng.choice(train_obs.shape[1], 16, replace=False)
        logits, _, _ = model(torch.from_numpy(train_obs[:, idx]), reset, model.initial_state(16))
        loss = F.cross_entropy(logits[torch.from_numpy(train_at[idx]), rows16], torch.from_numpy(train_turn[idx]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        if update % every == 0:
            with torch.no_grad():
                logits, _, _ = model(x_eval, eval_reset, model.initial_state(512))
            acc = float((logits[torch.from_numpy(eval_at), rows512].argmax(-1) == y_eval).float().mean())
            curve.append((update, acc))
            if acc >= TARGET and reached is None:
                reached = update
                break
    return {"updates_to_target": reached, "final_accuracy": curve[-1][1], "curve": curve,
            "seconds": round(time.perf_counter() - start, 1), "model": settings}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="gru,agalite", help="model kinds (comma-separated)")
    parser.add_argument("--corridors", default="20,50,100", help="T-Maze corridor lengths (comma-separated)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="seeds run: first-seed .. first-seed + seeds - 1")
    parser.add_argument("--max-updates", type=int, default=2000)
    parser.add_argument("--every", type=int, default=25, help="updates between accuracy checks")
    parser.add_argument(
        "--wander",
        type=float,
        default=0.0,
        help="probability of a step that is not 'right' in the corridor (the junction comes later)",
    )
    parser.add_argument("--model-args", default="", help="learner flags for the model, e.g. '--model.num-heads 4'")
    parser.add_argument("--label", default=None, help="row label (default: the kind, plus the model args)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for memory_probe.{json,md}")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, one per core; use 1 beside other work on a small machine)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = args.out / "memory_probe.json"
    stored: dict[str, Any] = json.loads(path.read_text())["rows"] if path.exists() else {}
    for kind in args.kinds.split(","):  # refused before any training rather than after it
        label = args.label or " ".join([kind, args.model_args]).strip()
        used = model_config(kind, args.model_args).used()
        for corridor in args.corridors.split(","):
            _refuse_another_model(stored, f"{label} | {int(corridor)} | {args.wander}", used)
    for kind in args.kinds.split(","):
        label = args.label or " ".join([kind, args.model_args]).strip()
        for corridor in (int(c) for c in args.corridors.split(",")):
            runs = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run = probe(kind, args.model_args, corridor, seed, args.max_updates, args.every, args.wander)
                runs.append({"seed": seed, **run})
                print(f"{label} corridor {corridor} seed {seed}: updates to {TARGET} {run['updates_to_target']}, "
                      f"accuracy {run['final_accuracy']:.3f} ({run['seconds']} s)", flush=True)  # fmt: skip
            row = {"label": label, "corridor": corridor, "wander": args.wander, "max_updates": args.max_updates,
                   "runs": runs}  # fmt: skip
            save_row(args.out, f"{label} | {corridor} | {args.wander}", row)


def _refuse_another_model(rows: dict[str, Any], key: str, model: dict[str, Any] | None) -> None:
    """A label names the flags, not the model they build: after a default changed, the same label would pool two
    models' seeds in one median. Rows written before runs recorded their model count as another model."""
    if any(r.get("model") != model for r in rows.get(key, {}).get("runs", [])):
        raise SystemExit(f"error: the row {key!r} holds runs of another model; pass --label to name this one")


def save_row(out: Path, key: str, row: dict[str, Any]) -> None:
    """Merge one row into memory_probe.json (its seeds replace the same seeds, others stay) and rewrite the report.

    Read, merged and written under a lock, right after the row is measured: two probes run side by side (one per
    setting) each keep the other's rows, and a probe stopped part-way keeps the rows it finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "memory_probe.json"
    with open(out / ".memory_probe.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows: dict[str, Any] = json.loads(path.read_text())["rows"] if path.exists() else {}
        _refuse_another_model(rows, key, row["runs"][0].get("model"))
        new_seeds = {r["seed"] for r in row["runs"]}
        kept = [r for r in rows.get(key, {}).get("runs", []) if r.get("seed") not in new_seeds]
        rows[key] = {**row, "runs": sorted(kept + row["runs"], key=lambda r: r.get("seed", 0))}
        info = machine_info()
        path.write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
        write_with_notes(out / "memory_probe.md", report(rows, info))


def report(rows: dict[str, Any], info: dict[str, Any]) -> str:
    lines = ["# Memory probe: the T-Maze cue carried down the corridor, supervised", "",
             (__doc__ or "").split("\n\n")[2].replace("\n", " "), "", machine_markdown(info), "",
             "| model | corridor | wander | updates to 0.95 per seed (median) | accuracy at the end per seed |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in sorted(rows.values(), key=lambda r: (r.get("wander", 0.0), r["corridor"], r["label"])):
        steps = [r["updates_to_target"] for r in row["runs"]]
        shown = " / ".join("never" if s is None else str(s) for s in steps)
        med = median_or_none(steps, len(steps))
        median = "never" if med is None else f"{med:g}"
        accs = " / ".join(f"{r['final_accuracy']:.2f}" for r in row["runs"])
        lines.append(f"| {row['label']} | {row['corridor']} | {row.get('wander', 0.0):g} | {shown} ({median}; "
                     f"cap {row['max_updates']}) | {accs} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
