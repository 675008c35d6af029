"""Decoding hostile frames costs bounded memory and yields bounded refusals.

Memory is measured with tracemalloc (every Python object msgpack builds is traced), so the bounds are counts of
bytes, never of time, and hold on any machine.
"""

from __future__ import annotations

import struct
import tracemalloc

import msgpack
import numpy as np
import pytest

from protocol import MAX_ID_LENGTH, PROTOCOL_VERSION, ProtocolError, Reason, Segment, decode, encode
from protocol.codec import MAX_CONTAINER_ITEMS, MAX_DETAIL_CHARS

MiB = 1024 * 1024


def _peak_of(fn) -> tuple[int, object]:
    """Peak traced bytes while ``fn`` runs, and what it raised (or returned)."""
    tracemalloc.start()
    try:
        try:
            result: object = fn()
        except Exception as exc:  # the refusal is the result under test
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _array_of_empty_maps(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n) + b"\x80" * n


def _nested_empty_maps(outer: int, inner: int) -> bytes:
    row = b"\xdd" + struct.pack(">I", inner) + b"\x80" * inner
    return b"\xdd" + struct.pack(">I", outer) + row * outer


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(lambda: _array_of_empty_maps(16 * MiB - 5), id="one-16MiB-array-of-empty-maps"),
        pytest.param(lambda: _nested_empty_maps(256, 65536), id="256-arrays-of-65536-empty-maps"),
        pytest.param(lambda: b"\xdd" + struct.pack(">I", 16 * MiB) + b"\xc0" * (16 * MiB), id="16M-nils"),
        pytest.param(
            lambda: msgpack.packb({"type": "Hello", "protocol": PROTOCOL_VERSION, "x": [[[]] * 4096] * 1024}),
            id="nested-empty-lists-in-a-message",
        ),
    ],
)
def test_small_frames_of_tiny_containers_cannot_amplify_memory(frame):
    data = frame()
    peak, result = _peak_of(lambda: decode(data))
    assert isinstance(result, ProtocolError), result
    assert result.reason in (Reason.NOT_MSGPACK, Reason.OVERSIZE)
    # unbounded, these build 0.1-1 GB of Python objects; the budget stops them at a few tens of MB
    assert peak < 48 * MiB + len(data) // 4, f"peak {peak / MiB:.0f} MiB decoding a {len(data) / MiB:.0f} MiB frame"


def test_the_budget_still_admits_a_segment_with_thousands_of_episodes():
    t, b = 128, 64
    episodes = [{"env": i % b, "return": 1.0, "length": 1, "success": True} for i in range(8000)]
    done = np.ones((t, b), bool)
    seg = Segment(
        actor_id="a",
        run_id="r",
        seq=0,
        policy_version=0,
        obs=np.zeros((t + 1, b, 3), np.float32),
        actions=np.zeros((t, b), np.int64),
        logp=np.zeros((t, b), np.float32),
        rewards=np.zeros((t, b), np.float32),
        terminated=done,
        truncated=~done,
        reset=np.concatenate([np.zeros((1, b), bool), done]),
        bootstrap_values=np.zeros((t, b), np.float32),
        initial_state={"h": np.zeros((b, 4), np.float32)},
        episodes=episodes,
    )
    assert MAX_CONTAINER_ITEMS > 8000 * 5
    got = decode(encode(seg))
    assert isinstance(got, Segment) and len(got.episodes) == 8000


def _hello_with(actor_id: object, **extra: object) -> bytes:
    body = {"type": "Hello", "protocol": PROTOCOL_VERSION, "actor_id": actor_id, "run_id": "r", "num_envs": 1}
    body.update(host="h", pid=1, **extra)
    return msgpack.packb(body)


def test_an_8MiB_actor_id_is_refused_without_naming_it():
    data = _hello_with("x" * (8 * MiB))
    peak, result = _peak_of(lambda: decode(data))
    assert isinstance(result, ProtocolError)
    assert result.sender is None
    assert len(str(result)) <= MAX_DETAIL_CHARS + 40
    assert peak < 4 * MiB, "the id was materialised as a str"


def test_an_overlong_id_under_the_string_limit_is_not_reported_as_the_sender():
    with pytest.raises(ProtocolError) as info:
        decode(_hello_with("y" * (MAX_ID_LENGTH + 1)))
    assert info.value.reason is Reason.OUT_OF_RANGE
    assert info.value.sender is None
    with pytest.raises(ProtocolError) as info:
        decode(_hello_with("ok-id", num_envs_typo=1))
    assert info.value.sender == "ok-id"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"type": "T" * 500_000, "protocol": PROTOCOL_VERSION}, id="huge-type-name"),
        pytest.param({"type": "Bye", "protocol": PROTOCOL_VERSION, "k" * 500_000: 1}, id="huge-unknown-field"),
        pytest.param({"type": "Bye", "protocol": "v" * 500_000}, id="huge-version"),
    ],
)
def test_refusal_details_are_clipped(body):
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb(body))
    assert len(info.value.detail) <= MAX_DETAIL_CHARS
