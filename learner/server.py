"""The learner's network side: three bound sockets, a receiver thread, and the drop/lag accounting.

The receiver thread owns the PULL (segments) and ROUTER (control) sockets; the training thread owns the PUB
(policies) socket, so no socket is shared between threads. Decoded, validated segments wait in a bounded queue:
when the learner falls behind, the queue fills, the thread stops reading trajectories, ZeroMQ's high-water marks
fill, and the actors' sends block. That is the backpressure of docs/architecture.md#flow-control-and-policy-lag.

What a peer can cost is bounded (README, "Reliability"): segments are trained on only from actors that said Hello and
are still in the actor table, each (actor, run, seq) once; the table has a size limit; Welcomes (each carries the
whole ONNX policy) are rate-limited; Bye is honoured only from the connection that said Hello; drop logs are kept
per reason, never per sender; refused handshakes (CurveZMQ, wrong mechanism) and refused connections (no file
descriptors left) are seen through socket monitors, counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol import (
    NOT_JOINED,
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
    SegmentSpec,
    Welcome,
    decode,
    encode,
    validate_segment,
)
from protocol.codec import clip
from protocol.curve import CurveServer, load_keypair, start_authenticator
from protocol.sockets import bind_control, bind_policies, bind_trajectories

log = logging.getLogger("learner.server")

#: Actors that left stay in ``segments_per_actor`` (status, metrics) until this many are remembered.
GONE_ACTORS_KEPT = 64
_LOGGED_COUNTS = frozenset(10**k for k in range(19))
#: Socket events that mean a peer was refused before it could send anything.
_REFUSALS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_refused",  # CurveZMQ: a key not in authorized_clients
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_refused",  # wrong mechanism (plaintext vs CURVE), bad ZMTP
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_refused",  # e.g. a CURVE handshake that does not decrypt
    zmq.EVENT_ACCEPT_FAILED: "accept_failed",  # no file descriptor left for a new connection
}


class _TokenBucket:
    """At most ``rate`` per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True)
class RunSettings:
    """What every joining actor is told in its Welcome (besides the policy and its flow-control share)."""

    env_id: str
    env_kwargs: dict[str, Any]
    segment_length: int
    envs_per_actor: int
    seed: int
    heartbeat_interval_s: float
    learner_timeout_s: float


@dataclass
class ActorInfo:
    actor_id: str
    run_id: str
    host: str
    num_envs: int
    last_seen: float
    identity: bytes = b""  # the control connection that said Hello: only it may say Bye
    last_seq: int = -1  # the highest segment seq accepted from this run
    segments: int = 0
    policy_version: int = -1


@dataclass
class ServerStats:
    """Counters the training thread reads for metrics; written only by the receiver thread."""

    dropped: Counter = field(default_factory=Counter)  # reason -> count
    received_segments: int = 0
    accepted_segments: int = 0
    segments_per_actor: Counter = field(default_factory=Counter)
    lost_actors: int = 0
    refused_connections: Counter = field(default_factory=Counter)  # "handshake_refused"/"accept_failed" -> count


class LearnerServer:
    def __init__(
        self,
        *,
        host: str,
        trajectory_port: int,
        policy_port: int,
        control_port: int,
        spec: SegmentSpec,
        settings: RunSettings,
        run_id: str,
        current_version: Callable[[], int],
        welcome_policy: Callable[[], ModelUpdate],
        max_policy_lag: int,
        actor_timeout_s: float,
        max_queue_segments: int,
        batch_envs: int,
        curve_dir: str | None = None,
        max_actors: int = 1024,
        welcome_rate: float = 10.0,
        welcome_burst: int = 20,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.run_id = run_id
        self.current_version = current_version
        self.welcome_policy = welcome_policy
        self.max_policy_lag = max_policy_lag
        self.actor_timeout_s = actor_timeout_s
        self.batch_envs = batch_envs
        self._waiting_since: float | None = None
        self.queue: queue.Queue[Segment] = queue.Queue(maxsize=max_queue_segments)
        self.stats = ServerStats()
        self.actors: dict[str, ActorInfo] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.max_actors = max_actors
        self._welcomes = _TokenBucket(welcome_rate, welcome_burst)
        self._logged: set[str] = set()  # drop reasons already logged (bounded: reasons are a fixed set)
        self.ctx = zmq.Context()
        curve = None
        self._auth = None
        if curve_dir:
            # Layout: server.key_secret (this learner's key pair), authorized_clients/*.key (actors let in).
            curve = CurveServer(load_keypair(Path(curve_dir) / "server.key_secret"))
            self._auth = start_authenticator(self.ctx, Path(curve_dir) / "authorized_clients")
        # Tiny high-water marks: segments wait in one bounded place (self.queue), not in socket buffers where they
        # would silently age past the lag bound.
        self.pull = bind_trajectories(self.ctx, trajectory_port, host, rcvhwm=2, curve=curve)
        self.router = bind_control(self.ctx, control_port, host, curve=curve)
        self.pub = bind_policies(self.ctx, policy_port, host, curve=curve)
        events = 0
        for event in _REFUSALS:
            events |= event
        self._monitors = {
            name: sock.get_monitor_socket(events)
            for name, sock in (("trajectories", self.pull), ("control", self.router), ("policies", self.pub))
        }
        self._thread = threading.Thread(target=self._serve, name="learner-receiver", daemon=True)

    # ---- training-thread API ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def publish(self, update: ModelUpdate) -> None:
        self.pub.send(encode(update), copy=False)

    def next_segment(self, timeout: float) -> Segment | None:
        """The next segment still within the lag bound (lag is re-checked: versions advance while it waits)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                seg = self.queue.get_nowait()
            except queue.Empty:
                if remaining <= 0:
                    return None
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                try:
                    seg = self.queue.get(timeout=remaining)
                except queue.Empty:
                    return None
            self._waiting_since = None
            if self._lag_reason(seg) is None:
                return seg
            with self._lock:
                self.stats.dropped["stale"] += 1

    def segments_per_version(self) -> float:
        """Each actor's share of one batch, in segments (fractional when the actors' envs do not divide the
        batch). An actor keeps about two shares in flight (sent under its current policy version or the one
        before): the next batch fills while the learner trains on this one (lag about 1), and nothing queues up
        and ages (in socket buffers, beyond any high-water mark) past the lag bound. Rounding can leave the
        learner short; then it reports itself ``starving`` and actors send one more."""
        with self._lock:
            envs = sum(a.num_envs for a in self._live(time.monotonic()))
        return self.batch_envs / max(1, envs)

    def starving(self) -> bool:
        """True while the training thread has been waiting for data for a while with nothing queued."""
        since = self._waiting_since
        return since is not None and self.queue.empty() and time.monotonic() - since > 0.05

    def _live(self, now: float) -> list[ActorInfo]:
        """The actors heard from within the actor timeout: the one definition of "live". Call with the lock held."""
        return [a for a in self.actors.values() if now - a.last_seen <= self.actor_timeout_s]

    def live_actors(self) -> int:
        with self._lock:
            return len(self._live(time.monotonic()))

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            return {
                "live_actors": len(self._live(now)),
                "actors": {
                    k: {
                        "run_id": a.run_id,
                        "host": a.host,
                        "num_envs": a.num_envs,
                        "segments": self.stats.segments_per_actor.get(k, 0),
                        "policy_version": a.policy_version,
                        "seconds_since_seen": round(now - a.last_seen, 3),
                    }
                    for k, a in self.actors.items()
                },
                "segments_per_actor": dict(self.stats.segments_per_actor),
                "dropped": dict(self.stats.dropped),
                "received_segments": self.stats.received_segments,
                "accepted_segments": self.stats.accepted_segments,
                "lost_actors": self.stats.lost_actors,
                "refused_connections": dict(self.stats.refused_connections),
                "queued_segments": self.queue.qsize(),
            }

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for sock in (self.pull, self.router, self.pub):
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        for mon in self._monitors.values():
            mon.close(linger=0)
        for s in (self.pull, self.router, self.pub):
            s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()

    # ---- receiver thread ----------------------------------------------------------------------------------------
    def _lag_reason(self, seg: Segment) -> str | None:
        current = self.current_version()
        if seg.policy_version > current:
            return "future_version"
        if current - seg.policy_version > self.max_policy_lag:
            return "stale"
        return None

    def _drop(self, reason: str, sender: str | None, detail: str) -> None:
        with self._lock:
            self.stats.dropped[reason] += 1
        if reason not in self._logged:  # once per reason: nothing a peer sends makes this log or set grow
            self._logged.add(reason)
            log.warning(
                "dropped a message from %s: %s (%s); further drops are counted in status.json",
                sender or "an unknown sender",
                reason,
                clip(detail),
            )

    def _watch_monitors(self, events: dict) -> None:
        """Count and log refused handshakes and connections (log lines at the 1st, 10th, 100th, ... of each)."""
        for channel, mon in self._monitors.items():
            if mon not in events:
                continue
            for _ in range(256):
                try:
                    event = recv_monitor_message(mon, zmq.NOBLOCK)
                except zmq.Again:
                    break
                kind = _REFUSALS.get(int(event["event"]))
                if kind is None:
                    continue
                with self._lock:
                    self.stats.refused_connections[kind] += 1
                    n = self.stats.refused_connections[kind]
                if n in _LOGGED_COUNTS:  # the 1st, 10th, 100th, ...: log lines grow as log10(n), not with n
                    what = (
                        "refused a connection's handshake (an unauthorised CurveZMQ key, or a peer without the "
                        "right security mechanism)"
                        if kind == "handshake_refused"
                        else "could not accept a connection (no file descriptor left; training goes on)"
                    )
                    log.warning("%s socket %s: %d so far", channel, what, n)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        for mon in self._monitors.values():
            poller.register(mon, zmq.POLLIN)
        pull_registered = False
        while not self._stop.is_set():
            want_pull = not self.queue.full()
            if want_pull != pull_registered:
                if want_pull:
                    poller.register(self.pull, zmq.POLLIN)
                else:
                    poller.unregister(self.pull)
                pull_registered = want_pull
            try:
                # While the queue is full only the control socket is watched; wake up often then, so that a
                # freed slot is refilled at once instead of after a whole poll period (the learner would wait).
                events = dict(poller.poll(100 if pull_registered else 2))
                if self.router in events:
                    self._drain_control()
                if pull_registered and self.pull in events:
                    self._drain_segments()
                self._watch_monitors(events)
                self._expire_actors()
            except zmq.ContextTerminated:
                return
            except Exception:  # a bug here must not silently stop all intake: log it and keep serving
                log.exception("receiver loop error (continuing)")
                self.stats.dropped["receiver_error"] += 1

    def _drain_segments(self) -> None:
        for _ in range(64):
            if self.queue.full():
                return
            try:
                data = self.pull.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.stats.received_segments += 1
            try:
                msg = decode(data.buffer)
                if not isinstance(msg, Segment):
                    raise ProtocolError(Reason.UNKNOWN_TYPE, f"{type(msg).__name__} on the trajectory socket")
                validate_segment(msg, self.spec)
            except ProtocolError as err:
                self._drop(err.reason.value, err.sender, err.detail)
                continue
            with self._lock:
                info = self.actors.get(msg.actor_id)
                joined = info is not None and info.run_id == msg.run_id
            if not joined:
                self._drop("not_joined", msg.actor_id, f"run {msg.run_id} of this actor did not say Hello")
                continue
            reason = self._lag_reason(msg)
            if reason is not None:
                self._drop(
                    reason, msg.actor_id, f"policy version {msg.policy_version}, learner at {self.current_version()}"
                )
                continue
            with self._lock:
                assert info is not None
                if msg.seq <= info.last_seq:
                    duplicate = True
                else:
                    duplicate = False
                    info.last_seq = msg.seq
                    info.last_seen = time.monotonic()
                    self.stats.accepted_segments += 1
                    self.stats.segments_per_actor[msg.actor_id] += 1
            if duplicate:
                self._drop("duplicate", msg.actor_id, f"seq {msg.seq} of run {msg.run_id} was already accepted")
                continue
            self.queue.put(msg)

    def _reply(self, identity: bytes, msg: Any) -> None:
        try:
            self.router.send_multipart([identity, encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError as err:  # peer gone or HWM reached: it will say Hello again
            log.debug("reply to %r not sent: %s", identity, err)

    def _drain_control(self) -> None:
        for _ in range(64):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._drop("bad_frames", None, f"{len(frames)} frames on the control socket")
                continue
            identity, data = frames
            try:
                msg = decode(data)
            except ProtocolError as err:
                self._drop(err.reason.value, err.sender, err.detail)
                if err.reason == Reason.BAD_VERSION:
                    self._reply(
                        identity,
                        Error(
                            code=Reason.BAD_VERSION.value,
                            message=(f"learner speaks protocol {PROTOCOL_VERSION}; {err.detail}"),
                        ),
                    )
                continue
            now = time.monotonic()
            if isinstance(msg, Hello):
                # every Welcome carries the whole policy: a flood of Hellos must not become a flood of Welcomes
                if not self._welcomes.take(now):
                    self._drop("hello_rate_limited", msg.actor_id, "too many Hellos; the actor says Hello again")
                    continue
                with self._lock:
                    previous = self.actors.get(msg.actor_id)
                    if previous is None and len(self.actors) >= self.max_actors:
                        self._forget_silent_actors(now)
                    full = previous is None and len(self.actors) >= self.max_actors
                    if not full:
                        if previous is not None and previous.run_id != msg.run_id:
                            # the same actor restarted without saying Bye: its previous run died (and with it any
                            # partial segment), so it counts as lost like one that went silent
                            self.stats.lost_actors += 1
                        num_envs = msg.num_envs or self.settings.envs_per_actor
                        entry = ActorInfo(msg.actor_id, msg.run_id, msg.host, num_envs, now, identity=identity)
                        if previous is not None and previous.run_id == msg.run_id:
                            entry.last_seq = previous.last_seq  # the same run reconnected: its seqs go on
                        self.actors[msg.actor_id] = entry
                if full:
                    self._drop("actor_table_full", msg.actor_id, f"{self.max_actors} actors already joined")
                    continue
                if previous is not None and previous.run_id != msg.run_id:
                    log.warning(
                        "actor %s restarted (run %s replaces %s, which left without Bye): counted as lost",
                        msg.actor_id,
                        msg.run_id,
                        previous.run_id,
                    )
                log.info("actor %s (run %s, pid %d on %s) joined", msg.actor_id, msg.run_id, msg.pid, msg.host)
                s = self.settings
                welcome = Welcome(
                    learner_run_id=self.run_id,
                    env_id=s.env_id,
                    env_kwargs=dict(s.env_kwargs),
                    segment_length=s.segment_length,
                    envs_per_actor=s.envs_per_actor,
                    seed=s.seed,
                    heartbeat_interval_s=s.heartbeat_interval_s,
                    learner_timeout_s=s.learner_timeout_s,
                    segments_per_version=self.segments_per_version(),
                    policy=self.welcome_policy(),
                )
                self._reply(identity, welcome)
            elif isinstance(msg, Heartbeat):
                with self._lock:
                    info = self.actors.get(msg.actor_id)
                    joined = info is not None and info.run_id == msg.run_id
                    if info is not None and joined:
                        info.last_seen = now
                        info.policy_version = msg.policy_version
                        info.num_envs = msg.num_envs
                        info.identity = identity  # the run's connection now (a reconnect changes it)
                if not joined:
                    # its segments would be dropped as not_joined: tell it to say Hello again (an actor that was
                    # expired while paused, or that still talks to the learner before a restart)
                    self._drop("heartbeat_not_joined", msg.actor_id, f"run {msg.run_id} has not said Hello")
                    self._reply(identity, Error(code=NOT_JOINED, message=f"run {msg.run_id} has not said Hello"))
                    continue
                self._reply(
                    identity,
                    LearnerStatus(
                        learner_run_id=self.run_id,
                        time=time.time(),
                        policy_version=self.current_version(),
                        segments_per_version=self.segments_per_version(),
                        starving=self.starving(),
                    ),
                )
            elif isinstance(msg, Bye):
                with self._lock:
                    info = self.actors.get(msg.actor_id)
                    honoured = info is not None and info.identity == identity and info.run_id == msg.run_id
                    if honoured:
                        del self.actors[msg.actor_id]
                        self._trim_actor_counts()
                if not honoured:
                    self._drop("bye_not_from_its_connection", msg.actor_id, "Bye from a connection that did not join")
                    continue
                log.info("actor %s left: %s", msg.actor_id, clip(msg.reason, 200))
            else:
                self._drop("unexpected_type", None, f"{type(msg).__name__} on the control socket")

    def _expire_actors(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [k for k, a in self.actors.items() if now - a.last_seen > 3 * self.actor_timeout_s]
            for k in gone:
                del self.actors[k]
                self.stats.lost_actors += 1
            if gone:
                self._trim_actor_counts()
        for k in gone:
            log.warning("actor %s went silent and is counted as lost", k)

    def _forget_silent_actors(self, now: float) -> None:
        """Make room in a full table: actors silent for longer than the actor timeout are counted as lost now
        instead of at 3x the timeout. Called with the lock held."""
        gone = [k for k, a in self.actors.items() if now - a.last_seen > self.actor_timeout_s]
        for k in gone:
            del self.actors[k]
            self.stats.lost_actors += 1
        self._trim_actor_counts()

    def _trim_actor_counts(self) -> None:
        """Keep per-actor segment counts for the actors in the table and the last GONE_ACTORS_KEPT that left, so
        status.json and the metrics cannot grow with the number of ids ever seen. Called with the lock held."""
        counts = self.stats.segments_per_actor
        excess = len(counts) - len(self.actors) - GONE_ACTORS_KEPT
        if excess <= 0:
            return
        for actor_id in [k for k in counts if k not in self.actors][:excess]:
            del counts[actor_id]
