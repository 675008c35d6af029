"""Pieces shared by the gated transformers (AGaLiTe, GaLiTe, GTrXL): GRU gating, the pre-LN gated block, init.

Every dense layer of the reference uses orthogonal(sqrt 2) kernels and zero biases (docs/models.md#the-gated-block).
Several logically separate matrices are fused into one ``nn.Linear`` here because ONNX Runtime's per-node overhead
dominates a batch-1 acting step; to keep the *initial distribution* identical to the unfused reference, a fused
Linear records its logical blocks (``fused_blocks``: output sizes, in order) and ``orthogonal_init_`` initialises
each block as its own orthogonal matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

#: LayerNorm epsilon: PyTorch's 1e-5 (the Flax reference uses 1e-6; docs/models.md#the-gated-block).
LN_EPS = 1e-5


def chrono_bias(n: int, horizon: int) -> torch.Tensor:
    """log(u), u ~ U(1, horizon - 1): gate biases giving time constants spread over [2, horizon].

    A gate g = sigmoid(b) that keeps the old state (h <- g h + ...) holds it for about 1 / (1 - g) = 1 + e^b steps,
    so b = log(u) spreads the units' memories from 2 to ``horizon`` steps (Tallec & Ollivier, "Can recurrent neural
    networks warp time?", 2018). With zero biases every unit halves its memory each step: after 20 steps the
    gradient that reaches the first input is ~1e-5 of the last one's for a GRU (bench/results/gradient_flow.md).
    """
    if horizon < 3:
        raise ValueError(f"memory_horizon must be >= 3, got {horizon}")
    return torch.log(torch.empty(n).uniform_(1.0, float(horizon - 1)))


def fused_linear(in_features: int, blocks: Sequence[int], bias: bool = True) -> nn.Linear:
    """One Linear standing for several stacked ones (outputs concatenated in ``blocks`` order)."""
    if not blocks or any(b <= 0 for b in blocks):
        raise ValueError(f"fused_linear needs positive block sizes, got {list(blocks)}")
    lin = nn.Linear(in_features, int(sum(blocks)), bias=bias)
    lin.fused_blocks = tuple(int(b) for b in blocks)  # type: ignore[assignment]  # stubs: Tensor | Module only
    return lin


def orthogonal_init_(module: nn.Module, gain: float = math.sqrt(2)) -> None:
    """Orthogonal kernels (per fused block) and zero biases for every ``nn.Linear`` inside ``module``."""
    for m in module.modules():
        if not isinstance(m, nn.Linear):
            continue
        blocks = getattr(m, "fused_blocks", (m.out_features,))
        with torch.no_grad():
            start = 0
            for size in blocks:
                nn.init.orthogonal_(m.weight[start : start + size], gain=gain)
                start += size
            if m.bias is not None:
                m.bias.zero_()


class GRUGatingUnit(nn.Module):
    """GTrXL's GRU-style gate g(x, y) replacing the residual add (docs/models.md#the-gated-block).

    x is the residual stream, y the sub-layer output::

        r = sigmoid(W_r y + U_r x);  z = sigmoid(W_z y + U_z x - b_g);  h = tanh(W_g y + U_g (r * x))
        g = (1 - z) * x + z * h

    The six bias-free d_model x d_model matrices are fused into three Linears (W_r|W_z|W_g on y, U_r|U_z on x,
    U_g on r*x) so the exported graph has three MatMuls; each logical matrix is still initialised as its own
    orthogonal(sqrt 2) matrix. b_g starts at ``bias`` (2.0) so z ~ 0.12 and the block starts near identity.
    """

    def __init__(self, d_model: int, bias: float = 2.0) -> None:
        super().__init__()
        if d_model <= 0:
            raise ValueError(f"d_model must be positive, got {d_model}")
        self.d_model = d_model
        self.w_y = fused_linear(d_model, (d_model, d_model, d_model), bias=False)  # W_r, W_z, W_g
        self.u_x = fused_linear(d_model, (d_model, d_model), bias=False)  # U_r, U_z
        self.u_g = nn.Linear(d_model, d_model, bias=False)  # U_g
        self.b_g = nn.Parameter(torch.full((d_model,), float(bias)))
        self.init_bias = float(bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        orthogonal_init_(self)
        with torch.no_grad():
            self.b_g.fill_(self.init_bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self._fused(x, y)
        lead = x.shape[:-1]  # sequences run the same fused form over flattened rows (fewer elementwise passes)
        return self._fused(x.reshape(-1, self.d_model), y.reshape(-1, self.d_model)).reshape(*lead, self.d_model)

    def _rz_bias(self) -> torch.Tensor:
        """[0 (r), b_g (z)]: built from the parameter; a constant subgraph that ONNX Runtime folds."""
        return torch.cat([torch.zeros_like(self.b_g), self.b_g])

    def _fused(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Same maths for [N, d] inputs in 11 ONNX nodes and no padding weights (acting and, flattened, training).

        ``W y + [0, -b_g, 0]`` is one Gemm (its bias is built from ``b_g``, constant-folded by ONNX Runtime); the
        U x terms are Gemms that accumulate onto it through Gemm's C input (``torch.addmm``), so no Concat of
        [y, x], no Add nodes and no zero block in a fused [[W U], [W_g 0]] weight.
        """
        d = self.d_model
        bias = torch.cat([-self._rz_bias(), torch.zeros_like(self.b_g)])
        wy_rz, wy_g = torch.split(torch.nn.functional.linear(y, self.w_y.weight, bias), [2 * d, d], dim=-1)
        r, z = torch.split(torch.sigmoid(torch.addmm(wy_rz, x, self.u_x.weight.t())), [d, d], dim=-1)
        h = torch.tanh(torch.addmm(wy_g, r * x, self.u_g.weight.t()))
        return x + z * (h - x)


AttentionFn = Callable[[torch.Tensor], tuple[torch.Tensor, Any]]


class GatedTransformerBlock(nn.Module):
    """GTrXL "identity-map reordering" block around any attention-like sub-layer (docs/models.md#the-gated-block)::

        a = ReLU(attention(LN1(u)));  g1 = gate1(u, a);  f = ReLU(W2 ReLU(W1 LN2(g1) + b1) + b2);  out = gate2(g1, f)

    The attention sub-layer is called with the normalised input and whatever extra arguments the caller passes
    (reset flags, recurrent state), and must return ``(output[..., d_model], extra)``; ``extra`` (usually the new
    state) is handed back unchanged. The first-layer embedding is not part of the block (the stack owns it).
    """

    def __init__(self, d_model: int, d_ffc: int, attention: nn.Module, gru_bias: float = 2.0) -> None:
        super().__init__()
        self.attention = attention
        self.ln1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.gate1 = GRUGatingUnit(d_model, gru_bias)
        self.gate2 = GRUGatingUnit(d_model, gru_bias)
        self.ffn1 = nn.Linear(d_model, d_ffc)
        self.ffn2 = nn.Linear(d_ffc, d_model)
        orthogonal_init_(self.ffn1)
        orthogonal_init_(self.ffn2)

    def forward(self, u: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        a, extra = self.attention(self.ln1(u), *args, **kwargs)
        g1 = self.gate1(u, torch.relu(a))
        f = torch.relu(self.ffn2(torch.relu(self.ffn1(self.ln2(g1)))))
        return self.gate2(g1, f), extra


class GatedStack(nn.Module):
    """The trunk shared by AGaLiTe and GaLiTe: an input embedding then L gated blocks (docs/models.md#the-gated-block).

    The embedding is a Dense (orthogonal sqrt 2, zero bias) from ``input_dim`` to ``d_model``, followed by ReLU
    when ``embed_relu`` (AGaLiTe, paper GaLiTe) or not (the reference GaLiTe code). No final LayerNorm.
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int,
        d_ffc: int,
        attentions: Sequence[nn.Module],
        gru_bias: float,
        embed_relu: bool = True,
    ) -> None:
        super().__init__()
        if input_dim <= 0 or d_model <= 0 or d_ffc <= 0:
            raise ValueError(f"sizes must be positive: input_dim={input_dim} d_model={d_model} d_ffc={d_ffc}")
        if not attentions:
            raise ValueError("a gated stack needs at least one layer")
        self.embed = nn.Linear(input_dim, d_model)
        orthogonal_init_(self.embed)
        self.embed_relu = embed_relu
        self.blocks = nn.ModuleList(GatedTransformerBlock(d_model, d_ffc, a, gru_bias) for a in attentions)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        u = self.embed(x)
        return torch.relu(u) if self.embed_relu else u
