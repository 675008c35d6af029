"""PyTorch models: sequence models (AGaLiTe, GaLiTe, GTrXL, LSTM, GRU), encoders and the actor-critic."""

from models.actor_critic import ActorCritic
from models.base import SequenceModel, State, StateSpec
from models.config import ModelConfig
from models.registry import (
    SEQUENCE_MODELS,
    build_actor_critic,
    build_sequence_model,
    paper_config,
    small_config,
)

__all__ = [
    "SEQUENCE_MODELS",
    "ActorCritic",
    "ModelConfig",
    "SequenceModel",
    "State",
    "StateSpec",
    "build_actor_critic",
    "build_sequence_model",
    "paper_config",
    "small_config",
]
