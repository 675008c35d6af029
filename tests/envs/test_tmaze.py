"""Behaviour of the paper's T-Maze, through the unwrapped class and through the registered id."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.tmaze import CUE_BITS, DOWN, LEFT, POSITION_BITS, RIGHT, UP, TMazeEnv, decode_gray, gray_code_table


def read_cue(first_obs: np.ndarray) -> int:
    """The correct turn, read from the observation (as an agent must), not from info."""
    cue = tuple(first_obs[:CUE_BITS].tolist())
    assert cue in {(0.0, 1.0), (1.0, 0.0)}, f"first observation carries no valid cue: {cue}"
    return UP if cue == (0.0, 1.0) else DOWN


def position_of(obs: np.ndarray) -> int:
    return decode_gray(obs[CUE_BITS : CUE_BITS + POSITION_BITS])


def run_episode(env, seed: int, turn: str = "cue") -> tuple[float, dict, int]:
    """Walk right to the junction, then turn as the cue says (or always up); returns (return, last info, length)."""
    obs, _ = env.reset(seed=seed)
    action_at_junction = read_cue(obs) if turn == "cue" else UP
    total, length = 0.0, 0
    corridor_length = env.unwrapped.corridor_length
    while True:
        at_junction = position_of(obs) == corridor_length - 1
        obs, reward, terminated, truncated, info = env.step(action_at_junction if at_junction else RIGHT)
        total += reward
        length += 1
        if terminated or truncated:
            return total, info, length


def test_check_env_unwrapped_and_registered() -> None:
    check_env(TMazeEnv(corridor_length=7), skip_render_check=True)
    check_env(envs.make_env("agalite/TMaze-v0", corridor_length=7).unwrapped)


def test_spaces_match_the_paper() -> None:
    env = TMazeEnv()
    assert env.corridor_length == 120
    assert env.observation_space.shape == (16,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.n == 4
    spec = envs.make_env("agalite/TMaze-v0").spec
    assert spec is not None and spec.max_episode_steps == 1000


@pytest.mark.parametrize("corridor_length", [2, 5, 20, 120, 256])
def test_optimal_policy_gets_the_optimal_return(corridor_length: int) -> None:
    env = envs.make_env("agalite/TMaze-v0", corridor_length=corridor_length)
    for seed in range(4):
        total, info, length = run_episode(env, seed)
        assert total == pytest.approx(4.0 - 0.1 * (corridor_length - 1), abs=1e-9)
        assert info["success"] == 1.0
        # The turn is decided on the episode's last observation; the cue was its first: the declared horizon.
        assert length == envs.memory_horizon_of(env)
        assert length == corridor_length


def test_wrong_turn_fails_with_minus_one() -> None:
    env = TMazeEnv(corridor_length=3)
    obs, _ = env.reset(seed=0)
    wrong = DOWN if read_cue(obs) == UP else UP
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(RIGHT)
        assert (reward, terminated, truncated, info["success"]) == (-0.1, False, False, 0.0)
    _, reward, terminated, _, info = env.step(wrong)
    assert (reward, terminated, info["success"]) == (-1.0, True, 0.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(RIGHT)


def test_cue_blind_policy_succeeds_about_half_the_time() -> None:
    env = TMazeEnv(corridor_length=4)
    successes = [run_episode(env, seed, turn="up")[1]["success"] for seed in range(400)]
    # Binomial(400, 0.5): mean 200, sd 10; [160, 240] is a 4-sigma band, and the seeds are fixed.
    assert 160 <= sum(successes) <= 240


def test_moves_no_ops_and_junction_rules() -> None:
    env = TMazeEnv(corridor_length=4)
    obs, _ = env.reset(seed=1)
    assert position_of(obs) == 0
    for action, expected in [(LEFT, 0), (UP, 0), (DOWN, 0), (RIGHT, 1), (RIGHT, 2), (LEFT, 1), (RIGHT, 2), (RIGHT, 3)]:
        obs, reward, terminated, _, _ = env.step(action)
        assert position_of(obs) == expected and reward == -0.1 and not terminated
    for action in (LEFT, RIGHT):  # no walking back from (or past) the junction, but it still costs a step
        obs, reward, terminated, _, _ = env.step(action)
        assert position_of(obs) == 3 and reward == -0.1 and not terminated


def test_cue_only_first_and_distractors_zero_then_random() -> None:
    env = TMazeEnv(corridor_length=50)
    obs, info = env.reset(seed=3)
    assert read_cue(obs) == info["cue"]
    assert not obs[CUE_BITS + POSITION_BITS :].any()
    rows = []
    for _ in range(40):
        obs, *_ = env.step(RIGHT)
        assert not obs[:CUE_BITS].any()
        bits = obs[CUE_BITS + POSITION_BITS :]
        assert set(bits.tolist()) <= {0.0, 1.0}
        rows.append(bits)
    distractors = np.array(rows)
    assert 0.3 < distractors.mean() < 0.7
    assert len({row.tobytes() for row in distractors}) > 10


def test_gray_code_decodes_and_neighbours_differ_in_one_bit() -> None:
    table = gray_code_table()
    assert table.shape == (256, 8)
    assert [decode_gray(row) for row in table] == list(range(256))
    assert (np.abs(np.diff(table, axis=0)).sum(axis=1) == 1).all()
    env = TMazeEnv(corridor_length=256)
    obs, _ = env.reset(seed=0)
    for position in range(1, 256):
        obs, *_ = env.step(RIGHT)
        assert position_of(obs) == position == env.position


def test_time_limit_truncates_at_1000_without_success() -> None:
    env = envs.make_env("agalite/TMaze-v0", corridor_length=10)
    env.reset(seed=0)
    for step in range(1, 1001):
        _, reward, terminated, truncated, info = env.step(LEFT)
        assert not terminated and reward == -0.1
        assert truncated == (step == 1000)
    assert info["success"] == 0.0


def test_same_seed_same_episode() -> None:
    actions = np.random.default_rng(0).integers(0, 4, size=300)
    runs = []
    for _ in range(2):
        env = TMazeEnv(corridor_length=30)
        obs, _ = env.reset(seed=123)
        trace = [obs]
        rewards = []
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(int(action))
            trace.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(obs)
        runs.append((np.array(trace), rewards))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_different_seeds_give_both_cues() -> None:
    env = TMazeEnv(corridor_length=5)
    cues = [read_cue(env.reset(seed=seed)[0]) for seed in range(100)]
    assert 20 < sum(c == UP for c in cues) < 80
    # Unseeded resets after one seed keep drawing new cues too.
    env.reset(seed=7)
    assert len({read_cue(env.reset()[0]) for _ in range(50)}) == 2


def test_returned_observations_are_not_shared_buffers() -> None:
    env = TMazeEnv(corridor_length=5)
    first, _ = env.reset(seed=0)
    kept = first.copy()
    second, *_ = env.step(RIGHT)
    np.testing.assert_array_equal(first, kept)
    assert second is not first


@pytest.mark.parametrize("bad", [1, 0, -3, 257, 1000, 2.5, "10", True])
def test_bad_corridor_length_is_a_value_error(bad) -> None:
    with pytest.raises(ValueError, match="corridor_length"):
        TMazeEnv(corridor_length=bad)


def test_bad_distractors_and_actions_are_value_errors() -> None:
    with pytest.raises(ValueError, match="num_distractors"):
        TMazeEnv(num_distractors=-1)
    env = TMazeEnv(corridor_length=5, num_distractors=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10,)
    with pytest.raises(ValueError, match="action"):
        env.step(4)


def test_ansi_render_shows_position() -> None:
    env = TMazeEnv(corridor_length=4, render_mode="ansi")
    env.reset(seed=0)
    env.step(RIGHT)
    text = env.render()
    assert text is not None and "pos=1" in text
