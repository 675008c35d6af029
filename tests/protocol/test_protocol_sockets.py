"""Real ZeroMQ sockets on loopback exchange every message type through the channel helpers.

Waits use poll() with a generous bound that only turns a hang into a failure; nothing asserts on time.
"""

from __future__ import annotations

import pytest
import zmq

from protocol import (
    PROTOCOL_VERSION,
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    ModelUpdate,
    ProtocolError,
    Reason,
    Segment,
    Welcome,
    bind_control,
    bind_policies,
    bind_trajectories,
    bound_port,
    connect_control,
    connect_policies,
    connect_trajectories,
    create_socket,
    decode,
    encode,
    error_from,
    tcp_address,
)
from tests.helpers.messages import all_messages, assert_same, make_full_update, make_segment

WAIT_MS = 10_000  # upper bound before a test gives up; normally a few milliseconds
HOST = "127.0.0.1"


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def recv_frames(sock: zmq.Socket) -> list[bytes]:
    assert sock.poll(WAIT_MS, zmq.POLLIN), "nothing arrived"
    return sock.recv_multipart()


def recv_msg(sock: zmq.Socket):
    (frame,) = recv_frames(sock)
    return decode(frame)


def address(sock: zmq.Socket) -> str:
    return tcp_address(HOST, bound_port(sock))


def test_tcp_address():
    assert tcp_address("learner", 5555) == "tcp://learner:5555"
    assert tcp_address("::1", 80) == "tcp://[::1]:80"
    assert tcp_address("[::1]", 80) == "tcp://[::1]:80"
    for host, port in (("", 1), ("h", 0), ("h", 70000)):
        with pytest.raises(ValueError):
            tcp_address(host, port)


def test_sockets_get_bounded_queues_and_short_linger(ctx):
    pull = bind_trajectories(ctx, port=0, host=HOST, rcvhwm=7, max_message_bytes=1234)
    push = connect_trajectories(ctx, address(pull), sndhwm=3)
    sub = connect_policies(ctx, "tcp://127.0.0.1:1")
    assert pull.getsockopt(zmq.RCVHWM) == 7 and pull.getsockopt(zmq.MAXMSGSIZE) == 1234
    assert push.getsockopt(zmq.SNDHWM) == 3
    linger = push.getsockopt(zmq.LINGER)
    assert isinstance(linger, int) and 0 <= linger <= 1000
    assert sub.getsockopt(zmq.CONFLATE) == 1
    assert push.getsockopt(zmq.TCP_KEEPALIVE) == 1


def test_segments_over_push_pull(ctx):
    pull = bind_trajectories(ctx, port=0, host=HOST)
    push = connect_trajectories(ctx, address(pull))
    sent = [make_segment(seed=i, seq=i) for i in range(3)]
    for seg in sent:
        push.send(encode(seg))
    for seg in sent:  # one PUSH peer: arrival order is send order
        got = recv_msg(pull)
        assert isinstance(got, Segment)
        assert_same(got, seg)


def test_oversize_segment_never_reaches_the_learner(ctx):
    """MAXMSGSIZE drops the message in libzmq; the next connection's small message still arrives."""
    pull = bind_trajectories(ctx, port=0, host=HOST, max_message_bytes=4096)
    big = connect_trajectories(ctx, address(pull))
    big.send(encode(make_segment(t=64, b=8)))
    small = connect_trajectories(ctx, address(pull))
    small.send(encode(Bye(actor_id="a", run_id="r", reason="marker")))
    assert isinstance(recv_msg(pull), Bye)
    assert pull.poll(0) == 0


def _sync_subscribers(pub: zmq.Socket, subs: list[zmq.Socket]) -> None:
    """Publish probes until every subscriber got one (PUB drops messages for not-yet-joined subscribers)."""
    pending = set(range(len(subs)))
    probe = encode(Error(code="PROBE", message="sync"))
    for _ in range(WAIT_MS // 20):
        pub.send(probe)
        for i in list(pending):
            if subs[i].poll(20):
                pending.discard(i)
        if not pending:
            break
    assert not pending, "subscribers never joined"
    for sub in subs:  # drain the probes
        while sub.poll(50):
            sub.recv()


def test_model_updates_over_pub_sub(ctx):
    pub = bind_policies(ctx, port=0, host=HOST)
    sub = connect_policies(ctx, address(pub))
    _sync_subscribers(pub, [sub])
    for update in (m for m in all_messages() if isinstance(m, ModelUpdate)):
        pub.send(encode(update))
        got = recv_msg(sub)
        while isinstance(got, Error):  # a late probe
            got = recv_msg(sub)
        assert_same(got, update)


def test_conflated_subscriber_reads_only_the_newest_policy(ctx):
    versions = range(10, 210)  # many: a socket that queued them all could not pass for one that conflates
    pub = bind_policies(ctx, port=0, host=HOST, sndhwm=2 * len(versions))  # the default (4) would drop for the witness
    conflated = connect_policies(ctx, address(pub))
    witness = create_socket(ctx, zmq.SUB)  # sees every message: tells us when all have been sent
    witness.setsockopt(zmq.SUBSCRIBE, b"")
    witness.connect(address(pub))
    _sync_subscribers(pub, [conflated, witness])

    for v in versions:
        pub.send(encode(make_full_update(version=v, onnx=b"policy-%d" % v)))
    seen: list[int] = []
    while not seen or seen[-1] != versions[-1]:
        msg = recv_msg(witness)
        if isinstance(msg, ModelUpdate):
            seen.append(msg.version)
    assert seen == list(versions)  # the non-conflated socket queues every policy, in order

    # Each read hands over the newest policy the socket holds at that moment. Every policy is on the wire by now,
    # but the conflated connection may still be taking in the last of them when it is first read (a loaded
    # machine), so it is read until the newest arrives: a few reads, never the two hundred a queue would give.
    read: list[ModelUpdate] = []
    while not read or read[-1].version != versions[-1]:
        msg = recv_msg(conflated)
        if isinstance(msg, ModelUpdate):
            read.append(msg)
    assert [m.version for m in read] == sorted({m.version for m in read})  # newer each time, none twice
    assert len(read) < len(versions) // 4
    assert read[-1].onnx == b"policy-%d" % versions[-1]
    assert conflated.poll(0) == 0  # nothing older is queued behind the newest


def test_control_messages_over_router_dealer(ctx):
    router = bind_control(ctx, port=0, host=HOST)
    dealer = connect_control(ctx, address(router), rcvtimeo_ms=WAIT_MS)
    hello, welcome, heartbeat, status, bye, error = (
        next(m for m in all_messages() if isinstance(m, cls))
        for cls in (Hello, Welcome, Heartbeat, LearnerStatus, Bye, Error)
    )

    dealer.send(encode(hello))
    identity, frame = recv_frames(router)
    assert_same(decode(frame), hello)

    router.send_multipart([identity, encode(welcome)])
    assert_same(decode(dealer.recv()), welcome)

    dealer.send(encode(heartbeat))
    _, frame = recv_frames(router)
    assert_same(decode(frame), heartbeat)
    router.send_multipart([identity, encode(status)])
    assert_same(decode(dealer.recv()), status)

    router.send_multipart([identity, encode(error)])
    assert_same(decode(dealer.recv()), error)

    dealer.send(encode(bye))
    _, frame = recv_frames(router)
    assert_same(decode(frame), bye)


def test_other_protocol_version_is_refused_at_hello_on_both_sides(ctx):
    import msgpack

    router = bind_control(ctx, port=0, host=HOST)
    dealer = connect_control(ctx, address(router), rcvtimeo_ms=WAIT_MS)
    future_hello = msgpack.packb(
        {
            "type": "Hello",
            "protocol": PROTOCOL_VERSION + 1,
            "actor_id": "a",
            "run_id": "r",
            "num_envs": 1,
            "host": "h",
            "pid": 1,
            "new_field": True,
        }
    )
    dealer.send(future_hello)

    identity, frame = recv_frames(router)
    with pytest.raises(ProtocolError) as info:  # the learner's side
        decode(frame)
    assert info.value.reason is Reason.BAD_VERSION and info.value.sender == "a"
    router.send_multipart([identity, encode(error_from(info.value))])

    reply = decode(dealer.recv())  # the actor's side: a readable refusal, not silence
    assert isinstance(reply, Error) and reply.code == Reason.BAD_VERSION
    assert f"protocol {PROTOCOL_VERSION + 1}" in reply.message


def test_ipv6_loopback_when_the_host_has_it(ctx):
    try:
        pull = bind_trajectories(ctx, port=0, host="::1")
    except zmq.ZMQError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    push = connect_trajectories(ctx, tcp_address("::1", bound_port(pull)))
    push.send(encode(Bye(actor_id="a", run_id="r", reason="v6")))
    assert recv_msg(pull).reason == "v6"
