"""``python -m actor.play POLICY.onnx --env ID --episodes N``: watch an exported policy play, without torch.

Prints one line per episode (return, length, success where the env reports ``info["success"]``) and the means.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import tyro

import envs
from envs.kwargs import parse_env_kwargs
from policy.metadata import PolicyError, action_space_mismatch, space_to_dict
from policy.runtime import Policy, StepFunction, providers_for
from policy.sampling import clip_action


@dataclass
class EpisodeResult:
    episode_return: float
    length: int
    success: float | None


def play(
    step_function: StepFunction,
    env_id: str,
    episodes: int,
    *,
    seed: int = 0,
    env_kwargs: dict | None = None,
    greedy: bool = False,
) -> list[EpisodeResult]:
    """Run ``episodes`` episodes of ``env_id`` with one env, sampling with a Generator seeded by ``seed``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = envs.make_env(env_id, **(env_kwargs or {}))
    try:
        meta = step_function.metadata
        got = space_to_dict(env.observation_space)
        if tuple(got["shape"]) != meta.obs_shape or got["dtype"] != meta.obs_dtype:
            raise PolicyError(
                f"env {env_id!r} observes {tuple(got['shape'])} {got['dtype']}, the policy expects "
                f"{meta.obs_shape} {meta.obs_dtype}"
            )
        mismatch = action_space_mismatch(env.action_space, meta.action_kind, meta.num_actions)
        if mismatch:
            raise PolicyError(f"env {env_id!r} cannot take this policy's actions: {mismatch}")
        policy = Policy(step_function, batch=1)
        rng = np.random.default_rng(seed)
        results = []
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            reset = np.ones(1, dtype=bool)  # first step of an episode: the graph clears the memory
            total, length, done = 0.0, 0, False
            while not done:
                action, _, _ = policy.act(np.asarray(obs)[None], reset, rng, greedy=greedy)
                obs, reward, terminated, truncated, info = env.step(clip_action(action[0], env.action_space))
                total += float(reward)
                length += 1
                done = terminated or truncated
                reset = np.zeros(1, dtype=bool)
            success = info.get("success")
            results.append(EpisodeResult(total, length, None if success is None else float(success)))
        return results
    finally:
        env.close()


@dataclass
class PlayArgs:
    """Watch an exported policy play, without torch."""

    policy: tyro.conf.Positional[str]
    """Policy .onnx file (or a directory holding policy.onnx)."""
    env: str
    """Environment id, e.g. agalite/TMaze-v0."""
    episodes: int = 10
    """Number of episodes."""
    seed: int = 0
    """Seed of the env resets and of action sampling."""
    env_kwargs: str = "{}"
    """JSON object for the env, e.g. '{"corridor_length": 10}'."""
    greedy: bool = False
    """Take the most likely action instead of sampling."""
    threads: int = 1
    """ONNX Runtime intra-op threads."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where ONNX Runtime runs the policy (cuda needs onnxruntime-gpu)."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(PlayArgs, args=argv, description=__doc__)
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs, "--env-kwargs")
        fn = StepFunction.from_file(args.policy, intra_op_threads=args.threads, providers=providers_for(args.device))
        results = play(fn, args.env, args.episodes, seed=args.seed, env_kwargs=env_kwargs, greedy=args.greedy)
    except (PolicyError, envs.UnknownEnvironmentError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = fn.metadata
    print(f"policy {args.policy}: {meta.model_kind}, version {meta.policy_version}; env {args.env} {env_kwargs}")
    for i, r in enumerate(results):
        success = "n/a" if r.success is None else f"{r.success:g}"
        print(f"episode {i}: return {r.episode_return:.3f}  length {r.length}  success {success}")
    successes = [r.success for r in results if r.success is not None]
    mean_success = f"{np.mean(successes):.3f}" if successes else "n/a"
    print(
        f"mean over {len(results)} episodes: return {np.mean([r.episode_return for r in results]):.3f}  "
        f"length {np.mean([r.length for r in results]):.1f}  success {mean_success}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
