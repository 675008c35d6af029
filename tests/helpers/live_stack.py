"""A live learner (and actors) for the hardening probes: real processes on loopback ports of their own.

Imported by bare name (``conftest.py`` puts this folder on sys.path).

Each process runs in a process group of its own and is killed with it when its fixture ends. Waits poll against
generous deadlines and never judge durations; a failed wait shows status.json and the tails of the logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
PRESET = "test-tmaze-agalite"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Live:
    """One learner's run directory, ports and processes."""

    tmp: Path
    ports: list[int]  # trajectory, policy, control
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.tmp / "run"

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str, argv: list[str], nofile: int | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", AGALITE_LOG_LEVEL="INFO")

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=limits if nofile is not None else None,
            )
        self.procs[name] = proc
        return proc

    def learner(self, *flags: str, nofile: int | None = None) -> subprocess.Popen:
        t, p, c = self.ports
        argv = [sys.executable, "-m", "learner", "--preset", PRESET, "--run-dir", str(self.run_dir)]
        argv += ["--net.host", "127.0.0.1", "--net.trajectory-port", str(t), "--net.policy-port", str(p)]
        argv += ["--net.control-port", str(c), "--total-steps", "100000000", *flags]
        return self.start("learner", argv, nofile)

    def actor(self, actor_id: str, *flags: str) -> subprocess.Popen:
        t, p, c = self.ports
        argv = [sys.executable, "-m", "actor", "--learner-host", "127.0.0.1", "--trajectory-port", str(t)]
        argv += ["--policy-port", str(p), "--control-port", str(c), "--actor-id", actor_id, *flags]
        return self.start(actor_id, argv)

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def report(self) -> str:
        parts = [f"status.json: {json.dumps(self.status(), sort_keys=True)[:3000]}"]
        for name, proc in self.procs.items():
            try:
                text = "\n".join(self.log(name).read_text(errors="replace").splitlines()[-20:])
            except FileNotFoundError:
                text = "(no log)"
            parts.append(f"--- {name} (pid {proc.pid}, rc {proc.poll()})\n{text}")
        return "\n".join(parts)

    def alive(self, name: str = "learner") -> bool:
        return self.procs[name].poll() is None

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if not self.alive():
                raise AssertionError(f"the learner exited while waiting for {what}\n{self.report()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.report()}")
            time.sleep(0.2)

    def wait_status(self, pred: Callable[[dict[str, Any]], Any], what: str, timeout: float = 120.0) -> dict:
        return self.wait(lambda: (s := self.status()) is not None and pred(s) and s, what, timeout)

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    stack = Live(tmp_path, free_ports(3))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def shared_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One learner (checkpoint every 2 s) and one actor, shared by the probes of a module."""
    stack = Live(tmp_path_factory.mktemp("live"), free_ports(3))
    try:
        stack.learner("--checkpoint-interval-s", "2")
        stack.actor("a0")
        stack.wait_status(lambda s: s["policy_version"] >= 2 and "a0" in s["actors"], "training with actor a0")
        yield stack
    finally:
        stack.close()
