"""Checkpoints survive a writer killed at any moment: the previous checkpoint stays loadable (write, fsync, rename)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from learner.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]

# Writes checkpoints back to back, each a few MB so that a kill often lands inside torch.save or the fsync.
# Each payload is self-checking: its tensor is filled with its counter, and a second copy of the counter sits at
# the end of the dict, so a half-written file that still unpickled would be caught.
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from learner.checkpoint import save_checkpoint
    run_dir = Path(sys.argv[1])
    i = int(sys.argv[2])
    while True:
        i += 1
        save_checkpoint(run_dir, {"counter": i, "data": torch.full((1_000_000,), float(i)), "counter_again": i})
        print(i, flush=True)
""")


KEYS = ("counter", "data", "counter_again")


def _check(payload: dict | None) -> int:
    assert payload is not None, "no checkpoint"
    i = payload["counter"]
    assert payload["counter_again"] == i
    data = payload["data"]
    assert data.shape == (1_000_000,)
    assert bool(torch.all(data == float(i)))
    return i


def test_save_and_load(tmp_path):
    assert load_checkpoint(tmp_path) is None
    path = save_checkpoint(tmp_path, {"counter": 3, "data": torch.full((1_000_000,), 3.0), "counter_again": 3})
    assert path == checkpoint_path(tmp_path) and path.is_file()
    assert _check(load_checkpoint(tmp_path, required=KEYS)) == 3
    # no temporary files are left behind by a completed write
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_killed_writer_leaves_the_previous_checkpoint_loadable(tmp_path):
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    last = 0
    save_checkpoint(tmp_path, {"counter": 0, "data": torch.full((1_000_000,), 0.0), "counter_again": 0})
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(last)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            # wait for the writer to have finished at least one checkpoint, then kill it at a random moment
            first = proc.stdout.readline()
            assert first.strip(), "writer produced no checkpoint"
            time.sleep(rng.uniform(0.0, 0.4))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            written = [int(first)] + [int(line) for line in proc.stdout.read().split()]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        got = _check(load_checkpoint(tmp_path, required=KEYS))
        # the file holds the last checkpoint the writer reported, or the one it was writing when killed
        # (the rename may have happened before the print): never anything older, never a torn file
        assert written[-1] <= got <= written[-1] + 1, (written[-5:], got)
        last = got
    # a leftover temporary file from a killed writer does not confuse the next save or load
    save_checkpoint(
        tmp_path, {"counter": last + 1, "data": torch.full((1_000_000,), float(last + 1)), "counter_again": last + 1}
    )
    assert _check(load_checkpoint(tmp_path, required=KEYS)) == last + 1
