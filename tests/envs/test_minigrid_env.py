"""MiniGrid Memory adapter (envs/minigrid.py): gymnasium's checker, the one-hot view, the pixel view (MiniGrid's own
rendering of the agent's view), success at the right object."""

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


@pytest.mark.parametrize("env_id", MINIGRID_MEMORY_IDS)
def test_pixel_view_passes_the_checker_and_is_minigrids_own_rendering(env_id: str) -> None:
    from minigrid.envs.memory import MemoryEnv
    from minigrid.wrappers import RGBImgPartialObsWrapper

    env = envs.make_env(env_id, view="pixels", tile_size=6)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space.shape == (42, 42, 3) and env.observation_space.dtype == np.uint8
    size = env.unwrapped.size  # type: ignore[attr-defined]
    oracle = RGBImgPartialObsWrapper(MemoryEnv(size=size), tile_size=6)
    obs, _ = env.reset(seed=5)
    expected, _ = oracle.reset(seed=5)
    assert obs.dtype == np.uint8 and np.array_equal(obs, expected["image"])
    seen = {obs.tobytes()}
    for action in [2, 2, 1, 2, 0, 2, 2, 2]:  # walk, turn, walk: the view changes and stays MiniGrid's
        obs, *_ = env.step(action)
        expected, *_ = oracle.step(action)
        assert np.array_equal(obs, expected["image"])
        seen.add(obs.tobytes())
    assert len(seen) > 3


def test_the_cue_object_shows_in_the_pixel_view() -> None:
    # the same start with the cue swapped (key for ball, or ball for key) must look different once the agent turns to
    # it (it starts facing the corridor, the cue behind it), or no memory could be learned from pixels
    from minigrid.core.world_object import Ball, Key

    for seed in range(4):
        frames = []
        for swap in (False, True):
            env = envs.make_env(MINIGRID_MEMORY_IDS[0], view="pixels")
            env.reset(seed=seed)
            inner = env.unwrapped._env  # type: ignore[attr-defined]
            cue_cell = (1, inner.height // 2 - 1)
            if swap:
                other = Ball if isinstance(inner.grid.get(*cue_cell), Key) else Key
                inner.grid.set(*cue_cell, other("green"))
            env.step(0)
            obs, *_ = env.step(0)  # two left turns: facing the start room
            frames.append(obs)
        assert not np.array_equal(frames[0], frames[1]), seed


def test_bad_size_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="odd number"):
        envs.make_env(MINIGRID_MEMORY_IDS[0], size=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"view": "rgb"}, "view must be one of one-hot, pixels"), ({"tile_size": 0}, "tile_size must be a positive")],
)
def test_bad_view_says_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        envs.make_env(MINIGRID_MEMORY_IDS[0], **kwargs)
