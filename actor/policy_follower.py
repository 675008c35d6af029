"""Follow the learner's policy updates on a thread of their own, off the step path.

Building an ONNX Runtime session for new weights takes tens of milliseconds (35 ms for the paper-size AGaLiTe
here); done between segments it would stall every env of the actor once per update. This thread receives the
updates (it owns the SUB socket), builds the session for the newest one while the actor keeps stepping, and hands
the ready session over; the actor swaps it in at the next segment boundary, so every segment still comes from one
policy version. ONNX Runtime releases the GIL while it builds, so the two overlap.
"""

from __future__ import annotations

import logging
import threading

import zmq

from actor.policy_meta import PolicyError
from actor.runtime import StepFunction
from protocol import ModelUpdate, ProtocolError, decode

log = logging.getLogger("actor.policy")


class PolicyFollower:
    def __init__(self, sub: zmq.Socket, current: StepFunction, graph_id: str, version: int, threads: int) -> None:
        self._sub = sub
        self._latest = current
        self._graph_id = graph_id
        self._version = version
        self._threads = threads
        self._ready: tuple[int, StepFunction] | None = None
        self._lock = threading.Lock()
        self.ready = threading.Event()
        """Set when a newer policy is ready to take, or when ``unknown_graph`` became true."""
        self.unknown_graph = False
        """Weights arrived for a graph this actor does not have: it must say Hello again for the full policy."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take(self) -> tuple[int, StepFunction] | None:
        """The newest ready (version, step function) not taken yet, or None."""
        with self._lock:
            ready, self._ready = self._ready, None
            self.ready.clear()
        return ready

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sub.close(linger=0)

    def _newest(self) -> ModelUpdate | None:
        update: ModelUpdate | None = None
        while self._sub.poll(0):  # CONFLATE keeps one, but drain anyway: only the newest matters
            try:
                msg = decode(self._sub.recv())
            except ProtocolError as err:
                log.warning("bad policy update: %s", err)
                continue
            if isinstance(msg, ModelUpdate) and (update is None or msg.version > update.version):
                update = msg
        return update

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._sub.poll(50):
                    continue
                update = self._newest()
            except zmq.ZMQError:
                return
            if update is None or update.version <= self._version:
                continue
            try:
                if update.kind == "full":
                    fn = StepFunction.from_bytes(update.onnx, intra_op_threads=self._threads)
                    self._graph_id = str(update.metadata.get("graph_sha256", update.graph_sha256))
                elif update.graph_sha256 != self._graph_id:
                    self.unknown_graph = True
                    self.ready.set()
                    continue
                else:
                    fn = self._latest.with_weights(update.weights)
            except PolicyError as err:
                log.warning("policy version %d unusable, keeping the current one: %s", update.version, err)
                continue
            self._latest, self._version = fn, update.version
            with self._lock:
                self._ready = (update.version, fn)
                self.ready.set()
