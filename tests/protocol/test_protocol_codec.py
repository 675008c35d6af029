"""Round trips through the msgpack codec: every message type, every supported dtype, edge-case shapes."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from protocol import (
    ARRAY_EXT,
    PROTOCOL_VERSION,
    SUPPORTED_DTYPES,
    ProtocolError,
    Reason,
    Segment,
    decode,
    decode_array,
    encode,
    encode_array,
)
from tests.helpers.messages import all_messages, assert_same, make_segment


@pytest.mark.parametrize("msg", all_messages(), ids=lambda m: type(m).__name__ + getattr(m, "kind", ""))
def test_every_message_round_trips(msg):
    data = encode(msg)
    assert isinstance(data, bytes)
    assert_same(decode(data), msg)
    # the wire map names its type and the protocol major version
    body = msgpack.unpackb(data, ext_hook=lambda code, payload: None)
    assert body["type"] == type(msg).__name__ and body["protocol"] == PROTOCOL_VERSION


def test_decode_accepts_any_buffer():
    msg = make_segment()
    data = encode(msg)
    for buf in (bytearray(data), memoryview(data)):
        assert_same(decode(buf), msg)


@pytest.mark.parametrize("dtype", sorted(SUPPORTED_DTYPES))
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_array_dtypes_and_shapes_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    if dtype == "bool":
        arr = rng.random(shape) < 0.5
    elif dtype.startswith("float"):
        arr = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    arr = np.asarray(arr, dtype=dtype)
    out = decode_array(encode_array(arr).data)
    assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    if out.size:
        assert out.flags.aligned


def test_big_endian_and_non_contiguous_inputs_become_little_endian():
    arr = np.arange(24, dtype=">f4").reshape(4, 6)
    out = decode_array(encode_array(arr[:, ::2]).data)
    assert out.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(out, arr[:, ::2])
    big_int = np.array([1, 2**40, -5], dtype=">i8")
    np.testing.assert_array_equal(decode_array(encode_array(big_int).data), big_int)


def test_extreme_integer_values_round_trip():
    for dtype in ("int64", "uint64", "int8", "uint8"):
        info = np.iinfo(dtype)
        arr = np.array([info.min, 0, info.max], dtype=dtype)
        np.testing.assert_array_equal(decode_array(encode_array(arr).data), arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.array([object()], dtype=object),
        np.zeros(2, dtype="V4"),
        np.array(["ab"]),
        np.zeros(2, np.complex64),
        np.zeros(2, dtype=[("a", "<i4")]),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
    ],
    ids=["object", "void", "str", "complex", "structured", "datetime"],
)
def test_unsupported_dtypes_are_refused_at_encode(arr):
    with pytest.raises(ProtocolError) as info:
        encode_array(arr)
    assert info.value.reason is Reason.BAD_DTYPE


def test_decoded_arrays_are_read_only_views_unless_writable_requested():
    msg = make_segment()
    data = encode(msg)
    seg = decode(data)
    assert isinstance(seg, Segment)
    assert not seg.obs.flags.writeable and not seg.initial_state["memory"].flags.writeable
    with pytest.raises(ValueError):
        seg.obs[0] = 0
    seg = decode(data, writable=True)
    assert isinstance(seg, Segment)
    assert seg.obs.flags.writeable and seg.initial_state["memory"].flags.writeable
    seg.obs[0] = 0  # a private copy: may be modified
    assert_same(decode(data), msg)


def test_numpy_scalars_in_typed_fields_and_free_form_dicts_encode_as_plain_values():
    from protocol import LearnerStatus, Welcome
    from tests.helpers.messages import make_welcome

    # numpy scalars where the message declares plain float/int/bool (what a sender may well pass)
    numpy_scalars: dict[str, Any] = dict(
        time=np.float64(2.5), policy_version=np.int64(4), segments_per_version=np.float32(1.5), starving=np.bool_(True)
    )
    msg = LearnerStatus(learner_run_id="l", **numpy_scalars)
    out = decode(encode(msg))
    assert isinstance(out, LearnerStatus)
    assert (out.time, out.policy_version, out.segments_per_version, out.starving) == (2.5, 4, 1.5, True)
    assert type(out.starving) is bool
    welcome = decode(encode(make_welcome(env_kwargs={"x": np.float32(1.5), "n": np.int32(3), "ok": np.bool_(True)})))
    assert isinstance(welcome, Welcome)
    assert welcome.env_kwargs == {"x": 1.5, "n": 3, "ok": True}


def _payload(arr_bytes: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(ARRAY_EXT, arr_bytes))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p[:1],  # header truncated
        lambda p: p[:-1],  # data one byte short
        lambda p: p + b"\0",  # one byte too many
        lambda p: bytes([40]) + p[1:],  # ndim above the limit
        lambda p: p[:2] + b"complex64"[:7] + p[9:],  # unsupported dtype name of the same length
        lambda p: p[:2] + b"\xff" * 7 + p[9:],  # not ASCII
        lambda p: p[:15] + b"\x01" + p[16:],  # non-zero padding
    ],
)
def test_malformed_array_payloads_are_refused(mutate):
    payload = encode_array(np.arange(6, dtype=np.float32).reshape(2, 3)).data  # ndim 2, name "float32"
    with pytest.raises(ProtocolError) as info:
        decode_array(mutate(payload))
    assert info.value.reason in (Reason.BAD_ARRAY, Reason.BAD_DTYPE)


def test_bool_arrays_must_hold_only_zero_and_one():
    payload = bytearray(encode_array(np.array([True, False, True])).data)
    payload[-1] = 2
    with pytest.raises(ProtocolError) as info:
        decode_array(bytes(payload))
    assert info.value.reason is Reason.BAD_ARRAY


def test_huge_declared_shape_is_refused_without_allocating():
    payload = bytearray(encode_array(np.zeros((1, 1), np.float64)).data)
    # header: ndim, name length, "float64", padding to 16 bytes, then two u64 dimensions
    payload[16:24] = (2**63).to_bytes(8, "little")
    payload[24:32] = (2**63).to_bytes(8, "little")
    with pytest.raises(ProtocolError) as info:
        decode_array(bytes(payload))
    assert info.value.reason is Reason.BAD_ARRAY


def test_large_segment_round_trips():
    seg = make_segment(t=128, b=16)
    assert_same(decode(encode(seg)), seg)
