"""The issue's failing probe rows, repeated against a live learner (test-tmaze-agalite, one real actor, loopback).

Each probe is bounded in count, asserts the fixed behaviour (alive, nothing bad trained on, counters right, memory
and files bounded: generous byte bounds, never timings) and leaves the learner training for the next one.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from learner.checkpoint import load_checkpoint
from protocol import (
    PROTOCOL_VERSION,
    Bye,
    Heartbeat,
    Hello,
    LearnerStatus,
    Segment,
    Welcome,
    connect_control,
    connect_trajectories,
    decode,
    encode,
    tcp_address,
)
from tests.helpers.live_stack import Live, rss_bytes

pytestmark = pytest.mark.e2e
MiB = 2**20
_seq = itertools.count()


class Probe:
    """A peer that said Hello (so its segments are eligible) and knows the run's segment layout."""

    def __init__(self, live: Live, ctx: zmq.Context) -> None:
        self.live = live
        t, _, c = live.ports
        self.control = connect_control(ctx, tcp_address("127.0.0.1", c))
        self.push = connect_trajectories(ctx, tcp_address("127.0.0.1", t), sndhwm=1000)
        self.control.send(encode(Hello(actor_id="probe", run_id="probe-run", num_envs=2, host="probe", pid=0)))
        assert self.control.poll(120_000), "no Welcome\n" + live.report()
        welcome = decode(self.control.recv())
        assert isinstance(welcome, Welcome)
        self.meta, self.t = welcome.policy.metadata, welcome.segment_length

    def version(self) -> int:
        """The learner's policy version now (a heartbeat also keeps the probe in the actor table)."""
        beat = Heartbeat(
            actor_id="probe", run_id="probe-run", time=time.time(), policy_version=0, num_envs=2, segments_sent=0
        )
        self.control.send(encode(beat))
        while True:
            assert self.control.poll(60_000), "no LearnerStatus\n" + self.live.report()
            reply = decode(self.control.recv())
            if isinstance(reply, LearnerStatus):
                return reply.policy_version

    def segment(self, actor_id: str = "probe", seq: int | None = None, **overrides: object) -> Segment:
        t, b = self.t, 2
        fields: dict = dict(
            actor_id=actor_id,
            run_id="probe-run",
            seq=next(_seq) if seq is None else seq,
            policy_version=self.version(),
            obs=np.zeros((t + 1, b, *self.meta["obs_shape"]), np.float32),
            actions=np.zeros((t, b), np.int64),
            logp=np.full((t, b), np.log(0.25), np.float32),
            rewards=np.full((t, b), -0.1, np.float32),
            terminated=np.zeros((t, b), bool),
            truncated=np.zeros((t, b), bool),
            reset=np.zeros((t + 1, b), bool),
            bootstrap_values=np.zeros((t, b), np.float32),
            initial_state={s["name"]: np.zeros((b, *s["shape"]), s["dtype"]) for s in self.meta["state"]},
            episodes=[],
        )
        fields.update(overrides)
        return Segment(**fields)


@pytest.fixture(scope="module")
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(scope="module")
def probe(shared_live: Live, ctx: zmq.Context) -> Probe:
    return Probe(shared_live, ctx)


def _dropped(status: dict, reason: str) -> int:
    return int(status["dropped"].get(reason, 0))


def test_segments_from_an_id_that_never_said_hello_and_replays_are_not_trained_on(shared_live, probe):
    live = shared_live
    before = live.wait_status(lambda s: True, "status")
    ghost = probe.segment(actor_id="ghost", seq=0)
    for i in range(100):
        probe.push.send(encode(dataclasses.replace(ghost, seq=i)))
    replay = encode(probe.segment())
    for _ in range(50):
        probe.push.send(replay)
    after = live.wait_status(
        lambda s: (
            _dropped(s, "not_joined") - _dropped(before, "not_joined") >= 100
            and _dropped(s, "duplicate")
            - _dropped(before, "duplicate")
            + _dropped(s, "stale")
            - _dropped(before, "stale")
            >= 49
        ),
        "100 ghost segments and 49 replays dropped",
    )
    assert "ghost" not in after["segments_per_actor"]
    assert after["segments_per_actor"].get("probe", 0) - before["segments_per_actor"].get("probe", 0) <= 1
    assert live.alive()


def test_a_finite_but_huge_reward_is_refused_and_training_goes_on(shared_live, probe):
    live = shared_live
    before = live.wait_status(lambda s: True, "status")
    for value in (1e38, -3e38, 1e7):
        probe.push.send(encode(probe.segment(rewards=np.full((probe.t, 2), value, np.float32))))
    live.wait_status(
        lambda s: _dropped(s, "OUT_OF_RANGE") - _dropped(before, "OUT_OF_RANGE") >= 3, "huge rewards refused"
    )
    after = live.wait_status(lambda s: s["policy_version"] >= before["policy_version"] + 3, "training going on")
    assert after["skipped_gradient_steps"] == 0  # nothing non-finite reached the update
    assert live.alive()


def test_oversized_ids_and_amplifying_frames_cost_bounded_memory_and_log(shared_live, probe, ctx):
    live = shared_live
    pid = live.procs["learner"].pid
    log = live.log("learner")
    rss0, log0 = rss_bytes(pid), log.stat().st_size
    before = live.wait_status(lambda s: True, "status")
    huge_id = probe.segment(actor_id="x" * (8 * MiB))
    control = connect_control(ctx, tcp_address("127.0.0.1", live.ports[2]))
    for _ in range(20):
        probe.push.send(encode(huge_id, validate=False))
        control.send(msgpack.packb({"type": "Hello", "protocol": PROTOCOL_VERSION, "actor_id": "y" * (8 * MiB)}))
    empty_maps = b"\xdd" + struct.pack(">I", 16 * MiB - 5) + b"\x80" * (16 * MiB - 5)
    for _ in range(3):
        probe.push.send(empty_maps)
    # the 23 trajectory frames are refused undecoded (ids past MAX_ID_LENGTH, maps past the message limit; the
    # control socket's size limit cuts the huge Hellos before they are read). Waiting on the refusals, not on
    # received_segments (a0's segments grow it too), measures memory after all of them were read.
    live.wait_status(
        lambda s: _dropped(s, "NOT_MSGPACK") - _dropped(before, "NOT_MSGPACK") >= 23, "the 23 hostile frames refused"
    )
    live.wait_status(lambda s: s["policy_version"] >= before["policy_version"] + 2, "training going on")
    grown = rss_bytes(pid) - rss0
    assert grown < 200 * MiB, f"learner RSS grew {grown / MiB:.0f} MiB"
    assert log.stat().st_size - log0 < 64 * 1024, "the log grew with the hostile ids"
    control.close(linger=0)


def test_hello_floods_from_peers_that_never_read(shared_live, probe, ctx):
    live = shared_live
    pid = live.procs["learner"].pid
    rss0 = rss_bytes(pid)
    before = live.wait_status(lambda s: True, "status")
    peers = []
    for k in range(2):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 64 * 1024)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(tcp_address("127.0.0.1", live.ports[2]))
        for i in range(500):
            sock.send(encode(Hello(actor_id=f"flood{k}-{i}", run_id="r", num_envs=1, host="h", pid=i)))
        peers.append(sock)
    after = live.wait_status(
        lambda s: _dropped(s, "hello_rate_limited") - _dropped(before, "hello_rate_limited") >= 500,
        "the Hello flood rate-limited",
    )
    assert len(after["actors"]) < 500
    live.wait_status(lambda s: s["policy_version"] >= after["policy_version"] + 2, "training going on")
    grown = rss_bytes(pid) - rss0
    assert grown < 200 * MiB, f"learner RSS grew {grown / MiB:.0f} MiB with peers that never read"
    for sock in peers:
        sock.close(linger=0)


def test_a_spoofed_bye_does_not_remove_the_real_actor(shared_live, ctx):
    live = shared_live
    before = live.wait_status(lambda s: "a0" in s["actors"], "a0 in the table")
    spoofer = connect_control(ctx, tcp_address("127.0.0.1", live.ports[2]))
    run_id = before["actors"]["a0"]["run_id"]
    for rid in (run_id, "made-up"):
        spoofer.send(encode(Bye(actor_id="a0", run_id=rid, reason="spoofed")))
    live.wait_status(
        lambda s: _dropped(s, "bye_not_from_its_connection") - _dropped(before, "bye_not_from_its_connection") >= 2,
        "the spoofed Byes dropped",
    )
    a0 = before["segments_per_actor"]["a0"]
    after = live.wait_status(lambda s: s["segments_per_actor"]["a0"] >= a0 + 3, "a0 still training")
    assert "a0" in after["actors"]
    spoofer.close(linger=0)


def test_hundreds_of_never_hello_ids_do_not_grow_status_or_metrics(shared_live, probe):
    live = shared_live
    before = live.wait_status(lambda s: True, "status")
    size0 = (live.run_dir / "status.json").stat().st_size
    template = probe.segment(seq=0)
    for i in range(720):
        probe.push.send(encode(dataclasses.replace(template, actor_id=f"id-{i}")))
    # a0 trains beside the probe, so received_segments can grow by 720 before the last id's segment is read:
    # wait on the drops themselves (the wait fails the test if they never all arrive)
    after = live.wait_status(
        lambda s: _dropped(s, "not_joined") - _dropped(before, "not_joined") >= 720, "the 720 ids' segments dropped"
    )
    assert not [k for k in after["segments_per_actor"] if k.startswith("id-")]
    assert not [k for k in after["actors"] if k.startswith("id-")]
    assert (live.run_dir / "status.json").stat().st_size < size0 + 8 * 1024
    assert live.alive()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_at_a_checkpoint_is_survived(shared_live):
    live = shared_live
    pid = live.procs["learner"].pid
    ckpt_dir = live.run_dir / "checkpoints"
    live.wait(lambda: (ckpt_dir / "checkpoint.pt").is_file(), "a first checkpoint")
    before = load_checkpoint(live.run_dir)
    assert before is not None
    version_before = before["policy_version"]
    log = live.log("learner")
    # the next checkpoint write opens this name: make it land on a full device (status and metrics writes go
    # through the same guard; test_open_file_exhaustion_is_survived sees them fail live)
    (ckpt_dir / f".checkpoint.pt.{pid}.tmp").symlink_to("/dev/full")
    live.wait(lambda: "checkpoint not written: no space left on device at" in log.read_text(), "the one-line error")
    live.wait(lambda: "checkpoint written again" in log.read_text(), "the checkpoint retried", timeout=180)
    assert live.alive()
    text = log.read_text()
    assert "Traceback" not in text and text.count("checkpoint not written") == 1
    after = load_checkpoint(live.run_dir)
    assert after is not None and after["policy_version"] > version_before
    assert not list(ckpt_dir.glob(".checkpoint.pt.*.tmp"))
    live.wait_status(lambda s: s["write_failures"] >= 1, "the write failure counted")


def test_open_file_exhaustion_is_survived(live):
    limit = 256
    live.learner("--checkpoint-interval-s", "2", nofile=limit)
    live.actor("a0")
    start = live.wait_status(lambda s: s["policy_version"] >= 2 and "a0" in s["actors"], "training with a0")
    idle: list[socket.socket] = []
    try:
        for _ in range(limit + 50):  # more than the learner has descriptors for
            s = socket.create_connection(("127.0.0.1", live.ports[2]))
            idle.append(s)
        # while its descriptors are gone the learner keeps training on a0's existing connections
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert live.alive(), live.report()
            time.sleep(0.5)
    finally:
        for s in idle:
            s.close()
    after = live.wait_status(
        lambda s: s["policy_version"] >= start["policy_version"] + 3 and s["refused_connections"].get("accept_failed"),
        "training after the descriptors came back, refused connections counted",
    )
    assert "a0" in after["actors"]
    assert "Traceback" not in live.log("learner").read_text()


def test_an_actor_paused_past_its_timeout_joins_again_and_trains(live):
    """Only joined actors are trained on; one that the learner expired while it was stopped must not be shut out."""
    live.learner("--actor-timeout-s", "2", "--heartbeat-interval-s", "0.5")
    actor = live.actor("a0")
    start = live.wait_status(lambda s: s["policy_version"] >= 2 and "a0" in s["actors"], "training with a0")
    os.killpg(actor.pid, signal.SIGSTOP)
    try:
        live.wait_status(lambda s: s["lost_actors"] >= 1 and "a0" not in s["actors"], "a0 expired while stopped")
    finally:
        os.killpg(actor.pid, signal.SIGCONT)
    a0 = start["segments_per_actor"].get("a0", 0)
    after = live.wait_status(
        lambda s: "a0" in s["actors"] and s["segments_per_actor"].get("a0", 0) >= a0 + 3, "a0 back and training"
    )
    assert after["policy_version"] > start["policy_version"]


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_refused_curve_clients_are_counted_and_told_why(live):
    import shutil

    import zmq.auth

    keys = live.tmp / "keys"
    learner_keys, good, bad = keys / "learner", keys / "good", keys / "bad"
    for d in (learner_keys / "authorized_clients", good, bad):
        d.mkdir(parents=True)
    zmq.auth.create_certificates(str(learner_keys), "server")
    for d in (good, bad):
        zmq.auth.create_certificates(str(d), "client")
        shutil.copy(learner_keys / "server.key", d / "server.key")
    shutil.copy(good / "client.key", learner_keys / "authorized_clients" / "client.key")
    live.learner("--net.curve-dir", str(learner_keys))
    live.actor("good", "--curve-dir", str(good))
    live.actor("bad", "--curve-dir", str(bad))
    live.actor("plain")
    after = live.wait_status(
        lambda s: s["updates"] >= 2 and s["refused_connections"].get("handshake_refused", 0) >= 2,
        "refused handshakes counted while the authorised actor trains",
    )
    assert set(after["actors"]) == {"good"}
    assert "refused a connection's handshake" in live.log("learner").read_text()
    live.wait(lambda: "refused this actor's CurveZMQ key" in live.log("bad").read_text(), "the bad actor says why")
    live.wait(lambda: "requires CurveZMQ keys" in live.log("plain").read_text(), "the keyless actor says why")


def test_readme_key_setup_commands_run(tmp_path):
    """The README's CurveZMQ key setup, run as written (python -> this interpreter)."""
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Untrusted networks: CurveZMQ") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    script = block.replace("\npython ", f"\n{sys.executable} ")
    subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, check=True, timeout=60)
    for f in ("learner/server.key_secret", "learner/authorized_clients/client.key", "actor/client.key_secret"):
        assert (tmp_path / "keys" / f).is_file(), f
    assert (tmp_path / "keys/actor/server.key").is_file()
