"""AGaLiTe (models/agalite.py): training form vs acting form, resets, gradients, state size, long-run
boundedness, the integer time counter, and ONNX export of the single step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from models.agalite import AGaLiTe, AGaLiTeAttention, cosine_table, counter_period, frequencies
from models.blocks import GatedTransformerBlock
from models.config import ModelConfig
from models.feature_maps import GatedFeatures, outer_row
from models.scan import linear_scan, scan_readout, scan_readout_outer

IN = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The machine is shared: one intra-op thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(**kw) -> ModelConfig:
    base = dict(kind="agalite", num_layers=2, d_model=16, num_heads=2, d_head=8, d_ffc=16, eta=2, r=2)
    return ModelConfig(**{**base, **kw})


def make(cfg: ModelConfig, seed: int = 0) -> AGaLiTe:
    torch.manual_seed(seed)
    return AGaLiTe(IN, cfg)


#: Algebra checks (one form equals another) run in float64: in float32, forms that add the same terms in another
#: order (the scan against the step loop, split points, the SIMD width of the CPU's kernels) differ by ~1e-5 here,
#: as much as the old bound. In float64 the same reorderings cost ~1e-16 * (a few hundred terms of size <= ~10),
#: so ALGEBRA_TOL holds on any CPU while a wrong formula is off by more than 1e-3.
ALGEBRA_TOL = 1e-9


def to64(model: AGaLiTe, state: dict) -> tuple[AGaLiTe, dict]:
    return model.double(), {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


def randn64(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def run_steps(model, x, reset, state):
    ys = []
    for t in range(x.shape[0]):
        y, state = model(x[t : t + 1], reset[t : t + 1], state)
        ys.append(y)
    return torch.cat(ys), state


def state_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def check_sequence_equals_steps(model, t_len: int, batch: int = 3, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    model, init = to64(model, model.initial_state(batch))
    x = randn64(t_len, batch, IN, generator=g)
    reset = torch.rand(t_len, batch, generator=g) < 0.05
    reset[0, 0] = True
    with torch.no_grad():
        _, s0 = model(randn64(7, batch, IN, generator=g), torch.zeros(7, batch, dtype=torch.bool), init)
        y_seq, s_seq = model(x, reset, s0)
        y_step, s_step = run_steps(model, x, reset, s0)
        cut = t_len // 3
        y_a, s_mid = model(x[:cut], reset[:cut], s0)
        y_b, s_end = model(x[cut:], reset[cut:], s_mid)
    assert (y_seq - y_step).abs().max().item() < ALGEBRA_TOL
    assert state_diff(s_seq, s_step) < ALGEBRA_TOL
    assert (torch.cat([y_a, y_b]) - y_step).abs().max().item() < ALGEBRA_TOL
    assert torch.equal(s_seq["tick"], s_step["tick"]) and torch.equal(s_end["tick"], s_step["tick"])


@pytest.mark.parametrize("method", ["chunked", "doubling"])
@pytest.mark.parametrize("t_len", [1, 2, 37, 130])
def test_linear_scan_matches_loop_and_gradcheck(method: str, t_len: int) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(t_len, 2, 1, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(t_len, 2, 4, 3, generator=g, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(2, 4, 3, generator=g, dtype=torch.float64).requires_grad_()
    h, ref = linear_scan(a, b, h0, method), []
    state = h0
    for t in range(t_len):
        state = a[t] * state + b[t]
        ref.append(state)
    assert (h - torch.stack(ref)).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0, method), (a[:9], b[:9], h0))


@pytest.mark.parametrize("method", ["chunked", "doubling"])
def test_linear_scan_survives_tiny_decays(method: str) -> None:
    """Products of many small decays underflow; the scan must not divide by them (no nan/inf)."""
    a = torch.full((256, 4), 1e-3)
    b = torch.ones(256, 4)
    h = linear_scan(a, b, torch.zeros(4), method)
    # h = 1 + 1e-3 + 1e-6 + ... = 1.001001..: in float32 only ~3 terms are above rounding, so any summation order
    # lands within a few eps32 (1.2e-7) of it; 1e-5 also covers dropping the 1e-9 term of the 7-digit constant.
    assert torch.isfinite(h).all() and (h[0] == 1).all() and (h[1:] - 1.001001).abs().max() < 1e-5


@pytest.mark.parametrize("t_len", [1, 9, 37])
@pytest.mark.parametrize("shared_decay", [False, True])
def test_scan_readout_equals_scan_then_matmul(t_len: int, shared_decay: bool) -> None:
    """The fused scan + read-out node (hand-written backward) against linear_scan + MatMul, and gradcheck."""
    g = torch.Generator().manual_seed(3)
    dt = torch.float64
    a = torch.rand(1 if shared_decay else t_len, 2, 3, 1, 5, generator=g, dtype=dt).requires_grad_()
    b = torch.randn(t_len, 2, 3, 1, 5, generator=g, dtype=dt).requires_grad_()
    q = torch.rand(t_len, 2, 3, 1, 5, generator=g, dtype=dt).requires_grad_()
    h0 = torch.randn(2, 3, 4, 5, generator=g, dtype=dt).requires_grad_()
    coef = torch.randn(t_len, 2, 1, 4, 1, generator=g, dtype=dt)
    w_y, w_last = torch.randn(t_len, 2, 3, 1, 4, generator=g, dtype=dt), torch.randn(2, 3, 4, 5, generator=g, dtype=dt)

    def fused(a, b, h0, q):
        return scan_readout(a, b, h0, q, coef)

    def reference(a, b, h0, q):
        h = linear_scan(a, b, h0, "chunked", coef=coef)
        return torch.matmul(h, q.transpose(-1, -2)).transpose(-1, -2), h[-1]

    outs, grads = [], []
    for fn in (fused, reference):
        y, last = fn(a, b, h0, q)
        outs.append((y.detach(), last.detach()))
        grads.append(torch.autograd.grad((y * w_y).sum() + (last * w_last).sum(), (a, b, h0, q)))
    assert all((x - y).abs().max().item() < 1e-12 for x, y in zip(outs[0], outs[1], strict=True))
    assert all((x - y).abs().max().item() < 1e-10 for x, y in zip(grads[0], grads[1], strict=True))
    assert torch.autograd.gradcheck(fused, (a, b, h0, q))


def test_scan_readout_outer_equals_materialised_outer_products() -> None:
    """Writes and queries given as outer-product factors (never materialised) against scan_readout on the full
    products: values and every gradient, and gradcheck."""
    g = torch.Generator().manual_seed(6)
    dt, t_len, n, m = torch.float64, 11, 3, 4

    def rand(*shape, positive=False):
        x = torch.rand(*shape, generator=g, dtype=dt) if positive else torch.randn(*shape, generator=g, dtype=dt)
        return x.requires_grad_()

    a = rand(t_len, 2, 3, 1, n * m, positive=True)
    u, v, p, w = rand(t_len, 2, 3, 1, n), rand(t_len, 2, 3, 1, m), rand(t_len, 2, 3, 1, n), rand(t_len, 2, 3, 1, m)
    h0 = rand(2, 3, 2, n * m)
    coef = torch.randn(t_len, 2, 1, 2, 1, generator=g, dtype=dt)
    w_y, w_last = (
        torch.randn(t_len, 2, 3, 1, 2, generator=g, dtype=dt),
        torch.randn(2, 3, 2, n * m, generator=g, dtype=dt),
    )

    def outer(x, y):
        return (x.transpose(-1, -2) * y).reshape(*x.shape[:-2], 1, n * m)

    def factored(a, u, v, h0, p, w):
        return scan_readout_outer(a, (u, v), h0, (p, w), coef)

    def full(a, u, v, h0, p, w):
        return scan_readout(a, outer(u, v), h0, outer(p, w), coef)

    inputs = (a, u, v, h0, p, w)
    results = []
    for fn in (factored, full):
        y, last = fn(*inputs)
        results.append(
            (y.detach(), last.detach(), *torch.autograd.grad((y * w_y).sum() + (last * w_last).sum(), inputs))
        )
    assert all((x - y).abs().max().item() < 1e-10 for x, y in zip(*results, strict=True))
    assert torch.autograd.gradcheck(factored, inputs)


@pytest.mark.parametrize("masked", [False, True])
def test_outer_row_gradients(masked: bool) -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.rand(6, 2, 1, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.rand(6, 2, 1, 4, generator=g, dtype=torch.float64).requires_grad_()
    mask = (torch.rand(6, 1, 1, 1, generator=g) < 0.7).double() if masked else None
    out = outer_row(a, b, 2, mask)
    plain = (a.transpose(-1, -2) * b).reshape(6, 2, 1, 12)
    assert (out - (plain if mask is None else mask - mask * plain)).abs().max().item() < 1e-15
    assert torch.autograd.gradcheck(lambda a, b: outer_row(a, b, 2, mask), (a, b))


@pytest.mark.parametrize("gating", ["vector", "scalar", "none"])
@pytest.mark.parametrize("feature_map", ["pp_relu", "elu1", "relu", "dpfp"])
def test_training_terms_equal_forward(feature_map: str, gating: str) -> None:
    """The training form's terms (fused for the paper's map) equal the acting form's features and decays."""
    torch.manual_seed(0)
    feats = GatedFeatures(8, 2, 4, 3, feature_map, gating).double()
    x = torch.randn(10, 8, dtype=torch.float64)
    m = (torch.rand(10, 1, 1, 1) < 0.8).double()
    f = feats(x, layout="row")
    gk = torch.zeros(()) if f.gate_k is None else f.gate_k
    gv = torch.zeros(()) if f.gate_v is None else f.gate_v
    expected = (f.v_bar, f.k_bar, f.phi_q, m * (1 - gk), m * (1 - gv))
    got = feats.training_terms(x, m)
    for e, t in zip(expected, got, strict=True):
        assert (e.expand_as(t) - t).abs().max().item() < 1e-12
    w = [torch.randn(t.shape, dtype=torch.float64) for t in got]
    g1 = torch.autograd.grad(sum((t * wi).sum() for t, wi in zip(got, w, strict=True)), list(feats.parameters()))
    g2 = torch.autograd.grad(
        sum((e.expand_as(t) * wi).sum() for e, t, wi in zip(expected, got, w, strict=True)), list(feats.parameters())
    )
    assert all((x - y).abs().max().item() < 1e-10 for x, y in zip(g1, g2, strict=True))


@pytest.mark.parametrize(
    "cfg",
    [
        small(),
        small(r=3, frequencies="distinct"),
        small(feature_map="dpfp"),
        small(first_write="full"),
        small(first_write="mixed"),
    ],
)
def test_gradients_of_sequence_form_match_step_loop(cfg: ModelConfig, gradient_gap) -> None:
    """The training form's hand-written backward passes give the step loop's gradients (float64)."""
    model = make(cfg).double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(21, 2, IN, generator=g, dtype=torch.float64)
    reset = torch.zeros(21, 2, dtype=torch.bool)
    reset[9, 0] = True
    w = torch.randn(21, 2, cfg.d_model, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, state = model(
            torch.randn(5, 2, IN, generator=g, dtype=torch.float64),
            torch.zeros(5, 2, dtype=torch.bool),
            {k: v.double() if v.is_floating_point() else v for k, v in model.initial_state(2).items()},
        )
    assert gradient_gap(model, x, reset, state, w) < 1e-9


@pytest.mark.parametrize("reset_counter", [True, False])
@pytest.mark.parametrize("grid", ["reference", "distinct"])
@pytest.mark.parametrize("r", [1, 2, 3, 8])
def test_sequence_equals_step_by_step(r: int, grid: str, reset_counter: bool) -> None:
    model = make(small(r=r, frequencies=grid, reset_counter=reset_counter))
    check_sequence_equals_steps(model, t_len=256 if (r, grid, reset_counter) == (3, "distinct", True) else 48)


@pytest.mark.parametrize("gating", ["vector", "scalar", "none"])
@pytest.mark.parametrize("feature_map", ["pp_relu", "elu1", "relu", "dpfp"])
def test_sequence_equals_step_by_step_feature_maps_and_gating(feature_map: str, gating: str) -> None:
    check_sequence_equals_steps(make(small(r=3, feature_map=feature_map, gating=gating)), t_len=32, batch=2)


@pytest.mark.parametrize(("feature_map", "gating"), [("pp_relu", "vector"), ("elu1", "vector"), ("dpfp", "scalar")])
@pytest.mark.parametrize("scan", ["chunked", "doubling"])
@pytest.mark.parametrize("first_write", ["full", "mixed"])
def test_sequence_equals_step_by_step_full_first_write(feature_map: str, gating: str, scan: str, first_write) -> None:
    cfg = small(
        r=3, frequencies="distinct", feature_map=feature_map, gating=gating, first_write=first_write, agalite_scan=scan
    )
    check_sequence_equals_steps(make(cfg), t_len=48, batch=3)


@pytest.mark.parametrize("gating", ["vector", "scalar"])
def test_full_first_write_fills_the_emptied_state(gating: str) -> None:
    """At an episode start the state holds the first step unscaled (gates 1): a gated model whose gates were
    forced open writes the same state there and reads out the same, whatever state came before the reset."""
    cfg = small(gating=gating, first_write="full")
    full = make(cfg).double()
    gated = make(dataclasses.replace(cfg, first_write="gated")).double()
    gated.load_state_dict(full.state_dict())
    g = torch.Generator().manual_seed(4)
    x = randn64(1, 2, IN, generator=g)
    reset = torch.ones(1, 2, dtype=torch.bool)
    _, init = to64(full, full.initial_state(2))
    with torch.no_grad():
        stale = {k: v + 1.0 if v.is_floating_point() else v for k, v in init.items()}  # a reset must ignore it
        y_full, s_full = full(x, reset, stale)
        # the gated model's first write is gamma-scaled: it differs (a test that could not tell them apart fails here)
        _, s_gated = gated(x, reset, init)
        for attention in gated.attentions:  # now force its gates open: pre-activations far positive, sigmoid == 1
            proj = attention.features.proj
            col = cfg.d_head + attention.features.n_feat
            proj.weight.view(cfg.num_heads, attention.features.width, -1)[:, col:] = 0.0
            proj.bias.view(cfg.num_heads, attention.features.width)[:, col:] = 1e3
        y_open, s_open = gated(x, reset, init)
    assert (s_gated["l0_s"] - s_full["l0_s"]).abs().max().item() > 1e-3
    assert (y_full - y_open).abs().max().item() < 1e-12  # the gates act only through writes and decays
    assert state_diff(s_full, s_open) < 1e-12


@pytest.mark.parametrize("gating", ["vector", "scalar"])
def test_mixed_first_write_opens_the_first_half_of_the_heads(gating: str) -> None:
    """With ``first_write = "mixed"`` the first layer's first head writes an episode's first step as the full write
    does and its second head as the gated write does (the first layer: later layers read a mix of both)."""
    cfg = small(gating=gating, num_heads=2, first_write="mixed")
    mixed = make(cfg).double()
    twins = {}
    for kind in ("full", "gated"):
        twins[kind] = make(dataclasses.replace(cfg, first_write=kind)).double()
        twins[kind].load_state_dict(mixed.state_dict())
    g = torch.Generator().manual_seed(6)
    x = randn64(1, 3, IN, generator=g)
    reset = torch.ones(1, 3, dtype=torch.bool)
    _, init = to64(mixed, mixed.initial_state(3))
    with torch.no_grad():
        states = {name: model(x, reset, init)[1] for name, model in (("mixed", mixed), *twins.items())}
    # under scalar gating the values are written ungated: only the keys and the normaliser tell the writes apart
    written = ("l0_s", "l0_tilde_k", "l0_tilde_v") if gating == "vector" else ("l0_s", "l0_tilde_k")
    for key in written:
        full, gated, got = states["full"][key], states["gated"][key], states["mixed"][key]
        assert (full[:, 1] - gated[:, 1]).abs().max().item() > 1e-3  # the two writes differ in each head
        assert (got[:, 0] - full[:, 0]).abs().max().item() < 1e-12
        assert (got[:, 1] - gated[:, 1]).abs().max().item() < 1e-12


@pytest.mark.parametrize(("num_heads", "opened"), [(1, 1), (2, 1), (3, 2), (4, 2)])
def test_mixed_first_write_rounds_half_the_heads_up(num_heads: int, opened: int) -> None:
    model = make(small(num_heads=num_heads, d_head=4, first_write="mixed"))
    assert [a.features.full_heads for a in model.attentions] == [opened, opened]


@pytest.mark.parametrize(
    "cfg",
    [
        small(r=8, frequencies="distinct"),
        small(r=4),
        small(r=2, gating="scalar"),
        small(first_write="full"),
        small(first_write="mixed"),
    ],
)
def test_reset_mid_sequence_equals_fresh_state(cfg: ModelConfig) -> None:
    model = make(cfg)
    g = torch.Generator().manual_seed(2)
    t_len, batch, k = 40, 2, 23
    model, init = to64(model, model.initial_state(batch))
    x = randn64(t_len, batch, IN, generator=g)
    reset = torch.zeros(t_len, batch, dtype=torch.bool)
    reset[k] = True
    x2 = x.clone()
    x2[:k] = randn64(k, batch, IN, generator=g)
    with torch.no_grad():
        y, _ = model(x, reset, init)
        y_fresh, _ = model(x[k:], reset[k:], init)
        y2, _ = model(x2[:k], reset[:k], init)
        y2b, _ = run_steps(model, x2, reset, init)
    assert (y[k:] - y_fresh).abs().max().item() < ALGEBRA_TOL
    assert (y2b[k:] - y_fresh).abs().max().item() < ALGEBRA_TOL
    assert (y2 - y[:k]).abs().max().item() > 1e-3  # the history did matter before the reset


def test_reset_without_counter_reset_clears_memory_but_keeps_time() -> None:
    model = make(small(r=4, reset_counter=False))
    g = torch.Generator().manual_seed(3)
    t_len, batch, k = 30, 2, 11
    model, init = to64(model, model.initial_state(batch))
    x = randn64(t_len, batch, IN, generator=g)
    reset = torch.zeros(t_len, batch, dtype=torch.bool)
    reset[k] = True
    with torch.no_grad():
        y, _ = model(x, reset, init)
        fresh = dict(init)
        fresh["tick"] = torch.full((batch, 1), k % model.period, dtype=torch.int64)  # same absolute time
        y_fresh, _ = model(x[k:], reset[k:], fresh)
        y_time0, _ = model(x[k:], reset[k:], init)
    assert (y[k:] - y_fresh).abs().max().item() < ALGEBRA_TOL
    assert (y[k:] - y_time0).abs().max().item() > 1e-4  # r=4: the cosines depend on absolute time


@pytest.mark.parametrize("cfg", [small(r=3), small(r=2, gating="scalar", feature_map="dpfp"), small(r=1)])
def test_gradients_reach_every_parameter(cfg: ModelConfig) -> None:
    model = make(cfg)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        _, state = model(
            torch.randn(9, 2, IN, generator=g), torch.zeros(9, 2, dtype=torch.bool), model.initial_state(2)
        )
    reset = torch.zeros(16, 2, dtype=torch.bool)
    reset[5, 1] = True
    y, _ = model(torch.randn(16, 2, IN, generator=g), reset, state)
    (y * torch.randn(y.shape, generator=g)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("eta,per_layer", [(4, 3585), (8, 6657)])
def test_state_floats_match_paper(eta: int, per_layer: int) -> None:
    """docs/models.md#costs: H d (r eta + r + eta) + 1 per layer; the +1 float tick is one int64 counter here."""
    model = AGaLiTe(128, ModelConfig(eta=eta))
    assert model.state_floats_per_env() == 4 * (per_layer - 1)
    spec = model.state_spec()
    ints = [name for name, s in spec.items() if not s.dtype.is_floating_point]
    assert ints == ["tick"] and spec["tick"].dtype == torch.int64 and spec["tick"].numel == 1


def test_paper_init_orthogonal_and_gate_bias() -> None:
    model = AGaLiTe(128, ModelConfig(memory_init="default"))  # the reference's init; chrono sets the decay biases
    block = model.stack.blocks[0]
    assert isinstance(block, GatedTransformerBlock) and isinstance(block.attention, AGaLiTeAttention)
    attn = block.attention
    w = attn.features.proj.weight.view(4, -1, 128)
    # the rows that came from the reference's 5Hd Dense are one orthogonal(sqrt 2) matrix (columns orthonormal*2)
    a_rows = torch.cat([w[:, :192], w[:, 200:328]], dim=1).reshape(-1, 128)  # v,k,q | beta,gamma per head
    assert torch.allclose(a_rows.T @ a_rows, 2 * torch.eye(128), atol=1e-4)
    assert torch.all(attn.features.proj.bias == 0)
    assert torch.all(block.gate1.b_g == 2.0)


def _read_out_bound_run(r: int, steps: int, chunk: int) -> None:
    torch.manual_seed(5)
    cfg = small(num_layers=1, d_model=8, num_heads=1, d_head=4, eta=2, r=r)
    model = AGaLiTe(IN, cfg)
    attn = model.stack.blocks[0].attention
    assert isinstance(attn, AGaLiTeAttention)
    g = torch.Generator().manual_seed(6)
    st = model.initial_state(1)
    tk, tv, s, tick = st["l0_tilde_k"], st["l0_tilde_v"], st["l0_s"], st["tick"]
    worst, vmax = 0.0, torch.zeros(1, 4)
    with torch.no_grad():
        for _ in range(steps // chunk):
            x = torch.randn(chunk, 1, 8, generator=g) * 3
            reset = torch.rand(chunk, 1, generator=g) < 1e-4
            n = model.counter_steps(reset, tick)
            tick = n[-1:].T
            c_col = model.cos_table[n].unsqueeze(2)
            m = (~reset).float().reshape(chunk, 1, 1, 1, 1)
            o, (tk, tv, s) = attn.attend(x, m, c_col, tk, tv, s)
            v = attn.features.proj(x).view(chunk, 1, 1, -1)[..., :4]
            assert torch.isfinite(o).all() and torch.isfinite(tk).all() and torch.isfinite(s).all()
            assert int(tick.min()) >= 0 and int(tick.max()) < model.period
            vmax = torch.maximum(vmax, v.abs().amax(dim=(0, 1)))  # [H, d], running max over all steps so far
            worst = max(worst, (o.abs().amax(dim=(0, 1, 3)) / vmax).max().item())
    assert worst <= 0.5 + 1e-4, worst  # docs/models.md#agalite: |o| <= max|v| / 2


@pytest.mark.parametrize("r", [2, 8])
def test_read_out_bounded_over_a_million_steps(r: int) -> None:
    _read_out_bound_run(r, steps=1_000_000 if r == 2 else 131_072, chunk=8192)


@pytest.mark.parametrize("r", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("grid", ["reference", "distinct"])
def test_integer_counter_gives_reference_cosines(r: int, grid: str) -> None:
    model = make(small(r=r, frequencies=grid, reset_counter=True))
    steps = 100_000
    n = model.counter_steps(torch.zeros(steps, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.int64))
    ours = model.cos_table[n[:, 0], :, 0].numpy()  # [steps, r], float32
    tau = np.arange(2, steps + 2)
    omega = frequencies(r, grid).numpy()
    exact = np.cos(np.outer(tau, omega))  # float64 truth
    ref32 = np.cos(np.outer(tau.astype(np.float32), omega.astype(np.float32)).astype(np.float32))  # the reference
    assert np.abs(ours - exact).max() < 1e-6  # no drift at all over 1e5 steps
    ref_ok = np.abs(ref32 - exact).max(axis=1) < 1e-5
    prefix = int(np.argmin(ref_ok)) if not ref_ok.all() else steps  # where the float reference is still exact
    assert prefix >= 50
    # within the prefix both are near the truth (ours < 1e-6, the reference < 1e-5 by the choice of prefix; numpy's
    # float32 cos differs between CPUs by a few ulp), so they are within 1.1e-5 of each other
    assert np.abs(ours[:prefix] - ref32[:prefix]).max() < 1.1e-5
    if grid == "reference":
        assert np.allclose(omega, np.linspace(-math.pi, math.pi, r) if r > 1 else [-math.pi])
    assert cosine_table(r, grid).shape == (counter_period(r), r)
    # reset_counter: after an episode start the cosines restart from tau = 2
    reset = torch.zeros(50, 1, dtype=torch.bool)
    reset[17] = True
    n2 = model.counter_steps(reset, torch.full((1, 1), 3, dtype=torch.int64))
    assert torch.equal(model.cos_table[n2[17:]], model.cos_table[n[:33]])


def test_distinct_frequencies_are_distinct() -> None:
    for r in (2, 3, 8):
        omega = frequencies(r, "distinct")
        assert len(set(omega.tolist())) == r and omega.min() >= 0 and omega.max() <= math.pi + 1e-12


def test_bad_config_raises() -> None:
    for bad in (dict(feature_map="softmax"), dict(gating="matrix"), dict(frequencies="dft"), dict(r=0)):
        with pytest.raises(ValueError):
            AGaLiTe(IN, small(**bad))
    model = make(small())
    with pytest.raises(ValueError):
        model(torch.zeros(3, 2, IN + 1), torch.zeros(3, 2, dtype=torch.bool), model.initial_state(2))


def test_single_step_exports_to_onnx_and_matches(check_step_onnx) -> None:
    check_step_onnx(make(small(r=3)), IN)
