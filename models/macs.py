"""Analytic cost per env and step: multiply-accumulates (MACs) per layer and state size (docs/models.md#costs).

The counting convention is the paper's, so its table is reproduced exactly (``PAPER_TABLE``, checked by a test):
dense products and the recurrence / attention arithmetic are counted; LayerNorm, softmax, activations, biases
and the observation encoder are not. Numbers are per env, per step (T = 1), per layer unless said otherwise.

GTrXL has three counts:

* ``as_coded``: the reference recomputes K/V *and* the positional projection over all M + 1 positions every step;
* ``kv_cached``: the paper's idealised cached GTrXL (K/V for the new position, one positional row, attention over
  M + 1 positions);
* ``implemented``: what this repository's ``kv`` form actually does at T = 1 (K/V for the new position, the
  positional term as ((Q + v) W_R) . P: H d d_model + H (M + 1) d_model instead of a positional row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.config import ModelConfig

GTrXLCount = Literal["as_coded", "kv_cached", "implemented"]


@dataclass(frozen=True)
class ModelCost:
    """Per-env cost of one step of a sequence model (encoder and heads excluded)."""

    kind: str
    num_layers: int
    macs_per_layer: int
    state_floats: int
    state_bools: int = 0

    @property
    def macs_per_step(self) -> int:
        return self.macs_per_layer * self.num_layers


def _block_macs(cfg: ModelConfig, ffn_width: int) -> int:
    """The gated block around the attention: output projection, two GRU gates (6 d_model^2 each), 2-layer FFN."""
    dm, hd = cfg.d_model, cfg.num_heads * cfg.d_head
    return hd * dm + 2 * 6 * dm * dm + 2 * dm * ffn_width


def agalite_cost(cfg: ModelConfig) -> ModelCost:
    """The paper's count: projections d_model(5Hd + 3H eta); per head 2(r eta d + r d + eta d) for the state update and
    read-out plus 3 eta d for the outer products phi(k), phi(q), gamma. State per layer H d (r eta + r + eta) + 1
    (the +1 is the time counter; kept as in the paper's count even though this repository stores it as an int)."""
    h, d, dm, eta, r = cfg.num_heads, cfg.d_head, cfg.d_model, cfg.eta, cfg.r
    proj = dm * (5 * h * d + 3 * h * eta)
    per_head = 2 * (r * eta * d + r * d + eta * d) + 3 * eta * d
    macs = proj + h * per_head + _block_macs(cfg, cfg.d_ffc)
    floats = (h * d * (r * eta + r + eta) + 1) * cfg.num_layers
    return ModelCost("agalite", cfg.num_layers, macs, floats)


def galite_cost(cfg: ModelConfig) -> ModelCost:
    """GaLiTe: matrix state C (d x eta d) and s (eta d) per head.

    ``code`` (reference code): per head A_k, W_v, W_beta, A_gamma, W_q (d_model x d each), B_k, B_gamma (d_model x eta),
    A_q (d x d), B_q (d x eta); recurrence 4 d eta d (gate outer product, write outer product, update, read-out)
    + 4 eta d. ``paper`` (paper form): AGaLiTe's fused projections; recurrence 4 d eta d + 5 eta d (our count).
    """
    h, d, dm, eta = cfg.num_heads, cfg.d_head, cfg.d_model, cfg.eta
    if cfg.galite_variant == "code":
        proj = h * (5 * dm * d + 2 * dm * eta + d * d + d * eta)
        rec = 4 * d * eta * d + 4 * eta * d
    else:
        proj = dm * (5 * h * d + 3 * h * eta)
        rec = 4 * d * eta * d + 5 * eta * d
    macs = proj + h * rec + _block_macs(cfg, cfg.d_ffc)
    floats = h * (d * eta * d + eta * d) * cfg.num_layers
    return ModelCost("galite", cfg.num_layers, macs, floats)


def gtrxl_cost(cfg: ModelConfig, count: GTrXLCount = "as_coded") -> ModelCost:
    """GTrXL as in the paper (MLP of two d_model x d_model layers). State: ``inputs`` (L+1) M d_model floats,
    ``kv`` L M 2Hd floats; both plus M mask bools."""
    h, d, dm, m = cfg.num_heads, cfg.d_head, cfg.d_model, cfg.memory_len
    hd, n = h * d, cfg.memory_len + 1
    attend = 3 * n * hd  # content scores, positional scores, weighted sum of values
    if count == "as_coded":
        attn = dm * hd + n * dm * 2 * hd + n * dm * hd + attend
    elif count == "kv_cached":
        attn = dm * hd + dm * 2 * hd + dm * hd + attend
    elif count == "implemented":
        attn = dm * hd + dm * 2 * hd + hd * dm + h * n * dm + hd + 2 * n * hd
    else:
        raise ValueError(f"unknown GTrXL count {count!r}; expected as_coded, kv_cached or implemented")
    macs = attn + _block_macs(cfg, dm)
    inputs = cfg.memory_form == "inputs"
    floats = (cfg.num_layers + 1) * m * dm if inputs else cfg.num_layers * m * 2 * hd
    return ModelCost("gtrxl", cfg.num_layers, macs, floats, state_bools=m)


def rnn_cost(cfg: ModelConfig, input_dim: int) -> ModelCost:
    """One-layer LSTM (4 gates) or GRU (3 gates): gates * hidden * (input_dim + hidden) MACs."""
    hid = cfg.rnn_hidden
    gates = 4 if cfg.kind == "lstm" else 3
    floats = 2 * hid if cfg.kind == "lstm" else hid
    return ModelCost(cfg.kind, 1, gates * hid * (input_dim + hid), floats)


def model_cost(cfg: ModelConfig, input_dim: int | None = None, gtrxl_count: GTrXLCount = "as_coded") -> ModelCost:
    """Cost of ``cfg``'s sequence model; ``input_dim`` is needed for LSTM/GRU (whose cost depends on it)."""
    if cfg.kind == "agalite":
        return agalite_cost(cfg)
    if cfg.kind == "galite":
        return galite_cost(cfg)
    if cfg.kind == "gtrxl":
        return gtrxl_cost(cfg, gtrxl_count)
    if cfg.kind in ("lstm", "gru"):
        if input_dim is None:
            raise ValueError(f"{cfg.kind} cost depends on the input size: pass input_dim")
        return rnn_cost(cfg, input_dim)
    raise ValueError(f"unknown model kind {cfg.kind!r}")


def _official(kind: str, **kw: object) -> ModelConfig:
    base = dict(num_layers=4, d_model=128, num_heads=4, d_head=64, d_ffc=128, eta=4, r=2)
    return ModelConfig.from_dict({**base, "kind": kind, **kw})


#: The two GTrXL counts the paper's cost table lists for each memory length (docs/models.md#costs).
_TABLE_COUNTS: tuple[GTrXLCount, GTrXLCount] = ("as_coded", "kv_cached")

#: The paper's cost table: (label, config, GTrXL count, MACs per layer, state floats over all layers).
PAPER_TABLE: list[tuple[str, ModelConfig, GTrXLCount, int, int]] = [
    ("AGaLiTe eta=4, r=2", _official("agalite", eta=4), "as_coded", 442_368, 14_340),
    ("AGaLiTe eta=8, r=2", _official("agalite", eta=8), "as_coded", 457_728, 26_628),
    ("GaLiTe (code, pp_relu eta=2)", _official("galite", eta=2, galite_variant="code"), "as_coded", 578_048, 133_120),
    *(
        (f"GTrXL M={m} ({count})", _official("gtrxl", memory_len=m), count, macs, floats)
        for m, coded, cached, floats in (
            (32, 3_564_288, 418_560, 20_480),
            (64, 6_734_592, 443_136, 40_960),
            (128, 13_075_200, 492_288, 81_920),
            (256, 25_756_416, 590_592, 163_840),
        )
        for count, macs in zip(_TABLE_COUNTS, (coded, cached), strict=True)
    ),
]
