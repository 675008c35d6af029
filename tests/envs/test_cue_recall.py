"""The cue-recall task (envs/cue_recall.py): rules, the memoryless bound, bad actions."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs


def test_passes_gymnasium_checker_and_is_registered() -> None:
    env = envs.make_env(envs.CUE_RECALL_ID, delay=3, num_distractors=1)
    check_env(env.unwrapped)
    assert env.action_space.shape == (1,) and env.observation_space.shape == (3,)


@pytest.mark.parametrize("delay", [1, 5])
def test_only_the_last_action_counts_and_the_cue_is_shown_once(delay: int) -> None:
    env = envs.make_env(envs.CUE_RECALL_ID, delay=delay, num_distractors=2)
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        cue = obs[0]
        assert cue in (-1.0, 1.0) and obs[1] == 0.0 and not obs[2:].any()
        for t in range(1, delay + 1):
            obs, reward, terminated, truncated, _ = env.step(np.array([-cue], dtype=np.float32))  # wrong, ignored
            assert (reward, terminated, truncated) == (0.0, False, False)
            assert obs[0] == 0.0 and obs[1] == pytest.approx(t / delay)
        _, reward, terminated, _, info = env.step(np.array([cue * 0.8], dtype=np.float32))
        assert terminated and reward == pytest.approx(-0.04) and info["success"] is True
    assert envs.memory_horizon_of(env) == 1 + delay  # the cue's observation, then delay more to the answer


def test_an_answer_ignoring_the_cue_averages_at_most_minus_one() -> None:
    env = envs.make_env(envs.CUE_RECALL_ID, delay=2)
    returns, successes = [], []
    for seed in range(400):
        env.reset(seed=seed)
        for _ in range(2):
            env.step(np.zeros(1, dtype=np.float32))
        _, reward, _, _, info = env.step(np.array([0.6], dtype=np.float32))
        returns.append(float(reward))
        successes.append(info["success"])
    assert set(np.round(returns, 6)) == {-0.16, -2.56}  # -(0.6 - c)^2 for c = +1 and c = -1
    assert np.mean(returns) == pytest.approx(-1.36, abs=0.15)  # -(1 + 0.6^2) in expectation
    assert 0.35 < np.mean(successes) < 0.65  # right only when the cue happens to be +1


def test_bad_arguments_and_actions_raise() -> None:
    with pytest.raises(ValueError, match="delay"):
        envs.make_env(envs.CUE_RECALL_ID, delay=0)
    env = envs.make_env(envs.CUE_RECALL_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one finite number"):
        env.step(np.array([np.nan], dtype=np.float32))
