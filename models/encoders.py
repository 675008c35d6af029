"""Observation encoders: turn one observation (any shape) into a flat feature vector for the sequence model.

Encoders see observations flattened over time and batch (``[N, *obs_shape]``) so the sequence model stays
agnostic of the observation type. Image observations are HWC as gymnasium delivers them; the CNN does the
HWC -> CHW permute and the uint8 -> [0, 1] scaling inside the module, so the exported ONNX step function takes raw
observations and actors never preprocess.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from models.blocks import orthogonal_init_

EncoderKind = Literal["auto", "flatten", "mlp", "cnn"]


class FlattenEncoder(nn.Module):
    """Identity on vector observations (multi-dimensional ones are flattened); casts to float32."""

    def __init__(self, obs_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.output_dim = math.prod(self.obs_shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if len(self.obs_shape) != 1:
            x = x.reshape(x.shape[0], self.output_dim)
        return x


class MLPEncoder(nn.Module):
    """Two Dense(hidden)+ReLU layers (orthogonal sqrt 2) on the flattened observation."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.flatten = FlattenEncoder(obs_shape)
        self.net = nn.Sequential(
            nn.Linear(self.flatten.output_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        orthogonal_init_(self.net)
        self.output_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.flatten(obs))


class NatureCNN(nn.Module):
    """Nature-DQN CNN (32@8x8/4, 64@4x4/2, 64@3x3/1, ReLU) + Dense(hidden)+ReLU for HWC images.

    uint8 images are scaled by 1/255 inside the module; float images are taken to be in [0, 1] already, and so are
    images that the model standardised before the encoder (``standardized``).
    """

    def __init__(
        self, obs_shape: tuple[int, ...], hidden: int, obs_dtype: str = "uint8", standardized: bool = False
    ) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"NatureCNN needs HWC image observations (3 axes), got shape {tuple(obs_shape)}")
        h, w, c = obs_shape
        if h < 36 or w < 36:
            raise ValueError(f"NatureCNN needs images of at least 36x36 pixels, got {h}x{w}")
        self.obs_shape = tuple(obs_shape)
        self.scale = 1.0 / 255.0 if obs_dtype == "uint8" and not standardized else 1.0
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        )  # fmt: skip
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, c, h, w)).numel()
        self.fc = nn.Linear(n_flat, hidden)
        for m in [*self.conv.modules(), self.fc]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.output_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.scale != 1.0:
            x = x * self.scale
        x = self.conv(x.permute(0, 3, 1, 2))
        return torch.relu(self.fc(x.flatten(1)))


def resolve_encoder_kind(kind: EncoderKind, obs_shape: tuple[int, ...]) -> EncoderKind:
    """The encoder ``auto`` stands for: flatten for 1-D observations, the CNN for 3-D (HWC) ones."""
    obs_shape = tuple(int(s) for s in obs_shape)
    if kind == "auto":
        if len(obs_shape) == 1:
            kind = "flatten"
        elif len(obs_shape) == 3:
            kind = "cnn"
        else:
            raise ValueError(
                f"encoder 'auto' handles 1-D vectors and 3-D HWC images, got observation shape {obs_shape}; "
                "choose encoder 'flatten' or 'mlp' explicitly"
            )
    return kind


def build_encoder(
    kind: EncoderKind, obs_shape: tuple[int, ...], hidden: int, obs_dtype: str, standardized: bool = False
) -> FlattenEncoder | MLPEncoder | NatureCNN:
    """Encoder for ``obs_shape`` (``auto``: see ``resolve_encoder_kind``); ``standardized`` says the model
    standardises observations before the encoder, so the CNN must not scale pixels again.

    The returned module has an ``output_dim`` attribute.
    """
    obs_shape = tuple(int(s) for s in obs_shape)
    kind = resolve_encoder_kind(kind, obs_shape)
    if kind == "flatten":
        return FlattenEncoder(obs_shape)
    if kind == "mlp":
        return MLPEncoder(obs_shape, hidden)
    if kind == "cnn":
        return NatureCNN(obs_shape, hidden, obs_dtype, standardized)
    raise ValueError(f"unknown encoder {kind!r}; expected one of auto, flatten, mlp, cnn")
