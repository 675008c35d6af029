"""Metrics: TensorBoard scalars (CleanRL-style names: ``charts/``, ``losses/``, ``actors/``) and a console line."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from learner.fs_faults import WriteGuard

log = logging.getLogger("learner")
_hook_installed = False


class EpisodeWindow:
    """Return, length and success of the most recent finished episodes (a moving window, as the paper logs)."""

    def __init__(self, size: int = 100) -> None:
        self.returns: deque[float] = deque(maxlen=size)
        self.lengths: deque[int] = deque(maxlen=size)
        self.successes: deque[float] = deque(maxlen=size)
        self.total = 0

    def add(self, episodes: Iterable[dict[str, Any]]) -> None:
        for ep in episodes:
            self.returns.append(float(ep["return"]))
            self.lengths.append(int(ep["length"]))
            if ep.get("success") is not None:
                self.successes.append(float(ep["success"]))
            self.total += 1

    @staticmethod
    def _mean(values: deque) -> float:
        return sum(values) / len(values) if values else math.nan

    @property
    def mean_return(self) -> float:
        return self._mean(self.returns)

    @property
    def mean_length(self) -> float:
        return self._mean(self.lengths)

    @property
    def success_rate(self) -> float:
        return self._mean(self.successes)


def _quiet_writer_thread_errors(previous: Callable[[threading.ExceptHookArgs], Any]) -> None:
    """TensorBoard's background writer thread re-raises a failed write (a full disk, no file descriptors) after
    storing it, and the default hook prints a raw traceback for it. The stored error resurfaces at the next
    ``add_scalar``, where ``Metrics`` logs it in one line, so for that thread the traceback is only noise."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    threading.excepthook = hook


class Metrics:
    """TensorBoard scalars that never stop training: a failed write (full disk, no file descriptors) is logged
    once per outage by the ``WriteGuard``, the broken writer is dropped, and a new one (a new events file) is
    opened at the next call. Scalars of the outage are lost; the run is not."""

    def __init__(self, run_dir: Path, guard: WriteGuard | None = None) -> None:
        self.log_dir = run_dir / "tb"
        self.guard = guard if guard is not None else WriteGuard()
        self.writer: SummaryWriter | None = None
        global _hook_installed
        if not _hook_installed:
            _quiet_writer_thread_errors(threading.excepthook)
            _hook_installed = True
        self._open()

    def _open(self) -> None:
        self.writer = self.guard.attempt("metrics", self.log_dir, lambda: SummaryWriter(log_dir=str(self.log_dir)))

    def _drop_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # already broken: its own close may raise the same error again
                writer.close()

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            self._open()
        writer = self.writer
        if writer is None:
            return

        def write() -> bool:
            for key, value in values.items():
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    writer.add_scalar(key, value, step)
            return True

        if self.guard.attempt("metrics", self.log_dir, write) is None:
            self._drop_writer()

    def close(self) -> None:
        writer = self.writer
        if writer is not None:

            def flush() -> bool:
                writer.flush()
                return True

            self.guard.attempt("metrics", self.log_dir, flush)
        self._drop_writer()
