"""Where should the learner's values come from: the actors (computed while acting) or a recomputation?

The actors' values come from the policy that acted, which is one or two versions behind the learner's weights when
the learner trains on them (policy lag); the learner can instead recompute every value with its current weights,
at the cost of one forward pass (no gradient) over the batch per update. The actor's only value-only ONNX call per
segment is ``values[T]`` (the tail bootstrap), needed only if the actors' values are used.

This runs the default preset's model in-process: an ONNX Runtime policy one version behind the learner collects
each batch (lag 1, the steady state of the running system), the learner updates on it, and per update it records
(1) how far the actors' values are from the recomputed ones, relative to the spread of the returns, and how much
the GAE advantages change; (2) what the recomputation costs as a share of the update; (3) what ``values[T]`` costs
as a share of collecting a segment. Results: ``bench/results/value_source.{json,md}``.

    .venv/bin/python -m bench.value_source [--updates 60]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from actor.rollout import SegmentCollector
from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from envs import env_spaces, make_env
from learner.config import load_preset
from learner.ppo import batch_from_segments, compute_gae
from learner.publisher import PolicyPublisher
from learner.trainer import Trainer
from policy.runtime import Policy, StepFunction

RESULTS = Path(__file__).resolve().parent / "results"


class _RecordingPolicy(Policy):
    """A Policy that keeps the values it computes while acting (what an actor could send) and times the value-only
    ONNX calls an actor makes (truncation bootstraps, and the tail value ``values[T]`` when it is asked for)."""

    value_seconds = 0.0

    def __init__(self, step_function: StepFunction, batch: int) -> None:
        super().__init__(step_function, batch)
        self.acted_values: list[np.ndarray] = []

    def act(self, obs, reset, rng, *, greedy=False):
        action, logp, value = super().act(obs, reset, rng, greedy=greedy)
        self.acted_values.append(value)
        return action, logp, value

    def value_of(self, obs: np.ndarray, reset: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        try:
            return super().value_of(obs, reset)
        finally:
            type(self).value_seconds += time.perf_counter() - t


def measure(updates: int, preset: str, seed: int) -> dict:
    cfg = load_preset(preset)
    torch.set_num_threads(1)
    obs_space, act_space = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
    trainer = Trainer(cfg, obs_space, act_space)
    publisher = PolicyPublisher.export(trainer.model, version=0, observation_space=obs_space, action_space=act_space)
    fn = StepFunction.from_bytes(publisher.exported.onnx_bytes)
    envs = [make_env(cfg.env.id, **cfg.env.kwargs_dict()) for _ in range(cfg.batch_envs)]
    collector = SegmentCollector(envs, cfg.segment_length, seed)
    policy = _RecordingPolicy(fn, cfg.batch_envs)
    rows = []
    pending: dict[str, np.ndarray] | None = None
    for _ in range(updates):
        _RecordingPolicy.value_seconds = 0.0
        policy.acted_values = []
        t = time.perf_counter()
        seg = collector.collect(policy, actor_id="bench", run_id="bench", seq=0, policy_version=trainer.version)
        tail = policy.value_of(seg.obs[-1], seg.reset[-1])  # values[T], the one value-only call per segment
        collect_s = time.perf_counter() - t
        value_s = _RecordingPolicy.value_seconds
        batch = batch_from_segments([seg], trainer.device)
        t = time.perf_counter()
        with torch.no_grad():
            _, recomputed, _ = trainer.model(batch.obs, batch.reset, batch.initial_state)
        recompute_s = time.perf_counter() - t
        actor_values = torch.from_numpy(np.stack([*policy.acted_values, tail]))
        gamma, lam = cfg.ppo.gamma, cfg.ppo.gae_lambda
        args = (batch.terminated, batch.truncated, batch.bootstrap_values, gamma, lam)
        adv_learner, ret_learner = compute_gae(batch.rewards, recomputed, *args)
        adv_actor, _ = compute_gae(batch.rewards, actor_values, *args)
        spread = float(ret_learner.std()) or float("nan")
        t = time.perf_counter()
        stats = trainer.update([seg])  # the weights move on; the acting policy stays one version behind
        update_s = time.perf_counter() - t
        rows.append(
            {
                "version": trainer.version,
                "value_gap_over_return_std": float((recomputed - actor_values).abs().mean()) / spread,
                "advantage_correlation": float(np.corrcoef(adv_learner.flatten(), adv_actor.flatten())[0, 1]),
                "advantage_gap_over_std": float((adv_learner - adv_actor).abs().mean())
                / (float(adv_learner.std()) or float("nan")),
                "recompute_share_of_update": recompute_s / (update_s + recompute_s),
                "tail_value_share_of_collect": value_s / collect_s,
                "explained_variance": stats.get("losses/explained_variance", float("nan")),
            }
        )
        # the acting policy takes the weights of the previous update, so that the next batch is acted one version
        # behind the weights it is trained with (lag 1)
        if pending is not None:
            fn = fn.with_weights(pending)
            policy.swap(fn)
        pending = publisher.set_weights(trainer.model, trainer.version).weights
    load = [round(x, 2) for x in os.getloadavg()]
    return {"preset": preset, "seed": seed, "updates": updates, "rows": rows, "machine": machine_info(), "load": load}


def summarise(res: dict) -> dict:
    rows = res["rows"]
    early, late = rows[: len(rows) // 3], rows[-(len(rows) // 3) :]

    def med(part: list[dict], key: str) -> float:
        return float(np.nanmedian([r[key] for r in part]))

    keys = (
        "value_gap_over_return_std",
        "advantage_correlation",
        "advantage_gap_over_std",
        "recompute_share_of_update",
        "tail_value_share_of_collect",
    )
    return {k: {"early": med(early, k), "late": med(late, k), "all": med(rows, k)} for k in keys}


def markdown(res: dict, summary: dict) -> str:
    lines = [
        "# Value source: the actors' values or the learner's recomputation",
        "",
        f"Preset `{res['preset']}` (seed {res['seed']}), {res['updates']} updates, each on one batch collected by an "
        "ONNX Runtime policy one version behind the learner (lag 1). Medians over the first third / last third / "
        "all updates. Produced by `python -m bench.value_source`.",
        "",
        machine_markdown(res["machine"]) + f"; load average (1/5/15 min) at the end: {res['load']}. "
        "The ratios compare parts of the same run; only the two timing rows depend on the load.",
        "",
        "| quantity | early | late | all |",
        "|---|---|---|---|",
    ]
    names = {
        "value_gap_over_return_std": "mean abs(actor value - recomputed value) / std(returns)",
        "advantage_correlation": "correlation of GAE advantages (actor values vs recomputed)",
        "advantage_gap_over_std": "mean abs advantage difference / std(advantages)",
        "recompute_share_of_update": "recomputation forward / (update + recomputation), learner time",
        "tail_value_share_of_collect": "value-only ONNX calls (values[T] + truncations) / segment collection time",
    }
    for key, name in names.items():
        s = summary[key]
        lines.append(f"| {name} | {s['early']:.3f} | {s['late']:.3f} | {s['all']:.3f} |")
    lines += [
        "",
        "Decision: the learner recomputes every value with its current weights (one no-gradient forward pass per "
        "update, the share measured above) and the actors send none. At the system's usual lag of one version the "
        "actors' values are measurably off the current ones (row 1) and move the advantages (row 3), most while "
        "the values are still being learned; PPO's value clipping and the advantages should start from the "
        "weights being trained. The actors' value-only ONNX call per segment (``values[T]``) and the ``values`` "
        "array of every segment are gone. The one value still computed by an actor is the bootstrap of a "
        "truncated episode: its final observation never reaches the learner (the next observation is the new "
        "episode's), so that value must come from the acting policy.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--preset", default="tmaze-agalite")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    res = measure(args.updates, args.preset, args.seed)
    summary = summarise(res)
    res["summary"] = summary
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "value_source.json").write_text(json.dumps(res, indent=2))
    text = markdown(res, summary)
    write_with_notes(RESULTS / "value_source.md", text)
    print(text)


if __name__ == "__main__":
    main()
