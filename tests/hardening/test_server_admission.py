"""Who may feed the learner, and what a peer can make it hold: a LearnerServer in-process over real ZeroMQ sockets
on loopback (no model involved), probed as the issue's rows did. Counts and byte sizes are asserted, never times."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from learner.server import GONE_ACTORS_KEPT, LearnerServer, RunSettings
from protocol import (
    NOT_JOINED,
    Bye,
    Error,
    Heartbeat,
    Hello,
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
from protocol.curve import CurveClient, generate_keypair, write_keypair

T, OBS_DIM = 4, 3


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def make_server(onnx: bytes = b"policy bytes" * 8, curve_dir: str | None = None, **kwargs: Any) -> LearnerServer:
    policy = ModelUpdate(
        version=0, kind="full", onnx=onnx, weights=None, graph_sha256=hashlib.sha256(onnx).hexdigest(), metadata={}
    )
    return LearnerServer(
        host="127.0.0.1",
        trajectory_port=0,
        policy_port=0,
        control_port=0,
        spec=SegmentSpec(
            obs_shape=(OBS_DIM,),
            obs_dtype="float32",
            num_actions=3,
            segment_length=T,
            state={},
            max_envs=8,
        ),
        settings=RunSettings("agalite/TMaze-v0", {}, T, 2, 1, 1.0, 10.0),
        run_id="learner-run",
        current_version=lambda: 0,
        welcome_policy=lambda: policy,
        max_policy_lag=4,
        actor_timeout_s=kwargs.pop("actor_timeout_s", 10.0),
        max_queue_segments=kwargs.pop("max_queue_segments", 1000),
        batch_envs=4,
        curve_dir=curve_dir,
        **kwargs,
    )


def segment(actor_id: str, run_id: str = "r", seq: int = 0, **overrides: Any) -> Segment:
    b = 2
    fields: dict[str, Any] = dict(
        actor_id=actor_id,
        run_id=run_id,
        seq=seq,
        policy_version=0,
        obs=np.zeros((T + 1, b, OBS_DIM), np.float32),
        actions=np.zeros((T, b), np.int64),
        logp=np.full((T, b), -1.0, np.float32),
        rewards=np.zeros((T, b), np.float32),
        terminated=np.zeros((T, b), bool),
        truncated=np.zeros((T, b), bool),
        reset=np.zeros((T + 1, b), bool),
        bootstrap_values=np.zeros((T, b), np.float32),
        initial_state={},
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


def control(ctx: zmq.Context, server: LearnerServer) -> zmq.Socket:
    return connect_control(ctx, tcp_address("127.0.0.1", bound_port(server.router)))


def push(ctx: zmq.Context, server: LearnerServer) -> zmq.Socket:
    return connect_trajectories(ctx, tcp_address("127.0.0.1", bound_port(server.pull)), sndhwm=1000)


def hello(sock: zmq.Socket, actor_id: str, run_id: str = "r") -> Welcome:
    sock.send(encode(Hello(actor_id=actor_id, run_id=run_id, num_envs=2, host="h", pid=1)))
    assert sock.poll(30_000), "no Welcome"
    reply = decode(sock.recv())
    assert isinstance(reply, Welcome)
    return reply


def drained(server: LearnerServer, received: int) -> dict:
    """The snapshot once ``received`` segments were received and each was accepted or dropped."""

    def done() -> dict | None:
        s = server.snapshot()
        handled = s["accepted_segments"] + sum(s["dropped"].values())
        return s if s["received_segments"] >= received and handled >= received else None

    return wait_for(done, f"{received} segments received and handled")


def test_segments_from_an_id_that_never_said_hello_are_not_trained_on(ctx, started):
    server = started(make_server())
    p = push(ctx, server)
    for i in range(100):
        p.send(encode(segment("ghost", seq=i)))
    snap = drained(server, 100)
    assert snap["accepted_segments"] == 0 and snap["queued_segments"] == 0
    assert snap["dropped"] == {"not_joined": 100}
    assert "ghost" not in snap["segments_per_actor"]
    # the same id after Hello is welcome, but only for the run it said Hello with
    hello(control(ctx, server), "ghost", run_id="r")
    p.send(encode(segment("ghost", run_id="other-run", seq=500)))
    p.send(encode(segment("ghost", run_id="r", seq=501)))
    snap = drained(server, 102)
    assert snap["accepted_segments"] == 1 and snap["dropped"]["not_joined"] == 101


def test_each_actor_run_seq_is_trained_on_once(ctx, started):
    server = started(make_server())
    hello(control(ctx, server), "a")
    p = push(ctx, server)
    data = encode(segment("a", seq=7))
    for _ in range(50):
        p.send(data)
    p.send(encode(segment("a", seq=3)))  # older than one already taken
    p.send(encode(segment("a", seq=8)))
    snap = drained(server, 52)
    assert snap["accepted_segments"] == 2 and snap["dropped"] == {"duplicate": 50}
    taken = [server.next_segment(1.0), server.next_segment(1.0)]
    assert [s.seq for s in taken if s is not None] == [7, 8]
    # a reconnect of the same run keeps its place; a restarted actor (new run) starts again from seq 0
    hello(control(ctx, server), "a", run_id="r")
    p.send(encode(segment("a", seq=8)))
    # the push and control sockets are not ordered with each other: the duplicate must be handled before the
    # restarted run says Hello, or it would (rightly) count as a segment from a run that is no longer joined
    drained(server, 53)
    hello(control(ctx, server), "a", run_id="r2")
    p.send(encode(segment("a", run_id="r2", seq=0)))
    snap = drained(server, 54)
    assert snap["accepted_segments"] == 3 and snap["dropped"] == {"duplicate": 51}


def test_bye_is_honoured_only_from_the_connection_that_said_hello(ctx, started):
    server = started(make_server())
    real = control(ctx, server)
    hello(real, "local-0")
    spoofer = control(ctx, server)
    for run_id in ("r", "other"):
        spoofer.send(encode(Bye(actor_id="local-0", run_id=run_id, reason="spoofed")))
    wait_for(lambda: server.snapshot()["dropped"].get("bye_not_from_its_connection") == 2, "spoofed Byes dropped")
    assert "local-0" in server.snapshot()["actors"]
    real.send(encode(Heartbeat(actor_id="local-0", run_id="r", time=0.0, policy_version=0, num_envs=2,
                               segments_sent=0)))  # fmt: skip
    real.send(encode(Bye(actor_id="local-0", run_id="r", reason="done")))
    wait_for(lambda: "local-0" not in server.snapshot()["actors"], "the real Bye honoured")


def test_an_actor_that_was_expired_is_told_to_say_hello_again(ctx, started):
    server = started(make_server(actor_timeout_s=0.1))
    sock = control(ctx, server)
    hello(sock, "paused")
    wait_for(lambda: server.snapshot()["lost_actors"] == 1, "the silent actor expired")
    beat = Heartbeat(actor_id="paused", run_id="r", time=0.0, policy_version=0, num_envs=2, segments_sent=0)
    sock.send(encode(beat))
    assert sock.poll(30_000)
    reply = decode(sock.recv())
    assert isinstance(reply, Error) and reply.code == NOT_JOINED
    assert server.snapshot()["dropped"] == {"heartbeat_not_joined": 1}
    hello(sock, "paused")  # what the actor does on NOT_JOINED: it is welcome again


def _hellos(sock: zmq.Socket, n: int, prefix: str) -> None:
    for i in range(n):
        sock.send(encode(Hello(actor_id=f"{prefix}{i}", run_id="r", num_envs=1, host="h", pid=i)))


def _replies(sock: zmq.Socket, settle_s: float = 2.0) -> int:
    """Replies that arrive until none came for ``settle_s`` (a count, not a timing assertion)."""
    n = 0
    while sock.poll(int(settle_s * 1000)):
        sock.recv()
        n += 1
    return n


def test_hello_floods_get_a_bounded_number_of_welcomes(ctx, started, caplog):
    server = started(make_server(welcome_rate=0.0, welcome_burst=5))
    sock = control(ctx, server)
    with caplog.at_level(logging.WARNING, logger="learner.server"):
        _hellos(sock, 300, "flood-")
        wait_for(lambda: server.snapshot()["dropped"].get("hello_rate_limited") == 295, "the flood counted")
    assert len(server.snapshot()["actors"]) == 5
    # at most those 5 were sent (fewer when the peer's queue on the learner was full: the send high-water mark)
    assert 1 <= _replies(sock) <= 5
    assert len([r for r in caplog.records if "hello_rate_limited" in r.getMessage()]) == 1


def test_the_actor_table_is_bounded_and_silent_actors_make_room(ctx, started):
    server = started(make_server(max_actors=3, welcome_burst=1000, actor_timeout_s=0.3))
    sock = control(ctx, server)
    _hellos(sock, 10, "t-")
    wait_for(lambda: server.snapshot()["dropped"].get("actor_table_full") == 7, "the table full")
    assert _replies(sock, 1.0) == 3 and len(server.snapshot()["actors"]) <= 3
    time.sleep(0.5)  # let the three go silent past the actor timeout (not a timing assertion: state setup)
    _hellos(sock, 2, "late-")
    wait_for(lambda: {"late-0", "late-1"} <= set(server.snapshot()["actors"]), "room made for new actors")


def test_per_actor_counts_are_bounded_by_the_table_not_by_ids_ever_seen(ctx, started):
    server = started(make_server(welcome_burst=10_000))
    p = push(ctx, server)
    n = GONE_ACTORS_KEPT + 100
    for i in range(n):
        sock = control(ctx, server)
        hello(sock, f"churn-{i}")
        p.send(encode(segment(f"churn-{i}")))
        wait_for(lambda: server.snapshot()["accepted_segments"] == i + 1, "the segment accepted")  # noqa: B023 - waited on here
        sock.send(encode(Bye(actor_id=f"churn-{i}", run_id="r", reason="done")))
        wait_for(lambda: f"churn-{i}" not in server.snapshot()["actors"], "the Bye honoured")  # noqa: B023 - waited on here
        sock.close(linger=0)
        server.next_segment(1.0)
    snap = server.snapshot()
    assert snap["accepted_segments"] == n
    assert len(snap["segments_per_actor"]) == GONE_ACTORS_KEPT
    assert f"churn-{n - 1}" in snap["segments_per_actor"] and "churn-0" not in snap["segments_per_actor"]


def test_drop_logs_do_not_grow_with_senders(ctx, started, caplog):
    server = started(make_server())
    p = push(ctx, server)
    with caplog.at_level(logging.WARNING, logger="learner.server"):
        for i in range(300):
            p.send(encode(segment("x" * 200 + str(i))))
        drained(server, 300)
    assert server.snapshot()["dropped"] == {"not_joined": 300}
    assert len(caplog.records) == 1 and len(caplog.records[0].getMessage()) < 1000


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_peer_that_never_reads_cannot_make_the_learner_hold_its_welcomes(ctx, started):
    onnx = np.random.default_rng(0).bytes(1 << 20)  # a 1 MiB policy in every Welcome
    server = started(make_server(onnx=onnx, welcome_burst=10_000))
    before = _rss_bytes()
    silent = []
    for _ in range(2):  # peers that take at most one message off the wire (this process must not hold them)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 64 * 1024)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(tcp_address("127.0.0.1", bound_port(server.router)))
        silent.append(sock)
    for k, sock in enumerate(silent):
        _hellos(sock, 200, f"silent{k}-")  # and never read a reply
    wait_for(lambda: len(server.snapshot()["actors"]) == 400, "every Hello handled")
    grown = _rss_bytes() - before
    # 400 Welcomes are 400 MiB; the control socket's send high-water mark keeps a few per peer
    assert grown < 96 * 2**20, f"RSS grew {grown / 2**20:.0f} MiB"


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_refused_curve_handshakes_are_counted_and_logged(ctx, started, tmp_path, caplog):
    keys = tmp_path / "keys"
    write_keypair(keys, "server")
    (keys / "authorized_clients").mkdir()
    write_keypair(keys / "authorized_clients", "known")
    with caplog.at_level(logging.WARNING, logger="learner.server"):
        server = started(make_server(curve_dir=str(keys)))
        port = bound_port(server.router)
        from protocol.curve import load_public_key

        stranger = CurveClient(generate_keypair(), load_public_key(keys / "server.key"))
        for _ in range(3):
            connect_control(ctx, tcp_address("127.0.0.1", port), curve=stranger).send(b"x")
        connect_control(ctx, tcp_address("127.0.0.1", port)).send(b"plaintext")
        wait_for(lambda: server.snapshot()["refused_connections"].get("handshake_refused", 0) >= 4, "refusals")
    assert server.snapshot()["accepted_segments"] == 0 and server.snapshot()["actors"] == {}
    assert any("refused a connection's handshake" in r.getMessage() for r in caplog.records)
