"""Train Sample Factory 2.1.1 on one of this project's gymnasium envs, then evaluate the final checkpoint.

Runs inside ``bench/peer/.venv-sf`` (Sample Factory's own environment, made by ``setup_sf.sh``) with the
repository root on ``PYTHONPATH`` so that ``envs`` builds exactly the environments our stack trains on:

    PYTHONPATH=. bench/peer/.venv-sf/bin/python bench/peer/sf_train.py --env-id agalite/DelayedRecall-v0 \
        --env-kwargs '{"num_symbols": 4, "delay": 20}' --config tuned --seed 1 --steps 1000000 \
        --train-dir runs/peer/sf --experiment dr-tuned-s1

Why a script of our own instead of ``sf_examples.train_gym_env``: the env must come from ``envs.make_env`` (our ids
and kwargs, our wrappers), ``info["success"]`` must reach Sample Factory's summaries, and Sample Factory's own
checkpoint loader (``torch.load`` without ``weights_only=False``) fails under torch >= 2.6, so evaluation loads the
checkpoint here. The env factory never forwards Sample Factory's ``render_mode`` to the env constructor (our envs
take no such argument).

Model: GRU with 128 units (``--rnn_size 128``) on Sample Factory's default encoder for vector observations (an MLP
of 512-512, ELU), which is Sample Factory's, not ours; for image observations (height x width x channels, as our
envs give them) its default convolutional encoder, the frames turned channels-first by its own
``PixelFormatChwWrapper`` because its encoder reads them so. 2 rollout workers x 8 envs. Configs:

* ``default``: Sample Factory's defaults (APPO, lr 1e-4, rollout 32, batch 1024, 1 epoch);
* ``tuned``: lr 1e-3 with a 64-step rollout (recurrence 64), the rest default.

Writes Sample Factory's usual experiment folder (TensorBoard summaries under ``.summary/0``) and ``eval.json`` with
the evaluation episodes of the final checkpoint (actions sampled, as during training, unless ``--greedy``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

CONFIGS: dict[str, list[str]] = {
    "default": [],
    "tuned": ["--learning_rate", "0.001", "--rollout", "64"],
}


class SuccessStats(gym.Wrapper):
    """Hand ``info["success"]`` of an episode's last step to Sample Factory as an extra episode statistic.

    Sample Factory averages ``info["episode_extra_stats"]`` over its last ``--stats_avg`` (100) episodes and logs
    it as ``policy_stats/avg_success``, the same window our learner uses for ``charts/success_rate``.
    """

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "success" in info:
            info = dict(info, episode_extra_stats={"success": float(info["success"])})
        return obs, reward, terminated, truncated, info


class EnvFactory:
    """Sample Factory's env factory; a class, not a closure, so it pickles into spawned workers.

    ``render_mode`` is accepted (Sample Factory passes it) and deliberately not passed on: our envs take none.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs)

    def __call__(self, full_env_name: str, cfg: Any = None, env_config: Any = None, render_mode: str | None = None):
        from envs import make_env

        env = make_env(self.env_id, **self.env_kwargs)
        shape = env.observation_space.shape
        if shape is not None and len(shape) == 3 and shape[-1] <= 4:  # HWC frames; Sample Factory's encoder reads CHW
            from sample_factory.envs.env_wrappers import PixelFormatChwWrapper

            env = PixelFormatChwWrapper(env)
        return SuccessStats(env)


class StopAfterThreshold:
    """Sample Factory observer: end training ``extra_steps`` env steps after the logged measure first reached ``level``.

    It reads the same 100-episode mean that goes to the summaries and, once the run is past the crossing plus
    ``extra_steps``, lowers ``train_for_env_steps`` to now, so Sample Factory ends the run its own way (checkpoint
    saved, workers stopped). Steps to the threshold are unaffected; the budget after it is not spent.
    """

    def __init__(self, key: str, level: float, extra_steps: int) -> None:
        self.key, self.level, self.extra_steps = key, level, extra_steps
        self.crossed_at: int | None = None

    def __getattr__(self, name: str) -> Any:  # the other AlgoObserver hooks: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def extra_summaries(self, runner: Any, policy_id: int, writer: Any, env_steps: int) -> None:
        # Sample Factory 2.1.1 calls it as (runner, policy_id, writer, env_steps), unlike its declared order
        window = runner.policy_avg_stats.get(self.key, [None])[policy_id]
        if window is None or len(window) < window.maxlen:
            return
        if self.crossed_at is None and float(np.mean(window)) >= self.level:
            self.crossed_at = int(env_steps)
        if self.crossed_at is not None and env_steps >= self.crossed_at + self.extra_steps:
            runner.cfg.train_for_env_steps = min(runner.cfg.train_for_env_steps, int(env_steps))


def sf_argv(args: argparse.Namespace) -> list[str]:
    return [
        "--algo=APPO",
        "--env=peer_env",
        f"--experiment={args.experiment}",
        f"--train_dir={args.train_dir}",
        "--device=cpu",
        "--num_workers=2",
        "--num_envs_per_worker=8",
        "--rnn_type=gru",
        "--rnn_size=128",
        f"--train_for_env_steps={args.steps}",
        f"--seed={args.seed}",
        "--restart_behavior=overwrite",
        "--save_every_sec=100000",
        "--experiment_summaries_interval=3",
        *CONFIGS[args.config],
    ]


def load_checkpoint(exp_dir: Path) -> dict[str, Any]:
    """The newest ``checkpoint_p0/checkpoint_*.pth``, loaded with ``weights_only=False`` (our own file)."""
    import torch

    paths = sorted(glob.glob(str(exp_dir / "checkpoint_p0" / "checkpoint_*.pth")))
    if not paths:
        raise SystemExit(f"no Sample Factory checkpoint under {exp_dir / 'checkpoint_p0'}")
    return torch.load(paths[-1], map_location="cpu", weights_only=False)


def evaluate(cfg: Any, env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int, greedy: bool) -> dict:
    """Play ``episodes`` episodes with the final checkpoint, one env, the GRU state carried and reset per episode."""
    import torch
    from sample_factory.algo.utils.action_distributions import argmax_actions
    from sample_factory.algo.utils.make_env import make_env_func_batched
    from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs
    from sample_factory.model.actor_critic import create_actor_critic
    from sample_factory.model.model_utils import get_rnn_size
    from sample_factory.utils.attr_dict import AttrDict

    cfg.num_envs = 1
    env = make_env_func_batched(cfg, env_config=AttrDict(worker_index=0, vector_index=0, env_id=0), render_mode=None)
    actor_critic = create_actor_critic(cfg, env.observation_space, env.action_space)
    actor_critic.eval()
    checkpoint = load_checkpoint(Path(cfg.train_dir) / cfg.experiment)
    actor_critic.load_state_dict(checkpoint["model"])
    torch.manual_seed(seed)
    returns: list[float] = []
    successes: list[float] = []
    lengths: list[int] = []
    obs, _ = env.reset(seed=seed)
    rnn = torch.zeros([1, get_rnn_size(cfg)])
    ep_return, ep_len = 0.0, 0
    with torch.no_grad():
        while len(returns) < episodes:
            out = actor_critic(prepare_and_normalize_obs(actor_critic, obs), rnn)
            actions = argmax_actions(actor_critic.action_distribution()) if greedy else out["actions"]
            rnn = out["new_rnn_states"]
            obs, reward, terminated, truncated, infos = env.step(actions.reshape(1).cpu().numpy())
            ep_return += float(np.asarray(reward).reshape(-1)[0])
            ep_len += 1
            if bool(np.asarray(terminated).reshape(-1)[0]) or bool(np.asarray(truncated).reshape(-1)[0]):
                info = infos[0] if isinstance(infos, (list, tuple)) else infos
                returns.append(ep_return)
                lengths.append(ep_len)
                if "success" in info:
                    successes.append(float(info["success"]))
                ep_return, ep_len = 0.0, 0
                rnn = torch.zeros_like(rnn)
    env.close()
    return {
        "episodes": episodes,
        "greedy": greedy,
        "mean_return": float(np.mean(returns)),
        "mean_length": float(np.mean(lengths)),
        "success": float(np.mean(successes)) if successes else None,
        "checkpoint_env_steps": int(checkpoint.get("env_steps", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of env keyword arguments")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="default")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--train-dir", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--stop-measure", choices=("success", "reward"), default="success")
    parser.add_argument("--stop-level", type=float, help="with --stop-after: the level of the measure")
    parser.add_argument("--stop-after", type=int, help="end this many env steps after the measure reached the level")
    args = parser.parse_args(argv)
    env_kwargs = json.loads(args.env_kwargs)
    if not isinstance(env_kwargs, dict):
        raise SystemExit(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")

    from sample_factory.algo.utils.misc import ExperimentStatus
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
    from sample_factory.envs.env_utils import register_env
    from sample_factory.train import make_runner

    register_env("peer_env", EnvFactory(args.env_id, env_kwargs))
    sf_args = sf_argv(args)
    parser_sf, _ = parse_sf_args(argv=sf_args)
    cfg = parse_full_cfg(parser_sf, sf_args)
    t0 = time.time()
    cfg, runner = make_runner(cfg)
    if args.stop_after is not None and args.stop_level is not None:
        runner.register_observer(StopAfterThreshold(args.stop_measure, args.stop_level, args.stop_after))
    status = runner.init()
    if status == ExperimentStatus.SUCCESS:
        status = runner.run()
    wall = time.time() - t0
    result: dict[str, Any] = {"status": int(status), "train_wall_s": wall, "sf_argv": sf_args}
    if args.eval_episodes > 0:
        result["eval"] = evaluate(cfg, args.env_id, env_kwargs, args.eval_episodes, args.seed + 10_000, args.greedy)
    out = Path(args.train_dir) / args.experiment / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return 0 if int(status) == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
