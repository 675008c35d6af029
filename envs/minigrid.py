"""MiniGrid's Memory task (the ``minigrid`` package) with a one-hot or a pixel view and ``info["success"]``.

Registered ids (see :mod:`envs.ids`; registration does not import minigrid): ``agalite/MiniGrid-MemoryS7-v0``,
``agalite/MiniGrid-MemoryS11-v0`` (``size`` 7 and 11, as MiniGrid's own ``MiniGrid-MemoryS7-v0``/``S11``). Keyword
arguments: ``size`` (the grid; the corridor, and so the memory horizon, grows with it), ``max_steps`` (MiniGrid's
default ``5 * size**2``), ``random_length`` (a random corridor length per episode), ``view`` (``"one-hot"``, the
default, or ``"pixels"``) and ``tile_size`` (pixels per cell of the pixel view, default 8).

The task: the agent sees an object (a key or a ball) in a small room at the start, walks down a corridor out of
its sight, and must step next to the matching one of two objects at the far end; the wrong one ends the episode
with reward 0. Reward on success is MiniGrid's ``1 - 0.9 * steps / max_steps``.

Observation: MiniGrid's egocentric 7x7 view is a (7, 7, 3) array of small integers (object type, colour, state),
not pixels, and it is far below the 36x36 that the project's Nature-CNN encoder needs. It is therefore given as a
flat float32 vector: a one-hot per cell and channel (11 object types + 6 colours + 3 states = 20 per cell, 980)
followed by the one-hot of the agent's direction (4): 984 values in {0, 1}, encoded by the ``flatten`` encoder.
With ``view="pixels"`` it is instead the same egocentric view drawn as an image, MiniGrid's own rendering of what the
agent sees (``get_pov_render``, as its ``RGBImgPartialObsWrapper`` gives it): (7 * tile_size, 7 * tile_size, 3)
uint8, 56x56 at the default tile size, which the ``auto`` encoder sends through the Nature CNN. The one-hot view
stays the default because it says the same with no rendering per step and no convolution to learn; the pixels are
for image pipelines (and what a camera-like task exercises). The direction is not drawn (the view turns with the
agent). The mission string is constant for this task and dropped. Actions: MiniGrid's 7 (left, right, forward, pickup,
drop, toggle, done), unchanged.

``info["success"]`` is 1.0 on the step that ends the episode next to the matching object and 0.0 on every other
step (as for the T-Maze), so the last info of any episode says whether it succeeded. Numpy and gymnasium only at
import; ``minigrid`` (and the pygame it imports) is imported when an env is made.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

VIEW = 7
NUM_OBJECTS, NUM_COLORS, NUM_STATES, NUM_DIRECTIONS = 11, 6, 3, 4
CELL_WIDTH = NUM_OBJECTS + NUM_COLORS + NUM_STATES
OBS_SIZE = VIEW * VIEW * CELL_WIDTH + NUM_DIRECTIONS
VIEWS = ("one-hot", "pixels")
_OFFSETS = np.array([0, NUM_OBJECTS, NUM_OBJECTS + NUM_COLORS], dtype=np.int64)


def one_hot_view(image: np.ndarray, direction: int) -> np.ndarray:
    """The (7, 7, 3) integer view and the direction as the 984-long one-hot vector described above."""
    out = np.zeros(OBS_SIZE, dtype=np.float32)
    idx = image.reshape(VIEW * VIEW, 3).astype(np.int64) + _OFFSETS  # per cell: object, colour, state slots
    idx += (np.arange(VIEW * VIEW, dtype=np.int64) * CELL_WIDTH)[:, None]
    out[idx.ravel()] = 1.0
    out[VIEW * VIEW * CELL_WIDTH + int(direction)] = 1.0
    return out


class MiniGridMemoryEnv(gymnasium.Env[np.ndarray, np.int64]):
    """MiniGrid's MemoryEnv with one-hot vector or pixel observations and ``info["success"]`` (see the module
    docstring)."""

    metadata = {"render_modes": []}  # noqa: RUF012 Env declares it per instance, ClassVar clashes

    def __init__(
        self,
        size: int = 7,
        max_steps: int | None = None,
        random_length: bool = False,
        view: str = "one-hot",
        tile_size: int = 8,
    ) -> None:
        if size < 5 or size % 2 == 0:
            raise ValueError(f"size must be an odd number >= 5 (MiniGrid's Memory layout), got {size}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
            raise ValueError(f"tile_size must be a positive whole number of pixels, got {tile_size!r}")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            from minigrid.envs.memory import MemoryEnv
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"the MiniGrid envs need the 'minigrid' package ({exc}); install the project's extras: `make extras`"
            ) from exc
        self._env = MemoryEnv(size=size, max_steps=max_steps, random_length=random_length)
        if self._env.agent_view_size != VIEW:
            raise ValueError(f"expected MiniGrid's {VIEW}x{VIEW} view, got {self._env.agent_view_size}")
        self.size, self.view, self.tile_size = size, view, tile_size
        self.observation_space: spaces.Box
        if view == "pixels":
            side = VIEW * tile_size
            self.observation_space = spaces.Box(0, 255, shape=(side, side, 3), dtype=np.uint8)
        else:
            self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)
        inner_actions = self._env.action_space
        if not isinstance(inner_actions, spaces.Discrete):
            raise ValueError(f"expected MiniGrid's Discrete actions, got {inner_actions}")
        self.action_space = spaces.Discrete(int(inner_actions.n))

    @property
    def minigrid(self) -> Any:
        """MiniGrid's own MemoryEnv: its grid and ``agent_sees`` tell a diagnostic where the cue is and whether the
        agent has it in sight (bench/minigrid_cue_probe.py)."""
        return self._env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, _ = self._env.reset(seed=seed, options=options)
        return self._observe(obs), {}

    def step(self, action: Any):
        obs, reward, terminated, truncated, _ = self._env.step(int(action))
        success = 1.0 if terminated and reward > 0 else 0.0
        return self._observe(obs), float(reward), terminated, truncated, {"success": success}

    def _observe(self, obs: dict[str, Any]) -> np.ndarray:
        if self.view == "pixels":
            return np.ascontiguousarray(self._env.get_pov_render(tile_size=self.tile_size), dtype=np.uint8)
        return one_hot_view(obs["image"], obs["direction"])

    def close(self) -> None:
        self._env.close()
        super().close()
