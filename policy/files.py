"""Files a reader may open at any moment (policy files, status, summaries, configs): written whole or not at all.

One writer for every such file of the project: the bytes go to a temporary file in the same directory, are flushed
to disk, and the temporary file is renamed over the target (atomic on POSIX); a failed write leaves neither a
half-written target nor a temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8); returns the path."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide policies and status files from other users and containers
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise
    return target
