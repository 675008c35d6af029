"""Finite is not enough: value bounds at validation, and a guard in the update for whatever still overflows.

A reward of 1e38 is finite, passed validation, and made the learner's weights NaN (then ``Categorical`` raised).
Now such a segment is refused at validation, and an update whose loss or gradient is non-finite anyway is skipped,
counted and logged once, with the weights and the optimiser state untouched.
"""

from __future__ import annotations

import copy
import logging
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import env_spaces
from learner.config import PPOConfig
from learner.ppo import PPO, batch_from_segments
from models.actor_critic import ActorCritic
from models.registry import build_actor_critic, small_config
from protocol import ProtocolError, Reason, Segment, SegmentSpec, validate_segment
from protocol.spec import space_bounds

_obs_space, _act_space = env_spaces("agalite/TMaze-v0", corridor_length=4)
assert isinstance(_obs_space, gym.spaces.Box) and isinstance(_act_space, gym.spaces.Discrete)
OBS_SPACE, ACT_SPACE = _obs_space, _act_space
T, B = 8, 2


def _model() -> ActorCritic:
    torch.manual_seed(0)
    return build_actor_critic(small_config("agalite"), OBS_SPACE, ACT_SPACE)


def _segment(model: ActorCritic, seed: int = 0, **overrides: object) -> Segment:
    rng = np.random.default_rng(seed)
    fields: dict = dict(
        actor_id="a",
        run_id="r",
        seq=0,
        policy_version=0,
        obs=rng.integers(0, 2, size=(T + 1, B, OBS_SPACE.shape[0])).astype(np.float32),
        actions=rng.integers(0, ACT_SPACE.n, size=(T, B)).astype(np.int64),
        logp=np.full((T, B), math.log(1.0 / ACT_SPACE.n), np.float32),
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=np.zeros((T, B), bool),
        truncated=np.zeros((T, B), bool),
        reset=np.zeros((T + 1, B), bool),
        bootstrap_values=np.zeros((T, B), np.float32),
        initial_state={k: v.detach().numpy() for k, v in model.initial_state(B).items()},
        episodes=[],
    )
    fields.update(overrides)
    return Segment(**fields)


def _spec(model: ActorCritic) -> SegmentSpec:
    low, high = space_bounds(OBS_SPACE)
    state = {k: (tuple(v.shape[1:]), str(v.numpy().dtype)) for k, v in model.initial_state(1).items()}
    return SegmentSpec(
        obs_shape=OBS_SPACE.shape,
        obs_dtype="float32",
        num_actions=int(ACT_SPACE.n),
        segment_length=T,
        state=state,
        max_envs=8,
        obs_low=low,
        obs_high=high,
    )


def _with(arr_like: np.ndarray, value: float, where: tuple = (0, 0)) -> np.ndarray:
    out = np.array(arr_like)
    out[where] = value
    return out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rewards", 1e38),
        ("rewards", -1e7),
        ("bootstrap_values", 1e38),
        ("logp", -1e9),
        ("obs", 5.0),
        ("obs", -1.0),
    ],
)
def test_values_beyond_their_bounds_are_refused_at_validation(field, value):
    model = _model()
    base = _segment(model)
    bad = _with(getattr(base, field), value)
    overrides: dict = {field: bad}
    if field == "bootstrap_values":  # only allowed where truncated
        trunc = _with(base.truncated, True)
        reset = np.array(base.reset)
        reset[1:] = trunc
        overrides.update(truncated=trunc, reset=reset)
    validate_segment(base, _spec(model))  # the untouched segment is fine
    with pytest.raises(ProtocolError) as info:
        validate_segment(_segment(model, **overrides), _spec(model))
    assert info.value.reason is Reason.OUT_OF_RANGE
    assert f"Segment.{field}" in str(info.value)


def test_space_bounds_of_the_usual_spaces():
    assert space_bounds(gym.spaces.Box(-np.inf, np.inf, (3,))) == (None, None)
    low, high = space_bounds(gym.spaces.Discrete(5, start=2))
    assert low is not None and high is not None and (int(low), int(high)) == (2, 6)
    low, high = space_bounds(gym.spaces.Box(0, 255, (2, 2), np.uint8))
    assert low is not None and high is not None and low.shape == (2, 2) and int(high.max()) == 255
    with pytest.raises(ValueError, match="broadcast"):
        SegmentSpec(obs_shape=(3,), obs_dtype="float32", num_actions=2, segment_length=1, state={}, max_envs=1,
                    obs_low=np.zeros(4))  # fmt: skip


def test_a_non_finite_update_is_skipped_counted_and_logged_once(caplog):
    model = _model()
    ppo = PPO(model, PPOConfig(epochs=2, minibatches=2))
    before = copy.deepcopy(model.state_dict())
    # bypasses validation on purpose: whatever slips through must not reach the weights
    poisoned = batch_from_segments([_segment(model, rewards=np.full((T, B), 1e38, np.float32))], torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="learner.ppo"):
        stats = ppo.update(poisoned)
        stats2 = ppo.update(poisoned)
    assert stats["losses/skipped_steps"] == 4.0 and stats["losses/gradient_steps"] == 0.0
    assert stats2["losses/skipped_steps"] == 4.0 and ppo.skipped_steps == 8
    for name, value in model.state_dict().items():  # weights and running statistics alike
        assert torch.equal(value, before[name]), name
    assert not ppo.optimizer.state, "the optimiser moved on a skipped step"
    assert len([r for r in caplog.records if "non-finite" in r.getMessage()]) == 1

    # a healthy batch trains afterwards and the weights stay finite
    stats3 = ppo.update(batch_from_segments([_segment(model, seed=1)], torch.device("cpu")))
    assert stats3["losses/gradient_steps"] == 4.0 and stats3["losses/skipped_steps"] == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_step_whose_loss_is_non_finite_is_skipped_while_finite_statistics_are_kept():
    model = _model()
    ppo = PPO(model, PPOConfig(epochs=1, minibatches=1))
    trained = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    # returns are finite, but an impossible behaviour log-probability makes the importance ratio infinite
    batch = batch_from_segments([_segment(model, logp=np.full((T, B), -1e30, np.float32))], torch.device("cpu"))
    stats = ppo.update(batch)
    assert stats["losses/skipped_steps"] == 1.0 and stats["losses/gradient_steps"] == 0.0
    # no gradient step: every trained weight is as it was, except the value head's last layer, which the kept return
    # statistics rescaled (the output preservation, on by default for this kind) and nothing trained
    layer = model.value_output_layer()
    rescaled = {id(layer.weight), id(layer.bias)}
    for name, value in model.named_parameters():
        if value.requires_grad and id(value) not in rescaled:
            assert torch.equal(value, trained[name]), name
    old_weight = next(trained[n] for n, v in model.named_parameters() if v is layer.weight)
    assert model.value_norm is not None
    torch.testing.assert_close(layer.weight, old_weight / model.value_norm.std())  # the statistics were (0, 1)
    assert all(torch.isfinite(p).all() for p in model.parameters())
