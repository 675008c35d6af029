"""The actor process: join a learner, step envs with the ONNX policy, push segments, follow new policies.

Failure handling is the point of this module. The learner may go away at any moment and come back restarted from
a checkpoint; the actor notices through heartbeats (no answer for ``learner_timeout_s``, or an answer from a new
learner run), says Hello again and carries on with the policy it is given, without restarting. Sends block when the
learner is behind (ZeroMQ high-water marks), which is the backpressure that bounds every queue; while blocked the
actor keeps servicing heartbeats and its stop flag.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
from zmq.utils.monitor import recv_monitor_message

from actor.rollout import SegmentCollector
from envs import make_env
from policy.runtime import Policy, StepFunction, providers_for
from protocol import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_POLICY_PORT,
    DEFAULT_TRAJECTORY_PORT,
    NOT_JOINED,
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    ModelUpdate,
    ProtocolError,
    Segment,
    Welcome,
    decode,
    encode,
)
from protocol.curve import CurveClient, load_keypair, load_public_key
from protocol.sockets import connect_control, connect_policies, connect_trajectories, tcp_address

log = logging.getLogger("actor")


@dataclass
class ActorConfig:
    """Command-line settings of one actor process (``python -m actor --help``)."""

    learner_host: str = "127.0.0.1"
    """Address (host name or IP) of the learner; the only thing an actor must be told."""
    trajectory_port: int = DEFAULT_TRAJECTORY_PORT
    """The learner's trajectory port (segments, actor PUSH -> learner PULL)."""
    policy_port: int = DEFAULT_POLICY_PORT
    """The learner's policy port (new weights, learner PUB -> actor SUB)."""
    control_port: int = DEFAULT_CONTROL_PORT
    """The learner's control port (Hello, Heartbeat, ...; actor DEALER <-> learner ROUTER)."""
    actor_id: str | None = None
    """Stable identity; default: the host name plus the process id."""
    num_envs: int | None = None
    """Environments stepped in lockstep; default: the learner's envs_per_actor."""
    seed: int | None = None
    """Seed for env resets and action sampling; default: derived from the run seed and actor_id."""
    threads: int = 1
    """ONNX Runtime intra-op threads."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where ONNX Runtime runs the policy: cpu, cuda (needs onnxruntime-gpu; refused without it) or auto (cuda when
    the installed onnxruntime has it)."""
    curve_dir: str | None = None
    """Directory with CurveZMQ keys (server.key, client.key_secret); None: no authentication."""
    max_segments: int | None = None
    """Stop after sending this many segments (for tests and benchmarks); None: run until stopped."""
    hello_timeout_s: float = 5.0
    """How long to wait for a Welcome before saying Hello again."""


_HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
)
_HANDSHAKE_FAILURES_MASK = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# CONNECTED and DISCONNECTED too: a peer that resets the TCP connection on a mechanism mismatch can drop it before
# this side has read the greeting that names the mismatch, and then only the disconnect is seen.
_CONTROL_MONITOR_MASK = (
    _HANDSHAKE_FAILURES_MASK | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
)


class LearnerGone(Exception):
    """The learner stopped answering, or a new learner run answered: say Hello again."""


class Actor:
    def __init__(self, cfg: ActorConfig, stop: threading.Event | None = None) -> None:
        """``stop``: set it to leave at the next safe point (``python -m actor`` passes the one its SIGTERM and
        Ctrl-C handlers set, installed before its imports: protocol.stop_signal)."""
        self.cfg = cfg
        self.providers = providers_for(cfg.device)  # refuses --device cuda without onnxruntime-gpu, before connecting
        self.actor_id = cfg.actor_id or f"{socket.gethostname()}-{os.getpid()}"
        self.run_id = uuid.uuid4().hex[:12]
        self.ctx = zmq.Context()
        self.stop = stop if stop is not None else threading.Event()
        self.seq = 0
        self.segments_sent = 0
        self.reconnects = 0
        self.control: zmq.Socket | None = None
        self.push: zmq.Socket | None = None
        self.sub: zmq.Socket | None = None
        self.collector: SegmentCollector | None = None
        self.policy: Policy | None = None
        self.version = 0
        self.graph_id = ""
        self.welcome: Welcome | None = None
        self.num_envs = cfg.num_envs or 0
        self.learner_run_id = ""
        self.last_heard = time.monotonic()
        self.last_heartbeat = 0.0
        self.quota = 1.0
        self.sent_per_version: dict[int, int] = {}
        self.learner_starving = False

    def _addr(self, port: int) -> str:
        return tcp_address(self.cfg.learner_host, port)

    def _curve(self) -> CurveClient | None:
        """Layout of --curve-dir: client.key_secret (this actor's key pair), server.key (the learner's)."""
        if not self.cfg.curve_dir:
            return None
        d = Path(self.cfg.curve_dir)
        return CurveClient(load_keypair(d / "client.key_secret"), load_public_key(d / "server.key"))

    # ---- connection -------------------------------------------------------------------------------------------
    def _handshake_refusal(self, monitor: zmq.Socket) -> str | None:
        """Why the learner refused the control connection's handshake, if a monitor event says it did."""
        why = None
        shaking = False  # connected, handshake not finished
        while True:  # every event queued so far, without waiting for more
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                break
            if event == zmq.EVENT_CONNECTED:
                shaking = True
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                why, shaking = None, False
            elif event in _HANDSHAKE_FAILURES or (event == zmq.EVENT_DISCONNECTED and shaking):
                shaking = False
                if self.cfg.curve_dir:
                    why = (
                        "the learner refused this actor's CurveZMQ key: client.key_secret in --curve-dir must be the "
                        "key pair whose client.key is in the learner's authorized_clients/, and server.key must be "
                        "the learner's public key"
                    )
                else:
                    why = "the learner refused the connection: it probably requires CurveZMQ keys (pass --curve-dir)"
        return why

    def _close_sockets(self) -> None:
        for s in (self.control, self.push, self.sub):
            if s is not None:
                s.close(linger=0)
        self.control = self.push = self.sub = None

    def _connect(self) -> Welcome:
        """(Re)open the three sockets and say Hello until a Welcome comes back (or we are told to stop)."""
        curve = self._curve()
        while not self.stop.is_set():
            self._close_sockets()
            self.control = connect_control(
                self.ctx, self._addr(self.cfg.control_port), curve=curve, monitor_events=_CONTROL_MONITOR_MASK
            )
            monitor = self.control.get_monitor_socket()
            hello = Hello(
                actor_id=self.actor_id,
                run_id=self.run_id,
                num_envs=self.num_envs,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            try:
                # never blocks: a DEALER whose connection was refused may hold no pipe to queue on, and a blocking
                # send there would hang this actor in silence; the monitor below still says why
                with contextlib.suppress(zmq.Again):
                    self.control.send(encode(hello), zmq.NOBLOCK)
                deadline = time.monotonic() + self.cfg.hello_timeout_s
                while not self.stop.is_set() and time.monotonic() < deadline:
                    if not self.control.poll(100):
                        continue
                    try:
                        msg = decode(self.control.recv())
                    except ProtocolError as err:
                        log.warning("bad reply to Hello: %s", err)
                        continue
                    if isinstance(msg, Error):
                        raise SystemExit(f"learner refused this actor: {msg.code}: {msg.message}")
                    if isinstance(msg, Welcome):
                        self.push = connect_trajectories(
                            self.ctx, self._addr(self.cfg.trajectory_port), sndhwm=1, curve=curve
                        )
                        self.sub = connect_policies(self.ctx, self._addr(self.cfg.policy_port), curve=curve)
                        self.last_heard = time.monotonic()
                        return msg
                refused = self._handshake_refusal(monitor)
            finally:
                with contextlib.suppress(zmq.ZMQError):
                    self.control.disable_monitor()
                monitor.close(linger=0)
            if refused:
                log.warning("no Welcome from %s: %s; saying Hello again", self._addr(self.cfg.control_port), refused)
            else:
                log.info("no Welcome from %s yet; saying Hello again", self._addr(self.cfg.control_port))
        raise LearnerGone("stopped while connecting")

    def _apply_welcome(self, welcome: Welcome) -> None:
        old = self.welcome
        same_envs = old is not None and (old.env_id, old.env_kwargs, old.segment_length, old.envs_per_actor) == (
            welcome.env_id,
            welcome.env_kwargs,
            welcome.segment_length,
            welcome.envs_per_actor,
        )
        self.welcome = welcome
        self.learner_run_id = welcome.learner_run_id
        assert welcome.policy.onnx is not None  # the validator holds a Welcome's policy to 'full'
        step_fn = StepFunction.from_bytes(
            welcome.policy.onnx, intra_op_threads=self.cfg.threads, providers=self.providers
        )
        self.graph_id = str(welcome.policy.metadata.get("graph_sha256", welcome.policy.graph_sha256))
        self.version = welcome.policy.version
        self.sent_per_version.clear()
        self.quota = welcome.segments_per_version
        num_envs = self.cfg.num_envs or welcome.envs_per_actor
        self.num_envs = num_envs
        if self.collector is None or not same_envs:
            if self.collector is not None:
                self.collector.close()
            seed = self.cfg.seed
            if seed is None:
                seed = welcome.seed * 1_000_003 + zlib.crc32(self.actor_id.encode()) % 1_000_003
            envs = [make_env(welcome.env_id, **welcome.env_kwargs) for _ in range(num_envs)]
            self.collector = SegmentCollector(envs, welcome.segment_length, seed)
            self.policy = Policy(step_fn, num_envs)
        else:
            # Same envs, new learner: keep the episodes running, start a fresh memory for every env.
            assert self.policy is not None
            self.policy = Policy(step_fn, num_envs)
            self.collector.reset[:] = True
        log.info("joined learner run %s: %s, policy version %d", self.learner_run_id, welcome.env_id, self.version)

    # ---- steady state -------------------------------------------------------------------------------------------
    def _service_control(self, heartbeat_interval: float | None = None) -> None:
        assert self.control is not None and self.welcome is not None
        now = time.monotonic()
        interval = heartbeat_interval or self.welcome.heartbeat_interval_s
        if now - self.last_heartbeat >= interval:
            self.last_heartbeat = now
            beat = Heartbeat(
                actor_id=self.actor_id,
                run_id=self.run_id,
                time=time.time(),
                policy_version=self.version,
                num_envs=self.num_envs,
                segments_sent=self.segments_sent,
            )
            with contextlib.suppress(zmq.Again):
                self.control.send(encode(beat), zmq.NOBLOCK)
        while self.control.poll(0):
            try:
                msg = decode(self.control.recv())
            except ProtocolError as err:
                log.warning("bad control message: %s", err)
                continue
            if isinstance(msg, LearnerStatus):
                if msg.learner_run_id != self.learner_run_id:
                    raise LearnerGone(f"a new learner run {msg.learner_run_id} answered")
                self.last_heard = now
                self.quota = msg.segments_per_version
                self.learner_starving = msg.starving
            elif isinstance(msg, Error) and msg.code == NOT_JOINED:
                # the learner does not count this run as joined (it expired us, or restarted): join again
                raise LearnerGone(f"the learner says: {msg.message}")
            elif isinstance(msg, Error):
                log.error("learner says: %s: %s", msg.code, msg.message)
        if now - self.last_heard > self.welcome.learner_timeout_s:
            raise LearnerGone("the learner stopped answering heartbeats")

    def _poll_policy(self) -> None:
        """Take the newest published policy, if any; called only between segments."""
        assert self.sub is not None and self.policy is not None
        update: ModelUpdate | None = None
        while self.sub.poll(0):  # CONFLATE keeps one, but drain anyway: only the newest matters
            try:
                msg = decode(self.sub.recv())
            except ProtocolError as err:
                log.warning("bad policy update: %s", err)
                continue
            if isinstance(msg, ModelUpdate) and (update is None or msg.version > update.version):
                update = msg
        if update is None or update.version <= self.version:
            return
        if update.kind == "full":
            assert update.onnx is not None  # validated: a full update carries ONNX bytes
            step_fn = StepFunction.from_bytes(update.onnx, intra_op_threads=self.cfg.threads, providers=self.providers)
            self.graph_id = str(update.metadata.get("graph_sha256", update.graph_sha256))
        else:
            if update.graph_sha256 != self.graph_id:
                raise LearnerGone("weights for a graph this actor does not have")
            assert update.weights is not None  # validated: a weights update carries weights
            step_fn = self.policy.step_function.with_weights(update.weights)
        self.policy.swap(step_fn)
        self.version = update.version

    def _send(self, seg: Segment) -> None:
        assert self.push is not None
        data = encode(seg)
        while not self.stop.is_set():
            if self.push.poll(100, zmq.POLLOUT):
                self.push.send(data, copy=False)
                self.segments_sent += 1
                return
            self._service_control()  # blocked by backpressure: keep heartbeats going, notice a dead learner

    def _in_flight(self) -> int:
        """Segments sent under the current policy version or the one before (those the learner may still use)."""
        return sum(n for v, n in self.sent_per_version.items() if v >= self.version - 1)

    def _wait_for_policy(self) -> None:
        """Flow control: keep about two shares of a batch in flight (at least one segment); then wait for a newer
        policy, unless the learner says it is starving (an actor left, a share changed, rounding), so that the
        two never wait on each other."""
        self.learner_starving = False
        limit = max(1, round(2 * self.quota))
        while self._in_flight() >= limit and not self.learner_starving and not self.stop.is_set():
            assert self.sub is not None
            self.sub.poll(20)
            self._poll_policy()
            self._service_control(heartbeat_interval=0.05)

    def _loop(self) -> None:
        assert self.collector is not None and self.policy is not None
        while not self.stop.is_set():
            self._poll_policy()
            self._wait_for_policy()
            version = self.version
            seg = self.collector.collect(
                self.policy, actor_id=self.actor_id, run_id=self.run_id, seq=self.seq, policy_version=version
            )
            self.seq += 1
            self._send(seg)
            self.sent_per_version[version] = self.sent_per_version.get(version, 0) + 1
            for old in [v for v in self.sent_per_version if v < self.version - 1]:
                del self.sent_per_version[old]
            self._service_control()
            if self.cfg.max_segments is not None and self.segments_sent >= self.cfg.max_segments:
                self.stop.set()

    def run(self) -> int:
        while not self.stop.is_set():
            try:
                welcome = self._connect()
                self._apply_welcome(welcome)
                self._loop()
            except LearnerGone as why:
                if self.stop.is_set():
                    break
                self.reconnects += 1
                log.warning("reconnecting: %s", why)
        self._say_bye("stopped")
        return 0

    def _say_bye(self, reason: str) -> None:
        if self.control is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.control.send(encode(Bye(actor_id=self.actor_id, run_id=self.run_id, reason=reason)), zmq.NOBLOCK)
        self._close_sockets()
        if self.collector is not None:
            self.collector.close()
        self.ctx.term()
