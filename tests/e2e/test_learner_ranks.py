"""Two learner ranks (torchrun, gloo) behind the local stack: they learn the short T-Maze through real actors, every
batch trained on both; a rank killed mid-run stops the job with a checkpoint that a plain learner resumes; a run
directory that rank 0 refuses ends every rank in one line."""

from __future__ import annotations

import os
import re
import signal

import pytest

from envs import env_spaces
from learner.checkpoint import checkpoint_path, save_checkpoint
from learner.config import load_preset
from learner.trainer import Trainer

PRESET = "test-tmaze-agalite"


def _launcher_log(stack) -> str:
    return next(p for p in stack.procs if p.name == "launcher").log.read_text(errors="replace")


@pytest.mark.e2e
def test_two_learner_ranks_learn_the_short_tmaze(stack):
    launcher = stack.learner(
        "--num-actors", "2", "--learner-ranks", "2", preset=PRESET, module="learner.launch", name="launcher"
    )
    rc = stack.wait_exit(launcher, timeout=300)
    assert rc == 0, stack.report()
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is False, stack.report()
    assert summary["env_steps"] >= load_preset(PRESET).total_steps
    assert summary["success_rate"] >= 0.9, f"{summary}\n{stack.report()}"
    # rank 1 trained on every batch rank 0 did: one update each, in step
    found = re.search(r"rank 1: training over after (\d+) updates", _launcher_log(stack))
    assert found is not None, stack.report()
    assert int(found.group(1)) == summary["updates"]


@pytest.mark.e2e
def test_a_killed_learner_rank_stops_the_job_with_a_checkpoint_that_resumes(stack):
    launcher = stack.learner(
        "--num-actors", "1", "--learner-ranks", "2", "--total-steps", "100000000", "--checkpoint-interval-s", "1",
        preset=PRESET, module="learner.launch", name="launcher",
    )  # fmt: skip

    def follower_pid() -> int | None:
        found = re.search(r"rank 1 \(pid (\d+)\) follows rank 0", _launcher_log(stack))
        return int(found.group(1)) if found else None

    pid = stack.wait_for(follower_pid, "rank 1 to start", timeout=120, alive=[launcher])
    stack.wait_status(lambda s: s["updates"] >= 5, "a few updates on two ranks", timeout=180, alive=[launcher])
    os.kill(pid, signal.SIGKILL)  # what the OOM killer or a crash does to one rank
    rc = stack.wait_exit(launcher, timeout=180)
    assert rc != 0, stack.report()  # torchrun reports the failed rank
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is True, stack.report()
    assert checkpoint_path(stack.run_dir).is_file()

    # One rank again (the checkpoint does not depend on the number of ranks): it resumes where rank 0 stopped.
    resumed = stack.learner(
        "--num-actors", "1", "--total-steps", str(summary["env_steps"] + 1000),
        preset=PRESET, module="learner.launch", name="resumed",
    )  # fmt: skip
    assert stack.wait_exit(resumed, timeout=180) == 0, stack.report()
    log = next(p for p in stack.procs if p.name == "resumed").log.read_text(errors="replace")
    found = re.search(r"resumed \S+ at policy version (\d+), (\d+) env steps", log)
    assert found is not None, stack.report()
    assert (int(found.group(1)), int(found.group(2))) == (summary["policy_version"], summary["env_steps"])


@pytest.mark.e2e
def test_a_run_directory_of_another_model_ends_every_rank_in_one_line(stack):
    """Rank 0 refuses the run directory (a user's mistake); rank 1, waiting for rank 0's weights, ends quietly, and
    the launcher says which rank failed in one line: no rank's traceback, no torchrun traceback."""
    other = load_preset("test-tmaze-lstm")
    obs_space, act_space = env_spaces(other.env.id, **other.env.kwargs_dict())
    save_checkpoint(stack.run_dir, Trainer(other, obs_space, act_space).state_dict(elapsed_s=0.0))
    launcher = stack.learner(
        "--num-actors", "1", "--learner-ranks", "2", preset=PRESET, module="learner.launch", name="launcher"
    )
    assert stack.wait_exit(launcher, timeout=180) == 1, stack.report()
    log = _launcher_log(stack)
    assert "holds a checkpoint of another model" in log, log
    # whichever rank torchrun saw end first (both end with 1)
    assert re.search(r"error: learner rank [01] exited with code 1 \(its reason is above\)", log), log
    assert "Traceback" not in log and "ChildFailedError" not in log, log
