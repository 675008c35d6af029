"""Parallel forms of the first-order linear recurrence h_t = a_t * h_{t-1} + b_t along dim 0.

Why not ``cumprod`` + ``cumsum``: that closed form divides by cumulative products of decays in (0, 1], which
underflow to zero within a few dozen steps. Both methods here only ever multiply numbers in (0, 1] (and add):

* ``chunked`` (default): a two-level scan. The T steps are cut into n chunks of c ~ sqrt(T) steps; the local
  recurrences of all chunks advance together (c vectorised steps, each over n chunks), then the n chunk carries are
  chained (n small steps), then one vectorised pass adds each chunk's carried-in state times its within-chunk decay
  products. About 2 sqrt(T) sequential steps (23 at T=128, never T) and O(T) memory traffic: on CPU, where this
  recurrence is memory-bound, it is several times faster than the doubling scan.
* ``doubling``: Hillis-Steele, ceil(log2 T) vectorised doubling steps, O(T log T) work (log depth; GPU-friendly).

The backward pass is the same scan run in reverse time (lambda_t = g_t + a_{t+1} lambda_{t+1}), written by hand so
autograd keeps only ``a``, ``h`` and ``h0`` instead of every intermediate step.
"""

from __future__ import annotations

import math

import torch

METHODS = ("chunked", "doubling")


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


def _over_time(a: torch.Tensor, steps: int) -> torch.Tensor:
    """``a`` with its time axis expanded to ``steps`` (a decay given once for all steps has a leading 1); a view."""
    return a.expand(steps, *a.shape[1:]) if a.shape[0] != steps else a


def _doubling(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Hillis-Steele; a [T, ...] broadcasts against b [T, ...]."""
    h = b.clone()
    if h0 is not None:
        h[0] += a[0] * h0
    steps, offset, acc = h.shape[0], 1, a
    while offset < steps:
        h[offset:] += acc[offset:] * h[:-offset]
        if 2 * offset < steps:
            acc = torch.cat([acc[:offset], acc[offset:] * acc[:-offset]], dim=0)
        offset *= 2
    return h


def _chunk_len(steps: int) -> int:
    """About sqrt(T); a divisor of T when one is near (no padding copies), e.g. 16 for T = 128."""
    root = math.isqrt(steps)
    for c in sorted(range(max(2, root // 2), 2 * root + 1), key=lambda c: abs(c - math.sqrt(steps))):
        if steps % c == 0:
            return c
    return root + 1


def _chunked(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool = False, inplace: bool = False
) -> torch.Tensor:
    """Two-level scan; a [T, ...] broadcasts against b [T, ...]; h0 None means zeros.

    reverse=True computes the adjoint recurrence h_t = b_t + a_{t+1} h_{t+1} (h_{T} = h0, a_T taken as 1) without
    flipping the (large) inputs: the backward pass of the forward scan. inplace=True overwrites a contiguous b
    with the result (no copy of the largest tensor).
    """
    steps = b.shape[0]
    c = _chunk_len(steps)
    n = -(-steps // c)
    pad = n * c - steps
    if pad:
        a = torch.cat([a, a.new_ones((pad, *a.shape[1:]))], dim=0)
        b = torch.cat([b, b.new_zeros((pad, *b.shape[1:]))], dim=0)
    a = a.reshape(n, c, *a.shape[1:])
    h = b.reshape(n, c, *b.shape[1:])
    if not (inplace and not pad and b.is_contiguous()):
        h = h.clone()
    acc = torch.empty_like(a)  # within-chunk decay products towards the chunk's entry point
    if not reverse:
        acc[:, 0] = a[:, 0]
        for j in range(1, c):
            h[:, j].addcmul_(a[:, j], h[:, j - 1])
            torch.mul(a[:, j], acc[:, j - 1], out=acc[:, j])
        carry = torch.empty_like(h[:, 0])  # state entering each chunk
        carry[0] = 0 if h0 is None else h0
        for k in range(1, n):
            torch.addcmul(h[k - 1, c - 1], acc[k - 1, c - 1], carry[k - 1], out=carry[k])
    else:
        # entering chunk k from its end: lambda_{end} gets a_{end+1} * lambda_{end+1}, a_{end+1} = a[k+1, 0]
        acc[:-1, c - 1] = a[1:, 0]
        acc[-1, c - 1] = 1
        for j in range(c - 2, -1, -1):
            h[:, j].addcmul_(a[:, j + 1], h[:, j + 1])
            torch.mul(a[:, j + 1], acc[:, j + 1], out=acc[:, j])
        carry = torch.empty_like(h[:, 0])  # adjoint state just after each chunk
        carry[n - 1] = 0 if h0 is None else h0
        for k in range(n - 2, -1, -1):
            torch.addcmul(h[k + 1, 0], acc[k + 1, 0], carry[k + 1], out=carry[k])
    h.addcmul_(acc, carry.unsqueeze(1))
    h = h.reshape(n * c, *h.shape[2:])
    return h[:steps] if pad else h


def _mul_sum_to(x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``_sum_to(x * y, shape)``; when a single small axis is reduced, accumulated slice by slice (``addcmul_``)
    instead of materialising the full product."""
    full = torch.broadcast_shapes(x.shape, y.shape)
    lead = len(full) - len(shape)
    dims = [i for i in range(len(full)) if i < lead or (shape[i - lead] == 1 and full[i] != 1)]
    if len(dims) != 1 or dims[0] < lead or full[dims[0]] > 8:
        return _sum_to(x * y, torch.Size(shape))
    d = dims[0]

    def pick(t: torch.Tensor, i: int) -> torch.Tensor:
        return t.narrow(d, i, 1) if t.shape[d] != 1 else t

    out = pick(x, 0) * pick(y, 0)
    for i in range(1, full[d]):
        out.addcmul_(pick(x, i), pick(y, i))
    return out


def _scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, method: str, inplace: bool = False
) -> torch.Tensor:
    a = _over_time(a, b.shape[0])
    return _chunked(a, b, h0, inplace=inplace) if method == "chunked" else _doubling(a, b, h0)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0, method, overwrite, coef):
        if coef is not None:  # the scaled write is a fresh buffer: scan in it
            h = _scan(a, coef * b, h0, method, inplace=True)
        else:
            h = _scan(a, b, h0, method, inplace=overwrite)
            if h.data_ptr() == b.data_ptr():  # b was overwritten: it is the output
                ctx.mark_dirty(b)
                h = b
        ctx.save_for_backward(a, h, h0, coef)
        ctx.b_shape, ctx.method = b.shape, method
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h, h0, coef = ctx.saved_tensors
        steps = h.shape[0]
        a_full = _over_time(a, steps)
        # lambda_t = g_t + a_{t+1} lambda_{t+1}: the same scan run backwards in time
        if ctx.method == "chunked":
            g = grad_h.contiguous()  # a copy when grad_h was not contiguous: then the scan may overwrite it
            lam = _chunked(a_full, g, None, reverse=True, inplace=g.data_ptr() != grad_h.data_ptr())
        else:
            a_rev = torch.cat([torch.zeros_like(a_full[:1]), a_full[1:].flip(0)], dim=0)
            lam = _doubling(a_rev, grad_h.flip(0), None).flip(0)
        grad_a = grad_b = grad_h0 = None
        if ctx.needs_input_grad[0]:
            first = _mul_sum_to(lam[:1], h0.unsqueeze(0), (1, *a.shape[1:]))
            if a.shape[0] == 1:
                grad_a = first + _sum_to(lam[1:] * h[:-1], torch.Size((1, *a.shape[1:]))) if steps > 1 else first
            else:
                rest = _mul_sum_to(lam[1:], h[:-1], (steps - 1, *a.shape[1:]))
                grad_a = torch.cat([first, rest], dim=0)
        if ctx.needs_input_grad[1]:
            grad_b = _sum_to(lam, ctx.b_shape) if coef is None else _mul_sum_to(lam, coef, tuple(ctx.b_shape))
        if ctx.needs_input_grad[2]:
            grad_h0 = _sum_to(a_full[0] * lam[0], h0.shape)
        return grad_a, grad_b, grad_h0, None, None, None


def linear_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor,
    method: str = "chunked",
    overwrite_b: bool = False,
    coef: torch.Tensor | None = None,
) -> torch.Tensor:
    """All states h_1..h_T of h_t = a_t * h_{t-1} + b_t, h_0 given, along dim 0.

    a: [T or 1, ...] broadcastable to b [T, ...]; h0: broadcastable to b[0]. Returns [T, ...] (b's shape).
    Resets are expressed by zeros in ``a``. Differentiable in all three arguments. ``method``: see module doc.
    ``overwrite_b``: b is a temporary the caller does not use again; the chunked scan may then write the result
    into it instead of copying it (autograd-safe: b is marked dirty).
    ``coef``: a constant (no gradient) that scales the write, h_t = a_t h_{t-1} + coef_t b_t, broadcasting b over
    coef's axes (e.g. cosines over AGaLiTe's r rows): the product is the scan's own buffer, and the backward
    reduces over those axes slice by slice rather than materialising another full-size product.
    """
    if method not in METHODS:
        raise ValueError(f"unknown scan method {method!r}; expected one of {METHODS}")
    if b.dim() == 0 or b.shape[0] == 0:
        raise ValueError(f"linear_scan needs b with a non-empty leading time axis, got shape {tuple(b.shape)}")
    if a.dim() != b.dim():
        raise ValueError(f"a must have b's rank ({b.dim()}), got a{tuple(a.shape)} b{tuple(b.shape)}")
    if coef is not None:
        if coef.requires_grad:
            raise ValueError("linear_scan: coef must be a constant (no gradient)")
        if coef.dim() != b.dim():
            raise ValueError(f"coef must have b's rank ({b.dim()}), got coef{tuple(coef.shape)} b{tuple(b.shape)}")
    full = torch.broadcast_shapes(b.shape, coef.shape) if coef is not None else b.shape
    torch.broadcast_shapes(a.shape, full)  # raises a clear error on mismatch
    h0 = h0.expand(full[1:]) if h0.shape != full[1:] else h0
    return _LinearScan.apply(a, b, h0, method, overwrite_b, coef)


def rows_dot(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = sum over axis -2 of x * y (x, y [..., R, F] or broadcastable there, either may have size 1 on that
    axis; out [..., 1, F]), slice by slice: no full-size product is materialised (R is small: AGaLiTe's cosine rows
    plus the normaliser, or the eta factor of an outer product)."""
    rows = max(x.shape[-2], y.shape[-2])

    def pick(t: torch.Tensor, i: int) -> torch.Tensor:
        return t[..., i : i + 1, :] if t.shape[-2] != 1 else t

    torch.mul(pick(x, 0), pick(y, 0), out=out)
    for i in range(1, rows):
        out.addcmul_(pick(x, i), pick(y, i))
    return out


def _adjoint(
    a: torch.Tensor,
    lam: torch.Tensor,
    grad_last: torch.Tensor | None,
    h: torch.Tensor,
    h0: torch.Tensor,
    need_a: bool,
    need_h0: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """The backward of h_t = a_t h_{t-1} + (write)_t given lam = dL/dh from the read-out, a buffer the caller owns:
    adds the last state's gradient, runs the adjoint scan in place and returns (grad a, grad h0, the adjoint).
    The gradient of a is reduced over the rows slice by slice into one buffer (no full-size product)."""
    a_full = _over_time(a, h.shape[0])
    if grad_last is not None:
        lam[-1] += grad_last
    lam = _chunked(a_full, lam, None, reverse=True, inplace=True)
    grad_a = grad_h0 = None
    if need_a:
        full = h.new_empty((*h.shape[:-2], 1, h.shape[-1]))
        rows_dot(lam[:1], h0.unsqueeze(0), full[:1])
        rows_dot(lam[1:], h[:-1], full[1:])
        grad_a = _sum_to(full, a.shape)
    if need_h0:
        grad_h0 = _sum_to(a_full[0] * lam[0], h0.shape)
    return grad_a, grad_h0, lam


class _ScanReadout(torch.autograd.Function):
    """h_t = a_t h_{t-1} + coef_t b_t (chunked scan), read out as y_t = h_t q_t^T; returns (y, h_T).

    Fusing the read-out into the scan's autograd node lets the backward build the adjoint's input
    (grad_y (x) q) in a buffer it owns and scan it in place, and reduce over the few rows slice by slice: no
    batched outer-product or transposed MatMuls over T*B*H tiny matrices, no defensive copy of the gradient.
    """

    @staticmethod
    def forward(ctx, a, b, h0, q, coef):
        h = _chunked(_over_time(a, b.shape[0]), coef * b, h0, inplace=True)  # [T, ..., R, F]
        y = torch.matmul(h, q.transpose(-1, -2)).transpose(-1, -2)  # [T, ..., 1, R]
        ctx.save_for_backward(a, h, h0, q, coef)
        ctx.b_shape = b.shape
        return y, h[-1].clone()

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        a, h, h0, q, coef = ctx.saved_tensors
        gy = grad_y.transpose(-1, -2).contiguous()  # [T, ..., R, 1]
        need = ctx.needs_input_grad
        grad_a, grad_h0, lam = _adjoint(a, gy * q, grad_last, h, h0, need[0], need[2])
        grad_b = grad_q = None
        # sums over the rows weighted per step: [1, R] @ [R, F] per sequence (faster than slice-wise Mul + Add)
        if need[1]:
            grad_b = _sum_to(torch.matmul(coef.transpose(-1, -2), lam), ctx.b_shape)
        if need[3]:
            grad_q = _sum_to(torch.matmul(grad_y, h), q.shape)
        return grad_a, grad_b, grad_h0, grad_q, None


def scan_readout(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, q: torch.Tensor, coef: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked ``linear_scan(a, b, h0, coef=coef)`` read out against q: returns (y, h_T) with
    y_t = h_t q_t^T [T, ..., 1, R] and the last state h_T [..., R, F], without returning the T states.

    Shapes: a, b, q [T, ..., 1, F] (a may have a leading 1), coef [T, ..., R, 1] (a constant), h0 [..., R, F].
    Equal to ``linear_scan`` followed by the MatMul (tests compare values and gradients); faster to train.
    """
    if coef.requires_grad:
        raise ValueError("scan_readout: coef must be a constant (no gradient)")
    if b.dim() < 3 or q.shape[-2] != 1 or b.shape[-2] != 1:
        raise ValueError(f"scan_readout needs b and q shaped [T, ..., 1, F], got b{tuple(b.shape)} q{tuple(q.shape)}")
    full = torch.broadcast_shapes(b.shape, coef.shape)
    torch.broadcast_shapes(a.shape, full)
    h0 = h0.expand(full[1:]) if h0.shape != full[1:] else h0
    return _ScanReadout.apply(a, b, h0, q, coef)


class _ScanReadoutOuter(torch.autograd.Function):
    """``_ScanReadout`` for writes and queries that are outer products over a feature axis F = n x m:
    b_t = u_t (x) v_t and q_t = p_t (x) w_t (u, p [.., n], v, w [.., m]), as the paper's pp_relu features are.

    Why: neither b nor q (nor their [F]-sized gradients) is ever materialised. The scaled write coef_t b_t is
    built in one pass from its factors; the read-out h_t q_t is (h_t reshaped [R*n, m]) @ w_t, then a dot with
    p_t; the gradients of the four factors are matrix-vector products against the states / adjoints that are
    read anyway. Per layer this saves several full-size passes over [T, B, H, F] tensors.
    """

    @staticmethod
    def forward(ctx, a, u, v, h0, p, w, coef):
        steps, n, m = u.shape[0], u.shape[-1], v.shape[-1]
        lead = u.shape[:-2]  # [T, ..., ] without the unit axis
        rows = coef.shape[-2]
        cu = coef * u  # [T, ..., R, n]
        hb = (cu.unsqueeze(-1) * v.unsqueeze(-2)).reshape(*lead, rows, n * m)  # coef (x) u (x) v
        h = _chunked(_over_time(a, steps), hb, h0, inplace=True)  # [T, ..., R, F]
        hw = torch.matmul(h.reshape(*lead, rows * n, m), w.transpose(-1, -2)).reshape(*lead, rows, n)
        y = torch.matmul(hw, p.transpose(-1, -2)).transpose(-1, -2)  # [T, ..., 1, R]
        ctx.save_for_backward(a, u, v, h0, p, w, coef, h, hw)
        return y, h[-1].clone()

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        a, u, v, h0, p, w, coef, h, hw = ctx.saved_tensors
        n, m = u.shape[-1], v.shape[-1]
        lead, rows = u.shape[:-2], coef.shape[-2]
        gy = grad_y.transpose(-1, -2).contiguous()  # [T, ..., R, 1]
        grad_p = torch.matmul(gy.transpose(-1, -2), hw)  # [T, ..., 1, n]
        gp = gy * p  # [T, ..., R, n]: d y / d (h w) per row
        grad_w = torch.matmul(gp.reshape(*lead, 1, rows * n), h.reshape(*lead, rows * n, m))  # [T, ..., 1, m]
        lam = (gp.unsqueeze(-1) * w.unsqueeze(-2)).reshape(*lead, rows, n * m)  # fresh: scanned in place
        need = ctx.needs_input_grad
        grad_a, grad_h0, lam = _adjoint(a, lam, grad_last, h, h0, need[0], need[3])
        lam_nm = lam.reshape(*lead, rows * n, m)
        lv = torch.matmul(lam_nm, v.transpose(-1, -2)).reshape(*lead, rows, n)  # sum_m lam v
        grad_u = torch.matmul(coef.transpose(-1, -2), lv)  # [T, ..., 1, n]
        cu = (coef * u).reshape(*lead, 1, rows * n)
        grad_v = torch.matmul(cu, lam_nm)  # [T, ..., 1, m]
        return grad_a, grad_u, grad_v, grad_h0, grad_p, grad_w, None


def scan_readout_outer(
    a: torch.Tensor,
    write: tuple[torch.Tensor, torch.Tensor],
    h0: torch.Tensor,
    query: tuple[torch.Tensor, torch.Tensor],
    coef: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scan_readout(a, u (x) v, h0, p (x) w, coef)`` with the outer products given by their factors:
    write = (u [T, ..., 1, n], v [T, ..., 1, m]), query = (p [T, ..., 1, n], w [T, ..., 1, m]); F = n*m with the
    u-index major (vec(u (x) v)[i*m + j] = u_i v_j). a [T or 1, ..., 1, F], h0 [..., R, F], coef [T, ..., R, 1]
    (a constant, broadcast over the axes between T and R). Returns (y [T, ..., 1, R], h_T [..., R, F]).
    """
    (u, v), (p, w) = write, query
    if coef.requires_grad:
        raise ValueError("scan_readout_outer: coef must be a constant (no gradient)")
    if u.shape[:-1] != v.shape[:-1] or p.shape != u.shape or w.shape != v.shape or u.shape[-2] != 1:
        raise ValueError(
            "scan_readout_outer: factors must be [T, ..., 1, n] and [T, ..., 1, m], write and query "
            f"alike; got u{tuple(u.shape)} v{tuple(v.shape)} p{tuple(p.shape)} w{tuple(w.shape)}"
        )
    rows, f = coef.shape[-2], u.shape[-1] * v.shape[-1]
    coef = coef.expand(*u.shape[:-2], rows, 1)
    full = (*u.shape[:-2], rows, f)
    torch.broadcast_shapes(a.shape, full)
    h0 = h0.expand(full[1:]) if h0.shape != full[1:] else h0
    return _ScanReadoutOuter.apply(a, u, v, h0, p, w, coef)
