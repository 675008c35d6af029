"""GTrXL baseline (docs/models.md#gtrxl): Transformer-XL relative attention, GRU gating, an episode-masked memory.

Per layer, with U the layer's inputs for this call and Mem its memory of earlier inputs::

    Q = U W_q + b (queries from the *un-normalised* inputs);  [K; V] = LN1([Mem; U]) W_kv + b
    score(i, j) = [(Q_i + u) . K_j + (Q_i + v) . R_{dist(i, j)}] / sqrt(d),  R = P W_R + b (sinusoidal P)
    a = ReLU(concat_heads(softmax(score) V) W_o + b);  o1 = gate1(U, a);  out = gate2(o1, MLP(LN2(o1)))

u, v are shared across layers; the MLP is two Dense(d_model)+ReLU; gates are ``GRUGatingUnit`` (bias 2).
Dense layers use the Flax default (lecun-normal kernels, zero biases) like the reference, not orthogonal(sqrt 2).

**Window (a deliberate difference from the reference).** TrXL lets step i of a T-step call attend to M + i
earlier positions while acting (T = 1) sees only M. Here every query attends to exactly the last M + 1 positions
(memory and segment as one sliding window: a banded causal mask), so the training form gives *exactly* what stepping
one at a time gives, which the contract requires. Positions before the most recent episode start (in the memory or
in the segment) are masked as in the reference.

**Memory forms** (``cfg.memory_form``), equal outputs for equal weights:

* ``inputs``: the reference's state, per env ``memory[L+1, M, d_model]`` (slot l = last M inputs of layer l; slot L,
  the last layer's output, is kept for fidelity but never read) and ``mask[M]`` (bool, True = masked). K/V are
  recomputed from the stored inputs every call: O(M d_model H d) per layer and step, and during learning the keys
  of the memory use the *current* weights.
* ``kv``: a key/value cache per layer, ``kv[L, M, 2 H d]`` plus ``mask[M]``; a step projects only the new input,
  O(M H d + d_model H d). The cache shifts by one slot per step (no write index to keep). During learning the
  memory's keys are those computed when acting (stale weights), which is the only behavioural difference.

In both forms the memory enters a call as a constant (stop-gradient, as in the reference) while in-segment
positions get gradients, and the new memory is returned detached.

At T = 1 the positional term is computed as ((Q + v) W_R) . P + (Q + v) . b, which equals (Q + v) . (P W_R + b) but
costs O(H d d_model + H M d_model) instead of re-projecting all M + 1 positions every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from models.base import SequenceModel, State, StateSpec
from models.blocks import LN_EPS, GRUGatingUnit
from models.config import ModelConfig

MASK_VALUE = -1e20


def sinusoid_embedding(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-XL position embedding: sin block then cos block, inverse frequencies 10000^(-2i/dim)."""
    if dim % 2:
        raise ValueError(f"the sinusoidal embedding needs an even d_model, got {dim}")
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    angles = distances.to(torch.float64)[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(torch.float32)


def lecun_normal_(module: nn.Module) -> None:
    """Flax's default Dense init (variance 1/fan_in, truncated at 2 std) and zero biases for every Linear."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            std = 1.0 / math.sqrt(m.in_features) / 0.87962566103423978  # truncation-corrected, as in Flax
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class GTrXLLayer(nn.Module):
    """Parameters of one layer; the computation lives in ``GTrXL._layer`` (it needs the shared u, v and masks)."""

    def __init__(self, d_model: int, num_heads: int, d_head: int, gru_bias: float) -> None:
        super().__init__()
        hd = num_heads * d_head
        self.ln1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.q = nn.Linear(d_model, hd)
        self.kv = nn.Linear(d_model, 2 * hd)
        self.r = nn.Linear(d_model, hd)
        self.out = nn.Linear(hd, d_model)
        self.gate1 = GRUGatingUnit(d_model, gru_bias)
        self.gate2 = GRUGatingUnit(d_model, gru_bias)
        self.mlp1 = nn.Linear(d_model, d_model)
        self.mlp2 = nn.Linear(d_model, d_model)


class GTrXL(SequenceModel):
    """GTrXL with memory length ``cfg.memory_len`` in the ``cfg.memory_form`` representation (see module doc)."""

    pos: torch.Tensor  # buffer, registered in __init__ (declared for type checkers)

    def __init__(self, input_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        for name in ("num_layers", "d_model", "num_heads", "d_head", "memory_len"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"GTrXL needs a positive {name}, got {getattr(cfg, name)}")
        if cfg.memory_form not in ("inputs", "kv"):
            raise ValueError(f"memory_form must be 'inputs' or 'kv', got {cfg.memory_form!r}")
        self.input_dim = int(input_dim)
        self.output_dim = cfg.d_model
        self.d_model, self.num_layers = cfg.d_model, cfg.num_layers
        self.num_heads, self.d_head = cfg.num_heads, cfg.d_head
        self.memory_len = cfg.memory_len
        self.memory_form = cfg.memory_form
        self.embed = nn.Linear(self.input_dim, self.d_model)
        self.layers = nn.ModuleList(
            GTrXLLayer(self.d_model, self.num_heads, self.d_head, cfg.gru_bias) for _ in range(self.num_layers)
        )
        self.u_bias = nn.Parameter(torch.zeros(self.num_heads, 1, self.d_head))
        self.v_bias = nn.Parameter(torch.zeros(self.num_heads, 1, self.d_head))
        # Row w of the window is the key w positions after the window start: distance M - w from the query.
        m = self.memory_len
        self.register_buffer("pos", sinusoid_embedding(torch.arange(m, -1, -1), self.d_model), persistent=False)
        lecun_normal_(self)
        for layer in self._each_layer():  # lecun_normal_ zeroed the gate biases' Linear parts only; b_g is a Parameter
            for gate in (layer.gate1, layer.gate2):
                with torch.no_grad():
                    gate.b_g.fill_(gate.init_bias)

    def _each_layer(self) -> Iterable[GTrXLLayer]:
        """``self.layers`` with its element type (nn.ModuleList yields plain Modules to a type checker)."""
        return cast("Iterable[GTrXLLayer]", self.layers)

    # ----------------------------------------------------------------------------------------------- state
    def input_layer(self) -> nn.Linear:
        return self.embed

    def state_spec(self) -> dict[str, StateSpec]:
        m, dm, hd = self.memory_len, self.d_model, self.num_heads * self.d_head
        if self.memory_form == "inputs":
            mem = {"memory": StateSpec((self.num_layers + 1, m, dm), torch.float32)}
        else:
            mem = {"kv": StateSpec((self.num_layers, m, 2 * hd), torch.float32)}
        return {**mem, "mask": StateSpec((m,), torch.bool)}

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        state = super().initial_state(batch, device)
        state["mask"] = torch.ones_like(state["mask"])  # nothing in memory yet: all masked
        return state

    # ----------------------------------------------------------------------------------------------- masks
    def _masks(self, reset: torch.Tensor, mask: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Additive score bias [B, 1, T, M+T] and the new memory mask [B, M].

        Query i (segment step i) may see memory slot j iff j >= i (the window is the last M+1 positions), the slot
        is valid and no reset happened at or before i in this segment; and segment step k iff i - M <= k <= i and
        k is in the same episode (no reset in (k, i]).
        """
        m = self.memory_len
        r = reset.transpose(0, 1)  # [B, T]
        mem_valid = ~mask
        if t == 1:  # lean acting graph: no cumsum, no band
            mem_ok = mem_valid & ~r  # [B, M]
            allowed = torch.cat([mem_ok, torch.ones_like(r)], dim=1)  # [B, M+1]
            bias = (~allowed).to(torch.float32)[:, None, None, :] * MASK_VALUE
            return bias, ~allowed[:, 1:]
        epi = r.to(torch.int64).cumsum(1)  # episode index within the segment
        steps = torch.arange(t, device=reset.device)
        band = torch.arange(m, device=reset.device)[None, :] >= steps[:, None]  # [T, M]
        lag = steps[:, None] - steps[None, :]  # query i minus key k
        causal = (lag >= 0) & (lag <= m)  # [T, T]: the window reaches back M steps
        mem_ok = mem_valid[:, None, :] & (epi == 0)[:, :, None] & band
        seg_ok = (epi[:, :, None] == epi[:, None, :]) & causal
        allowed = torch.cat([mem_ok, seg_ok], dim=-1)  # [B, T, M+T]
        last = epi[:, -1:]
        valid = torch.cat([mem_valid & (last == 0), epi == last], dim=1)  # [B, M+T] after this call
        bias = (~allowed).to(torch.float32)[:, None] * MASK_VALUE
        return bias, ~valid[:, -m:]

    # ----------------------------------------------------------------------------------------------- layer
    def _position_scores(self, layer: GTrXLLayer, qv: torch.Tensor, t: int) -> torch.Tensor:
        """(Q + v) . R for every (query, key) pair: [B, H, T, M+T] (entries outside the window are garbage)."""
        h, d, dm, m = self.num_heads, self.d_head, self.d_model, self.memory_len
        if t == 1:
            qw = qv @ layer.r.weight.reshape(h, d, dm)  # [B, H, 1, d_model]
            return qw @ self.pos.t() + qv @ layer.r.bias.reshape(h, d, 1)  # [B, H, 1, M+1]
        rel = layer.r(self.pos).reshape(m + 1, h, d).permute(1, 2, 0)  # [H, d, M+1]
        win = qv @ rel  # [B, H, T, M+1], column w = key at window offset w
        n = m + t
        offset = torch.arange(n, device=qv.device)[None, :] - torch.arange(t, device=qv.device)[:, None]
        index = offset.clamp(0, m).expand(qv.shape[0], h, t, n)
        return torch.gather(win, -1, index)

    def _layer(
        self, layer: GTrXLLayer, u: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer on u [B, T, d_model]; ``memory`` is the layer's input memory or K/V cache [B, M, .].

        Returns the layer output and, for the kv form, the new keys/values [B, T, 2Hd] to cache.
        """
        h, d = self.num_heads, self.d_head
        hd = h * d
        q = layer.q(u).reshape(-1, t, h, d).transpose(1, 2)  # [B, H, T, d]
        if self.memory_form == "inputs":
            new_kv = layer.kv(layer.ln1(torch.cat([memory.detach(), u], dim=1)))  # [B, M+T, 2Hd]
            kv = new_kv
        else:
            new_kv = layer.kv(layer.ln1(u))  # [B, T, 2Hd]
            kv = torch.cat([memory.detach(), new_kv], dim=1)
        n = self.memory_len + t
        k, v = kv.split(hd, dim=-1)  # one Split node rather than two Slices (lean ONNX graph)
        k = k.reshape(-1, n, h, d).permute(0, 2, 3, 1)  # [B, H, d, N]
        v = v.reshape(-1, n, h, d).transpose(1, 2)  # [B, H, N, d]
        content = (q + self.u_bias) @ k  # [B, H, T, N]
        position = self._position_scores(layer, q + self.v_bias, t)
        scores = (content + position) * (1.0 / math.sqrt(d)) + bias
        o = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(-1, t, hd)
        a = torch.relu(layer.out(o))
        g1 = layer.gate1(u, a)
        f = torch.relu(layer.mlp2(torch.relu(layer.mlp1(layer.ln2(g1)))))
        return layer.gate2(g1, f), new_kv

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_inputs(x, reset, state)
        t = int(x.shape[0])
        m = self.memory_len
        bias, new_mask = self._masks(reset, state["mask"], t)
        u = torch.relu(self.embed(x)).transpose(0, 1)  # [B, T, d_model]
        if self.memory_form == "inputs":
            memory = state["memory"]
            slots = [u]
            for i, layer in enumerate(self._each_layer()):
                u, _ = self._layer(layer, u, memory[:, i], bias, t)
                slots.append(u)
            new_memory = torch.cat([memory, torch.stack(slots, dim=1)], dim=2)[:, :, -m:].detach()
            new_state = {"memory": new_memory, "mask": new_mask}
        else:
            cache = state["kv"]
            new_kv = []
            for i, layer in enumerate(self._each_layer()):
                u, kv = self._layer(layer, u, cache[:, i], bias, t)
                new_kv.append(kv)
            new_cache = torch.cat([cache, torch.stack(new_kv, dim=1)], dim=2)[:, :, -m:].detach()
            new_state = {"kv": new_cache, "mask": new_mask}
        return u.transpose(0, 1), new_state
