"""What a run expects of every segment, derived once from its env spaces and model state."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

#: Default bound on |reward| per step. Far above any task's scale (Atari scores per step are in the thousands),
#: far below where float32 returns, advantages and squared value errors overflow (1e38 made the weights NaN).
DEFAULT_MAX_ABS_REWARD: float = 1e6
#: Default bound on |value| (the actor's value estimates, used for bootstrapping truncated episodes): the largest
#: discounted return of bounded rewards, 1e6 / (1 - 0.9999), with room to spare.
DEFAULT_MAX_ABS_VALUE: float = 1e11
#: Lowest log-probability of a sampled discrete action: float32 cannot hold a smaller positive probability
#: (its smallest subnormal is e^-103.3), so a lower one was not sampled.
MIN_DISCRETE_LOGP: float = -104.0
#: Bound on |log-density| of a continuous action, per action dimension: a Gaussian sample lies within a few tens
#: of standard deviations, and a learned log std stays within tens of units.
MAX_ABS_CONTINUOUS_LOGP_PER_DIM: float = 1e3

#: dtype names allowed on the wire (numpy ``dtype.name``), always sent little-endian.
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]
)


def _dtype_name(dtype: object, what: str) -> str:
    try:
        name = np.dtype(dtype).name  # type: ignore[call-overload]  # any input; TypeError below
    except TypeError as exc:
        raise ValueError(f"SegmentSpec.{what}: {dtype!r} is not a numpy dtype") from exc
    if name not in SUPPORTED_DTYPES:
        raise ValueError(f"SegmentSpec.{what}: dtype {name!r} is not supported on the wire {sorted(SUPPORTED_DTYPES)}")
    return name


def space_bounds(space: object) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The (low, high) element bounds of a gymnasium observation space, or (None, None) when it has none that
    mean anything (unbounded Box, spaces without bounds). Duck-typed: the protocol never imports gymnasium."""
    kind = type(space).__name__
    if kind == "Box":
        low, high = np.asarray(space.low), np.asarray(space.high)  # type: ignore[attr-defined]  # duck-typed Box
        if np.isinf(low).all() and np.isinf(high).all():
            return None, None
        return low, high
    if kind == "Discrete":
        start = int(space.start)  # type: ignore[attr-defined]  # duck-typed Discrete
        return np.asarray(start), np.asarray(start + int(space.n) - 1)  # type: ignore[attr-defined]  # duck-typed
    if kind == "MultiBinary":
        return np.asarray(0), np.asarray(1)
    if kind == "MultiDiscrete":
        nvec = np.asarray(space.nvec)  # type: ignore[attr-defined]  # duck-typed MultiDiscrete
        first = np.asarray(getattr(space, "start", np.zeros_like(nvec)))
        return first, first + nvec - 1
    return None, None


def _bound(value: object, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    try:
        np.broadcast_to(arr, shape)
    except ValueError as exc:
        raise ValueError(f"SegmentSpec.{what}: shape {arr.shape} does not broadcast to {shape}") from exc
    if np.isnan(arr).any():
        raise ValueError(f"SegmentSpec.{what}: NaN bound")
    return arr


def _shape(shape: object, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)  # type: ignore[attr-defined]  # any iterable; TypeError otherwise
    except TypeError as exc:
        raise ValueError(f"SegmentSpec.{what}: {shape!r} is not a shape") from exc
    if any(d < 0 for d in out):
        raise ValueError(f"SegmentSpec.{what}: negative dimension in {out}")
    return out


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    """The run's expectations for ``validate_segment``.

    ``num_actions`` is n for a Discrete(n) action space (actions must lie in [0, n)); None for other spaces,
    which then only get their shape and dtype checked. ``obs_low``/``obs_high`` bound every observation element
    (``space_bounds`` of the observation space; None: only finiteness); ``max_abs_reward`` and ``max_abs_value``
    bound rewards and the actor's value estimates, so no single segment can push the learner's float32 arithmetic
    to infinity. ``state`` maps each recurrent-state name to its
    per-env shape and dtype name. Inputs are normalised (tuples, dtype names); a bad spec raises ValueError
    at construction because it is a programming error, not a bad message.
    """

    obs_shape: tuple[int, ...]
    obs_dtype: str
    num_actions: int | None
    segment_length: int
    state: Mapping[str, tuple[tuple[int, ...], str]]
    max_envs: int
    action_shape: tuple[int, ...] = ()
    action_dtype: str = "int64"
    obs_low: np.ndarray | None = dataclasses.field(default=None, compare=False)
    obs_high: np.ndarray | None = dataclasses.field(default=None, compare=False)
    max_abs_reward: float = DEFAULT_MAX_ABS_REWARD
    max_abs_value: float = DEFAULT_MAX_ABS_VALUE

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "obs_shape", _shape(self.obs_shape, "obs_shape"))
        set_(self, "obs_dtype", _dtype_name(self.obs_dtype, "obs_dtype"))
        set_(self, "action_shape", _shape(self.action_shape, "action_shape"))
        set_(self, "action_dtype", _dtype_name(self.action_dtype, "action_dtype"))
        set_(self, "obs_low", _bound(self.obs_low, self.obs_shape, "obs_low"))
        set_(self, "obs_high", _bound(self.obs_high, self.obs_shape, "obs_high"))
        for what in ("max_abs_reward", "max_abs_value"):
            bound = float(getattr(self, what))
            if not bound > 0:
                raise ValueError(f"SegmentSpec.{what} must be > 0, got {bound}")
            set_(self, what, bound)
        if self.num_actions is not None:
            if int(self.num_actions) < 1:
                raise ValueError(f"SegmentSpec.num_actions must be >= 1, got {self.num_actions}")
            if np.dtype(self.action_dtype).kind not in "iu":
                raise ValueError(f"SegmentSpec: discrete actions need an integer action_dtype, got {self.action_dtype}")
            set_(self, "num_actions", int(self.num_actions))
        if int(self.segment_length) < 1:
            raise ValueError(f"SegmentSpec.segment_length must be >= 1, got {self.segment_length}")
        set_(self, "segment_length", int(self.segment_length))
        if int(self.max_envs) < 1:
            raise ValueError(f"SegmentSpec.max_envs must be >= 1, got {self.max_envs}")
        set_(self, "max_envs", int(self.max_envs))
        state: dict[str, tuple[tuple[int, ...], str]] = {}
        for name, entry in dict(self.state).items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"SegmentSpec.state: names must be non-empty strings, got {name!r}")
            try:
                shape, dtype = entry
            except (TypeError, ValueError) as exc:
                raise ValueError(f"SegmentSpec.state[{name!r}] must be (per-env shape, dtype), got {entry!r}") from exc
            state[name] = (_shape(shape, f"state[{name!r}]"), _dtype_name(dtype, f"state[{name!r}]"))
        set_(self, "state", state)
