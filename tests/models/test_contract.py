"""The sequence-model contract (docs/models.md#the-sequence-model-contract) for every kind, at small sizes."""

from __future__ import annotations

import re

import pytest
import torch

from models import SequenceModel, build_sequence_model, small_config
from models.config import ModelConfig

IN_DIM = 6


def _cases() -> list:
    cases = []
    for kind, extra in [
        ("gtrxl", {"memory_form": "inputs"}),
        ("gtrxl", {"memory_form": "kv"}),
        ("lstm", {}),
        ("gru", {}),
        ("agalite", {}),
        ("galite", {}),
    ]:
        name = kind + ("-" + extra["memory_form"] if extra else "")
        cases.append(pytest.param(small_config(kind, **extra), id=name))
    return cases


CASES = _cases()


def make(cfg: ModelConfig, seed: int = 0) -> SequenceModel:
    torch.manual_seed(seed)
    return build_sequence_model(cfg, IN_DIM)


def step_by_step(model: SequenceModel, x: torch.Tensor, reset: torch.Tensor, state: dict) -> tuple:
    ys = []
    for t in range(x.shape[0]):
        y, state = model(x[t : t + 1], reset[t : t + 1], state)
        ys.append(y)
    return torch.cat(ys), state


def max_state_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def make64(cfg: ModelConfig, seed: int = 0) -> SequenceModel:
    """The model in float64, for the tests that check algebra (one form equals another).

    In float32 two forms that add the same terms in another order (a scan against a loop, chunk boundaries, the
    SIMD width of the CPU's kernels) differ by ~1e-5 here, which is the bound itself on some CPUs. In float64 the
    same reorderings cost ~1e-13 (eps 2.2e-16 times a few hundred accumulated terms of size <= ~10), so ALGEBRA_TOL
    separates rounding from a wrong formula (differences > 1e-3) on any CPU.
    """
    return make(cfg, seed).double()


ALGEBRA_TOL = 1e-9


def state64(state: dict) -> dict:
    return {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize("cfg", CASES)
def test_state_spec_names_shapes_and_initial_state(cfg: ModelConfig) -> None:
    model = make(cfg)
    spec = model.state_spec()
    assert spec, "a sequence model needs some state"
    state = model.initial_state(3)
    assert state.keys() == spec.keys()
    for name, s in spec.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert state[name].shape == (3, *s.shape) and state[name].dtype == s.dtype
    y, new_state = model(torch.randn(5, 3, IN_DIM), torch.zeros(5, 3, dtype=torch.bool), state)
    assert y.shape == (5, 3, model.output_dim)
    for name, s in spec.items():
        assert new_state[name].shape == (3, *s.shape) and new_state[name].dtype == s.dtype


@pytest.mark.parametrize("cfg", CASES)
def test_sequence_equals_step_by_step_with_resets(cfg: ModelConfig) -> None:
    model = make64(cfg)
    g = torch.Generator().manual_seed(1)
    t_len, batch = 256, 3
    x = torch.randn(t_len, batch, IN_DIM, generator=g, dtype=torch.float64)
    reset = torch.rand(t_len, batch, generator=g) < 0.03
    reset[0, 0] = True
    reset[100:140, 1] = False  # one long episode crossing M
    with torch.no_grad():
        # start from a non-trivial state: run a warm-up segment first
        _, state0 = model(
            torch.randn(20, batch, IN_DIM, generator=g, dtype=torch.float64),
            torch.zeros(20, batch, dtype=torch.bool),
            state64(model.initial_state(batch)),
        )
        y_seq, s_seq = model(x, reset, state0)
        y_step, s_step = step_by_step(model, x, reset, state0)
        # and in chunks of uneven length
        y_chunks, s = [], state0
        for a, b in [(0, 1), (1, 37), (37, 200), (200, 256)]:
            y, s = model(x[a:b], reset[a:b], s)
            y_chunks.append(y)
    assert (y_seq - y_step).abs().max().item() < ALGEBRA_TOL
    assert max_state_diff(s_seq, s_step) < ALGEBRA_TOL
    assert (torch.cat(y_chunks) - y_step).abs().max().item() < ALGEBRA_TOL
    assert max_state_diff(s, s_step) < ALGEBRA_TOL


@pytest.mark.parametrize("cfg", CASES)
def test_reset_mid_sequence_equals_fresh_state(cfg: ModelConfig) -> None:
    model = make64(cfg)
    g = torch.Generator().manual_seed(2)
    t_len, batch, k = 40, 2, 23
    x = torch.randn(t_len, batch, IN_DIM, generator=g, dtype=torch.float64)
    reset = torch.zeros(t_len, batch, dtype=torch.bool)
    reset[k] = True
    with torch.no_grad():
        y, _ = model(x, reset, state64(model.initial_state(batch)))
        y_fresh, _ = model(x[k:], reset[k:], state64(model.initial_state(batch)))
        # the same tail after a different history must give the same outputs
        x2 = x.clone()
        x2[:k] = torch.randn(k, batch, IN_DIM, generator=g, dtype=torch.float64)
        y2, _ = model(x2, reset, state64(model.initial_state(batch)))
    assert (y[k:] - y_fresh).abs().max().item() < ALGEBRA_TOL
    assert (y2[k:] - y[k:]).abs().max().item() < ALGEBRA_TOL
    assert (y2[:k] - y[:k]).abs().max().item() > 1e-3  # the history did matter before the reset


@pytest.mark.parametrize("cfg", CASES)
def test_gradients_reach_every_parameter(cfg: ModelConfig) -> None:
    model = make(cfg)
    g = torch.Generator().manual_seed(3)
    batch = 2
    with torch.no_grad():
        _, state = model(
            torch.randn(12, batch, IN_DIM, generator=g),
            torch.zeros(12, batch, dtype=torch.bool),
            model.initial_state(batch),
        )
    x = torch.randn(16, batch, IN_DIM, generator=g)
    reset = torch.zeros(16, batch, dtype=torch.bool)
    reset[5, 1] = True
    y, _ = model(x, reset, state)
    (y * torch.randn(y.shape, generator=g)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("cfg", CASES)
def test_state_floats_match_formula(cfg: ModelConfig) -> None:
    from models.macs import model_cost

    model = make(cfg)
    expected = model_cost(cfg, input_dim=IN_DIM).state_floats
    if cfg.kind == "agalite":
        expected -= cfg.num_layers  # the paper counts the float tick; this repository keeps an integer counter
    assert model.state_floats_per_env() == expected
