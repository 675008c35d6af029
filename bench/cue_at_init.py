"""Does a fresh model already carry the T-Maze cue to the junction? A linear probe of its features, no training.

Run: ``python -m bench.cue_at_init``. Writes bench/results/cue_at_init.{json,md}. A minute or two on a CPU.

Why: PPO can learn a memory task two ways. If the features at the query step already hold the cue (a random
recurrent net as a reservoir), the policy head only has to learn to read them, from any segment. If they do not,
the gradient has to build the memory: write the cue, keep it, pass it up to the heads, and that gradient reaches the
cue only in segments that hold the whole episode. This bench tells the two apart for each model at the learner's own
config (preset, observation normalisation, episode-start input): T-Maze episodes walked straight to the junction
(observations from the real env, distractor bits included), the features at the junction step, and a linear
discriminant fitted on 2048 episodes and scored on 1024 others (accuracy 0.5: nothing there), plus the cue's share of
the features' variance (how loud the cue is beside everything else a head sees). For the gated transformers each
attention layer's read-out and each block's output (the last block's is the trunk output) are probed too, to show
where the cue is lost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import machine_info, machine_markdown
from bench.memory_probe import episodes, first_step_resets, model_for
from bench.report import write_with_notes
from envs.tmaze import TMazeEnv

RESULTS = Path(__file__).resolve().parent / "results"
CORRIDORS = (20, 50, 100)
MODELS = {
    "GRU-128": ("gru", ""),
    "AGaLiTe (default preset)": ("agalite", ""),
    # existing knobs that might let the cue through: the gate open (z ~ 0.88), a longer initial memory, the paper's grid
    "AGaLiTe, gate bias -2": ("agalite", "--model.gru-bias -2"),
    "AGaLiTe, memory horizon 256": ("agalite", "--model.memory-horizon 256"),
    "AGaLiTe, reference grid": ("agalite", "--model.frequencies reference"),
    # the episode's first step written whole into the emptied state (docs/models.md, "The first write")
    "AGaLiTe, first write full": ("agalite", "--model.first-write full"),
    "AGaLiTe, first write full, memory horizon 256": ("agalite", "--model.first-write full --model.memory-horizon 256"),
}
TRAIN, TEST = 2048, 1024


def linear_probe(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray) -> tuple[float, float]:
    """Held-out accuracy of a shrinkage linear discriminant, and the cue's share of the features' variance.

    The shrinkage (1e-3 of the mean variance on the diagonal) keeps the within-class covariance invertible when
    some features are constant (ReLU units that never fire).
    """
    m0, m1 = train[train_y == 0].mean(0), train[train_y == 1].mean(0)
    within = np.cov(np.concatenate([train[train_y == 0] - m0, train[train_y == 1] - m1]).T)
    within += 1e-3 * np.trace(within) / within.shape[0] * np.eye(within.shape[0])
    w = np.linalg.solve(within, m1 - m0)
    b = -w @ (m0 + m1) / 2
    accuracy = float(((test @ w + b > 0).astype(np.int64) == test_y).mean())
    share = float(((m1 - m0) ** 2).sum() / 4 / max(train.var(0).sum(), 1e-12))
    return accuracy, share


def features_at_junction(kind: str, args: str, corridor: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The features probed (trunk output; per layer for gated transformers) at the junction step, and the cues."""
    torch.manual_seed(seed)
    model = model_for(kind, args, TMazeEnv(corridor_length=corridor))
    obs, turns, at = episodes(corridor, TRAIN + TEST, seed=1_000 * seed)
    if model.obs_norm is not None:
        model.obs_norm.update(torch.from_numpy(obs[:, :TRAIN]))  # as the learner does from its first batch
    taps: dict[str, torch.Tensor] = {}

    def tap(name: str) -> Any:
        return lambda _module, _inputs, output: taps.__setitem__(name, output[0])

    hooks = [model.core.register_forward_hook(tap("trunk output"))]
    blocks = list(getattr(getattr(model.core, "stack", None), "blocks", []))
    for i, block in enumerate(blocks):
        hooks.append(block.attention.register_forward_hook(tap(f"layer {i + 1} read-out")))
        hooks.append(block.register_forward_hook(tap(f"block {i + 1} output")))
    with torch.no_grad():
        model(torch.from_numpy(obs), first_step_resets(*obs.shape[:2]), model.initial_state(obs.shape[1]))
    for h in hooks:
        h.remove()
    taps.pop(f"block {len(blocks)} output", None)  # the trunk output itself
    rows = torch.arange(obs.shape[1])
    picked = {k: v[torch.from_numpy(at), rows].double().numpy() for k, v in taps.items()}
    return picked, turns


def measure(kind: str, args: str, corridor: int, seeds: int) -> dict[str, dict[str, Any]]:
    """Per probed tap: accuracy and share per seed and their means."""
    per_tap: dict[str, dict[str, list[float]]] = {}
    for seed in range(1, seeds + 1):
        feats, turns = features_at_junction(kind, args, corridor, seed)
        for tap, x in feats.items():
            acc, share = linear_probe(x[:TRAIN], turns[:TRAIN], x[TRAIN:], turns[TRAIN:])
            entry = per_tap.setdefault(tap, {"accuracy": [], "share": []})
            entry["accuracy"].append(acc)
            entry["share"].append(share)
    return {
        tap: {**v, "mean_accuracy": float(np.mean(v["accuracy"])), "mean_share": float(np.mean(v["share"]))}
        for tap, v in per_tap.items()
    }


def report(rows: list[dict[str, Any]], info: dict[str, Any], seeds: int) -> str:
    lines = [
        "# The T-Maze cue in a fresh model's features at the junction",
        "",
        "Written by `python -m bench.cue_at_init` (the module docstring says why). No training: the learner's",
        "config at initialisation, episodes walked straight to the junction, a linear discriminant fitted on",
        f"{TRAIN} episodes and scored on {TEST} others (0.5: the cue is not there), and the cue's share of the",
        f"features' variance. Means over {seeds} init seeds (per seed in the JSON).",
        "",
        "| model | corridor | features | held-out accuracy | cue's share of variance |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        for tap, v in r["taps"].items():
            lines.append(
                f"| {r['model']} | {r['corridor']} | {tap} | {v['mean_accuracy']:.3f} | {v['mean_share']:.1e} |"
            )
    lines += ["", machine_markdown(info), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cue_at_init", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--corridors", default=",".join(map(str, CORRIDORS)), help="comma-separated corridor lengths")
    parser.add_argument("--seeds", type=int, default=3, help="init seeds per model and corridor")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for cue_at_init.{json,md}")
    args = parser.parse_args(argv)
    try:
        corridors = [int(c) for c in args.corridors.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--corridors takes integers, got {args.corridors!r}")
    if not corridors or any(not 2 <= c <= 256 for c in corridors):
        parser.error(f"--corridors must lie in 2..256, got {args.corridors!r}")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    rows: list[dict[str, Any]] = []
    for name, (kind, model_args) in MODELS.items():
        for corridor in corridors:
            taps = measure(kind, model_args, corridor, args.seeds)
            rows.append({"model": name, "corridor": corridor, "taps": taps})
            trunk = taps["trunk output"]
            print(f"{name} corridor {corridor}: trunk output accuracy {trunk['mean_accuracy']:.3f}", flush=True)
    info = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cue_at_init.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    write_with_notes(args.out / "cue_at_init.md", report(rows, info, args.seeds))
    print(f"wrote {args.out / 'cue_at_init.md'}")


if __name__ == "__main__":
    main()
