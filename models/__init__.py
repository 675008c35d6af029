"""PyTorch models: sequence models (AGaLiTe, GaLiTe, GTrXL, LSTM, GRU), encoders and the actor-critic."""

from models.actor_critic import ActorCritic
from models.base import SequenceModel, State, StateSpec
from models.config import ModelConfig
from models.registry import build_actor_critic, paper_config, small_config
from models.sequence_models import SEQUENCE_MODELS, build_sequence_model

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
