"""memory-maze (Pasukonis et al.) as a gymnasium 1.x env (docs/environments.md#memory-maze). Needs MuJoCo.

Registered ids (see :mod:`envs.ids`; registration does not import memory-maze): ``agalite/MemoryMaze-9x9-v0``,
``-11x11-``, ``-13x13-``, ``-15x15-`` = memory-maze's ``MemoryMaze-<size>-v0``: 64x64x3 uint8 first-person images
(the current target's colour drawn as a border), Discrete(6), +1 per target reached; episodes last 1000 / 2000 /
3000 / 4000 steps and end only by the time limit, reported as ``truncated``.

Keyword arguments: ``size`` (one of "9x9", "11x11", "13x13", "15x15"; set by the id) and ``task_kwargs`` (dict,
forwarded to ``memory_maze.tasks.memory_maze_<size>``, e.g. ``{"good_visibility": True}``; ``image_only_obs`` and
``seed`` are set here).

memory-maze's own gym registration uses the old ``gym`` API, so this adapter drives the underlying ``dm_env``
directly. A dm_control maze takes its seed when it is built, so ``reset(seed=s)`` rebuilds it with a seed drawn from
``self.np_random``; unseeded resets reuse the built env (its random state goes on), as gymnasium expects.

``info["success"]`` is not defined for this task (there is no single goal); ``info["targets"]`` counts the targets
reached so far in the episode (= the episode return).

Optional extra: needs ``memory-maze`` with ``dm_control``/``mujoco`` and ``gym`` (memory-maze imports it). It renders
with ``MUJOCO_GL=osmesa`` unless ``MUJOCO_GL`` is already set (``egl`` is faster on a GPU host but fails on CPU-only
machines).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

os.environ.setdefault("MUJOCO_GL", "osmesa")

try:
    from memory_maze import tasks as _mm_tasks
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Memory Maze needs the optional package memory-maze (with dm_control, mujoco and gym) and an OpenGL "
        "backend (OSMesa: MUJOCO_GL=osmesa), which the core install leaves out. Install them with `make extras` "
        "(or: pip install -c constraints.txt memory-maze mujoco gym) and Debian's libosmesa6. "
        f"Original error: {exc}"
    ) from exc

SIZES = ("9x9", "11x11", "13x13", "15x15")
IMAGE_SHAPE = (64, 64, 3)
NUM_ACTIONS = 6  # noop, forward, left, right, forward-left, forward-right


class MemoryMazeEnv(gymnasium.Env[np.ndarray, np.int64]):
    """One memory-maze task behind the gymnasium 1.x API, image observations only."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012 Env declares it per instance, ClassVar clashes

    def __init__(self, size: str = "9x9", task_kwargs: dict[str, Any] | None = None, render_mode: str | None = None):
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        if task_kwargs is not None and not isinstance(task_kwargs, dict):
            raise ValueError(f"task_kwargs must be a dict, got {task_kwargs!r}")
        reserved = {"image_only_obs", "seed", "discrete_actions", "camera_resolution"} & set(task_kwargs or {})
        if reserved:
            raise ValueError(f"task_kwargs may not set {sorted(reserved)}: this adapter fixes them")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = size
        self.render_mode = render_mode
        self._task_fn = getattr(_mm_tasks, f"memory_maze_{size}")
        self._task_kwargs = dict(task_kwargs or {})
        self.observation_space = spaces.Box(0, 255, shape=IMAGE_SHAPE, dtype=np.uint8)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._dm_env: Any = None  # built lazily: building compiles a MuJoCo model (slow), spaces do not need it
        self._last_obs: np.ndarray | None = None
        self._targets = 0

    def _build(self, seed: int) -> None:
        if self._dm_env is not None:
            self._dm_env.close()
        self._dm_env = self._task_fn(image_only_obs=True, seed=seed, **self._task_kwargs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._dm_env is None:
            self._build(int(self.np_random.integers(0, 2**31 - 1)))
        timestep = self._dm_env.reset()
        self._targets = 0
        self._last_obs = self._to_obs(timestep.observation)
        return self._last_obs, {"targets": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._dm_env is None:
            raise RuntimeError("MemoryMazeEnv.step() called before reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {NUM_ACTIONS}), got {action!r}")
        timestep = self._dm_env.step(int(action))
        reward = float(timestep.reward or 0.0)
        if reward > 0:
            self._targets += round(reward)
        last = bool(timestep.last())
        # dm_env: discount 0 at the end means a true termination; otherwise the episode hit its time limit.
        terminated = last and timestep.discount == 0.0
        truncated = last and not terminated
        self._last_obs = self._to_obs(timestep.observation)
        return self._last_obs, reward, terminated, truncated, {"targets": self._targets}

    @staticmethod
    def _to_obs(obs: Any) -> np.ndarray:
        image = np.asarray(obs, dtype=np.uint8)
        if image.shape != IMAGE_SHAPE:
            raise RuntimeError(f"memory-maze returned an image of shape {image.shape}, expected {IMAGE_SHAPE}")
        return image

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self._last_obs is not None:
            return self._last_obs.copy()
        return None

    def close(self) -> None:
        if self._dm_env is not None:
            self._dm_env.close()
            self._dm_env = None
        super().close()
