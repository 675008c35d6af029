"""``python -m export``: write a policy's ONNX step function (+ JSON metadata), from a checkpoint or a fresh model.

Examples::

    python -m export --checkpoint runs/x/checkpoint.pt --out deploy/ --verify
    python -m export --kind agalite --size paper --env agalite/TMaze-v0 --env-kwargs '{"corridor_length": 10}' \\
        --seed 0 --out /tmp/policy.onnx --verify
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from policy.metadata import PolicyError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("source (a checkpoint, or a fresh model)")
    src.add_argument("--checkpoint", help="learner checkpoint (.pt) to export")
    src.add_argument("--kind", choices=["agalite", "galite", "gtrxl", "lstm", "gru"], help="model kind (fresh model)")
    src.add_argument("--size", choices=["paper", "small"], default="paper", help="config preset (fresh model)")
    src.add_argument("--config", default="{}", help="JSON object of ModelConfig overrides (fresh model)")
    src.add_argument("--env", help="environment id whose spaces size the model (fresh model)")
    src.add_argument("--env-kwargs", default="{}", help="JSON object of keyword arguments for the environment")
    src.add_argument("--seed", type=int, default=0, help="torch seed of the fresh model's initialisation")
    p.add_argument("--out", required=True, help="output directory (policy.onnx + policy.json) or a path ending .onnx")
    p.add_argument("--policy-version", type=int, default=None, help="version recorded in the metadata")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's pinned one)")
    p.add_argument("--verify", action="store_true", help="check torch vs ONNX Runtime parity (B=1 and B=8)")
    p.add_argument("--verify-steps", type=int, default=300, help="steps of the parity check")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference that passes --verify")
    return p


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{flag}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise SystemExit(f"{flag}: expected a JSON object, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    from export import DEFAULT_OPSET, check_parity, export_step_function, load_actor_critic_from_checkpoint, save_policy

    opset = args.opset or DEFAULT_OPSET
    if args.checkpoint:
        if args.kind or args.env:
            raise SystemExit("give either --checkpoint or --kind/--env, not both")
        ck = load_actor_critic_from_checkpoint(args.checkpoint)
        ac, obs_space, act_space, version = ck.ac, ck.observation_space, ck.action_space, ck.policy_version
    else:
        if not (args.kind and args.env):
            raise SystemExit("without --checkpoint, --kind and --env are required")
        import envs
        from models.registry import build_actor_critic, paper_config, small_config

        preset = paper_config if args.size == "paper" else small_config
        cfg = preset(args.kind, **_json_object(args.config, "--config"))
        obs_space, act_space = envs.env_spaces(args.env, **_json_object(args.env_kwargs, "--env-kwargs"))
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
            f"  parity B={batch}: {r['steps']} steps, {r['resets']} resets, max |d {exported.policy_metadata.outputs[0]}| {r['logits']:.3g}, "
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
