"""Projections, feature maps and gates shared by AGaLiTe and GaLiTe (docs/models.md#feature-maps-and-gates).

One fused ``nn.Linear`` produces every per-head quantity, laid out per head as
``[v | k^ q^ (p1 p2) | (beta^ gamma^ (p3)) or (g)]`` so that one Reshape and one Split yield the value, the
pre-activation feature group (one Relu/Elu node for all of it) and the gate group (one Sigmoid node). At batch 1
ONNX Runtime's per-node overhead dominates, so this ordering (not the reference's [k,q,v,beta,gamma] / [p1,p2,p3])
is chosen for node count; weights are initialised as the reference's two orthogonal(sqrt 2) Dense layers
(d_model -> 5Hd and d_model -> 3H*eta), whose rows are merely permuted here, so the initial distribution and the
maths are identical (only weight porting would need the permutation).

Feature maps (``cfg.feature_map``), for keys and queries alike:
* ``pp_relu``: phi(k) = vec(ReLU(p1) (x) ReLU(k^)), eta-major (index n*d + i), dim eta*d (the paper's map);
* ``elu1``: ELU(k^) + 1, dim d;  ``relu``: ReLU(k^), dim d;
* ``dpfp``: Schlag et al.'s DPFP with nu = eta: x' = [ReLU(k^), ReLU(-k^)], phi = concat_{i=1..nu} x' * roll(x', i),
  dim 2*d*eta.
Gating (``cfg.gating``):
* ``vector``: beta = sigmoid(beta^) in (0,1)^d on values; gamma on features: sigmoid(p3) (x) sigmoid(gamma^) for
  pp_relu (the paper's), sigmoid(gamma^) for elu1/relu, sigmoid(p3) (x) [sigmoid(gamma^), sigmoid(gamma^)] for dpfp
  (our choice: the same projected-sigmoid structure, matched to DPFP's layout);
* ``scalar``: one g = sigmoid(w.x) per head for both (Peng et al.): writes g*phi(k), decay 1 - g;
* ``none``: no gate (plain linear-transformer accumulation, decay 1).
Write vectors: v_bar = beta * v (v for scalar/none), k_bar = gamma * phi(k) (g * phi(k) for scalar, phi(k) for none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import chrono_bias
from models.config import ModelConfig
from models.scan import rows_dot

FEATURE_MAPS = ("pp_relu", "elu1", "relu", "dpfp")
GATINGS = ("vector", "scalar", "none")


@dataclass
class Features:
    """Per-step, per-head quantities, shaped so that state updates and read-outs need no extra reshapes.

    Value-side quantities are rows [N, H, 1, d] and phi(q) a row [N, H, 1, F], so read-outs are MatMuls.
    Key-side quantities are columns [N, H, F, 1] (``layout='column'``: key-side states stored [.., F, rows], as
    GaLiTe's C) or rows [N, H, 1, F] (``layout='row'``: states stored [.., rows, F], as AGaLiTe's K~ and s; every
    elementwise op then runs over a long last axis, which both ONNX Runtime and torch broadcast far faster than a
    trailing axis of size 1 or r). Gates are None for ``gating='none'``.
    """

    v_bar: torch.Tensor  # [N, H, 1, d]
    k_bar: torch.Tensor  # [N, H, F, 1] (column) or [N, H, 1, F] (row)
    phi_q: torch.Tensor  # [N, H, 1, F]
    gate_v: torch.Tensor | None  # [N, H, 1, d] (vector) or [N, H, 1, 1] (scalar)
    gate_k: torch.Tensor | None  # [N, H, F, 1] / [N, H, 1, F] (vector) or [N, H, 1, 1] (scalar)


def feature_dim(feature_map: str, d_head: int, eta: int) -> int:
    """Feature dimension F per head."""
    if feature_map == "pp_relu":
        return eta * d_head
    if feature_map in ("elu1", "relu"):
        return d_head
    if feature_map == "dpfp":
        return 2 * d_head * eta
    raise ValueError(f"unknown feature_map {feature_map!r}; expected one of {FEATURE_MAPS}")


def full_first_write_heads(cfg: ModelConfig) -> int:
    """How many of a layer's heads write an episode's first step whole: none (gated), all (full), or the first half
    of them, rounded up (mixed)."""
    return {"gated": 0, "full": cfg.num_heads, "mixed": (cfg.num_heads + 1) // 2}[cfg.first_write]


def _outer(a: torch.Tensor, b: torch.Tensor, h: int, n: int, m: int, column: bool = False) -> torch.Tensor:
    """vec(a (x) b), a-major, for a [N, H, 1, n] and b [N, H, 1, m] -> [N, H, 1, n*m] (or [N, H, n*m, 1]).

    Only static sizes enter the reshapes, so the traced graph is Reshape, Mul, Reshape (no Shape/Gather nodes).
    """
    prod = a.reshape(-1, h, n, 1) * b
    return prod.reshape(-1, h, n * m, 1) if column else prod.reshape(-1, h, 1, n * m)


class _Outer(torch.autograd.Function):
    """a (x) b for a [N, H, n, 1] and b [N, H, 1, m], or the gated decay ``m0 - m0 * (a (x) b)`` (m0 [N, 1, 1, 1]
    a constant keep-mask).

    Why a hand-written backward: autograd would materialise grad * b and grad * a at full [N, H, n, m] size and
    then sum them; here the gradient is reduced against the other factor directly (a matrix-vector product, a
    sum over the n slices), and the mask factors out of both reductions. Training form only: the exported step
    keeps plain Mul nodes.
    """

    @staticmethod
    def forward(ctx, a, b, mask):
        ctx.save_for_backward(a, b, mask)
        if mask is None:
            return a * b
        return torch.addcmul(mask, mask * a, b, value=-1.0)

    @staticmethod
    def backward(ctx, grad):
        a, b, mask = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.matmul(grad, b.transpose(-1, -2))  # [N, H, n, 1]
        if ctx.needs_input_grad[1]:
            grad_b = rows_dot(a, grad, grad.new_empty(b.shape))  # [N, H, 1, m]: sum over the n slices
        if mask is not None:
            grad_a = None if grad_a is None else grad_a * -mask
            grad_b = None if grad_b is None else grad_b * -mask
        return grad_a, grad_b, None


def outer_row(a: torch.Tensor, b: torch.Tensor, h: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """vec(a (x) b) as [N, H, 1, n*m] for a [N, H, 1, n] and b [N, H, 1, m], with ``_Outer``'s backward; with
    ``mask`` (m0 [N, 1, 1, 1]) the decay m0 (1 - a (x) b) instead."""
    n, m = a.shape[-1], b.shape[-1]
    return _Outer.apply(a.reshape(-1, h, n, 1), b, mask).reshape(-1, h, 1, n * m)


class GatedFeatures(nn.Module):
    """x [N, d_model] (already layer-normed) -> ``Features``; one fused Linear, few graph nodes."""

    open_heads: torch.Tensor  # buffer, registered in __init__ (declared for type checkers)

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_head: int,
        eta: int,
        feature_map: str = "pp_relu",
        gating: str = "vector",
        memory_horizon: int | None = None,
        full_heads: int = 0,
    ) -> None:
        super().__init__()
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"unknown feature_map {feature_map!r}; expected one of {FEATURE_MAPS}")
        if gating not in GATINGS:
            raise ValueError(f"unknown gating {gating!r}; expected one of {GATINGS}")
        for name, value in (("d_model", d_model), ("num_heads", num_heads), ("d_head", d_head), ("eta", eta)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.h, self.d, self.eta = num_heads, d_head, eta
        self.feature_map, self.gating = feature_map, gating
        self.f = feature_dim(feature_map, d_head, eta)
        uses_p = feature_map == "pp_relu"
        uses_p3 = gating == "vector" and feature_map in ("pp_relu", "dpfp")
        # per-head layout; reference block of each piece: 'a' = the 5Hd Dense, 'p' = the 3H*eta Dense, 'g' = own
        pieces: list[tuple[str, int, str]] = [("v", d_head, "a"), ("k", d_head, "a"), ("q", d_head, "a")]
        if uses_p:
            pieces += [("p1", eta, "p"), ("p2", eta, "p")]
        if gating == "vector":
            pieces += [("beta", d_head, "a"), ("gamma", d_head, "a")]
            if uses_p3:
                pieces.append(("p3", eta, "p"))
        elif gating == "scalar":
            pieces.append(("g", 1, "g"))
        self.pieces = pieces
        self.width = sum(s for _, s, _ in pieces)
        self.n_feat = 2 * d_head + (2 * eta if uses_p else 0)
        self.n_gate = self.width - d_head - self.n_feat
        self.proj = nn.Linear(d_model, num_heads * self.width)
        self.memory_horizon = memory_horizon
        # how many heads (the first ones) write an episode's first step whole
        if not 0 <= full_heads <= num_heads:
            raise ValueError(f"full_heads must be in 0..{num_heads}, got {full_heads}")
        self.full_heads = 0 if gating == "none" else full_heads
        self.full_first_write = self.full_heads > 0
        # per head, 1 where the first write is whole: broadcast against the [N, 1, 1, 1] keep-mask (not saved: it
        # follows from the config, so checkpoints of every first-write setting keep one set of parameters)
        open_heads = (torch.arange(num_heads) < self.full_heads).to(torch.get_default_dtype()).view(num_heads, 1, 1)
        self.register_buffer("open_heads", open_heads, persistent=False)
        self.reset_parameters()

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> GatedFeatures:
        """The projections of one AGaLiTe or GaLiTe layer, with chrono gate biases when ``cfg`` asks for them."""
        horizon = cfg.memory_horizon if cfg.memory_init == "chrono" else None
        full = full_first_write_heads(cfg) if cfg.kind == "agalite" else 0
        return cls(cfg.d_model, cfg.num_heads, cfg.d_head, cfg.eta, cfg.feature_map, cfg.gating, horizon, full)

    def _open_at_start(self, gate: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """With ``full_first_write``, every gate is 1 at an episode start (keep = 0) and unchanged elsewhere.

        Why: a write scaled by gamma into an emptied state weighs the episode's first step like any later step in
        the normalised read-out, so after n steps of a corridor a cue is 1 part in ~n of what a query reads (a
        fresh AGaLiTe's output does not carry the T-Maze cue, bench/results/cue_at_init.md). Written whole, the
        first step is what each memory holds until its decay lets later writes in: an exponential average started
        at its first value instead of at zero. The decay m (1 - gate) is unchanged by this (m = 0 there).

        With only some heads open (``first_write = "mixed"``), the others keep the gated write, whose memories give a
        cue seen a few steps after the start its share of the read-out instead of the first step's fading remainder.
        """
        if not self.full_first_write or keep is None:
            return gate
        if self.full_heads < self.h:  # per head: the keep-mask where the first write is whole, 1 (no opening) elsewhere
            keep = torch.addcmul(1.0 - self.open_heads, self.open_heads, keep)
        return torch.addcmul(1.0 - keep, keep, gate)

    def reset_parameters(self) -> None:
        """Orthogonal(sqrt 2) per reference Dense (rows scattered into the per-head layout), zero bias (or the chrono
        bias on the decay gates when ``memory_horizon`` is set)."""
        d_model = self.proj.in_features
        with torch.no_grad():
            rows: dict[str, torch.Tensor] = {}
            for group in dict.fromkeys(g for _, _, g in self.pieces):
                w = torch.empty(self.h * sum(s for _, s, g in self.pieces if g == group), d_model)
                nn.init.orthogonal_(w, gain=math.sqrt(2))
                rows[group] = w
            used = {g: 0 for g in rows}
            weight = self.proj.weight.view(self.h, self.width, d_model)
            for head in range(self.h):
                col = 0
                for _, size, group in self.pieces:
                    weight[head, col : col + size] = rows[group][used[group] : used[group] + size]
                    used[group] += size
                    col += size
            self.proj.bias.zero_()
            if self.memory_horizon is not None:
                # Chrono: decay 1 - sigmoid(b) keeps a memory about 1 + e^-b steps; b = -chrono_bias spreads the
                # units' initial memories over [2, horizon] instead of halving every state each step.
                bias = self.proj.bias.view(self.h, self.width)
                col = 0
                for name, size, _ in self.pieces:
                    if name in ("beta", "gamma", "g"):
                        bias[:, col : col + size] = -chrono_bias(self.h * size, self.memory_horizon).view(self.h, size)
                    col += size

    def _feature(self, z: torch.Tensor) -> torch.Tensor:
        if self.feature_map == "relu" or self.feature_map == "pp_relu":
            return torch.relu(z)
        if self.feature_map == "elu1":
            return F.elu(z) + 1.0
        return torch.cat([torch.relu(z), torch.relu(-z)], dim=-1)  # dpfp first stage, per key / query below

    def _dpfp(self, xp: torch.Tensor) -> torch.Tensor:
        return torch.cat([xp * torch.roll(xp, shifts=i, dims=-1) for i in range(1, self.eta + 1)], dim=-1)

    def forward(self, x: torch.Tensor, layout: str = "column", keep: torch.Tensor | None = None) -> Features:
        """x [N, d_model] -> Features (N = batch when acting, T*B when training); ``layout`` of the key side; ``keep``
        [N, 1, 1, 1] the keep-mask (0 at an episode start), read only with ``full_first_write``."""
        if layout not in ("column", "row"):
            raise ValueError(f"unknown layout {layout!r}; expected 'column' or 'row'")
        column = layout == "column"
        d, eta, h = self.d, self.eta, self.h
        z = self.proj(x).reshape(-1, h, 1, self.width)
        if self.n_gate:
            v, feat, gate = torch.split(z, [d, self.n_feat, self.n_gate], dim=-1)
            gate = self._open_at_start(torch.sigmoid(gate), keep)
        else:
            v, feat = torch.split(z, [d, self.n_feat], dim=-1)
            gate = None
        if self.feature_map == "pp_relu":
            k, q, p1, p2 = torch.split(torch.relu(feat), [d, d, eta, eta], dim=-1)
            phi_q = _outer(p2, q, h, eta, d)
        elif self.feature_map == "dpfp":
            k, q = torch.split(feat, [d, d], dim=-1)
            k, q = self._feature(k), self._feature(q)
            phi_q = self._dpfp(q)
        else:
            k, q = torch.split(self._feature(feat), [d, d], dim=-1)
            phi_q = q
        col = (-1, h, self.f, 1) if column else (-1, h, 1, self.f)
        if self.gating == "vector":
            assert gate is not None
            if self.feature_map == "pp_relu":
                beta, sg, p3 = torch.split(gate, [d, d, eta], dim=-1)
                # gamma * phi(k) with gamma = sigmoid(p3) (x) sigmoid(gamma^), as one outer product
                k_bar = _outer(p1 * p3, k * sg, h, eta, d, column=column)
                gamma = _outer(p3, sg, h, eta, d, column=column)
            elif self.feature_map == "dpfp":
                beta, sg, p3 = torch.split(gate, [d, d, eta], dim=-1)
                gamma = _outer(p3, torch.cat([sg, sg], dim=-1), h, eta, 2 * d, column=column)
                k_bar = gamma * self._dpfp(k).reshape(col)
            else:
                beta, sg = torch.split(gate, [d, d], dim=-1)
                gamma = sg.reshape(col)
                k_bar = gamma * k.reshape(col)
            return Features(v_bar=beta * v, k_bar=k_bar, phi_q=phi_q, gate_v=beta, gate_k=gamma)
        if self.feature_map == "pp_relu":
            phi_k = _outer(p1, k, h, eta, d, column=column)
        else:
            phi_k = (self._dpfp(k) if self.feature_map == "dpfp" else k).reshape(col)
        if self.gating == "scalar":
            assert gate is not None
            return Features(v_bar=v, k_bar=gate * phi_k, phi_q=phi_q, gate_v=gate, gate_k=gate)
        return Features(v_bar=v, k_bar=phi_k, phi_q=phi_q, gate_v=None, gate_k=None)

    def training_terms(
        self, x: torch.Tensor, m: torch.Tensor, factored: bool = False
    ) -> tuple[torch.Tensor, Any, Any, torch.Tensor, torch.Tensor]:
        """(v_bar, k_bar, phi_q, dk, dv) in the row layout for a training form: x [N, d_model], m [N, 1, 1, 1]
        the keep-mask; dk = m (1 - gamma), dv = m (1 - beta) (m alone without gating; dv = dk for scalar gating).

        For the paper's pp_relu + vector gating the outer products and the key decay come from ``outer_row``
        (reduced gradients, gamma never materialised) after a single Split (nested Splits would each Concat
        their gradients again in backward); other maps go through ``forward`` (same values). ``factored``: for
        that map, return k_bar and phi_q as their outer-product factors ((p1 p3, k sg) and (p2, q), each
        [N, H, 1, eta] and [N, H, 1, d]) for ``scan_readout_outer``; other maps ignore it.
        """
        if self.feature_map == "pp_relu" and self.gating == "vector":
            d, eta, h = self.d, self.eta, self.h
            v, k, q, p1, p2, beta, sg, p3 = torch.split(
                self.proj(x).reshape(-1, h, 1, self.width), [d, d, d, eta, eta, d, d, eta], dim=-1
            )
            k, q, p1, p2 = torch.relu(k), torch.relu(q), torch.relu(p1), torch.relu(p2)
            beta, sg, p3 = (self._open_at_start(torch.sigmoid(g), m) for g in (beta, sg, p3))
            dv = torch.addcmul(m, m, beta, value=-1.0)
            if factored:
                return beta * v, (p1 * p3, k * sg), (p2, q), outer_row(p3, sg, h, mask=m), dv
            return beta * v, outer_row(p1 * p3, k * sg, h), outer_row(p2, q, h), outer_row(p3, sg, h, mask=m), dv
        f = self.forward(x, layout="row", keep=m)
        if f.gate_k is None or f.gate_v is None:  # gating "none": both gates are None
            return f.v_bar, f.k_bar, f.phi_q, m, m
        dk = torch.addcmul(m, m, f.gate_k, value=-1.0)
        dv = dk if self.gating == "scalar" else torch.addcmul(m, m, f.gate_v, value=-1.0)
        return f.v_bar, f.k_bar, f.phi_q, dk, dv
