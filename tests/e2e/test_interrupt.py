"""Ctrl-C on `python -m learner.launch` (SIGINT to its whole process group, as a terminal sends it): everything
stops cleanly with exit code 0, leaves a checkpoint and policy.onnx, no actor behind; the same command resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learner.checkpoint import checkpoint_path, load_checkpoint
from policy.runtime import StepFunction


@pytest.mark.e2e
def test_ctrl_c_stops_everything_cleanly_and_the_same_command_resumes(stack, tmp_path):
    flags = ("--num-actors", "2", "--total-steps", "40000")
    launcher = stack.learner(*flags, module="learner.launch", name="launcher-first")
    first = stack.wait_status(
        lambda s: s["updates"] >= 3 and s["live_actors"] == 2, "training with two actors", alive=[launcher]
    )
    assert first["resumed"] is False
    assert launcher.group_size() == 3  # the launcher (learner) and its two actors, in one process group

    launcher.signal_group(signal.SIGINT)
    assert stack.wait_exit(launcher, timeout=120) == 0, stack.report()
    stack.wait_for(lambda: not launcher.group_alive(), "every actor of the launcher to exit", timeout=30)
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is True, stack.report()
    assert (stack.run_dir / "policy.onnx").is_file()
    ckpt = load_checkpoint(stack.run_dir)  # read as a resume reads it: no code from the file, RNG states allowed
    assert ckpt is not None
    assert ckpt["updates"] == summary["updates"] >= first["updates"]
    assert ckpt["env_steps"] == summary["env_steps"] < 40000
    # the deployment path of the README exports from the checkpoint the learner wrote (its RNG states included)
    exported = subprocess.run(
        [sys.executable, "-m", "export", "--checkpoint", str(checkpoint_path(stack.run_dir)), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr
    assert StepFunction.from_file(tmp_path / "policy.onnx").metadata.policy_version == ckpt["policy_version"]
    # the actors left on purpose (Bye), and said so in their logs; nothing crashed
    for i in range(2):
        log = (stack.run_dir / "logs" / f"actor-{i}.log").read_text()
        assert "Traceback" not in log, log
    assert "Traceback" not in launcher.log.read_text()

    # the same command again: resumes from the checkpoint and trains to the end of the step budget
    again = stack.learner(*flags, module="learner.launch", name="launcher-second")
    resumed = stack.wait_status(
        lambda s: s["learner_run_id"] != first["learner_run_id"], "the resumed run", alive=[again]
    )
    assert resumed["resumed"] is True
    assert resumed["policy_version"] >= ckpt["policy_version"]
    assert stack.wait_exit(again, timeout=180) == 0, stack.report()
    final = stack.read_summary()
    assert final["interrupted"] is False
    assert final["env_steps"] >= 40000
    assert final["updates"] > ckpt["updates"]
    assert "resuming" in again.log.read_text()
    stack.wait_for(lambda: not again.group_alive(), "every actor of the second launcher to exit", timeout=30)


def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for ``sig`` now (the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (sig - 1) & 1)


def _handler_comes_before(stack, proc, library: str) -> None:
    """Wait until ``proc`` catches SIGTERM, then check that ``library`` (its heaviest import) is not loaded yet."""
    while not _catches(proc.pid, signal.SIGTERM):  # polled tightly: the heavy import begins a moment later
        assert proc.alive(), stack.report()
        time.sleep(0.002)
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert library not in maps, f"the SIGTERM handler came only after {library} was loaded"


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["learner", "learner.launch"])
def test_sigterm_while_the_learner_starts_is_a_clean_stop(stack, module):
    # In a container the learner is PID 1, which has no default action for SIGTERM: a stop that arrives before the
    # handler exists is ignored until Docker's SIGKILL. So the handler must come first, before torch is imported.
    learner = stack.learner("--num-actors", "2", module=module)
    _handler_comes_before(stack, learner, "libtorch")

    learner.popen.send_signal(signal.SIGTERM)
    assert stack.wait_exit(learner, timeout=180) == 0, stack.report()
    log = learner.log.read_text()
    assert "SIGTERM arrived during startup" in log and "Traceback" not in log, log
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is True and summary["updates"] == 0, stack.report()
    assert (stack.run_dir / "policy.onnx").is_file() and checkpoint_path(stack.run_dir).is_file()
    assert not (stack.run_dir / "logs").exists()  # the launcher started no actors for a run that was over


@pytest.mark.e2e
def test_sigterm_while_an_actor_starts_is_a_clean_stop(stack):
    # An actor container's process is PID 1 too: its handler must come before ONNX Runtime is loaded. No learner
    # listens, so after its imports the actor waits for a Welcome; the stop must end that wait with exit code 0.
    actor = stack.actor("early")
    _handler_comes_before(stack, actor, "onnxruntime")

    actor.popen.send_signal(signal.SIGTERM)
    assert stack.wait_exit(actor, timeout=120) == 0, stack.report()
    log = actor.log.read_text()
    assert "SIGTERM: stopped after the current step" in log and "Traceback" not in log, log
