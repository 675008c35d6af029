"""Whole-sequence GRU and LSTM recurrences with a hand-written backward, for training.

On a CPU learner a small recurrent model's update is bound by per-op overhead, not arithmetic: autograd records ~10
nodes per time step, and each step's weight gradient is its own tiny matrix product (``[4, 384] x [4, 128]``, ~50 us
each at 4 env rows; a third of a GRU-128 update in torch's profiler). These functions run the forward loop without
recording, save what the backward needs, walk the steps back with plain tensor ops, and compute the recurrent weight
gradient after the loop as one product over all T x B rows (the same sum, one call). The equations are those of
``models.rnn`` (PyTorch's cells; the LSTM's gate rows i, f, o, g); ``tests/models/test_rnn_sequence.py`` checks
both against autograd through the plain loop, which stays the reference and the path for export and inference.

Inputs: ``xi`` = the input projections of all T steps (bias included) ``[T, B, G*n]``; ``keep`` = 1 where the
carried state continues, 0 at an episode reset ``[T, B, 1]``; the initial state; the recurrent weight ``[G*n, n]``
and bias ``[G*n]``. No gradient flows to ``keep``.
"""

from __future__ import annotations

from typing import Any

import torch


def _steps(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per-step views of ``[T, ...]`` tensors, zipped (one ``unbind`` each instead of T indexing ops each)."""
    return list(zip(*(t.unbind(0) for t in tensors), strict=True))


def _weight_grads(d_pre: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the recurrent weight and bias: one product over all T x B rows instead of one per step."""
    flat = d_pre.reshape(-1, d_pre.shape[-1])
    return flat.t() @ prev.reshape(-1, prev.shape[-1]), flat.sum(0)


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, xi: torch.Tensor, keep: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch = xi.shape[0], xi.shape[1]
        n = w_hh.shape[1]
        prev = xi.new_empty(steps, batch, n)  # the state each step reads, after its reset
        hh = xi.new_empty(steps, batch, 3 * n)  # prev @ w_hh.T + b_hh
        rz = xi.new_empty(steps, batch, 2 * n)
        cand = xi.new_empty(steps, batch, n)
        ys = xi.new_empty(steps, batch, n)
        w_t = w_hh.t()
        h = h0
        for x_rz, x_n, keep_t, hp, hh_t, rz_t, c, y in _steps(
            xi[..., : 2 * n], xi[..., 2 * n :], keep, prev, hh, rz, cand, ys
        ):
            torch.mul(h, keep_t, out=hp)
            torch.addmm(b_hh, hp, w_t, out=hh_t)
            torch.sigmoid(torch.add(x_rz, hh_t[:, : 2 * n]), out=rz_t)
            torch.tanh(torch.addcmul(x_n, rz_t[:, :n], hh_t[:, 2 * n :]), out=c)
            h = torch.addcmul(c, rz_t[:, n:], hp - c, out=y)  # (1 - z) c + z h
        # Everything the backward multiplies by, for all steps at once, so its loop is a few products per step.
        r, z = rz[..., :n], rz[..., n:]
        d_a = (1.0 - z) * (1.0 - cand * cand)  # d cand-pre-activation / d h, through (1 - z) and tanh
        d_r = hh[..., 2 * n :] * (r - r * r)  # d r-pre-activation / d cand-pre-activation
        d_z = (prev - cand) * (z - z * z)  # d z-pre-activation / d h
        ctx.save_for_backward(keep, w_hh, prev, r, z, d_a, d_r, d_z)
        return ys, h.clone()

    @staticmethod
    def backward(ctx: Any, d_ys: torch.Tensor | None, d_last: torch.Tensor | None) -> tuple[Any, ...]:
        keep, w_hh, prev, r, z, d_a, d_r, d_z = ctx.saved_tensors
        steps, batch, n = prev.shape
        d_pre_h = prev.new_empty(steps, batch, 3 * n)  # d loss / d (prev @ w_hh.T + b_hh)
        d_xn = prev.new_empty(steps, batch, n)
        dh = d_last.clone() if d_last is not None else prev.new_zeros(batch, n)
        d_out = d_ys if d_ys is not None else prev.new_zeros(steps, batch, n)
        for d_y, keep_t, r_t, z_t, da_t, dr_t, dz_t, dp, dxn in reversed(
            _steps(d_out, keep, r, z, d_a, d_r, d_z, d_pre_h, d_xn)
        ):
            dh = dh + d_y
            a = torch.mul(dh, da_t, out=dxn)
            torch.mul(a, dr_t, out=dp[:, :n])
            torch.mul(dh, dz_t, out=dp[:, n : 2 * n])
            torch.mul(a, r_t, out=dp[:, 2 * n :])
            dh = torch.addmm(dh * z_t, dp, w_hh).mul_(keep_t)
        d_xi = torch.cat([d_pre_h[..., : 2 * n], d_xn], dim=-1)
        return d_xi, None, dh, *_weight_grads(d_pre_h, prev)


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        xi: torch.Tensor,
        keep: torch.Tensor,
        h0: torch.Tensor,
        c0: torch.Tensor,
        w_hh: torch.Tensor,
        b_hh: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps, batch = xi.shape[0], xi.shape[1]
        n = w_hh.shape[1]
        prev_c = xi.new_empty(steps, batch, n)  # the cell state each step reads, after its reset
        prev_h = xi.new_empty(steps, batch, n)
        acts = xi.new_empty(steps, batch, 4 * n)  # sigmoid(i, f, o), tanh(g)
        tanh_c = xi.new_empty(steps, batch, n)
        ys = xi.new_empty(steps, batch, n)
        w_t = w_hh.t()
        h, c = h0, c0
        for x_t, keep_t, hp, cp, act, tc, y in _steps(xi + b_hh, keep, prev_h, prev_c, acts, tanh_c, ys):
            torch.mul(h, keep_t, out=hp)
            torch.mul(c, keep_t, out=cp)
            pre = torch.addmm(x_t, hp, w_t)
            torch.sigmoid(pre[:, : 3 * n], out=act[:, : 3 * n])
            torch.tanh(pre[:, 3 * n :], out=act[:, 3 * n :])
            c = torch.addcmul(act[:, n : 2 * n] * cp, act[:, :n], act[:, 3 * n :])
            h = torch.mul(act[:, 2 * n : 3 * n], torch.tanh(c, out=tc), out=y)
        # Everything the backward multiplies by, for all steps at once, so its loop is a few products per step.
        i, f, o, g = acts.chunk(4, dim=-1)
        d_c = o * (1.0 - tanh_c * tanh_c)  # d c / d h
        d_if = torch.cat([g * (i - i * i), prev_c * (f - f * f)], dim=-1)  # d (i, f) pre-activations / d c
        d_o = tanh_c * (o - o * o)  # d o pre-activation / d h
        d_g = i * (1.0 - g * g)  # d g pre-activation / d c
        f_keep = f * keep  # d c(t-1) / d c(t)
        ctx.save_for_backward(keep, w_hh, prev_h, d_c, d_if, d_o, d_g, f_keep)
        return ys, h.clone(), c

    @staticmethod
    def backward(
        ctx: Any, d_ys: torch.Tensor | None, d_last_h: torch.Tensor | None, d_last_c: torch.Tensor | None
    ) -> tuple[Any, ...]:
        keep, w_hh, prev_h, d_c, d_if, d_o, d_g, f_keep = ctx.saved_tensors
        steps, batch, n = prev_h.shape
        d_pre = prev_h.new_empty(steps, batch, 4 * n)
        dh = d_last_h.clone() if d_last_h is not None else prev_h.new_zeros(batch, n)
        dc = d_last_c.clone() if d_last_c is not None else prev_h.new_zeros(batch, n)
        d_out = d_ys if d_ys is not None else prev_h.new_zeros(steps, batch, n)
        for d_y, keep_t, dc_t, dif_t, do_t, dg_t, fk_t, dp in reversed(
            _steps(d_out, keep, d_c, d_if, d_o, d_g, f_keep, d_pre)
        ):
            dh = dh + d_y
            dc = torch.addcmul(dc, dh, dc_t)
            torch.mul(dc.unsqueeze(1), dif_t.view(batch, 2, n), out=dp[:, : 2 * n].view(batch, 2, n))
            torch.mul(dh, do_t, out=dp[:, 2 * n : 3 * n])
            torch.mul(dc, dg_t, out=dp[:, 3 * n :])
            dh = torch.mm(dp, w_hh).mul_(keep_t)
            dc = dc * fk_t
        return d_pre, None, dh, dc, *_weight_grads(d_pre, prev_h)


def gru_sequence(
    xi: torch.Tensor, keep: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All T outputs ``[T, B, n]`` and the last state ``[B, n]`` of the GRU recurrence."""
    out: tuple[torch.Tensor, torch.Tensor] = _GRUSequence.apply(xi, keep, h0, w_hh, b_hh)
    return out


def lstm_sequence(
    xi: torch.Tensor, keep: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All T outputs ``[T, B, n]`` and the last ``h`` and ``c`` ``[B, n]`` of the LSTM recurrence."""
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = _LSTMSequence.apply(xi, keep, h0, c0, w_hh, b_hh)
    return out
