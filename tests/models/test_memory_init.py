"""The chrono initialisation of memory gates (ModelConfig.memory_init): where the biases go, and what it buys.

What it buys is measured as gradient flow: the norm of d y[D] / d x[0] relative to d y[D] / d x[D] at
initialisation. The two inits differ by orders of magnitude, so the bounds below hold on any CPU.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from models.config import ModelConfig, ModelKind
from models.feature_maps import GatedFeatures
from models.rnn import GRU, LSTM
from models.sequence_models import build_sequence_model

SMALL: dict[str, Any] = {"num_layers": 2, "d_model": 32, "num_heads": 2, "d_head": 16, "d_ffc": 32}


def _gradient_flow(cfg: ModelConfig, delay: int, seed: int = 0, batch: int = 32, din: int = 6) -> float:
    torch.manual_seed(seed)
    model = build_sequence_model(cfg, din).double()
    x = torch.randn(delay + 1, batch, din, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(delay + 1, batch, dtype=torch.bool)
    reset[0] = True
    state = {k: v.double() if v.is_floating_point() else v for k, v in model.initial_state(batch).items()}
    y, _ = model(x, reset, state)
    (grad,) = torch.autograd.grad(y[-1].pow(2).sum(), x)
    return float(grad[0].norm() / grad[-1].norm())


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
    default = _gradient_flow(ModelConfig(kind=kind, memory_init="default", **extra), delay)
    chrono = _gradient_flow(ModelConfig(kind=kind, memory_init="chrono", **extra), delay)
    assert chrono > gain * default, (chrono, default)
