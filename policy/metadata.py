"""Metadata of an exported step function, and gymnasium spaces as plain dicts (torch-free).

The metadata is the contract between the exporter (learner side, torch) and every program that runs a policy
(actors, deployments; no torch): it says which observations the graph accepts, which recurrent state it carries,
and under which protocol it was made. It travels inside the ONNX file (``metadata_props``) and as JSON beside it,
so it must be plain JSON: spaces are stored as dicts, and non-finite bounds as the strings ``"inf"``/``"-inf"``
(standard JSON has no infinities).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

METADATA_KEY = "agalite_rl.policy"
"""Key of the JSON metadata in the ONNX model's ``metadata_props``."""

METADATA_FORMAT = 1
"""Version of the metadata layout itself (bumped when fields change meaning)."""

STATE_OUTPUT_PREFIX = "new_"
"""Output ``new_<name>`` carries the next value of state input ``<name>``."""

STATE_DTYPES = ("float32", "int64", "bool")

POLICY_OUTPUTS = {"discrete": "logits", "continuous": "mean_log_std"}
"""Name of the step function's first output per action kind: logits [B, A], or the Gaussian's means [B, A]
followed by its log standard deviations [B, A] (``models/distributions.py``)."""


def action_space_mismatch(space: Any, action_kind: str, num_actions: int) -> str | None:
    """Why ``space`` cannot carry a policy's actions (None when it can): a Discrete(num_actions) for discrete
    policies, a 1-D Box of num_actions dimensions for continuous ones. Export and ``actor.play`` both check this."""
    if action_kind == "continuous":
        if not isinstance(space, spaces.Box) or tuple(space.shape) != (int(num_actions),):
            return f"action space {space} does not fit {num_actions} continuous action dimensions"
        return None
    if getattr(space, "n", None) != num_actions:
        return f"action space {space} does not fit {num_actions} discrete actions"
    return None


class PolicyError(ValueError):
    """A policy file, its metadata or the inputs handed to it are unusable; the message says what was expected."""


STEP_FUNCTION_VERSION = 1
"""Major version of the step-function contract (inputs ``obs, reset, <state>``; outputs policy, ``value``,
``new_<state>``), recorded as ``protocol_version`` in every exported file. It is deliberately not the wire protocol's
version: a change of the control messages must not make exported policies unreadable."""


def local_protocol_version() -> int:
    """Major version of the step-function contract this code reads and writes."""
    return STEP_FUNCTION_VERSION


def protocol_major(version: Any) -> int:
    """Major part of a protocol version given as an int, ``"2"`` or ``"2.1"``."""
    if isinstance(version, bool):
        raise PolicyError(f"protocol version must be an int or 'MAJOR[.MINOR]' string, got {version!r}")
    if isinstance(version, (int, np.integer)):
        return int(version)
    if isinstance(version, str):
        head = version.split(".", 1)[0]
        if head.isdigit():
            return int(head)
    raise PolicyError(f"protocol version must be an int or 'MAJOR[.MINOR]' string, got {version!r}")


# ---------------------------------------------------------------------------------------------------------------
# spaces


def _encode_number(x: float | int) -> float | int | str:
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _decode_number(x: Any) -> float | int:
    if isinstance(x, str):
        if x in ("inf", "-inf", "nan"):
            return float(x)
        raise PolicyError(f"bad number {x!r} in space bounds")
    return x


def _bounds_to_json(arr: np.ndarray) -> Any:
    """A scalar when all entries are equal (the common case), else a nested list."""
    flat = arr.reshape(-1)
    if flat.size and np.all(flat == flat[0]) and not (np.issubdtype(arr.dtype, np.floating) and np.isnan(flat).any()):
        return _encode_number(flat[0].item())
    return [_encode_number(v) for v in flat.tolist()]


def _bounds_from_json(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if isinstance(value, list):
        arr = np.asarray([_decode_number(v) for v in value], dtype=dtype)
        if arr.size != int(np.prod(shape)):
            raise PolicyError(f"space bounds have {arr.size} entries, shape {shape} needs {int(np.prod(shape))}")
        return arr.reshape(shape)
    return np.full(shape, _decode_number(value), dtype=dtype)


def space_to_dict(space: gymnasium.Space) -> dict[str, Any]:
    """JSON-ready description of a ``Box`` or ``Discrete`` space (the only kinds the models accept)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bounds_to_json(space.low),
            "high": _bounds_to_json(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise PolicyError(f"only Box and Discrete spaces can be described, got {type(space).__name__}: {space}")


def space_from_dict(data: dict[str, Any]) -> gymnasium.Space:
    """Inverse of :func:`space_to_dict`."""
    if not isinstance(data, dict) or "type" not in data:
        raise PolicyError(f"a space dict needs a 'type' key, got {data!r}")
    kind = data["type"]
    try:
        if kind == "Box":
            shape = tuple(int(s) for s in data["shape"])
            dtype = np.dtype(data["dtype"])
            low = _bounds_from_json(data["low"], shape, dtype)
            high = _bounds_from_json(data["high"], shape, dtype)
            return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    except (KeyError, TypeError) as exc:
        raise PolicyError(f"malformed {kind} space dict {data!r}: {exc!r}") from exc
    raise PolicyError(f"unsupported space type {kind!r} (expected 'Box' or 'Discrete')")


# ---------------------------------------------------------------------------------------------------------------
# metadata


@dataclass(frozen=True)
class StateEntry:
    """One recurrent state tensor: graph input ``name``, graph output ``output``, per-env ``shape``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    output: str
    init: Any = 0
    """Initial value of every element (GTrXL's mask starts all-masked, for instance), or a flat list."""

    def initial(self, batch: int) -> np.ndarray:
        """The initial state of ``batch`` envs."""
        if isinstance(self.init, list):
            one = np.asarray(self.init, dtype=self.dtype).reshape(self.shape)
            return np.repeat(one[None], batch, axis=0)
        return np.full((batch, *self.shape), self.init, dtype=self.dtype)

    @property
    def nbytes_per_env(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class PolicyMetadata:
    """Everything a runner needs to know about a step function, without looking inside the graph."""

    model_kind: str
    model_config: dict[str, Any]
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    obs_shape: tuple[int, ...]
    obs_dtype: str
    num_actions: int
    """Discrete: the number of actions; continuous: the number of action dimensions."""
    state: tuple[StateEntry, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    policy_version: int
    protocol_version: int
    opset: int
    torch_version: str = ""
    graph_sha256: str = ""
    weights: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """ONNX initializers that are model parameters (the weights-only update targets): name -> shape (float32)."""
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = METADATA_FORMAT
    action_kind: str = "discrete"
    """``discrete`` (categorical over logits) or ``continuous`` (diagonal Gaussian); files without it are discrete."""

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.state)

    @property
    def state_bytes_per_env(self) -> int:
        return sum(s.nbytes_per_env for s in self.state)

    def state_layout(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        """What must match for two policies to share a recurrent state."""
        return tuple((s.name, s.shape, s.dtype) for s in self.state)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = [{**asdict(s), "shape": list(s.shape)} for s in self.state]
        for key in ("obs_shape", "inputs", "outputs"):
            d[key] = list(d[key])
        d["weights"] = {k: list(v) for k, v in self.weights.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyMetadata:
        if not isinstance(data, dict):
            raise PolicyError(f"policy metadata must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format", METADATA_FORMAT)
        if fmt != METADATA_FORMAT:
            raise PolicyError(f"policy metadata format {fmt!r} is not supported (this code reads {METADATA_FORMAT})")
        try:
            state = tuple(
                StateEntry(
                    name=str(s["name"]),
                    shape=tuple(int(x) for x in s["shape"]),
                    dtype=str(s["dtype"]),
                    output=str(s["output"]),
                    init=s.get("init", 0),
                )
                for s in data["state"]
            )
            meta = cls(
                model_kind=str(data["model_kind"]),
                model_config=dict(data["model_config"]),
                observation_space=dict(data["observation_space"]),
                action_space=dict(data["action_space"]),
                obs_shape=tuple(int(x) for x in data["obs_shape"]),
                obs_dtype=str(data["obs_dtype"]),
                num_actions=int(data["num_actions"]),
                state=state,
                inputs=tuple(str(x) for x in data["inputs"]),
                outputs=tuple(str(x) for x in data["outputs"]),
                policy_version=int(data["policy_version"]),
                protocol_version=protocol_major(data["protocol_version"]),
                opset=int(data["opset"]),
                torch_version=str(data.get("torch_version", "")),
                graph_sha256=str(data.get("graph_sha256", "")),
                weights={str(k): tuple(int(x) for x in v) for k, v in dict(data.get("weights", {})).items()},
                extra=dict(data.get("extra", {})),
                format=int(fmt),
                action_kind=str(data.get("action_kind", "discrete")),
            )
        except KeyError as exc:
            raise PolicyError(f"policy metadata lacks the key {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"malformed policy metadata: {exc}") from exc
        if meta.action_kind not in POLICY_OUTPUTS:
            raise PolicyError(f"unknown action kind {meta.action_kind!r}; supported: {sorted(POLICY_OUTPUTS)}")
        for s in meta.state:
            if s.dtype not in STATE_DTYPES:
                raise PolicyError(f"state {s.name!r} has dtype {s.dtype!r}; supported: {STATE_DTYPES}")
        try:
            np.dtype(meta.obs_dtype)
        except TypeError as exc:
            raise PolicyError(f"unknown observation dtype {meta.obs_dtype!r}") from exc
        return meta

    @classmethod
    def from_json(cls, text: str | bytes) -> PolicyMetadata:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"policy metadata is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def check_protocol(self, local: int | None = None) -> None:
        """Refuse metadata written under another protocol major version (its layout may mean something else)."""
        mine = local_protocol_version() if local is None else local
        if self.protocol_version != mine:
            raise PolicyError(
                f"policy was exported for protocol major version {self.protocol_version}, this code speaks {mine}; "
                f"re-export it with this version"
            )
