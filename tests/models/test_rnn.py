"""LSTM/GRU baselines: same equations as PyTorch's cells, resets zero the state, state sizes."""

from __future__ import annotations

import torch
from torch import nn

from models import build_sequence_model, small_config
from models.rnn import GRU, LSTM

IN_DIM = 7


def test_lstm_matches_torch_lstm_cell() -> None:
    torch.manual_seed(0)
    model = build_sequence_model(small_config("lstm"), IN_DIM)
    assert isinstance(model, LSTM)
    n = model.hidden
    # float64: two implementations of the same gates (ours, PyTorch's fused cell) round differently, by ~1e-7 to
    # 1e-6 in float32 depending on the CPU's kernels; by ~1e-16 in float64.
    model.double()
    cell = nn.LSTMCell(IN_DIM, n).double()
    # our rows are i, f, o, g; PyTorch's are i, f, g, o
    perm = torch.cat([torch.arange(0, 2 * n), torch.arange(3 * n, 4 * n), torch.arange(2 * n, 3 * n)])
    with torch.no_grad():
        cell.weight_ih.copy_(model.w_ih.weight[perm])
        cell.bias_ih.copy_(model.w_ih.bias[perm])
        cell.weight_hh.copy_(model.w_hh.weight[perm])
        cell.bias_hh.copy_(model.w_hh.bias[perm])
        x = torch.randn(9, 3, IN_DIM, dtype=torch.float64)
        init = {k: v.double() for k, v in model.initial_state(3).items()}
        y, state = model(x, torch.zeros(9, 3, dtype=torch.bool), init)
        h = c = torch.zeros(3, n, dtype=torch.float64)
        for t in range(9):
            h, c = cell(x[t], (h, c))
            assert (y[t] - h).abs().max().item() < 1e-12
    assert (state["h"] - h).abs().max().item() < 1e-12 and (state["c"] - c).abs().max().item() < 1e-12


def test_gru_matches_torch_gru_cell() -> None:
    torch.manual_seed(0)
    model = build_sequence_model(small_config("gru"), IN_DIM)
    assert isinstance(model, GRU)
    model.double()  # float64, as for the LSTM above
    cell = nn.GRUCell(IN_DIM, model.hidden).double()
    with torch.no_grad():
        cell.weight_ih.copy_(model.w_ih.weight)
        cell.bias_ih.copy_(model.w_ih.bias)
        cell.weight_hh.copy_(model.w_hh.weight)
        cell.bias_hh.copy_(model.w_hh.bias)
        x = torch.randn(9, 3, IN_DIM, dtype=torch.float64)
        init = {k: v.double() for k, v in model.initial_state(3).items()}
        y, _ = model(x, torch.zeros(9, 3, dtype=torch.bool), init)
        h = torch.zeros(3, model.hidden, dtype=torch.float64)
        for t in range(9):
            h = cell(x[t], h)
            assert (y[t] - h).abs().max().item() < 1e-12


def test_reset_zeroes_the_carried_state_before_the_step() -> None:
    for kind in ("lstm", "gru"):
        torch.manual_seed(1)
        model = build_sequence_model(small_config(kind), IN_DIM)
        state = {k: torch.randn_like(v) for k, v in model.initial_state(2).items()}
        x = torch.randn(1, 2, IN_DIM)
        with torch.no_grad():
            y, _ = model(x, torch.tensor([[True, False]]), state)
            y_zero, _ = model(x, torch.zeros(1, 2, dtype=torch.bool), model.initial_state(2))
        assert torch.equal(y[0, 0], y_zero[0, 0])
        assert not torch.allclose(y[0, 1], y_zero[0, 1])


def test_state_sizes() -> None:
    cfg = small_config("lstm", rnn_hidden=24)
    assert build_sequence_model(cfg, IN_DIM).state_floats_per_env() == 48
    cfg = small_config("gru", rnn_hidden=24)
    assert build_sequence_model(cfg, IN_DIM).state_floats_per_env() == 24
