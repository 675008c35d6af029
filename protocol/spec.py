"""What a run expects of every segment, derived once from its env spaces and model state."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

#: dtype names allowed on the wire (numpy ``dtype.name``), always sent little-endian.
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"]
)


def _dtype_name(dtype: object, what: str) -> str:
    try:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError as exc:
        raise ValueError(f"SegmentSpec.{what}: {dtype!r} is not a numpy dtype") from exc
    if name not in SUPPORTED_DTYPES:
        raise ValueError(f"SegmentSpec.{what}: dtype {name!r} is not supported on the wire {sorted(SUPPORTED_DTYPES)}")
    return name


def _shape(shape: object, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)  # type: ignore[union-attr]
    except TypeError as exc:
        raise ValueError(f"SegmentSpec.{what}: {shape!r} is not a shape") from exc
    if any(d < 0 for d in out):
        raise ValueError(f"SegmentSpec.{what}: negative dimension in {out}")
    return out


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    """The run's expectations for ``validate_segment``.

    ``num_actions`` is n for a Discrete(n) action space (actions must lie in [0, n)); None for other spaces,
    which then only get their shape and dtype checked. ``state`` maps each recurrent-state name to its
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

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "obs_shape", _shape(self.obs_shape, "obs_shape"))
        set_(self, "obs_dtype", _dtype_name(self.obs_dtype, "obs_dtype"))
        set_(self, "action_shape", _shape(self.action_shape, "action_shape"))
        set_(self, "action_dtype", _dtype_name(self.action_dtype, "action_dtype"))
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
