"""AGaLiTe: approximate gated linear transformer with a cosine low-rank state (docs/models.md#agalite).

Per layer and head the state is K~ (r x F), V~ (r x d) and the normaliser s (F), updated as
``K~_j <- m (1-gamma) K~_j + c_j k_bar``, ``V~_j <- m (1-beta) V~_j + c_j v_bar``, ``s <- m (1-gamma) s + k_bar``
(m = 0 at an episode start) and read out as ``sum_j V~_j (K~_j . phi(q)) / (2r (s . phi(q)) + 1e-5)``.

Choices made here (the reference is JAX/Flax):
* LayerNorm eps 1e-5 (PyTorch convention; Flax uses 1e-6). Orthogonal(sqrt 2) init, zero biases, GRU bias 2.
* State layout is head-major with the long axis last: ``l{i}_tilde_k`` [B, H, r, F], ``l{i}_tilde_v``
  [B, H, r, d], ``l{i}_s`` [B, H, 1, F] (the reference stores [B, r, H, .]); F = eta*d for the paper's pp_relu
  feature map. A trailing axis of size r or 1 would make every broadcast Mul/Add loop per element in ONNX Runtime.
* Time counter: one int64 ``tick`` [B, 1] for the whole model (every layer's reference tick is identical),
  holding (steps since start) mod P with P = 2(r-1) (2 for r <= 2). Every frequency is an integer multiple of
  pi/(r-1), so cos(omega_j tau) is P-periodic in tau and is read from a float64-computed table: exactly the
  reference's cosines (tau = 1 at init, the first processed step uses tau = 2) without float drift. The tick
  starts at 0, so an all-zero state is a valid initial state.
  ``cfg.reset_counter`` (default) restarts it at each episode start; False keeps the never-reset counter.
* Frequencies (docs/models.md#the-cosine-approximation): ``reference`` = linspace(-pi, pi, r) (r=1: -pi; r=2 is
  degenerate); ``distinct`` = omega_j = pi*j/(r-1), j = 0..r-1 (r=1: omega = 0), r distinct values in [0, pi].
* ``cfg.feature_map`` and ``cfg.gating`` (see ``models/feature_maps.py``) apply here too: scalar gating decays K~,
  V~ and s by 1-g, none by 1 only (all maps are non-negative, so the read-out bound still holds).
* Training form (T > 1): a parallel scan (``models/scan.py``; two-level chunked by default, Hillis-Steele
  doubling as an option), no Python loop over T; K~ and s share their decay and are scanned together. Components
  with identical cosines (the reference grid pairs +-omega; for r = 2 both components are equal) are scanned once
  when the incoming state has them equal and needs no gradient (always so from ``initial_state``): exact.
  T == 1 has a dedicated lean path (acting, ONNX export).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.base import SequenceModel, State, StateSpec
from models.blocks import GatedStack, orthogonal_init_
from models.config import ModelConfig
from models.feature_maps import GatedFeatures, feature_dim
from models.scan import linear_scan, scan_readout, scan_readout_outer

EPS = 1e-5
FREQUENCY_GRIDS = ("reference", "distinct")


def counter_period(r: int) -> int:
    """Period of cos(omega_j * tau) in integer tau: 2(r-1), or 2 for r <= 2."""
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    return max(2, 2 * (r - 1))


def frequency_multiples(r: int, grid: str = "reference") -> list[int]:
    """omega_j as integer multiples k_j of pi/(r-1) (of pi for r = 1)."""
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    if grid == "reference":
        return [-1] if r == 1 else [2 * j - (r - 1) for j in range(r)]
    if grid == "distinct":
        return [0] if r == 1 else list(range(r))
    raise ValueError(f"unknown frequencies {grid!r}; expected one of {FREQUENCY_GRIDS}")


def frequencies(r: int, grid: str = "reference") -> torch.Tensor:
    """omega_j in float64 (reference: linspace(-pi, pi, r))."""
    unit = math.pi if r == 1 else math.pi / (r - 1)
    return torch.tensor([k * unit for k in frequency_multiples(r, grid)], dtype=torch.float64)


def cosine_table(r: int, grid: str = "reference") -> torch.Tensor:
    """[P, r] float64: row n holds cos(omega_j * (n + 1)), i.e. the cosines of tau = n + 1 (n = stored tick).

    Computed from the exact integer phase (k_j * tau) mod 2(r-1), so entries such as cos(pi/2) are exactly 0.
    """
    period = counter_period(r)
    half = 1 if r == 1 else r - 1  # omega = k * pi / half
    rows = []
    for n in range(period):
        tau = n + 1
        rows.append([math.cos(math.pi * ((k * tau) % (2 * half)) / half) for k in frequency_multiples(r, grid)])
    return torch.tensor(rows, dtype=torch.float64)


def component_groups(r: int, grid: str = "reference") -> list[list[int]]:
    """Components whose cosines are identical at every tick, grouped (first index of a group is its representative).

    The reference grid linspace(-pi, pi, r) pairs omega and -omega (and -pi with pi), so only ceil(r/2) groups are
    distinct; for r = 2 both components are always equal. Components of one group that start equal stay equal
    (same decay, same write), which the training form exploits (``AGaLiTeAttention._sequence``).
    """
    table = cosine_table(r, grid)
    groups: list[list[int]] = []
    for j in range(r):
        for g in groups:
            if torch.equal(table[:, g[0]], table[:, j]):
                g.append(j)
                break
        else:
            groups.append([j])
    return groups


class AGaLiTeAttention(nn.Module):
    """One AGaLiTe attention layer: ``forward(x, m, c_col, tilde_k, tilde_v, s) -> (out, state)``.

    x is [B, d_model] (single step) or [T, B, d_model]; m is the keep-mask (0 at an episode start) shaped
    [B, 1, 1, 1] or [T, B, 1, 1, 1]; the cosines come as a column c_col [(T,) B, 1, r, 1]. State: tilde_k [B, H, r, F],
    tilde_v [B, H, r, d], s [B, H, 1, F]: every state tensor and every elementwise op on it has the long feature
    axis last (a trailing axis of size r or 1 makes ONNX Runtime's broadcasting loop per element: 5-10x slower).
    """

    # buffers, registered in __init__ (declared here for type checkers: nn.Module's __getattr__ is untyped)
    group_reps: torch.Tensor
    group_of: torch.Tensor
    rep_of: torch.Tensor
    group_size: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.h, self.d, self.r = cfg.num_heads, cfg.d_head, cfg.r
        self.features = GatedFeatures.from_config(cfg)
        self.f = self.features.f
        self.scan_method = cfg.agalite_scan  # see models/scan.py
        self.out = nn.Linear(cfg.num_heads * cfg.d_head, cfg.d_model)
        orthogonal_init_(self.out)
        groups = component_groups(cfg.r, cfg.frequencies)
        self.n_groups = len(groups)
        group_of = [0] * cfg.r
        for gi, g in enumerate(groups):
            for j in g:
                group_of[j] = gi
        self.register_buffer("group_reps", torch.tensor([g[0] for g in groups]), persistent=False)
        self.register_buffer("group_of", torch.tensor(group_of), persistent=False)
        self.register_buffer("rep_of", torch.tensor([groups[gi][0] for gi in group_of]), persistent=False)
        self.register_buffer("group_size", torch.tensor([float(len(g)) for g in groups]), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        m: torch.Tensor,
        c_col: torch.Tensor,
        tilde_k: torch.Tensor,
        tilde_v: torch.Tensor,
        s: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        o, state = self.attend(x, m, c_col, tilde_k, tilde_v, s)
        lead = (-1,) if x.dim() == 2 else (x.shape[0], x.shape[1])
        return self.out(o.reshape(*lead, self.h * self.d)), state

    def attend(self, x, m, c_col, tilde_k, tilde_v, s):
        """Per-head read-out o [(T,) B, H, 1, d] before the output projection, and the new state."""
        if x.dim() == 2:
            return self._step(x, m, c_col, tilde_k, tilde_v, s)
        return self._sequence(x, m, c_col, tilde_k, tilde_v, s)

    def _decays(self, feats, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """m (1 - gate) for keys and values (the training form gets them from ``GatedFeatures.training_terms``,
        as m - m gate: the same bits for m in {0, 1})."""
        if feats.gate_k is None:
            return m, m
        dk = m * (1.0 - feats.gate_k)
        dv = dk if self.features.gating == "scalar" else m * (1.0 - feats.gate_v)
        return dk, dv

    def _step(self, x, m, c, tilde_k, tilde_v, s):
        f = self.features(x, layout="row", keep=m)
        dk, dv = self._decays(f, m)
        tilde_k = dk * tilde_k + c * f.k_bar  # [B, H, r, F]
        tilde_v = dv * tilde_v + c * f.v_bar  # [B, H, r, d]
        s = dk * s + f.k_bar  # [B, H, 1, F]
        # read-out as Mul + ReduceSum: ONNX Runtime runs these ~2x faster than B*H tiny batched MatMuls (B >= 16)
        kq = (f.phi_q * tilde_k).sum(-1, keepdim=True)  # [B, H, r, 1]
        num = (kq * tilde_v).sum(-2, keepdim=True)  # [B, H, 1, d]
        den = (f.phi_q * s).sum(-1, keepdim=True) * (2.0 * self.r) + EPS  # [B, H, 1, 1]
        return num / den, (tilde_k, tilde_v, s)

    def _collapsible(self, tilde_k: torch.Tensor, tilde_v: torch.Tensor) -> bool:
        """True when duplicate-frequency components can be scanned once: they start equal and need no gradient."""
        if self.n_groups == self.r or tilde_k.requires_grad or tilde_v.requires_grad:
            return False
        rep = self.rep_of
        return torch.equal(tilde_k, tilde_k.index_select(2, rep)) and torch.equal(tilde_v, tilde_v.index_select(2, rep))

    def _sequence(self, x, m, c, tilde_k, tilde_v, s):
        steps, batch = x.shape[0], x.shape[1]
        method = self.scan_method
        terms = self.features.training_terms(
            x.reshape(steps * batch, x.shape[2]), m.reshape(steps * batch, 1, 1, 1), factored=method == "chunked"
        )

        def unflatten(t):
            if isinstance(t, tuple):  # outer-product factors
                return tuple(f.reshape(steps, batch, *f.shape[1:]) for f in t)
            return t.reshape(steps, batch, *t.shape[1:])

        v_bar, k_bar, phi_q, dk, dv = (unflatten(t) for t in terms)
        collapse = self._collapsible(tilde_k, tilde_v)
        if collapse:  # one component per group of identical cosines, weighted by the group's size in the read-out
            reps = self.group_reps
            c, tilde_k, tilde_v = c.index_select(-2, reps), tilde_k.index_select(2, reps), tilde_v.index_select(2, reps)
        rows = c.shape[-2]
        # K~ (r rows) and s (one more row, cosine 1) share the decay: scan them together. The writes are fresh
        # temporaries, so the scan overwrites them instead of copying.
        c_ext = torch.cat([c, torch.ones_like(c[..., :1, :])], dim=-2)  # [T, B, 1, rows+1, 1]
        h0 = torch.cat([tilde_k, s], dim=-2)
        if isinstance(k_bar, tuple):  # the paper's features as outer-product factors: never materialised
            kq, last_ks = scan_readout_outer(dk, k_bar, h0, phi_q, c_ext)
        elif method == "chunked":  # the read-out fused into the scan's autograd node; T states never leave it
            kq, last_ks = scan_readout(dk, k_bar, h0, phi_q, c_ext)  # [T, B, H, 1, rows+1], [B, H, rows+1, F]
        else:
            hk = linear_scan(dk, k_bar, h0, method, coef=c_ext)  # [T, B, H, rows+1, F]
            kq = torch.matmul(hk, phi_q.transpose(-1, -2)).transpose(-1, -2)  # [T, B, H, 1, rows+1]
            last_ks = hk[-1]
        hv = linear_scan(dv, v_bar, tilde_v, method, coef=c)  # [T, B, H, rows, d]
        w = kq[..., :rows] * self.group_size if collapse else kq[..., :rows]
        num = w * hv if rows == 1 else torch.matmul(w, hv)  # [T, B, H, 1, d] (no T*B*H 1x1 MatMuls for r = 2)
        den = kq[..., rows:] * (2.0 * self.r) + EPS
        last_k, last_v = last_ks[:, :, :rows], hv[-1]
        if collapse:
            last_k, last_v = last_k.index_select(2, self.group_of), last_v.index_select(2, self.group_of)
        return num / den, (last_k, last_v, last_ks[:, :, rows:])


class AGaLiTe(SequenceModel):
    """The AGaLiTe stack: Dense+ReLU embedding, L gated blocks around ``AGaLiTeAttention`` (docs/models.md#agalite)."""

    # buffers, registered in __init__ (declared for type checkers)
    cos_table: torch.Tensor

    def __init__(self, input_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.r < 1:
            raise ValueError(f"AGaLiTe needs r >= 1, got r={cfg.r}")
        if cfg.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {cfg.num_layers}")
        frequency_multiples(cfg.r, cfg.frequencies)  # validates the grid name
        self.cfg = cfg
        self.input_dim, self.output_dim = input_dim, cfg.d_model
        self.num_layers, self.r = cfg.num_layers, cfg.r
        self.period = counter_period(cfg.r)
        self.reset_counter = cfg.reset_counter
        layers = [AGaLiTeAttention(cfg) for _ in range(cfg.num_layers)]
        self.attentions = layers  # the same modules as the blocks' (a plain list: typed, not registered twice)
        self.stack = GatedStack(input_dim, cfg.d_model, cfg.d_ffc, layers, cfg.gru_bias)
        self.f = feature_dim(cfg.feature_map, cfg.d_head, cfg.eta)
        table = cosine_table(cfg.r, cfg.frequencies).to(torch.float32)
        self.register_buffer("cos_table", table.unsqueeze(-1), persistent=False)  # [P, r, 1]

    def input_layer(self) -> nn.Linear:
        return self.stack.embed

    def state_spec(self) -> dict[str, StateSpec]:
        h, d, r, f = self.cfg.num_heads, self.cfg.d_head, self.r, self.f
        spec: dict[str, StateSpec] = {}
        for i in range(self.num_layers):
            spec[f"l{i}_tilde_k"] = StateSpec((h, r, f), torch.float32)
            spec[f"l{i}_tilde_v"] = StateSpec((h, r, d), torch.float32)
            spec[f"l{i}_s"] = StateSpec((h, 1, f), torch.float32)
        spec["tick"] = StateSpec((1,), torch.int64)
        return spec

    def counter_steps(self, reset: torch.Tensor, tick: torch.Tensor) -> torch.Tensor:
        """Per-step stored counter n_t [T, B] (tau_t = n_t + 1) for a call; its last row is the new tick.

        With ``reset_counter`` the counter restarts at a reset step (n = 1, as the first step after init).
        """
        steps = reset.shape[0]
        t = torch.arange(steps, device=reset.device).unsqueeze(1)
        carried = tick.reshape(1, -1) + t + 1
        if self.reset_counter:
            last = torch.where(reset, t, torch.full_like(t, -1)).cummax(dim=0).values
            carried = torch.where(last >= 0, t - last + 1, carried)
        return carried % self.period

    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_inputs(x, reset, state)
        if x.shape[0] == 1:
            return self._step(x, reset, state)
        return self._sequence(x, reset, state)

    def _step(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        r1 = reset.reshape(-1, 1)
        tick = state["tick"]
        if self.reset_counter:
            tick = tick.masked_fill(r1, 0)
        tick = (tick + 1) % self.period
        c_col = self.cos_table[tick]  # [B, 1, r, 1]: one Gather for the whole model
        m = (~r1).to(x.dtype).reshape(-1, 1, 1, 1)
        u = self.stack.embedding(x.reshape(-1, self.input_dim))
        new: State = {}
        for i, block in enumerate(self.stack.blocks):
            u, (kt, vt, s) = block(u, m, c_col, state[f"l{i}_tilde_k"], state[f"l{i}_tilde_v"], state[f"l{i}_s"])
            new[f"l{i}_tilde_k"], new[f"l{i}_tilde_v"], new[f"l{i}_s"] = kt, vt, s
        new["tick"] = tick
        return u.reshape(1, -1, self.output_dim), new

    def _sequence(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        n = self.counter_steps(reset, state["tick"])  # [T, B]
        c_col = self.cos_table[n].unsqueeze(2)  # [T, B, 1, r, 1]
        m = (~reset).to(x.dtype).reshape(x.shape[0], x.shape[1], 1, 1, 1)
        u = self.stack.embedding(x)
        new: State = {}
        for i, block in enumerate(self.stack.blocks):
            u, (kt, vt, s) = block(u, m, c_col, state[f"l{i}_tilde_k"], state[f"l{i}_tilde_v"], state[f"l{i}_s"])
            new[f"l{i}_tilde_k"], new[f"l{i}_tilde_v"], new[f"l{i}_s"] = kt, vt, s
        new["tick"] = n[-1].unsqueeze(-1)
        return u, new
