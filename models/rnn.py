"""LSTM and GRU baselines (one layer) behind the SequenceModel contract.

The cells are written out (instead of ``nn.LSTM``) for two reasons: the input projection of all T steps is one
matrix product before the time loop (the loop then only does the recurrent product), and the T=1 graph exports to a
handful of plain ONNX nodes instead of an ``LSTM`` op with its own layout conventions. Equations are PyTorch's
(``nn.LSTMCell`` / ``nn.GRUCell``), as is the default uniform(+-1/sqrt(hidden)) initialisation; the LSTM's gate
rows are laid out i, f, o, g (PyTorch: i, f, g, o) so the three sigmoid gates are one contiguous block.
Episode resets zero the carried state of that env before the step is consumed.
When a gradient is wanted (the learner's update), the recurrence runs as one autograd function with a hand-written
backward (``models.rnn_sequence``; a GRU-128 learner update ~1.5x faster on a CPU than autograd through the loop).
The plain loops below stay: they are its test oracle and the path of export and inference. They walk ``unbind(0)``
views rather than indexing ``xi[t]``: the backward of one ``unbind`` is one stack, while each indexed step's
backward zero-fills a gradient the size of all T steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.base import SequenceModel, State, StateSpec
from models.blocks import chrono_bias
from models.config import ModelConfig
from models.rnn_sequence import gru_sequence, lstm_sequence


def _fused() -> bool:
    """Whether the hand-written sequence backward applies: a gradient is being recorded and no exporter traces."""
    return torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()


class _RecurrentBase(SequenceModel):
    gates: int = 4

    def __init__(self, input_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        if input_dim <= 0 or cfg.rnn_hidden <= 0:
            raise ValueError(f"input_dim and rnn_hidden must be positive, got {input_dim}, {cfg.rnn_hidden}")
        self.input_dim = int(input_dim)
        self.hidden = int(cfg.rnn_hidden)
        self.output_dim = self.hidden
        self.w_ih = nn.Linear(self.input_dim, self.gates * self.hidden)
        self.w_hh = nn.Linear(self.hidden, self.gates * self.hidden)
        bound = 1.0 / math.sqrt(self.hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        if cfg.memory_init == "chrono":
            self._chrono_init(cfg.memory_horizon)

    def input_layer(self) -> nn.Linear:
        return self.w_ih

    def _chrono_init(self, horizon: int) -> None:
        """Set the keep-gate biases from ``chrono_bias`` (subclasses know where their gates are)."""
        raise NotImplementedError


class LSTM(_RecurrentBase):
    """One-layer LSTM; state ``h`` and ``c`` of ``rnn_hidden`` floats each."""

    gates = 4

    def state_spec(self) -> dict[str, StateSpec]:
        return {"h": StateSpec((self.hidden,), torch.float32), "c": StateSpec((self.hidden,), torch.float32)}

    def _chrono_init(self, horizon: int) -> None:
        n = self.hidden
        b = chrono_bias(n, horizon)
        with torch.no_grad():  # gate rows i, f, o, g: forget bias b, input bias -b (Tallec & Ollivier's LSTM form)
            self.w_ih.bias[n : 2 * n] = b
            self.w_ih.bias[:n] = -b
            self.w_hh.bias[: 2 * n] = 0.0

    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_inputs(x, reset, state)
        keep = (~reset).unsqueeze(-1).to(x.dtype)  # [T, B, 1]
        xi = self.w_ih(x)  # all T input projections at once
        if _fused():
            ys, h, c = lstm_sequence(xi, keep, state["h"], state["c"], self.w_hh.weight, self.w_hh.bias)
            return ys, {"h": h, "c": c}
        return self.recurrence(xi, keep, state)

    def recurrence(self, xi: torch.Tensor, keep: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The recurrence step by step (the reference of ``lstm_sequence``, and the path of export)."""
        h, c = state["h"], state["c"]
        n = self.hidden
        ys = []
        for xi_t, keep_t in zip(xi.unbind(0), keep.unbind(0), strict=True):
            h = h * keep_t
            c = c * keep_t
            g = xi_t + self.w_hh(h)
            ifo_pre, g_pre = g.split([3 * n, n], dim=-1)
            i, f, o = torch.sigmoid(ifo_pre).chunk(3, dim=-1)
            gg = torch.tanh(g_pre)
            c = f * c + i * gg
            h = o * torch.tanh(c)
            ys.append(h)
        return torch.stack(ys, 0), {"h": h, "c": c}


class GRU(_RecurrentBase):
    """One-layer GRU; state ``h`` of ``rnn_hidden`` floats."""

    gates = 3

    def state_spec(self) -> dict[str, StateSpec]:
        return {"h": StateSpec((self.hidden,), torch.float32)}

    def _chrono_init(self, horizon: int) -> None:
        n = self.hidden
        with torch.no_grad():  # gate rows r, z, n: z keeps the old state (h <- z h + (1 - z) cand)
            self.w_ih.bias[n : 2 * n] = chrono_bias(n, horizon)
            self.w_hh.bias[n : 2 * n] = 0.0

    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_inputs(x, reset, state)
        keep = (~reset).unsqueeze(-1).to(x.dtype)
        xi = self.w_ih(x)
        if _fused():
            ys, h = gru_sequence(xi, keep, state["h"], self.w_hh.weight, self.w_hh.bias)
            return ys, {"h": h}
        return self.recurrence(xi, keep, state)

    def recurrence(self, xi: torch.Tensor, keep: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The recurrence step by step (the reference of ``gru_sequence``, and the path of export)."""
        h = state["h"]
        n = self.hidden
        ys = []
        for xi_t, keep_t in zip(xi.unbind(0), keep.unbind(0), strict=True):
            h = h * keep_t
            xrz, xn = xi_t.split([2 * n, n], dim=-1)
            hrz, hn = self.w_hh(h).split([2 * n, n], dim=-1)
            r, z = torch.sigmoid(xrz + hrz).chunk(2, dim=-1)
            cand = torch.tanh(xn + r * hn)
            h = cand + z * (h - cand)  # (1 - z) * cand + z * h
            ys.append(h)
        return torch.stack(ys, 0), {"h": h}
