"""The hand-written GRU/LSTM sequence backward against autograd through the step-by-step loop (the reference).

float64 throughout, so the two computations of the same sums agree to ~1e-12 on any CPU; resets fall mid-sequence
(the carried state and its gradient must stop there) and the loss reads every output and the last state.
"""

from __future__ import annotations

import pytest
import torch

from models import build_sequence_model, small_config
from models.rnn import GRU, LSTM
from models.rnn_sequence import gru_sequence, lstm_sequence

T, B, IN_DIM = 11, 3, 5


def _model_and_inputs(kind: str, seed: int) -> tuple[GRU | LSTM, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A float64 model and T steps of inputs with resets mid-sequence, from a random initial state."""
    torch.manual_seed(seed)
    model = build_sequence_model(small_config(kind), IN_DIM).double()
    assert isinstance(model, GRU | LSTM)
    x = torch.randn(T, B, IN_DIM, dtype=torch.float64)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[0, 0] = reset[4, 1] = reset[7, 2] = reset[8, 0] = True
    state = {k: torch.randn_like(v.double()).requires_grad_() for k, v in model.initial_state(B).items()}
    return model, x, reset, state


def _loss(y: torch.Tensor, state: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return (y * weights).sum() + sum((v * v).sum() for v in state.values())


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_the_sequence_backward_gives_autograd_s_gradients_through_the_loop(kind: str) -> None:
    model, x, reset, state = _model_and_inputs(kind, seed=0)
    weights = torch.randn(T, B, model.hidden, dtype=torch.float64)

    def grads(fused: bool) -> list[torch.Tensor | None]:
        model.zero_grad()
        for v in state.values():
            v.grad = None
        xr = x.clone().requires_grad_()
        if fused:
            y, last = model(xr, reset, state)  # grad enabled: the sequence function
        else:
            keep = (~reset).unsqueeze(-1).double()
            y, last = model.recurrence(model.w_ih(xr), keep, state)
        _loss(y, last, weights).backward()
        assert xr.grad is not None and all(p.grad is not None for p in model.parameters())
        return [xr.grad, *[v.grad for v in state.values()], *[p.grad for p in model.parameters()]]

    fused, reference = grads(True), grads(False)
    assert len(fused) == len(reference)
    for a, b in zip(fused, reference, strict=True):
        assert a is not None and b is not None
        assert (a - b).abs().max().item() < 1e-10
    # the gradient stops at a reset: the initial state of env 0 (reset at t=0) gets nothing from the outputs
    assert state["h"].grad is not None and (state["h"].grad[0] == 0).all()


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_the_sequence_function_passes_gradcheck(kind: str) -> None:
    torch.manual_seed(1)
    n, gates = 4, 3 if kind == "gru" else 4
    xi = torch.randn(6, 2, gates * n, dtype=torch.float64, requires_grad=True)
    keep = torch.ones(6, 2, 1, dtype=torch.float64)
    keep[3, 0] = 0.0
    h0 = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(gates * n, n, dtype=torch.float64)).requires_grad_()
    b = torch.randn(gates * n, dtype=torch.float64, requires_grad=True)
    if kind == "gru":
        assert torch.autograd.gradcheck(lambda *a: gru_sequence(a[0], keep, *a[1:]), (xi, h0, w, b))
    else:
        c0 = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda *a: lstm_sequence(a[0], keep, *a[1:]), (xi, h0, c0, w, b))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_the_sequence_function_and_the_loop_give_the_same_outputs(kind: str) -> None:
    model, x, reset, state = _model_and_inputs(kind, seed=2)
    y, last = model(x, reset, state)  # grad enabled: the sequence function
    assert y.grad_fn is not None and "Sequence" in type(y.grad_fn).__name__, type(y.grad_fn).__name__
    with torch.no_grad():
        y_ref, last_ref = model(x, reset, state)  # no gradient: the loop
    assert (y - y_ref).abs().max().item() < 1e-12
    for k in last:
        assert (last[k] - last_ref[k]).abs().max().item() < 1e-12
