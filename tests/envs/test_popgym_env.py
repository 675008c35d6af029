"""POPGym adapters (envs/popgym.py): registered ids pass gymnasium's checker, one-hot observations carry the cards."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.ids import POPGYM_IDS
from envs.popgym import PopGymEnv

pytest.importorskip("popgym", reason="the popgym extra is not installed (make extras)")

SUITE = [
    (task, level)
    for task in ("RepeatFirst", "RepeatPrevious", "CountRecall", "Autoencode")
    for level in ("Easy", "Medium")
]


@pytest.mark.parametrize(("task", "level"), SUITE)
def test_suite_ids_pass_gymnasium_checker(task: str, level: str) -> None:
    env = envs.make_env(POPGYM_IDS[(task, level)])
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert set(np.unique(obs)) <= {0.0, 1.0}


def _play(env_id: str, choose, seed: int) -> tuple[float, int]:
    """Return and length of one episode where ``choose(history of suits)`` picks each action."""
    env = envs.make_env(env_id)
    obs, _ = env.reset(seed=seed)
    history = [int(np.argmax(obs))]
    total, done, steps = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, _ = env.step(choose(history))
        total += float(reward)
        done = terminated or truncated
        history.append(int(np.argmax(obs)))
        steps += 1
    return total, steps


@pytest.mark.parametrize("seed", [0, 1])
def test_remembering_the_cards_scores_one_and_guessing_does_not(seed: int) -> None:
    # The one-hot is the card's suit: replaying it the way each task asks earns POPGym's maximum return of 1.
    first_id, previous_id = POPGYM_IDS[("RepeatFirst", "Easy")], POPGYM_IDS[("RepeatPrevious", "Easy")]
    assert _play(first_id, lambda h: h[0], seed) == (pytest.approx(1.0), 51)
    assert _play(previous_id, lambda h: h[len(h) - 4] if len(h) >= 4 else 0, seed)[0] == pytest.approx(1.0)
    assert _play(previous_id, lambda h: h[-1], seed)[0] < 0.0  # the current card is not the answer
    # The horizons the envs declare are the spans played above: 52 observations, and 4 (the answer's card included).
    assert envs.memory_horizon_of(envs.make_env(first_id)) == 51 + 1
    assert envs.memory_horizon_of(envs.make_env(previous_id)) == 4


def test_popgym_arguments_are_the_horizon_knob() -> None:
    env = envs.make_env(POPGYM_IDS[("RepeatPrevious", "Easy")], k=8, num_decks=2)
    assert isinstance(env.unwrapped, PopGymEnv)
    assert env.unwrapped.level is None and env.unwrapped.max_episode_length == 103
    assert env.unwrapped.memory_horizon == 8
    assert _play(POPGYM_IDS[("RepeatPrevious", "Easy")], lambda h: 0, 0)[1] == 51
    total = 0.0
    obs, _ = env.reset(seed=5)
    history, done = [int(np.argmax(obs))], False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(history[len(history) - 8] if len(history) >= 8 else 0)
        total += float(reward)
        done = terminated or truncated
        history.append(int(np.argmax(obs)))
    assert total == pytest.approx(1.0)


def test_bad_task_or_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown POPGym task"):
        PopGymEnv("RepeatLast")
    with pytest.raises(ValueError, match="unknown POPGym level"):
        PopGymEnv("RepeatFirst", level="Extreme")
    with pytest.raises(ValueError, match="bad keyword arguments"):
        PopGymEnv("RepeatFirst", horizon=3)
