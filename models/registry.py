"""Build models by name: the actor-critic from gymnasium spaces and size presets (kinds: ``models.sequence_models``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from models.actor_critic import ActorCritic
from models.config import ModelConfig
from models.sequence_models import check_kind

#: Paper sizes: every transformer L4, d_model 128, H4 x 64, d_ffc 128, eta 4, r 2; GTrXL M 128;
#: the T-Maze LSTM has 600 units and the GRU 680.
_PAPER: dict[str, Any] = dict(num_layers=4, d_model=128, num_heads=4, d_head=64, d_ffc=128, eta=4, r=2, memory_len=128)
_PAPER_HIDDEN = {"lstm": 600, "gru": 680}
#: Small sizes for tests: same structure, fast on one CPU core.
_SMALL: dict[str, Any] = dict(
    num_layers=2,
    d_model=32,
    num_heads=2,
    d_head=16,
    d_ffc=32,
    eta=2,
    r=2,
    memory_len=8,
    rnn_hidden=32,
    encoder_hidden=32,
    head_hidden=32,
)


def paper_config(kind: str, **overrides: Any) -> ModelConfig:
    """The paper's model size for ``kind`` (docs/models.md#paper-settings), with ``overrides`` applied on top."""
    check_kind(kind)
    base = dict(_PAPER, rnn_hidden=_PAPER_HIDDEN.get(kind, ModelConfig.rnn_hidden))
    return ModelConfig.from_dict({**base, "kind": kind, **overrides})


def small_config(kind: str, **overrides: Any) -> ModelConfig:
    """A small model of the same structure (L2, d_model 32, H2 x 16, eta 2, M 8, hidden 32) for tests."""
    check_kind(kind)
    return ModelConfig.from_dict({**_SMALL, "kind": kind, **overrides})


def build_actor_critic(cfg: ModelConfig, observation_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    """Actor-critic for a Box observation space and a Discrete or 1-D float Box (continuous) action space."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(
            f"only Box observation spaces are supported, got {type(observation_space).__name__}; "
            "wrap the env (e.g. gymnasium.wrappers.FlattenObservation) first"
        )
    dtype = np.dtype(observation_space.dtype)
    if dtype not in (np.dtype("float32"), np.dtype("float64"), np.dtype("uint8")):
        raise TypeError(f"observation dtype {dtype} is not supported (float32, float64 or uint8)")
    obs_shape = tuple(observation_space.shape)
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1 or not np.issubdtype(action_space.dtype, np.floating):
            raise TypeError(f"continuous action spaces must be 1-D float Boxes, got {action_space}")
        return ActorCritic(cfg, obs_shape, str(dtype), int(action_space.shape[0]), action_kind="continuous")
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"only Discrete and 1-D Box action spaces are supported, got {type(action_space).__name__}")
    if int(action_space.start) != 0:
        raise ValueError(f"Discrete action spaces must start at 0, got start={action_space.start}")
    return ActorCritic(cfg, obs_shape, str(dtype), int(action_space.n))


def config_with(cfg: ModelConfig, **changes: Any) -> ModelConfig:
    """A copy of ``cfg`` with ``changes`` (validated field names)."""
    return ModelConfig.from_dict({**dataclasses.asdict(cfg), **changes})
