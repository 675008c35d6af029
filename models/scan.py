"""Log-depth parallel scan for the first-order linear recurrence h_t = a_t * h_{t-1} + b_t along dim 0.

Why not ``cumprod`` + ``cumsum``: that closed form divides by cumulative products of decays in (0, 1], which
underflow to zero within a few dozen steps. The Hillis-Steele scan below only ever multiplies numbers in (0, 1]
(and adds), so it is as exact as the step-by-step loop, with ceil(log2 T) vectorised doubling steps.

The backward pass is the same scan run in reverse time (lambda_t = g_t + a_{t+1} lambda_{t+1}), written by hand
so autograd keeps only ``a``, ``h`` and ``h0`` instead of every doubling step's intermediates.
"""

from __future__ import annotations

import torch


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a broadcast gradient back to ``shape`` (the inverse of broadcasting)."""
    if x.shape == shape:
        return x
    lead = x.dim() - len(shape)
    if lead:
        x = x.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    return x


def _scan_inplace(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele scan: on entry h holds b (with h0 folded into b_0); overwritten with the states.

    ``a`` broadcasts against ``h`` and is consumed (cumulative window products are written into a copy).
    """
    steps = h.shape[0]
    offset = 1
    acc = a
    while offset < steps:
        h[offset:] += acc[offset:] * h[:-offset]
        if 2 * offset < steps:
            acc = torch.cat([acc[:offset], acc[offset:] * acc[:-offset]], dim=0)
        offset *= 2
    return h


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a_full = a.expand(b.shape[0], *a.shape[1:]) if a.shape[0] == 1 else a
        h = b.clone()
        h[0] += a_full[0] * h0
        _scan_inplace(a_full, h)
        ctx.save_for_backward(a, h, h0)
        ctx.b_shape = b.shape
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        steps = h.shape[0]
        a_full = a.expand(steps, *a.shape[1:]) if a.shape[0] == 1 else a
        # lambda_t = g_t + a_{t+1} lambda_{t+1}: a forward scan over reversed time with a shifted by one.
        a_rev = torch.cat([torch.ones_like(a_full[:1]), a_full[1:].flip(0)], dim=0)
        lam = _scan_inplace(a_rev, grad_h.flip(0).contiguous()).flip(0)
        grad_a = grad_b = grad_h0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([h0.unsqueeze(0).expand_as(h[:1]), h[:-1]], dim=0)
            grad_a = _sum_to(lam * h_prev, a.shape)
        if ctx.needs_input_grad[1]:
            grad_b = _sum_to(lam, ctx.b_shape)
        if ctx.needs_input_grad[2]:
            grad_h0 = _sum_to(a_full[0] * lam[0], h0.shape)
        return grad_a, grad_b, grad_h0


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """All states h_1..h_T of h_t = a_t * h_{t-1} + b_t, h_0 given, along dim 0.

    a: [T or 1, ...] broadcastable to b [T, ...]; h0: broadcastable to b[0]. Returns [T, ...] (b's shape).
    Resets are expressed by zeros in ``a``. Differentiable in all three arguments.
    """
    if b.dim() == 0 or b.shape[0] == 0:
        raise ValueError(f"linear_scan needs b with a non-empty leading time axis, got shape {tuple(b.shape)}")
    if a.dim() != b.dim():
        raise ValueError(f"a must have b's rank ({b.dim()}), got a{tuple(a.shape)} b{tuple(b.shape)}")
    torch.broadcast_shapes(a.shape, b.shape)  # raises a clear error on mismatch
    h0 = h0.expand(b.shape[1:]) if h0.shape != b.shape[1:] else h0
    return _LinearScan.apply(a, b, h0)
