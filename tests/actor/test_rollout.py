"""The actor's segment collector with real T-Maze envs and a real exported policy in ONNX Runtime."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from actor.rollout import SegmentCollector
from export import export_step_function
from models.registry import build_actor_critic, small_config
from policy.runtime import Policy, StepFunction
from policy.sampling import log_softmax
from protocol import SegmentSpec, validate_segment

T, B = 16, 3


class FinalObsRecorder(gym.Wrapper):
    """Keeps the observation each step returned, so the test knows every episode's final observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.returned: list[np.ndarray] = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.returned.append(obs.copy())
        return obs, reward, terminated, truncated, info


@pytest.fixture(scope="module")
def step_fn() -> StepFunction:
    obs_space, act_space = envs.env_spaces(envs.TMAZE_ID, corridor_length=4)
    torch.manual_seed(0)
    ac = build_actor_critic(small_config("agalite"), obs_space, act_space)
    exported = export_step_function(ac, observation_space=obs_space, action_space=act_space)
    return StepFunction.from_bytes(exported.onnx_bytes)


def spec_for(fn: StepFunction) -> SegmentSpec:
    meta = fn.metadata
    return SegmentSpec(
        obs_shape=(16,),
        obs_dtype="float32",
        num_actions=4,
        segment_length=T,
        state={s.name: (tuple(s.shape), s.dtype) for s in meta.state},
        max_envs=B,
    )


def collect(collector: SegmentCollector, policy: Policy, seq: int):
    return collector.collect(policy, actor_id="test", run_id="run", seq=seq, policy_version=7)


def test_segments_are_valid_and_overlap_by_one_observation(step_fn: StepFunction) -> None:
    collector = SegmentCollector([envs.make_env(envs.TMAZE_ID, corridor_length=4) for _ in range(B)], T, seed=3)
    policy = Policy(step_fn, B)
    first = collect(collector, policy, 0)
    state_between = policy.state
    second = collect(collector, policy, 1)
    for seg in (first, second):
        validate_segment(seg, spec_for(step_fn))  # shapes, dtypes, finite values, resets consistent with ends
        assert seg.policy_version == 7 and seg.actor_id == "test"
    assert first.reset[0].all()  # the very first observation of every env starts an episode
    np.testing.assert_array_equal(second.obs[0], first.obs[T])
    np.testing.assert_array_equal(second.reset[0], first.reset[T])
    for name, value in state_between.items():  # the next segment starts from the state after obs[T-1]
        np.testing.assert_array_equal(second.initial_state[name], value)
    assert (first.seq, second.seq) == (0, 1)


def test_replaying_a_segment_from_its_initial_state_reproduces_its_log_probabilities(step_fn: StepFunction) -> None:
    collector = SegmentCollector([envs.make_env(envs.TMAZE_ID, corridor_length=4) for _ in range(B)], T, seed=5)
    policy = Policy(step_fn, B)
    collect(collector, policy, 0)
    seg = collect(collector, policy, 1)
    replay = Policy(step_fn, B)
    replay.set_state(seg.initial_state)
    for t in range(T):
        logits, _ = replay.step(seg.obs[t], seg.reset[t])
        logp = np.take_along_axis(log_softmax(logits), seg.actions[t][:, None], axis=1)[:, 0]
        np.testing.assert_allclose(logp, seg.logp[t], atol=1e-5)


def test_truncation_bootstraps_from_the_final_observation(step_fn: StepFunction) -> None:
    # A long corridor and a 5-step time limit: every episode is cut off by the limit, never terminated.
    wrapped = [FinalObsRecorder(gym.make(envs.TMAZE_ID, corridor_length=50, max_episode_steps=5)) for _ in range(B)]
    collector = SegmentCollector(wrapped, T, seed=11)
    policy = Policy(step_fn, B)
    seg = collect(collector, policy, 0)
    validate_segment(seg, spec_for(step_fn))
    assert not seg.terminated.any()
    expected = np.zeros((T, B), dtype=bool)
    expected[4::5] = True
    np.testing.assert_array_equal(seg.truncated, expected)
    np.testing.assert_array_equal(seg.bootstrap_values[~expected], 0.0)
    # Recompute V(final observation) by replaying the segment with the recorded final observations.
    replay = Policy(step_fn, B)
    replay.set_state(seg.initial_state)
    for t in range(T):
        replay.step(seg.obs[t], seg.reset[t])
        for b in np.flatnonzero(seg.truncated[t]):
            final = seg.obs[t + 1].copy()
            final[b] = wrapped[b].returned[t]
            value = replay.value_of(final, np.zeros(B, dtype=bool))[b]
            assert seg.bootstrap_values[t, b] == pytest.approx(float(value), abs=1e-6)
            assert not np.array_equal(final[b], seg.obs[t + 1, b])  # the next obs is the new episode's first
    lengths = {ep["length"] for ep in seg.episodes}
    assert lengths == {5} and all(ep["success"] is False for ep in seg.episodes)
    assert len(seg.episodes) == int(expected.sum())


def test_episode_returns_sum_the_rewards_of_their_episode(step_fn: StepFunction) -> None:
    collector = SegmentCollector([envs.make_env(envs.TMAZE_ID, corridor_length=2) for _ in range(B)], T, seed=2)
    policy = Policy(step_fn, B)
    segments = [collect(collector, policy, i) for i in range(4)]
    rewards = np.concatenate([s.rewards for s in segments])
    done = np.concatenate([s.terminated | s.truncated for s in segments])
    found = {(ep["env"], round(ep["return"], 5)) for s in segments for ep in s.episodes}
    for b in range(B):
        start = 0
        for t in np.flatnonzero(done[:, b]):
            assert (b, round(float(rewards[start : t + 1, b].sum()), 5)) in found
            start = int(t) + 1
    assert found, "no episode finished in 64 steps of a 2-long corridor"


def test_continuous_actions_are_stored_unclipped_and_stepped_clipped() -> None:
    """Cue recall (Box(-1, 1) actions): segments carry float32 [T, B, 1] actions with the sampled values (the
    learner needs their density), while the envs receive them clipped to the bounds."""
    obs_space, act_space = envs.env_spaces(envs.CUE_RECALL_ID, delay=3)
    torch.manual_seed(0)
    ac = build_actor_critic(small_config("lstm"), obs_space, act_space)
    assert ac.log_std is not None
    with torch.no_grad():
        ac.log_std.fill_(1.0)  # std e: many samples fall outside [-1, 1]
    exported = export_step_function(ac, observation_space=obs_space, action_space=act_space)
    fn = StepFunction.from_bytes(exported.onnx_bytes)

    class Recorder(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            self.actions = []

        def step(self, action):
            self.actions.append(np.array(action, copy=True))
            return self.env.step(action)

    wrapped = [Recorder(envs.make_env(envs.CUE_RECALL_ID, delay=3)) for _ in range(B)]
    collector = SegmentCollector(wrapped, T, seed=5)
    seg = collect(collector, Policy(fn, B), 0)
    assert obs_space.shape is not None
    spec = SegmentSpec(
        obs_shape=obs_space.shape,
        obs_dtype="float32",
        num_actions=None,
        segment_length=T,
        state={s.name: (tuple(s.shape), s.dtype) for s in fn.metadata.state},
        max_envs=B,
        action_shape=(1,),
        action_dtype="float32",
    )
    validate_segment(seg, spec)
    assert seg.actions.shape == (T, B, 1) and seg.actions.dtype == np.float32
    assert np.abs(seg.actions).max() > 1.0  # stored as sampled
    for i, env in enumerate(wrapped):
        stepped = np.stack(env.actions)
        assert np.abs(stepped).max() <= 1.0
        assert np.allclose(stepped, np.clip(seg.actions[:, i], -1.0, 1.0))
    assert sum(1 for e in seg.episodes if e["success"] is not None) >= B  # episodes of 4 steps ended
