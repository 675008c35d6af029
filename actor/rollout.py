"""Cut trajectory segments from a vector of environments driven by the ONNX policy.

The actor keeps its own list of gymnasium envs instead of a VectorEnv: on a truncation the value of the episode's
*final* observation is needed for bootstrapping (docs/architecture.md#episode-ends), and resetting by hand keeps that
observation in reach without relying on a VectorEnv's autoreset mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from policy.sampling import clip_action
from protocol import Segment


class ActingPolicy(Protocol):
    """What the collector needs from a policy (``policy.runtime.Policy`` provides it)."""

    @property
    def state(self) -> dict[str, np.ndarray]: ...

    def act(
        self, obs: np.ndarray, reset: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def value_of(self, obs: np.ndarray, reset: np.ndarray) -> np.ndarray: ...


class SegmentCollector:
    """Steps B envs in lockstep; ``collect`` returns the next T steps as one segment.

    Segments overlap by one observation: obs[T] of one segment is obs[0] of the next, and the recurrent state the
    next segment starts from is the policy's state after consuming obs[T-1].
    """

    def __init__(self, envs: Sequence[gym.Env], segment_length: int, seed: int) -> None:
        if not envs:
            raise ValueError("need at least one environment")
        self.envs = envs
        self.T = segment_length
        self.rng = np.random.default_rng(seed)
        first = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
        self.obs = np.stack(first)
        self.reset = np.ones(len(envs), dtype=bool)
        self.ep_return = np.zeros(len(envs), dtype=np.float64)
        self.ep_length = np.zeros(len(envs), dtype=np.int64)
        self.env_steps = 0

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def collect(self, policy: ActingPolicy, *, actor_id: str, run_id: str, seq: int, policy_version: int) -> Segment:
        """The next T steps of every env as one ``protocol.Segment`` (all of it acted by ``policy``)."""
        T, B = self.T, self.num_envs
        obs_buf = np.empty((T + 1, *self.obs.shape), dtype=self.obs.dtype)
        actions: np.ndarray | None = None  # [T, B] int64 or [T, B, A] float32: allocated from the first action
        logp = np.empty((T, B), dtype=np.float32)
        rewards = np.empty((T, B), dtype=np.float32)
        terminated = np.zeros((T, B), dtype=bool)
        truncated = np.zeros((T, B), dtype=bool)
        reset = np.empty((T + 1, B), dtype=bool)
        bootstrap = np.zeros((T, B), dtype=np.float32)
        episodes: list[dict[str, Any]] = []
        initial_state = policy.state

        for t in range(T):
            obs_buf[t] = self.obs
            reset[t] = self.reset
            action, lp, _ = policy.act(self.obs, self.reset, self.rng)  # values: the learner recomputes them
            if actions is None:
                actions = np.empty((T, *np.shape(action)), dtype=np.asarray(action).dtype)
            actions[t], logp[t] = action, lp
            next_obs = np.empty_like(self.obs)
            next_reset = np.zeros(B, dtype=bool)
            final_obs: dict[int, np.ndarray] = {}
            for i, env in enumerate(self.envs):
                o, r, term, trunc, info = env.step(clip_action(action[i], env.action_space))
                rewards[t, i] = r
                self.ep_return[i] += r
                self.ep_length[i] += 1
                if term or trunc:
                    terminated[t, i] = bool(term)
                    truncated[t, i] = bool(trunc) and not term
                    success = info.get("success")
                    episodes.append(
                        {
                            "env": i,
                            "return": float(self.ep_return[i]),
                            "length": int(self.ep_length[i]),
                            "success": None if success is None else bool(success),
                        }
                    )
                    self.ep_return[i] = 0.0
                    self.ep_length[i] = 0
                    if truncated[t, i]:
                        final_obs[i] = o
                    o, _ = env.reset()
                    next_reset[i] = True
                next_obs[i] = o
            if final_obs:
                # V(final observation) with the state after this step's observation, before the reset.
                probe = next_obs.copy()
                for i, o in final_obs.items():
                    probe[i] = o
                v = policy.value_of(probe, np.zeros(B, dtype=bool))
                for i in final_obs:
                    bootstrap[t, i] = v[i]
            self.obs, self.reset = next_obs, next_reset
            self.env_steps += B

        obs_buf[T] = self.obs
        reset[T] = self.reset
        assert actions is not None  # T >= 1
        return Segment(
            actor_id=actor_id,
            run_id=run_id,
            seq=seq,
            policy_version=policy_version,
            obs=obs_buf,
            actions=actions,
            logp=logp,
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            reset=reset,
            bootstrap_values=bootstrap,
            initial_state=initial_state,
            episodes=episodes,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
