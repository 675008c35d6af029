"""A small model of each family learns a short T-Maze (and AGaLiTe a continuous-action memory task) through the
whole stack (`python -m learner.launch`): learner, actor processes, segments over ZeroMQ, weights-only policy
updates, ONNX Runtime acting."""

from __future__ import annotations

import pytest

from actor.play import play
from learner.config import load_preset
from policy.runtime import StepFunction

SUCCESS = 0.9


@pytest.mark.e2e
@pytest.mark.parametrize("preset", ["test-tmaze-agalite", "test-tmaze-gtrxl", "test-tmaze-lstm"])
def test_small_model_learns_short_tmaze(stack, preset: str):
    # the step budget, model sizes and PPO settings are the preset's (configs/<preset>.toml)
    launcher = stack.learner("--num-actors", "2", preset=preset, module="learner.launch", name="launcher")
    rc = stack.wait_exit(launcher, timeout=240)
    assert rc == 0, stack.report()
    summary = stack.read_summary()
    assert summary is not None, stack.report()
    assert summary["interrupted"] is False
    assert summary["env_steps"] >= load_preset(preset).total_steps
    assert summary["episodes"] >= 100
    assert summary["success_rate"] >= SUCCESS, f"{preset}: {summary}\n{stack.report()}"
    assert (stack.run_dir / "policy.onnx").is_file()


@pytest.mark.e2e
def test_small_agalite_learns_cue_recall_with_continuous_actions(stack):
    """Gaussian policy end to end: float actions on the wire, densities in PPO. An agent without memory stays at
    success <= 0.5 (right only for one of the two cues), so passing 0.9 needs the cue remembered. Judged as well by
    greedy play of the exported policy (the deployed behaviour), which the training window's sampled actions and
    its 100-episode noise do not show."""
    preset = "test-cuerecall-agalite"
    launcher = stack.learner("--num-actors", "2", preset=preset, module="learner.launch", name="launcher")
    rc = stack.wait_exit(launcher, timeout=240)
    assert rc == 0, stack.report()
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is False, stack.report()
    assert summary["env_steps"] >= load_preset(preset).total_steps
    assert summary["episodes"] >= 100
    assert summary["success_rate"] >= SUCCESS, f"{preset}: {summary}\n{stack.report()}"
    step_function = StepFunction.from_file(stack.run_dir / "policy.onnx")
    played = play(step_function, summary["env_id"], 100, env_kwargs=summary["env_kwargs"], greedy=True)
    greedy = sum(float(r.success or 0.0) for r in played) / len(played)
    assert greedy >= SUCCESS, f"greedy play of the exported policy: success {greedy}\n{summary}"
