"""Validation of messages: field types from the dataclass annotations, then per-message semantics.

``validate_message`` is what ``encode`` and ``decode`` run, so no receiver ever sees a structurally wrong
message: wrong types, unsupported dtypes, shapes that disagree (T and B must agree across all fields of a
Segment), NaN/inf anywhere, out-of-range integers, resets that disagree with episode ends, a checksum that
does not match its ONNX bytes. ``validate_segment`` adds the run's expectations (``SegmentSpec``).
Every failure is a ``ProtocolError``; nothing else escapes for any input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import numpy as np

from protocol.constants import MAX_ID_LENGTH
from protocol.errors import ProtocolError, Reason
from protocol.messages import (
    ArrayDict,
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    Message,
    ModelUpdate,
    PlainDict,
    Segment,
    Welcome,
)
from protocol.spec import MAX_ABS_CONTINUOUS_LOGP_PER_DIM, MIN_DISCRETE_LOGP, SUPPORTED_DTYPES, SegmentSpec

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_PLAIN_DEPTH = 32
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_EPISODE_KEYS: dict[str, type | tuple[type, ...]] = {
    "env": int,
    "return": float,
    "length": int,
    "success": (bool, np.bool_, type(None)),
}


def _fail(reason: Reason, where: str, detail: str) -> typing.NoReturn:
    raise ProtocolError(reason, f"{where}: {detail}")


# ---------------------------------------------------------------- field types from annotations


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation, in declaration order (the schema of a message class); computed once per
    class (a plain dict, not functools.cache: its typed wrapper takes only what type checkers call Hashable)."""
    cached = _FIELD_TYPES.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return cached


def _is_int(value: object) -> bool:
    return (type(value) is int) or isinstance(value, np.integer)


def _check_int(value: object, where: str) -> None:
    if not _is_int(value):
        _fail(Reason.BAD_FIELD, where, f"expected int, got {type(value).__name__}")
    if not INT64_MIN <= int(value) <= INT64_MAX:  # type: ignore[call-overload]  # an int or np.integer (checked above)
        _fail(Reason.OUT_OF_RANGE, where, f"{value} does not fit in int64")


def _check_float(value: object, where: str) -> None:
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    if not is_number or type(value) is bool or isinstance(value, np.bool_):
        _fail(Reason.BAD_FIELD, where, f"expected float, got {type(value).__name__}")
    if isinstance(value, (int, np.integer)):
        _check_int(value, where)
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
        _fail(Reason.NON_FINITE, where, f"{value} is not finite")


def check_array(value: object, where: str) -> np.ndarray:
    """An ndarray of a supported dtype whose floats are all finite."""
    if not isinstance(value, np.ndarray):
        _fail(Reason.BAD_FIELD, where, f"expected a numpy array, got {type(value).__name__}")
    if value.dtype.name not in SUPPORTED_DTYPES or value.dtype.fields is not None:
        _fail(Reason.BAD_DTYPE, where, f"dtype {value.dtype} is not supported ({sorted(SUPPORTED_DTYPES)})")
    if value.dtype.kind == "f" and value.size and not np.isfinite(value).all():
        _fail(Reason.NON_FINITE, where, f"{int((~np.isfinite(value)).sum())} non-finite value(s)")
    return value


def check_plain(value: object, where: str, depth: int = 0) -> None:
    """A msgpack-able value without arrays, with str map keys, finite floats and at most MAX_PLAIN_DEPTH
    levels of nesting (deeper input would exhaust the interpreter's recursion limit)."""
    if depth > MAX_PLAIN_DEPTH:
        _fail(Reason.BAD_FIELD, where, f"nested deeper than {MAX_PLAIN_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, bytes, np.bool_)):
        return
    if isinstance(value, (int, np.integer)):
        _check_int(value, where)
    elif isinstance(value, (float, np.floating)):
        _check_float(value, where)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(Reason.BAD_FIELD, where, f"map keys must be str, got {type(key).__name__}")
            check_plain(item, f"{where}.{key}", depth + 1)
    else:
        _fail(Reason.BAD_FIELD, where, f"{type(value).__name__} is not a plain msgpack value")


def check_type(value: object, annotation: Any, where: str) -> None:
    """Check ``value`` against one of the annotation forms used in ``protocol.messages``."""
    origin = typing.get_origin(annotation)
    if annotation is str:
        if type(value) is not str:
            _fail(Reason.BAD_FIELD, where, f"expected str, got {type(value).__name__}")
    elif annotation is bool:
        if not isinstance(value, (bool, np.bool_)):
            _fail(Reason.BAD_FIELD, where, f"expected bool, got {type(value).__name__}")
    elif annotation is int:
        _check_int(value, where)
    elif annotation is float:
        _check_float(value, where)
    elif annotation is bytes:
        if type(value) is not bytes:
            _fail(Reason.BAD_FIELD, where, f"expected bytes, got {type(value).__name__}")
    elif annotation is np.ndarray:
        check_array(value, where)
    elif annotation is type(None):
        if value is not None:
            _fail(Reason.BAD_FIELD, where, f"expected None, got {type(value).__name__}")
    elif origin in (typing.Union, types.UnionType):
        arms = typing.get_args(annotation)
        if value is None and type(None) in arms:
            return
        not_none = [a for a in arms if a is not type(None)]
        if len(not_none) != 1:
            raise TypeError(f"unsupported union annotation {annotation}")  # schema bug, not input
        check_type(value, not_none[0], where)
    elif origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if type(value) is not str or value not in allowed:
            _fail(Reason.BAD_FIELD, where, f"expected one of {list(allowed)}, got {value!r}")
    elif annotation == PlainDict:
        if not isinstance(value, dict):
            _fail(Reason.BAD_FIELD, where, f"expected a map, got {type(value).__name__}")
        check_plain(value, where)
    elif annotation == ArrayDict:
        if not isinstance(value, dict):
            _fail(Reason.BAD_FIELD, where, f"expected a map of arrays, got {type(value).__name__}")
        for key, item in value.items():
            if type(key) is not str or not key:
                _fail(Reason.BAD_FIELD, where, f"array names must be non-empty str, got {key!r}")
            check_array(item, f"{where}[{key!r}]")
    elif origin is list:
        if not isinstance(value, list):
            _fail(Reason.BAD_FIELD, where, f"expected a list, got {type(value).__name__}")
        (item_type,) = typing.get_args(annotation)
        for i, item in enumerate(value):
            check_type(item, item_type, f"{where}[{i}]")
    elif isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if type(value) is not annotation:
            _fail(Reason.BAD_FIELD, where, f"expected {annotation.__name__}, got {type(value).__name__}")
        validate_message(value)  # type: ignore[arg-type]  # a message dataclass (its type was checked above)
    else:
        raise TypeError(f"unsupported annotation {annotation!r} at {where}")  # schema bug, not input


# ---------------------------------------------------------------- per-message semantics


def _check_id(value: str, where: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH:
        _fail(Reason.OUT_OF_RANGE, where, f"must be 1..{MAX_ID_LENGTH} characters, got {len(value)}")


def _check_min(value: int, minimum: int, where: str) -> None:
    if value < minimum:
        _fail(Reason.OUT_OF_RANGE, where, f"must be >= {minimum}, got {value}")


def _hello(m: Hello) -> None:
    _check_id(m.actor_id, "Hello.actor_id")
    _check_id(m.run_id, "Hello.run_id")
    _check_min(int(m.num_envs), 0, "Hello.num_envs")
    _check_min(int(m.pid), 0, "Hello.pid")


def _positive(value: float, where: str) -> None:
    if not value > 0:
        _fail(Reason.OUT_OF_RANGE, where, f"must be > 0, got {value}")


def _welcome(m: Welcome) -> None:
    if m.policy.kind != "full":
        _fail(Reason.INCONSISTENT, "Welcome.policy", "a joining actor has no graph yet: the policy must be 'full'")
    _check_id(m.learner_run_id, "Welcome.learner_run_id")
    if not m.env_id:
        _fail(Reason.OUT_OF_RANGE, "Welcome.env_id", "must not be empty")
    _check_min(int(m.segment_length), 1, "Welcome.segment_length")
    _check_min(int(m.envs_per_actor), 1, "Welcome.envs_per_actor")
    _positive(m.heartbeat_interval_s, "Welcome.heartbeat_interval_s")
    _positive(m.learner_timeout_s, "Welcome.learner_timeout_s")
    _positive(m.segments_per_version, "Welcome.segments_per_version")


def _heartbeat(m: Heartbeat) -> None:
    _check_id(m.actor_id, "Heartbeat.actor_id")
    _check_id(m.run_id, "Heartbeat.run_id")
    _check_min(int(m.policy_version), 0, "Heartbeat.policy_version")
    _check_min(int(m.num_envs), 1, "Heartbeat.num_envs")
    _check_min(int(m.segments_sent), 0, "Heartbeat.segments_sent")


def _learner_status(m: LearnerStatus) -> None:
    _check_id(m.learner_run_id, "LearnerStatus.learner_run_id")
    _check_min(int(m.policy_version), 0, "LearnerStatus.policy_version")
    _positive(m.segments_per_version, "LearnerStatus.segments_per_version")


def _bye(m: Bye) -> None:
    _check_id(m.actor_id, "Bye.actor_id")
    _check_id(m.run_id, "Bye.run_id")


def _error(m: Error) -> None:
    if not m.code:
        _fail(Reason.OUT_OF_RANGE, "Error.code", "must not be empty")


def _model_update(m: ModelUpdate) -> None:
    _check_min(int(m.version), 0, "ModelUpdate.version")
    if not _SHA256_HEX.fullmatch(m.graph_sha256):
        _fail(Reason.BAD_FIELD, "ModelUpdate.graph_sha256", "must be 64 lowercase hex digits")
    if m.kind == "full":
        if m.onnx is None or m.weights is not None:
            _fail(Reason.INCONSISTENT, "ModelUpdate", "kind 'full' carries onnx bytes and no weights")
        if not m.onnx:
            _fail(Reason.BAD_FIELD, "ModelUpdate.onnx", "empty ONNX bytes")
        if hashlib.sha256(m.onnx).hexdigest() != m.graph_sha256:
            _fail(Reason.INCONSISTENT, "ModelUpdate.graph_sha256", "does not match the sha256 of the onnx bytes")
    else:
        if m.weights is None or m.onnx is not None:
            _fail(Reason.INCONSISTENT, "ModelUpdate", "kind 'weights' carries weights and no onnx bytes")
        if not m.weights:
            _fail(Reason.BAD_FIELD, "ModelUpdate.weights", "no weights")


def _axes(arr: np.ndarray, where: str, min_ndim: int) -> None:
    if arr.ndim < min_ndim:
        _fail(Reason.BAD_SHAPE, where, f"needs at least {min_ndim} dimensions, got shape {arr.shape}")


def _segment(m: Segment) -> None:
    _check_id(m.actor_id, "Segment.actor_id")
    _check_id(m.run_id, "Segment.run_id")
    _check_min(int(m.seq), 0, "Segment.seq")
    _check_min(int(m.policy_version), 0, "Segment.policy_version")
    _axes(m.actions, "Segment.actions", 2)
    t, b = m.actions.shape[:2]
    if t < 1 or b < 1:
        _fail(Reason.BAD_SHAPE, "Segment.actions", f"T and B must be >= 1, got shape {m.actions.shape}")
    _axes(m.obs, "Segment.obs", 2)
    if m.obs.shape[:2] != (t + 1, b):
        _fail(Reason.INCONSISTENT, "Segment.obs", f"shape {m.obs.shape} does not start with (T+1, B) = {(t + 1, b)}")
    if m.actions.dtype.kind not in "iuf":
        _fail(Reason.BAD_DTYPE, "Segment.actions", f"expected integer or float actions, got {m.actions.dtype}")
    expected = {
        "logp": ((t, b), "float32"),
        "rewards": ((t, b), "float32"),
        "terminated": ((t, b), "bool"),
        "truncated": ((t, b), "bool"),
        "reset": ((t + 1, b), "bool"),
        "bootstrap_values": ((t, b), "float32"),
    }
    for name, (shape, dtype) in expected.items():
        arr: np.ndarray = getattr(m, name)
        if arr.dtype.name != dtype:
            _fail(Reason.BAD_DTYPE, f"Segment.{name}", f"expected {dtype}, got {arr.dtype}")
        if arr.shape != shape:
            _fail(Reason.INCONSISTENT, f"Segment.{name}", f"shape {arr.shape}, expected {shape} (T={t}, B={b})")
    for name, arr in m.initial_state.items():
        if arr.ndim < 1 or arr.shape[0] != b:
            where = f"Segment.initial_state[{name!r}]"
            _fail(Reason.INCONSISTENT, where, f"shape {arr.shape} does not start with B={b}")
    done = m.terminated | m.truncated
    if not np.array_equal(m.reset[1:], done):
        _fail(Reason.INCONSISTENT, "Segment.reset", "reset[t+1] must equal terminated[t] | truncated[t]")
    if np.any(m.bootstrap_values[~m.truncated] != 0):
        _fail(Reason.INCONSISTENT, "Segment.bootstrap_values", "must be 0 where truncated is false")
    for i, episode in enumerate(m.episodes):
        where = f"Segment.episodes[{i}]"
        for key, kind in _EPISODE_KEYS.items():
            if key not in episode:
                _fail(Reason.MISSING_FIELD, where, f"missing {key!r}")
            if kind is float:
                _check_float(episode[key], f"{where}.{key}")
            elif kind is int:
                _check_int(episode[key], f"{where}.{key}")
            elif not isinstance(episode[key], kind):
                _fail(Reason.BAD_FIELD, f"{where}.{key}", f"expected bool or None, got {type(episode[key]).__name__}")
        if not 0 <= int(episode["env"]) < b:
            _fail(Reason.OUT_OF_RANGE, f"{where}.env", f"{episode['env']} is not in [0, B={b})")
        _check_min(int(episode["length"]), 1, f"{where}.length")


_SEMANTICS: dict[type, Callable[[Any], None]] = {
    Hello: _hello,
    Welcome: _welcome,
    Heartbeat: _heartbeat,
    LearnerStatus: _learner_status,
    Bye: _bye,
    Error: _error,
    ModelUpdate: _model_update,
    Segment: _segment,
}


def validate_message(msg: Message) -> None:
    """Check every field's type, then the message's own consistency rules. Raises ProtocolError."""
    cls = type(msg)
    semantics = _SEMANTICS.get(cls)
    if semantics is None:
        raise ProtocolError(Reason.UNKNOWN_TYPE, f"{cls.__name__} is not a protocol message")
    for name, annotation in field_types(cls).items():
        check_type(getattr(msg, name), annotation, f"{cls.__name__}.{name}")
    semantics(msg)


# ---------------------------------------------------------------- the run's expectations


def _mismatch(where: str, detail: str) -> typing.NoReturn:
    _fail(Reason.SPEC_MISMATCH, where, detail)


def validate_segment(seg: Segment, spec: SegmentSpec, *, check_structure: bool = True) -> None:
    """Check a segment against the run's spaces, segment length and model state.

    Raises ProtocolError with reason SPEC_MISMATCH (shapes, dtypes, names, sizes) or OUT_OF_RANGE (action
    values, log-probabilities). It first runs ``validate_message`` so any object is safe to pass; a segment
    that just came out of ``decode`` has had that done, and ``check_structure=False`` skips repeating it."""
    if not isinstance(seg, Segment):
        _mismatch("Segment", f"expected a Segment, got {type(seg).__name__}")
    if check_structure:
        validate_message(seg)
    t, b = seg.actions.shape[:2]
    if t != spec.segment_length:
        _mismatch("Segment", f"T={t}, the run uses segment length {spec.segment_length}")
    if b > spec.max_envs:
        _mismatch("Segment", f"B={b} envs, the run allows at most {spec.max_envs} per segment")
    if seg.obs.shape[2:] != spec.obs_shape:
        _mismatch("Segment.obs", f"observation shape {seg.obs.shape[2:]}, the run's is {spec.obs_shape}")
    if seg.obs.dtype.name != spec.obs_dtype:
        _mismatch("Segment.obs", f"dtype {seg.obs.dtype}, the run's is {spec.obs_dtype}")
    if seg.actions.shape[2:] != spec.action_shape:
        _mismatch("Segment.actions", f"action shape {seg.actions.shape[2:]}, the run's is {spec.action_shape}")
    if seg.actions.dtype.name != spec.action_dtype:
        _mismatch("Segment.actions", f"dtype {seg.actions.dtype}, the run's is {spec.action_dtype}")
    if spec.num_actions is not None:
        if seg.actions.size and (seg.actions.min() < 0 or seg.actions.max() >= spec.num_actions):
            _fail(Reason.OUT_OF_RANGE, "Segment.actions", f"values must lie in [0, {spec.num_actions})")
        # a probability is at most 1; allow float32 rounding of log-softmax
        if seg.logp.size and seg.logp.max() > 1e-4:
            _fail(Reason.OUT_OF_RANGE, "Segment.logp", "a discrete log-probability must be <= 0")
    _check_values(seg, spec)
    names, expected_names = set(seg.initial_state), set(spec.state)
    if names != expected_names:
        _mismatch(
            "Segment.initial_state",
            f"missing {sorted(expected_names - names)}, unexpected {sorted(names - expected_names)}",
        )
    for name, (shape, dtype) in spec.state.items():
        arr = seg.initial_state[name]
        if arr.shape[1:] != shape:
            _mismatch(f"Segment.initial_state[{name!r}]", f"per-env shape {arr.shape[1:]}, the model's is {shape}")
        if arr.dtype.name != dtype:
            _mismatch(f"Segment.initial_state[{name!r}]", f"dtype {arr.dtype}, the model's is {dtype}")


# ---------------------------------------------------------------- value bounds


def _outside(arr: np.ndarray, low: float | np.ndarray, high: float | np.ndarray) -> int:
    return int(np.count_nonzero((arr < low) | (arr > high)))


def _check_values(seg: Segment, spec: SegmentSpec) -> None:
    """Value bounds: finite is not enough (a reward of 1e38 is finite, and overflows the learner's float32 returns
    into NaN weights). Observations stay within the observation space (float bounds with a float32 rounding
    margin), rewards and value estimates within the spec's bounds, log-probabilities within what a sampler can
    produce."""
    if spec.obs_low is not None or spec.obs_high is not None:
        low = -np.inf if spec.obs_low is None else spec.obs_low
        high = np.inf if spec.obs_high is None else spec.obs_high
        if seg.obs.dtype.kind == "f":
            low = low - 1e-5 * np.maximum(1.0, np.abs(low))
            high = high + 1e-5 * np.maximum(1.0, np.abs(high))
        bad = _outside(seg.obs, low, high)
        if bad:
            _fail(Reason.OUT_OF_RANGE, "Segment.obs", f"{bad} value(s) outside the observation space's bounds")
    r = spec.max_abs_reward
    bad = _outside(seg.rewards, -r, r)
    if bad:
        _fail(Reason.OUT_OF_RANGE, "Segment.rewards", f"{bad} reward(s) beyond +-{r:g}")
    v = spec.max_abs_value
    bad = _outside(seg.bootstrap_values, -v, v)
    if bad:
        _fail(Reason.OUT_OF_RANGE, "Segment.bootstrap_values", f"{bad} value(s) beyond +-{v:g}")
    if spec.num_actions is not None:
        low_logp, high_logp = MIN_DISCRETE_LOGP, 0.0
    else:
        dims = max(1, int(np.prod(spec.action_shape)))
        high_logp = MAX_ABS_CONTINUOUS_LOGP_PER_DIM * dims
        low_logp = -high_logp
    if seg.logp.size and seg.logp.min() < low_logp:
        _fail(Reason.OUT_OF_RANGE, "Segment.logp", f"a log-probability below {low_logp:g} was not sampled")
    if spec.num_actions is None and seg.logp.size and seg.logp.max() > high_logp:
        _fail(Reason.OUT_OF_RANGE, "Segment.logp", f"a log-density above {high_logp:g}")
