"""Fused Triton backward of one Inception module, in three launches (docs/design.md §3-4).

Given the upstream gradient ``grad_y`` of ``y = cat([y1, y3, y5, yp])`` and what the forward
saved (``x``, ``y``, the reduce outputs ``r3``/``r5``), :func:`_inception_backward` computes
``dx``, the six weight gradients and the six bias gradients. ``g_b' = relu'(y_b) * g_b`` is the
gradient at a branch's conv output; it is formed while loading (``_load_grad``), never stored.
Every product is a tensor-core GEMM over flat pixel rows, like the forward (``_common``):

* **Launch 1** (``_reduce_grad_kernel``): ``gr_b = relu'(r_b) * conv_transpose(g_b', w_b)`` for
  the two KxK branches -- an implicit GEMM ``[pixels, K*K*c_out] x [K*K*c_out, c_r]`` with one
  flat (tap, channel) reduction loop -- into a small ``[N*H*W, CS3 + CS5]`` buffer, the only
  intermediate in global memory.
* **Launch 2** (``_grads_kernel``), persistent programs over a job list:

  - *dx jobs*, per pixel tile x input-channel tile:
    ``dx = g1' @ w1 + gr3 @ w3r + gr5 @ w5r + maxpool_backward(gp' @ wp)`` -- one GEMM whose
    reduction runs over the three sources in turn. The pool branch's product ``z = gp' @ wp`` is
    computed **once per tile** over the tile plus its one-row halo into the program's scratch
    (global memory, L2), then routed: pixel ``q`` receives ``z[q + d]`` for each neighbour
    ``q + d`` whose 3x3 window's argmax is ``q`` (a gather, no atomics; which windows ``q``
    wins is decided from its 5x5 neighbourhood, ``_argmax_bits``).
  - *weight jobs*, per (output-channel tile, input tile, pixel split): fp32 partial sums of
    ``dW = g'^T a`` over ``PPS`` pixels, 64 pixels per step. ``a`` is ``x``, its 3x3 max-pool
    (built while loading), or for a KxK conv the reduce output shifted by each tap -- the taps
    are folded into the GEMM's N (``(tap, channel)`` columns), so a KxK weight gradient is one
    GEMM. The bias gradient ``db = sum_p g'`` is a reduction of the A operand the job already
    holds (the job of the first N tile stores it), not a GEMM.
* **Launch 3** (``_sum_partials_kernel``): sums the ``S`` partials of every parameter gradient
  in a fixed order into one flat buffer of which the twelve gradients are views.

No atomics anywhere: bitwise deterministic. Memory comes from ``torch.empty`` only.

Max-pool routing matches PyTorch's ``max_pool2d`` backward exactly: a window's argmax is the
first maximum in row-major scan order (``val > maxval || isnan(val)``, so the *last* NaN when
there are NaNs), padding (``-inf``) is never chosen, and a window of only ``-inf`` routes to
its first in-image position.

Numerics: products on tensor cores in ``x``'s dtype with fp32 accumulation (fp64 for fp64);
fp32 follows ``torch.backends.cudnn.allow_tf32`` on CUDA. ``gr`` is stored in ``x``'s dtype,
``z`` and the partial sums in the accumulator's. Offsets into activations and partials are
64-bit. Channel counts, kernel sizes, ``H``, ``W`` and the weights' strides are compile-time
constants (one compiled kernel per layer), as in the forward; tiles follow
:func:`~inception_kernels.triton._config.gemm_tiles`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from .._checks import check_inception_args, check_needs_input_grad, check_saved_tensors
from ._launches import _launch
from .._layout import grad_layout, pixel_split
from ._common import _pixel_rows, _pool_tile, _tap_of, _tap_ok
from ._config import dot_precision, gemm_tiles, target_of, tma_rows_ok, tma_scratch
from .inception_fwd import _round_up, _split_n, _tile_width

__all__: list[str] = []


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


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
def _grad_rows(p, sg, sy, H: tl.constexpr, W: tl.constexpr):
    """Row offsets of the pixels ``p`` in ``g`` and ``y`` (strides ``sg``, ``sy``), shared by
    ``_dgrad`` and ``_dgrad_taps_inside``; rows outside the image are masked by the caller."""
    g_row, _h, _w, _ok = _pixel_rows(p, 1 << 30, sg[0], sg[2], sg[3], H, W)
    y_row, _h, _w, _ok = _pixel_rows(p, 1 << 30, sy[0], sy[2], sy[3], H, W)
    return g_row, y_row


@triton.jit
def _load_shifted_grad(g_ptr, g_row, sg, y_ptr, y_row, sy, ch, dh, dw, mask, RELU: tl.constexpr):
    """``g'`` at channels ``ch`` of the pixels ``p - (dh, dw)`` (rows ``g_row``/``y_row`` of ``p``;
    ``ch``, ``dh``, ``dw`` broadcast along the columns): the A operand of a transposed conv."""
    return _load_grad(g_ptr + g_row[:, None] + (ch * sg[1] - dh * sg[2] - dw * sg[3])[None, :],
                      y_ptr + y_row[:, None] + (ch * sy[1] - dh * sy[2] - dw * sy[3])[None, :], mask, RELU)


@triton.jit
def _dgrad(
    acc, p, h, w, ok,  # accumulator [BM, BN]; the pixel rows
    g_ptr, sg, y_ptr, sy, G0: tl.constexpr, RELU: tl.constexpr,  # A source: g'[pixel, G0 + c]
    wk_ptr, WK_S: tl.constexpr, n, n_ok,  # B: weight [C, N, KS, KS]; columns n of its dim 1
    C: tl.constexpr, KS: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
    BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr,
):
    """``acc[m, n] += sum_(tap, c) g'[p_m - tap, G0 + c] * wk[c, n, tap]``: the data gradient of a
    conv (its transpose) as one flat (tap, channel) loop; ``KS = 1`` for a 1x1 conv. ``g'`` is
    ``g`` through the activation mask ``y`` (``RELU``), or a plain buffer (``RELU`` False)."""
    PAD: tl.constexpr = KS // 2
    KTOT: tl.constexpr = KS * KS * C
    g_row, y_row = _grad_rows(p, sg, sy, H, W)
    for k0 in tl.range(0, KTOT, BK, num_stages=NSTAGE):
        k = k0 + tl.arange(0, BK)
        k_ok = k < KTOT
        c, kh, kw = _tap_of(k, C, KS)
        dh = kh - PAD
        dw = kw - PAD
        # the output pixel whose tap (kh, kw) reads pixel p: p - (dh, dw)
        a_ok = ok[:, None] & k_ok[None, :] & _tap_ok(h[:, None], w[:, None], -dh[None, :], -dw[None, :], H, W)
        a = _load_shifted_grad(g_ptr, g_row, sg, y_ptr, y_row, sy, G0 + c, dh, dw, a_ok, RELU)
        b = tl.load(wk_ptr + (c * WK_S[0] + kh * WK_S[2] + kw * WK_S[3])[:, None] + (n * WK_S[1])[None, :],
                    mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)
    return acc


@triton.jit
def _dgrad_taps_inside(
    n0, p0, NHW, g_ptr, sg, y_ptr, sy, G0: tl.constexpr, RELU: tl.constexpr, wk_ptr, WK_S: tl.constexpr,
    r_ptr, sr, gr_ptr, C: tl.constexpr, N: tl.constexpr, KS: tl.constexpr, GR0: tl.constexpr, GS: tl.constexpr,
    H: tl.constexpr, W: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """``_reduce_grad_tile`` for columns ``[n0, n0 + BN)`` (of ``N``) and rows ``p0 + [0, BM)``,
    computed tap by tap, each tap added only to the rows whose source pixel is in the image (the
    transposed convolution with no term for the zero padding: non-finite weights give no
    0 * inf at the border), and stored."""
    PAD: tl.constexpr = KS // 2
    p = p0 + tl.arange(0, BM)
    _row, h, w, ok = _pixel_rows(p, NHW, 0, 0, 0, H, W)
    g_row, y_row = _grad_rows(p, sg, sy, H, W)
    RBN: tl.constexpr = 16  # columns per pass: two small accumulators, well within the registers
    for j in range(BN // RBN):
        n = n0 + j * RBN + tl.arange(0, RBN)
        n_ok = n < N
        acc = tl.zeros((BM, RBN), ACC)
        for t in range(KS * KS):
            dh = t // KS - PAD
            dw = t % KS - PAD
            inside = ok & _tap_ok(h, w, -dh, -dw, H, W)
            part = tl.zeros((BM, RBN), ACC)
            for c0 in range(0, C, BK):
                c = c0 + tl.arange(0, BK)
                c_ok = c < C
                a_ok = inside[:, None] & c_ok[None, :]
                a = _load_shifted_grad(g_ptr, g_row, sg, y_ptr, y_row, sy, G0 + c, dh, dw, a_ok, RELU)
                b = tl.load(wk_ptr + (c * WK_S[0] + (t // KS) * WK_S[2] + (t % KS) * WK_S[3])[:, None]
                            + (n * WK_S[1])[None, :], mask=c_ok[:, None] & n_ok[None, :], other=0.0)
                part = tl.dot(a, b, part, input_precision=PREC, out_dtype=part.dtype)
            acc = tl.where(inside[:, None], acc + part, acc)
        _store_reduce_grad(acc, p, ok, n, n_ok, r_ptr, sr, gr_ptr, NHW, GR0, GS, RELU, H, W)


@triton.jit
def _argmax_bits(x_ptrs, h, w, mask, H: tl.constexpr, W: tl.constexpr, x_sh, x_sw):
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


# --------------------------------------------------------------------------------------------
# Tiles (each compiled out of line: registers are allocated per tile, not across the kernel)
# --------------------------------------------------------------------------------------------


@triton.jit(noinline=True)
def _reduce_grad_tile(
    n0, p0, NHW, gy_ptr, sg, y_ptr, sy, wk_ptr, r_ptr, sr, gr_ptr,
    OY: tl.constexpr, CO: tl.constexpr, CR: tl.constexpr, KS: tl.constexpr, WK_S: tl.constexpr,
    GR0: tl.constexpr, GS: tl.constexpr, RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    PREC: tl.constexpr,
):
    """Columns ``[n0, n0 + BN)`` of ``gr_b`` for the pixel rows ``p0 + [0, BM)``: the transposed
    KxK conv of ``g_b'`` (``y``'s channels ``[OY, OY + CO)``), masked by ``relu'(r_b)``, stored
    at column ``GR0`` of the flat ``gr`` buffer (row stride ``GS``)."""
    p = p0 + tl.arange(0, BM)
    _row, h, w, ok = _pixel_rows(p, NHW, 0, 0, 0, H, W)
    n = n0 + tl.arange(0, BN)
    n_ok = n < CR
    acc = tl.zeros((BM, BN), ACC)
    acc = _dgrad(acc, p, h, w, ok, gy_ptr, sg, y_ptr, sy, OY, RELU, wk_ptr, WK_S, n, n_ok, CO, KS, H, W,
                 BK, NSTAGE, PREC)
    # as in the forward: a NaN may be 0 * inf from a zero-padded tap -- recompute tap by tap
    if tl.max(tl.where(acc != acc, 1, 0)) > 0:
        _dgrad_taps_inside(n0, p0, NHW, gy_ptr, sg, y_ptr, sy, OY, RELU, wk_ptr, WK_S, r_ptr, sr, gr_ptr, CO, CR, KS,
                           GR0, GS, H, W, ACC, BM, BN, BK, PREC)
    else:
        _store_reduce_grad(acc, p, ok, n, n_ok, r_ptr, sr, gr_ptr, NHW, GR0, GS, RELU, H, W)


@triton.jit
def _store_reduce_grad(acc, p, ok, n, n_ok, r_ptr, sr, gr_ptr, NHW, GR0: tl.constexpr, GS: tl.constexpr,
                       RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr):
    """``gr[p, GR0 + n] = relu'(r) * acc`` (the reduce output's activation mask; ``r`` by strides)."""
    mask = ok[:, None] & n_ok[None, :]
    if RELU:
        r_row, _h, _w, _ok = _pixel_rows(p, NHW, sr[0], sr[2], sr[3], H, W)
        rv = tl.load(r_ptr + r_row[:, None] + (n * sr[1])[None, :], mask=mask, other=0.0)
        acc = tl.where(rv <= 0, 0.0, acc)
    tl.store(gr_ptr + (p.to(tl.int64) * GS)[:, None] + (GR0 + n)[None, :], acc.to(gr_ptr.dtype.element_ty),
             mask=mask)


@triton.jit(noinline=True)
def _dx_tile(
    n0, p0, NHW, gy_ptr, sg, y_ptr, sy, gr_ptr, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, wp_ptr, z_ptr, dx_ptr, sdx,
    CIN: tl.constexpr, C1: tl.constexpr, C3R: tl.constexpr, C5R: tl.constexpr, CP: tl.constexpr,
    OP: tl.constexpr, CS3: tl.constexpr, GS: tl.constexpr,
    W1_S: tl.constexpr, W3R_S: tl.constexpr, W5R_S: tl.constexpr, WP_S: tl.constexpr,
    RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr, ZT: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    PREC: tl.constexpr, TMA: tl.constexpr,
):
    """Input channels ``[n0, n0 + BN)`` of ``dx`` for the pixel rows ``p0 + [0, BM)``.

    ``z = gp' @ wp`` is computed for the rows ``[p0 - W - 1, p0 - W - 1 + ZT * BM)`` (the tile and
    every 3x3 neighbour of it) into ``z_ptr``, this program's ``[ZT * BM, BN]`` scratch, once."""
    p = p0 + tl.arange(0, BM)
    _row, h, w, ok = _pixel_rows(p, NHW, 0, 0, 0, H, W)
    n = n0 + tl.arange(0, BN)
    n_ok = n < CIN
    # 1. the pool branch's product over the tile and its halo -> scratch
    zrows = tl.arange(0, BM)
    for zt in range(ZT):
        q = p0 - (W + 1) + zt * BM + zrows
        _qr, qh, qw, q_ok = _pixel_rows(q, NHW, 0, 0, 0, H, W)
        z = tl.zeros((BM, BN), ACC)
        z = _dgrad(z, q, qh, qw, q_ok, gy_ptr, sg, y_ptr, sy, OP, RELU, wp_ptr, WP_S, n, n_ok, CP, 1, H, W,
                   BK, NSTAGE, PREC)
        tl.store(z_ptr + ((zt * BM + zrows) * BN)[:, None] + tl.arange(0, BN)[None, :], z)
    # 2. the three other branches: one reduction over g1', gr3, gr5
    acc = tl.zeros((BM, BN), ACC)
    acc = _dgrad(acc, p, h, w, ok, gy_ptr, sg, y_ptr, sy, 0, RELU, w1_ptr, W1_S, n, n_ok, C1, 1, H, W,
                 BK, NSTAGE, PREC)
    acc = _dgrad_flat(acc, p, ok, gr_ptr, GS, 0, w3r_ptr, W3R_S, n, n_ok, C3R, BK, NSTAGE, PREC,
                      p0, NHW, n0, CIN, BM, BN, TMA)
    acc = _dgrad_flat(acc, p, ok, gr_ptr, GS, CS3, w5r_ptr, W5R_S, n, n_ok, C5R, BK, NSTAGE, PREC,
                      p0, NHW, n0, CIN, BM, BN, TMA)
    tl.debug_barrier()  # z is in the scratch
    # 3. max-pool backward as a gather from the scratch
    x_row, _h, _w, _ok = _pixel_rows(p, NHW, sx[0], sx[2], sx[3], H, W)
    mask = ok[:, None] & n_ok[None, :]
    bits = _argmax_bits(x_ptr + x_row[:, None] + (n * sx[1])[None, :], h[:, None], w[:, None], mask, H, W,
                        sx[2], sx[3])
    for d in range(9):
        dh = d // 3 - 1
        dw = d % 3 - 1
        nb_ok = ok & _tap_ok(h, w, dh, dw, H, W)
        win = 7399 << ((dh + 1) * 5 + dw + 1)  # 0b111 in 3 rows of 5 bits: the window of q + d
        hit = nb_ok[:, None] & ((bits & win) == win)
        zr = tl.arange(0, BM) + (W + 1) + dh * W + dw  # scratch row of q + d
        zv = tl.load(z_ptr + (zr * BN)[:, None] + tl.arange(0, BN)[None, :], mask=hit, other=0.0)
        acc += zv
    tl.debug_barrier()  # the scratch is read; the next job may overwrite it
    dx_row, _h, _w, _ok = _pixel_rows(p, NHW, sdx[0], sdx[2], sdx[3], H, W)
    tl.store(dx_ptr + dx_row[:, None] + (n * sdx[1])[None, :], acc.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dgrad_flat(acc, p, ok, g_ptr, GS: tl.constexpr, G0: tl.constexpr, wk_ptr, WK_S: tl.constexpr, n, n_ok,
                C: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr,
                p0, NHW, n0, NW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, TMA: tl.constexpr):
    """``acc[m, n] += sum_c g[p_m, G0 + c] * wk[c, n]`` for a flat ``[N*H*W, GS]`` buffer ``g``
    (the reduce gradients) and a 1x1 weight ``wk [C, NW, 1, 1]``; ``p = p0 + [0, BM)``,
    ``n = n0 + [0, BN)``.

    ``TMA`` (sm_90; the launcher's rule): both operands are boxes of 2-D tensors, read through
    tensor descriptors -- ``g``'s columns ``[G0, G0 + C)`` as ``[N*H*W, C]`` (row stride ``GS``)
    and ``wk`` as ``[C, NW]`` (row stride ``WK_S[0]``) -- zero-filled outside them -- when the loop
    has two steps or more (one step has nothing to overlap: it keeps the pointer loads)."""
    if TMA and C > BK:
        g_desc = tl.make_tensor_descriptor(g_ptr + G0, shape=[NHW, C], strides=[GS, 1], block_shape=[BM, BK])
        w_desc = tl.make_tensor_descriptor(wk_ptr, shape=[C, NW], strides=[WK_S[0], 1], block_shape=[BK, BN])
        for k0 in tl.range(0, C, BK, num_stages=NSTAGE):
            acc = tl.dot(g_desc.load([p0, k0]), w_desc.load([k0, n0]), acc, input_precision=PREC,
                         out_dtype=acc.dtype)
        return acc
    g_row = p.to(tl.int64) * GS + G0
    for k0 in tl.range(0, C, BK, num_stages=NSTAGE):
        c = k0 + tl.arange(0, BK)
        c_ok = c < C
        a = tl.load(g_ptr + g_row[:, None] + c[None, :], mask=ok[:, None] & c_ok[None, :], other=0.0)
        b = tl.load(wk_ptr + (c * WK_S[0])[:, None] + (n * WK_S[1])[None, :], mask=c_ok[:, None] & n_ok[None, :],
                    other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)
    return acc


@triton.jit(noinline=True)
def _wgrad_tile(
    mt, n0, s, PPS, NHW,
    g_ptr, sg, y_ptr, sy,  # A source: g'[pixel, G0 + co] (RELU) or the flat gr buffer (G_FLAT)
    a_ptr, sa,  # B source: x or the reduce output r, by strides (n, c, h, w)
    part_ptr, P,  # [S, P] partial sums (fp32 / fp64)
    G0: tl.constexpr, G_FLAT: tl.constexpr, GS: tl.constexpr, RELU: tl.constexpr,
    CO: tl.constexpr, CI: tl.constexpr, KS: tl.constexpr, POOL: tl.constexpr,
    DW_OFF: tl.constexpr, DW_S: tl.constexpr, WI: tl.constexpr, DB_OFF: tl.constexpr, NEED_DB: tl.constexpr,
    db_on,
    H: tl.constexpr, W: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    PREC: tl.constexpr, DT: tl.constexpr,
):
    """Partial weight gradient ``dW[co, (tap, ci)] = sum_p g'[p, co] a[p + tap, ci]`` of output
    channels ``mt * BM + [0, BM)`` and columns ``[n0, n0 + BN)`` of the ``(tap, ci)`` axis (taps
    folded into N), over the pixels ``[s * PPS, (s + 1) * PPS)``; stored into ``part[s]`` at
    ``DW_OFF`` with the gradient's strides ``DW_S[4*WI : 4*WI + 4]`` (one flat tuple of the six
    gradients' strides: Triton 3.6 cannot pass a tuple taken out of a tuple). With ``NEED_DB``,
    the job of the first N tile (``db_on``) also stores the bias gradient ``db[co] = sum_p g'[p, co]`` at ``DB_OFF``: a
    sum of the A tiles the job loads anyway."""
    PAD: tl.constexpr = KS // 2
    NTOT: tl.constexpr = KS * KS * CI
    co = mt * BM + tl.arange(0, BM)
    co_ok = co < CO
    n = n0 + tl.arange(0, BN)
    n_ok = n < NTOT
    ci, kh, kw = _tap_of(n, CI, KS)
    dh = kh - PAD
    dw = kw - PAD
    acc = tl.zeros((BM, BN), ACC)
    gsum = tl.zeros((BM,), ACC)
    p_lo = s * PPS
    p_hi = tl.minimum(p_lo + PPS, NHW)
    for k0 in tl.range(p_lo, p_hi, BK, num_stages=NSTAGE):
        p = k0 + tl.arange(0, BK)
        _row, h, w, p_ok = _pixel_rows(p, p_hi, 0, 0, 0, H, W)
        # A = g'^T [co, p]
        g_mask = co_ok[:, None] & p_ok[None, :]
        if G_FLAT:
            gt = tl.load(g_ptr + (p.to(tl.int64) * GS)[None, :] + (G0 + co)[:, None], mask=g_mask, other=0.0)
        else:
            g_row, _h, _w, _ok = _pixel_rows(p, p_hi, sg[0], sg[2], sg[3], H, W)
            y_row, _h, _w, _ok = _pixel_rows(p, p_hi, sy[0], sy[2], sy[3], H, W)
            gt = _load_grad(g_ptr + g_row[None, :] + ((G0 + co) * sg[1])[:, None],
                            y_ptr + y_row[None, :] + ((G0 + co) * sy[1])[:, None], g_mask, RELU)
        # B = a [p, (tap, ci)]: x, pool(x), or r shifted by the tap
        a_row, _h, _w, _ok = _pixel_rows(p, p_hi, sa[0], sa[2], sa[3], H, W)
        if POOL:
            b = _pool_tile(a_ptr, a_row, h, w, p_ok, ci, n_ok, sa[1], sa[2], sa[3], H, W)
        else:
            b_ok = p_ok[:, None] & n_ok[None, :] & _tap_ok(h[:, None], w[:, None], dh[None, :], dw[None, :], H, W)
            b = tl.load(a_ptr + a_row[:, None] + (ci * sa[1] + dh * sa[2] + dw * sa[3])[None, :], mask=b_ok,
                        other=0.0)
        acc = tl.dot(gt.to(DT), b.to(DT), acc, input_precision=PREC, out_dtype=acc.dtype)
        if NEED_DB:
            gsum += tl.sum(gt.to(ACC), axis=1)
    base = part_ptr + tl.cast(s, tl.int64) * P
    tl.store(base + DW_OFF + (co * DW_S[4 * WI])[:, None]
             + (ci * DW_S[4 * WI + 1] + kh * DW_S[4 * WI + 2] + kw * DW_S[4 * WI + 3])[None, :], acc,
             mask=co_ok[:, None] & n_ok[None, :])
    if NEED_DB:
        tl.store(base + DB_OFF + co, gsum, mask=co_ok & db_on)


# --------------------------------------------------------------------------------------------
# N-tile dispatch: a runtime tile index -> one of the statically sized tiles of a _split_n
# --------------------------------------------------------------------------------------------


@triton.jit
def _reduce_grad_j(j, p0, NHW, gy_ptr, sg, y_ptr, sy, wk_ptr, r_ptr, sr, gr_ptr,
                   OY: tl.constexpr, CO: tl.constexpr, CR: tl.constexpr, KS: tl.constexpr, WK_S: tl.constexpr,
                   GR0: tl.constexpr, GS: tl.constexpr, RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
                   ACC: tl.constexpr, BM: tl.constexpr, T: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                   NSTAGE: tl.constexpr, PREC: tl.constexpr):
    """N tile ``j`` of ``T = _split_n(CR, BN)`` of one branch's reduce gradient."""
    if j < T[0]:
        _reduce_grad_tile(j * BN, p0, NHW, gy_ptr, sg, y_ptr, sy, wk_ptr, r_ptr, sr, gr_ptr, OY, CO, CR, KS, WK_S,
                          GR0, GS, RELU, H, W, ACC, BM, BN, BK, NSTAGE, PREC)
    for i in tl.static_range(3):
        if T[2 + 2 * i] > 0:
            if j == T[0] + i:
                _reduce_grad_tile(T[1 + 2 * i], p0, NHW, gy_ptr, sg, y_ptr, sy, wk_ptr, r_ptr, sr, gr_ptr, OY, CO,
                                  CR, KS, WK_S, GR0, GS, RELU, H, W, ACC, BM, T[2 + 2 * i], BK, NSTAGE, PREC)


@triton.jit
def _dx_j(j, p0, NHW, gy_ptr, sg, y_ptr, sy, gr_ptr, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, wp_ptr, z_ptr, dx_ptr, sdx,
          CIN: tl.constexpr, C1: tl.constexpr, C3R: tl.constexpr, C5R: tl.constexpr, CP: tl.constexpr,
          OP: tl.constexpr, CS3: tl.constexpr, GS: tl.constexpr,
          W1_S: tl.constexpr, W3R_S: tl.constexpr, W5R_S: tl.constexpr, WP_S: tl.constexpr,
          RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr, ZT: tl.constexpr,
          ACC: tl.constexpr, BM: tl.constexpr, T: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
          NSTAGE: tl.constexpr, PREC: tl.constexpr, TMA: tl.constexpr):
    """N tile ``j`` of ``T = _split_n(CIN, BN)`` of ``dx``."""
    if j < T[0]:
        _dx_tile(j * BN, p0, NHW, gy_ptr, sg, y_ptr, sy, gr_ptr, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, wp_ptr, z_ptr,
                 dx_ptr, sdx, CIN, C1, C3R, C5R, CP, OP, CS3, GS, W1_S, W3R_S, W5R_S, WP_S, RELU, H, W, ZT,
                 ACC, BM, BN, BK, NSTAGE, PREC, TMA)
    for i in tl.static_range(3):
        if T[2 + 2 * i] > 0:
            if j == T[0] + i:
                _dx_tile(T[1 + 2 * i], p0, NHW, gy_ptr, sg, y_ptr, sy, gr_ptr, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr,
                         wp_ptr, z_ptr, dx_ptr, sdx, CIN, C1, C3R, C5R, CP, OP, CS3, GS, W1_S, W3R_S, W5R_S, WP_S,
                         RELU, H, W, ZT, ACC, BM, T[2 + 2 * i], BK, NSTAGE, PREC, TMA)


@triton.jit
def _wgrad_job(job, S, PPS, NHW, g_ptr, sg, y_ptr, sy, a_ptr, sa, part_ptr, P,
               G0: tl.constexpr, G_FLAT: tl.constexpr, GS: tl.constexpr, RELU: tl.constexpr,
               CO: tl.constexpr, CI: tl.constexpr, KS: tl.constexpr, POOL: tl.constexpr,
               DW_OFF: tl.constexpr, DW_S: tl.constexpr, WI: tl.constexpr, DB_OFF: tl.constexpr,
               NEED_DB: tl.constexpr,
               H: tl.constexpr, W: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, T: tl.constexpr,
               BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr):
    """Weight-gradient job ``job`` of one conv: ``(output-channel tile, N tile of
    T = _split_n(KS*KS*CI, BN), pixel split)``, split fastest."""
    NJ: tl.constexpr = T[0] + (T[2] > 0) + (T[4] > 0) + (T[6] > 0)
    s = job % S
    r = job // S
    j = r % NJ
    mt = r // NJ
    if j < T[0]:
        _wgrad_tile(mt, j * BN, s, PPS, NHW, g_ptr, sg, y_ptr, sy, a_ptr, sa, part_ptr, P, G0, G_FLAT, GS, RELU,
                    CO, CI, KS, POOL, DW_OFF, DW_S, WI, DB_OFF, NEED_DB, j == 0, H, W, ACC, BM, BN, BK, NSTAGE,
                    PREC, DT)
    for i in tl.static_range(3):
        if T[2 + 2 * i] > 0:
            if j == T[0] + i:
                _wgrad_tile(mt, T[1 + 2 * i], s, PPS, NHW, g_ptr, sg, y_ptr, sy, a_ptr, sa, part_ptr, P, G0, G_FLAT,
                            GS, RELU, CO, CI, KS, POOL, DW_OFF, DW_S, WI, DB_OFF, NEED_DB, j == 0, H, W, ACC, BM,
                            T[2 + 2 * i], BK, NSTAGE, PREC, DT)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["NHW"])
def _reduce_grad_kernel(
    gy_ptr, sg,  # [N, CTOT, H, W] upstream gradient, strides (n, c, h, w)
    y_ptr, sy,  # [N, CTOT, H, W] forward output (post-activation)
    w3_ptr,  # [C3, C3R, K3, K3] by compile-time strides W3_S
    w5_ptr,  # [C5, C5R, K5, K5]
    r3_ptr, sr3,  # [N, C3R, H, W] saved reduce output (post-activation)
    r5_ptr, sr5,  # [N, C5R, H, W]
    gr_ptr,  # [N*H*W, GS] out: reduce gradients (pre-activation), r5's at column CS3
    NHW,
    H: tl.constexpr, W: tl.constexpr, C3R: tl.constexpr, C3: tl.constexpr, C5R: tl.constexpr,
    C5: tl.constexpr, K3: tl.constexpr, K5: tl.constexpr, O3: tl.constexpr, O5: tl.constexpr,
    W3_S: tl.constexpr, W5_S: tl.constexpr, CS3: tl.constexpr, GS: tl.constexpr, RELU: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    PREC: tl.constexpr, T3R: tl.constexpr, T5R: tl.constexpr,
):
    """Launch 1: grid (pixel tiles, N tiles of c3r then of c5r)."""
    p0 = tl.program_id(0) * BM
    j = tl.program_id(1)
    NJ3: tl.constexpr = T3R[0] + (T3R[2] > 0) + (T3R[4] > 0) + (T3R[6] > 0)
    if j < NJ3:
        _reduce_grad_j(j, p0, NHW, gy_ptr, sg, y_ptr, sy, w3_ptr, r3_ptr, sr3, gr_ptr, O3, C3, C3R, K3, W3_S, 0, GS,
                       RELU, H, W, ACC, BM, T3R, BN, BK, NSTAGE, PREC)
    else:
        _reduce_grad_j(j - NJ3, p0, NHW, gy_ptr, sg, y_ptr, sy, w5_ptr, r5_ptr, sr5, gr_ptr, O5, C5, C5R, K5, W5_S,
                       CS3, GS, RELU, H, W, ACC, BM, T5R, BN, BK, NSTAGE, PREC)


@triton.jit(do_not_specialize=["NHW", "S", "PPS", "P"])
def _grads_kernel(
    gy_ptr, sg,  # [N, CTOT, H, W] upstream gradient
    y_ptr, sy,  # [N, CTOT, H, W] forward output (post-activation)
    gr_ptr,  # [N*H*W, GS] reduce gradients from launch 1
    x_ptr, sx,  # [N, CIN, H, W] input
    r3_ptr, sr3,  # [N, C3R, H, W]
    r5_ptr, sr5,  # [N, C5R, H, W]
    w1_ptr, w3r_ptr, w5r_ptr, wp_ptr,  # the four 1x1 weights [C, CIN, 1, 1] by compile-time strides
    dx_ptr, sdx,  # [N, CIN, H, W] out
    part_ptr,  # [S, P] out: fp32 (fp64) partial weight/bias gradients
    scratch_ptr,  # [programs, ZT * BM, BN] the dx jobs' pool products (accumulator dtype)
    ends,  # 7 cumulative job counts: dx jobs, then weight jobs of (1, 3r, 3, 5r, 5, p)
    NHW, S, PPS, P,
    H: tl.constexpr, W: tl.constexpr, CIN: tl.constexpr, C1: tl.constexpr, C3R: tl.constexpr,
    C3: tl.constexpr, C5R: tl.constexpr, C5: tl.constexpr, CP: tl.constexpr, K3: tl.constexpr,
    K5: tl.constexpr, O3: tl.constexpr, O5: tl.constexpr, OP: tl.constexpr, CS3: tl.constexpr, GS: tl.constexpr,
    W1_S: tl.constexpr, W3R_S: tl.constexpr, W5R_S: tl.constexpr, WP_S: tl.constexpr,
    DW_OFF: tl.constexpr, DW_S: tl.constexpr,  # offsets and flat (o, i, h, w) strides of the six dW
    DB_OFF: tl.constexpr, NEED_DB: tl.constexpr,
    RELU: tl.constexpr, ZT: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    WSTAGE: tl.constexpr,  # operand stages of the weight-gradient loops (64-pixel steps: bigger tiles)
    WBK: tl.constexpr,  # pixels per reduction step of the weight gradients
    PREC: tl.constexpr, DT: tl.constexpr,
    TX: tl.constexpr, TW1: tl.constexpr, TW3R: tl.constexpr, TW3: tl.constexpr,  # N tiles (_split_n)
    TW5R: tl.constexpr, TW5: tl.constexpr, TWP: tl.constexpr,
    DX_BN: tl.constexpr, POOL_BN: tl.constexpr,  # N tile widths of dx and of wp's gradient
    TMA: tl.constexpr,  # dx reads the reduce gradients and w3r / w5r through tensor descriptors
):
    """Launch 2: persistent programs over the dx jobs, then the weight jobs of the six convs."""
    pid = tl.program_id(0)
    z_ptr = scratch_ptr + pid.to(tl.int64) * (ZT * BM * DX_BN)
    NJX: tl.constexpr = TX[0] + (TX[2] > 0) + (TX[4] > 0) + (TX[6] > 0)
    for job in range(pid, ends[6], tl.num_programs(0)):
        if job < ends[0]:
            _dx_j(job % NJX, (job // NJX) * BM, NHW, gy_ptr, sg, y_ptr, sy, gr_ptr, x_ptr, sx, w1_ptr, w3r_ptr,
                  w5r_ptr, wp_ptr, z_ptr, dx_ptr, sdx, CIN, C1, C3R, C5R, CP, OP, CS3, GS, W1_S, W3R_S, W5R_S, WP_S,
                  RELU, H, W, ZT, ACC, BM, TX, DX_BN, BK, NSTAGE, PREC, TMA)
        elif job < ends[1]:
            _wgrad_job(job - ends[0], S, PPS, NHW, gy_ptr, sg, y_ptr, sy, x_ptr, sx, part_ptr, P, 0, False, GS, RELU,
                       C1, CIN, 1, False, DW_OFF[0], DW_S, 0, DB_OFF[0], NEED_DB[0], H, W, ACC, BM, TW1, BN, WBK,
                       WSTAGE, PREC, DT)
        elif job < ends[2]:
            _wgrad_job(job - ends[1], S, PPS, NHW, gr_ptr, sg, gr_ptr, sg, x_ptr, sx, part_ptr, P, 0, True, GS, False,
                       C3R, CIN, 1, False, DW_OFF[1], DW_S, 1, DB_OFF[1], NEED_DB[1], H, W, ACC, BM, TW3R, BN, WBK,
                       WSTAGE, PREC, DT)
        elif job < ends[3]:
            _wgrad_job(job - ends[2], S, PPS, NHW, gy_ptr, sg, y_ptr, sy, r3_ptr, sr3, part_ptr, P, O3, False, GS,
                       RELU, C3, C3R, K3, False, DW_OFF[2], DW_S, 2, DB_OFF[2], NEED_DB[2], H, W, ACC, BM, TW3, BN,
                       WBK, WSTAGE, PREC, DT)
        elif job < ends[4]:
            _wgrad_job(job - ends[3], S, PPS, NHW, gr_ptr, sg, gr_ptr, sg, x_ptr, sx, part_ptr, P, CS3, True, GS,
                       False, C5R, CIN, 1, False, DW_OFF[3], DW_S, 3, DB_OFF[3], NEED_DB[3], H, W, ACC, BM, TW5R, BN,
                       WBK, WSTAGE, PREC, DT)
        elif job < ends[5]:
            _wgrad_job(job - ends[4], S, PPS, NHW, gy_ptr, sg, y_ptr, sy, r5_ptr, sr5, part_ptr, P, O5, False, GS,
                       RELU, C5, C5R, K5, False, DW_OFF[4], DW_S, 4, DB_OFF[4], NEED_DB[4], H, W, ACC, BM, TW5, BN,
                       WBK, WSTAGE, PREC, DT)
        else:
            _wgrad_job(job - ends[5], S, PPS, NHW, gy_ptr, sg, y_ptr, sy, x_ptr, sx, part_ptr, P, OP, False, GS,
                       RELU, CP, CIN, 1, True, DW_OFF[5], DW_S, 5, DB_OFF[5], NEED_DB[5], H, W, ACC, BM, TWP,
                       POOL_BN, WBK, WSTAGE, PREC, DT)


@triton.jit(do_not_specialize=["S", "P"])
def _sum_partials_kernel(
    part_ptr,  # [S, P] partial gradients (fp32, or fp64)
    out_ptr,  # [P] out: summed gradients in the weights' dtype
    S, P, BLOCK: tl.constexpr, NSTAGE: tl.constexpr,
):
    """Launch 3: ``out[e] = sum_s part[s, e]``, in order ``s = 0, 1, ...`` (deterministic)."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = e < P
    acc = tl.zeros((BLOCK,), part_ptr.dtype.element_ty)
    for s in tl.range(S, num_stages=NSTAGE):  # NSTAGE - 1 rows of partials in flight (cp.async)
        acc += tl.load(part_ptr + tl.cast(s, tl.int64) * P + e, mask=ok, other=0.0)
    tl.store(out_ptr + e, acc.to(out_ptr.dtype.element_ty), mask=ok)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------

_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
              torch.float64: tl.float64}

#: Elements per program of the partial sum (launch 3).
_SUM_BLOCK = 1024
#: Programs of the persistent launch 2 in the interpreter (runs them one after another).
_INTERPRETER_PROGRAMS = 3


def _ntiles(split: tuple) -> int:
    """N tiles of a ``_split_n`` tuple."""
    return split[0] + sum(1 for w in split[2::2] if w)


@dataclass(frozen=True)
class BackwardPlan:
    """What the backward launcher runs: tiles, pixel split, jobs and grids (``_backward_plan``
    is the only place they are chosen; the static report reads the same object).

    Attributes:
        BM, BN, BK, nstage, num_warps, maxnreg: the GEMM tiling (``gemm_tiles``); 64-wide N tiles
            on sm_80. ``WBK`` pixels per reduction step of the weight gradients (64 for 2-byte
            dtypes) and ``wstage`` operand stages in their loops, whose stages are the largest.
        S, PPS: pixel splits of the weight gradients and pixels per split (a multiple of BK).
        ZT: pixel tiles of the dx job's pool product (the tile and its one-row halo).
        dx_bn, pool_bn: N tile widths of dx and of wp's gradient (narrower than ``BN``: their
            jobs hold a max-pool routing mask or a pooled operand tile in registers).
        t3r, t5r: N tiles of the reduce gradients; tx: of dx; tw: of the six weight gradients'
            ``(tap, input channel)`` axes.
        ends: cumulative job counts of launch 2 (dx, then w1, w3r, w3, w5r, w5, wp).
        programs: launch 2's persistent programs.
    """

    BM: int
    BN: int
    BK: int
    WBK: int
    nstage: int
    wstage: int
    num_warps: int
    maxnreg: int
    S: int
    PPS: int
    ZT: int
    dx_bn: int
    pool_bn: int
    t3r: tuple
    t5r: tuple
    tx: tuple
    tw: tuple
    ends: tuple
    programs: int

    def gemm_macs(self, channels: Sequence[int], kernel_sizes: Sequence[int], nhw: int) -> dict:
        """Multiply-accumulates the tensor cores execute per GEMM kind (padding and the pool
        product's halo included), for ``channels = (cin, c1, c3r, c3, c5r, c5, cp)`` and the jobs
        this plan runs."""
        cin, c1, c3r, c3, c5r, c5, cp = channels
        k3, k5 = kernel_sizes
        bm, bn, bk = self.BM, self.BN, self.BK
        rows = _round_up(nhw, bm)
        rg = rows * (_round_up(k3 * k3 * c3, bk) * _tile_width(self.t3r, bn)
                     + _round_up(k5 * k5 * c5, bk) * _tile_width(self.t5r, bn))
        n_dx = self.ends[0] // max(_ntiles(self.tx), 1)  # pixel tiles of dx (0: dx not needed)
        dx = n_dx * bm * (_round_up(c1, bk) + _round_up(c3r, bk) + _round_up(c5r, bk)) * _tile_width(self.tx, self.dx_bn)
        dx += n_dx * self.ZT * bm * _round_up(cp, bk) * _tile_width(self.tx, self.dx_bn)
        split_rows = sum(_round_up(min(self.PPS, nhw - s * self.PPS), self.WBK) for s in range(self.S))
        wg = 0
        couts = (c1, c3r, c3, c5r, c5, cp)
        jobs = [self.ends[i + 1] - self.ends[i] for i in range(6)]
        for i, co in enumerate(couts):
            if jobs[i]:
                wg += _round_up(co, bm) * _tile_width(self.tw[i], self.pool_bn if i == 5 else bn) * split_rows
        return {"reduce_grad": rg if self.ends[0] or jobs[1] or jobs[3] else 0, "dx": dx, "wgrad": wg}


def _backward_plan(channels, kernel_sizes, n, h, w, dtype, target, need_dx: bool, need_branch) -> BackwardPlan:
    """Tiles, pixel split and jobs of one backward (see :class:`BackwardPlan`).

    Weight gradients reduce over ``N*H*W`` pixels split into ``S`` slices of ``PPS`` pixels by
    the split rule both backends share (``_layout.pixel_split``).
    """
    cin, c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    t = gemm_tiles(dtype, target)
    # 64-pixel reduction steps for 2-byte dtypes; on sm_80, whose mma.sync keeps both operand
    # fragments in registers, 64-wide N tiles keep the weight jobs within 255 registers
    bm, bn, bk = t.BM, (t.BN if target.arch >= 90 else min(t.BN, 64)), t.BK
    wbk = 64 if dtype.itemsize == 2 else t.BK  # the weight gradients step 64 pixels
    nhw = n * h * w
    dx_bn, pool_bn = bn // 2, bn // 4
    tw = tuple(_split_n(k * k * ci, b) for k, ci, b in ((1, cin, bn), (1, cin, bn), (k3, c3r, bn), (1, cin, bn),
                                                        (k5, c5r, bn), (1, cin, pool_bn)))
    couts = (c1, c3r, c3, c5r, c5, cp)
    mtiles = [-(-co // bm) * _ntiles(tw[i]) if need_branch[i] else 0 for i, co in enumerate(couts)]
    s, pps = pixel_split(nhw, sum(mtiles), wbk)
    tx = _split_n(cin, dx_bn)
    ends = [(-(-nhw // bm)) * _ntiles(tx) if need_dx else 0]
    for m in mtiles:
        ends.append(ends[-1] + m * s)
    # two programs per SM: 255 registers x 128 threads x 2 fill the register file, and the
    # weight jobs' three 32 KiB operand stages fit twice in shared memory
    resident = _INTERPRETER_PROGRAMS if target.sms is None else target.sms * 2
    return BackwardPlan(
        BM=bm, BN=bn, BK=bk, WBK=wbk, nstage=t.stages, wstage=max(2, t.stages - 1),
        num_warps=t.warps, maxnreg=255, S=s,
        PPS=pps,
        dx_bn=dx_bn, pool_bn=pool_bn, ZT=-(-(bm + 2 * (w + 1)) // bm), t3r=_split_n(c3r, bn), t5r=_split_n(c5r, bn), tx=tx, tw=tw,
        ends=tuple(ends), programs=max(1, min(ends[-1], resident)),
    )


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in t.stride())


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
    needs_input_grad = (True,) * 13 if needs_input_grad is None else tuple(bool(v) for v in needs_input_grad)
    check_needs_input_grad(needs_input_grad)
    dx, flat = _inception_backward_flat(grad_y, x, y, r3, r5, weights, biases, kernel_sizes, activation,
                                        needs_input_grad)
    grads = grad_layout(weights, biases, needs_input_grad).views(flat, weights)
    return dx, grads[:6], grads[6:]


def _inception_backward_flat(grad_y, x, y, r3, r5, weights, biases, kernel_sizes=(3, 5), activation="relu",
                             needs_input_grad=None):
    """:func:`_inception_backward`, returning ``(dx, flat)``: dx (None when not needed) and the
    flat gradient buffer laid out by ``_layout.grad_layout`` (what the backward op returns)."""
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    w1, w3r, w3, w5r, w5, wp = weights
    N, Cin, H, W = (int(v) for v in x.shape)
    c1, c3r, c3, c5r, c5, cp = (spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                                spec.pool_proj)
    channels = (Cin, c1, c3r, c3, c5r, c5, cp)
    K3, K5 = spec.kernel_sizes
    _, o3, o5, op = spec.channel_offsets
    check_saved_tensors(spec, x, grad_y, y, r3, r5)
    needs_input_grad = (True,) * 13 if needs_input_grad is None else tuple(bool(v) for v in needs_input_grad)
    check_needs_input_grad(needs_input_grad)
    need_dx = needs_input_grad[0]
    # The flat gradient buffer (_layout.grad_layout): a computed branch's job also produces its bias gradient.
    layout = grad_layout(weights, biases, needs_input_grad)
    need_branch, p_total = layout.computed, layout.numel
    nhw = N * H * W
    target = target_of(x.device)
    plan = _backward_plan(channels, spec.kernel_sizes, N, H, W, x.dtype, target, need_dx, need_branch)

    acc_torch = torch.float64 if x.dtype == torch.float64 else torch.float32
    consts = dict(
        H=H, W=W, C3R=c3r, C3=c3, C5R=c5r, C5=c5, K3=K3, K5=K5, O3=o3, O5=o5,
        CS3=_round_up(c3r, 16), GS=_round_up(c3r, 16) + _round_up(c5r, 16), RELU=activation == "relu",
        ACC=_TL_DTYPES[acc_torch], BM=plan.BM, BN=plan.BN, BK=plan.BK, NSTAGE=plan.nstage,
        PREC=dot_precision(x.dtype, x.device), num_warps=plan.num_warps, num_stages=plan.nstage,
        maxnreg=plan.maxnreg,
    )
    need_gr = need_dx or need_branch[1] or need_branch[3]
    dx = torch.empty_like(x, memory_format=torch.preserve_format) if need_dx else None
    gr = torch.empty((nhw, consts["GS"]), dtype=x.dtype, device=x.device) if need_gr and nhw > 0 else x

    # dx's reduce-gradient GEMMs through TMA (docs/design.md §4.1): gr is this function's own
    # dense [N*H*W, GS] buffer (GS and CS3 multiples of 16), so the rule is on the dtype, the arch
    # and w3r / w5r as 2-D [Cout, Cin] tensors
    tma = need_dx and tma_rows_ok(gr, consts["GS"], target) and all(
        (w.shape[1] == 1 or w.stride(1) == 1) and tma_rows_ok(w, w.stride(0), target) for w in (w3r, w5r))
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext(), tma_scratch(x.device):
        if need_gr and nhw > 0:
            grid = (triton.cdiv(nhw, plan.BM), _ntiles(plan.t3r) + _ntiles(plan.t5r))
            _launch(_reduce_grad_kernel, grid,
                    grad_y, _strides(grad_y), y, _strides(y), w3, w5, r3, _strides(r3), r5, _strides(r5), gr, nhw,
                    W3_S=_strides(w3), W5_S=_strides(w5), T3R=plan.t3r, T5R=plan.t5r, **consts)

        part = torch.empty((plan.S, p_total), dtype=acc_torch, device=x.device) if p_total else None
        if plan.ends[-1] > 0:
            scratch = torch.empty((plan.programs, plan.ZT * plan.BM * plan.dx_bn), dtype=acc_torch, device=x.device) \
                if need_dx else x
            _launch(_grads_kernel, (plan.programs,),
                    grad_y, _strides(grad_y), y, _strides(y), gr, x, _strides(x), r3, _strides(r3), r5, _strides(r5),
                    w1, w3r, w5r, wp, dx if dx is not None else x, _strides(dx if dx is not None else x),
                    part if part is not None else x, scratch, plan.ends, nhw, plan.S, plan.PPS, p_total,
                    CIN=Cin, C1=c1, CP=cp, OP=op,
                    W1_S=_strides(w1), W3R_S=_strides(w3r), W5R_S=_strides(w5r), WP_S=_strides(wp),
                    # every branch job also writes its bias slot (the flat buffer has no unwritten elements)
                    DW_OFF=tuple(o or 0 for o in layout.dw_offsets),
                    DW_S=tuple(v for st in layout.dw_strides for v in st),
                    DB_OFF=tuple(o or 0 for o in layout.db_offsets), NEED_DB=tuple(need_branch),
                    ZT=plan.ZT, DT=_TL_DTYPES[x.dtype],
                    TX=plan.tx, TW1=plan.tw[0], TW3R=plan.tw[1], TW3=plan.tw[2], TW5R=plan.tw[3],
                    TW5=plan.tw[4], TWP=plan.tw[5], DX_BN=plan.dx_bn, POOL_BN=plan.pool_bn, WSTAGE=plan.wstage,
                    WBK=plan.WBK, TMA=bool(tma),
                    **consts)

        flat = torch.empty(p_total, dtype=w1.dtype, device=x.device)
        if p_total:
            _launch(_sum_partials_kernel, (triton.cdiv(p_total, _SUM_BLOCK),), part, flat, plan.S, p_total,
                    BLOCK=_SUM_BLOCK, NSTAGE=plan.nstage)
    return dx, flat
