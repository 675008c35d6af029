"""Property tests: whatever bytes arrive, decode (and validate_segment) raise nothing but ProtocolError."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import SUPPORTED_DTYPES, ProtocolError, Segment, decode, encode, encode_array, validate_segment
from tests.helpers.messages import all_messages, make_spec

SPEC = make_spec()
VALID = [encode(m) for m in all_messages()]
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_only_protocol_errors(data: bytes) -> None:
    """The property: a clean result or a ProtocolError, never another exception."""
    try:
        msg = decode(data)
    except ProtocolError:
        return
    if isinstance(msg, Segment):
        with contextlib.suppress(ProtocolError):
            validate_segment(msg, SPEC, check_structure=False)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data):
    _decode_only_protocol_errors(data)


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8))
def test_flipped_bytes(data, flips):
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    _decode_only_protocol_errors(bytes(buf))


@FUZZ
@given(st.sampled_from(VALID), st.integers(0, 2**31), st.binary(max_size=16))
def test_truncations_and_insertions(data, cut, junk):
    cut %= len(data)
    _decode_only_protocol_errors(data[:cut])
    _decode_only_protocol_errors(data[:cut] + junk + data[cut:])


# ---------------------------------------------------------------- structure-aware mutations

_dtypes = st.sampled_from([*sorted(SUPPORTED_DTYPES), "float32", "int64", "bool"])
_shapes = st.lists(st.integers(0, 7), max_size=4).map(tuple)


@st.composite
def _arrays(draw):
    dtype, shape = draw(_dtypes), draw(_shapes)
    raw = draw(
        st.binary(
            min_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
            max_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
        )
    )
    if not raw:
        return np.zeros(shape, dtype)
    as_bytes = np.frombuffer(raw, dtype=np.uint8)
    if dtype == "bool":  # a numpy bool is one byte holding 0 or 1; any other byte is refused on decode
        as_bytes = np.bitwise_and(as_bytes, 1, dtype=np.uint8)
    return as_bytes.view(dtype).reshape(shape)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | _arrays()
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _raw_body(data: bytes) -> dict:
    """The wire map with arrays kept as opaque ext objects, so mutations can move them around."""
    return msgpack.unpackb(data, ext_hook=msgpack.ExtType)


def _repack(body: object) -> bytes | None:
    def default(obj):
        if isinstance(obj, np.ndarray):
            return encode_array(obj)
        raise TypeError(type(obj))

    try:
        return msgpack.packb(body, default=default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, ProtocolError):
        return None  # not representable in msgpack at all: nothing a peer could send


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_wrong_field_values(data, draw):
    body = _raw_body(data)
    key = draw.draw(st.sampled_from(sorted(body)))
    body[key] = draw.draw(_values)
    packed = _repack(body)
    if packed is not None:
        _decode_only_protocol_errors(packed)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_swapped_renamed_and_dropped_keys(data, draw):
    body = _raw_body(data)
    keys = sorted(body)
    a, b = draw.draw(st.sampled_from(keys)), draw.draw(st.sampled_from(keys))
    op = draw.draw(st.sampled_from(["swap", "rename", "drop", "nest"]))
    if op == "swap":
        body[a], body[b] = body[b], body[a]
    elif op == "rename":
        body[draw.draw(st.text(max_size=10))] = body.pop(a)
    elif op == "drop":
        del body[a]
    else:
        body[a] = body if a == "policy" else {a: body[a]}  # graft a map where a value was
        body = dict(body)
    packed = _repack(body)
    if packed is not None:
        _decode_only_protocol_errors(packed)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_mutated_arrays_and_nested_values(data, draw):
    """Change one array's dtype, shape or bytes, or one entry inside a nested map or list."""
    body = _raw_body(data)
    containers: list[tuple[dict | list, object]] = [(body, k) for k in body]
    for v in body.values():
        if isinstance(v, dict):
            containers += [(v, kk) for kk in v]
        elif isinstance(v, list):
            containers += [(v, i) for i in range(len(v))]
    holder, key = draw.draw(st.sampled_from(containers))
    value = holder[key]
    if isinstance(value, msgpack.ExtType):
        payload = bytearray(value.data)
        if payload:
            for pos, byte in draw.draw(st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=4)):
                payload[pos % len(payload)] = byte
        cut = draw.draw(st.integers(0, len(payload)))
        holder[key] = msgpack.ExtType(value.code, bytes(payload[: len(payload) - cut // 4]))
    else:
        holder[key] = draw.draw(_values)
    packed = _repack(body)
    if packed is not None:
        _decode_only_protocol_errors(packed)


@settings(max_examples=300, deadline=None)
@given(_arrays())
def test_any_supported_array_round_trips_bit_exactly(arr):
    from protocol import decode_array

    out = decode_array(encode_array(arr).data)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()
