"""A benchmark run that is stopped leaves nothing behind: its whole process group goes, stubborn children included.

Sample Factory's rollout workers once outlived the SIGTERM sent to its main process at a time limit and stepped on
for an hour, slowing every run measured after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.peer.run import run_process

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker that ignores the polite stop
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    time.sleep(1)
''', sys.argv[1]])
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_a_stopped_run_takes_its_children_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = run_process(
        [sys.executable, "-c", PARENT, str(pid_file)],
        tmp_path / "run.log",
        timeout_s=600,
        env=dict(os.environ),
        stop_when=lambda: pid_file.exists() and pid_file.read_text() != "",
    )
    assert result["stopped_after_threshold"] and not result["timed_out"], result
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # the kill is sent before run_process returns; this only waits for the reap
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the child that ignored SIGTERM outlived the run"


HARNESS = """
import os, sys
from pathlib import Path
from bench.peer.run import run_process, stop_like_ctrl_c
stop_like_ctrl_c()
run_process([sys.executable, "-c", sys.argv[1], sys.argv[2]], Path(sys.argv[3]), 600, dict(os.environ))
"""


def _ignore_sigint() -> None:  # as a non-interactive shell starts a background job
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_harness_stops_its_run(tmp_path: Path, sig: signal.Signals) -> None:
    pid_file = tmp_path / "child.pid"
    root = Path(__file__).resolve().parents[2]
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS, PARENT, str(pid_file), str(tmp_path / "run.log")],
        cwd=root,
        preexec_fn=_ignore_sigint,
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    harness.send_signal(sig)
    assert harness.wait(timeout=120) != 0  # it stopped (by the interrupt), it did not finish
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), f"the run outlived a {sig.name} to the harness"
