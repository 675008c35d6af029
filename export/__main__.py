"""``python -m export``: write a policy's ONNX step function (+ JSON metadata), from a checkpoint or a fresh model.

Examples::

    python -m export --checkpoint runs/x/checkpoint.pt --out deploy/ --verify
    python -m export --kind agalite --size paper --env agalite/TMaze-v0 --env-kwargs '{"corridor_length": 10}' \\
        --seed 0 --out /tmp/policy.onnx --verify
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Literal

import torch
import tyro

from envs.kwargs import parse_env_kwargs
from policy.metadata import PolicyError


@dataclass
class ExportArgs:
    """Export a policy's ONNX step function (+ JSON metadata), from a checkpoint or a fresh model."""

    out: str
    """Output directory (policy.onnx + policy.json) or a path ending in .onnx."""
    checkpoint: str | None = None
    """Learner checkpoint (.pt) to export."""
    kind: str | None = None
    """Model kind of a fresh model (agalite, galite, gtrxl, lstm, gru)."""
    size: Literal["paper", "small"] = "paper"
    """Size preset of a fresh model."""
    config: str = "{}"
    """JSON object of ModelConfig overrides (fresh model)."""
    env: str | None = None
    """Environment id whose spaces size a fresh model."""
    env_kwargs: str = "{}"
    """JSON object of keyword arguments for the environment."""
    seed: int = 0
    """Torch seed of a fresh model's initialisation (and of the parity check)."""
    policy_version: int | None = None
    """Version recorded in the metadata (default: the checkpoint's, 0 for a fresh model)."""
    opset: int | None = None
    """ONNX opset (default: the exporter's pinned one)."""
    verify: bool = False
    """Check torch vs ONNX Runtime parity (B=1 and B=8)."""
    verify_steps: int = 300
    """Steps of the parity check."""
    tolerance: float = 1e-4
    """Largest absolute difference that passes --verify."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(ExportArgs, args=argv, description=__doc__)
    torch.set_num_threads(1)
    from export import DEFAULT_OPSET, check_parity, export_step_function, load_actor_critic_from_checkpoint, save_policy

    opset = args.opset or DEFAULT_OPSET
    if args.checkpoint:
        if args.kind or args.env:
            raise SystemExit("error: give either --checkpoint or --kind/--env, not both")
        ck = load_actor_critic_from_checkpoint(args.checkpoint)
        ac, obs_space, act_space, version = ck.ac, ck.observation_space, ck.action_space, ck.policy_version
    else:
        if not (args.kind and args.env):
            raise SystemExit("error: without --checkpoint, --kind and --env are required")
        import envs
        from models.registry import build_actor_critic, paper_config, small_config

        preset = paper_config if args.size == "paper" else small_config
        try:
            cfg = preset(args.kind, **parse_env_kwargs(args.config, "--config"))
            env_kwargs = parse_env_kwargs(args.env_kwargs, "--env-kwargs")
            obs_space, act_space = envs.env_spaces(args.env, **env_kwargs)
        except (ValueError, envs.EnvSetupError) as err:
            raise SystemExit(f"error: {err}") from None
        torch.manual_seed(args.seed)
        ac = build_actor_critic(cfg, obs_space, act_space)
        version = 0
    if args.policy_version is not None:
        version = args.policy_version

    t0 = time.perf_counter()
    exported = export_step_function(
        ac, policy_version=version, opset=opset, observation_space=obs_space, action_space=act_space
    )
    took = time.perf_counter() - t0
    path = save_policy(exported, args.out)
    meta = exported.policy_metadata
    print(
        f"wrote {path} ({len(exported.onnx_bytes)} bytes, export {took * 1000:.0f} ms) and {path.with_suffix('.json')}"
    )
    print(
        f"  kind {meta.model_kind}, policy version {meta.policy_version}, opset {meta.opset}, "
        f"state {meta.state_bytes_per_env} bytes/env ({', '.join(f'{s.name}{list(s.shape)}' for s in meta.state)})"
    )
    print(f"  sha256 {exported.sha256}  graph {exported.graph_sha256}")
    if not args.verify:
        return 0
    ok = True
    for batch in (1, 8):
        r = check_parity(ac, exported.onnx_bytes, steps=args.verify_steps, batch=batch, seed=args.seed)
        worst = max(r["logits"], r["value"])
        passed = worst < args.tolerance and r["state_mismatch"] == 0
        ok &= passed
        print(
            f"  parity B={batch}: {r['steps']} steps, {r['resets']} resets, "
            f"max |d {exported.policy_metadata.outputs[0]}| {r['logits']:.3g}, "
            f"max |d value| {r['value']:.3g}, max |d state| {r['state']:.3g}, "
            f"int/bool state mismatches {r['state_mismatch']} -> {'ok' if passed else 'FAILED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
