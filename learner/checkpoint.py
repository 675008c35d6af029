"""Checkpoints that survive a kill at any moment: write to a temporary file, fsync, then rename over the old one.

A checkpoint holds everything resuming needs: weights, optimiser and minibatch-sampler state, the policy version
counter, step counters, RNG states and the run's config. It also holds the model config and spaces, so that
``export`` can rebuild the model from the file alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / CHECKPOINT_NAME


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    path = checkpoint_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The last complete checkpoint of the run, or None when the run has none yet."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=False)
