"""Refusals: every way a message can be wrong is a ProtocolError with its own reason."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest

from protocol import (
    PROTOCOL_VERSION,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    ProtocolError,
    Reason,
    SegmentSpec,
    decode,
    encode,
    encode_array,
    error_from,
    validate_segment,
)
from tests.helpers.messages import (
    NUM_ACTIONS,
    all_messages,
    make_full_update,
    make_segment,
    make_spec,
    make_weights_update,
    make_welcome,
)


def _pack(body: dict) -> bytes:
    return msgpack.packb(body, default=lambda a: encode_array(a), use_bin_type=True)


def _refused(data: bytes, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data, **kwargs)
    return info.value


def _wire(msg, **changes) -> bytes:
    return encode(dataclasses.replace(msg, **changes), validate=False)


# ---------------------------------------------------------------- envelope


def test_oversize_is_refused_on_both_sides():
    data = encode(make_segment())
    assert _refused(data, max_bytes=len(data) - 1).reason is Reason.OVERSIZE
    with pytest.raises(ProtocolError) as info:
        encode(make_segment(), max_bytes=100)
    assert info.value.reason is Reason.OVERSIZE


@pytest.mark.parametrize("version", [0, 1, PROTOCOL_VERSION + 1, str(PROTOCOL_VERSION), None, float(PROTOCOL_VERSION)])
def test_other_protocol_versions_are_refused(version):
    body = {"type": "Hello", "protocol": version, "actor_id": "a", "run_id": "r", "num_envs": 1, "host": "h", "pid": 1}
    if version is None:
        del body["protocol"]
    err = _refused(_pack(body))
    assert err.reason is Reason.BAD_VERSION
    # what a learner needs to answer the refusal: who asked, with which message
    assert err.message_type == "Hello" and err.sender == "a"


def test_an_error_is_readable_whatever_its_version():
    data = _pack({"type": "Error", "protocol": 7, "code": "BAD_VERSION", "message": "I speak 7"})
    assert decode(data) == Error(code="BAD_VERSION", message="I speak 7")


def test_error_from_turns_a_refusal_into_a_reply():
    data = _pack({"type": "Hello", "protocol": 1, "actor_id": "a", "run_id": "r", "num_envs": 1, "host": "h", "pid": 1})
    reply = error_from(_refused(data))  # a v1 actor meets a v2 learner
    assert reply.code == "BAD_VERSION" and "protocol 1" in reply.message
    assert decode(encode(reply)) == reply


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", Reason.NOT_MSGPACK),
        (b"\xc1", Reason.NOT_MSGPACK),  # never-used msgpack byte
        (msgpack.packb({"type": "Bye"}) + b"\x00", Reason.NOT_MSGPACK),  # trailing data
        (msgpack.packb([1, 2]), Reason.NOT_A_MAP),
        (msgpack.packb({"protocol": 1}), Reason.UNKNOWN_TYPE),
        (msgpack.packb({"type": "Pickle", "protocol": 1}), Reason.UNKNOWN_TYPE),
        (
            msgpack.packb({"type": "Bye", "protocol": PROTOCOL_VERSION, "actor_id": "a", "run_id": "r"}),
            Reason.MISSING_FIELD,
        ),
        (
            msgpack.packb(
                {"type": "Bye", "protocol": PROTOCOL_VERSION, "actor_id": "a", "run_id": "r", "reason": "", "x": 1}
            ),
            Reason.UNKNOWN_FIELD,
        ),
        (
            msgpack.packb({"type": "Bye", "protocol": PROTOCOL_VERSION, "actor_id": 5, "run_id": "r", "reason": ""}),
            Reason.BAD_FIELD,
        ),
        (
            msgpack.packb({"type": "Bye", "protocol": PROTOCOL_VERSION, "actor_id": "", "run_id": "r", "reason": ""}),
            Reason.OUT_OF_RANGE,
        ),
        (
            msgpack.packb(
                {"type": "Bye", "protocol": PROTOCOL_VERSION, "actor_id": "a" * 300, "run_id": "r", "reason": ""}
            ),
            Reason.OUT_OF_RANGE,
        ),
        (
            msgpack.packb(
                {
                    "type": "Hello",
                    "protocol": PROTOCOL_VERSION,
                    "actor_id": "a",
                    "run_id": "r",
                    "num_envs": True,
                    "host": "h",
                    "pid": 1,
                }
            ),
            Reason.BAD_FIELD,
        ),
        (
            msgpack.packb(
                {
                    "type": "Hello",
                    "protocol": PROTOCOL_VERSION,
                    "actor_id": "a",
                    "run_id": "r",
                    "num_envs": -1,
                    "host": "h",
                    "pid": 1,
                }
            ),
            Reason.OUT_OF_RANGE,
        ),
        (
            msgpack.packb(
                {
                    "type": "Hello",
                    "protocol": PROTOCOL_VERSION,
                    "actor_id": "a",
                    "run_id": "r",
                    "num_envs": 2**64 - 1,
                    "host": "h",
                    "pid": 1,
                }
            ),
            Reason.OUT_OF_RANGE,
        ),
        (
            msgpack.packb(
                {"type": "Error", "protocol": PROTOCOL_VERSION, "code": "X", "message": "m", 3: 4}, strict_types=False
            ),
            Reason.NOT_MSGPACK,
        ),  # integer map keys
        (
            msgpack.packb(
                {"type": "Error", "protocol": PROTOCOL_VERSION, "code": "X", "message": msgpack.ExtType(9, b"")}
            ),
            Reason.BAD_ARRAY,
        ),  # unknown ext type
        ("a str", Reason.NOT_MSGPACK),
        (None, Reason.NOT_MSGPACK),
    ],
    ids=lambda v: v.value if isinstance(v, Reason) else "input",
)
def test_malformed_envelopes_are_refused(data, reason):
    assert _refused(data).reason is reason


def test_plain_dicts_refuse_arrays_deep_nesting_and_non_finite_floats():
    base = make_full_update()
    nested: dict = {"v": 1}
    for _ in range(100):
        nested = {"k": nested}
    cases = [
        ({"x": np.zeros(2)}, Reason.BAD_FIELD),
        (nested, Reason.BAD_FIELD),
        ({"loss": float("nan")}, Reason.NON_FINITE),
        ({"deep": [1, {"x": float("inf")}]}, Reason.NON_FINITE),
    ]
    for metadata, reason in cases:
        with pytest.raises(ProtocolError) as info:
            encode(dataclasses.replace(base, metadata=metadata))  # the sender finds out first
        assert info.value.reason is reason
        assert _refused(_wire(base, metadata=metadata)).reason is reason
    beat = Heartbeat(actor_id="a", run_id="r", time=1.0, policy_version=0, num_envs=1, segments_sent=0)
    assert _refused(_wire(beat, time=float("inf"))).reason is Reason.NON_FINITE


def test_typed_control_fields_are_checked():
    """The control plane's fields are typed (v2): a flow-control share or timeout that is not a positive number,
    a starving flag that is not a bool, or a Heartbeat without its env count is refused."""
    status = LearnerStatus(learner_run_id="l", time=1.0, policy_version=0, segments_per_version=1.0, starving=False)
    beat = Heartbeat(actor_id="a", run_id="r", time=1.0, policy_version=0, num_envs=2, segments_sent=0)
    cases = [
        (_wire(status, starving="yes"), Reason.BAD_FIELD),
        (_wire(status, starving=1), Reason.BAD_FIELD),
        (_wire(status, segments_per_version=0.0), Reason.OUT_OF_RANGE),
        (_wire(beat, num_envs=0), Reason.OUT_OF_RANGE),
        (_wire(make_welcome(), learner_timeout_s=0.0), Reason.OUT_OF_RANGE),
        (_wire(make_welcome(), segment_length=0), Reason.OUT_OF_RANGE),
        (_wire(make_welcome(), env_kwargs=[1, 2]), Reason.BAD_FIELD),
        (_pack({**msgpack.unpackb(encode(make_welcome())), "settings": {}}), Reason.UNKNOWN_FIELD),  # a v1 field
    ]
    for data, reason in cases:
        assert _refused(data).reason is reason
    assert Hello(actor_id="a", run_id="r", num_envs=0, host="h", pid=1) == decode(
        encode(Hello(actor_id="a", run_id="r", num_envs=0, host="h", pid=1))
    )  # 0 envs: as many as the learner's Welcome says


# ---------------------------------------------------------------- segments


def test_non_finite_floats_in_segments_are_refused():
    seg = make_segment()
    for name in ("obs", "logp", "rewards", "bootstrap_values"):
        arr = getattr(seg, name).copy()
        arr.flat[arr.size // 2] = np.nan if name != "rewards" else -np.inf
        if name == "bootstrap_values":
            arr = np.where(seg.truncated, np.inf, 0).astype(np.float32)
            if not seg.truncated.any():
                continue
        assert _refused(_wire(seg, **{name: arr})).reason is Reason.NON_FINITE, name
    state = dict(seg.initial_state, memory=np.full_like(seg.initial_state["memory"], np.nan))
    assert _refused(_wire(seg, initial_state=state)).reason is Reason.NON_FINITE


@pytest.mark.parametrize(
    "field, shape",
    [
        ("obs", (6, 3, 3, 2)),
        ("obs", (7, 2, 3, 2)),
        ("logp", (6, 2)),
        ("rewards", (5, 3)),
        ("terminated", (6, 4)),
        ("truncated", (7, 3)),
        ("reset", (6, 3)),
        ("bootstrap_values", (3, 6)),
    ],
)
def test_inconsistent_t_or_b_is_refused(field, shape):
    seg = make_segment(t=6, b=3)
    arr = np.zeros(shape, dtype=getattr(seg, field).dtype)
    assert _refused(_wire(seg, **{field: arr})).reason is Reason.INCONSISTENT


def test_state_batch_must_match_b():
    seg = make_segment(b=3)
    state = dict(seg.initial_state, tick=np.zeros(4, np.int64))
    assert _refused(_wire(seg, initial_state=state)).reason is Reason.INCONSISTENT


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("actions", np.zeros((0, 3), np.int64), Reason.BAD_SHAPE),
        ("actions", np.zeros(6, np.int64), Reason.BAD_SHAPE),
        ("actions", np.zeros((6, 3), bool), Reason.BAD_DTYPE),
        ("rewards", np.zeros((6, 3), np.float64), Reason.BAD_DTYPE),
        ("terminated", np.zeros((6, 3), np.uint8), Reason.BAD_DTYPE),
        ("obs", [[1.0]], Reason.BAD_FIELD),
        ("initial_state", {"": np.zeros(3)}, Reason.BAD_FIELD),
        ("initial_state", [np.zeros(3)], Reason.BAD_FIELD),
        ("episodes", {"env": 0}, Reason.BAD_FIELD),
        ("episodes", [{"env": 0, "return": 1.0, "length": 3}], Reason.MISSING_FIELD),
        ("episodes", [{"env": 3, "return": 1.0, "length": 3, "success": None}], Reason.OUT_OF_RANGE),
        ("episodes", [{"env": 0, "return": 1.0, "length": 0, "success": None}], Reason.OUT_OF_RANGE),
        ("episodes", [{"env": 0, "return": "x", "length": 2, "success": None}], Reason.BAD_FIELD),
        ("episodes", [{"env": 0, "return": 1.0, "length": 2, "success": 1}], Reason.BAD_FIELD),
        ("seq", -1, Reason.OUT_OF_RANGE),
        ("policy_version", 1.5, Reason.BAD_FIELD),
    ],
)
def test_bad_segment_fields_are_refused(field, value, reason):
    assert _refused(_wire(make_segment(t=6, b=3), **{field: value})).reason is reason


def test_resets_must_follow_episode_ends():
    seg = make_segment()
    reset = seg.reset.copy()
    reset[3, 1] = ~reset[3, 1]
    assert _refused(_wire(seg, reset=reset)).reason is Reason.INCONSISTENT
    reset = seg.reset.copy()
    reset[0] = ~reset[0]  # the first row is free: the segment may start mid-episode or at a reset
    decode(_wire(seg, reset=reset))


def test_bootstrap_values_only_where_truncated():
    seg = make_segment()
    boot = seg.bootstrap_values.copy()
    idx = np.argwhere(~seg.truncated)[0]
    boot[tuple(idx)] = 1.0
    assert _refused(_wire(seg, bootstrap_values=boot)).reason is Reason.INCONSISTENT


def test_sender_is_reported_with_a_segment_refusal():
    err = _refused(_wire(make_segment(), rewards=np.full((6, 3), np.nan, np.float32)))
    assert err.sender == "actor-0" and err.message_type == "Segment"


# ---------------------------------------------------------------- policies


def test_model_update_consistency():
    full, weights = make_full_update(), make_weights_update()
    cases = [
        (_wire(full, graph_sha256="0" * 64), Reason.INCONSISTENT),
        (_wire(full, graph_sha256="XYZ"), Reason.BAD_FIELD),
        (_wire(full, weights={"w": np.zeros(2, np.float32)}), Reason.INCONSISTENT),
        (
            _wire(full, onnx=b"", graph_sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            Reason.BAD_FIELD,
        ),
        (_wire(full, kind="partial"), Reason.BAD_FIELD),
        (_wire(weights, weights=None), Reason.INCONSISTENT),
        (_wire(weights, weights={}), Reason.BAD_FIELD),
        (_wire(weights, weights={"w": np.array([1.0, np.inf], np.float32)}), Reason.NON_FINITE),
        (_wire(weights, weights={"w": np.array([1, 2], np.int64), "x": "1"}), Reason.BAD_FIELD),
        (_wire(make_welcome(policy=weights)), Reason.INCONSISTENT),
        (_wire(make_welcome(policy=full), policy="not a map"), Reason.BAD_FIELD),
    ]
    for data, reason in cases:
        assert _refused(data).reason is reason


def test_encode_validates_by_default():
    with pytest.raises(ProtocolError) as info:
        encode(Hello(actor_id="a", run_id="r", num_envs=-1, host="h", pid=1))
    assert info.value.reason is Reason.OUT_OF_RANGE
    with pytest.raises(ProtocolError) as info:
        encode(object())  # type: ignore[arg-type]  # not a message, on purpose
    assert info.value.reason is Reason.UNKNOWN_TYPE


# ---------------------------------------------------------------- the run's spec


def test_a_matching_segment_passes_the_spec():
    validate_segment(decode(encode(make_segment())), make_spec())  # type: ignore[arg-type]  # decoded: a Segment


def _spec_refusal(seg, spec=None) -> Reason:
    with pytest.raises(ProtocolError) as info:
        validate_segment(seg, spec or make_spec())
    return info.value.reason


def test_segments_not_matching_the_spec_are_refused():
    seg = make_segment(t=6, b=3)
    t, b = 6, 3
    assert _spec_refusal(make_segment(t=5)) is Reason.SPEC_MISMATCH  # another segment length
    assert _spec_refusal(seg, make_spec(max_envs=2)) is Reason.SPEC_MISMATCH  # too many envs
    wrong_obs = dataclasses.replace(seg, obs=np.zeros((t + 1, b, 2, 3), np.float32))
    assert _spec_refusal(wrong_obs) is Reason.SPEC_MISMATCH
    wrong_obs_dtype = dataclasses.replace(seg, obs=seg.obs.astype(np.float16))
    assert _spec_refusal(wrong_obs_dtype) is Reason.SPEC_MISMATCH
    wrong_action_dtype = dataclasses.replace(seg, actions=seg.actions.astype(np.int32))
    assert _spec_refusal(wrong_action_dtype) is Reason.SPEC_MISMATCH
    for bad in (NUM_ACTIONS, -1):
        actions = seg.actions.copy()
        actions[2, 1] = bad
        assert _spec_refusal(dataclasses.replace(seg, actions=actions)) is Reason.OUT_OF_RANGE
    logp = seg.logp.copy()
    logp[0, 0] = 0.5
    assert _spec_refusal(dataclasses.replace(seg, logp=logp)) is Reason.OUT_OF_RANGE
    missing = {"memory": seg.initial_state["memory"]}
    assert _spec_refusal(dataclasses.replace(seg, initial_state=missing)) is Reason.SPEC_MISMATCH
    extra = dict(seg.initial_state, other=np.zeros(b, np.float32))
    assert _spec_refusal(dataclasses.replace(seg, initial_state=extra)) is Reason.SPEC_MISMATCH
    reshaped = dict(seg.initial_state, memory=np.zeros((b, 5, 2), np.float32))
    assert _spec_refusal(dataclasses.replace(seg, initial_state=reshaped)) is Reason.SPEC_MISMATCH
    retyped = dict(seg.initial_state, tick=np.zeros(b, np.int32))
    assert _spec_refusal(dataclasses.replace(seg, initial_state=retyped)) is Reason.SPEC_MISMATCH
    assert _spec_refusal(make_full_update()) is Reason.SPEC_MISMATCH  # not a segment at all
    # an object that never went through decode is checked structurally first
    assert _spec_refusal(dataclasses.replace(seg, actions=[[0]])) is Reason.BAD_FIELD  # type: ignore[arg-type]  # on purpose
    assert _spec_refusal(dataclasses.replace(seg, rewards=seg.rewards[:-1])) is Reason.INCONSISTENT


def test_continuous_action_spec_checks_shape_not_range():
    spec = SegmentSpec(
        obs_shape=(3, 2),
        obs_dtype="float32",
        num_actions=None,
        segment_length=6,
        state=make_spec().state,
        max_envs=4,
        action_shape=(2,),
        action_dtype="float32",
    )
    seg = make_segment()
    seg = dataclasses.replace(seg, actions=np.full((6, 3, 2), 7.5, np.float32), logp=np.ones((6, 3), np.float32))
    validate_segment(decode(encode(seg)), spec)  # type: ignore[arg-type]  # decoded: a Segment
    assert _spec_refusal(make_segment(), spec) is Reason.SPEC_MISMATCH


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(obs_dtype=object),
        dict(obs_dtype="complex64"),
        dict(num_actions=0),
        dict(segment_length=0),
        dict(max_envs=0),
        dict(state={"m": (2, "float32")}),
        dict(state={"": ((2,), "float32")}),
        dict(num_actions=3, action_dtype="float32"),
        dict(obs_shape=(-1,)),
    ],
)
def test_bad_specs_are_programming_errors(kwargs):
    base = dict(obs_shape=(3,), obs_dtype="float32", num_actions=3, segment_length=4, state={}, max_envs=2)
    with pytest.raises(ValueError):
        SegmentSpec(**(base | kwargs))


def test_every_valid_message_still_validates():
    for msg in all_messages():
        decode(encode(msg))
