"""SIGTERM and Ctrl-C as a request to stop at the next safe point, from an entry point's first lines on.

Part of the contract between the processes and whoever runs them (``docker compose stop``, a terminal, the
launcher): every entry point (``python -m learner``, ``python -m learner.launch``, ``python -m actor``) installs it
before its heavy imports, not once its loop runs. In a container each process is PID 1, and PID 1 has no default
action for SIGTERM, so a stop that arrived while the learner was still importing torch or resuming was ignored until
Docker's SIGKILL at the end of the grace period (exit 137, a stop that looked like a crash); an actor importing
ONNX Runtime had the same window, shorter. Now such a stop is remembered; setup finishes (it is bounded: load,
export, bind, connect), and the loop sees the request at once and ends as it always does (the learner with its final
checkpoint, policy and summary, an actor with its Bye).

Standard library only: it runs before the heavy imports, on both sides of the torch line.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """An event set by SIGTERM or the first Ctrl-C; a second Ctrl-C raises KeyboardInterrupt (abort now)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None  # the name of the first stop signal, for the log
        self._previous: dict[int, object] = {}

    def install(self) -> bool:
        """Handle SIGTERM and SIGINT in this process (main thread only; elsewhere Python forbids it). Installed
        explicitly for SIGINT too: a process started in the background inherits SIGINT ignored, and Ctrl-C sent
        to its process group would be lost. Returns whether the handlers are in place."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)
        return True

    def restore(self) -> None:
        """The handlers from before the first ``install``."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def is_set(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.event.is_set():
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signal.Signals(signum).name
        self.event.set()
