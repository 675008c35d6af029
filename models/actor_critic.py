"""The actor-critic: observation encoder -> sequence model -> policy and value heads.

One ``forward`` serves both learning (T steps from a stored state) and acting (T=1, exported to ONNX): the encoder
and heads are per-step maps applied over the flattened time and batch axes, so all recurrence lives in the sequence
model and the contract's "sequence equals step by step" carries over to logits and values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from models.base import SequenceModel, State, StateSpec
from models.config import ModelConfig
from models.encoders import build_encoder


def _head(in_dim: int, hidden: int, out_dim: int, last_gain: float) -> nn.Sequential:
    """Dense(hidden)+tanh+Dense(out): orthogonal(sqrt 2) first layer, orthogonal(last_gain) last, zero biases."""
    head = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
    nn.init.orthogonal_(head[0].weight, gain=math.sqrt(2))
    nn.init.orthogonal_(head[2].weight, gain=last_gain)
    nn.init.zeros_(head[0].bias)
    nn.init.zeros_(head[2].bias)
    return head


class ActorCritic(nn.Module):
    """Discrete-action actor-critic around any ``SequenceModel``.

    ``forward(obs[T, B, *obs_shape], reset[T, B] bool, state) -> (logits[T, B, A], value[T, B], new_state)``.
    Observations are taken raw (``obs_dtype``, e.g. uint8 images): conversion happens inside, so the ONNX step
    function needs no preprocessing on the actor side.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        obs_shape: tuple[int, ...],
        obs_dtype: str,
        num_actions: int,
        sequence_model: SequenceModel | None = None,
    ) -> None:
        super().__init__()
        if num_actions < 1:
            raise ValueError(f"num_actions must be positive, got {num_actions}")
        self.cfg = cfg
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = str(np.dtype(obs_dtype))
        self.num_actions = int(num_actions)
        self.encoder = build_encoder(cfg.encoder, self.obs_shape, cfg.encoder_hidden, self.obs_dtype)
        if sequence_model is None:
            from models.registry import build_sequence_model

            sequence_model = build_sequence_model(cfg, self.encoder.output_dim)
        if sequence_model.input_dim != self.encoder.output_dim:
            raise ValueError(
                f"sequence model takes {sequence_model.input_dim} features, encoder gives {self.encoder.output_dim}"
            )
        self.core = sequence_model
        self.policy = _head(self.core.output_dim, cfg.head_hidden, self.num_actions, 0.01)
        self.value = _head(self.core.output_dim, cfg.head_hidden, 1, 1.0)

    def state_spec(self) -> dict[str, StateSpec]:
        return self.core.state_spec()

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        return self.core.initial_state(batch, device)

    def forward(self, obs: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        if obs.dim() != 2 + len(self.obs_shape) or tuple(obs.shape[2:]) != self.obs_shape:
            raise ValueError(f"expected obs[T, B, {', '.join(map(str, self.obs_shape))}], got {tuple(obs.shape)}")
        t, b = obs.shape[0], obs.shape[1]
        feats = self.encoder(obs.reshape(t * b, *self.obs_shape))
        y, new_state = self.core(feats.reshape(t, b, -1), reset, state)
        logits = self.policy(y)
        value = self.value(y).squeeze(-1)
        return logits, value, new_state
