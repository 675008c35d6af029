"""Delayed recall: name the symbol shown ``delay`` steps ago (a discrete-action memory task with a horizon knob).

An episode lasts ``delay + 2`` steps. Observation layout (float32):
``[one-hot symbol (K), cue flag, query flag, noise (num_noise)]``.

- step 0 (cue): the one-hot of a symbol drawn uniformly from K, cue flag 1, noise 0;
- steps 1..delay: symbol slots and flags 0, noise uniform in [-1, 1] (nothing to learn from, everything to ignore);
- step delay + 1 (query): query flag 1, noise 0. The action taken on this observation is the answer.

Reward 1 for naming the symbol at the query, 0 otherwise; actions before the query are ignored. An agent without
memory scores 1/K on average; ``info['success']`` at the end says whether the answer was right. The delay is the
number of steps the memory must span (the cue is ``delay + 1`` observations before the query), so it is the knob
that separates an agent that carries information through time from one that does not. Numpy only (actors import it).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DelayedRecallEnv(gym.Env):
    """See the module docstring. Action: Discrete(num_symbols)."""

    metadata = {"render_modes": []}  # noqa: RUF012 Env declares it per instance, ClassVar clashes
    observation_space: spaces.Box

    def __init__(self, num_symbols: int = 4, delay: int = 20, num_noise: int = 4) -> None:
        if num_symbols < 2:
            raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if num_noise < 0:
            raise ValueError(f"num_noise must be >= 0, got {num_noise}")
        self.num_symbols, self.delay, self.num_noise = int(num_symbols), int(delay), int(num_noise)
        self.memory_horizon = self.delay + 2  # from the cue's observation to the query's, both counted
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.num_symbols + 2 + self.num_noise,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_symbols)
        self._symbol = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        k = self.num_symbols
        if self._t == 0:
            obs[self._symbol] = 1.0
            obs[k] = 1.0
        elif self._t <= self.delay:
            obs[k + 2 :] = self.np_random.uniform(-1.0, 1.0, self.num_noise)
        else:
            obs[k + 1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._symbol = int(self.np_random.integers(self.num_symbols))
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.num_symbols}), got {action!r}")
        if self._t > self.delay:  # the query: this action is the answer
            success = int(action) == self._symbol
            return self._obs(), float(success), True, False, {"success": success}
        self._t += 1
        return self._obs(), 0.0, False, False, {}
