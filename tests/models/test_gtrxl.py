"""GTrXL specifics: state layout, the two memory forms, stop-gradient memory, the banded window, episode masking."""

from __future__ import annotations

import pytest
import torch

from models import build_sequence_model, small_config
from models.gtrxl import GTrXL, sinusoid_embedding

IN_DIM = 5


def make(form: str, seed: int = 0, **kw: object) -> GTrXL:
    torch.manual_seed(seed)
    model = build_sequence_model(small_config("gtrxl", memory_form=form, **kw), IN_DIM)
    assert isinstance(model, GTrXL)
    return model


#: The forms and windows below are compared in float64: in float32 two forms that add the same terms in another
#: order differ by ~1e-6 to 1e-5, depending on the CPU's kernels; in float64 by ~1e-14, so ALGEBRA_TOL separates
#: rounding from a wrong window or mask (differences > 1e-4) on any CPU.
ALGEBRA_TOL = 1e-9


def make64(form: str, seed: int = 0, **kw: object) -> GTrXL:
    return make(form, seed, **kw).double()


def state64(state: dict) -> dict:
    return {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


def randn64(*shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def no_reset(t: int, b: int) -> torch.Tensor:
    return torch.zeros(t, b, dtype=torch.bool)


def test_state_layout_and_sizes() -> None:
    cfg = small_config("gtrxl")
    inputs, kv = make("inputs"), make("kv")
    n, m, dm, hd = cfg.num_layers, cfg.memory_len, cfg.d_model, cfg.num_heads * cfg.d_head
    assert inputs.state_floats_per_env() == (n + 1) * m * dm
    assert kv.state_floats_per_env() == n * m * 2 * hd
    assert inputs.state_spec()["mask"].shape == (m,) and inputs.state_spec()["mask"].dtype == torch.bool
    assert bool(inputs.initial_state(2)["mask"].all()), "nothing is in memory at the start"


def test_inputs_and_kv_forms_give_the_same_outputs() -> None:
    a, b = make64("inputs"), make64("kv")
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(0)
    x = randn64(50, 3, IN_DIM, generator=g)
    reset = torch.rand(50, 3, generator=g) < 0.05
    with torch.no_grad():
        sa, sb = state64(a.initial_state(3)), state64(b.initial_state(3))
        for lo, hi in [(0, 1), (1, 20), (20, 21), (21, 50)]:
            ya, sa = a(x[lo:hi], reset[lo:hi], sa)
            yb, sb = b(x[lo:hi], reset[lo:hi], sb)
            assert (ya - yb).abs().max().item() < ALGEBRA_TOL
            assert torch.equal(sa["mask"], sb["mask"])


def test_memory_is_stop_gradient_but_segment_is_not() -> None:
    for form in ("inputs", "kv"):
        model = make(form)
        with torch.no_grad():
            _, state = model(torch.randn(8, 2, IN_DIM), no_reset(8, 2), model.initial_state(2))
        name = "memory" if form == "inputs" else "kv"
        mem = state[name].clone().requires_grad_(True)
        x = torch.randn(6, 2, IN_DIM, requires_grad=True)
        y, new_state = model(x, no_reset(6, 2), {**state, name: mem})
        assert not new_state[name].requires_grad, "the new memory is returned detached"
        y[-1].sum().backward()
        assert mem.grad is None, "no gradient flows into the stored memory"
        assert x.grad is not None and x.grad[0].abs().sum() > 0, "in-segment positions get gradients"


def test_window_is_exactly_the_last_m_plus_one_steps() -> None:
    model = make64("inputs", num_layers=1)  # with L layers the receptive field grows to L * M through the stack
    m = model.memory_len
    g = torch.Generator().manual_seed(4)
    x = randn64(3 * m, 1, IN_DIM, generator=g)
    with torch.no_grad():
        y, _ = model(x, no_reset(3 * m, 1), state64(model.initial_state(1)))
        x2 = x.clone()
        t = 2 * m
        x2[t - m - 1] += 1.0  # one step older than the window of step t: invisible to step t
        y2, _ = model(x2, no_reset(3 * m, 1), state64(model.initial_state(1)))
    assert (y2[t] - y[t]).abs().max().item() < ALGEBRA_TOL
    assert (y2[t - 1] - y[t - 1]).abs().max().item() > 1e-4, "step t-1's window does include it"


def test_memory_before_a_reset_is_invisible() -> None:
    model = make64("kv")
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        _, state = model(randn64(12, 2, IN_DIM, generator=g), no_reset(12, 2), state64(model.initial_state(2)))
        x = randn64(4, 2, IN_DIM, generator=g)
        reset = no_reset(4, 2)
        reset[0] = True
        y_reset, s1 = model(x, reset, state)
        y_fresh, s2 = model(x, reset, state64(model.initial_state(2)))
    assert (y_reset - y_fresh).abs().max().item() < ALGEBRA_TOL
    assert torch.equal(s1["mask"], s2["mask"])
    assert int((~s1["mask"]).sum(1)[0]) == 4, "only the 4 steps of the new episode are valid in memory"


def test_sinusoid_embedding_layout() -> None:
    emb = sinusoid_embedding(torch.tensor([0.0, 3.0]), 8)
    assert emb.shape == (2, 8)
    assert torch.allclose(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.isclose(emb[1, 0], torch.sin(torch.tensor(3.0)))  # inverse frequency 1 first
    assert torch.isclose(emb[1, 4], torch.cos(torch.tensor(3.0)))
    with pytest.raises(ValueError, match="even"):
        sinusoid_embedding(torch.tensor([1.0]), 7)


def test_bad_inputs_are_refused_clearly() -> None:
    model = make("inputs")
    with pytest.raises(ValueError, match="reset"):
        model(torch.randn(2, 1, IN_DIM), torch.zeros(2, 1), model.initial_state(1))
    with pytest.raises(ValueError, match="x\\[T, B"):
        model(torch.randn(2, 1, IN_DIM + 1), no_reset(2, 1), model.initial_state(1))
    with pytest.raises(ValueError, match="memory_form"):
        make("bogus")
