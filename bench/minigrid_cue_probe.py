"""Does a trained MiniGrid Memory policy look at the cue, and does its state still hold it at the decision?

Run: ``python -m bench.minigrid_cue_probe LABEL=runs/x/policy.onnx [LABEL=...] --episodes 600``. Writes
bench/results/minigrid_cue_probe.{json,md} (rows merge by label). A minute or two per policy on a CPU.

Why: on MiniGrid Memory the agent starts facing away from the cue (MiniGrid puts it at one of four cells, the start
room's middle row and the corridor's first cell, facing east; the cue lies in the room's corner, in view at the start
only from the room's first column), so a policy must learn to turn back and look before its memory can matter in the
other episodes. A success rate at chance says neither which of the two
failed nor whether the recurrent state ever carried the cue. This plays an exported policy with ONNX Runtime (as an
actor does; the view, one-hot or pixels, is read off the policy's observation shape), actions sampled, and reports per
policy: the success rate; the share of episodes in which the cue was ever in the agent's sight (MiniGrid's
``agent_sees``, occlusion included) before the episode ended; and a held-out linear probe (the shrinkage linear
discriminant of ``bench.cue_at_init``, fitted on the first half of the episodes, accuracy on the second) of the cue's
kind from the recurrent state at the last step, where the agent has chosen. A probe near chance with the cue seen
says the state lost it (or never took it in); a low share seen says the policy never learned to look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

import envs  # noqa: F401  (registers the agalite/ ids)
from bench.cue_at_init import linear_probe
from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from envs.minigrid import MiniGridMemoryEnv
from policy.runtime import Policy, StepFunction

RESULTS = Path(__file__).resolve().parent / "results"
ENV_ID = "agalite/MiniGrid-MemoryS7-v0"


def play(path: Path, episodes: int, seed: int, max_steps: int | None = None) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``path``'s policy (``max_steps``: the env's limit, MiniGrid's when None) and
    summarise whether the cue was seen, success, and what the last state says of the cue."""
    policy = Policy(StepFunction.from_file(path), 1)
    view = "pixels" if len(policy.metadata.obs_shape) == 3 else "one-hot"
    kwargs: dict[str, Any] = {"view": view} if max_steps is None else {"view": view, "max_steps": max_steps}
    env = gymnasium.make(ENV_ID, **kwargs)
    adapter = env.unwrapped
    assert isinstance(adapter, MiniGridMemoryEnv)
    inner = adapter.minigrid
    rng = np.random.default_rng(seed)
    cues, seen, success, states = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 100_000 + episode)
        policy.reset_state()
        cue_cell = (1, inner.height // 2 - 1)
        cues.append(type(inner.grid.get(*cue_cell)).__name__ == "Key")
        looked = bool(inner.agent_sees(*cue_cell))
        first = True
        while True:
            action, _, _ = policy.act(obs[None], np.array([first]), rng)
            first = False
            obs, _, terminated, truncated, info = env.step(int(action[0]))
            if terminated or truncated:
                break
            looked = looked or bool(inner.agent_sees(*cue_cell))
        seen.append(looked)
        success.append(float(info.get("success", 0.0)))
        # the state after the last policy step (the one that chose the final action): read once per episode
        states.append(np.concatenate([np.ravel(v) for v in policy.state.values()]))
    env.close()
    y = np.array(cues, dtype=np.int64)
    x = np.array(states, dtype=np.float64)
    half = episodes // 2
    if len(set(y[:half].tolist())) < 2:
        raise ValueError(f"the first {half} episodes all had the same cue: play more episodes to fit the probe")
    accuracy, _ = linear_probe(x[:half], y[:half], x[half:], y[half:])
    majority = float(max(y[half:].mean(), 1 - y[half:].mean()))
    return {
        "view": view,
        "episodes": episodes,
        "success": float(np.mean(success)),
        "cue_seen": float(np.mean(seen)),
        "probe_accuracy": accuracy,
        "probe_majority": majority,
        "state_size": int(x.shape[1]),
    }


def report(rows: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [
        "# Does a MiniGrid Memory S7 policy look at the cue, and does its state hold it?",
        "",
        "Written by `python -m bench.minigrid_cue_probe` (its docstring says why and how). Each policy plays "
        "its episodes with actions sampled; `cue seen`: share of episodes in which the cue was in sight before the "
        "end; `probe`: held-out accuracy of a linear read-out of the cue's kind from the recurrent state at the "
        "last step (`majority`: the better constant guess on the same episodes).",
        "",
        machine_markdown(info),
        "",
        "| policy | view | episodes | success | cue seen | probe | majority |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in sorted(rows.items()):
        lines.append(
            f"| {label} | {r['view']} | {r['episodes']} | {r['success']:.2f} | {r['cue_seen']:.2f} | "
            f"{r['probe_accuracy']:.2f} | {r['probe_majority']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policies", nargs="+", metavar="LABEL=PATH", help="exported policy.onnx files to probe")
    parser.add_argument("--episodes", type=int, default=600, help="episodes per policy (half fit the probe)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="episode step limit (default: MiniGrid's, 5 x size^2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "minigrid_cue_probe")
    args = parser.parse_args(argv)
    pairs = []
    for item in args.policies:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"expected LABEL=PATH to an exported policy.onnx, got {item!r}")
        pairs.append((label, Path(path)))
    if args.episodes < 20:
        parser.error(f"--episodes must be at least 20, got {args.episodes}")
    out_json = args.out.with_suffix(".json")
    data = json.loads(out_json.read_text()) if out_json.is_file() else {"rows": {}}
    data["machine"] = machine_info()
    for label, path in pairs:
        try:
            data["rows"][label] = play(path, args.episodes, args.seed, args.max_steps)
        except ValueError as err:
            parser.error(f"{label}: {err}")
        print(f"[cue probe] {label}: {json.dumps(data['rows'][label])}", flush=True)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(data, indent=1) + "\n")
        write_with_notes(args.out.with_suffix(".md"), report(data["rows"], data["machine"]))


if __name__ == "__main__":
    main()
