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
from torch.distributions import Distribution

from models.base import SequenceModel, State, StateSpec
from models.config import ModelConfig
from models.distributions import ACTION_KINDS, action_distribution
from models.encoders import build_encoder, resolve_encoder_kind
from models.normalization import RunningNorm
from models.sequence_models import build_sequence_model


def _head(in_dim: int, hidden: int, out_dim: int, last_gain: float) -> nn.Sequential:
    """Dense(hidden)+tanh+Dense(out): orthogonal(sqrt 2) first layer, orthogonal(last_gain) last, zero biases."""
    first, last = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
    nn.init.orthogonal_(first.weight, gain=math.sqrt(2))
    nn.init.orthogonal_(last.weight, gain=last_gain)
    nn.init.zeros_(first.bias)
    nn.init.zeros_(last.bias)
    return nn.Sequential(first, nn.Tanh(), last)


class ActorCritic(nn.Module):
    """Actor-critic around any ``SequenceModel``, for discrete or continuous (diagonal Gaussian) actions.

    ``forward(obs[T, B, *obs_shape], reset[T, B] bool, state) -> (params[T, B, P], value[T, B], new_state)``, where
    ``params`` are the logits (P = A actions) or the Gaussian's mean and log std (P = 2A action dimensions), see
    ``models/distributions.py``. Observations are taken raw (``obs_dtype``, e.g. uint8 images): conversion
    happens inside, so the ONNX step function needs no preprocessing on the actor side.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        obs_shape: tuple[int, ...],
        obs_dtype: str,
        num_actions: int,
        sequence_model: SequenceModel | None = None,
        action_kind: str = "discrete",
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        if num_actions < 1:
            raise ValueError(f"num_actions must be positive, got {num_actions}")
        if action_kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {action_kind!r}; expected one of {ACTION_KINDS}")
        self.action_kind = action_kind
        self.cfg = cfg
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = str(np.dtype(obs_dtype))
        self.num_actions = int(num_actions)
        images = resolve_encoder_kind(cfg.encoder, self.obs_shape) == "cnn"
        standardize = cfg.normalize_obs and (cfg.normalize_images or not images)
        self.encoder = build_encoder(cfg.encoder, self.obs_shape, cfg.encoder_hidden, self.obs_dtype, standardize)
        self.obs_norm = RunningNorm(self.obs_shape) if standardize else None
        core_in = self.encoder.output_dim + int(cfg.episode_start_input)
        if sequence_model is None:
            sequence_model = build_sequence_model(cfg, core_in)
        if sequence_model.input_dim != core_in:
            raise ValueError(f"sequence model takes {sequence_model.input_dim} features, encoder gives {core_in}")
        self.core = sequence_model
        if cfg.episode_start_input:
            # The flag starts with no weight: the model begins as it would without it (a random column would
            # perturb the first step's features, which on most tasks already carry what the flag says) and the
            # flag gains weight where the gradient asks for it (POPGym's RepeatFirst).
            with torch.no_grad():
                self.core.input_layer().weight[:, -1].zero_()
        self.policy = _head(self.core.output_dim, cfg.head_hidden, self.num_actions, 0.01)
        self.value = _head(self.core.output_dim, cfg.head_hidden, 1, 1.0)
        self.value_norm = RunningNorm(()) if cfg.normalize_value else None
        # Continuous actions: a learned, state-independent log std per action dimension (CleanRL's choice).
        self.log_std = (
            nn.Parameter(torch.full((self.num_actions,), float(init_log_std))) if action_kind == "continuous" else None
        )

    def value_output_layer(self) -> nn.Linear:
        """The value head's last layer, the one ``preserve_denormalized_outputs`` rescales."""
        last = self.value[-1]
        assert isinstance(last, nn.Linear)
        return last

    @property
    def policy_output_dim(self) -> int:
        """Width of the policy output: A logits, or A means followed by A log stds."""
        return self.num_actions * (2 if self.action_kind == "continuous" else 1)

    def distribution(self, params: torch.Tensor) -> Distribution:
        """The action law for a policy output of ``forward``."""
        return action_distribution(params, self.action_kind)

    def state_spec(self) -> dict[str, StateSpec]:
        return self.core.state_spec()

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        return self.core.initial_state(batch, device)

    def forward(self, obs: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        if obs.dim() != 2 + len(self.obs_shape) or tuple(obs.shape[2:]) != self.obs_shape:
            raise ValueError(f"expected obs[T, B, {', '.join(map(str, self.obs_shape))}], got {tuple(obs.shape)}")
        t, b = obs.shape[0], obs.shape[1]
        x = obs.reshape(t * b, *self.obs_shape)
        if self.obs_norm is not None:
            x = self.obs_norm(x.to(torch.float32))
        feats = self.encoder(x).reshape(t, b, -1)
        if self.cfg.episode_start_input:
            feats = torch.cat([feats, reset.to(feats.dtype).unsqueeze(-1)], dim=-1)
        y, new_state = self.core(feats, reset, state)
        params = self.policy(y)
        if self.log_std is not None:
            params = torch.cat([params, self.log_std.expand_as(params)], dim=-1)
        value = self.value(y).squeeze(-1)
        if self.value_norm is not None:
            value = self.value_norm.denormalize(value)
        return params, value, new_state
