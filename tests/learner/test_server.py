"""The learner's network side in-process, over real ZeroMQ sockets on loopback: intake, drops, lag, flow control,
backpressure and actor bookkeeping. No torch model is involved: a LearnerServer needs only a spec and a policy."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq

from learner.server import LearnerServer, RunSettings
from protocol import (
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    ModelUpdate,
    Segment,
    SegmentSpec,
    Welcome,
    bound_port,
    connect_control,
    connect_trajectories,
    decode,
    encode,
    tcp_address,
)

OBS_DIM = 5
T = 4
ONNX = b"not really onnx, the server only forwards it" * 4


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Version:
    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


def make_server(
    version: Version,
    *,
    obs_dim: int = OBS_DIM,
    max_queue: int = 4,
    batch_envs: int = 16,
    actor_timeout_s: float = 10.0,
    max_policy_lag: int = 2,
) -> LearnerServer:
    spec = SegmentSpec(
        obs_shape=(obs_dim,),
        obs_dtype="float32",
        num_actions=3,
        segment_length=T,
        state={"h": ((2,), "float32")},
        max_envs=64,
    )
    policy = ModelUpdate(
        version=0, kind="full", onnx=ONNX, weights=None, graph_sha256=hashlib.sha256(ONNX).hexdigest(), metadata={}
    )
    return LearnerServer(
        host="127.0.0.1",
        trajectory_port=0,
        policy_port=0,
        control_port=0,
        spec=spec,
        settings=RunSettings(
            env_id="agalite/TMaze-v0",
            env_kwargs={"corridor_length": 4},
            segment_length=T,
            envs_per_actor=8,
            seed=1,
            heartbeat_interval_s=1.0,
            learner_timeout_s=10.0,
        ),
        run_id="learner-run",
        current_version=version,
        welcome_policy=lambda: policy,
        max_policy_lag=max_policy_lag,
        actor_timeout_s=actor_timeout_s,
        max_queue_segments=max_queue,
        batch_envs=batch_envs,
    )


def segment(
    actor_id: str = "a", b: int = 2, version: int = 0, seq: int = 0, obs_dim: int = OBS_DIM, **overrides
) -> Segment:
    rng = np.random.default_rng(seq)
    fields: dict[str, Any] = dict(
        actor_id=actor_id,
        run_id="r1",
        seq=seq,
        policy_version=version,
        obs=rng.normal(size=(T + 1, b, obs_dim)).astype(np.float32),
        actions=rng.integers(0, 3, size=(T, b)).astype(np.int64),
        logp=np.full((T, b), -1.0, np.float32),
        rewards=np.zeros((T, b), np.float32),
        terminated=np.zeros((T, b), bool),
        truncated=np.zeros((T, b), bool),
        reset=np.zeros((T + 1, b), bool),
        bootstrap_values=np.zeros((T, b), np.float32),
        initial_state={"h": np.zeros((b, 2), np.float32)},
        episodes=[],
    )
    fields.update(overrides)
    return Segment(**fields)


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def started():
    servers: list[LearnerServer] = []

    def start(server: LearnerServer) -> LearnerServer:
        servers.append(server)
        server.start()
        return server

    yield start
    for s in servers:
        s.close()


def push_to(ctx: zmq.Context, server: LearnerServer, sndhwm: int = 1) -> zmq.Socket:
    return connect_trajectories(ctx, tcp_address("127.0.0.1", bound_port(server.pull)), sndhwm=sndhwm)


def control_to(ctx: zmq.Context, server: LearnerServer) -> zmq.Socket:
    return connect_control(ctx, tcp_address("127.0.0.1", bound_port(server.router)))


def request(sock: zmq.Socket, msg) -> object:
    sock.send(encode(msg))
    assert sock.poll(30_000), "no reply from the server"
    return decode(sock.recv())


def hello(sock: zmq.Socket, actor_id: str, num_envs: int) -> Welcome:
    reply = request(sock, Hello(actor_id=actor_id, run_id=f"run-{actor_id}", num_envs=num_envs, host="h", pid=1))
    assert isinstance(reply, Welcome)
    return reply


def join(ctx: zmq.Context, server: LearnerServer, actor_id: str = "a", run_id: str = "r1") -> zmq.Socket:
    """Say Hello as ``actor_id`` (run ``run_id``, as ``segment`` sends): the server trains only on joined actors."""
    sock = control_to(ctx, server)
    reply = request(sock, Hello(actor_id=actor_id, run_id=run_id, num_envs=2, host="h", pid=1))
    assert isinstance(reply, Welcome)
    return sock


def beat(actor_id: str, num_envs: int = 2) -> Heartbeat:
    return Heartbeat(
        actor_id=actor_id,
        run_id=f"run-{actor_id}",
        time=time.time(),
        policy_version=0,
        num_envs=num_envs,
        segments_sent=0,
    )


def test_an_actor_that_leaves_num_envs_to_the_learner_gets_envs_per_actor(ctx, started):
    server = started(make_server(Version(), batch_envs=16))
    welcome = hello(control_to(ctx, server), "a", 0)
    assert welcome.envs_per_actor == 8 and welcome.segments_per_version == 2  # counted with 8 envs: 16 / 8
    assert server.snapshot()["actors"]["a"]["num_envs"] == 8


def test_valid_segments_are_queued_and_counted_per_actor(ctx, started):
    server = started(make_server(Version()))
    join(ctx, server, "x")
    push = push_to(ctx, server)
    for i in range(3):
        push.send(encode(segment("x", seq=i)))
    got = [server.next_segment(timeout=30) for _ in range(3)]
    assert [s.seq for s in got] == [0, 1, 2]
    snap = server.snapshot()
    assert snap["accepted_segments"] == snap["received_segments"] == 3
    assert snap["segments_per_actor"] == {"x": 3}
    assert snap["dropped"] == {}


def test_lag_is_checked_at_intake_and_again_when_taken(ctx, started):
    version = Version()
    version.value = 5
    server = started(make_server(version, max_policy_lag=2))
    join(ctx, server)
    push = push_to(ctx, server)
    push.send(encode(segment(version=2, seq=0)))  # lag 3 > 2: stale
    push.send(encode(segment(version=6, seq=1)))  # from the future
    push.send(encode(segment(version=3, seq=2)))  # lag 2: fine now
    wait_for(lambda: server.snapshot()["received_segments"] == 3, "three segments received")
    wait_for(lambda: server.snapshot()["queued_segments"] == 1, "one segment queued")
    assert server.snapshot()["dropped"] == {"stale": 1, "future_version": 1}
    # the learner moved on while the segment waited: it is dropped when taken, not trained on
    version.value = 6
    assert server.next_segment(timeout=0.5) is None
    assert server.snapshot()["dropped"] == {"stale": 2, "future_version": 1}


def test_bad_messages_are_dropped_by_reason_and_intake_goes_on(ctx, started):
    server = started(make_server(Version()))
    join(ctx, server)
    push = push_to(ctx, server)
    push.send(b"\x00\x01 random garbage \xff")
    push.send(encode(segment(seq=0))[:-10])  # truncated
    push.send(encode(segment(seq=1, obs_dim=OBS_DIM + 1)))  # valid message, wrong obs shape for this run
    push.send(encode(Bye(actor_id="a", run_id="r", reason="wrong socket")))
    push.send(encode(segment(seq=2)))
    ok = server.next_segment(timeout=30)
    assert ok is not None and ok.seq == 2
    dropped = server.snapshot()["dropped"]
    assert sum(dropped.values()) == 4, dropped
    assert dropped.get("SPEC_MISMATCH") == 1 and dropped.get("UNKNOWN_TYPE") == 1, dropped


def test_bounded_queue_gives_backpressure_to_the_sender(ctx, started):
    """With nobody taking segments, the server stops reading at its queue bound and the actor's sends block:
    memory stays bounded instead of growing with the sender."""
    big = 20_000  # ~1.6 MB per segment, so loopback socket buffers fill after a few
    server = started(make_server(Version(), obs_dim=big, max_queue=2))
    join(ctx, server)
    push = push_to(ctx, server, sndhwm=1)
    sent = 0
    blocked = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if push.poll(2000, zmq.POLLOUT):
            push.send(encode(segment(obs_dim=big, b=4, seq=sent)), zmq.NOBLOCK)  # each (actor, run, seq) once
            sent += 1
            assert sent < 200, "sends never blocked: nothing bounds the data in flight"
        else:
            blocked = True
            break
    assert blocked
    wait_for(lambda: server.snapshot()["queued_segments"] == 2, "queue full")
    snap = server.snapshot()
    assert snap["received_segments"] == 2  # the receiver read no more than it could queue
    # taking segments releases the sender, and every segment sent arrives (none lost, none dropped)
    taken = 0
    while taken < sent:
        assert server.next_segment(timeout=30) is not None
        taken += 1
    assert server.snapshot()["accepted_segments"] == sent
    assert server.snapshot()["dropped"] == {}


def test_flow_control_share_follows_live_envs(ctx, started):
    server = started(make_server(Version(), batch_envs=16, actor_timeout_s=10.0))
    assert server.segments_per_version() == 16  # nobody yet: counts as one env
    a = control_to(ctx, server)
    welcome = hello(a, "a", 4)
    assert welcome.segments_per_version == 4  # 16 rows per batch / 4 envs
    assert welcome.policy.onnx == ONNX
    assert (welcome.learner_run_id, welcome.env_id, welcome.segment_length) == ("learner-run", "agalite/TMaze-v0", T)
    assert (welcome.learner_timeout_s, welcome.heartbeat_interval_s, welcome.envs_per_actor) == (10.0, 1.0, 8)
    b = control_to(ctx, server)
    assert hello(b, "b", 8).segments_per_version == 16 / 12  # fractional: 4 + 8 envs live
    reply = request(a, beat("a", num_envs=8))
    assert isinstance(reply, LearnerStatus) and reply.learner_run_id == "learner-run"
    assert reply.segments_per_version == 1  # 16 / (8 + 8)
    assert server.live_actors() == 2
    b.send(encode(Bye(actor_id="b", run_id="run-b", reason="done")))
    wait_for(lambda: server.live_actors() == 1, "b removed after Bye")
    assert server.segments_per_version() == 2
    assert server.snapshot()["lost_actors"] == 0


def test_starving_is_reported_while_the_learner_waits_on_an_empty_queue(ctx, started):
    server = started(make_server(Version()))
    assert not server.starving()
    assert server.next_segment(timeout=0.5) is None
    assert server.starving()  # waited past the threshold with nothing queued
    a = control_to(ctx, server)
    hello(a, "a", 2)
    reply = request(a, beat("a"))
    assert isinstance(reply, LearnerStatus) and reply.starving is True
    push = push_to(ctx, server)
    push.send(encode(segment("a", run_id="run-a")))
    assert server.next_segment(timeout=30) is not None
    assert not server.starving()


def test_silent_actor_is_counted_lost(ctx, started):
    server = started(make_server(Version(), actor_timeout_s=0.2))
    a = control_to(ctx, server)
    hello(a, "quiet", 2)
    wait_for(lambda: server.snapshot()["lost_actors"] == 1, "the silent actor counted lost")
    assert server.live_actors() == 0 and "quiet" not in server.snapshot()["actors"]


def test_actor_restarted_without_bye_counts_its_old_run_as_lost(ctx, started):
    server = started(make_server(Version()))
    first = control_to(ctx, server)
    hello(first, "a", 2)
    again = request(first, Hello(actor_id="a", run_id="run-a", num_envs=2, host="h", pid=1))
    assert isinstance(again, Welcome)  # the same run saying Hello again (a reconnect) is not a loss
    assert server.snapshot()["lost_actors"] == 0
    restarted = control_to(ctx, server)
    request(restarted, Hello(actor_id="a", run_id="run-a-2", num_envs=2, host="h", pid=2))
    snap = server.snapshot()
    assert snap["lost_actors"] == 1
    assert snap["actors"]["a"]["run_id"] == "run-a-2" and server.live_actors() == 1


def test_wrong_protocol_version_hello_is_refused_with_an_error(ctx, started):
    import msgpack

    server = started(make_server(Version()))
    body = msgpack.unpackb(encode(Hello(actor_id="old", run_id="r", num_envs=1, host="h", pid=1)), raw=False)
    body["protocol"] = body["protocol"] + 1
    sock = control_to(ctx, server)
    sock.send(msgpack.packb(body))
    assert sock.poll(30_000)
    reply = decode(sock.recv())
    assert isinstance(reply, Error) and reply.code == "BAD_VERSION"
    assert server.snapshot()["dropped"] == {"BAD_VERSION": 1}
    assert server.live_actors() == 0
