"""File-system faults at the learner's periodic writes (checkpoint, status.json, metrics): logged, never fatal.

A full disk or an exhausted open-file table is an outage of the run directory, not a reason to lose the training
in memory. Each write goes through one ``WriteGuard``: a failure is logged in one line that says what happened
where ("no space left on device at runs/x/checkpoints/checkpoint.pt"), once per outage rather than once per
retry, the caller retries later, and the first success after an outage is logged too.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("learner")

T = TypeVar("T")

_PLAIN = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EIO: "input/output error",
}


def describe_os_error(exc: OSError, path: str | os.PathLike[str]) -> str:
    """One line: what went wrong and where, e.g. ``no space left on device at runs/x/status.json``."""
    what = _PLAIN.get(exc.errno or 0) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    return f"{what} at {Path(path)}"


class WriteGuard:
    """Runs writes that may fail with OSError; remembers which targets are failing so each outage logs once."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}  # what -> the line logged for its current outage
        self.failures = 0

    def attempt(self, what: str, path: str | os.PathLike[str], write: Callable[[], T]) -> T | None:
        """``write()``'s result, or None after logging (once per outage of ``what``) why it failed."""
        try:
            result = write()
        except OSError as exc:
            self.failures += 1
            line = describe_os_error(exc, path)
            if self.failing.get(what) != line:
                log.error("%s not written: %s (training goes on; retrying)", what, line)
                self.failing[what] = line
            return None
        if self.failing.pop(what, None) is not None:
            log.info("%s written again at %s", what, Path(path))
        return result
