"""Files a reader may open at any moment (policy files, status, summaries, configs): written whole or not at all.

One writer for every such file of the project: the bytes go to a temporary file in the same directory, are flushed
to disk, and the temporary file is renamed over the target (atomic on POSIX); a failed write leaves neither a
half-written target nor a temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


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


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def json_text(value: Any, **dumps_kwargs: Any) -> str:
    """JSON that every parser reads: a non-finite float (no episode finished yet: a NaN success rate) becomes null,
    where ``json.dumps`` would write ``NaN``, which strict parsers (JavaScript's, jq) refuse."""
    return json.dumps(_finite_or_null(value), allow_nan=False, **dumps_kwargs)
