"""MiniGrid Memory adapter (envs/minigrid.py): gymnasium's checker, the one-hot view, success at the right object."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.ids import MINIGRID_MEMORY_IDS
from envs.minigrid import OBS_SIZE, MiniGridMemoryEnv, one_hot_view

pytest.importorskip("minigrid", reason="the minigrid extra is not installed (make extras)")


@pytest.mark.parametrize("env_id", MINIGRID_MEMORY_IDS)
def test_ids_pass_gymnasium_checker(env_id: str) -> None:
    env = envs.make_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (OBS_SIZE,) == env.observation_space.shape and obs.dtype == np.float32
    # one object, one colour and one state per cell of the 7x7 view, plus the direction
    assert obs.sum() == 7 * 7 * 3 + 1 and set(np.unique(obs)) == {0.0, 1.0}


def test_one_hot_view_is_lossless() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.integers(0, 11, (7, 7)), rng.integers(0, 6, (7, 7)), rng.integers(0, 3, (7, 7))], axis=-1)
    vec = one_hot_view(image.astype(np.uint8), 2)
    cells = vec[: 7 * 7 * 20].reshape(7, 7, 20)
    assert (cells[..., :11].argmax(-1) == image[..., 0]).all()
    assert (cells[..., 11:17].argmax(-1) == image[..., 1]).all()
    assert (cells[..., 17:].argmax(-1) == image[..., 2]).all()
    assert vec[7 * 7 * 20 :].tolist() == [0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(("which", "success"), [("success_pos", 1.0), ("failure_pos", 0.0)])
def test_the_matching_object_succeeds_and_the_other_ends_the_episode(which: str, success: float) -> None:
    env = envs.make_env(MINIGRID_MEMORY_IDS[0])
    env.reset(seed=3)
    _, reward, terminated, truncated, info = env.step(0)
    assert (terminated, truncated, info["success"]) == (False, False, 0.0)
    assert isinstance(env.unwrapped, MiniGridMemoryEnv)
    inner = env.unwrapped._env  # put the agent next to an object (walking there is the policy's job)
    inner.agent_pos = np.array(getattr(inner, which))
    _, reward, terminated, _, info = env.step(0)  # turn left in place: the position decides
    assert terminated and info["success"] == success and (float(reward) > 0) == bool(success)


def test_bad_size_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="odd number"):
        envs.make_env(MINIGRID_MEMORY_IDS[0], size=8)
