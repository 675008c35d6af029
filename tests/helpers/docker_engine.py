"""A real Docker engine for the tests: find one, build the images from the working tree, run compose projects.

The tests that use it skip (saying why) when no engine answers. Everything they start is named so that it never
meets a stack or a learner already running on the machine: a compose project name of its own, host ports that were
free a moment ago (a learner on 5555-5557 is normal on a developer's machine), image tags ending in ``:test``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.helpers import compose as dt
from tests.helpers.ports import free_ports

# Image tags of this test process: another test session building from a different working tree at the same time
# must not retag the images under a running stack (a `compose up` would then recreate its containers from them).
SESSION_TAG = f"test-{os.getpid()}"
LEARNER_IMAGE = f"agalite-rl/learner:{SESSION_TAG}"
ACTOR_IMAGE = f"agalite-rl/actor:{SESSION_TAG}"
WHEELS_DIR = dt.DOCKER_DIR / "wheels"
# A folder holding a CPU torch wheel (e.g. printed by a machine's engine set-up script): linked into docker/wheels/
# so the learner image builds without reaching the CPU torch index, as a user without that index would do.
TORCH_WHEEL_DIR_VAR = "TORCH_WHEEL_DIR"
BUILD_TIMEOUT_S = 1800  # a cold learner build downloads the learner set (torch alone is ~200 MB)
POLL_S = 1.0
# A generous bound for a container to start and a learner to come up on a busy 2-core machine (not a speed claim).
START_TIMEOUT_S = 300

T = TypeVar("T")


@functools.cache
def engine_problem() -> str | None:
    """None when a Docker engine and the compose v2 plugin answer, else why the engine tests skip."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        server = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
        )
        compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"the docker CLI does not answer: {err}"
    if server.returncode != 0:
        lines = (server.stderr or server.stdout).strip().splitlines()
        return f"no Docker engine answers ({lines[-1] if lines else f'docker version exited {server.returncode}'})"
    if compose.returncode != 0:
        return "the docker compose v2 plugin is not installed"
    return None


def docker(*args: str, timeout: float = 300, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def free_host_ports(n: int) -> list[int]:
    """n distinct TCP ports free on every interface a moment ago (compose publishes on 0.0.0.0)."""
    return free_ports(n, "0.0.0.0")


def link_torch_wheels() -> list[Path]:
    """Put the CPU torch wheel(s) of $TORCH_WHEEL_DIR into docker/wheels/ (hard link, else copy); git ignores them.
    Returns the torch wheels docker/wheels/ holds afterwards."""
    source = os.environ.get(TORCH_WHEEL_DIR_VAR)
    if source and Path(source).is_dir():
        for wheel in Path(source).glob("torch-*.whl"):
            target = WHEELS_DIR / wheel.name
            if not target.exists():
                try:
                    os.link(wheel, target)
                except OSError:
                    shutil.copy2(wheel, target)
    return sorted(WHEELS_DIR.glob("torch-*.whl"))


def wait_for(fn: Callable[[], T | None], what: str, timeout_s: float, on_timeout: Callable[[], str] = lambda: "") -> T:
    """Poll ``fn`` until it returns something other than None; fail after ``timeout_s`` (a generous bound for a
    condition, never a claim about speed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}\n{on_timeout()}")
        time.sleep(POLL_S)


@dataclass
class ComposeProject:
    """One `docker compose -p NAME` project on the repository's compose file (plus ``extra_files``)."""

    name: str
    env: dict[str, str]
    extra_files: Sequence[Path] = ()
    run_name: str = "docker-test"
    _volume_dir: Path | None = field(default=None, init=False)

    @property
    def volume(self) -> str:
        return f"{self.name}_runs"

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        files = [a for f in (dt.COMPOSE_FILE, *self.extra_files) for a in ("-f", str(f))]
        cmd = ["docker", "compose", "-p", self.name, *files, *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=dt.REPO_ROOT, env=dt.process_env(self.env)
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[2:])} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def up(self, *args: str) -> None:
        self.compose("up", "-d", "--no-build", "--pull", "never", *args, timeout=600)

    def containers(self, service: str) -> list[str]:
        """IDs of the service's containers, running or not."""
        return self.compose("ps", "-a", "-q", service).stdout.split()

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"{service}: expected one container, found {ids}"
        return ids[0]

    def inspect(self, container: str, template: str) -> str:
        return docker("inspect", "--format", template, container).stdout.strip()

    def logs(self, service: str = "") -> str:
        services = [service] if service else []
        return self.compose("logs", "--no-color", "--no-log-prefix", *services, check=False).stdout

    def report(self) -> str:
        """For failure messages: the containers' states and the last log lines of each service (the learner's most)."""
        parts = [self.compose("ps", "-a", check=False).stdout]
        template = "{{.Name}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}} restarts={{.RestartCount}}"
        for service, lines in (("learner", 60), ("actor", 6), ("tensorboard", 4)):
            for container in self.containers(service):
                parts.append(docker("inspect", "--format", template, container, check=False).stdout.strip())
            tail = self.compose("logs", "--no-color", "--tail", str(lines), service, check=False)
            parts.append(tail.stdout[-5000:] + tail.stderr[-500:])
        return "\n".join(parts)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300, check=False)

    # ---- the run volume ---------------------------------------------------------------------------------------------
    def _readable_volume_dir(self) -> Path | None:
        """The volume's folder on this host when this process can read it (the engine is local and we are root)."""
        if self._volume_dir is None:
            result = docker("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume, check=False)
            path = Path(result.stdout.strip()) if result.returncode == 0 else None
            if path is not None and os.access(path, os.R_OK | os.X_OK):
                self._volume_dir = path
        return self._volume_dir

    def read_run_file(self, relative: str) -> tuple[str, float] | None:
        """(text, mtime) of /runs/<run_name>/<relative> on the volume, or None while it does not exist. Binary
        files (checkpoints) come back with their bytes decoded leniently: use them for the mtime only."""
        local = self._readable_volume_dir()
        if local is not None:
            path = local / self.run_name / relative
            try:
                return path.read_text(errors="replace"), path.stat().st_mtime
            except OSError:
                return None
        code = (
            "import json, os, sys\n"
            "p = sys.argv[1]\n"
            "text = open(p, errors='replace').read() if os.path.exists(p) else None\n"
            "print(json.dumps(None if text is None else [text, os.stat(p).st_mtime]))\n"
        )
        result = docker(
            "run", "--rm", "-v", f"{self.volume}:/runs:ro", ACTOR_IMAGE,
            "python", "-c", code, f"/runs/{self.run_name}/{relative}",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        value = json.loads(result.stdout)
        return None if value is None else (value[0], float(value[1]))

    def status(self) -> dict[str, Any] | None:
        found = self.read_run_file("status.json")
        if found is None:
            return None
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(found[0])
        return None

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout_s: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            s = self.status()
            return s if s is not None and predicate(s) else None

        return wait_for(check, what, timeout_s, lambda: f"last status: {self.status()}\n{self.report()}")

    def resumed_lines(self) -> list[tuple[int, int]]:
        """(policy version, env steps) of every `resumed ...` line the learner has logged, oldest first."""
        pattern = re.compile(r"resumed \S+ at policy version (\d+), (\d+) env steps")
        return [(int(a), int(b)) for a, b in pattern.findall(self.logs("learner"))]
