"""POPGym's card memory tasks (Morad et al., ICLR 2023; the ``popgym`` package) with one-hot vector observations.

Registered ids (see :mod:`envs.ids`; registration does not import popgym): ``agalite/PopGym-<Task><Level>-v0`` for
``Task`` in RepeatFirst, RepeatPrevious, CountRecall, Autoencode and ``Level`` in Easy, Medium, Hard.

* RepeatFirst: say the suit of the first card, at every step of the episode (memory over the whole episode);
* RepeatPrevious: say the suit of the card ``k`` steps back (Easy k=4, Medium k=32, Hard k=64);
* CountRecall: say how often the queried card has been seen so far (a counter over the whole episode);
* Autoencode: watch a deck of cards, then replay it in reverse order.

The levels are POPGym's own (the deck count, ``k``): that is the horizon knob. For a horizon between or beyond the
levels, pass POPGym's constructor arguments as kwargs (``num_decks``, ``k`` for RepeatPrevious, ``deck_type`` for
CountRecall); they then replace the level's settings.

Observations: POPGym's are integers (``Discrete``, ``MultiDiscrete``, ``Tuple`` of ``Discrete``); the model needs a
float vector, so each component becomes a one-hot and the one-hots are concatenated (``gymnasium.spaces.flatten``),
float32. Actions, rewards and episode ends are POPGym's unchanged: each episode's return lies in [-1, 1] (1 = every
answer right), which is why POPGym tasks are judged by return, not by a success flag (``bench/peer/README.md``).
Infos are copied (CountRecall hands out its live counters), so a kept info never changes under the caller.
Numpy and gymnasium only, so actors can import it; ``popgym`` itself is imported when an env is made.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

TASK_MODULES = {
    "RepeatFirst": "popgym.envs.repeat_first",
    "RepeatPrevious": "popgym.envs.repeat_previous",
    "CountRecall": "popgym.envs.count_recall",
    "Autoencode": "popgym.envs.autoencode",
}
LEVELS = ("Easy", "Medium", "Hard")


def _load_popgym_class(task: str, level: str | None) -> type:
    if task not in TASK_MODULES:
        raise ValueError(f"unknown POPGym task {task!r}; expected one of {', '.join(TASK_MODULES)}")
    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown POPGym level {level!r}; expected one of {', '.join(LEVELS)}")
    try:
        module = importlib.import_module(TASK_MODULES[task])
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the POPGym envs need the 'popgym' package ({exc}); install the project's extras with `make extras`"
        ) from exc
    return getattr(module, f"{task}{level or ''}")


class PopGymEnv(gymnasium.Env[np.ndarray, np.int64]):
    """One POPGym card task with its observation flattened to a float32 one-hot vector (see the module docstring)."""

    metadata = {"render_modes": []}  # noqa: RUF012 Env declares it per instance, ClassVar clashes

    def __init__(self, task: str, level: str = "Easy", **popgym_kwargs: Any) -> None:
        # Explicit constructor arguments configure POPGym's base class; otherwise the named level is used as is.
        cls = _load_popgym_class(task, None if popgym_kwargs else level)
        self.task, self.level = task, (None if popgym_kwargs else level)
        try:
            self._env = cls(**popgym_kwargs)
        except TypeError as exc:
            raise ValueError(f"bad keyword arguments {popgym_kwargs} for POPGym's {cls.__name__}: {exc}") from exc
        self._inner_space = self._env.observation_space
        flat = spaces.flatten_space(self._inner_space)
        self.observation_space = spaces.Box(0.0, 1.0, shape=flat.shape, dtype=np.float32)
        self.action_space = self._env.action_space
        self.max_episode_length = int(getattr(self._env, "max_episode_length", 0)) or None
        # RepeatPrevious answers with the card shown k - 1 observations before the current one (k observations,
        # both counted); the other tasks need the whole episode (the first card, a count, a deck to replay), and
        # POPGym's episodes last max_episode_length + 1 observations.
        k = getattr(self._env, "k", None)
        if task == "RepeatPrevious" and isinstance(k, int):
            self.memory_horizon: int | None = k
        else:
            self.memory_horizon = None if self.max_episode_length is None else self.max_episode_length + 1

    def _obs(self, obs: Any) -> np.ndarray:
        return np.asarray(spaces.flatten(self._inner_space, obs), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed, options=options)
        return self._obs(obs), copy.deepcopy(info)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self._env.step(int(action))
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), copy.deepcopy(info)

    def close(self) -> None:
        self._env.close()
        super().close()
