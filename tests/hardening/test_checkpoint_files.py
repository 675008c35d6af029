"""Hostile, damaged and unwritable checkpoint files: refused in one line, never executed, never fatal to training.

The disk-full cases use /dev/full (every write there fails with ENOSPC): the temporary file the writer is about to
open is made a symlink to it, so the real write path meets a real full device.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.checkpoint import (
    RESUME_KEYS,
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    read_checkpoint,
    remove_orphaned_tmp,
    save_checkpoint,
)
from learner.fs_faults import WriteGuard, describe_os_error

REPO = Path(__file__).resolve().parents[2]
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def _learner_like_payload(version: int = 3) -> dict:
    """Every kind of value the learner stores (RNG states included), small."""
    return {
        "model_config": {"kind": "agalite", "d_model": 8},
        "observation_space": {"type": "Box", "shape": [3]},
        "action_space": {"type": "Discrete", "n": 4},
        "model_state": {"w": torch.ones(2, 2)},
        "ppo_state": {"optimizer": {"state": {}, "param_groups": []}, "generator": torch.Generator().get_state()},
        "policy_version": version,
        "env_steps": 10,
        "updates": version,
        "elapsed_s": 1.5,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),  # noqa: NPY002 - the learner seeds the legacy global generator
        "python_rng": random.getstate(),
        "config": {"env": {"id": "agalite/TMaze-v0"}, "seed": 1},
    }


class _MakesADirectory:
    """A pickle payload: unpickling it would create a directory (what the probe saw happen)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_learner_checkpoint_round_trips_with_weights_only(tmp_path):
    save_checkpoint(tmp_path, _learner_like_payload(7))
    data = load_checkpoint(tmp_path)
    assert data is not None and data["policy_version"] == 7
    assert data["numpy_rng"][0] == "MT19937" and data["numpy_rng"][1].dtype == np.uint32


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "made-by-the-payload"
    save_checkpoint(tmp_path, {**_learner_like_payload(), "extra": _MakesADirectory(str(target))})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert not target.exists(), "the pickled code ran"
    message = str(info.value)
    assert "\n" not in message and str(checkpoint_path(tmp_path)) in message
    assert "mkdir" in message and "refusing" in message


def _damaged(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    good = path.with_name("good.pt")
    torch.save(_learner_like_payload(), good)
    raw = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"policy_version": 1}))
    elif kind == "foreign-dict":
        torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    elif kind == "tensor":
        torch.save(torch.ones(3), path)
    elif kind == "directory":
        path.mkdir()


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("empty", "is empty"),
        ("truncated", "truncated or corrupt"),
        ("garbage", "not a torch checkpoint"),
        ("plain-pickle", "not a torch checkpoint"),
        ("foreign-dict", "not a learner checkpoint: it lacks model_config"),
        ("tensor", "holds a Tensor"),
        ("directory", "cannot be read"),
    ],
)
def test_damaged_or_foreign_checkpoints_are_refused_in_one_line_naming_the_file(tmp_path, kind, why):
    path = checkpoint_path(tmp_path)
    _damaged(kind, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert str(path) in message and why in message, message


def test_the_learner_refuses_a_damaged_checkpoint_with_one_line_and_no_traceback(tmp_path):
    run_dir = tmp_path / "run"
    _damaged("truncated", checkpoint_path(run_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "learner", "--preset", "test-tmaze-agalite", "--run-dir", str(run_dir)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint ") and str(checkpoint_path(run_dir)) in last, proc.stderr


@needs_dev_full
def test_disk_full_at_a_checkpoint_keeps_the_previous_one_and_leaves_no_temporary(tmp_path):
    save_checkpoint(tmp_path, _learner_like_payload(1))
    tmp = checkpoint_path(tmp_path).with_name(f".checkpoint.pt.{os.getpid()}.tmp")
    tmp.symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        save_checkpoint(tmp_path, _learner_like_payload(2))
    assert info.value.errno == errno.ENOSPC
    assert describe_os_error(info.value, checkpoint_path(tmp_path)) == (
        f"no space left on device at {checkpoint_path(tmp_path)}"
    )
    assert not tmp.exists() and not tmp.is_symlink()
    assert (load_checkpoint(tmp_path) or {}).get("policy_version") == 1  # the previous checkpoint is intact
    save_checkpoint(tmp_path, _learner_like_payload(2))  # the retry, once there is room again
    assert (load_checkpoint(tmp_path) or {}).get("policy_version") == 2


@needs_dev_full
def test_the_write_guard_logs_one_line_per_outage_and_the_recovery(tmp_path, caplog):
    guard = WriteGuard()
    target = tmp_path / "status.json"

    def write() -> bool:
        with open("/dev/full", "w") as f:
            f.write("x" * 10_000)
            f.flush()
        return True

    with caplog.at_level(logging.INFO, logger="learner"):
        for _ in range(5):
            assert guard.attempt("status", target, write) is None
        assert guard.attempt("status", target, lambda: target.write_text("{}") > 0) is True
        assert guard.attempt("status", target, write) is None
    lines = [r.getMessage() for r in caplog.records]
    assert guard.failures == 6
    assert lines == [
        f"status not written: no space left on device at {target} (training goes on; retrying)",
        f"status written again at {target}",
        f"status not written: no space left on device at {target} (training goes on; retrying)",
    ]


def test_orphaned_temporaries_are_removed_at_start(tmp_path):
    save_checkpoint(tmp_path, _learner_like_payload(1))
    folder = checkpoint_path(tmp_path).parent
    for pid in (11, 22, 33, 44, 55):
        (folder / f".checkpoint.pt.{pid}.tmp").write_bytes(b"half a checkpoint")
    (folder / "keep.me").write_text("not ours")
    assert remove_orphaned_tmp(tmp_path) == 5
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "keep.me"]
    assert read_checkpoint(checkpoint_path(tmp_path), required=RESUME_KEYS)["policy_version"] == 1
