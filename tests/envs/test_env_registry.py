"""make_env / env_spaces resolve our ids, gymnasium ids and the module:EnvId form, and reject unknown ids."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import envs
from envs import UnknownEnvironmentError, env_spaces, make_env
from envs.tmaze import TMazeEnv


def test_make_env_with_kwargs() -> None:
    env = make_env("agalite/TMaze-v0", corridor_length=10)
    assert isinstance(env.unwrapped, TMazeEnv) and env.unwrapped.corridor_length == 10
    assert env.spec is not None and env.spec.max_episode_steps == 1000
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16,)


def test_module_form_and_plain_gymnasium_ids() -> None:
    env = make_env("envs:agalite/TMaze-v0", corridor_length=10)
    assert isinstance(env.unwrapped, TMazeEnv) and env.unwrapped.corridor_length == 10
    cartpole = make_env("gymnasium.envs.classic_control:CartPole-v1")
    assert cartpole.action_space == gymnasium.spaces.Discrete(2)
    spec = make_env("CartPole-v1").spec
    assert spec is not None and spec.id == "CartPole-v1"


def test_env_spaces() -> None:
    obs_space, act_space = env_spaces("agalite/TMaze-v0", num_distractors=2)
    assert obs_space == gymnasium.spaces.Box(0.0, 1.0, (12,), np.float32)
    assert act_space == gymnasium.spaces.Discrete(4)


@pytest.mark.parametrize(
    "bad", ["NoSuchEnv-v0", "agalite/NoSuchEnv-v0", "agalite/TMaze-v9", "no_such_module_xyz:Foo-v0", "envs:Foo-v0", ""]
)
def test_unknown_ids_give_a_clear_error(bad: str) -> None:
    with pytest.raises(UnknownEnvironmentError, match="agalite/TMaze-v0"):
        make_env(bad)


def test_bad_kwargs_are_not_reported_as_unknown_ids() -> None:
    with pytest.raises(ValueError, match="corridor_length") as info:
        make_env("agalite/TMaze-v0", corridor_length=1)
    assert not isinstance(info.value, UnknownEnvironmentError)


def test_all_own_ids_are_registered() -> None:
    for env_id in envs.OWN_ENV_IDS:
        assert env_id in gymnasium.registry
    assert set(envs.MEMORY_MAZE_IDS) == {f"agalite/MemoryMaze-{s}-v0" for s in ("9x9", "11x11", "13x13", "15x15")}


def test_import_envs_is_torch_free_and_cheap() -> None:
    code = (
        "import sys, envs\n"
        "mods = ('torch', 'memory_gym', 'pygame', 'memory_maze', 'dm_control', 'mujoco')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "envs.make_env('agalite/TMaze-v0').reset(seed=0)\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
