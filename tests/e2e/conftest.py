"""Helpers for the end-to-end tests: real learner and actor processes on loopback ports of their own.

Every process is started in a session (process group) of its own and killed with its whole group when the test
ends, passed or failed. Waits poll a condition against a generous deadline and never judge durations; a failed
wait reports the last status.json and the tails of the process logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@dataclass
class Ports:
    trajectory: int
    policy: int
    control: int

    def learner_flags(self) -> list[str]:
        return [
            "--net.host",
            "127.0.0.1",
            "--net.trajectory-port",
            str(self.trajectory),
            "--net.policy-port",
            str(self.policy),
            "--net.control-port",
            str(self.control),
        ]

    def actor_flags(self) -> list[str]:
        return [
            "--learner-host",
            "127.0.0.1",
            "--trajectory-port",
            str(self.trajectory),
            "--policy-port",
            str(self.policy),
            "--control-port",
            str(self.control),
        ]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def group_members(pgid: int) -> int:
    """How many processes of the group still exist (zombies count as gone)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            count += 1
    return count


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_alive(self) -> bool:
        """Whether any process of its group (it and the children it started) is still running."""
        return self.group_size() > 0

    def group_size(self) -> int:
        return group_members(self.popen.pid)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


@dataclass
class Stack:
    """The processes of one test, with its run directory and ports; ``close`` kills every group."""

    tmp: Path
    ports: Ports
    run_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Proc:
        log = self.tmp / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", AGALITE_LOG_LEVEL="INFO")
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def learner(
        self, *flags: str, preset: str = "test-tmaze-agalite", name: str = "learner", module: str = "learner"
    ) -> Proc:
        argv = [
            PYTHON,
            "-m",
            module,
            "--preset",
            preset,
            "--run-dir",
            str(self.run_dir),
            *self.ports.learner_flags(),
            *flags,
        ]
        return self.start(name, argv)

    def actor(self, actor_id: str, *flags: str, name: str | None = None) -> Proc:
        argv = [PYTHON, "-m", "actor", *self.ports.actor_flags(), "--actor-id", actor_id, *flags]
        return self.start(name or actor_id, argv)

    @staticmethod
    def segments_of(status: dict[str, Any], actor_id: str) -> int:
        """Segments the current learner accepted from ``actor_id`` (all its runs together)."""
        return int(status.get("segments_per_actor", {}).get(actor_id, 0))

    def status(self) -> dict[str, Any] | None:
        return read_json(self.run_dir / "status.json")

    def read_summary(self) -> dict[str, Any] | None:
        return read_json(self.run_dir / "summary.json")

    def report(self) -> str:
        parts = [f"status.json: {json.dumps(self.status(), indent=1, sort_keys=True)}"]
        for p in self.procs:
            parts.append(f"--- {p.name} (pid {p.pid}, rc {p.popen.poll()}) {p.log}\n{tail(p.log)}")
        return "\n".join(parts)

    def wait_for(
        self, cond: Callable[[], Any], what: str, timeout: float = 90.0, alive: list[Proc] | None = None
    ) -> Any:
        """Poll ``cond`` until it returns something truthy; fail early when a process in ``alive`` exits."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            for p in alive or []:
                if not p.alive():
                    raise AssertionError(
                        f"{p.name} exited (rc {p.popen.returncode}) while waiting for {what}\n{self.report()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.report()}")
            time.sleep(0.2)

    def wait_status(
        self, pred: Callable[[dict[str, Any]], Any], what: str, timeout: float = 90.0, alive: list[Proc] | None = None
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status()
            return st if st is not None and pred(st) else None

        return self.wait_for(check, what, timeout, alive)

    def wait_exit(self, proc: Proc, timeout: float = 120.0) -> int:
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{proc.name} did not exit within {timeout:.0f} s\n{self.report()}") from None

    def close(self) -> None:
        for p in self.procs:
            p.signal_group(signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=30)


@pytest.fixture
def stack(tmp_path: Path, free_ports):
    ports = Ports(*free_ports(3))
    s = Stack(tmp=tmp_path, ports=ports, run_dir=tmp_path / "run")
    try:
        yield s
    finally:
        s.close()
