"""GaLiTe: exact gated linear attention with a matrix state per head (docs/models.md#galite).

Paper form (``cfg.galite_variant="paper"``), per head, with m = 0 at an episode start:
``C <- m ((1-gamma) (x) (1-beta)) * C + k_bar (x) v_bar``, ``s <- m (1-gamma) * s + k_bar``,
``o = phi(q) C / (phi(q) . s + 1e-5)``; C is stored key-major, [B, H, F, d] (the transpose of the paper's
d x F), so the read-out is a row-times-matrix MatMul. Because the decay factorises and k_bar, phi(q) >= 0, every
read-out is a convex-like combination of past v_bar: |o| <= max |v_bar|.

Code form (``"code"``): what the reference GaLiTe code computes, kept where it changes the maths:
the decay of C is ``1 - gamma (x) beta`` (not factorised; can be unbounded), epsilon 1e-10, and the first-layer
embedding has no ReLU. Skipped (they change parametrisation, not the recurrence): separate per-head Dense modules
(our fused projection is per-head slices already), the key feature map applied to x directly, the extra query
projection, the d-major feature layout, the unused rotary tick, the sequential scan.

``cfg.feature_map`` / ``cfg.gating`` switch the feature map and gating (``models/feature_maps.py``); scalar and
no gating decay C and s by one number per head, so both variants coincide there (except epsilon/embedding).

Training form (T > 1): a Python loop over chunks of ``chunk_size`` steps (not over T). Paper form with autograd:
inside a chunk the causal, decay-weighted "attention" between steps t >= i uses pairwise decay products D[t, i]
(cumulative products of numbers in (0, 1], never divided), and only C at chunk boundaries is materialised. Code
form, or no autograd: the chunk's C states are materialised with the parallel scan (recomputed in backward by
activation checkpointing). See ``GaLiTeAttention.form``.
T == 1 has a dedicated lean path (acting, ONNX export).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.base import SequenceModel, State, StateSpec
from models.blocks import GatedStack, orthogonal_init_
from models.config import GaLiTeForm, ModelConfig
from models.feature_maps import Features, GatedFeatures, feature_dim
from models.scan import linear_scan

EPS = {"paper": 1e-5, "code": 1e-10}
VARIANTS = tuple(EPS)


def _map_features(f: Features, fn: Callable[[torch.Tensor], torch.Tensor]) -> Features:
    """``fn`` applied to every quantity of ``f``; absent gates stay None."""
    gate_v = None if f.gate_v is None else fn(f.gate_v)
    gate_k = None if f.gate_k is None else fn(f.gate_k)
    return Features(fn(f.v_bar), fn(f.k_bar), fn(f.phi_q), gate_v, gate_k)


def _pair_decays(decay: torch.Tensor) -> torch.Tensor:
    """D[t, j] = prod_{l=j..t} decay_l for t >= j, else 1; decay [c, ...] -> [c, c+1, ...].

    Column j = 0 is the decay from the chunk start; column i+1 the decay applied after a write at step i.
    """
    c = decay.shape[0]
    t = torch.arange(c, device=decay.device)
    keep = (t.unsqueeze(1) >= torch.arange(c + 1, device=decay.device).unsqueeze(0)).reshape(
        c, c + 1, *([1] * (decay.dim() - 1))
    )
    y = torch.where(keep, decay.unsqueeze(1), torch.ones((), dtype=decay.dtype, device=decay.device))
    # a running product along t, written as the scan h_t = y_t h_{t-1} (h_0 = 1): its hand-written backward is
    # much cheaper than cumprod's, which takes a slow path whenever a reset puts an exact zero in y
    return linear_scan(y, torch.zeros_like(y), torch.ones_like(y[0]))


class GaLiTeAttention(nn.Module):
    """One GaLiTe attention layer: ``forward(x, m, c, s) -> (out, (c, s))``; ``attend`` gives the head read-out.

    ``form`` picks the multi-step computation per chunk: ``pairwise`` (decay-weighted causal attention inside the
    chunk; memory O(chunk^2 F) instead of O(chunk F d); factorised decays only), ``scan`` (materialise the chunk's
    C states with the parallel scan; recomputed in backward), or ``auto``: pairwise when gradients are needed and
    the decay factorises, otherwise scan (cheapest without autograd, e.g. long evaluation runs).
    """

    def __init__(self, cfg: ModelConfig, chunk_size: int = 16) -> None:
        super().__init__()
        if cfg.galite_variant not in VARIANTS:
            raise ValueError(f"unknown galite_variant {cfg.galite_variant!r}; expected one of {VARIANTS}")
        self.h, self.d = cfg.num_heads, cfg.d_head
        self.variant = cfg.galite_variant
        self.eps = EPS[cfg.galite_variant]
        self.features = GatedFeatures.from_config(cfg)
        self.f = self.features.f
        self.chunk_size = chunk_size
        self.form = cfg.galite_form
        self.out = nn.Linear(cfg.num_heads * cfg.d_head, cfg.d_model)
        orthogonal_init_(self.out)

    @property
    def factorised(self) -> bool:
        """Whether C's decay is (key decay) (x) (value decay): always except the code form's vector gating."""
        return not (self.variant == "code" and self.features.gating == "vector")

    def forward(self, x: torch.Tensor, m: torch.Tensor, c: torch.Tensor, s: torch.Tensor):
        o, state = self.attend(x, m, c, s)
        lead = (-1,) if x.dim() == 2 else (x.shape[0], x.shape[1])
        return self.out(o.reshape(*lead, self.h * self.d)), state

    def attend(self, x: torch.Tensor, m: torch.Tensor, c: torch.Tensor, s: torch.Tensor):
        """Per-head read-out o [(T,) B, H, 1, d] and the new (C, s). m: [(T,) B, 1, 1, 1] keep-mask."""
        if x.dim() == 2:
            return self._step(self.features(x), m, c, s)
        steps, batch = x.shape[0], x.shape[1]
        f = self.features(x.reshape(steps * batch, x.shape[2]))
        fs = _map_features(f, lambda t: t.reshape(steps, batch, *t.shape[1:]))
        outs = []
        size = self.chunk_size
        for start in range(0, steps, size):
            sl = slice(start, start + size)
            part = _map_features(fs, operator.itemgetter(sl))
            form = self.form
            if form == "auto":
                form = "pairwise" if (self.factorised and torch.is_grad_enabled()) else "scan"
            if form == "pairwise":
                if not self.factorised:
                    raise ValueError("the pairwise form needs a factorised decay; the code form's vector gating is not")
                o, c, s = self._chunk_factorised(part, m[sl], c, s)
            elif torch.is_grad_enabled():
                o, c, s = checkpoint(
                    self._chunk_materialised,
                    part.v_bar,
                    part.k_bar,
                    part.phi_q,
                    part.gate_v,
                    part.gate_k,
                    m[sl],
                    c,
                    s,
                    use_reentrant=False,
                )
            else:
                o, c, s = self._chunk_materialised(
                    part.v_bar, part.k_bar, part.phi_q, part.gate_v, part.gate_k, m[sl], c, s
                )
            outs.append(o)
        return torch.cat(outs, dim=0), (c, s)

    def _decays(self, f: Features, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(key-side decay incl. the reset mask, value-side decay or None); C decays by their outer product."""
        if f.gate_k is None or f.gate_v is None:  # gating "none": both gates are None
            return m, None
        dk = m * (1.0 - f.gate_k)
        if self.features.gating == "scalar":  # one gate per head: decay C once
            return dk, None
        return dk, 1.0 - f.gate_v

    def _step(self, f: Features, m: torch.Tensor, c: torch.Tensor, s: torch.Tensor):
        dk, dv = self._decays(f, m)
        if not self.factorised:  # the code form's vector gating, so both gates exist
            assert f.gate_k is not None and f.gate_v is not None
            dc = m * (1.0 - f.gate_k * f.gate_v)
        elif dv is None:
            dc = dk  # [B, H, F, d]
        else:
            dc = dk * dv
        c = dc * c + f.k_bar * f.v_bar
        s = dk * s + f.k_bar
        o = torch.matmul(f.phi_q, c) / (torch.matmul(f.phi_q, s) + self.eps)  # [B, H, 1, d]
        return o, (c, s)

    def _chunk_factorised(self, f: Features, m: torch.Tensor, c0: torch.Tensor, s0: torch.Tensor):
        n = f.k_bar.shape[0]
        dk, dv = self._decays(f, m)  # dk [n, B, H, F|1, 1], dv [n, B, H, 1, d] or None
        kb = f.k_bar[..., 0]  # [n, B, H, F]
        vb = f.v_bar[..., 0, :]  # [n, B, H, d]
        q = f.phi_q[..., 0, :]  # [n, B, H, F]
        dkp = _pair_decays(dk[..., 0])  # [n, n+1, B, H, F|1]
        causal = torch.ones(n, n, dtype=torch.bool, device=kb.device).tril().reshape(n, n, 1, 1)
        if dkp.shape[-1] == 1:
            score = dkp[:, 1:, ..., 0] * torch.einsum("ibhf,tbhf->tibh", kb, q)
        else:
            score = torch.einsum("tibhf,ibhf,tbhf->tibh", dkp[:, 1:], kb, q)
        score = score * causal  # [t, i, B, H]
        q0 = dkp[:, 0] * q  # phi(q_t) decayed back to the chunk start, [n, B, H, F]
        if dv is None:
            o = torch.einsum("tibh,ibhd->tbhd", score, vb) + torch.einsum("tbhf,bhfd->tbhd", q0, c0)
            c_end = dkp[-1, 0].unsqueeze(-1) * c0 + torch.einsum("ibhf,ibhd->bhfd", dkp[-1, 1:] * kb, vb)
        else:
            dvp = _pair_decays(dv[..., 0, :])  # [n, n+1, B, H, d]
            o = torch.einsum("tibh,tibhd,ibhd->tbhd", score, dvp[:, 1:], vb)
            o = o + dvp[:, 0] * torch.einsum("tbhf,bhfd->tbhd", q0, c0)
            c_end = dkp[-1, 0].unsqueeze(-1) * dvp[-1, 0].unsqueeze(-2) * c0 + torch.einsum(
                "ibhf,ibhd->bhfd", dkp[-1, 1:] * kb, dvp[-1, 1:] * vb
            )
        den = score.sum(1) + (q0 * s0[..., 0].unsqueeze(0)).sum(-1) + self.eps  # [n, B, H]
        s_end = dkp[-1, 0].unsqueeze(-1) * s0 + (dkp[-1, 1:] * kb).sum(0).unsqueeze(-1)
        return (o / den.unsqueeze(-1)).unsqueeze(-2), c_end, s_end

    def _chunk_materialised(self, v_bar, k_bar, phi_q, gate_v, gate_k, m, c0, s0):
        """Scan the chunk's C states [n, B, H, F, d] (any decay), then read out."""
        dk, dv = self._decays(Features(v_bar, k_bar, phi_q, gate_v, gate_k), m)
        if not self.factorised:
            dc = m * (1.0 - gate_k * gate_v)
        elif dv is None:
            dc = dk
        else:
            dc = dk * dv
        cs = linear_scan(dc, k_bar * v_bar, c0)
        ss = linear_scan(dk, k_bar, s0)
        o = torch.matmul(phi_q, cs) / (torch.matmul(phi_q, ss) + self.eps)
        return o, cs[-1], ss[-1]


class GaLiTe(SequenceModel):
    """The GaLiTe stack: embedding (Dense+ReLU; no ReLU in the code form), L gated blocks around GaLiTeAttention."""

    def __init__(self, input_dim: int, cfg: ModelConfig, chunk_size: int = 16) -> None:
        super().__init__()
        if cfg.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {cfg.num_layers}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.cfg = cfg
        self.input_dim, self.output_dim = input_dim, cfg.d_model
        self.num_layers = cfg.num_layers
        self.f = feature_dim(cfg.feature_map, cfg.d_head, cfg.eta)
        layers = [GaLiTeAttention(cfg, chunk_size) for _ in range(cfg.num_layers)]
        self.attentions = layers  # the same modules as the blocks' (a plain list: typed, not registered twice)
        self.stack = GatedStack(
            input_dim, cfg.d_model, cfg.d_ffc, layers, cfg.gru_bias, embed_relu=cfg.galite_variant == "paper"
        )

    @property
    def chunk_size(self) -> int:
        return self.attentions[0].chunk_size

    @chunk_size.setter
    def chunk_size(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"chunk_size must be >= 1, got {value}")
        for attention in self.attentions:
            attention.chunk_size = value

    def set_form(self, form: str) -> None:
        """Switch every layer's multi-step computation on this model (``ModelConfig.galite_form`` chooses it at
        construction): tests and benchmarks compare the forms on the same weights."""
        if form not in ("auto", "pairwise", "scan"):
            raise ValueError(f"unknown form {form!r}; expected auto, pairwise or scan")
        for attention in self.attentions:
            attention.form = cast(GaLiTeForm, form)  # checked just above

    def input_layer(self) -> nn.Linear:
        return self.stack.embed

    def state_spec(self) -> dict[str, StateSpec]:
        h, d, f = self.cfg.num_heads, self.cfg.d_head, self.f
        spec: dict[str, StateSpec] = {}
        for i in range(self.num_layers):
            spec[f"l{i}_c"] = StateSpec((h, f, d), torch.float32)
            spec[f"l{i}_s"] = StateSpec((h, f, 1), torch.float32)
        return spec

    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_inputs(x, reset, state)
        keep = ~reset
        if x.shape[0] == 1:
            m = keep.reshape(-1, 1, 1, 1).to(x.dtype)
            u = self.stack.embedding(x.reshape(-1, self.input_dim))
        else:
            m = keep.reshape(x.shape[0], x.shape[1], 1, 1, 1).to(x.dtype)
            u = self.stack.embedding(x)
        new: State = {}
        for i, block in enumerate(self.stack.blocks):
            u, (c, s) = block(u, m, state[f"l{i}_c"], state[f"l{i}_s"])
            new[f"l{i}_c"], new[f"l{i}_s"] = c, s
        if x.shape[0] == 1:
            u = u.reshape(1, -1, self.output_dim)
        return u, new
