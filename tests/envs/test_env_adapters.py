"""Optional adapters: a clear error without their packages, and real behaviour where memory-gym is installed."""

from __future__ import annotations

import importlib
import importlib.util
from collections import deque

import numpy as np
import pytest
from gymnasium import spaces

import envs

HAS_MEMORY_GYM = importlib.util.find_spec("memory_gym") is not None
HAS_MEMORY_MAZE = importlib.util.find_spec("memory_maze") is not None


@pytest.mark.skipif(HAS_MEMORY_GYM, reason="memory-gym is installed")
def test_mystery_path_without_memory_gym_names_the_fix() -> None:
    with pytest.raises(ImportError, match="make extras"):
        importlib.import_module("envs.mystery_path")
    with pytest.raises(ImportError, match="memory-gym"):
        envs.make_env("agalite/MysteryPath-Grid-Easy-v0")


@pytest.mark.skipif(HAS_MEMORY_MAZE, reason="memory-maze is installed")
def test_memory_maze_without_package_names_the_fix() -> None:
    with pytest.raises(ImportError, match="memory-maze"):
        importlib.import_module("envs.memory_maze")
    with pytest.raises(ImportError, match="memory-maze"):
        envs.env_spaces("agalite/MemoryMaze-9x9-v0")


# ---------------------------------------------------------------------------------------------------------------
# Mystery Path, only where the extra is installed.

NORTH, WEST, SOUTH, EAST = range(4)  # memory-gym's CardinalDirection = rotation // 90
_STEP = {NORTH: (0, -1), WEST: (-1, 0), SOUTH: (0, 1), EAST: (1, 0)}


def _oracle_grid_action(inner) -> int:
    """Next action that follows the hidden path to the goal (reads memory-gym's state: a test oracle)."""
    tiles = {(node.x, node.y) for node in inner.mystery_path.path}
    start = tuple(int(v) for v in inner.agent.grid_position)
    goal = tuple(int(v) for v in inner.end)
    parents: dict[tuple[int, ...], tuple[int, ...] | None] = {start: None}
    queue = deque([start])
    while queue:
        tile = queue.popleft()
        if tile == goal:
            break
        for dx, dy in _STEP.values():
            nxt = (tile[0] + dx, tile[1] + dy)
            if nxt in tiles and nxt not in parents:
                parents[nxt] = tile
                queue.append(nxt)
    tile = goal
    while (parent := parents[tile]) != start:
        assert parent is not None
        tile = parent
    wanted = next(d for d, (dx, dy) in _STEP.items() if (start[0] + dx, start[1] + dy) == tile)
    facing = inner.agent.rotation // 90
    if facing == wanted:
        return 3  # forward
    return 1 if (facing + 1) % 4 == wanted else 2  # rotate left / right


@pytest.fixture(scope="module")
def grid_env():
    pytest.importorskip("memory_gym")
    env = envs.make_env("agalite/MysteryPath-Grid-Easy-v0")
    yield env
    env.close()


def test_mystery_path_grid_spaces_and_check_env(grid_env) -> None:
    from gymnasium.utils.env_checker import check_env

    assert grid_env.observation_space.shape == (84, 84, 3)
    assert grid_env.observation_space.dtype == np.uint8
    assert grid_env.action_space.n == 4
    check_env(grid_env.unwrapped, skip_render_check=True)
    # check_env closes the env it was given; the display other envs draw on must survive that.
    grid_env.reset(seed=0)
    grid_env.step(0)


def test_mystery_path_grid_path_follower_succeeds(grid_env) -> None:
    for seed in range(3):
        obs, _ = grid_env.reset(seed=seed)
        assert obs.shape == (84, 84, 3) and obs.dtype == np.uint8
        inner = grid_env.unwrapped._env
        total, steps = 0.0, 0
        while True:
            obs, reward, terminated, truncated, info = grid_env.step(_oracle_grid_action(inner))
            total += reward
            steps += 1
            if terminated or truncated:
                break
        assert terminated and not truncated
        assert info["success"] == 1.0
        # +1 at the goal and +0.1 per newly reached path tile (the Easy setting's progress reward).
        path_tiles = len(inner.mystery_path.path) - 2  # start and goal give no progress reward
        assert total == pytest.approx(1.0 + 0.1 * path_tiles)


def test_mystery_path_grid_timeout_is_truncation(grid_env) -> None:
    grid_env.reset(seed=5)
    for step in range(1, 129):
        _, _, terminated, truncated, info = grid_env.step(1)  # keep rotating: never reaches the goal
        assert not terminated
        assert truncated == (step == 128)
        assert info["success"] == 0.0


def test_mystery_path_seeding_is_reproducible(grid_env) -> None:
    actions = np.random.default_rng(1).integers(0, 4, size=60)

    def trace(seed: int) -> list[bytes]:
        obs, _ = grid_env.reset(seed=seed)
        out = [obs.tobytes()]
        for action in actions:
            obs, reward, terminated, truncated, _ = grid_env.step(int(action))
            out.append(obs.tobytes() + np.float64(reward).tobytes())
            if terminated or truncated:
                out.append(grid_env.reset()[0].tobytes())
        return out

    assert trace(11) == trace(11)
    first_observations = {grid_env.reset(seed=seed)[0].tobytes() for seed in range(10)}
    assert len(first_observations) > 5  # different seeds, different paths


def test_mystery_path_continuous_flattens_actions() -> None:
    pytest.importorskip("memory_gym")
    env = envs.make_env("agalite/MysteryPath-Easy-v0")
    try:
        from envs.mystery_path import MysteryPathEasyEnv  # needs memory-gym: imported after the skip check

        assert env.action_space == spaces.Discrete(9)
        env.reset(seed=0)
        assert isinstance(env.unwrapped, MysteryPathEasyEnv)
        inner = env.unwrapped._env
        start = inner.agent.rect.center
        env.step(0)  # (0, 0): stands still
        assert inner.agent.rect.center == start
        for action in range(9):
            env.step(action)
        with pytest.raises(ValueError, match="action"):
            env.step(9)
    finally:
        env.close()


def test_mystery_path_rejects_unknown_reset_options() -> None:
    pytest.importorskip("memory_gym")
    with pytest.raises(ValueError, match="show_goal"):
        envs.make_env("agalite/MysteryPath-Grid-Easy-v0", reset_options={"show_gaol": True})
