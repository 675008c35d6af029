"""Builders of valid protocol messages shared by the protocol tests (imported by name; no conftest magic)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from protocol import (
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    Message,
    ModelUpdate,
    Segment,
    SegmentSpec,
    Welcome,
)

OBS_SHAPE = (3, 2)
NUM_ACTIONS = 4
STATE = {"memory": ((2, 5), "float32"), "tick": ((), "int64")}


def make_segment(t: int = 6, b: int = 3, seed: int = 0, **overrides: object) -> Segment:
    """A consistent segment: resets follow episode ends, bootstrap values only where truncated."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((t, b)) < 0.2
    truncated = (rng.random((t, b)) < 0.15) & ~terminated
    reset = np.zeros((t + 1, b), dtype=bool)
    reset[0] = rng.random(b) < 0.5
    reset[1:] = terminated | truncated
    bootstrap = np.where(truncated, rng.normal(size=(t, b)), 0.0).astype(np.float32)
    episodes = [
        {"env": int(e), "return": float(rng.normal()), "length": int(rng.integers(1, 50)), "success": bool(s % 2)}
        for s, (_, e) in enumerate(zip(*np.nonzero(terminated | truncated), strict=True))
    ]
    fields: dict[str, Any] = dict(
        actor_id="actor-0",
        run_id="run-abc",
        seq=7,
        policy_version=3,
        obs=rng.normal(size=(t + 1, b, *OBS_SHAPE)).astype(np.float32),
        actions=rng.integers(0, NUM_ACTIONS, size=(t, b)).astype(np.int64),
        logp=-rng.random((t, b)).astype(np.float32),
        rewards=rng.normal(size=(t, b)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        reset=reset,
        bootstrap_values=bootstrap,
        initial_state={
            "memory": rng.normal(size=(b, 2, 5)).astype(np.float32),
            "tick": rng.integers(0, 9, size=(b,)).astype(np.int64),
        },
        episodes=episodes,
    )
    fields.update(overrides)
    return Segment(**fields)


def make_spec(t: int = 6, max_envs: int = 8) -> SegmentSpec:
    return SegmentSpec(
        obs_shape=OBS_SHAPE,
        obs_dtype="float32",
        num_actions=NUM_ACTIONS,
        segment_length=t,
        state=STATE,
        max_envs=max_envs,
    )


def make_full_update(version: int = 5, onnx: bytes = b"\x08\x07fake-onnx-bytes" * 10) -> ModelUpdate:
    return ModelUpdate(
        version=version,
        kind="full",
        onnx=onnx,
        weights=None,
        graph_sha256=hashlib.sha256(onnx).hexdigest(),
        metadata={"model": "agalite", "config": {"d_model": 128, "layers": [1, 2]}, "lr": 2.5e-4},
    )


def make_weights_update(version: int = 6) -> ModelUpdate:
    rng = np.random.default_rng(version)
    return ModelUpdate(
        version=version,
        kind="weights",
        onnx=None,
        weights={"layer.0.weight": rng.normal(size=(4, 3)).astype(np.float32), "bias": np.zeros(3, np.float16)},
        graph_sha256=make_full_update().graph_sha256,
        metadata={},
    )


def make_welcome(**overrides: object) -> Welcome:
    fields: dict = dict(
        learner_run_id="learner-1",
        env_id="TMaze-v0",
        env_kwargs={"length": 10},
        segment_length=6,
        envs_per_actor=3,
        seed=17,
        heartbeat_interval_s=1.5,
        learner_timeout_s=10.0,
        segments_per_version=2.0,
        policy=make_full_update(),
    )
    fields.update(overrides)
    return Welcome(**fields)


def all_messages() -> list[Message]:
    """One valid instance of every message type (both ModelUpdate kinds)."""
    return [
        Hello(actor_id="actor-0", run_id="run-abc", num_envs=3, host="box", pid=1234),
        make_welcome(),
        Heartbeat(actor_id="actor-0", run_id="run-abc", time=1.7e9, policy_version=5, num_envs=3, segments_sent=12),
        LearnerStatus(
            learner_run_id="learner-1", time=1.7e9, policy_version=6, segments_per_version=1.5, starving=True
        ),
        Bye(actor_id="actor-0", run_id="run-abc", reason="shutdown"),
        make_segment(),
        make_full_update(),
        make_weights_update(),
        Error(code="BAD_VERSION", message="peer speaks protocol 2"),
    ]


def assert_same(a: object, b: object) -> None:
    """Deep equality for messages holding arrays: same type, same values, same dtypes and shapes."""
    assert type(a) is type(b), (type(a), type(b))
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b, (a, b)
