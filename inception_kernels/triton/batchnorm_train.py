"""Fused Triton kernels for the Inception block with BatchNorm in training mode (docs/design.md §9).

Every conv ``i`` of the block (``i`` in the weight order ``w1, w3r, w3, w5r, w5, wp``) is
``a_i = act(u_i)``, ``u_i = gamma_i * xhat_i + beta_i``, ``xhat_i = (z_i - mean_i) * rstd_i``,
``z_i = conv(in_i, w_i) + b_i``, with the batch statistics of ``z_i`` over the ``M = N*H*W``
pixels (``rstd = 1 / sqrt(var + eps)``, biased ``var``), as ``F.batch_norm(training=True)``.

Forward, three launches:

1. ``_fwd_conv_kernel`` (``STAGE=1``): the four convs that read ``x`` (1x1, 3x3-reduce,
   5x5-reduce; max-pool 3x3 -> 1x1 projection, pooled while loading), per tile of
   ``BM`` flat pixels x ``BN`` channels: writes ``z`` (pre-BatchNorm, in the
   accumulator dtype) into ``Z [M, CZ]`` and per-tile partial statistics: the tile's sum and
   its sum of squared deviations from the tile mean (``PS``, ``PM`` ``[tiles, CZ]``).
2. ``_fwd_conv_kernel`` (``STAGE=2``): each (persistent) program first finishes the two reduce
   convs' statistics from the partials into its private slot, then runs the KxK convs with
   ``act(bn(z_reduce))`` applied while loading the operand (zero padding outside the image),
   writing their ``z`` and partials.
3. ``_fwd_norm_kernel``: per (conv, channel tile) finishes the statistics, saves
   ``mean, rstd`` (``STATS [2, CZ]``) and updates the running statistics in place
   (``(1 - m) * running + m * batch``, unbiased variance ``M2 / (M - 1)``; program group 0
   only), and writes ``act(bn(z))`` of the four branch convs into their slices of ``y``.

Backward, five launches (``du = dy * act'(u)``, ``dbeta = sum(du)``, ``dgamma = sum(du * xhat)``,
``dz = gamma * rstd * (du - dbeta / M - xhat * dgamma / M)``):

1. ``_bwd_stats_kernel``: per-tile partial ``sum(du)``, ``sum(du * xhat)`` of the four branch
   convs (``QB``, ``QG`` ``[tiles, CZ]``).
2. ``_bwd_grads_kernel`` (``STAGE=1``), programs finish those sums into their slot, then jobs:
   ``dz`` of the branch convs into ``DZ [M, CZ]``; ``da3r = conv_transpose(dz3, w3)`` / ``da5r``
   (``dz`` formed while loading) with the reduce convs' partial sums; ``dp = dz_p @ wp`` (the pool
   branch's gradient before the pool, ``DP [M, Cin]``) and each pool window's argmax tap (int8);
   the reduce activations ``act(bn(z))`` in x's dtype (``AR``) for the KxK weight gradients.
3. ``STAGE=2``: programs finish the reduce convs' sums; jobs: their ``dz``; the branch convs'
   weight / bias gradient partials per pixel split (``dz`` and the operands read, not recomputed).
4. ``STAGE=3``: ``dx = dz1 @ w1 + dz3r @ w3r + dz5r @ w5r + maxpool_backward(dp)`` (a gather:
   pixel ``q`` takes ``dp`` of each of the nine windows whose argmax tap it is -- PyTorch's tie
   and NaN rules) and the reduce convs' weight / bias gradient partials.
5. ``_bwd_finish_kernel``: sums the weight / bias partials over the splits and the
   ``dgamma`` / ``dbeta`` partials over the tiles, into the gradients' dtypes.

Every reduction over pixels goes through per-tile (or per-split) partials written by exactly
one program and summed in a fixed order (``_sum_rows``), no atomics: results are bitwise
deterministic. Programs that need a statistic each compute it from the partials (the same code,
so the same bits); that redundancy (``programs x tiles x channels`` loads) is the price of
having no grid-wide synchronization.

Numerics: ``z``, statistics and ``dz`` in the accumulator dtype (fp32, fp64 for fp64); conv
operands (``x``, ``act(bn(z))``, ``dz``) go to ``tl.dot`` in x's dtype (tensor cores for
fp16 / bf16; fp32 follows ``torch.backends.cudnn.allow_tf32`` on CUDA), as PyTorch's convs
see them. ``eps`` and ``momentum`` travel as two fp32 halves (Triton passes Python floats as
fp32) and are rebuilt in the accumulator dtype.

Design limits: offsets inside one image and inside a weight are int32 (pixel and batch
terms int64): one image of x, y, ``Z`` must have < 2^31 elements, ``N*H*W < 2^31``. Memory
saved for the backward: ``Z`` ``[N*H*W, CZ]`` in the accumulator dtype (``CZ`` = the six
convs' output channels), ``STATS`` and x; the backward's buffers (``DZ`` like ``Z``, ``DA``,
``AR``, ``DP`` ``[N*H*W, Cin]``, weight partials ``[splits, weights + CZ]``) are freed after it.
Not a traceable custom op (an autograd Function that updates the running statistics in place):
``torch.compile`` runs the reference path instead (``batchnorm._resolve_bn_backend``).

Static figures (``tests/test_batchnorm_compile.py``: GoogLeNet 3a, fp16, batch 256, sm_90, 8
warps, ``triton.compile`` without a GPU): 0 spill bytes in all 8 launches; 70-238 registers
with Triton 3.8, 40-241 with 3.6 (``_bwd_grads_kernel`` stage 1 the highest); HGMMA in every
conv launch. Not tuned: no timing was possible here (no GPU), and the tiles are one fixed
choice (``_config.bn_training_tiles``).

Shared with the forward and backward kernels (``_common``, ``_config``): the tile names ``BM``,
``BN``, ``BK``, the tap bounds (``_tap_ok``, here with runtime ``H``, ``W``: these kernels are
compiled once for all image sizes), the activation (``_act``), ``tl.dot``'s precision
(``dot_precision``). Kept here, because they differ: the tiling
(:func:`_config.bn_training_tiles`, not ``gemm_tiles``: persistent multi-job programs, 64 x 64
tiles, 8 warps, one stage); the pixel decomposition (:func:`_pixel_nhw`, cheaper in registers
than ``_pixel_rows`` with runtime ``H``, ``W``); the conv bias, added to the finished reduction
(``z = conv + b``), where the forward's ``_bias_acc`` starts the accumulator at the bias (other
rounding); the max-pool (:func:`_pool_scan`: PyTorch's first-maximum rule, which the backward's
argmax must reproduce, where ``_pool_tile`` takes ``tl.maximum``); the reduction order of the
convs (tap-major loops over runtime channel counts, not ``_tap_of``'s flat constexpr ``K``).
"""

from __future__ import annotations

import contextlib
import inspect
import struct
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ._launches import _launch
from .._layout import output_memory_format
from ._common import _act, _tap_ok
from ._config import bn_training_tiles, dot_precision, target_of

__all__ = ["bn_training_forward", "bn_training_backward", "fused_inception_bn_training", "launch_plan"]

#: Weight / bias gradients: a pixel split holds at least this many pixels (fewer splits, fewer partials).
_MIN_PIXELS_PER_SPLIT = 2048
#: At most this many pixel splits per weight gradient.
_MAX_SPLITS = 64


# ------------------------------------------------------------------------------------------ helpers


@triton.jit
def _f64(hi, lo, ACC: tl.constexpr):
    """A float passed as two fp32 halves (``hi + lo``), in the accumulator dtype."""
    return tl.cast(hi, ACC) + tl.cast(lo, ACC)


@triton.jit
def _rstd(v, ACC: tl.constexpr):
    """``1 / sqrt(v)`` with a correctly rounded square root (fp32 ``sqrt_rn``; fp64 sqrt is exact-rounded)."""
    if ACC == tl.float64:
        r = 1.0 / tl.sqrt(v)
    else:
        r = 1.0 / tl.sqrt_rn(v)
    return r


@triton.jit
def _sum_rows(
    ptr,  # [rows, ld] partials; column c at ptr + row * ld + c
    rows,
    ld,
    c,  # [BLOCK_C] columns
    c_ok,  # [BLOCK_C] bool
    BLOCK_T: tl.constexpr,
    ACC: tl.constexpr,
):
    """``sum_row ptr[row, c]`` in a fixed order (blocks of ``BLOCK_T`` rows, one after another)."""
    total = tl.zeros([c.shape[0]], ACC)
    for r0 in range(0, rows, BLOCK_T):
        r = (r0 + tl.arange(0, BLOCK_T)).to(tl.int64)
        v = tl.load(ptr + r[:, None] * ld + c[None, :], mask=(r < rows)[:, None] & c_ok[None, :], other=0.0)
        total += tl.sum(v.to(ACC), axis=0)
    return total


@triton.jit
def _finish_stats(
    ps_ptr,  # [tiles, CZ] per-tile sums
    pm_ptr,  # [tiles, CZ] per-tile sums of squared deviations from the tile mean
    n_pt,  # tiles
    CZ,
    P,  # pixels (N*H*W)
    c,  # [BLOCK_C] columns (channels in CZ)
    c_ok,
    BM: tl.constexpr,  # pixels per tile (the last tile holds P - (n_pt - 1) * BM)
    BLOCK_T: tl.constexpr,
    ACC: tl.constexpr,
):
    """``(mean, M2)`` of channels ``c`` over all pixels, combining the per-tile partials in a fixed
    order: ``M2 = sum_t (m2_t + n_t * (mean_t - mean)^2)`` (no cancellation of ``E[z^2] - mean^2``)."""
    mean = _sum_rows(ps_ptr, n_pt, CZ, c, c_ok, BLOCK_T, ACC) / P.to(ACC)
    m2 = tl.zeros([c.shape[0]], ACC)
    for r0 in range(0, n_pt, BLOCK_T):
        r = r0 + tl.arange(0, BLOCK_T)
        ok = (r < n_pt)[:, None] & c_ok[None, :]
        r64 = r.to(tl.int64)
        s = tl.load(ps_ptr + r64[:, None] * CZ + c[None, :], mask=ok, other=0.0).to(ACC)
        q = tl.load(pm_ptr + r64[:, None] * CZ + c[None, :], mask=ok, other=0.0).to(ACC)
        cnt = tl.maximum(tl.minimum(P - r * BM, BM), 1).to(ACC)[:, None]
        d = s / cnt - mean[None, :]
        m2 += tl.sum(tl.where(ok, q + cnt * d * d, 0.0), axis=0)
    return mean, m2


@triton.jit
def _bn_unit(
    z,  # [R, C] pre-BatchNorm values
    st_ptr,  # mean at st_ptr[c], rstd at st_ptr[CZ + c]
    CZ,
    g_ptr,  # [C] BatchNorm weight (HAS_G)
    be_ptr,  # [C] BatchNorm bias (HAS_BE)
    c,  # [C] channels
    c_ok,
    HAS_G: tl.constexpr,
    HAS_BE: tl.constexpr,
    ACC: tl.constexpr,
):
    """``(xhat, u, gamma, rstd)`` of one tile: ``xhat = (z - mean) * rstd``, ``u = gamma * xhat + beta``."""
    mean = tl.load(st_ptr + c, mask=c_ok, other=0.0).to(ACC)
    rstd = tl.load(st_ptr + CZ + c, mask=c_ok, other=0.0).to(ACC)
    xhat = (z.to(ACC) - mean[None, :]) * rstd[None, :]
    g = tl.full([c.shape[0]], 1.0, ACC)
    if HAS_G:
        g = tl.load(g_ptr + c, mask=c_ok, other=0.0).to(ACC)
    u = xhat * g[None, :]
    if HAS_BE:
        u += tl.load(be_ptr + c, mask=c_ok, other=0.0).to(ACC)[None, :]
    return xhat, u, g, rstd


@triton.jit
def _du(dy, u, RELU: tl.constexpr):
    """The gradient through the activation: ``threshold_backward(dy, relu(u), 0)`` (NaN passes)."""
    if RELU:
        dy = tl.where(u <= 0, 0.0, dy)
    return dy


@triton.jit
def _operand(
    n64,  # [R] int64 image of each row's pixel
    h,  # [R] row of the (already shifted) pixel
    w,  # [R] column
    row_ok,  # [R] bool: the row exists (its unshifted pixel is in the problem)
    ci,  # [C] channels
    ci_ok,  # [C] bool
    H,
    W,
    src_ptr,  # MODE 0/1: x [N, C, H, W]; MODE 2/3: Z + this conv's column offset, by strides
    s_n,
    s_h,
    s_w,
    s_c,
    dy_ptr,  # MODE 3: upstream gradient of the conv's activation, by strides (channel 0 of the conv)
    d_n,
    d_h,
    d_w,
    d_c,
    st_ptr,  # MODE 2/3: mean at st_ptr[c], rstd at st_ptr[CZ + c] (this conv's columns)
    sm_ptr,  # MODE 3: sum(du) at sm_ptr[c], sum(du * xhat) at sm_ptr[CZ + c]
    CZ,
    g_ptr,  # [C] BatchNorm weight (HAS_G)
    be_ptr,  # [C] BatchNorm bias (HAS_BE)
    inv_m,  # 1 / (N*H*W), accumulator dtype
    MODE: tl.constexpr,  # 0: src; 1: maxpool3x3(src); 2: act(bn(z)); 3: dz of the BatchNorm backward
    HAS_G: tl.constexpr,
    HAS_BE: tl.constexpr,
    RELU: tl.constexpr,
    ACC: tl.constexpr,
):
    """One ``[R, C]`` operand tile of an implicit GEMM, zero outside the image and the channels.

    MODE 0/1 return x's dtype, MODE 2/3 the accumulator dtype."""
    inside = row_ok & _tap_ok(h, w, 0, 0, H, W)
    mask = inside[:, None] & ci_ok[None, :]
    off = n64 * s_n + (h * s_h + w * s_w)
    if MODE == 0:
        v = tl.load(src_ptr + off[:, None] + (ci * s_c)[None, :], mask=mask, other=0.0)
    elif MODE == 1:
        v, _arg = _pool_scan(src_ptr, s_n, s_c, s_h, s_w, n64, h, w, inside, H, W, ci, ci_ok, False)
        v = tl.where(mask, v, 0.0)
    else:
        z = tl.load(src_ptr + off[:, None] + (ci * s_c)[None, :], mask=mask, other=0.0)
        xhat, u, g, rstd = _bn_unit(z, st_ptr, CZ, g_ptr, be_ptr, ci, ci_ok, HAS_G, HAS_BE, ACC)
        if MODE == 2:
            v = tl.where(mask, _act(u, RELU), 0.0)
        else:
            doff = n64 * d_n + (h * d_h + w * d_w)
            dy = tl.load(dy_ptr + doff[:, None] + (ci * d_c)[None, :], mask=mask, other=0.0).to(ACC)
            du = _du(dy, u, RELU)
            sb = tl.load(sm_ptr + ci, mask=ci_ok, other=0.0).to(ACC)
            sg = tl.load(sm_ptr + CZ + ci, mask=ci_ok, other=0.0).to(ACC)
            dz = (du - sb[None, :] * inv_m - xhat * (sg * inv_m)[None, :]) * (g * rstd)[None, :]
            v = tl.where(mask, dz, 0.0)
    return v


@triton.jit
def _conv_acc(
    acc,  # [BM, BN] accumulator
    n64,  # [BM] pixels of the output rows
    h,
    w,
    row_ok,
    H,
    W,
    C,  # reduction channels
    src_ptr, s_n, s_h, s_w, s_c,
    dy_ptr, d_n, d_h, d_w, d_c,
    st_ptr, sm_ptr, CZ, g_ptr, be_ptr, inv_m,
    w_ptr,  # weight by strides: element (reduction k, output n, tap kh, kw) at k * w_sk + n * w_sn + ...
    w_sk,
    w_sn,
    w_sh,
    w_sw,
    co,  # [BN] output columns
    co_ok,
    KS: tl.constexpr,  # odd kernel size, "same" padding
    FLIP: tl.constexpr,  # transposed conv: the source pixel of tap d is the output pixel - d
    MODE: tl.constexpr,
    HAS_G: tl.constexpr,
    HAS_BE: tl.constexpr,
    RELU: tl.constexpr,
    DT: tl.constexpr,  # operand dtype of tl.dot
    ACC: tl.constexpr,
    BK: tl.constexpr,
    PREC: tl.constexpr,
):
    """THE implicit-GEMM conv of this file: ``acc[m, n] += sum_{tap, k} op(src)[pixel m +- tap, k] * w[k, n, tap]``,
    with the operand formed by :func:`_operand` (``MODE``) while loading."""
    PAD: tl.constexpr = KS // 2
    for t in range(KS * KS):
        dh = t // KS - PAD
        dw = t % KS - PAD
        if FLIP:
            th = h - dh
            tw = w - dw
        else:
            th = h + dh
            tw = w + dw
        w_tap = w_ptr + (t // KS) * w_sh + (t % KS) * w_sw
        for c0 in range(0, C, BK):
            ci = c0 + tl.arange(0, BK)
            ci_ok = ci < C
            a = _operand(n64, th, tw, row_ok, ci, ci_ok, H, W, src_ptr, s_n, s_h, s_w, s_c,
                         dy_ptr, d_n, d_h, d_w, d_c, st_ptr, sm_ptr, CZ, g_ptr, be_ptr, inv_m,
                         MODE, HAS_G, HAS_BE, RELU, ACC)
            b = tl.load(w_tap + (ci * w_sk)[:, None] + (co * w_sn)[None, :],
                        mask=ci_ok[:, None] & co_ok[None, :], other=0.0)
            acc = tl.dot(a.to(DT), b.to(DT), acc, input_precision=PREC, out_dtype=ACC)
    return acc


@triton.jit
def _pixel_nhw(p, P, H, W):
    """Flat pixels ``p`` -> ``(n64, h, w, ok)``: the int64 image, row and column of each pixel,
    ``ok`` is ``p < P``. These kernels address several tensors, each by its own strides, from one
    ``(n, h, w)``, and take ``H``, ``W`` at run time: ``_common._pixel_rows`` (constexpr ``H``,
    ``W``; clamps masked rows first) costs 22 more registers in ``_fwd_conv_kernel`` stage 1
    with runtime ``H``, ``W`` (sm_90, Triton 3.8: 102 against 80)."""
    HW = H * W
    hw = p % HW
    return (p // HW).to(tl.int64), hw // W, hw % W, p < P


@triton.jit
def _pixel_tile(pt, P, H, W, BM: tl.constexpr):
    """Pixel tile ``pt`` of the flat ``N*H*W`` pixels: ``(p, n64, h, w, ok)`` (:func:`_pixel_nhw`)."""
    p = pt * BM + tl.arange(0, BM)
    n64, h, w, ok = _pixel_nhw(p, P, H, W)
    return p, n64, h, w, ok


@triton.jit
def _fwd_conv_job(
    pt, ct, P, H, W, C,
    src_ptr, s_n, s_h, s_w, s_c,
    st_ptr, CZ, g_ptr, be_ptr,
    w_ptr,  # [COUT, C, KS, KS]
    w_so, w_si, w_sh, w_sw,
    b_ptr,  # [COUT]
    z_ptr,  # [P, CZ] pre-BatchNorm outputs, at this conv's first column
    ps_ptr,  # [tiles, CZ] at this conv's first column
    pm_ptr,
    COUT,
    KS: tl.constexpr, MODE: tl.constexpr, HAS_G: tl.constexpr, HAS_BE: tl.constexpr,
    HAS_B: tl.constexpr, RELU: tl.constexpr, DT: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """``z = conv(op(src), w) + b`` on one tile; stores ``z`` and the tile's (sum, M2) per channel."""
    p, n64, h, w, ok = _pixel_tile(pt, P, H, W, BM)
    co = ct * BN + tl.arange(0, BN)
    co_ok = co < COUT
    acc = tl.zeros([BM, BN], ACC)
    acc = _conv_acc(acc, n64, h, w, ok, H, W, C, src_ptr, s_n, s_h, s_w, s_c,
                    src_ptr, 0, 0, 0, 0, st_ptr, st_ptr, CZ, g_ptr, be_ptr, 0.0,
                    w_ptr, w_si, w_so, w_sh, w_sw, co, co_ok,
                    KS, False, MODE, HAS_G, HAS_BE, RELU, DT, ACC, BK, PREC)
    if HAS_B:
        acc += tl.load(b_ptr + co, mask=co_ok, other=0.0).to(ACC)[None, :]
    mask = ok[:, None] & co_ok[None, :]
    tl.store(z_ptr + p.to(tl.int64)[:, None] * CZ + co[None, :], acc, mask=mask)
    cnt = tl.minimum(P - pt * BM, BM).to(ACC)
    s = tl.sum(tl.where(mask, acc, 0.0), axis=0)
    d = tl.where(mask, acc - (s / cnt)[None, :], 0.0)
    row = pt.to(tl.int64) * CZ
    tl.store(ps_ptr + row + co, s, mask=co_ok)
    tl.store(pm_ptr + row + co, tl.sum(d * d, axis=0), mask=co_ok)


@triton.jit
def _stats_to_slot(
    slot_ptr,  # [2, CZ] this program's slot: mean, rstd
    ps_ptr, pm_ptr, n_pt, CZ, P, c_first, COUT, eps,
    BM: tl.constexpr, BN: tl.constexpr, BLOCK_T: tl.constexpr, ACC: tl.constexpr,
):
    """mean and rstd of columns ``c_first .. c_first + COUT`` into the slot."""
    for c0 in range(0, COUT, BN):
        c = c_first + c0 + tl.arange(0, BN)
        c_ok = c < c_first + COUT
        mean, m2 = _finish_stats(ps_ptr, pm_ptr, n_pt, CZ, P, c, c_ok, BM, BLOCK_T, ACC)
        rstd = _rstd(m2 / P.to(ACC) + eps, ACC)
        tl.store(slot_ptr + c, mean, mask=c_ok)
        tl.store(slot_ptr + CZ + c, rstd, mask=c_ok)


@triton.jit
def _sums_to_slot(
    slot_ptr,  # [2, CZ] this program's slot: sum(du), sum(du * xhat)
    qb_ptr, qg_ptr, n_pt, CZ, c_first, COUT,
    BN: tl.constexpr, BLOCK_T: tl.constexpr, ACC: tl.constexpr,
):
    for c0 in range(0, COUT, BN):
        c = c_first + c0 + tl.arange(0, BN)
        c_ok = c < c_first + COUT
        tl.store(slot_ptr + c, _sum_rows(qb_ptr, n_pt, CZ, c, c_ok, BLOCK_T, ACC), mask=c_ok)
        tl.store(slot_ptr + CZ + c, _sum_rows(qg_ptr, n_pt, CZ, c, c_ok, BLOCK_T, ACC), mask=c_ok)


_RUNTIME_INTS = ["N", "H", "W", "n_jobs", "n_pt", "groups", "p_split", "n_split"]

# Per-conv arguments, in the weight order (suffix 0..5 = w1, w3r, w3, w5r, w5, wp).


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _fwd_conv_kernel(
    x_ptr,  # [N, CIN, H, W] by strides
    w0_ptr, w1_ptr, w2_ptr, w3_ptr, w4_ptr, w5_ptr,  # [C_i, Cin_i, k, k] by strides
    b0_ptr, b1_ptr, b2_ptr, b3_ptr, b4_ptr, b5_ptr,  # [C_i] conv biases (dummy where absent)
    g1_ptr, be1_ptr, g3_ptr, be3_ptr,  # [C_1], [C_3]: the reduce convs' BatchNorm weight / bias
    eps1_hi, eps1_lo, eps3_hi, eps3_lo,
    z_ptr,  # [N*H*W, CZ] pre-BatchNorm outputs, accumulator dtype
    ps_ptr,  # [n_pt, CZ] per-tile sums
    pm_ptr,  # [n_pt, CZ] per-tile M2
    slot_ptr,  # [programs, 2, CZ] per-program statistics (STAGE 2)
    N, H, W, CIN, C0, C1, C2, C3, C4, C5,
    sx_n, sx_c, sx_h, sx_w,
    w0_so, w0_si, w1_so, w1_si, w2_so, w2_si, w2_sh, w2_sw,
    w3_so, w3_si, w4_so, w4_si, w4_sh, w4_sw, w5_so, w5_si,
    n_pt, n_jobs,
    K3: tl.constexpr, K5: tl.constexpr, RELU: tl.constexpr,
    HAS_B: tl.constexpr,  # bit i: conv i has a bias
    HAS_G: tl.constexpr,  # bit i: BatchNorm i has a weight
    HAS_BE: tl.constexpr,  # bit i: BatchNorm i has a bias
    STAGE: tl.constexpr,  # 1: the convs that read x; 2: the KxK convs
    DT: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BLOCK_T: tl.constexpr,
    PREC: tl.constexpr,
):
    pid = tl.program_id(0)
    P = N * H * W
    CZ = C0 + C1 + C2 + C3 + C4 + C5
    z1 = C0
    z2 = C0 + C1
    z3 = z2 + C2
    z4 = z3 + C3
    z5 = z4 + C4
    if STAGE == 1:
        t0 = tl.cdiv(C0, BN)
        t1 = tl.cdiv(C1, BN)
        t3 = tl.cdiv(C3, BN)
        t5 = tl.cdiv(C5, BN)
        nct = t0 + t1 + t3 + t5
        for job in range(pid, n_jobs, tl.num_programs(0)):
            pt = job // nct
            ct = job % nct
            if ct < t0:
                _fwd_conv_job(pt, ct, P, H, W, CIN, x_ptr, sx_n, sx_h, sx_w, sx_c, x_ptr, CZ, x_ptr, x_ptr,
                              w0_ptr, w0_so, w0_si, 0, 0, b0_ptr, z_ptr, ps_ptr, pm_ptr, C0,
                              1, 0, False, False, (HAS_B >> 0) & 1, RELU, DT, ACC, BM, BN, BK, PREC)
            elif ct < t0 + t1:
                _fwd_conv_job(pt, ct - t0, P, H, W, CIN, x_ptr, sx_n, sx_h, sx_w, sx_c, x_ptr, CZ, x_ptr, x_ptr,
                              w1_ptr, w1_so, w1_si, 0, 0, b1_ptr, z_ptr + z1, ps_ptr + z1, pm_ptr + z1, C1,
                              1, 0, False, False, (HAS_B >> 1) & 1, RELU, DT, ACC, BM, BN, BK, PREC)
            elif ct < t0 + t1 + t3:
                _fwd_conv_job(pt, ct - t0 - t1, P, H, W, CIN, x_ptr, sx_n, sx_h, sx_w, sx_c, x_ptr, CZ, x_ptr,
                              x_ptr, w3_ptr, w3_so, w3_si, 0, 0, b3_ptr, z_ptr + z3, ps_ptr + z3, pm_ptr + z3, C3,
                              1, 0, False, False, (HAS_B >> 3) & 1, RELU, DT, ACC, BM, BN, BK, PREC)
            else:
                _fwd_conv_job(pt, ct - t0 - t1 - t3, P, H, W, CIN, x_ptr, sx_n, sx_h, sx_w, sx_c, x_ptr, CZ,
                              x_ptr, x_ptr, w5_ptr, w5_so, w5_si, 0, 0, b5_ptr, z_ptr + z5, ps_ptr + z5,
                              pm_ptr + z5, C5,
                              1, 1, False, False, (HAS_B >> 5) & 1, RELU, DT, ACC, BM, BN, BK, PREC)
    else:
        slot = slot_ptr + pid.to(tl.int64) * (2 * CZ)
        _stats_to_slot(slot, ps_ptr, pm_ptr, n_pt, CZ, P, z1, C1, _f64(eps1_hi, eps1_lo, ACC),
                       BM, BN, BLOCK_T, ACC)
        _stats_to_slot(slot, ps_ptr, pm_ptr, n_pt, CZ, P, z3, C3, _f64(eps3_hi, eps3_lo, ACC),
                       BM, BN, BLOCK_T, ACC)
        tl.debug_barrier()  # the slot is written and read by different threads of the program
        t2 = tl.cdiv(C2, BN)
        t4 = tl.cdiv(C4, BN)
        zs_n = H * W * CZ
        zs_h = W * CZ
        for job in range(pid, n_jobs, tl.num_programs(0)):
            pt = job // (t2 + t4)
            ct = job % (t2 + t4)
            if ct < t2:
                _fwd_conv_job(pt, ct, P, H, W, C1, z_ptr + z1, zs_n, zs_h, CZ, 1, slot + z1, CZ, g1_ptr, be1_ptr,
                              w2_ptr, w2_so, w2_si, w2_sh, w2_sw, b2_ptr, z_ptr + z2, ps_ptr + z2, pm_ptr + z2, C2,
                              K3, 2, (HAS_G >> 1) & 1, (HAS_BE >> 1) & 1, (HAS_B >> 2) & 1, RELU, DT, ACC,
                              BM, BN, BK, PREC)
            else:
                _fwd_conv_job(pt, ct - t2, P, H, W, C3, z_ptr + z3, zs_n, zs_h, CZ, 1, slot + z3, CZ, g3_ptr,
                              be3_ptr, w4_ptr, w4_so, w4_si, w4_sh, w4_sw, b4_ptr, z_ptr + z4, ps_ptr + z4,
                              pm_ptr + z4, C4,
                              K5, 2, (HAS_G >> 3) & 1, (HAS_BE >> 3) & 1, (HAS_B >> 4) & 1, RELU, DT, ACC,
                              BM, BN, BK, PREC)


@triton.jit
def _norm_job(
    ct, grp, groups, P, H, W, n_pt, CZ,
    c_first,  # this conv's first column in Z / STATS
    COUT,
    z_ptr,  # [P, CZ]
    ps_ptr, pm_ptr,  # [n_pt, CZ]
    stats_ptr,  # [2, CZ] saved mean, rstd
    g_ptr, be_ptr,  # [COUT] BatchNorm weight / bias
    rm_ptr, rv_ptr,  # [COUT] running mean / var (updated in place by group 0)
    eps, momentum,
    y_ptr,  # [N, Cy, H, W] by strides, at this conv's first channel (OUT only)
    sy_n, sy_c, sy_h, sy_w,
    HAS_G: tl.constexpr, HAS_BE: tl.constexpr, HAS_RUN: tl.constexpr, OUT: tl.constexpr,
    RELU: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Finish one channel tile's statistics; group 0 saves them and updates the running ones;
    with ``OUT`` every group normalizes its share of the pixel tiles into y."""
    c = ct * BN + tl.arange(0, BN)
    c_ok = c < COUT
    mean, m2 = _finish_stats(ps_ptr, pm_ptr, n_pt, CZ, P, c_first + c, c_ok, BM, BLOCK_T, ACC)
    Pf = P.to(ACC)
    rstd = _rstd(m2 / Pf + eps, ACC)
    if grp == 0:
        tl.store(stats_ptr + c_first + c, mean, mask=c_ok)
        tl.store(stats_ptr + CZ + c_first + c, rstd, mask=c_ok)
        if HAS_RUN:
            rm = tl.load(rm_ptr + c, mask=c_ok, other=0.0)
            rv = tl.load(rv_ptr + c, mask=c_ok, other=0.0)
            new_m = (1.0 - momentum) * rm.to(ACC) + momentum * mean
            new_v = (1.0 - momentum) * rv.to(ACC) + momentum * (m2 / (Pf - 1.0))
            tl.store(rm_ptr + c, new_m.to(rm_ptr.dtype.element_ty), mask=c_ok)
            tl.store(rv_ptr + c, new_v.to(rv_ptr.dtype.element_ty), mask=c_ok)
    if OUT:
        g = tl.full([BN], 1.0, ACC)
        if HAS_G:
            g = tl.load(g_ptr + c, mask=c_ok, other=0.0).to(ACC)
        be = tl.zeros([BN], ACC)
        if HAS_BE:
            be = tl.load(be_ptr + c, mask=c_ok, other=0.0).to(ACC)
        for pt in range(grp, n_pt, groups):
            p, n64, h, w, ok = _pixel_tile(pt, P, H, W, BM)
            mask = ok[:, None] & c_ok[None, :]
            z = tl.load(z_ptr + p.to(tl.int64)[:, None] * CZ + (c_first + c)[None, :], mask=mask, other=0.0)
            u = _act((z.to(ACC) - mean[None, :]) * rstd[None, :] * g[None, :] + be[None, :], RELU)
            y_ptrs = y_ptr + (n64 * sy_n + (h * sy_h + w * sy_w))[:, None] + (c * sy_c)[None, :]
            tl.store(y_ptrs, u.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _fwd_norm_kernel(
    z_ptr,  # [N*H*W, CZ]
    ps_ptr, pm_ptr,  # [n_pt, CZ]
    stats_ptr,  # [2, CZ] out: mean, rstd
    g0_ptr, g1_ptr, g2_ptr, g3_ptr, g4_ptr, g5_ptr,  # [C_i] BatchNorm weights (dummy where absent)
    be0_ptr, be1_ptr, be2_ptr, be3_ptr, be4_ptr, be5_ptr,  # [C_i] BatchNorm biases
    rm0_ptr, rm1_ptr, rm2_ptr, rm3_ptr, rm4_ptr, rm5_ptr,  # [C_i] running means (updated in place)
    rv0_ptr, rv1_ptr, rv2_ptr, rv3_ptr, rv4_ptr, rv5_ptr,  # [C_i] running variances
    eps0_hi, eps0_lo, eps1_hi, eps1_lo, eps2_hi, eps2_lo, eps3_hi, eps3_lo, eps4_hi, eps4_lo, eps5_hi, eps5_lo,
    mom0_hi, mom0_lo, mom1_hi, mom1_lo, mom2_hi, mom2_lo, mom3_hi, mom3_lo, mom4_hi, mom4_lo, mom5_hi, mom5_lo,
    y_ptr,  # [N, C0 + C2 + C4 + C5, H, W] by strides
    N, H, W, C0, C1, C2, C3, C4, C5,
    sy_n, sy_c, sy_h, sy_w,
    n_pt, groups,
    HAS_G: tl.constexpr,  # bit i: BatchNorm i has a weight
    HAS_BE: tl.constexpr,  # bit i: BatchNorm i has a bias
    HAS_RUN: tl.constexpr, RELU: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BLOCK_T: tl.constexpr,
):
    job = tl.program_id(0)
    grp = tl.program_id(1)
    P = N * H * W
    CZ = C0 + C1 + C2 + C3 + C4 + C5
    t0 = tl.cdiv(C0, BN)
    t1 = t0 + tl.cdiv(C1, BN)
    t2 = t1 + tl.cdiv(C2, BN)
    t3 = t2 + tl.cdiv(C3, BN)
    t4 = t3 + tl.cdiv(C4, BN)
    if job < t0:
        _norm_job(job, grp, groups, P, H, W, n_pt, CZ, 0, C0, z_ptr, ps_ptr, pm_ptr, stats_ptr,
                  g0_ptr, be0_ptr, rm0_ptr, rv0_ptr, _f64(eps0_hi, eps0_lo, ACC), _f64(mom0_hi, mom0_lo, ACC),
                  y_ptr, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 0) & 1, (HAS_BE >> 0) & 1, HAS_RUN, True, RELU, ACC, BM, BN, BLOCK_T)
    elif job < t1:
        _norm_job(job - t0, grp, groups, P, H, W, n_pt, CZ, C0, C1, z_ptr, ps_ptr, pm_ptr, stats_ptr,
                  g1_ptr, be1_ptr, rm1_ptr, rv1_ptr, _f64(eps1_hi, eps1_lo, ACC), _f64(mom1_hi, mom1_lo, ACC),
                  y_ptr, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 1) & 1, (HAS_BE >> 1) & 1, HAS_RUN, False, RELU, ACC, BM, BN, BLOCK_T)
    elif job < t2:
        _norm_job(job - t1, grp, groups, P, H, W, n_pt, CZ, C0 + C1, C2, z_ptr, ps_ptr, pm_ptr, stats_ptr,
                  g2_ptr, be2_ptr, rm2_ptr, rv2_ptr, _f64(eps2_hi, eps2_lo, ACC), _f64(mom2_hi, mom2_lo, ACC),
                  y_ptr + C0 * sy_c, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 2) & 1, (HAS_BE >> 2) & 1, HAS_RUN, True, RELU, ACC, BM, BN, BLOCK_T)
    elif job < t3:
        _norm_job(job - t2, grp, groups, P, H, W, n_pt, CZ, C0 + C1 + C2, C3, z_ptr, ps_ptr, pm_ptr, stats_ptr,
                  g3_ptr, be3_ptr, rm3_ptr, rv3_ptr, _f64(eps3_hi, eps3_lo, ACC), _f64(mom3_hi, mom3_lo, ACC),
                  y_ptr, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 3) & 1, (HAS_BE >> 3) & 1, HAS_RUN, False, RELU, ACC, BM, BN, BLOCK_T)
    elif job < t4:
        _norm_job(job - t3, grp, groups, P, H, W, n_pt, CZ, C0 + C1 + C2 + C3, C4, z_ptr, ps_ptr, pm_ptr,
                  stats_ptr, g4_ptr, be4_ptr, rm4_ptr, rv4_ptr, _f64(eps4_hi, eps4_lo, ACC),
                  _f64(mom4_hi, mom4_lo, ACC), y_ptr + (C0 + C2) * sy_c, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 4) & 1, (HAS_BE >> 4) & 1, HAS_RUN, True, RELU, ACC, BM, BN, BLOCK_T)
    else:
        _norm_job(job - t4, grp, groups, P, H, W, n_pt, CZ, CZ - C5, C5, z_ptr, ps_ptr, pm_ptr,
                  stats_ptr, g5_ptr, be5_ptr, rm5_ptr, rv5_ptr, _f64(eps5_hi, eps5_lo, ACC),
                  _f64(mom5_hi, mom5_lo, ACC), y_ptr + (C0 + C2 + C4) * sy_c, sy_n, sy_c, sy_h, sy_w,
                  (HAS_G >> 5) & 1, (HAS_BE >> 5) & 1, HAS_RUN, True, RELU, ACC, BM, BN, BLOCK_T)


# ------------------------------------------------------------------------------------------ backward


@triton.jit
def _bwd_stats_job(
    pt, ct, P, H, W, CZ, COUT,
    z_ptr,  # [P, CZ] at this conv's first column
    st_ptr,  # [2, CZ] saved mean / rstd at this conv's first column
    g_ptr, be_ptr,  # [COUT]
    dy_ptr,  # upstream gradient of this conv's activation by strides, at its first channel
    d_n, d_c, d_h, d_w,
    qb_ptr, qg_ptr,  # [n_pt, CZ] at this conv's first column: partial sum(du), sum(du * xhat)
    HAS_G: tl.constexpr, HAS_BE: tl.constexpr, RELU: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr,
):
    p, n64, h, w, ok = _pixel_tile(pt, P, H, W, BM)
    c = ct * BN + tl.arange(0, BN)
    c_ok = c < COUT
    mask = ok[:, None] & c_ok[None, :]
    z = tl.load(z_ptr + p.to(tl.int64)[:, None] * CZ + c[None, :], mask=mask, other=0.0)
    xhat, u, g, rstd = _bn_unit(z, st_ptr, CZ, g_ptr, be_ptr, c, c_ok, HAS_G, HAS_BE, ACC)
    dy = tl.load(dy_ptr + (n64 * d_n + (h * d_h + w * d_w))[:, None] + (c * d_c)[None, :], mask=mask, other=0.0)
    du = tl.where(mask, _du(dy.to(ACC), u, RELU), 0.0)
    row = pt.to(tl.int64) * CZ
    tl.store(qb_ptr + row + c, tl.sum(du, axis=0), mask=c_ok)
    tl.store(qg_ptr + row + c, tl.sum(du * tl.where(mask, xhat, 0.0), axis=0), mask=c_ok)


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _bwd_stats_kernel(
    dy_ptr,  # [N, C0 + C2 + C4 + C5, H, W] upstream gradient of y, by strides
    z_ptr,  # [N*H*W, CZ]
    stats_ptr,  # [2, CZ] mean, rstd
    g0_ptr, g2_ptr, g4_ptr, g5_ptr,  # [C_i] BatchNorm weights of the four branch convs (dummy where absent)
    be0_ptr, be2_ptr, be4_ptr, be5_ptr,  # [C_i] BatchNorm biases
    qb_ptr, qg_ptr,  # [n_pt, CZ] out: partial sums
    N, H, W, C0, C1, C2, C3, C4, C5,
    d_n, d_c, d_h, d_w,
    HAS_G: tl.constexpr, HAS_BE: tl.constexpr, RELU: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr,
):
    job = tl.program_id(0)
    P = N * H * W
    CZ = C0 + C1 + C2 + C3 + C4 + C5
    t0 = tl.cdiv(C0, BN)
    t2 = t0 + tl.cdiv(C2, BN)
    t4 = t2 + tl.cdiv(C4, BN)
    nct = t4 + tl.cdiv(C5, BN)
    pt = job // nct
    ct = job % nct
    z2 = C0 + C1
    z4 = z2 + C2 + C3
    z5 = z4 + C4
    if ct < t0:
        _bwd_stats_job(pt, ct, P, H, W, CZ, C0, z_ptr, stats_ptr, g0_ptr, be0_ptr, dy_ptr, d_n, d_c, d_h, d_w,
                       qb_ptr, qg_ptr, HAS_G & 1, HAS_BE & 1, RELU, ACC, BM, BN)
    elif ct < t2:
        _bwd_stats_job(pt, ct - t0, P, H, W, CZ, C2, z_ptr + z2, stats_ptr + z2, g2_ptr, be2_ptr,
                       dy_ptr + C0 * d_c, d_n, d_c, d_h, d_w, qb_ptr + z2, qg_ptr + z2,
                       (HAS_G >> 2) & 1, (HAS_BE >> 2) & 1, RELU, ACC, BM, BN)
    elif ct < t4:
        _bwd_stats_job(pt, ct - t2, P, H, W, CZ, C4, z_ptr + z4, stats_ptr + z4, g4_ptr, be4_ptr,
                       dy_ptr + (C0 + C2) * d_c, d_n, d_c, d_h, d_w, qb_ptr + z4, qg_ptr + z4,
                       (HAS_G >> 4) & 1, (HAS_BE >> 4) & 1, RELU, ACC, BM, BN)
    else:
        _bwd_stats_job(pt, ct - t4, P, H, W, CZ, C5, z_ptr + z5, stats_ptr + z5, g5_ptr, be5_ptr,
                       dy_ptr + (C0 + C2 + C4) * d_c, d_n, d_c, d_h, d_w, qb_ptr + z5, qg_ptr + z5,
                       (HAS_G >> 5) & 1, (HAS_BE >> 5) & 1, RELU, ACC, BM, BN)


@triton.jit
def _da_job(
    pt, ct, P, H, W, CZ,
    z_ptr,  # [P, CZ] (column 0)
    stats_ptr,  # [2, CZ] (column 0)
    slot_ptr,  # [2, CZ] this program's sums (column 0)
    zr, zk,  # first columns of the reduce conv and of the KxK conv that consumes it
    CR, CK,  # their output channels
    gr_ptr, ber_ptr,  # [CR] the reduce conv's BatchNorm weight / bias
    gk_ptr, bek_ptr,  # [CK] the KxK conv's BatchNorm weight / bias
    dy_ptr,  # upstream gradient of the KxK conv's activation (its y slice), by strides
    d_n, d_c, d_h, d_w,
    wk_ptr,  # [CK, CR, KS, KS] the KxK conv's weight
    wk_so, wk_si, wk_sh, wk_sw,
    da_ptr,  # [P, CDA] out: gradient of the reduce conv's activation, at this conv's first column
    CDA,
    qb_ptr, qg_ptr,  # [n_pt, CZ] (column 0) out: the reduce conv's partial sums
    inv_m,
    KS: tl.constexpr, HAS_GR: tl.constexpr, HAS_BER: tl.constexpr, HAS_GK: tl.constexpr, HAS_BEK: tl.constexpr,
    RELU: tl.constexpr, DT: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """``da = conv_transpose(dz_k, w_k)`` on one tile, then the reduce conv's partial sums of ``du``."""
    p, n64, h, w, ok = _pixel_tile(pt, P, H, W, BM)
    c = ct * BN + tl.arange(0, BN)
    c_ok = c < CR
    acc = tl.zeros([BM, BN], ACC)
    acc = _conv_acc(acc, n64, h, w, ok, H, W, CK, z_ptr + zk, H * W * CZ, W * CZ, CZ, 1,
                    dy_ptr, d_n, d_h, d_w, d_c, stats_ptr + zk, slot_ptr + zk, CZ, gk_ptr, bek_ptr, inv_m,
                    wk_ptr, wk_so, wk_si, wk_sh, wk_sw, c, c_ok,
                    KS, True, 3, HAS_GK, HAS_BEK, RELU, DT, ACC, BK, PREC)
    mask = ok[:, None] & c_ok[None, :]
    p64 = p.to(tl.int64)
    tl.store(da_ptr + p64[:, None] * CDA + c[None, :], acc, mask=mask)
    z = tl.load(z_ptr + zr + p64[:, None] * CZ + c[None, :], mask=mask, other=0.0)
    xhat, u, g, rstd = _bn_unit(z, stats_ptr + zr, CZ, gr_ptr, ber_ptr, c, c_ok, HAS_GR, HAS_BER, ACC)
    du = tl.where(mask, _du(acc, u, RELU), 0.0)
    row = pt.to(tl.int64) * CZ + zr
    tl.store(qb_ptr + row + c, tl.sum(du, axis=0), mask=c_ok)
    tl.store(qg_ptr + row + c, tl.sum(du * tl.where(mask, xhat, 0.0), axis=0), mask=c_ok)


@triton.jit
def _wgrad_job(
    job,  # index over (split, cout tile, column tile); columns are (cin, tap) pairs, cin-major
    P, H, W, CZ, p_split,
    COUT, CIN,  # this conv's weight [COUT, CIN, KS, KS]
    dz_ptr,  # [P, CZ] dz of all convs, at this conv's first column
    a_src, a_n, a_c, a_h, a_w, a_st, a_g, a_be,  # the conv's input operand (MODE A_MODE), see _operand
    wp_ptr,  # [n_split, LD] partials: this conv's weight at wp_ptr[s, 0:COUT*CIN*KS*KS]
    bp_ptr,  # [n_split, LD] partials: this conv's bias at bp_ptr[s, 0:COUT]
    LD,
    KS: tl.constexpr, A_MODE: tl.constexpr, A_G: tl.constexpr, A_BE: tl.constexpr,
    RELU: tl.constexpr, DT: tl.constexpr, ACC: tl.constexpr,
    BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """Partial ``dW[co, (ci, tap)] = sum_p dz[p, co] * a[p + tap, ci]`` over one pixel split (and, for
    the first column tile, ``db = sum_p dz``), written to the split's row of the partials. The
    columns run over the weight's ``CIN * KS * KS`` (ci, tap) pairs (im2col order, the weight's own
    layout), so a KxK conv needs no job per tap. ``A_MODE`` 1 (pool) only with ``KS`` 1."""
    PAD: tl.constexpr = KS // 2
    KK: tl.constexpr = KS * KS
    NCOL = CIN * KK
    tco = tl.cdiv(COUT, BN)
    tcol = tl.cdiv(NCOL, BN)
    colt = job % tcol
    r = job // tcol
    cot = r % tco
    s = r // tco
    co = cot * BN + tl.arange(0, BN)
    co_ok = co < COUT
    col = colt * BN + tl.arange(0, BN)
    col_ok = col < NCOL
    ci = col // KK
    dh = (col % KK) // KS - PAD
    dw = (col % KK) % KS - PAD
    acc = tl.zeros([BN, BN], ACC)
    dbs = tl.zeros([BN], ACC)
    p_end = tl.minimum((s + 1) * p_split, P)
    for p0 in range(s * p_split, p_end, BK):
        p = p0 + tl.arange(0, BK)
        n64, h, w, ok = _pixel_nhw(p, p_end, H, W)
        g = tl.load(dz_ptr + p.to(tl.int64)[:, None] * CZ + co[None, :], mask=ok[:, None] & co_ok[None, :], other=0.0)
        if KS == 1:
            a = _operand(n64, h, w, ok, ci, col_ok, H, W, a_src, a_n, a_h, a_w, a_c,
                         a_src, 0, 0, 0, 0, a_st, a_st, CZ, a_g, a_be, 0.0,
                         A_MODE, A_G, A_BE, RELU, ACC)
        else:  # im2col: each column its own tap shift (zero padding outside the image)
            th = h[:, None] + dh[None, :]
            tw = w[:, None] + dw[None, :]
            m = ok[:, None] & col_ok[None, :] & _tap_ok(h[:, None], w[:, None], dh[None, :], dw[None, :], H, W)
            a = tl.load(a_src + (n64 * a_n)[:, None] + (th * a_h + tw * a_w + (ci * a_c)[None, :]), mask=m, other=0.0)
        acc = tl.dot(tl.trans(g.to(DT)), a.to(DT), acc, input_precision=PREC, out_dtype=ACC)
        dbs += tl.sum(g, axis=0)
    row = s.to(tl.int64) * LD
    tl.store(wp_ptr + row + (co * NCOL)[:, None] + col[None, :], acc, mask=co_ok[:, None] & col_ok[None, :])
    if colt == 0:
        tl.store(bp_ptr + row + co, dbs, mask=co_ok)


@triton.jit
def _dz_job(
    pt, ct, P, H, W, CZ, COUT,
    z_ptr,  # [P, CZ] at this conv's first column
    dy_ptr,  # upstream gradient of the conv's activation by strides, at its first channel
    d_n, d_c, d_h, d_w,
    st_ptr, sm_ptr,  # [2, CZ] saved (mean, rstd) and this program's (sum du, sum du*xhat), at the first column
    g_ptr, be_ptr,  # [COUT]
    dz_ptr,  # [P, CZ] out, at this conv's first column
    inv_m,
    HAS_G: tl.constexpr, HAS_BE: tl.constexpr, RELU: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr,
):
    """``dz`` of one conv on one tile, stored for the weight and data gradients."""
    p, n64, h, w, ok = _pixel_tile(pt, P, H, W, BM)
    c = ct * BN + tl.arange(0, BN)
    c_ok = c < COUT
    dz = _operand(n64, h, w, ok, c, c_ok, H, W, z_ptr, H * W * CZ, W * CZ, CZ, 1,
                  dy_ptr, d_n, d_h, d_w, d_c, st_ptr, sm_ptr, CZ, g_ptr, be_ptr, inv_m,
                  3, HAS_G, HAS_BE, RELU, ACC)
    tl.store(dz_ptr + p.to(tl.int64)[:, None] * CZ + c[None, :], dz, mask=ok[:, None] & c_ok[None, :])


@triton.jit
def _pool_scan(
    x_ptr,  # [N, CIN, H, W] by strides
    sx_n, sx_c, sx_h, sx_w,
    n64, h, w, ok, H, W,  # [R] window centres
    ci, ci_ok,  # [C] channels
    ARG: tl.constexpr,  # also the argmax tap
):
    """``(max, argmax)`` of each 3x3/s1/p1 window of x (``[R, C]``; ``-inf`` on masked rows),
    PyTorch's ``max_pool2d`` rule: the first maximum in row-major tap order (``v > best``, so
    ``-0.0`` and ``+0.0`` keep the first), NaN wins (the last NaN), padding never. With ``ARG``
    the argmax tap (row-major, 0..8; a window of only -inf picks its first in-image tap),
    else a dummy.

    Not ``_common._pool_tile`` (the forward's pool): that one takes ``tl.maximum``, whose
    result for ``(-0.0, +0.0)`` and NaN payloads need not be the first operand, and the
    backward here needs the argmax of exactly the values the forward pooled."""
    best = tl.full([ok.shape[0], ci.shape[0]], float("-inf"), x_ptr.dtype.element_ty)
    arg = tl.full([ok.shape[0], ci.shape[0]], -1, tl.int32)
    centre = n64 * sx_n + (h * sx_h + w * sx_w)
    for e in range(9):
        eh = e // 3 - 1
        ew = e % 3 - 1
        m = (ok & _tap_ok(h, w, eh, ew, H, W))[:, None] & ci_ok[None, :]
        v = tl.load(x_ptr + (centre + (eh * sx_h + ew * sx_w))[:, None] + (ci * sx_c)[None, :],
                    mask=m, other=float("-inf"))
        take = (v > best) | (v != v)
        if ARG:
            take = m & (take | (arg < 0))
            arg = tl.where(take, e, arg)
        best = tl.where(take, v, best)
    return best, arg


@triton.jit
def _pool_dx(
    acc,  # [BM, BN] dx accumulator
    dp_ptr,  # [P, CIN] gradient of the pooled map
    arg_ptr,  # [P, CIN] int8 argmax tap of each window (_pool_scan)
    CIN,
    n64, h, w, ok, H, W,
    ci, ci_ok,
):
    """Max-pool 3x3/s1/p1 backward as a gather: pixel q takes ``dp[p]`` of each of the 9 windows p
    (centred at q + d) whose argmax tap is q."""
    for d in range(9):
        dh = d // 3 - 1
        dw = d % 3 - 1
        ph = h + dh
        pw = w + dw
        m = (ok & _tap_ok(h, w, dh, dw, H, W))[:, None] & ci_ok[None, :]
        p_off = ((n64 * (H * W) + (ph * W + pw)) * CIN)[:, None] + ci[None, :]
        arg = tl.load(arg_ptr + p_off, mask=m, other=-1)
        hit = m & (arg == (1 - dh) * 3 + (1 - dw))  # q seen from the window centred at q + d
        acc += tl.load(dp_ptr + p_off, mask=hit, other=0.0)
    return acc


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _bwd_grads_kernel(
    x_ptr,  # [N, CIN, H, W] by strides
    dy_ptr,  # [N, C0 + C2 + C4 + C5, H, W] upstream gradient of y, by strides
    z_ptr,  # [N*H*W, CZ]
    stats_ptr,  # [2, CZ] mean, rstd
    qb_ptr, qg_ptr,  # [n_pt, CZ] partial sum(du), sum(du * xhat)
    slot_ptr,  # [programs, 2, CZ] per-program finished sums
    dz_ptr,  # [N*H*W, CZ] dz of every conv (STAGE 1: branch convs, STAGE 2: reduce convs; read after)
    da_ptr,  # [N*H*W, C1 + C3] gradient of the reduce convs' activations (STAGE 1 out, STAGE 2 in)
    ar_ptr,  # [N*H*W, C1 + C3] the reduce convs' activations in x's dtype (STAGE 1 out, STAGE 2 in)
    dp_ptr,  # [N*H*W, CIN] gradient of the pooled x (STAGE 1 out, STAGE 3 in)
    arg_ptr,  # [N*H*W, CIN] int8: argmax tap of each pool window (STAGE 1 out, STAGE 3 in)
    dx_ptr,  # [N, CIN, H, W] by strides (STAGE 3 out)
    wpart_ptr,  # [n_split, WTOT + CZ] weight and bias gradient partials (STAGE 2, 3 out)
    w0_ptr, w1_ptr, w2_ptr, w3_ptr, w4_ptr, w5_ptr,  # [C_i, Cin_i, k, k] by strides
    g0_ptr, g1_ptr, g2_ptr, g3_ptr, g4_ptr, g5_ptr,  # [C_i] BatchNorm weights (dummy where absent)
    be0_ptr, be1_ptr, be2_ptr, be3_ptr, be4_ptr, be5_ptr,  # [C_i] BatchNorm biases
    N, H, W, CIN, C0, C1, C2, C3, C4, C5,
    sx_n, sx_c, sx_h, sx_w,
    sdx_n, sdx_c, sdx_h, sdx_w,
    d_n, d_c, d_h, d_w,
    w0_so, w0_si, w1_so, w1_si, w2_so, w2_si, w2_sh, w2_sw,
    w3_so, w3_si, w4_so, w4_si, w4_sh, w4_sw, w5_so, w5_si,
    n_pt, n_jobs, p_split, n_split,
    K3: tl.constexpr, K5: tl.constexpr, RELU: tl.constexpr,
    HAS_G: tl.constexpr, HAS_BE: tl.constexpr,
    STAGE: tl.constexpr,  # 1: dz of the branch convs, da, dp; 2: dz of the reduce convs, branch weight
    # gradients; 3: dx, reduce weight gradients
    DT: tl.constexpr, ACC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BLOCK_T: tl.constexpr,
    PREC: tl.constexpr,
):
    pid = tl.program_id(0)
    P = N * H * W
    HW = H * W
    inv_m = 1.0 / P.to(ACC)
    CZ = C0 + C1 + C2 + C3 + C4 + C5
    z1 = C0
    z2 = z1 + C1
    z3 = z2 + C2
    z4 = z3 + C3
    z5 = z4 + C4
    KK3: tl.constexpr = K3 * K3
    KK5: tl.constexpr = K5 * K5
    # weight partial columns, in the weight order, then the biases (CZ columns)
    o1 = C0 * CIN
    o2 = o1 + C1 * CIN
    o3 = o2 + C2 * C1 * KK3
    o4 = o3 + C3 * CIN
    o5 = o4 + C4 * C3 * KK5
    WTOT = o5 + C5 * CIN
    LD = WTOT + CZ
    CDA = C1 + C3
    slot = slot_ptr + pid.to(tl.int64) * (2 * CZ)
    tcin = tl.cdiv(CIN, BN)
    t0 = tl.cdiv(C0, BN)
    t1 = tl.cdiv(C1, BN)
    t2 = tl.cdiv(C2, BN)
    t3 = tl.cdiv(C3, BN)
    t4 = tl.cdiv(C4, BN)
    t5 = tl.cdiv(C5, BN)
    if STAGE == 1:
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, 0, C0, BN, BLOCK_T, ACC)
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, z2, C2, BN, BLOCK_T, ACC)
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, z4, C4, BN, BLOCK_T, ACC)
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, z5, C5, BN, BLOCK_T, ACC)
        tl.debug_barrier()  # the slot is written and read by different threads of the program
        tz = t0 + t2 + t4 + t5
        n_dz = n_pt * tz
        n_da = n_pt * (t1 + t3)
        n_dp = n_pt * tcin
        for job in range(pid, n_jobs, tl.num_programs(0)):
            if job >= n_dz + n_da + n_dp:
                # the reduce convs' activations, stored once for the KxK convs' weight gradients
                j = job - n_dz - n_da - n_dp
                p, n64, h, w, ok = _pixel_tile(j // (t1 + t3), P, H, W, BM)
                ct = j % (t1 + t3)
                if ct < t1:
                    c = ct * BN + tl.arange(0, BN)
                    c_ok = c < C1
                    a = _operand(n64, h, w, ok, c, c_ok, H, W, z_ptr + z1, HW * CZ, W * CZ, CZ, 1,
                                 z_ptr, 0, 0, 0, 0, stats_ptr + z1, stats_ptr, CZ, g1_ptr, be1_ptr, inv_m,
                                 2, (HAS_G >> 1) & 1, (HAS_BE >> 1) & 1, RELU, ACC)
                else:
                    c = (ct - t1) * BN + tl.arange(0, BN)
                    c_ok = c < C3
                    a = _operand(n64, h, w, ok, c, c_ok, H, W, z_ptr + z3, HW * CZ, W * CZ, CZ, 1,
                                 z_ptr, 0, 0, 0, 0, stats_ptr + z3, stats_ptr, CZ, g3_ptr, be3_ptr, inv_m,
                                 2, (HAS_G >> 3) & 1, (HAS_BE >> 3) & 1, RELU, ACC)
                    c += C1
                tl.store(ar_ptr + p.to(tl.int64)[:, None] * CDA + c[None, :], a.to(ar_ptr.dtype.element_ty),
                         mask=ok[:, None] & c_ok[None, :])
            elif job < n_dz:
                pt = job // tz
                ct = job % tz
                if ct < t0:
                    _dz_job(pt, ct, P, H, W, CZ, C0, z_ptr, dy_ptr, d_n, d_c, d_h, d_w, stats_ptr, slot,
                            g0_ptr, be0_ptr, dz_ptr, inv_m, HAS_G & 1, HAS_BE & 1, RELU, ACC, BM, BN)
                elif ct < t0 + t2:
                    _dz_job(pt, ct - t0, P, H, W, CZ, C2, z_ptr + z2, dy_ptr + C0 * d_c, d_n, d_c, d_h, d_w,
                            stats_ptr + z2, slot + z2, g2_ptr, be2_ptr, dz_ptr + z2, inv_m,
                            (HAS_G >> 2) & 1, (HAS_BE >> 2) & 1, RELU, ACC, BM, BN)
                elif ct < t0 + t2 + t4:
                    _dz_job(pt, ct - t0 - t2, P, H, W, CZ, C4, z_ptr + z4, dy_ptr + (C0 + C2) * d_c,
                            d_n, d_c, d_h, d_w, stats_ptr + z4, slot + z4, g4_ptr, be4_ptr, dz_ptr + z4, inv_m,
                            (HAS_G >> 4) & 1, (HAS_BE >> 4) & 1, RELU, ACC, BM, BN)
                else:
                    _dz_job(pt, ct - t0 - t2 - t4, P, H, W, CZ, C5, z_ptr + z5, dy_ptr + (C0 + C2 + C4) * d_c,
                            d_n, d_c, d_h, d_w, stats_ptr + z5, slot + z5, g5_ptr, be5_ptr, dz_ptr + z5, inv_m,
                            (HAS_G >> 5) & 1, (HAS_BE >> 5) & 1, RELU, ACC, BM, BN)
            elif job < n_dz + n_da:
                j = job - n_dz
                pt = j // (t1 + t3)
                ct = j % (t1 + t3)
                if ct < t1:
                    _da_job(pt, ct, P, H, W, CZ, z_ptr, stats_ptr, slot, z1, z2, C1, C2, g1_ptr, be1_ptr,
                            g2_ptr, be2_ptr, dy_ptr + C0 * d_c, d_n, d_c, d_h, d_w,
                            w2_ptr, w2_so, w2_si, w2_sh, w2_sw, da_ptr, CDA, qb_ptr, qg_ptr, inv_m,
                            K3, (HAS_G >> 1) & 1, (HAS_BE >> 1) & 1, (HAS_G >> 2) & 1, (HAS_BE >> 2) & 1,
                            RELU, DT, ACC, BM, BN, BK, PREC)
                else:
                    _da_job(pt, ct - t1, P, H, W, CZ, z_ptr, stats_ptr, slot, z3, z4, C3, C4, g3_ptr, be3_ptr,
                            g4_ptr, be4_ptr, dy_ptr + (C0 + C2) * d_c, d_n, d_c, d_h, d_w,
                            w4_ptr, w4_so, w4_si, w4_sh, w4_sw, da_ptr + C1, CDA, qb_ptr, qg_ptr, inv_m,
                            K5, (HAS_G >> 3) & 1, (HAS_BE >> 3) & 1, (HAS_G >> 4) & 1, (HAS_BE >> 4) & 1,
                            RELU, DT, ACC, BM, BN, BK, PREC)
            else:
                # dp = dz_p @ wp: the pool projection's data gradient, before the pool (+ the windows' argmax)
                j = job - n_dz - n_da
                p, n64, h, w, ok = _pixel_tile(j // tcin, P, H, W, BM)
                ci = (j % tcin) * BN + tl.arange(0, BN)
                ci_ok = ci < CIN
                acc = tl.zeros([BM, BN], ACC)
                acc = _conv_acc(acc, n64, h, w, ok, H, W, C5, z_ptr + z5, HW * CZ, W * CZ, CZ, 1,
                                dy_ptr + (C0 + C2 + C4) * d_c, d_n, d_h, d_w, d_c, stats_ptr + z5, slot + z5, CZ,
                                g5_ptr, be5_ptr, inv_m, w5_ptr, w5_so, w5_si, 0, 0, ci, ci_ok,
                                1, True, 3, (HAS_G >> 5) & 1, (HAS_BE >> 5) & 1, RELU, DT, ACC, BK, PREC)
                dp_off = p.to(tl.int64)[:, None] * CIN + ci[None, :]
                tl.store(dp_ptr + dp_off, acc, mask=ok[:, None] & ci_ok[None, :])
                _best, arg = _pool_scan(x_ptr, sx_n, sx_c, sx_h, sx_w, n64, h, w, ok, H, W, ci, ci_ok, True)
                tl.store(arg_ptr + dp_off, arg.to(tl.int8), mask=ok[:, None] & ci_ok[None, :])
    elif STAGE == 2:
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, z1, C1, BN, BLOCK_T, ACC)
        _sums_to_slot(slot, qb_ptr, qg_ptr, n_pt, CZ, z3, C3, BN, BLOCK_T, ACC)
        tl.debug_barrier()
        n_dz = n_pt * (t1 + t3)
        # weight jobs per conv: splits x cout tiles x cin tiles x taps
        j0 = n_split * t0 * tcin
        j2 = n_split * t2 * tl.cdiv(C1 * KK3, BN)
        j4 = n_split * t4 * tl.cdiv(C3 * KK5, BN)
        for job in range(pid, n_jobs, tl.num_programs(0)):
            if job < n_dz:
                pt = job // (t1 + t3)
                ct = job % (t1 + t3)
                if ct < t1:
                    _dz_job(pt, ct, P, H, W, CZ, C1, z_ptr + z1, da_ptr, HW * CDA, 1, W * CDA, CDA,
                            stats_ptr + z1, slot + z1, g1_ptr, be1_ptr, dz_ptr + z1, inv_m,
                            (HAS_G >> 1) & 1, (HAS_BE >> 1) & 1, RELU, ACC, BM, BN)
                else:
                    _dz_job(pt, ct - t1, P, H, W, CZ, C3, z_ptr + z3, da_ptr + C1, HW * CDA, 1, W * CDA, CDA,
                            stats_ptr + z3, slot + z3, g3_ptr, be3_ptr, dz_ptr + z3, inv_m,
                            (HAS_G >> 3) & 1, (HAS_BE >> 3) & 1, RELU, ACC, BM, BN)
            else:
                j = job - n_dz
                if j < j0:
                    _wgrad_job(j, P, H, W, CZ, p_split, C0, CIN, dz_ptr,
                               x_ptr, sx_n, sx_c, sx_h, sx_w, stats_ptr, g0_ptr, be0_ptr,
                               wpart_ptr, wpart_ptr + WTOT, LD,
                               1, 0, False, False, RELU, DT, ACC, BN, BK, PREC)
                elif j < j0 + j2:
                    _wgrad_job(j - j0, P, H, W, CZ, p_split, C2, C1, dz_ptr + z2,
                               ar_ptr, HW * CDA, 1, W * CDA, CDA, stats_ptr, g1_ptr, be1_ptr,
                               wpart_ptr + o2, wpart_ptr + WTOT + z2, LD,
                               K3, 0, False, False, RELU, DT, ACC, BN, BK, PREC)
                elif j < j0 + j2 + j4:
                    _wgrad_job(j - j0 - j2, P, H, W, CZ, p_split, C4, C3, dz_ptr + z4,
                               ar_ptr + C1, HW * CDA, 1, W * CDA, CDA, stats_ptr, g3_ptr, be3_ptr,
                               wpart_ptr + o4, wpart_ptr + WTOT + z4, LD,
                               K5, 0, False, False, RELU, DT, ACC, BN, BK, PREC)
                else:
                    _wgrad_job(j - j0 - j2 - j4, P, H, W, CZ, p_split, C5, CIN, dz_ptr + z5,
                               x_ptr, sx_n, sx_c, sx_h, sx_w, stats_ptr, g5_ptr, be5_ptr,
                               wpart_ptr + o5, wpart_ptr + WTOT + z5, LD,
                               1, 1, False, False, RELU, DT, ACC, BN, BK, PREC)
    else:
        n_dx = n_pt * tcin
        j1 = n_split * t1 * tcin
        for job in range(pid, n_jobs, tl.num_programs(0)):
            if job < n_dx:
                # dx = dz1 @ w1 + dz3r @ w3r + dz5r @ w5r + maxpool_backward(dp)
                p, n64, h, w, ok = _pixel_tile(job // tcin, P, H, W, BM)
                ci = (job % tcin) * BN + tl.arange(0, BN)
                ci_ok = ci < CIN
                acc = tl.zeros([BM, BN], ACC)
                acc = _conv_acc(acc, n64, h, w, ok, H, W, C0, dz_ptr, HW * CZ, W * CZ, CZ, 1,
                                dz_ptr, 0, 0, 0, 0, stats_ptr, slot, CZ, g0_ptr, be0_ptr, inv_m,
                                w0_ptr, w0_so, w0_si, 0, 0, ci, ci_ok,
                                1, True, 0, False, False, RELU, DT, ACC, BK, PREC)
                acc = _conv_acc(acc, n64, h, w, ok, H, W, C1, dz_ptr + z1, HW * CZ, W * CZ, CZ, 1,
                                dz_ptr, 0, 0, 0, 0, stats_ptr, slot, CZ, g0_ptr, be0_ptr, inv_m,
                                w1_ptr, w1_so, w1_si, 0, 0, ci, ci_ok,
                                1, True, 0, False, False, RELU, DT, ACC, BK, PREC)
                acc = _conv_acc(acc, n64, h, w, ok, H, W, C3, dz_ptr + z3, HW * CZ, W * CZ, CZ, 1,
                                dz_ptr, 0, 0, 0, 0, stats_ptr, slot, CZ, g0_ptr, be0_ptr, inv_m,
                                w3_ptr, w3_so, w3_si, 0, 0, ci, ci_ok,
                                1, True, 0, False, False, RELU, DT, ACC, BK, PREC)
                acc = _pool_dx(acc, dp_ptr, arg_ptr, CIN, n64, h, w, ok, H, W, ci, ci_ok)
                dx_ptrs = dx_ptr + (n64 * sdx_n + (h * sdx_h + w * sdx_w))[:, None] + (ci * sdx_c)[None, :]
                tl.store(dx_ptrs, acc.to(dx_ptr.dtype.element_ty), mask=ok[:, None] & ci_ok[None, :])
            else:
                j = job - n_dx
                if j < j1:
                    _wgrad_job(j, P, H, W, CZ, p_split, C1, CIN, dz_ptr + z1,
                               x_ptr, sx_n, sx_c, sx_h, sx_w, stats_ptr, g1_ptr, be1_ptr,
                               wpart_ptr + o1, wpart_ptr + WTOT + z1, LD,
                               1, 0, False, False, RELU, DT, ACC, BN, BK, PREC)
                else:
                    _wgrad_job(j - j1, P, H, W, CZ, p_split, C3, CIN, dz_ptr + z3,
                               x_ptr, sx_n, sx_c, sx_h, sx_w, stats_ptr, g3_ptr, be3_ptr,
                               wpart_ptr + o3, wpart_ptr + WTOT + z3, LD,
                               1, 0, False, False, RELU, DT, ACC, BN, BK, PREC)


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _bwd_finish_kernel(
    wpart_ptr,  # [n_split, LD] weight and bias gradient partials
    qb_ptr, qg_ptr,  # [n_pt, CZ] partial sum(du), sum(du * xhat)
    gw_ptr,  # [LD] out: the six weight gradients then the six bias gradients (x's dtype)
    gb_ptr,  # [2, CZ] out: dgamma, dbeta (BatchNorm parameters' dtype)
    LD, CZ, n_split, n_pt, n_w,
    ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_T: tl.constexpr,
):
    job = tl.program_id(0)
    if job < n_w:
        e = job * BLOCK_E + tl.arange(0, BLOCK_E)
        e_ok = e < LD
        tl.store(gw_ptr + e, _sum_rows(wpart_ptr, n_split, LD, e, e_ok, BLOCK_T, ACC).to(gw_ptr.dtype.element_ty),
                 mask=e_ok)
    else:
        c = (job - n_w) * BLOCK_E + tl.arange(0, BLOCK_E)
        c_ok = c < CZ
        tl.store(gb_ptr + c, _sum_rows(qg_ptr, n_pt, CZ, c, c_ok, BLOCK_T, ACC).to(gb_ptr.dtype.element_ty),
                 mask=c_ok)
        tl.store(gb_ptr + CZ + c, _sum_rows(qb_ptr, n_pt, CZ, c, c_ok, BLOCK_T, ACC).to(gb_ptr.dtype.element_ty),
                 mask=c_ok)


# ------------------------------------------------------------------------------------------ launchers

_TL = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32, torch.float64: tl.float64}


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _programs(device: torch.device) -> int:
    """Persistent programs of the conv launches (each finishes the statistics it needs once):
    two per SM on a GPU; 2 in the interpreter (runs programs one after another; 2 exercise the
    persistent loop and the private slots)."""
    if device.type == "cuda":
        return 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return 2


def _halves(v: float) -> tuple[float, float]:
    """``v`` as two fp32 values whose sum is ``v`` to ~2^-48 relative (Triton passes floats as fp32)."""
    hi = struct.unpack("f", struct.pack("f", v))[0]
    return hi, v - hi


def _bits(flags) -> int:
    return sum(1 << i for i, f in enumerate(flags) if f)


def _vec(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A 1-D parameter with unit stride (the kernels index them densely)."""
    return t if t is None or t.stride(0) == 1 else t.contiguous()


def _call(kernel, grid, named: dict, **consts):
    """Launch ``kernel`` with its runtime arguments taken by name from ``named`` (in its order)."""
    fn = getattr(kernel, "fn", kernel)
    names = [n for n in inspect.signature(fn).parameters if n not in consts]
    return _launch(kernel, grid, *[named[n] for n in names], **consts)


def _common_args(x, weights, gammas, betas, dummy) -> dict:
    """Runtime arguments shared by the launches: sizes, x's strides, weights and BatchNorm parameters."""
    N, cin, H, W = x.shape
    a = dict(x_ptr=x, N=N, H=H, W=W, CIN=cin)
    a.update(zip(("sx_n", "sx_c", "sx_h", "sx_w"), x.stride()))
    for i, (w, g, be) in enumerate(zip(weights, gammas, betas)):
        a[f"C{i}"] = w.shape[0]
        a[f"w{i}_ptr"] = w
        a[f"w{i}_so"], a[f"w{i}_si"], a[f"w{i}_sh"], a[f"w{i}_sw"] = w.stride()
        a[f"g{i}_ptr"] = g if g is not None else dummy
        a[f"be{i}_ptr"] = be if be is not None else dummy
    return a


def bn_training_forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[Optional[torch.Tensor]],
    running_means: Optional[Sequence[torch.Tensor]],
    running_vars: Optional[Sequence[torch.Tensor]],
    gammas: Sequence[Optional[torch.Tensor]],
    betas: Sequence[Optional[torch.Tensor]],
    momentum: Sequence[float],
    eps: Sequence[float],
    kernel_sizes: tuple[int, int],
    activation: Optional[str],
):
    """The three forward launches on checked arguments (``batchnorm.check_batch_norm_args``).

    Args: as :func:`fused_inception_bn_training`; x has ``N*H*W >= 1`` pixels.

    Returns:
        ``(y, Z, stats)``: y ``[N, Cout, H, W]`` (x's dtype, channels_last when x is); ``Z``
        ``[N*H*W, CZ]`` the pre-BatchNorm conv outputs and ``stats`` ``[2, CZ]`` the batch mean
        and ``1/sqrt(var + eps)`` (accumulator dtype), kept for the backward. The running
        statistics are updated in place.

    Raises:
        ValueError: a tensor too large for the kernels' int32 per-image offsets.
    """
    N, cin, H, W = x.shape
    P = N * H * W
    ch = [w.shape[0] for w in weights]
    CZ = sum(ch)
    cy = ch[0] + ch[2] + ch[4] + ch[5]
    if max(cin, CZ) * H * W >= 2**31 or P >= 2**31:
        raise ValueError(f"x of shape {tuple(x.shape)} is too large: one image must have < 2^31 elements "
                         f"(of x and of the {CZ} conv outputs) and N*H*W < 2^31 pixels")
    cfg = bn_training_tiles(x.dtype, target_of(x.device))
    bm, bn = cfg["BM"], cfg["BN"]
    acc = _acc_dtype(x.dtype)
    dev = x.device
    n_pt = triton.cdiv(P, bm)
    y = torch.empty((N, cy, H, W), device=dev, dtype=x.dtype, memory_format=output_memory_format(x))
    Z = torch.empty((P, CZ), device=dev, dtype=acc)
    ps = torch.empty((n_pt, CZ), device=dev, dtype=acc)
    pm = torch.empty((n_pt, CZ), device=dev, dtype=acc)
    stats = torch.empty((2, CZ), device=dev, dtype=acc)
    programs = _programs(dev)
    slot = torch.empty((programs, 2, CZ), device=dev, dtype=acc)
    a = _common_args(x, weights, gammas, betas, Z)
    for i, b in enumerate(biases):
        a[f"b{i}_ptr"] = b if b is not None else Z
    run = running_means is not None
    for i in range(6):
        a[f"rm{i}_ptr"] = running_means[i] if run else Z
        a[f"rv{i}_ptr"] = running_vars[i] if run else Z
        a[f"eps{i}_hi"], a[f"eps{i}_lo"] = _halves(eps[i])
        a[f"mom{i}_hi"], a[f"mom{i}_lo"] = _halves(momentum[i])
    a.update(z_ptr=Z, ps_ptr=ps, pm_ptr=pm, slot_ptr=slot, stats_ptr=stats, y_ptr=y, n_pt=n_pt)
    a.update(zip(("sy_n", "sy_c", "sy_h", "sy_w"), y.stride()))
    relu = activation == "relu"
    flags = dict(HAS_G=_bits(g is not None for g in gammas), HAS_BE=_bits(b is not None for b in betas))
    tiles = [triton.cdiv(c, bn) for c in ch]
    conv_consts = dict(
        K3=kernel_sizes[0], K5=kernel_sizes[1], RELU=relu, HAS_B=_bits(b is not None for b in biases), **flags,
        DT=_TL[x.dtype], ACC=_TL[acc], BM=bm, BN=bn, BK=cfg["BK"], BLOCK_T=cfg["BLOCK_T"],
        PREC=dot_precision(x.dtype, dev), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    guard = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        n_jobs = n_pt * (tiles[0] + tiles[1] + tiles[3] + tiles[5])
        _call(_fwd_conv_kernel, (min(n_jobs, programs),), dict(a, n_jobs=n_jobs), STAGE=1, **conv_consts)
        n_jobs = n_pt * (tiles[2] + tiles[4])
        _call(_fwd_conv_kernel, (min(n_jobs, programs),), dict(a, n_jobs=n_jobs), STAGE=2, **conv_consts)
        # pixel groups per channel tile: enough programs to fill the GPU, each finishing its
        # channels' statistics once (1 group in the interpreter)
        groups = max(1, min(n_pt, triton.cdiv(programs, sum(tiles)) if dev.type == "cuda" else 1))
        _call(_fwd_norm_kernel, (sum(tiles), groups), dict(a, groups=groups),
              HAS_RUN=run, RELU=relu, ACC=_TL[acc], BM=bm, BN=bn, BLOCK_T=cfg["BLOCK_T"], **flags,
              num_warps=cfg["num_warps"])
    return y, Z, stats


def _splits(P: int, block: int) -> tuple[int, int]:
    """``(pixels per split, splits)`` of the weight-gradient reduction: splits of at least
    ``_MIN_PIXELS_PER_SPLIT`` pixels (a multiple of ``block``), at most ``_MAX_SPLITS``."""
    n = max(1, min(_MAX_SPLITS, P // max(1, _MIN_PIXELS_PER_SPLIT)))
    per = triton.cdiv(triton.cdiv(P, n), block) * block
    return per, triton.cdiv(P, per)


def bn_training_backward(dy, x, weights, gammas, betas, Z, stats, kernel_sizes, activation, bn_dtype):
    """The five backward launches.

    Args:
        dy: ``[N, Cout, H, W]`` gradient of y, any strides.
        x, weights, gammas, betas, kernel_sizes, activation: as for the forward.
        Z, stats: what :func:`bn_training_forward` returned.
        bn_dtype: dtype of the BatchNorm parameters' gradients.

    Returns:
        ``(dx, dweights, dbiases, dgammas, dbetas)``: dx like x; six of each other gradient
        (views of two flat buffers).
    """
    N, cin, H, W = x.shape
    P = N * H * W
    ch = [w.shape[0] for w in weights]
    CZ = sum(ch)
    k3, k5 = kernel_sizes
    cfg = bn_training_tiles(x.dtype, target_of(x.device))
    bm, bn, bk = cfg["BM"], cfg["BN"], cfg["BK"]
    acc = _acc_dtype(x.dtype)
    dev = x.device
    n_pt = triton.cdiv(P, bm)
    programs = _programs(dev)
    kk = [1, 1, k3 * k3, 1, k5 * k5, 1]
    cins = [cin, cin, ch[1], cin, ch[3], cin]
    numel = [c * ci * k for c, ci, k in zip(ch, cins, kk)]
    w_off = [sum(numel[:i]) for i in range(6)]
    wtot = sum(numel)
    z_off = [sum(ch[:i]) for i in range(6)]
    p_split, n_split = _splits(P, bk)
    qb = torch.empty((n_pt, CZ), device=dev, dtype=acc)
    qg = torch.empty((n_pt, CZ), device=dev, dtype=acc)
    slot = torch.empty((programs, 2, CZ), device=dev, dtype=acc)
    dz = torch.empty((P, CZ), device=dev, dtype=acc)
    da = torch.empty((P, ch[1] + ch[3]), device=dev, dtype=acc)
    ar = torch.empty((P, ch[1] + ch[3]), device=dev, dtype=x.dtype)
    dp = torch.empty((P, cin), device=dev, dtype=acc)
    arg = torch.empty((P, cin), device=dev, dtype=torch.int8)
    dx = torch.empty_like(x)
    wpart = torch.empty((n_split, wtot + CZ), device=dev, dtype=acc)
    gw = torch.empty(wtot + CZ, device=dev, dtype=x.dtype)
    gb = torch.empty((2, CZ), device=dev, dtype=bn_dtype)
    a = _common_args(x, weights, gammas, betas, Z)
    a.update(dy_ptr=dy, z_ptr=Z, stats_ptr=stats, qb_ptr=qb, qg_ptr=qg, slot_ptr=slot, dz_ptr=dz, da_ptr=da, ar_ptr=ar,
             dp_ptr=dp, arg_ptr=arg,
             dx_ptr=dx, wpart_ptr=wpart, gw_ptr=gw, gb_ptr=gb, n_pt=n_pt, p_split=p_split, n_split=n_split,
             LD=wtot + CZ, CZ=CZ)
    a.update(zip(("d_n", "d_c", "d_h", "d_w"), dy.stride()))
    a.update(zip(("sdx_n", "sdx_c", "sdx_h", "sdx_w"), dx.stride()))
    relu = activation == "relu"
    flags = dict(HAS_G=_bits(g is not None for g in gammas), HAS_BE=_bits(b is not None for b in betas))
    t = [triton.cdiv(c, bn) for c in ch]
    tcin = triton.cdiv(cin, bn)
    wjobs = [n_split * t[i] * triton.cdiv(cins[i] * kk[i], bn) for i in range(6)]
    common = dict(RELU=relu, ACC=_TL[acc], BM=bm, BN=bn, **flags, num_warps=cfg["num_warps"])
    grads = dict(K3=k3, K5=k5, DT=_TL[x.dtype], BK=bk, BLOCK_T=cfg["BLOCK_T"], PREC=dot_precision(x.dtype, dev),
                 num_stages=cfg["num_stages"], **common)
    guard = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        _call(_bwd_stats_kernel, (n_pt * (t[0] + t[2] + t[4] + t[5]),), a, **common)
        n_jobs = n_pt * (t[0] + t[2] + t[4] + t[5]) + 2 * n_pt * (t[1] + t[3]) + n_pt * tcin
        _call(_bwd_grads_kernel, (min(n_jobs, programs),), dict(a, n_jobs=n_jobs), STAGE=1, **grads)
        n_jobs = n_pt * (t[1] + t[3]) + wjobs[0] + wjobs[2] + wjobs[4] + wjobs[5]
        _call(_bwd_grads_kernel, (min(n_jobs, programs),), dict(a, n_jobs=n_jobs), STAGE=2, **grads)
        n_jobs = n_pt * tcin + wjobs[1] + wjobs[3]
        _call(_bwd_grads_kernel, (min(n_jobs, programs),), dict(a, n_jobs=n_jobs), STAGE=3, **grads)
        be = cfg["BLOCK_E"]
        n_w = triton.cdiv(wtot + CZ, be)
        _call(_bwd_finish_kernel, (n_w + triton.cdiv(CZ, be),), dict(a, n_w=n_w),
              ACC=_TL[acc], BLOCK_E=be, BLOCK_T=cfg["BLOCK_T"], num_warps=cfg["num_warps"])
    dws = [gw[w_off[i]:w_off[i] + numel[i]].view(weights[i].shape) for i in range(6)]
    dbs = [gw[wtot + z_off[i]:wtot + z_off[i] + ch[i]] for i in range(6)]
    dgs = [gb[0, z_off[i]:z_off[i] + ch[i]] for i in range(6)]
    dbes = [gb[1, z_off[i]:z_off[i] + ch[i]] for i in range(6)]
    return dx, dws, dbs, dgs, dbes


# ------------------------------------------------------------------------------------------ autograd


class _FusedInceptionBNTraining(torch.autograd.Function):
    """Forward: :func:`bn_training_forward` (3 launches); backward: :func:`bn_training_backward`
    (5 launches). Saves x, ``Z``, ``stats`` and the parameters."""

    @staticmethod
    def forward(ctx, x, static, *params):
        running_means, running_vars, momentum, eps, kernel_sizes, activation = static
        weights, biases, gammas, betas = params[0:6], params[6:12], params[12:18], params[18:24]
        y, Z, stats = bn_training_forward(x, weights, biases, running_means, running_vars, gammas, betas,
                                          momentum, eps, kernel_sizes, activation)
        ctx.save_for_backward(x, Z, stats, *weights, *gammas, *betas)
        ctx.kernel_sizes, ctx.activation = kernel_sizes, activation
        ctx.has_bias = [b is not None for b in biases]
        ctx.bn_dtype = next((t.dtype for t in (*gammas, *betas) if t is not None), Z.dtype)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, Z, stats, *params = ctx.saved_tensors
        weights, gammas, betas = params[0:6], params[6:12], params[12:18]
        dx, dws, dbs, dgs, dbes = bn_training_backward(dy, x, weights, gammas, betas, Z, stats, ctx.kernel_sizes,
                                                       ctx.activation, ctx.bn_dtype)
        dbs = [d if has else None for d, has in zip(dbs, ctx.has_bias)]
        dgs = [d if g is not None else None for d, g in zip(dgs, gammas)]
        dbes = [d if b is not None else None for d, b in zip(dbes, betas)]
        return (dx, None, *dws, *dbs, *dgs, *dbes)


def fused_inception_bn_training(
    x: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    biases: tuple[Optional[torch.Tensor], ...],
    running_means: Optional[tuple[torch.Tensor, ...]],
    running_vars: Optional[tuple[torch.Tensor, ...]],
    bn_weights: tuple[Optional[torch.Tensor], ...],
    bn_biases: tuple[Optional[torch.Tensor], ...],
    momentum: tuple[float, ...],
    eps: tuple[float, ...],
    kernel_sizes: tuple[int, int],
    activation: Optional[str],
) -> torch.Tensor:
    """The Inception block with BatchNorm in training mode on the fused Triton kernels
    (``batchnorm._TRAINING_KERNELS["triton"]``; arguments checked by ``fused_inception_bn``).

    Args:
        x: ``[N, Cin, H, W]``, CUDA (or CPU under the interpreter), any strides; ``N*H*W != 1``.
        weights: ``(w1, w3r, w3, w5r, w5, wp)`` in x's dtype.
        biases: six ``[Cout_i]`` or None.
        running_means, running_vars: six ``[Cout_i]`` each, updated in place like
            ``F.batch_norm(training=True)``; or None.
        bn_weights, bn_biases: six ``[Cout_i]`` or None each.
        momentum, eps: six floats.
        kernel_sizes: ``(K3, K5)``; activation: ``"relu"`` or None.

    Returns:
        y ``[N, Cout, H, W]`` in x's dtype (channels_last when x is), differentiable (once: no
        double backward, the backward is ``once_differentiable``) with respect to x, the weights,
        the conv biases and the BatchNorm weights and biases.
    """
    if x.shape[0] * x.shape[2] * x.shape[3] == 0:
        # nothing to normalize (F.batch_norm leaves the running statistics alone): the reference path
        from .. import reference

        return reference.inception_bn(x, weights, running_means, running_vars, bn_weights, bn_biases, training=True,
                                      momentum=momentum, eps=eps, biases=biases, kernel_sizes=kernel_sizes,
                                      activation=activation)
    runs = None
    if running_means is not None:
        runs = [_vec(t) for t in (*running_means, *running_vars)]
    static = (None if runs is None else tuple(runs[:6]), None if runs is None else tuple(runs[6:]),
              tuple(momentum), tuple(eps), tuple(kernel_sizes), activation)
    params = (*weights, *(_vec(b) for b in biases), *(_vec(g) for g in bn_weights), *(_vec(b) for b in bn_biases))
    y = _FusedInceptionBNTraining.apply(x, static, *params)
    if runs is not None:  # running statistics that were not unit-stride were updated in a copy
        for new, old in zip(runs, (*running_means, *running_vars)):
            if new is not old:
                old.copy_(new)
    return y


# ------------------------------------------------------------------------------------------ ahead of time


def launch_plan(channels=(192, 64, 96, 128, 16, 32, 32), *, dtype: str = "float16", batch: int = 256, hw: int = 28,
                kernel_sizes=(3, 5), activation: Optional[str] = "relu", bias: bool = False,
                channels_last: bool = True) -> list:
    """The launches of one forward and one backward, recorded on 'meta' tensors (nothing runs):
    exactly what the launchers pick for a GPU, for :func:`inception_kernels.tools.aot.compile_launch`.

    Args:
        channels: ``(Cin, c1, c3r, c3, c5r, c5, cp)`` (default: GoogLeNet's 3a).
        dtype: torch dtype name; batch, hw: input size; kernel_sizes, activation, bias: the block;
        channels_last: x's memory format. BatchNorm is affine with running statistics (fp32 for 16-bit x).

    Returns:
        ``[(kernel, grid, args, kwargs)]``: 3 forward launches, then 5 backward.
    """
    from ._launches import _record_launches

    dt = getattr(torch, dtype)
    bn_dt = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    cin, c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    shapes = [(c1, cin, 1, 1), (c3r, cin, 1, 1), (c3, c3r, k3, k3), (c5r, cin, 1, 1), (c5, c5r, k5, k5),
              (cp, cin, 1, 1)]
    meta = dict(device="meta")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty((batch, cin, hw, hw), dtype=dt, memory_format=fmt, **meta)
    weights = [torch.empty(s, dtype=dt, **meta) for s in shapes]
    biases = [torch.empty(s[0], dtype=dt, **meta) if bias else None for s in shapes]
    vecs = [[torch.empty(s[0], dtype=bn_dt, **meta) for s in shapes] for _ in range(4)]
    with _record_launches() as launches:
        y, Z, stats = bn_training_forward(x, weights, biases, vecs[0], vecs[1], vecs[2], vecs[3], (0.1,) * 6,
                                          (1e-3,) * 6, kernel_sizes, activation)
        bn_training_backward(torch.empty_like(y), x, weights, vecs[2], vecs[3], Z, stats, kernel_sizes, activation,
                             bn_dt)
    return launches
