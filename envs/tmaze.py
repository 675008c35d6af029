"""The paper's T-Maze with distractors (``SimplerTMazeWDistractors``, task "tmazev2"; docs/environments.md#t-maze).

Registered id: ``agalite/TMaze-v0`` (``max_episode_steps=1000``, i.e. wrapped in ``TimeLimit``).
Keyword arguments (pass them to ``gymnasium.make`` or ``envs.make_env``):

* ``corridor_length`` (int, default 120, 2..256): corridor positions 0..N-1, the junction is N-1.
* ``num_distractors`` (int, default 6, >= 0): random distractor bits appended to each observation.

The agent starts at position 0 and sees a cue only in its very first observation; it must walk N-1 steps right and
then turn the way the cue said. The cue therefore has to be held for at least N-1 steps, which is what makes the
corridor length a knob for memory length, and a memoryless agent that reaches the junction succeeds half the time.

Actions (Discrete(4)): 0 up, 1 down, 2 left, 3 right. In the corridor left/right move by one (clipped at 0) and
up/down are no-ops; at the junction up/down end the episode and left/right do nothing (no walking back).

Observation (float32, ``2 + 8 + num_distractors``): ``[cue(2) | Gray code of the position (8, MSB first) |
distractors]``. Cue up = (0, 1), down = (1, 0), shown only in the reset observation, (0, 0) afterwards. Distractors
are fair random bits drawn every step from ``self.np_random`` and are zeros in the reset observation. The junction
differs from the corridor only through the position code, as in the reference.

Rewards: -0.1 per step that does not end the episode (no-ops and left/right at the junction included), +4 for the
correct turn at the junction, -1 for the wrong one. The optimal return is therefore exactly ``4 - 0.1 * (N - 1)``.

``info["success"]`` is 1.0 on the step that ends the episode with the correct turn and 0.0 on every other step, so
the last info of any episode (terminated or truncated by the time limit) holds its success. ``reset`` reports the
episode's correct action under ``info["cue"]`` (0 up, 1 down) for debugging and tests; a policy must not use it.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
CUE_BITS = 2
POSITION_BITS = 8
MAX_CORRIDOR_LENGTH = 2**POSITION_BITS
STEP_REWARD = -0.1
CORRECT_TURN_REWARD = 4.0
WRONG_TURN_REWARD = -1.0


def gray_code_table(bits: int = POSITION_BITS) -> np.ndarray:
    """All ``2**bits`` Gray codes as rows of float32 bits, most significant first.

    Precomputed once so that ``step`` only copies a row (the env is on the actor's hot path). Adjacent positions
    differ in exactly one bit, so the code says "where am I" without large jumps between neighbours.
    """
    positions = np.arange(2**bits, dtype=np.int64)
    gray = positions ^ (positions >> 1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return ((gray[:, None] >> shifts[None, :]) & 1).astype(np.float32)


def decode_gray(bits: np.ndarray) -> int:
    """Position encoded by a row of Gray-code bits (MSB first); the inverse of :func:`gray_code_table`."""
    value = 0
    binary = 0
    for bit in np.asarray(bits).round().astype(np.int64):
        binary ^= int(bit)
        value = (value << 1) | binary
    return value


_GRAY = gray_code_table()
_GRAY.setflags(write=False)
_CUES = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)  # row index = correct action (UP, DOWN)


class TMazeEnv(gymnasium.Env[np.ndarray, np.int64]):
    """T-Maze with a one-shot cue, a Gray-coded position and random distractor bits (see the module docstring)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 Env declares it per instance, ClassVar clashes
    observation_space: spaces.Box
    action_space: spaces.Discrete

    def __init__(
        self,
        corridor_length: int = 120,
        num_distractors: int = 6,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(corridor_length, bool) or not isinstance(corridor_length, (int, np.integer)):
            raise ValueError(f"corridor_length must be an int, got {corridor_length!r}")
        if not 2 <= corridor_length <= MAX_CORRIDOR_LENGTH:
            raise ValueError(
                f"corridor_length must be in [2, {MAX_CORRIDOR_LENGTH}] (an {POSITION_BITS}-bit Gray code encodes "
                f"the position and the junction needs at least one corridor cell before it), got {corridor_length}"
            )
        if isinstance(num_distractors, bool) or not isinstance(num_distractors, (int, np.integer)):
            raise ValueError(f"num_distractors must be an int, got {num_distractors!r}")
        if num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {num_distractors}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")

        self.corridor_length = int(corridor_length)
        self.num_distractors = int(num_distractors)
        self.render_mode = render_mode
        self._junction = self.corridor_length - 1
        # The cue is in the first observation, the turn is decided on the corridor_length-th (docs/environments.md).
        self.memory_horizon = self.corridor_length
        self._obs_dim = CUE_BITS + POSITION_BITS + self.num_distractors
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self._obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self._position = 0
        self._cue = UP
        self._done = True

    @property
    def position(self) -> int:
        """Current corridor position (0 .. corridor_length - 1)."""
        return self._position

    @property
    def cue(self) -> int:
        """The correct action at the junction for this episode: 0 (up) or 1 (down)."""
        return self._cue

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = 0
        self._cue = int(self.np_random.integers(0, 2))
        self._done = False
        obs = np.zeros(self._obs_dim, dtype=np.float32)
        obs[:CUE_BITS] = _CUES[self._cue]
        obs[CUE_BITS : CUE_BITS + POSITION_BITS] = _GRAY[0]
        return obs, {"cue": self._cue}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("TMazeEnv.step() called after the episode ended; call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 4) (0 up, 1 down, 2 left, 3 right), got {action!r}")
        action = int(action)
        terminated = False
        success = 0.0
        reward = STEP_REWARD
        if self._position == self._junction:
            if action in (UP, DOWN):
                terminated = True
                if action == self._cue:
                    reward, success = CORRECT_TURN_REWARD, 1.0
                else:
                    reward = WRONG_TURN_REWARD
        elif action == RIGHT:
            self._position += 1
        elif action == LEFT and self._position > 0:
            self._position -= 1
        self._done = terminated

        obs = np.empty(self._obs_dim, dtype=np.float32)
        obs[:CUE_BITS] = 0.0
        obs[CUE_BITS : CUE_BITS + POSITION_BITS] = _GRAY[self._position]
        if self.num_distractors:
            obs[CUE_BITS + POSITION_BITS :] = self.np_random.integers(0, 2, size=self.num_distractors)
        return obs, reward, terminated, False, {"success": success}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        corridor = ["."] * self.corridor_length
        corridor[self._position] = "A"
        return f"cue={'up' if self._cue == UP else 'down'} |{''.join(corridor)}| pos={self._position}"
