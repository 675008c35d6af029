"""The compose stack without Docker: the very commands, environments and health checks of the compose services,
started as local processes, train a learner and two actors on a short T-Maze to a success rate above chance.

Only what a single machine without Docker needs is substituted (see ``docker_testlib.local_service``): free
loopback ports and a run name through the same variables the compose file reads, the ``runs`` volume as a
temporary directory, the service name ``learner`` as 127.0.0.1. The training budget is set through
AGALITE_LEARNER_ARGS, as a user of the compose file would: the default preset (corridor 10, 400k steps) takes
several minutes on two cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import compose as dt

TOTAL_STEPS = 70_000
TRAIN_ARGS = f"--env.kwargs '{{\"corridor_length\": 5}}' --total-steps {TOTAL_STEPS} --checkpoint-interval-s 20"
STARTUP_S = 300  # generous: torch import and the first ONNX export on a busy 2-core machine
TRAINING_S = 900
CHANCE = 0.5  # a memoryless agent that reaches the junction turns the right way half the time


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=dt.process_env(env),
            cwd=dt.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _health(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=dt.REPO_ROOT, env=dt.process_env({}))


def _wait_healthy(argv: list[str], watched: list[subprocess.Popen], timeout_s: float) -> None:
    """Run a health check until it passes; give up (failing) if a watched process exits or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = _health(argv)
        if result.returncode == 0:
            return
        for p in watched:
            assert p.poll() is None, f"{p.args!r} exited with {p.returncode} before {argv[2:]} passed"
        if time.monotonic() >= deadline:  # a generous wait for a condition, not a claim about speed
            pytest.fail(f"health check {argv[2:]} still failing after {timeout_s:.0f} s: {result.stderr.strip()}")
        time.sleep(1.0)


def _healthcheck_module():
    spec = importlib.util.spec_from_file_location("agalite_healthcheck", dt.IMAGE_FILES["/opt/agalite/healthcheck.py"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)


def _actors_contributing(tb_dir: Path) -> int:
    """The most actors that had sent segments at once, as the learner's curves recorded it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return int(max((e.value for e in acc.Scalars("actors/contributing")), default=0))


@pytest.mark.e2e
@pytest.mark.slow
def test_compose_services_train_tmaze_as_local_processes(tmp_path, free_ports):
    trajectory, policy, control = free_ports(3)
    variables = {
        "AGALITE_TRAJECTORY_PORT": str(trajectory),
        "AGALITE_POLICY_PORT": str(policy),
        "AGALITE_CONTROL_PORT": str(control),
        "AGALITE_RUN_NAME": "compose-e2e",
        "AGALITE_LEARNER_ARGS": TRAIN_ARGS,
    }
    compose = dt.load(env=variables)
    runs = tmp_path / "runs"
    runs.mkdir()
    learner = dt.local_service(compose, "learner", {"runs": runs})
    actor = dt.local_service(compose, "actor", {"runs": runs})
    replicas = int(compose["services"]["actor"]["deploy"]["replicas"])
    assert replicas == 2
    assert actor.env["AGALITE_LEARNER_HOST"] == "127.0.0.1"
    assert "--run-dir" in learner.argv
    run_dir = Path(learner.argv[learner.argv.index("--run-dir") + 1])
    assert run_dir == runs / "compose-e2e"

    procs: list[subprocess.Popen] = []
    actors: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        # Compose starts the actors no later than the learner (depends_on orders only the start): they wait for it.
        for i in range(replicas):
            actors.append(_start(actor.argv, actor.env, logs / f"actor-{i}.log"))
        procs += actors
        assert learner.healthcheck is not None and actor.healthcheck is not None
        assert _health(learner.healthcheck).returncode == 1  # nothing listens yet: unhealthy
        # The image's check finds its actor by command line (PID 1 there); here each one is named explicitly.
        found = _healthcheck_module().find_actor_pids()
        for p in actors:
            assert p.pid in found
            assert _health([*actor.healthcheck, "--pid", str(p.pid)]).returncode == 1

        learner_proc = _start(learner.argv, learner.env, logs / "learner.log")
        procs.append(learner_proc)
        _wait_healthy(learner.healthcheck, [learner_proc], STARTUP_S)
        for p in actors:
            _wait_healthy([*actor.healthcheck, "--pid", str(p.pid)], [learner_proc, p], STARTUP_S)

        try:
            rc = learner_proc.wait(timeout=TRAINING_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the learner did not finish {TOTAL_STEPS} steps in {TRAINING_S} s:\n{_tail(logs / 'learner.log')}"
            )
        assert rc == 0, _tail(logs / "learner.log")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert not summary["interrupted"], "the learner was stopped by a signal from outside this test"
        assert summary["env_steps"] >= TOTAL_STEPS
        assert summary["episodes"] >= 100
        assert summary["success_rate"] > CHANCE, (summary, _tail(logs / "learner.log"))
        assert _actors_contributing(run_dir / "tb") == replicas  # both replicas contributed segments
        assert all(p.poll() is None for p in actors), "an actor died during training"

        # A restart (after a crash under `restart: on-failure`, or `docker compose up` again) runs the same
        # command: it resumes the finished run from its checkpoint (no training from scratch with the actors
        # still connected) and exits again.
        restarted = _start(learner.argv, learner.env, logs / "learner-restart.log")
        procs.append(restarted)
        try:
            rc = restarted.wait(timeout=STARTUP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the restarted learner did not resume and exit:\n{_tail(logs / 'learner-restart.log')}")
        assert rc == 0, _tail(logs / "learner-restart.log")
        again = json.loads((run_dir / "summary.json").read_text())
        assert (again["env_steps"], again["policy_version"]) == (summary["env_steps"], summary["policy_version"])

        # `docker compose stop` sends SIGTERM: actors leave cleanly.
        for p in actors:
            p.send_signal(signal.SIGTERM)
        for i, p in enumerate(actors):
            try:
                assert p.wait(timeout=60) == 0, _tail(logs / f"actor-{i}.log")
            except subprocess.TimeoutExpired:
                pytest.fail(f"actor {i} ignored SIGTERM:\n{_tail(logs / f'actor-{i}.log')}")
    finally:
        _stop(procs)
