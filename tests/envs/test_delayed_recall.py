"""The delayed-recall task (envs/delayed_recall.py): layout, the memoryless bound, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import envs


def test_passes_gymnasium_checker_and_is_registered() -> None:
    env = envs.make_env(envs.DELAYED_RECALL_ID, num_symbols=3, delay=2, num_noise=2)
    check_env(env.unwrapped)
    assert env.observation_space.shape == (3 + 2 + 2,) and env.action_space == spaces.Discrete(3)


@pytest.mark.parametrize("delay", [0, 1, 5])
def test_cue_then_noise_then_query_and_only_the_answer_counts(delay: int) -> None:
    k = 4
    env = envs.make_env(envs.DELAYED_RECALL_ID, num_symbols=k, delay=delay, num_noise=3)
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        assert obs[k] == 1.0 and obs[k + 1] == 0.0 and obs[:k].sum() == 1.0 and not obs[k + 2 :].any()
        symbol = int(np.argmax(obs[:k]))
        for _ in range(delay):
            obs, reward, terminated, truncated, _ = env.step((symbol + 1) % k)  # ignored before the query
            assert (reward, terminated, truncated) == (0.0, False, False)
            assert not obs[: k + 2].any() and np.abs(obs[k + 2 :]).max() <= 1.0
        obs, reward, terminated, _, _ = env.step(0)
        assert obs[k + 1] == 1.0 and not obs[:k].any() and reward == 0.0 and not terminated
        _, reward, terminated, _, info = env.step(symbol)
        assert terminated and reward == 1.0 and info["success"] is True
    # Cue, delay noise steps, query: the observations a memory must span, as the env declares.
    assert envs.memory_horizon_of(env) == 1 + delay + 1


def test_a_memoryless_answer_scores_chance() -> None:
    env = envs.make_env(envs.DELAYED_RECALL_ID, num_symbols=4, delay=1)
    wins = []
    for seed in range(800):
        env.reset(seed=seed)
        env.step(0)
        env.step(0)
        wins.append(float(env.step(2)[1]))
    assert 0.18 < np.mean(wins) < 0.32  # 1/K = 0.25; 800 draws: sd 0.015


def test_bad_arguments_and_actions_raise() -> None:
    with pytest.raises(ValueError, match="num_symbols"):
        envs.make_env(envs.DELAYED_RECALL_ID, num_symbols=1)
    with pytest.raises(ValueError, match="delay"):
        envs.make_env(envs.DELAYED_RECALL_ID, delay=-1)
    env = envs.make_env(envs.DELAYED_RECALL_ID, num_symbols=4).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)
