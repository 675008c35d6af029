"""memory-gym's Mystery Path, the paper's "Easy" setting, as a gymnasium 1.x env (docs/environments.md#mystery-path).

Registered ids (see :mod:`envs.ids`; registration does not import memory-gym):

* ``agalite/MysteryPath-Grid-Easy-v0`` (paper "MPGrid"): memory-gym ``MysteryPath-Grid-v0``, 7x7 grid, Discrete(4)
  (no-op, rotate left, rotate right, forward), 128 steps.
* ``agalite/MysteryPath-Easy-v0`` (paper "MP"): memory-gym ``MysteryPath-v0``, continuous movement; its
  MultiDiscrete([3, 3]) is flattened to Discrete(9) (action ``a`` -> ``(a // 3, a % 3)``), 512 steps.

Keyword arguments: ``grid`` (bool, set by the id) and ``reset_options`` (dict, memory-gym reset parameters that
override the Easy defaults for every reset; ``reset(options=...)`` overrides both for one episode).

"Easy" = reset parameters ``show_origin=True, show_goal=True, reward_path_progress=0.1``. Observations stay
memory-gym's 84x84x3 uint8 (the paper feeds floats in [0, 1]: the CNN encoder divides by 255, which keeps segments
on the wire four times smaller). They are transposed to row-major (height, width, channel), since pygame's
surfarray is column-major.

memory-gym signals its time limit as ``done`` (termination); here an episode that ends without reaching the goal
at the step limit is reported as ``truncated`` so that the learner bootstraps it. ``info["success"]`` (1.0/0.0) is
in every step's info: 1.0 only on the step that reaches the goal.

Optional extra: needs ``memory-gym`` and ``pygame`` (``make extras``). memory-gym 1.0.2 pins gymnasium 0.29 and
pygame 2.4 but runs on gymnasium 1.x when installed with ``pip install --no-deps memory-gym``. Rendering is
headless (``SDL_VIDEODRIVER=dummy`` unless already set). pygame has one display per process, so envs in one
process must be stepped one at a time (a SyncVectorEnv does that).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame.init() opens audio too; no sound card on servers
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

try:
    from memory_gym.mystery_path import MysteryPathEnv
    from memory_gym.mystery_path_grid import GridMysteryPathEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Mystery Path needs the optional packages memory-gym and pygame, which the core install leaves out. "
        "Install them with `make extras` (or: pip install pygame && pip install --no-deps memory-gym). "
        f"Original error: {exc}"
    ) from exc

EASY_RESET_OPTIONS: dict[str, Any] = {"show_origin": True, "show_goal": True, "reward_path_progress": 0.1}
_MOVES = 3  # per axis of MysteryPath-v0's MultiDiscrete([3, 3])


class MysteryPathEasyEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Mystery Path (grid or continuous) with the Easy reset options, Discrete actions and honest truncation."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}  # noqa: RUF012 Env declares it per instance, ClassVar clashes
    action_space: spaces.Discrete
    # memory-gym's close() calls pygame.quit(), which kills the display every env in the process draws on; only the
    # last open env may do that.
    _open_envs = 0

    def __init__(
        self,
        grid: bool = True,
        reset_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if reset_options is not None and not isinstance(reset_options, dict):
            raise ValueError(f"reset_options must be a dict of memory-gym reset parameters, got {reset_options!r}")
        self.grid = bool(grid)
        self.render_mode = render_mode
        inner_cls = GridMysteryPathEnv if self.grid else MysteryPathEnv
        self._check_options(inner_cls.default_reset_parameters, reset_options)
        self._reset_options = {**EASY_RESET_OPTIONS, **(reset_options or {})}
        self._env = inner_cls(render_mode=None)
        self._closed = False
        MysteryPathEasyEnv._open_envs += 1
        self.observation_space = spaces.Box(0, 255, shape=tuple(self._env.observation_space.shape), dtype=np.uint8)
        self.action_space = spaces.Discrete(4 if self.grid else _MOVES * _MOVES)
        self._last_obs: np.ndarray | None = None

    @staticmethod
    def _check_options(valid: Collection[str], options: dict[str, Any] | None) -> None:
        """memory-gym asserts on unknown keys; a ValueError naming the valid ones is clearer."""
        unknown = set(options or {}) - set(valid)
        if unknown:
            raise ValueError(f"unknown Mystery Path reset option(s) {sorted(unknown)}; valid: {sorted(valid)}")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._check_options(type(self._env).default_reset_parameters, options)
        # Seed the inner env from our generator so that unseeded resets are still reproducible after a seeded one.
        inner_seed = int(self.np_random.integers(0, 2**31 - 1)) if seed is not None else None
        obs, info = self._env.reset(seed=inner_seed, options={**self._reset_options, **(options or {})})
        self._last_obs = self._to_obs(obs)
        return self._last_obs, dict(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        action = int(action)
        inner_action = action if self.grid else np.array(divmod(action, _MOVES), dtype=np.int64)
        obs, reward, done, inner_truncated, info = self._env.step(inner_action)
        success = float(info.get("success", 0.0)) if done else 0.0
        # memory-gym ends a timed-out episode with done=True; only reaching the goal is a true termination.
        terminated = bool(done and success > 0.0)
        truncated = bool(inner_truncated or (done and not terminated))
        info = dict(info)
        info["success"] = success
        self._last_obs = self._to_obs(obs)
        return self._last_obs, float(reward), terminated, truncated, info

    @staticmethod
    def _to_obs(obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(obs, dtype=np.uint8).swapaxes(0, 1))

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._last_obs is None else self._last_obs.copy()
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        MysteryPathEasyEnv._open_envs -= 1
        if MysteryPathEasyEnv._open_envs == 0:
            self._env.close()
        super().close()
