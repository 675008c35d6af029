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


# Cue recall with a Gaussian policy is judged against what no memoryless policy can do. Its action cannot depend on
# the cue, so it is right for at most one of the two cues: success <= 0.5, sampled or greedy. 0.6 over 400 greedy
# episodes is 4 binomial standard deviations above that, and the training window's 0.6 over its last 100 episodes
# 2; together they say the memory was learned, which is what this test is for.
CUE_SUCCESS = 0.6
CUE_GREEDY_EPISODES = 400


@pytest.mark.e2e
def test_small_agalite_learns_cue_recall_with_continuous_actions(stack):
    """Gaussian policy end to end: float actions on the wire, densities in PPO, and a memory learned through them,
    judged on the training window (sampled actions) and by greedy play of the exported policy (the deployed one).

    Why not 0.9: this tiny model usually ends at 0.93-1.0 greedy, but not always. At lr 3e-3 (the preset's earlier
    rate), in 1 of 6 seeds one large update (KL 0.09) after the task was solved cost part of the memory for good: the
    run stayed near 0.8 sampled and ended at 0.735 greedy; a CI run ended at 0.79 sampled. At lr 1e-3 (the preset's
    now) 6 of 6 seeds ended at 0.935-1.0 greedy, but the sampled window still dipped to 0.61-0.89 after first
    reaching 0.9 (bench/results/solved_stability_test_cuerecall*.md). How well the stack learns is for the
    benchmarks (docs/learning.md); this test holds what it must do every time: learn the memory through
    continuous actions. A CI run on another machine ended at 0.78 sampled and 0.69 greedy: well above what no memory
    can do, but below the 0.7 this test once asked for, so the bar is now set by that bound (see CUE_SUCCESS)."""
    preset = "test-cuerecall-agalite"
    launcher = stack.learner("--num-actors", "2", preset=preset, module="learner.launch", name="launcher")
    rc = stack.wait_exit(launcher, timeout=240)
    assert rc == 0, stack.report()
    summary = stack.read_summary()
    assert summary is not None and summary["interrupted"] is False, stack.report()
    assert summary["env_steps"] >= load_preset(preset).total_steps
    assert summary["episodes"] >= 100
    assert summary["success_rate"] >= CUE_SUCCESS, f"{preset}: {summary}\n{stack.report()}"
    step_function = StepFunction.from_file(stack.run_dir / "policy.onnx")
    played = play(step_function, summary["env_id"], CUE_GREEDY_EPISODES, env_kwargs=summary["env_kwargs"], greedy=True)
    greedy = sum(float(r.success or 0.0) for r in played) / len(played)
    assert greedy >= CUE_SUCCESS, f"greedy play of the exported policy: success {greedy}\n{summary}"
