"""Cue recall: the smallest memory task with continuous actions (a diagnostic, like the T-Maze for discrete ones).

An episode lasts ``delay + 1`` steps. The first observation shows a cue c in {-1, +1}; later observations show
0 in its place. Every observation also carries the fraction of the episode elapsed (so the agent knows when the
answer is due) and ``num_distractors`` uniform random values in [-1, 1] (zeros in the first observation). The action
is one number in [-1, 1]. Only the last action counts: reward -(a - c)^2; every earlier step gives 0.

Why: an agent without memory cannot beat an expected return of -1 (for any answer a independent of the cue,
E[-(a - c)^2] = -(1 + a^2)), while one that remembers the cue for ``delay`` steps reaches 0. ``info['success']`` at
the end is ``|a - c| < 0.5``. Numpy only (actors import it).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueRecallEnv(gym.Env):
    """See the module docstring. Observation [cue, elapsed fraction, *distractors] float32; action Box(-1, 1, (1,))."""

    metadata = {"render_modes": []}  # noqa: RUF012 Env declares it per instance, ClassVar clashes
    observation_space: spaces.Box

    def __init__(self, delay: int = 8, num_distractors: int = 2) -> None:
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        if num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {num_distractors}")
        self.delay, self.num_distractors = int(delay), int(num_distractors)
        self.memory_horizon = self.delay + 1  # from the cue's observation to the answer's, both counted
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2 + self.num_distractors,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._cue = 1.0
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        obs[1] = self._t / self.delay
        if self._t == 0:
            obs[0] = self._cue
        else:
            obs[2:] = self.np_random.uniform(-1.0, 1.0, self.num_distractors)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._cue = float(self.np_random.choice([-1.0, 1.0]))
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (1,) or not np.isfinite(a).all():
            raise ValueError(f"action must be one finite number, got {action!r}")
        if self._t >= self.delay:
            answer = float(np.clip(a[0], -1.0, 1.0))
            reward = -((answer - self._cue) ** 2)
            return self._obs(), reward, True, False, {"success": abs(answer - self._cue) < 0.5}
        self._t += 1
        return self._obs(), 0.0, False, False, {}
