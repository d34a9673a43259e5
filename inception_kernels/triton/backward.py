"""Fused Triton backward of one Inception module, in three launches (docs/design.md §3-4).

Given the upstream gradient ``grad_y`` of ``y = cat([y1, y3, y5, yp])`` and what the forward
saved (``x``, ``y``, the reduce outputs ``r3``/``r5``), :func:`_inception_backward` computes
``dx``, the six weight gradients and the six bias gradients:

* **Launch 1** (``_reduce_grad_kernel``), per tile of pixels x reduce channels:
  ``gr3 = relu'(r3) * conv_transpose(relu'(y3) * g3, w3)`` and the same for branch 5, written to a
  small ``[N, H, W, c3r + c5r]`` buffer (``x``'s dtype) -- the only intermediate in global memory.
* **Launch 2** (``_grads_kernel``), a multi-job grid:

  - *dx jobs*, per tile of pixels x input channels:
    ``dx = g1 @ w1 + gr3 @ w3r + gr5 @ w5r + maxpool_backward(gp @ wp)``. The max-pool backward
    is a gather, no atomics: pixel ``q`` receives ``(gp @ wp)[q + d]`` for each of the nine
    neighbours ``q + d`` whose window's argmax is ``q``. Which windows ``q`` wins is decided
    once per tile from the 5x5 neighbourhood of ``q`` (25 loads, a 25-bit mask of comparisons).
  - *weight jobs*, per (output-channel tile, input-channel tile, tap, pixel split): fp32 partial
    sums over one slice of the ``N*H*W`` pixels of ``dW = g^T a`` -- ``a`` is ``x``, the 3x3
    max-pool of ``x`` (computed while loading) or the shifted ``r3``/``r5`` -- and, in the
    program of the first input-channel tile and tap, of ``db = sum(g)``. Each element of the
    partial buffer ``[S, P]`` is written by exactly one program.
* **Launch 3** (``_sum_partials_kernel``): sums the ``S`` partials of every parameter gradient in
  a fixed order and casts them to the weights' dtype, into one flat buffer of which the twelve
  gradients are views.

No atomics anywhere, so the result is bitwise deterministic. Memory is allocated with
``torch.empty`` only (no fill kernels); the three Triton launches are the only kernels.

Max-pool routing matches PyTorch's ``max_pool2d`` backward exactly: a window's argmax is the
first maximum in row-major scan order (``val > maxval || isnan(val)``, so the *last* NaN when
there are NaNs), padding (``-inf``) is never chosen, and a window of only ``-inf`` routes to its
first in-image position.

Numerics: products on tensor cores (``tl.dot``) in ``x``'s dtype with fp32 accumulation (fp64
for fp64); fp32 inputs use TF32 when ``torch.backends.cudnn.allow_tf32`` is set (on CUDA).
Offsets into activations and partials are 64-bit.

Sizes are runtime arguments (not specialized), so the nine GoogLeNet layers share one compiled
kernel per dtype, kernel sizes, activation and layout. Static checks (compiled here for the 3a
and 5b layers at batch 256, channels_last, with ``triton.compile`` and no GPU; cuobjdump), fp16
and bf16, 8 warps: ``_grads_kernel`` 0 spill bytes, 185 registers and HGMMA on sm_90, 217 and
HMMA on sm_80 (at 4 warps the then-unrolled pool scans spilled 3 KB); ``_reduce_grad_kernel`` 0
spill bytes, 228 registers, HGMMA / HMMA -- one 256-thread program per SM, so occupancy, not
correctness, is what a GPU profile should look at first. Not spill-free: fp32 with TF32 off
(FMA dot; 552 B of stack on sm_90) and fp64 (DMMA; 120 B).

Cost (a design limit): the pool part of ``dx`` recomputes ``gp @ wp`` for each of the nine
neighbours instead of storing it, i.e. 9x the FLOPs of the pool projection's data gradient
(for 3a: 9 * 32 vs 64 + 96 + 16 MACs per pixel and input channel), traded for not writing and
re-reading an ``[N, Cin, H, W]`` tensor.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from .._checks import check_inception_args
from .._launches import _launch

__all__: list[str] = []


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _pixel_coords(m, H, W):
    """Flat pixel index ``m`` over ``N*H*W`` (int64) -> ``(n, h, w)``."""
    w = m % W
    t = m // W
    return t // H, t % H, w


@triton.jit
def _load_grad(g_ptrs, y_ptrs, mask, RELU: tl.constexpr):
    """Load a gradient tile through the activation: ``g`` where ``not y <= 0`` (if ``RELU``;
    ``y`` is the saved post-activation output). Like PyTorch's ``threshold_backward``, the
    gradient passes where ``y`` is NaN. Zero where ``mask`` is false."""
    g = tl.load(g_ptrs, mask=mask, other=0.0)
    if RELU:
        yv = tl.load(y_ptrs, mask=mask, other=0.0)
        g = tl.where(yv <= 0, 0.0, g)
    return g


@triton.jit
def _load_act(a_ptrs, h, w, mask, H, W, a_sh, a_sw, POOL: tl.constexpr):
    """Load an activation tile at ``a_ptrs`` (pixels ``(h, w)``); with ``POOL`` its 3x3/stride-1
    max-pool (``-inf`` padding, NaN-propagating like PyTorch), computed on the fly from the
    strides ``a_sh``/``a_sw``. Zero where ``mask`` is false."""
    if POOL:
        best = tl.full(mask.shape, float("-inf"), a_ptrs.dtype.element_ty)
        for e in range(9):
            eh = e // 3 - 1
            ew = e % 3 - 1
            ok = mask & (h + eh >= 0) & (h + eh < H) & (w + ew >= 0) & (w + ew < W)
            v = tl.load(a_ptrs + (eh * a_sh + ew * a_sw), mask=ok, other=float("-inf"))
            best = tl.where(ok & ((v > best) | (v != v)), v, best)
        return tl.where(mask, best, 0.0)
    else:
        return tl.load(a_ptrs, mask=mask, other=0.0)


@triton.jit
def _rows_gemm(acc, g_ptr, g_st, y_ptr, y_st, g_c0, RELU: tl.constexpr,
               n, h, w, row_ok, K,
               w_ptr, w_st, kh, kw, cols, col_ok,
               BK: tl.constexpr, DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr):
    """``acc[m, j] += sum_k grad[pixel m, g_c0 + k] * wt[k, cols[j], kh, kw]`` over ``k < K``.

    The implicit GEMM behind every data gradient: rows are pixels ``(n, h, w)`` (``[BM]``,
    already shifted by the caller), ``grad`` is read through the activation (``_load_grad``),
    ``wt`` is a conv weight ``[Cout, Cin, k, k]`` with strides ``w_st`` (so this is the
    transposed conv: output channels are the reduction).
    """
    g_rows = g_ptr + ((n * g_st[0] + h * g_st[2] + w * g_st[3]) + g_c0 * g_st[1])[:, None]
    y_rows = y_ptr + ((n * y_st[0] + h * y_st[2] + w * y_st[3]) + g_c0 * y_st[1])[:, None]
    w_cols = w_ptr + (kh * w_st[2] + kw * w_st[3]) + (cols * w_st[1])[None, :]
    for k0 in range(0, K, BK):
        k = k0 + tl.arange(0, BK)
        k_ok = k < K
        gt = _load_grad(g_rows + (k * g_st[1])[None, :], y_rows + (k * y_st[1])[None, :],
                        row_ok[:, None] & k_ok[None, :], RELU)
        wt = tl.load(w_cols + (k * w_st[0])[:, None], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc = tl.dot(gt.to(DT), wt.to(DT), acc, input_precision=PREC, out_dtype=ACC_DT)
    return acc


@triton.jit
def _argmax_bits(x_ptrs, h, w, mask, H, W, x_sh, x_sw):
    """Bit ``o`` (``o = (oh + 2) * 5 + ow + 2``) set where pixel ``q = (h, w)`` (at ``x_ptrs``)
    beats its neighbour ``q + (oh, ow)`` in PyTorch's max-pool scan, over q's 5x5 neighbourhood.

    "Beats" means the scan of any 3x3 window holding both would not end on the neighbour
    because of it: an earlier neighbour (row-major) must be strictly smaller, a later one
    smaller or equal; NaN wins (the last NaN of a window wins); out-of-image neighbours are
    padding and always lose. ``q`` is a window's argmax iff it beats all of the window.
    """
    xq = tl.load(x_ptrs, mask=mask, other=0.0)
    q_nan = xq != xq
    bits = tl.zeros(xq.shape, tl.int32)
    for o in range(25):  # a loop, not unrolled: keeps one neighbour tile live at a time
        oh = o // 5 - 2
        ow = o % 5 - 2
        inside = (h + oh >= 0) & (h + oh < H) & (w + ow >= 0) & (w + ow < W)
        v = tl.load(x_ptrs + (oh * x_sh + ow * x_sw), mask=mask & inside, other=0.0)
        # earlier in scan order: must be strictly smaller (or q is NaN); later: smaller or
        # equal, and not NaN; the centre (o == 12) beats itself
        beat = tl.where(o < 12, q_nan | (xq > v), (v == v) & (q_nan | (xq >= v)))
        bits = bits | ((beat | ~inside | (o == 12)).to(tl.int32) << o)
    return bits


@triton.jit
def _wgrad_tile(pid, S, PPS, NHW, H, W,
                g_ptr, g_st, y_ptr, y_st, g_c0, RELU_G: tl.constexpr,
                a_ptr, a_st, POOL: tl.constexpr,
                Cout, Cin, KS: tl.constexpr,
                part_ptr, part_stride, dw_off, dw_st, db_off,
                BCO: tl.constexpr, BCI: tl.constexpr, BP: tl.constexpr, ALL_TAPS: tl.constexpr,
                DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr):
    """One weight-gradient job: partial ``dW[co, ci, kh, kw] = sum_p g[p, co] a[p + tap, ci]``
    over pixel split ``s`` (and ``db[co] = sum_p g[p, co]`` on the first ci tile and tap),
    stored into ``part[s]`` at ``dw_off`` with the gradient's strides ``dw_st``. The job is
    one tap, or all ``KS * KS`` taps one after another with ``ALL_TAPS``."""
    GRID_TAPS: tl.constexpr = 1 if ALL_TAPS else KS * KS
    s = pid % S
    r = pid // S
    tap0 = r % GRID_TAPS
    r = r // GRID_TAPS
    n_ci = tl.cdiv(Cin, BCI)
    cib = r % n_ci
    cob = r // n_ci
    co = cob * BCO + tl.arange(0, BCO)
    ci = cib * BCI + tl.arange(0, BCI)
    co_ok = co < Cout
    ci_ok = ci < Cin
    g_co = ((g_c0 + co) * g_st[1])[:, None]
    y_co = ((g_c0 + co) * y_st[1])[:, None]
    a_ci = (ci * a_st[1])[None, :]
    p_lo = s.to(tl.int64) * PPS
    p_hi = tl.minimum(p_lo + PPS, NHW)
    base = part_ptr + s.to(tl.int64) * part_stride
    for tap in range(tap0, tap0 + KS * KS // GRID_TAPS):
        kh = tap // KS
        kw = tap % KS
        owns_db = (cib == 0) & (tap == 0)
        acc = tl.zeros((BCO, BCI), ACC_DT)
        bacc = tl.zeros((BCO,), ACC_DT)
        for p0 in range(p_lo, p_hi, BP):
            p = p0 + tl.arange(0, BP)
            p_ok = p < p_hi
            n, h, w = _pixel_coords(p, H, W)
            gt = _load_grad(g_ptr + g_co + (n * g_st[0] + h * g_st[2] + w * g_st[3])[None, :],
                            y_ptr + y_co + (n * y_st[0] + h * y_st[2] + w * y_st[3])[None, :],
                            co_ok[:, None] & p_ok[None, :], RELU_G)  # [BCO, BP]
            hs = h + (kh - KS // 2)
            ws = w + (kw - KS // 2)
            a_ok = p_ok & (hs >= 0) & (hs < H) & (ws >= 0) & (ws < W)
            at = _load_act(a_ptr + a_ci + (n * a_st[0] + hs * a_st[2] + ws * a_st[3])[:, None],
                           hs[:, None], ws[:, None], a_ok[:, None] & ci_ok[None, :], H, W, a_st[2], a_st[3],
                           POOL)  # [BP, BCI]
            acc = tl.dot(gt.to(DT), at.to(DT), acc, input_precision=PREC, out_dtype=ACC_DT)
            if owns_db:
                bacc += tl.sum(gt.to(ACC_DT), axis=1)
        tl.store(base + dw_off + co[:, None] * dw_st[0] + ci[None, :] * dw_st[1] + kh * dw_st[2] + kw * dw_st[3],
                 acc, mask=co_ok[:, None] & ci_ok[None, :])
        if owns_db:
            tl.store(base + db_off + co, bacc, mask=co_ok)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _reduce_grad_branch(pid, NHW, H, W,
                        gy_ptr, gy_st, y_ptr, y_st, g_c0, Cg,
                        w_ptr, w_st, KS: tl.constexpr,
                        r_ptr, r_st, Cr, gr_ptr, gr_st, gr_c0,
                        RELU: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                        DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr):
    """One tile of ``gr = relu'(r) * conv_transpose(relu'(y_b) * g_b, w)`` for one KxK branch."""
    n_cb = tl.cdiv(Cr, BN)
    m = (pid // n_cb).to(tl.int64) * BM + tl.arange(0, BM)
    c = (pid % n_cb) * BN + tl.arange(0, BN)
    m_ok = m < NHW
    c_ok = c < Cr
    n, h, w = _pixel_coords(m, H, W)
    acc = tl.zeros((BM, BN), ACC_DT)
    for t in range(KS * KS):
        kh = t // KS
        kw = t % KS
        hs = h + (KS // 2 - kh)
        ws = w + (KS // 2 - kw)
        ok = m_ok & (hs >= 0) & (hs < H) & (ws >= 0) & (ws < W)
        acc = _rows_gemm(acc, gy_ptr, gy_st, y_ptr, y_st, g_c0, RELU, n, hs, ws, ok, Cg,
                         w_ptr, w_st, kh, kw, c, c_ok, BK, DT, ACC_DT, PREC)
    mask = m_ok[:, None] & c_ok[None, :]
    if RELU:
        rv = tl.load(r_ptr + (n * r_st[0] + h * r_st[2] + w * r_st[3])[:, None] + (c * r_st[1])[None, :],
                     mask=mask, other=0.0)
        acc = tl.where(rv <= 0, 0.0, acc)
    tl.store(gr_ptr + (n * gr_st[0] + h * gr_st[2] + w * gr_st[3])[:, None] + ((gr_c0 + c) * gr_st[1])[None, :],
             acc.to(DT), mask=mask)


@triton.jit(do_not_specialize=["NHW", "H", "W", "o3", "c3", "c3r", "o5", "c5", "c5r", "n_tiles3"])
def _reduce_grad_kernel(
    gy_ptr, gy_st,  # [N, Ctot, H, W] upstream gradient, strides (n, c, h, w)
    y_ptr, y_st,  # [N, Ctot, H, W] forward output (post-activation)
    w3_ptr, w3_st,  # [c3, c3r, K3, K3]
    w5_ptr, w5_st,  # [c5, c5r, K5, K5]
    r3_ptr, r3_st,  # [N, c3r, H, W] saved reduce output (post-activation)
    r5_ptr, r5_st,  # [N, c5r, H, W]
    gr_ptr, gr_st,  # [N, c3r + c5r, H, W] out: reduce gradients (pre-activation), NHWC storage
    NHW, H, W, o3, c3, c3r, o5, c5, c5r, n_tiles3,
    K3: tl.constexpr, K5: tl.constexpr, RELU: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr,
):
    """Launch 1: the gradients at the two reduce convs' outputs; programs ``< n_tiles3`` do
    branch 3, the rest branch 5."""
    pid = tl.program_id(0)
    if pid < n_tiles3:
        _reduce_grad_branch(pid, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, o3, c3, w3_ptr, w3_st, K3,
                            r3_ptr, r3_st, c3r, gr_ptr, gr_st, 0, RELU, BM, BN, BK, DT, ACC_DT, PREC)
    else:
        _reduce_grad_branch(pid - n_tiles3, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, o5, c5, w5_ptr, w5_st, K5,
                            r5_ptr, r5_st, c5r, gr_ptr, gr_st, c3r, RELU, BM, BN, BK, DT, ACC_DT, PREC)


@triton.jit
def _dx_tile(pid, NHW, H, W, Cin,
             gy_ptr, gy_st, y_ptr, y_st, gr_ptr, gr_st, x_ptr, x_st,
             w1_ptr, w1_st, w3r_ptr, w3r_st, w5r_ptr, w5r_st, wp_ptr, wp_st,
             dx_ptr, dx_st, c1, c3r, c5r, cp, op,
             RELU: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
             DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr):
    """One tile of ``dx = g1 @ w1 + gr3 @ w3r + gr5 @ w5r + maxpool_backward(gp @ wp)``."""
    n_cb = tl.cdiv(Cin, BN)
    m = (pid // n_cb).to(tl.int64) * BM + tl.arange(0, BM)
    c = (pid % n_cb) * BN + tl.arange(0, BN)
    m_ok = m < NHW
    c_ok = c < Cin
    n, h, w = _pixel_coords(m, H, W)
    acc = tl.zeros((BM, BN), ACC_DT)
    acc = _rows_gemm(acc, gy_ptr, gy_st, y_ptr, y_st, 0, RELU, n, h, w, m_ok, c1,
                     w1_ptr, w1_st, 0, 0, c, c_ok, BK, DT, ACC_DT, PREC)
    acc = _rows_gemm(acc, gr_ptr, gr_st, gr_ptr, gr_st, 0, False, n, h, w, m_ok, c3r,
                     w3r_ptr, w3r_st, 0, 0, c, c_ok, BK, DT, ACC_DT, PREC)
    acc = _rows_gemm(acc, gr_ptr, gr_st, gr_ptr, gr_st, c3r, False, n, h, w, m_ok, c5r,
                     w5r_ptr, w5r_st, 0, 0, c, c_ok, BK, DT, ACC_DT, PREC)
    # Max-pool backward as a gather: q gets (gp @ wp)[q + d] where q is the argmax of q + d's window.
    mask = m_ok[:, None] & c_ok[None, :]
    bits = _argmax_bits(x_ptr + (n * x_st[0] + h * x_st[2] + w * x_st[3])[:, None] + (c * x_st[1])[None, :],
                        h[:, None], w[:, None], mask, H, W, x_st[2], x_st[3])
    for d in range(9):
        dh = d // 3 - 1
        dw = d % 3 - 1
        hn = h + dh
        wn = w + dw
        nb_ok = m_ok & (hn >= 0) & (hn < H) & (wn >= 0) & (wn < W)
        win = 7399 << ((dh + 1) * 5 + dw + 1)  # 0b111 in 3 rows of 5 bits: the window of q + d
        hit = nb_ok[:, None] & ((bits & win) == win)
        dp = _rows_gemm(tl.zeros((BM, BN), ACC_DT), gy_ptr, gy_st, y_ptr, y_st, op, RELU, n, hn, wn, nb_ok,
                        cp, wp_ptr, wp_st, 0, 0, c, c_ok, BK, DT, ACC_DT, PREC)
        acc += tl.where(hit, dp, 0.0)
    tl.store(dx_ptr + (n * dx_st[0] + h * dx_st[2] + w * dx_st[3])[:, None] + (c * dx_st[1])[None, :],
             acc.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["NHW", "H", "W", "Cin", "c1", "c3r", "c3", "c5r", "c5", "cp", "o3", "o5", "op",
                               "S", "PPS"])
def _grads_kernel(
    gy_ptr, gy_st,  # [N, Ctot, H, W] upstream gradient
    y_ptr, y_st,  # [N, Ctot, H, W] forward output (post-activation)
    gr_ptr, gr_st,  # [N, c3r + c5r, H, W] reduce gradients from launch 1
    x_ptr, x_st,  # [N, Cin, H, W] input
    r3_ptr, r3_st,  # [N, c3r, H, W]
    r5_ptr, r5_st,  # [N, c5r, H, W]
    w1_ptr, w1_st,  # [c1, Cin, 1, 1]
    w3r_ptr, w3r_st,  # [c3r, Cin, 1, 1]
    w5r_ptr, w5r_st,  # [c5r, Cin, 1, 1]
    wp_ptr, wp_st,  # [cp, Cin, 1, 1]
    dx_ptr, dx_st,  # [N, Cin, H, W] out
    part_ptr,  # [S, P] out: fp32 (fp64) partial weight/bias gradients
    offs,  # 13 offsets into a row of part: dW then db of (1, 3r, 3, 5r, 5, p), then its length P
    dw_sts,  # 6 stride tuples (Cout, Cin, kh, kw) of the weight gradients
    ends,  # 7 cumulative program counts: dx jobs, then weight jobs of (1, 3r, 3, 5r, 5, p)
    NHW, H, W, Cin, c1, c3r, c3, c5r, c5, cp, o3, o5, op,
    S, PPS,
    K3: tl.constexpr, K5: tl.constexpr, RELU: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    BCO: tl.constexpr, BCI: tl.constexpr, BP: tl.constexpr, ALL_TAPS: tl.constexpr,
    DT: tl.constexpr, ACC_DT: tl.constexpr, PREC: tl.constexpr,
):
    """Launch 2: dx tiles, then the partial weight/bias gradients of the six convs."""
    pid = tl.program_id(0)
    P = offs[12]
    if pid < ends[0]:
        _dx_tile(pid, NHW, H, W, Cin, gy_ptr, gy_st, y_ptr, y_st, gr_ptr, gr_st, x_ptr, x_st,
                 w1_ptr, w1_st, w3r_ptr, w3r_st, w5r_ptr, w5r_st, wp_ptr, wp_st,
                 dx_ptr, dx_st, c1, c3r, c5r, cp, op, RELU, BM, BN, BK, DT, ACC_DT, PREC)
    elif pid < ends[1]:
        _wgrad_tile(pid - ends[0], S, PPS, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, 0, RELU,
                    x_ptr, x_st, False, c1, Cin, 1, part_ptr, P, offs[0], dw_sts[0], offs[6],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)
    elif pid < ends[2]:
        _wgrad_tile(pid - ends[1], S, PPS, NHW, H, W, gr_ptr, gr_st, gr_ptr, gr_st, 0, False,
                    x_ptr, x_st, False, c3r, Cin, 1, part_ptr, P, offs[1], dw_sts[1], offs[7],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)
    elif pid < ends[3]:
        _wgrad_tile(pid - ends[2], S, PPS, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, o3, RELU,
                    r3_ptr, r3_st, False, c3, c3r, K3, part_ptr, P, offs[2], dw_sts[2], offs[8],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)
    elif pid < ends[4]:
        _wgrad_tile(pid - ends[3], S, PPS, NHW, H, W, gr_ptr, gr_st, gr_ptr, gr_st, c3r, False,
                    x_ptr, x_st, False, c5r, Cin, 1, part_ptr, P, offs[3], dw_sts[3], offs[9],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)
    elif pid < ends[5]:
        _wgrad_tile(pid - ends[4], S, PPS, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, o5, RELU,
                    r5_ptr, r5_st, False, c5, c5r, K5, part_ptr, P, offs[4], dw_sts[4], offs[10],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)
    else:
        _wgrad_tile(pid - ends[5], S, PPS, NHW, H, W, gy_ptr, gy_st, y_ptr, y_st, op, RELU,
                    x_ptr, x_st, True, cp, Cin, 1, part_ptr, P, offs[5], dw_sts[5], offs[11],
                    BCO, BCI, BP, ALL_TAPS, DT, ACC_DT, PREC)


@triton.jit
def _sum_partials_kernel(
    part_ptr,  # [S, P] partial gradients (fp32, or fp64)
    out_ptr,  # [P] out: summed gradients in the weights' dtype
    S, P, BLOCK: tl.constexpr,
):
    """Launch 3: ``out[e] = sum_s part[s, e]``, in order ``s = 0, 1, ...`` (deterministic)."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = e < P
    acc = tl.zeros((BLOCK,), part_ptr.dtype.element_ty)
    ptrs = part_ptr + e
    for _ in range(S):
        acc += tl.load(ptrs, mask=ok, other=0.0)
        ptrs += P  # pointer arithmetic: 64-bit
    tl.store(out_ptr + e, acc.to(out_ptr.dtype.element_ty), mask=ok)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------

_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
              torch.float64: tl.float64}

#: Fewest pixels one weight-gradient program reduces: bounds the partial-sum traffic
#: (``S * params * 4`` bytes) to well below the activation traffic.
_MIN_PIXELS_PER_SPLIT = 512
#: Programs the weight jobs aim for (a few waves on a 132-SM H100).
_TARGET_WEIGHT_PROGRAMS = 1024


def _backward_config(dtype: torch.dtype, on_gpu: bool, nhw: int, weight_tiles: int) -> dict:
    """Tile shapes and the pixel split of the backward, from one heuristic.

    On a GPU every GEMM tile is 64 x 64 (pixels or output channels x channels) with a
    reduction step of 32 for 2-byte dtypes and 16 for 4- and 8-byte ones (the same operand
    bytes in shared memory; every ``tl.dot`` dimension >= 16); the weight-gradient reduction
    steps 32 pixels, and each KxK tap is its own job (parallelism). The interpreter (CPU
    tensors) pays per program, per operation and per padded multiply (its ``tl.dot`` is an
    unblocked numpy loop), so it gets pixel tiles no larger than the problem (16 to 64),
    128 x 128 channel tiles with 64-deep steps, and one job per weight tile for all taps.

    Weight gradients reduce over ``N*H*W`` pixels split into ``S`` slices of ``PPS`` pixels:
    enough slices for about ``_TARGET_WEIGHT_PROGRAMS`` programs, but none smaller than
    ``_MIN_PIXELS_PER_SPLIT`` pixels.

    Args:
        dtype: the compute dtype (``x``'s).
        on_gpu: CUDA (or 'meta') tensors; else CPU tensors in the interpreter.
        nhw: ``N * H * W``.
        weight_tiles: weight-gradient tiles (Cout x Cin x taps) before splitting pixels.

    Returns:
        dict with BM, BN, BK (data-gradient tiles), BCO, BCI, BP (weight-gradient tiles),
        ALL_TAPS (a weight job loops over all KxK taps instead of owning one), WARPS (of the
        two GEMM kernels: 8 on a GPU keeps the dx job's pool-routing tiles out of local memory),
        SUM_BLOCK (elements per program of the partial sum), S (pixel splits, 0 when
        ``nhw == 0``) and PPS (pixels per split, a multiple of BP).
    """
    if on_gpu:
        bk = 32 if dtype.itemsize == 2 else 16
        cfg = dict(BM=64, BN=64, BK=bk, BCO=64, BCI=64, BP=32, ALL_TAPS=False, SUM_BLOCK=1024, WARPS=8)
    else:
        bm = min(64, max(16, triton.next_power_of_2(nhw)))
        cfg = dict(BM=bm, BN=128, BK=64, BCO=128, BCI=128, BP=bm, ALL_TAPS=True, SUM_BLOCK=65536, WARPS=4)
    if nhw == 0:
        return dict(cfg, S=0, PPS=cfg["BP"])
    s = max(1, min(triton.cdiv(_TARGET_WEIGHT_PROGRAMS, max(weight_tiles, 1)),
                   triton.cdiv(nhw, _MIN_PIXELS_PER_SPLIT)))
    pps = triton.cdiv(triton.cdiv(nhw, s), cfg["BP"]) * cfg["BP"]
    return dict(cfg, S=triton.cdiv(nhw, pps), PPS=pps)


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in t.stride())


def _dense_strides(w: torch.Tensor) -> tuple[int, int, int, int]:
    """Strides for a gradient of ``w``'s shape in ``w``'s memory format (channels_last or not)."""
    co, ci, kh, kw = w.shape
    if not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        return (ci * kh * kw, 1, kw * ci, ci)
    return (ci * kh * kw, kh * kw, kw, 1)


def _check_saved(name: str, t: torch.Tensor, shape: tuple, x: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device}, but x is on {x.device}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {t.dtype}, but x has dtype {x.dtype}; they must match")


def _inception_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    r3: torch.Tensor,
    r5: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]],
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
    needs_input_grad: Optional[Sequence[bool]] = None,
):
    """Gradients of one Inception module (see ``reference.inception``) in at most 3 launches.

    Args:
        grad_y: ``[N, Ctot, H, W]`` gradient of the module output, any strides.
        x: the input ``[N, Cin, H, W]``.
        y: the forward output ``[N, Ctot, H, W]`` (post-activation), any strides.
        r3, r5: the reduce outputs (post-activation) ``[N, c3r, H, W]``, ``[N, c5r, H, W]``.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, ``[Cout, Cin, k, k]``.
        biases: ``(b1, b3r, b3, b5r, b5, bp)``, each a tensor or None; or None.
        kernel_sizes: ``(K3, K5)``.
        activation: ``"relu"`` or ``None``.
        needs_input_grad: None (everything) or 13 bools for ``(x, w1, w3r, w3, w5r, w5, wp,
            b1, b3r, b3, b5r, b5, bp)``, like ``ctx.needs_input_grad``; gradients not needed
            are returned as None and their jobs are not run.

    Returns:
        ``(dx, (dw1, dw3r, dw3, dw5r, dw5, dwp), (db1, db3r, db3, db5r, db5, dbp))``: ``dx`` in
        ``x``'s dtype and memory format; weight and bias gradients in the weights' dtype, in
        the weights' memory format (views of one buffer); None where not needed or where the
        bias is None.

    Raises:
        TypeError, ValueError: inconsistent arguments.
    """
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    w1, w3r, w3, w5r, w5, wp = weights
    N, Cin, H, W = (int(v) for v in x.shape)
    c1, c3r, c3, c5r, c5, cp = (spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                                spec.pool_proj)
    K3, K5 = spec.kernel_sizes
    _, o3, o5, op = spec.channel_offsets
    _check_saved("grad_y", grad_y, (N, spec.out_channels, H, W), x)
    _check_saved("y", y, (N, spec.out_channels, H, W), x)
    _check_saved("r3", r3, (N, c3r, H, W), x)
    _check_saved("r5", r5, (N, c5r, H, W), x)
    if needs_input_grad is None:
        needs_input_grad = (True,) * 13
    needs_input_grad = tuple(bool(v) for v in needs_input_grad)
    if len(needs_input_grad) != 13:
        raise ValueError(f"needs_input_grad must have 13 entries (x, 6 weights, 6 biases), "
                         f"got {len(needs_input_grad)}")
    need_dx = needs_input_grad[0]
    # A branch's weight job also produces its bias gradient.
    need_branch = [needs_input_grad[1 + i] or (needs_input_grad[7 + i] and biases[i] is not None)
                   for i in range(6)]

    relu = activation == "relu"
    dt = _TL_DTYPES[x.dtype]
    acc_torch = torch.float64 if x.dtype == torch.float64 else torch.float32
    acc_dt = _TL_DTYPES[acc_torch]
    prec = "tf32" if (x.dtype == torch.float32 and x.is_cuda and torch.backends.cudnn.allow_tf32) else "ieee"
    nhw = N * H * W

    # Layout of one row of the partial-gradient buffer: dW of needed branches, then their db.
    couts = (c1, c3r, c3, c5r, c5, cp)
    dw_sts, offs, p_total = [], [0] * 13, 0
    for i, w in enumerate(weights):
        dw_sts.append(_dense_strides(w))
        offs[i] = p_total
        p_total += w.numel() if need_branch[i] else 0
    for i in range(6):
        offs[6 + i] = p_total
        p_total += couts[i] if need_branch[i] else 0
    offs[12] = p_total

    on_gpu = x.device.type != "cpu"  # CUDA, or 'meta' for ahead-of-time compiles
    cfg0 = _backward_config(x.dtype, on_gpu, nhw, 1)
    tiles = [triton.cdiv(couts[i], cfg0["BCO"]) * triton.cdiv(w.shape[1], cfg0["BCI"])
             * (1 if cfg0["ALL_TAPS"] else w.shape[2] * w.shape[3]) if need_branch[i] else 0
             for i, w in enumerate(weights)]
    cfg = _backward_config(x.dtype, on_gpu, nhw, sum(tiles))
    BM, BN, BK, S = cfg["BM"], cfg["BN"], cfg["BK"], cfg["S"]
    common = dict(DT=dt, ACC_DT=acc_dt, PREC=prec)

    need_gr = need_dx or need_branch[1] or need_branch[3]
    dx = torch.empty_like(x, memory_format=torch.preserve_format) if need_dx else None
    gr = (torch.empty((N, H, W, c3r + c5r), dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)
          if need_gr and nhw > 0 else x)  # x: a placeholder pointer, never read when unused

    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        if need_gr and nhw > 0:
            n3 = triton.cdiv(nhw, BM) * triton.cdiv(c3r, BN)
            n5 = triton.cdiv(nhw, BM) * triton.cdiv(c5r, BN)
            _launch(
                _reduce_grad_kernel, (n3 + n5,),
                grad_y, _strides(grad_y), y, _strides(y), w3, _strides(w3), w5, _strides(w5),
                r3, _strides(r3), r5, _strides(r5), gr, _strides(gr),
                nhw, H, W, o3, c3, c3r, o5, c5, c5r, n3,
                K3=K3, K5=K5, RELU=relu, BM=BM, BN=BN, BK=BK, num_warps=cfg["WARPS"], **common)

        part = torch.empty((S, p_total), dtype=acc_torch, device=x.device) if p_total else None
        n_dx = triton.cdiv(nhw, BM) * triton.cdiv(Cin, BN) if need_dx else 0
        ends = [n_dx]
        for i in range(6):
            ends.append(ends[-1] + tiles[i] * S)
        if ends[-1] > 0:
            _launch(
                _grads_kernel, (ends[-1],),
                grad_y, _strides(grad_y), y, _strides(y), gr, _strides(gr), x, _strides(x),
                r3, _strides(r3), r5, _strides(r5),
                w1, _strides(w1), w3r, _strides(w3r), w5r, _strides(w5r), wp, _strides(wp),
                dx if dx is not None else x, _strides(dx if dx is not None else x),
                part if part is not None else x, tuple(offs), tuple(dw_sts), tuple(ends),
                nhw, H, W, Cin, c1, c3r, c3, c5r, c5, cp, o3, o5, op, S, cfg["PPS"],
                K3=K3, K5=K5, RELU=relu, BM=BM, BN=BN, BK=BK,
                BCO=cfg["BCO"], BCI=cfg["BCI"], BP=cfg["BP"], ALL_TAPS=cfg["ALL_TAPS"], num_warps=cfg["WARPS"],
                **common)

        dws, dbs = [None] * 6, [None] * 6
        if p_total:
            flat = torch.empty(p_total, dtype=w1.dtype, device=x.device)
            _launch(_sum_partials_kernel, (triton.cdiv(p_total, cfg["SUM_BLOCK"]),), part, flat, S, p_total,
                    BLOCK=cfg["SUM_BLOCK"])
            for i, w in enumerate(weights):
                if need_branch[i] and needs_input_grad[1 + i]:
                    dws[i] = flat.as_strided(w.shape, dw_sts[i], offs[i])
                if need_branch[i] and needs_input_grad[7 + i] and biases[i] is not None:
                    dbs[i] = flat.as_strided((couts[i],), (1,), offs[6 + i])
    return dx, tuple(dws), tuple(dbs)
