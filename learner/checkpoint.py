"""Checkpoints that survive a kill at any moment: write to a temporary file, fsync, then rename over the old one.

A checkpoint holds everything resuming needs: weights, optimiser and minibatch-sampler state, the policy version
counter, step counters, RNG states and the run's config. It also holds the model config and spaces, so that
``export`` can rebuild the model from the file alone.

Reading never runs code from the file: ``torch.load(weights_only=True)`` with an allow-list of exactly the numpy
types the learner stores (the numpy RNG state). A file that is empty, truncated, corrupt, holds anything else, or
is not a learner checkpoint is refused with a ``CheckpointError`` whose one line names the file and what is wrong.

Writing serialises in memory first, so a failing disk shows up as a plain ``OSError`` (ENOSPC, EMFILE, ...) from
``write`` instead of an opaque error from torch's zip writer; the temporary file is removed and the previous
checkpoint is left as it was. Temporaries orphaned by a learner killed mid-write are removed at start.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from export.checkpoint import SAFE_GLOBALS

CHECKPOINT_NAME = "checkpoint.pt"
#: What a learner checkpoint must hold to be resumed from.
RESUME_KEYS: tuple[str, ...] = (
    "model_config",
    "observation_space",
    "action_space",
    "model_state",
    "ppo_state",
    "policy_version",
    "env_steps",
    "updates",
    "torch_rng",
    "numpy_rng",
    "python_rng",
    "config",
)

log = logging.getLogger("learner")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / CHECKPOINT_NAME


def _tmp_glob() -> str:
    return f".{CHECKPOINT_NAME}.*.tmp"


def remove_orphaned_tmp(run_dir: Path) -> int:
    """Remove the ``.checkpoint.pt.<pid>.tmp`` files a killed learner left; their contents are never needed (the
    rename that would have made one the checkpoint did not happen). Returns how many were removed."""
    removed = 0
    for tmp in checkpoint_path(run_dir).parent.glob(_tmp_glob()):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d unfinished checkpoint file(s) left by an earlier learner in %s", removed, tmp.parent)
    return removed


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically. Raises OSError (the previous checkpoint untouched, no temporary left)."""
    path = checkpoint_path(run_dir)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        del data
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _why_unreadable(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in text.lower().replace(" ", "_"):
        found = re.search(r"GLOBAL ([\w.]+)|Unsupported global: ([\w.]+)|global '?([\w.]+)", text)
        name = next((g for g in found.groups() if g), "an unknown object") if found else "an unknown object"
        return f"holds {name}, which a checkpoint never contains (refusing to run its pickled code)"
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip archive" in text or "central directory" in text:
        return "is truncated or corrupt (not a complete torch archive)"
    # the file itself opened and read fine before torch.load, so whatever failed inside is its content
    return f"is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})"


def read_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", required: Iterable[str] = RESUME_KEYS
) -> dict[str, Any]:
    """Load one checkpoint file without running any code from it. Raises CheckpointError (one line)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"checkpoint {path} is not a torch checkpoint (no zip archive header)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or hostile file
        raise CheckpointError(f"checkpoint {path} {_why_unreadable(exc)}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a learner checkpoint")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a learner checkpoint: it lacks {', '.join(missing)}")
    return data


def load_checkpoint(
    run_dir: Path, map_location: str | torch.device = "cpu", required: Iterable[str] = RESUME_KEYS
) -> dict[str, Any] | None:
    """The last complete checkpoint of the run, or None when the run has none yet. Raises CheckpointError."""
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    return read_checkpoint(path, map_location, required)
