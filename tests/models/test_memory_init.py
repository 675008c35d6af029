"""The chrono initialisation of memory gates (ModelConfig.memory_init): where the biases go, and what it buys.

What it buys is measured as gradient flow: the norm of d y[D] / d x[0] relative to d y[D] / d x[D] at
initialisation. The two inits differ by orders of magnitude, so the bounds below hold on any CPU.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from bench.gradient_flow import gradient_flow
from models.config import ModelConfig, ModelKind
from models.feature_maps import GatedFeatures
from models.rnn import GRU, LSTM
from models.sequence_models import build_sequence_model

SMALL: dict[str, Any] = {"num_layers": 2, "d_model": 32, "num_heads": 2, "d_head": 16, "d_ffc": 32}


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_rnn_keep_gates_get_chrono_biases(kind: ModelKind) -> None:
    horizon, n = 50, 64
    torch.manual_seed(0)
    model = build_sequence_model(ModelConfig(kind=kind, rnn_hidden=n, memory_horizon=horizon), 4)
    assert isinstance(model, (GRU, LSTM))
    keep = model.w_ih.bias[n : 2 * n].detach()  # GRU rows r, z, n; LSTM rows i, f, o, g
    assert keep.min() >= 0.0 and keep.max() <= math.log(horizon - 1)
    assert keep.std() > 0.5  # spread over time scales, not one value
    assert torch.all(model.w_hh.bias[n : 2 * n] == 0)
    if kind == "lstm":
        assert torch.equal(model.w_ih.bias[:n], -keep)  # input gate = -forget gate


@pytest.mark.parametrize("kind", ["agalite", "galite"])
def test_decay_gates_get_negative_chrono_biases(kind: ModelKind) -> None:
    horizon = 40
    torch.manual_seed(0)
    model = build_sequence_model(ModelConfig(kind=kind, memory_horizon=horizon, **SMALL), 4)
    features = next(m for m in model.modules() if isinstance(m, GatedFeatures))
    bias = features.proj.bias.detach().view(features.h, features.width)
    col = 0
    for name, size, _ in features.pieces:
        piece = bias[:, col : col + size]
        if name in ("beta", "gamma"):
            assert piece.max() <= 0.0 and piece.min() >= -math.log(horizon - 1), name
        else:
            assert torch.all(piece == 0), name
        col += size


def test_default_init_keeps_zero_gate_biases() -> None:
    torch.manual_seed(0)
    model = build_sequence_model(ModelConfig(kind="agalite", memory_init="default", **SMALL), 4)
    features = next(m for m in model.modules() if isinstance(m, GatedFeatures))
    assert torch.all(features.proj.bias == 0)


@pytest.mark.parametrize(
    ("kind", "extra", "delay", "gain"),
    [("gru", {"rnn_hidden": 64}, 20, 100.0), ("lstm", {"rnn_hidden": 64}, 20, 100.0), ("agalite", SMALL, 40, 3.0)],
)
def test_chrono_lets_the_gradient_reach_back(kind: ModelKind, extra: dict, delay: int, gain: float) -> None:
    default = gradient_flow(ModelConfig(kind=kind, memory_init="default", **extra), delay, seeds=1)
    chrono = gradient_flow(ModelConfig(kind=kind, memory_init="chrono", **extra), delay, seeds=1)
    assert chrono > gain * default, (chrono, default)
