"""Triton forward of a whole Inception module (docs/design.md §3-4), in one launch.

Semantics (``act`` = ReLU or identity)::

    y1 = act(conv1x1(x, w1) + b1)
    r3 = act(conv1x1(x, w3r) + b3r);  y3 = act(convK3(r3, w3, pad=K3//2) + b3)
    r5 = act(conv1x1(x, w5r) + b5r);  y5 = act(convK5(r5, w5, pad=K5//2) + b5)
    p  = maxpool3x3(x, stride 1, pad 1 with -inf);  yp = act(conv1x1(p, wp) + bp)
    y  = cat([y1, y3, y5, yp], dim=1)      # never materialized: each branch writes its slice

Every product is a tensor-core GEMM over *flat pixel* rows (``_common``), in four phases:

* **horizontal**: the three 1x1 convs that read ``x`` are one GEMM
  ``[pixels, Cin] x [Cin, c1 + c3r + c5r]`` over the virtual concatenation of ``w1, w3r, w5r``
  (read in place, never copied); its epilogue writes ``y1`` into ``y`` and ``r3``/``r5`` into the
  reduce buffer;
* **pool**: ``[pixels, Cin] x [Cin, cp]`` whose A operand is the 3x3 max-pool of ``x``, built
  while loading, once per tile (``cp <= 128`` is one N tile);
* **KxK** (twice): an implicit GEMM ``[pixels, K*K*c_r] x [K*K*c_r, c_out]`` whose reduction is
  one flat loop over (tap, channel) of the reduce buffer.

N tiles are sized to the channels (``_split_n``: 128-wide tiles, then 64/32/16), so padding
costs little; every K loop is software-pipelined (``num_stages`` operand stages in flight).

Schedules (``_inception_forward(..., schedule=...)``, chosen per layer by ``_plan``):

* ``"one_launch"``: ONE launch of :func:`_inception_fwd_kernel` (``STAGE=0``). Program ``i``
  owns the flat pixel range ``[i * chunk, (i + 1) * chunk)`` and walks it in steps of ``BM``
  pixels. A KxK conv of a step needs the reduce output of the step's pixels plus a halo of
  ``HALO = (K5 // 2) * W + K5 // 2`` flat pixels on each side; the program keeps it in a
  private ring buffer of ``R`` rows (global memory, L2-resident, sized by programs, not tiles).
  Each step runs the horizontal GEMM ``HALO`` pixels *ahead* (rows ``[s + HALO, s + HALO + BM)``),
  so every reduce row is computed once; only the first ``2 * HALO`` rows of a range are a
  warm-up that the previous range also computes. ``tl.debug_barrier()`` orders the ring's
  writes and reads within the program.
* ``"two_launch"``: launch 1 (``STAGE=1``) runs the horizontal and pool GEMMs over pixel tiles,
  writing ``r3``/``r5`` to global buffers; launch 2 (``STAGE=2``) runs both KxK GEMMs from them.

Launcher (private)::

    _inception_forward(x, weights, biases, kernel_sizes, activation, *,
                       schedule="auto", save_reduce=False) -> (y, r3, r5)

``y`` has x's dtype and memory format (channels_last when x is channels_last, else NCHW
contiguous). With ``save_reduce=True`` (training) ``r3`` ``[N, c3r, H, W]`` and ``r5``
``[N, c5r, H, W]`` are returned post-activation, stored channels_last with the channel stride
rounded up to a multiple of 16 (``_reduce_buffers``); else ``None``. Accumulation is fp32 (fp64
for fp64 inputs); fp16/bf16 run on tensor cores; fp32 on CUDA follows
``torch.backends.cudnn.allow_tf32``.

Specialization: channel counts, kernel sizes, ``H``, ``W`` and the weights' strides are
compile-time constants (one compiled kernel per layer and weight layout); the batch is a
runtime argument. channels_last activations and channels_last KxK weights (what
:class:`~inception_kernels.FusedInception` holds) are the fast path: every operand load is a
16-byte vector and goes through ``cp.async``. Any other strides are correct, only slower.

Design limits: one image (``C*H*W`` of x, y, r) must have < 2^31 elements (batch offsets are
int64); ``N*H*W < 2^31`` pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from .._checks import OP_SCHEDULES
from .._layout import output_memory_format
from ._common import _act, _bias_acc, _pixel_rows, _pool_tile, _tap_of, _tap_ok
from ._config import (Target, dot_precision, gemm_tiles, machine_for, pixel_row_stride, target_of, tma_rows_ok,
                      tma_scratch)
from ._launches import _launch

__all__ = ["_inception_forward", "_plan", "SCHEDULES", "ForwardPlan"]

SCHEDULES = tuple(s for s in OP_SCHEDULES["triton"] if s != "auto")  # one list: _checks.OP_SCHEDULES


# --------------------------------------------------------------------------------------------
# Device code: one N tile of a GEMM, all N tiles of one conv, the kernel
#
# A tile gets only the first flat pixel ``p0`` of its ``BM`` rows and rebuilds everything per
# row (coordinates, offsets, masks, its program's pixel range and ring) itself: a few integer
# ops per row are cheaper than keeping per-row state live across phases, and registers are
# what limits the one-launch kernel to two programs per SM.
# --------------------------------------------------------------------------------------------


@triton.jit
def _owned(p, NHW, chunk, CHUNKED: tl.constexpr):
    """Rows this program owns: its pixel range ``[pid * chunk, (pid + 1) * chunk)`` (one-launch),
    else every valid pixel."""
    if CHUNKED:
        lo = tl.program_id(0) * chunk
        return (p >= lo) & (p < tl.minimum(lo + chunk, NHW))
    return (p >= 0) & (p < NHW)


@triton.jit
def _kxk_rows(p0, NHW, chunk, src_ptr, sy, RING: tl.constexpr, RS: tl.constexpr, CHUNKED: tl.constexpr,
              H: tl.constexpr, W: tl.constexpr, BM: tl.constexpr):
    """The rows of a KxK tile, shared by ``_kxk_tile`` and ``_kxk_taps_inside``: pixels
    ``p = p0 + [0, BM)``, y's row offsets (strides ``sy``), ``(h, w)``, the owned mask, and the
    reduce source -- this program's ring (``RING > 0``) or the flat buffer."""
    p = p0 + tl.arange(0, BM)
    y_row, h, w, _ok = _pixel_rows(p, NHW, sy[0], sy[2], sy[3], H, W)
    own = _owned(p, NHW, chunk, CHUNKED)
    if RING > 0:
        src = src_ptr + tl.program_id(0).to(tl.int64) * (RING * RS)
    else:
        src = src_ptr
    return p, y_row, h, w, own, src


@triton.jit
def _src_row(q, RING: tl.constexpr, RS: tl.constexpr):
    """Element offset of reduce row ``q`` (flat pixel) in the source: row ``q mod RING`` of a
    ring, else row ``q`` of the flat buffer (int64)."""
    if RING > 0:
        row = (q & (RING - 1)) * RS
    else:
        row = q.to(tl.int64) * RS
    return row


@triton.jit(noinline=True)
def _conv1x1_tile(
    n0, p0, NHW, chunk,  # output columns from n0; pixel rows p0 + [0, BM); the program's pixel range
    x_ptr, sx,  # x [N, CIN, H, W], strides (n, c, h, w)
    w_ptr, b_ptr,  # weight [CO, CIN, 1, 1] by compile-time strides; bias [CO] (dummy without HAS_B)
    d_ptr, sd,  # destination: y-like by strides sd (n, c, h, w), or DEST "flat"/"ring" rows
    s_ptr,  # SAVE: a second destination [N*H*W, S_CS] (channel stride 1), owned rows
    CIN: tl.constexpr, CO: tl.constexpr, W_SO: tl.constexpr, W_SI: tl.constexpr,
    HAS_B: tl.constexpr, RELU: tl.constexpr, POOL: tl.constexpr, CHUNKED: tl.constexpr,
    DEST: tl.constexpr, D_RS: tl.constexpr, RING: tl.constexpr, SAVE: tl.constexpr, S_CS: tl.constexpr,
    H: tl.constexpr, W: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
    BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr, TMA: tl.constexpr,
):
    """Output columns ``[n0, n0 + BN)`` of ``act(A @ w^T + b)`` for ``BM`` pixel rows, where
    ``A`` is ``x`` or, with ``POOL``, its 3x3 max-pool built while loading (once per tile).

    ``TMA`` (sm_90, not ``POOL``; the launcher's ``tma_rows_ok`` rule): ``x`` is read as the
    2-D tensor of pixel rows ``[NHW, CIN]`` (row stride ``sx[3]``) and ``w`` as ``[CO, CIN]``
    (row stride ``W_SO``), both through tensor descriptors: ``[BM, BK]`` and ``[BN, BK]`` boxes,
    zero-filled outside the tensor (rows ``p < 0`` or ``>= NHW`` of the warm-up and the last
    tile, channels ``>= CIN``), exactly the masked loads' zeros. Only for two K steps or more
    (``CIN > BK``): one step has nothing to overlap and keeps the pointer loads.

    ``DEST``: ``"y"`` -- owned rows, by the strides ``sd``; ``"flat"`` -- owned rows at
    ``d_ptr + p * D_RS``; ``"ring"`` -- every valid row at row ``p mod RING`` of this program's
    ring (``d_ptr`` is the ring buffer of all programs, ``D_RS`` its row stride). ``SAVE`` also
    stores owned rows to ``s_ptr + p * S_CS``.
    """
    p = p0 + tl.arange(0, BM)
    x_row, h, w, ok = _pixel_rows(p, NHW, sx[0], sx[2], sx[3], H, W)
    n = n0 + tl.arange(0, BN)
    n_ok = n < CO
    acc = _bias_acc(b_ptr + n, n_ok & HAS_B, BM, BN, ACC)
    # POOL: one stage -- pipelining the nine shifted loads would stage nine copies of the
    # tile in shared memory; they hit L1/L2 (the rows the horizontal GEMM just read)
    if TMA and not POOL and CIN > BK:
        x_desc = tl.make_tensor_descriptor(x_ptr, shape=[NHW, CIN], strides=[sx[3], 1], block_shape=[BM, BK])
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[CO, CIN], strides=[W_SO, 1], block_shape=[BN, BK])
        for k0 in tl.range(0, CIN, BK, num_stages=NSTAGE):
            a = x_desc.load([p0, k0])
            b = w_desc.load([n0, k0])
            acc = tl.dot(a, b.T, acc, input_precision=PREC, out_dtype=acc.dtype)
    else:
        for k0 in tl.range(0, CIN, BK, num_stages=1 if POOL else NSTAGE):
            ci = k0 + tl.arange(0, BK)
            ci_ok = ci < CIN
            if POOL:
                a = _pool_tile(x_ptr, x_row, h, w, ok, ci, ci_ok, sx[1], sx[2], sx[3], H, W)
            else:
                a = tl.load(x_ptr + x_row[:, None] + (ci * sx[1])[None, :], mask=ok[:, None] & ci_ok[None, :],
                            other=0.0)
            b = tl.load(w_ptr + (n * W_SO)[None, :] + (ci * W_SI)[:, None], mask=ci_ok[:, None] & n_ok[None, :],
                        other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)
    out = _act(acc, RELU).to(d_ptr.dtype.element_ty)
    if DEST == "ring":
        ring = d_ptr + tl.program_id(0).to(tl.int64) * (RING * D_RS)
        tl.store(ring + ((p & (RING - 1)) * D_RS)[:, None] + n[None, :], out, mask=ok[:, None] & n_ok[None, :])
    else:
        own = _owned(p, NHW, chunk, CHUNKED)
        if DEST == "flat":
            d_ptrs = d_ptr + (p.to(tl.int64) * D_RS)[:, None] + n[None, :]
        else:
            d_row, _h, _w, _ok = _pixel_rows(p, NHW, sd[0], sd[2], sd[3], H, W)
            d_ptrs = d_ptr + d_row[:, None] + (n * sd[1])[None, :]
        tl.store(d_ptrs, out, mask=own[:, None] & n_ok[None, :])
    if SAVE:
        own = _owned(p, NHW, chunk, CHUNKED)
        tl.store(s_ptr + (p.to(tl.int64) * S_CS)[:, None] + n[None, :], out, mask=own[:, None] & n_ok[None, :])


@triton.jit
def _conv1x1(
    p0, NHW, chunk, x_ptr, sx, w_ptr, b_ptr, d_ptr, sd, s_ptr,
    CIN: tl.constexpr, CO: tl.constexpr, W_S: tl.constexpr,
    HAS_B: tl.constexpr, RELU: tl.constexpr, POOL: tl.constexpr, CHUNKED: tl.constexpr,
    DEST: tl.constexpr, D_RS: tl.constexpr, RING: tl.constexpr, SAVE: tl.constexpr, S_CS: tl.constexpr,
    H: tl.constexpr, W: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr,
    T: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr,
    TMA: tl.constexpr,
):
    """Every N tile of one 1x1 conv for the pixel rows ``p0 + [0, BM)``: ``T`` from ``_split_n`` --
    ``T[0]`` tiles of ``BN`` columns, then up to three narrower tiles ``(T[1], T[2])``,
    ``(T[3], T[4])``, ``(T[5], T[6])`` (offset, width; width 0: none)."""
    for t in tl.range(T[0], disable_licm=True):
        _conv1x1_tile(t * BN, p0, NHW, chunk, x_ptr, sx, w_ptr, b_ptr, d_ptr, sd, s_ptr, CIN, CO, W_S[0], W_S[1],
                      HAS_B, RELU, POOL, CHUNKED, DEST, D_RS, RING, SAVE, S_CS, H, W, ACC, BM, BN, BK, NSTAGE,
                      PREC, TMA)
    for i in tl.static_range(3):
        if T[2 + 2 * i] > 0:
            _conv1x1_tile(T[1 + 2 * i], p0, NHW, chunk, x_ptr, sx, w_ptr, b_ptr, d_ptr, sd, s_ptr, CIN, CO,
                          W_S[0], W_S[1], HAS_B, RELU, POOL, CHUNKED, DEST, D_RS, RING, SAVE, S_CS, H, W, ACC, BM,
                          T[2 + 2 * i], BK, NSTAGE, PREC, TMA)


@triton.jit(noinline=True)
def _kxk_tile(
    n0, p0, NHW, chunk,
    src_ptr,  # reduce rows: a flat buffer (row q at q * RS), or with RING the rings of all programs
    wk_ptr, bk_ptr,  # [CO, CR, KS, KS] by compile-time strides; [CO]
    y_ptr, sy, OY: tl.constexpr,  # y by strides (n, c, h, w); this branch's first channel
    CR: tl.constexpr, CO: tl.constexpr, KS: tl.constexpr, WK_S: tl.constexpr,
    RING: tl.constexpr, RS: tl.constexpr, CHUNKED: tl.constexpr,
    HAS_B: tl.constexpr, RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    NSTAGE: tl.constexpr, PREC: tl.constexpr,
):
    """Columns ``[n0, n0 + BN)`` of ``y_k = act(convKS(r, wk) + bk)`` for the owned pixel rows of
    ``p0 + [0, BM)``: one flat loop over the ``KS*KS*CR`` (tap, channel) reduction; taps outside
    the image read zero. ``RING > 0``: the source is this program's ring (row ``q mod RING``)."""
    PAD: tl.constexpr = KS // 2
    KTOT: tl.constexpr = KS * KS * CR
    p, y_row, h, w, own, src = _kxk_rows(p0, NHW, chunk, src_ptr, sy, RING, RS, CHUNKED, H, W, BM)
    n = n0 + tl.arange(0, BN)
    n_ok = n < CO
    w_cl: tl.constexpr = WK_S[1] == 1 and WK_S[3] == CR and WK_S[2] == KS * CR  # [CO, KS, KS, CR] in memory
    acc = _bias_acc(bk_ptr + n, n_ok & HAS_B, BM, BN, ACC)
    for k0 in tl.range(0, KTOT, BK, num_stages=NSTAGE):
        k = k0 + tl.arange(0, BK)
        k_ok = k < KTOT
        c, kh, kw = _tap_of(k, CR, KS)
        dh = kh - PAD
        dw = kw - PAD
        a_ok = own[:, None] & k_ok[None, :] & _tap_ok(h[:, None], w[:, None], dh[None, :], dw[None, :], H, W)
        a = tl.load(src + _src_row(p[:, None] + (dh * W + dw)[None, :], RING, RS) + c[None, :], mask=a_ok,
                    other=0.0)
        if w_cl:
            b_off = k[:, None] + (n * WK_S[0])[None, :]
        else:
            b_off = (c * WK_S[1] + kh * WK_S[2] + kw * WK_S[3])[:, None] + (n * WK_S[0])[None, :]
        b = tl.load(wk_ptr + b_off, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)
    # A zero-padded tap times a non-finite weight is 0 * inf = NaN, where the convolution has no
    # term at all: a tile with a NaN is recomputed tap by tap over the taps inside the image
    # (bitwise the same NaN when the NaN is real). One reduction per tile; the rare path only
    # runs for non-finite weights or inputs.
    if tl.max(tl.where(acc != acc, 1, 0)) > 0:
        _kxk_taps_inside(n0, p0, NHW, chunk, src_ptr, wk_ptr, bk_ptr, y_ptr, sy, OY, CR, CO, KS, WK_S, RING, RS,
                         CHUNKED, HAS_B, RELU, H, W, ACC, BM, BN, BK, PREC)
    else:
        out = _act(acc, RELU).to(y_ptr.dtype.element_ty)
        tl.store(y_ptr + y_row[:, None] + ((OY + n) * sy[1])[None, :], out, mask=own[:, None] & n_ok[None, :])


@triton.jit
def _kxk_taps_inside(
    n0, p0, NHW, chunk, src_ptr, wk_ptr, bk_ptr, y_ptr, sy, OY: tl.constexpr,
    CR: tl.constexpr, CO: tl.constexpr, KS: tl.constexpr, WK_S: tl.constexpr,
    RING: tl.constexpr, RS: tl.constexpr, CHUNKED: tl.constexpr, HAS_B: tl.constexpr, RELU: tl.constexpr,
    H: tl.constexpr, W: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    PREC: tl.constexpr,
):
    """``_kxk_tile`` computed tap by tap, each tap added only to the rows whose tap reads inside
    the image (the convolution exactly, with no term for the zero padding), and stored."""
    PAD: tl.constexpr = KS // 2
    p, y_row, h, w, own, src = _kxk_rows(p0, NHW, chunk, src_ptr, sy, RING, RS, CHUNKED, H, W, BM)
    RBN: tl.constexpr = 16  # columns per pass: two small accumulators, well within the registers
    for j in range(BN // RBN):
        n = n0 + j * RBN + tl.arange(0, RBN)
        n_ok = n < CO
        acc = _bias_acc(bk_ptr + n, n_ok & HAS_B, BM, RBN, ACC)
        for t in range(KS * KS):
            dh = t // KS - PAD
            dw = t % KS - PAD
            inside = own & _tap_ok(h, w, dh, dw, H, W)
            row = _src_row(p + (dh * W + dw), RING, RS)
            part = tl.zeros((BM, RBN), ACC)
            for c0 in range(0, CR, BK):
                c = c0 + tl.arange(0, BK)
                c_ok = c < CR
                a = tl.load(src + row[:, None] + c[None, :], mask=inside[:, None] & c_ok[None, :], other=0.0)
                b = tl.load(wk_ptr + (c * WK_S[1] + (t // KS) * WK_S[2] + (t % KS) * WK_S[3])[:, None]
                            + (n * WK_S[0])[None, :], mask=c_ok[:, None] & n_ok[None, :], other=0.0)
                part = tl.dot(a, b, part, input_precision=PREC, out_dtype=part.dtype)
            acc = tl.where(inside[:, None], acc + part, acc)
        out = _act(acc, RELU).to(y_ptr.dtype.element_ty)
        tl.store(y_ptr + y_row[:, None] + ((OY + n) * sy[1])[None, :], out, mask=own[:, None] & n_ok[None, :])


@triton.jit
def _kxk(
    p0, NHW, chunk, src_ptr, wk_ptr, bk_ptr, y_ptr, sy, OY: tl.constexpr,
    CR: tl.constexpr, CO: tl.constexpr, KS: tl.constexpr, WK_S: tl.constexpr,
    RING: tl.constexpr, RS: tl.constexpr, CHUNKED: tl.constexpr,
    HAS_B: tl.constexpr, RELU: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
    ACC: tl.constexpr, BM: tl.constexpr, T: tl.constexpr, BN: tl.constexpr,
    BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr,
):
    """Every N tile of one KxK conv for the pixel rows ``p0 + [0, BM)``."""
    for t in tl.range(T[0], disable_licm=True):
        _kxk_tile(t * BN, p0, NHW, chunk, src_ptr, wk_ptr, bk_ptr, y_ptr, sy, OY, CR, CO, KS, WK_S, RING, RS,
                  CHUNKED, HAS_B, RELU, H, W, ACC, BM, BN, BK, NSTAGE, PREC)
    for i in tl.static_range(3):
        if T[2 + 2 * i] > 0:
            _kxk_tile(T[1 + 2 * i], p0, NHW, chunk, src_ptr, wk_ptr, bk_ptr, y_ptr, sy, OY, CR, CO, KS, WK_S, RING,
                      RS, CHUNKED, HAS_B, RELU, H, W, ACC, BM, T[2 + 2 * i], BK, NSTAGE, PREC)


@triton.jit
def _horizontal(
    p0, NHW, chunk, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, b1_ptr, b3r_ptr, b5r_ptr, y_ptr, sy,
    ring_ptr, r3_ptr, r5_ptr,
    CIN: tl.constexpr, C1: tl.constexpr, C3R: tl.constexpr, C5R: tl.constexpr,
    W1_S: tl.constexpr, W3R_S: tl.constexpr, W5R_S: tl.constexpr,
    HAS_B1: tl.constexpr, HAS_B3R: tl.constexpr, HAS_B5R: tl.constexpr, RELU: tl.constexpr,
    RING: tl.constexpr, SAVE_R: tl.constexpr, CS3: tl.constexpr, CS5: tl.constexpr,
    H: tl.constexpr, W: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr,
    T1: tl.constexpr, T3R: tl.constexpr, T5R: tl.constexpr, BN: tl.constexpr,
    BK: tl.constexpr, NSTAGE: tl.constexpr, PREC: tl.constexpr, TMA: tl.constexpr,
):
    """The horizontal GEMM ``x @ [w1 | w3r | w5r]^T`` for the pixel rows ``p0 + [0, BM)``,
    N-tiled at the branch boundaries (``T1``, ``T3R``, ``T5R``: ``_split_n`` of each), so that
    every tile has one destination and reads one weight in place; consecutive tiles reuse the
    same ``x`` rows from L1/L2. ``y1`` goes to ``y`` (owned rows). ``RING > 0`` (one-launch):
    ``r3``/``r5`` go to the program's ring (r5 at column ``CS3``) for every valid row and, with
    ``SAVE_R``, to the flat buffers ``r3``/``r5`` for owned rows; else straight to those buffers."""
    CHUNKED: tl.constexpr = RING > 0
    _conv1x1(p0, NHW, chunk, x_ptr, sx, w1_ptr, b1_ptr, y_ptr, sy, y_ptr, CIN, C1, W1_S, HAS_B1, RELU, False,
             CHUNKED, "y", 0, 0, False, 0, H, W, ACC, BM, T1, BN, BK, NSTAGE, PREC, TMA)
    if RING > 0:
        _conv1x1(p0, NHW, chunk, x_ptr, sx, w3r_ptr, b3r_ptr, ring_ptr, sy, r3_ptr, CIN, C3R, W3R_S, HAS_B3R, RELU,
                 False, True, "ring", CS3 + CS5, RING, SAVE_R, CS3, H, W, ACC, BM, T3R, BN, BK, NSTAGE, PREC, TMA)
        _conv1x1(p0, NHW, chunk, x_ptr, sx, w5r_ptr, b5r_ptr, ring_ptr + CS3, sy, r5_ptr, CIN, C5R, W5R_S, HAS_B5R,
                 RELU, False, True, "ring", CS3 + CS5, RING, SAVE_R, CS5, H, W, ACC, BM, T5R, BN, BK, NSTAGE, PREC, TMA)
    else:
        _conv1x1(p0, NHW, chunk, x_ptr, sx, w3r_ptr, b3r_ptr, r3_ptr, sy, r3_ptr, CIN, C3R, W3R_S, HAS_B3R, RELU,
                 False, False, "flat", CS3, 0, False, 0, H, W, ACC, BM, T3R, BN, BK, NSTAGE, PREC, TMA)
        _conv1x1(p0, NHW, chunk, x_ptr, sx, w5r_ptr, b5r_ptr, r5_ptr, sy, r5_ptr, CIN, C5R, W5R_S, HAS_B5R, RELU,
                 False, False, "flat", CS5, 0, False, 0, H, W, ACC, BM, T5R, BN, BK, NSTAGE, PREC, TMA)


#: Runtime integers (everything else that shapes the kernel is a compile-time constant).
_RUNTIME_INTS = ["NHW", "chunk"]


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _inception_fwd_kernel(
    x_ptr,  # [N, CIN, H, W] by strides sx
    w1_ptr,  # [C1, CIN, 1, 1] (every weight by compile-time strides)
    w3r_ptr,  # [C3R, CIN, 1, 1]
    w3_ptr,  # [C3, C3R, K3, K3]
    w5r_ptr,  # [C5R, CIN, 1, 1]
    w5_ptr,  # [C5, C5R, K5, K5]
    wp_ptr,  # [CP, CIN, 1, 1]
    b1_ptr,  # [C1] (a dummy pointer when HAS_B1 is False; likewise below)
    b3r_ptr,  # [C3R]
    b3_ptr,  # [C3]
    b5r_ptr,  # [C5R]
    b5_ptr,  # [C5]
    bp_ptr,  # [CP]
    y_ptr,  # [N, C1 + C3 + C5 + CP, H, W] by strides sy
    r3_ptr,  # [N, H, W, CS3] reduce output (STAGE 1/2 buffer, or saved with SAVE_R; else dummy)
    r5_ptr,  # [N, H, W, CS5]
    ring_ptr,  # [programs, RING, CS3 + CS5] private ring buffers (STAGE 0 only; else dummy)
    NHW,  # N * H * W
    sx,  # x strides (n, c, h, w)
    sy,  # y strides (n, c, h, w)
    chunk,  # pixels per program (STAGE 0)
    H: tl.constexpr, W: tl.constexpr,
    CIN: tl.constexpr, C1: tl.constexpr, C3R: tl.constexpr, C3: tl.constexpr,
    C5R: tl.constexpr, C5: tl.constexpr, CP: tl.constexpr, K3: tl.constexpr, K5: tl.constexpr,
    W1_S: tl.constexpr, W3R_S: tl.constexpr, W3_S: tl.constexpr,  # weight strides (o, i, h, w)
    W5R_S: tl.constexpr, W5_S: tl.constexpr, WP_S: tl.constexpr,
    HAS_B1: tl.constexpr, HAS_B3R: tl.constexpr, HAS_B3: tl.constexpr,
    HAS_B5R: tl.constexpr, HAS_B5: tl.constexpr, HAS_BP: tl.constexpr, RELU: tl.constexpr,
    STAGE: tl.constexpr,  # 0: one launch; 1: horizontal + pool of two_launch; 2: KxKs of two_launch
    SAVE_R: tl.constexpr,
    CS3: tl.constexpr, CS5: tl.constexpr,  # channel strides of the reduce buffers (and ring)
    RING: tl.constexpr, HALO: tl.constexpr,  # STAGE 0: ring rows (a power of two), halo pixels
    ACC: tl.constexpr, PREC: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NSTAGE: tl.constexpr,
    POOL_BK: tl.constexpr,  # reduction step of the pool GEMM (its A tile is built in registers)
    T1: tl.constexpr, T3R: tl.constexpr, T3: tl.constexpr,  # N tiles of each conv (_split_n)
    T5R: tl.constexpr, T5: tl.constexpr, TP: tl.constexpr,
    TMA: tl.constexpr,  # the horizontal GEMM reads x and w1/w3r/w5r through tensor descriptors
):
    O3: tl.constexpr = C1
    O5: tl.constexpr = C1 + C3
    OP: tl.constexpr = C1 + C3 + C5
    if STAGE == 0:
        RS: tl.constexpr = CS3 + CS5
        s0 = tl.program_id(0) * chunk
        # warm-up: the reduce rows [s0 - HALO, s0 + HALO) (and y1 of [s0, s0 + HALO))
        for w0 in tl.range(s0 - HALO, s0 + HALO, BM, disable_licm=True):
            _horizontal(w0, NHW, chunk, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, b1_ptr, b3r_ptr, b5r_ptr, y_ptr, sy,
                        ring_ptr, r3_ptr, r5_ptr, CIN, C1, C3R, C5R, W1_S, W3R_S, W5R_S, HAS_B1, HAS_B3R, HAS_B5R,
                        RELU, RING, SAVE_R, CS3, CS5, H, W, ACC, BM, T1, T3R, T5R, BN, BK, NSTAGE, PREC, TMA)
        for s in tl.range(s0, tl.minimum(s0 + chunk, NHW), BM, disable_licm=True):
            # the ring rows the lead overwrites may still be read by the previous step
            tl.debug_barrier()
            _horizontal(s + HALO, NHW, chunk, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, b1_ptr, b3r_ptr, b5r_ptr, y_ptr,
                        sy, ring_ptr, r3_ptr, r5_ptr, CIN, C1, C3R, C5R, W1_S, W3R_S, W5R_S, HAS_B1, HAS_B3R,
                        HAS_B5R, RELU, RING, SAVE_R, CS3, CS5, H, W, ACC, BM, T1, T3R, T5R, BN, BK, NSTAGE, PREC, TMA)
            tl.debug_barrier()  # the step's reduce rows are in the ring
            _conv1x1(s, NHW, chunk, x_ptr, sx, wp_ptr, bp_ptr, y_ptr + OP * sy[1], sy, y_ptr, CIN, CP, WP_S,
                     HAS_BP, RELU, True, True, "y", 0, 0, False, 0, H, W, ACC, BM, TP, BN, POOL_BK, NSTAGE, PREC,
                     False)
            _kxk(s, NHW, chunk, ring_ptr, w3_ptr, b3_ptr, y_ptr, sy, O3, C3R, C3, K3, W3_S, RING, RS, True,
                 HAS_B3, RELU, H, W, ACC, BM, T3, BN, BK, NSTAGE, PREC)
            _kxk(s, NHW, chunk, ring_ptr + CS3, w5_ptr, b5_ptr, y_ptr, sy, O5, C5R, C5, K5, W5_S, RING, RS, True,
                 HAS_B5, RELU, H, W, ACC, BM, T5, BN, BK, NSTAGE, PREC)
    elif STAGE == 1:
        p0 = tl.program_id(0) * BM
        _horizontal(p0, NHW, chunk, x_ptr, sx, w1_ptr, w3r_ptr, w5r_ptr, b1_ptr, b3r_ptr, b5r_ptr, y_ptr, sy,
                    ring_ptr, r3_ptr, r5_ptr, CIN, C1, C3R, C5R, W1_S, W3R_S, W5R_S, HAS_B1, HAS_B3R, HAS_B5R,
                    RELU, 0, False, CS3, CS5, H, W, ACC, BM, T1, T3R, T5R, BN, BK, NSTAGE, PREC, TMA)
        _conv1x1(p0, NHW, chunk, x_ptr, sx, wp_ptr, bp_ptr, y_ptr + OP * sy[1], sy, y_ptr, CIN, CP, WP_S,
                 HAS_BP, RELU, True, False, "y", 0, 0, False, 0, H, W, ACC, BM, TP, BN, POOL_BK, NSTAGE, PREC,
                 False)
    else:
        p0 = tl.program_id(0) * BM
        _kxk(p0, NHW, chunk, r3_ptr, w3_ptr, b3_ptr, y_ptr, sy, O3, C3R, C3, K3, W3_S, 0, CS3, False,
             HAS_B3, RELU, H, W, ACC, BM, T3, BN, BK, NSTAGE, PREC)
        _kxk(p0, NHW, chunk, r5_ptr, w5_ptr, b5_ptr, y_ptr, sy, O5, C5R, C5, K5, W5_S, 0, CS5, False,
             HAS_B5, RELU, H, W, ACC, BM, T5, BN, BK, NSTAGE, PREC)


# --------------------------------------------------------------------------------------------
# Host side: the plan (tiles, schedule, grid) and the launcher
# --------------------------------------------------------------------------------------------


def _split_n(n: int, bn: int) -> tuple[int, ...]:
    """Cover ``n`` GEMM columns with ``nt`` tiles of ``bn`` and at most three narrower tiles.

    The tail (``n % bn`` rounded up to a multiple of 16) is split into distinct powers of two
    (64, 32, 16 for ``bn = 128``), so no tile pads more than 15 columns: e.g. 176 =
    128 + 32 + 16, 624 = 4 * 128 + 64 + 32 + 16.

    Returns:
        ``(nt, off1, width1, off2, width2, off3, width3)``, unused tails as ``(0, 0)`` -- a flat
        tuple, the form every supported Triton version takes as a compile-time constant.
    """
    nt, rem = divmod(n, bn)
    rem = -(-rem // 16) * 16
    if rem == bn:  # a tail of more than bn - 16 columns is one more full tile
        nt, rem = nt + 1, 0
    tail, off, w = [], nt * bn, bn // 2
    while rem:
        if rem >= w:
            tail += [off, w]
            off, rem = off + w, rem - w
        w //= 2
    if len(tail) > 6:
        raise ValueError(f"_split_n({n}, {bn}): more than three tail tiles")
    return (nt, *tail, *(0,) * (6 - len(tail)))


def _tile_width(split: tuple[int, ...], bn: int) -> int:
    """Columns a split executes (its tiles' widths, padding included)."""
    return split[0] * bn + split[2] + split[4] + split[6]


def _round_up(a: int, b: int) -> int:
    return -(-a // b) * b


#: Reduction step of the pool GEMM: its A operand (nine shifted loads and their max) lives in
#: registers; 16 channels keep it small (measured: 138 registers at 16, 186 at 32, 255 at 64
#: for a 64 x 128 tile on sm_90).
POOL_BK = 16
#: Executed / useful FLOPs the default schedule may cost (docs/design.md §7).
FLOP_BUDGET = 1.25
#: Largest ring buffer one program may keep (bytes): rings are meant to stay in L2.
_MAX_RING_BYTES = 192 * 1024
#: Programs of the one-launch grid in the interpreter: enough to exercise the persistent loop,
#: several pixel ranges and the reuse of ring rows.
_INTERPRETER_PROGRAMS = 3


@dataclass(frozen=True)
class ForwardPlan:
    """What the forward launcher runs for one problem: tiles, schedule and grid.

    The only place these are chosen (``_plan``); the static report and the FLOP model read the
    same object, so what they describe is what runs.

    Attributes:
        schedule: ``"one_launch"`` or ``"two_launch"``.
        reason: why ``_plan`` chose the schedule (for ``schedule="auto"``).
        BM, BN, BK: pixel rows per tile, widest N tile, reduction step.
        nstage: operand stages of every K loop (``num_stages``; ``nstage - 1`` in flight).
        num_warps: warps per program.
        maxnreg: register cap per thread (see ``gemm_tiles``).
        splits: ``_split_n`` of each conv's output channels, ``(w1, w3r, w3, w5r, w5, wp)``
            order (the horizontal GEMM is N-tiled at the branch boundaries).
        cs3, cs5: channel strides of the reduce buffers (channels rounded up to 16).
        halo, ring, programs, chunk: one-launch: halo pixels, ring rows per program,
            warm-up row tile, programs and pixels per program.
        grids: the grid of each launch.
    """

    schedule: str
    reason: str
    BM: int
    BN: int
    BK: int
    nstage: int
    num_warps: int
    maxnreg: int
    splits: tuple
    cs3: int
    cs5: int
    halo: int
    ring: int
    programs: int
    chunk: int
    grids: tuple

    def gemm_macs(self, channels: Sequence[int], kernel_sizes: Sequence[int], nhw: int) -> dict:
        """Multiply-accumulates the tensor cores execute, per GEMM phase (padding, the halo
        warm-up and tile overhang included), for ``channels = (cin, c1, c3r, c3, c5r, c5, cp)``."""
        cin, _c1, c3r, _c3, c5r, _c5, _cp = channels
        k3, k5 = kernel_sizes
        kx = _round_up(cin, self.BK)
        n1, n3r, n3, n5r, n5, n_p = (_tile_width(t, self.BN) for t in self.splits)
        if self.schedule == "one_launch":
            lens = [min(self.chunk, nhw - i * self.chunk) for i in range(self.programs)]
            center = sum(_round_up(n, self.BM) for n in lens)
            hor_rows = center + self.programs * _round_up(2 * self.halo, self.BM)
        else:
            center = hor_rows = _round_up(nhw, self.BM)
        return {
            "horizontal": hor_rows * kx * (n1 + n3r + n5r),
            "pool": center * kx * n_p,
            "k3": center * _round_up(k3 * k3 * c3r, self.BK) * n3,
            "k5": center * _round_up(k5 * k5 * c5r, self.BK) * n5,
        }


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _plan(channels: Sequence[int], kernel_sizes: Sequence[int], n: int, h: int, w: int,
          dtype: torch.dtype, target: Target, schedule: str = "auto") -> ForwardPlan:
    """Tile shapes, schedule and grid of one forward.

    Tiles follow :func:`~inception_kernels.triton._config.gemm_tiles` (64 pixel rows x up to
    128 output channels, several operand stages in flight); N tiles are sized to each conv's
    channels (``_split_n``). The one-launch grid has as many programs as fit on the GPU at once
    (``ctas_per_sm`` per SM), each owning an equal range of pixels.

    ``"auto"`` picks ``"one_launch"`` -- the mission: one launch per module -- unless its ring
    buffer would not stay small (very wide images), or its halo warm-up makes it execute more
    than ``FLOP_BUDGET`` (1.25) times the useful FLOPs *and* that extra work costs more than a
    second launch in the model of :mod:`~inception_kernels.tools.report.model`. Then it picks
    ``"two_launch"``: no recompute, ``r3``/``r5`` through L2. In practice: one launch for the
    28x28 and 14x14 GoogLeNet layers and for small batches; two launches for the 7x7 layers
    at large batch, whose ranges are too short to amortize the warm-up. The plan's ``reason``
    says which rule decided.

    Args:
        channels: ``(cin, c1, c3r, c3, c5r, c5, cp)``.
        kernel_sizes: ``(K3, K5)``.
        n, h, w: batch and spatial size.
        dtype: input dtype.
        target: the GPU (:func:`~inception_kernels.triton._config.target_of`); its SM count is
            None in the interpreter, which runs ``_INTERPRETER_PROGRAMS`` programs.
        schedule: ``"auto"``, ``"one_launch"`` or ``"two_launch"``.

    Returns:
        The :class:`ForwardPlan`.
    """
    cin, c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    elt = dtype.itemsize
    tiles = gemm_tiles(dtype, target)
    bm, bn = tiles.BM, tiles.BN
    nhw = n * h * w
    cs3, cs5 = _round_up(c3r, 16), _round_up(c5r, 16)
    halo = (max(k3, k5) // 2) * w + max(k3, k5) // 2
    ring = _next_pow2(bm + 2 * halo)
    resident = _INTERPRETER_PROGRAMS if target.sms is None else target.sms * tiles.ctas_per_sm
    chunk = _round_up(max(1, -(-nhw // resident)), bm)
    programs = max(1, -(-nhw // chunk)) if nhw else 0
    common = dict(BM=bm, BN=bn, BK=tiles.BK, nstage=tiles.stages, num_warps=tiles.warps, maxnreg=tiles.maxnreg,
                  splits=tuple(_split_n(c, bn) for c in (c1, c3r, c3, c5r, c5, cp)),
                  cs3=cs3, cs5=cs5, halo=halo, ring=ring)
    one = ForwardPlan("one_launch", "", programs=programs, chunk=chunk, grids=((programs,),), **common)
    tiles = -(-nhw // bm)
    # two_launch: up to 255 registers. Its programs are short (one tile each, not persistent), and
    # 5a's stage 1 spills 32 bytes under 168 or 192 (measured: 214 registers, no spill, at 255;
    # the other layers' stages stay at 118-138)
    two = ForwardPlan("two_launch", "", programs=tiles, chunk=bm, grids=((tiles,), (tiles,)),
                      **dict(common, maxnreg=255))
    if schedule == "one_launch":
        return one
    if schedule == "two_launch":
        return two
    ring_bytes = ring * (cs3 + cs5) * elt
    useful = nhw * (cin * (c1 + c3r + c5r + cp) + k3 * k3 * c3r * c3 + k5 * k5 * c5r * c5)
    ex_one = sum(one.gemm_macs(channels, kernel_sizes, nhw).values())
    ex_two = sum(two.gemm_macs(channels, kernel_sizes, nhw).values())
    ratio = ex_one / max(useful, 1)
    machine = machine_for(target.arch)
    extra_s = (ex_one - ex_two) / machine.mma_macs_per_s  # what the halo warm-up costs (modeled)
    if ring_bytes > _MAX_RING_BYTES:
        why = (f"two_launch: a one-launch ring of {ring} rows x {cs3 + cs5} channels "
               f"({ring_bytes // 1024} KiB per program) would not stay in L2")
        return dataclasses.replace(two, reason=why)
    if ratio > FLOP_BUDGET and extra_s > machine.launch_s:
        why = (f"two_launch: one_launch would execute {ratio:.2f}x the useful FLOPs (halo warm-up of "
               f"{_round_up(2 * halo, bm)} rows per {chunk}-pixel range), above the {FLOP_BUDGET}x budget, and "
               f"the extra work (~{extra_s * 1e6:.1f} us modeled) costs more than the second launch "
               f"(~{machine.launch_s * 1e6:.0f} us)")
        return dataclasses.replace(two, reason=why)
    why = (f"one_launch: {ratio:.2f}x the useful FLOPs with the halo warm-up"
           + (f" (within the {FLOP_BUDGET}x budget)" if ratio <= FLOP_BUDGET else
              f"; its extra work (~{extra_s * 1e6:.1f} us modeled) costs less than a second launch")
           + f", ring of {ring_bytes // 1024} KiB per program")
    return dataclasses.replace(one, reason=why)


_ACC = {torch.float64: tl.float64}


def _reduce_buffers(x: torch.Tensor, c3r: int, c5r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty ``r3`` ``[N, c3r, H, W]`` and ``r5`` ``[N, c5r, H, W]`` for x: channels_last storage
    with the channel stride rounded up to a multiple of 16 (aligned vector loads). The fake
    impls use this function too, so strides agree."""
    n, _, h, w = x.shape

    def buf(c):
        return torch.empty((n, h, w, _round_up(c, 16)), device=x.device, dtype=x.dtype)[..., :c].permute(0, 3, 1, 2)

    return buf(c3r), buf(c5r)


def _horizontal_tma(x: torch.Tensor, weights, target: Target) -> bool:
    """Whether the horizontal GEMM reads ``x`` and ``w1``/``w3r``/``w5r`` through TMA
    (docs/design.md §4.1): every pixel of ``x`` is one row of a 2-D ``[N*H*W, Cin]`` tensor
    (channels_last storage, pixels evenly spaced: ``s_c == 1``, ``s_h == W * s_w``,
    ``s_n == H * s_h``), each 1x1 weight is a 2-D ``[Cout, Cin]`` tensor (``s_i == 1``), and all
    four pass :func:`~inception_kernels.triton._config.tma_rows_ok` (sm_90, 2-/4-byte dtype,
    16-byte aligned base and row stride). Else every operand goes through ``cp.async``."""
    rs = pixel_row_stride(x)
    ok = rs is not None and tma_rows_ok(x, rs, target)
    for wt in (weights[0], weights[1], weights[3]):
        ok = ok and (wt.shape[1] == 1 or wt.stride(1) == 1) and tma_rows_ok(wt, wt.stride(0), target)
    return bool(ok)


def _weight_strides(weights) -> dict:
    """The weights' strides, the kernel's compile-time constants ``W1_S`` ... ``WP_S``."""
    names = ("W1_S", "W3R_S", "W3_S", "W5R_S", "W5_S", "WP_S")
    return {name: tuple(int(v) for v in wt.stride()) for name, wt in zip(names, weights)}


def _inception_forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[Optional[torch.Tensor]],
    kernel_sizes: tuple[int, int],
    activation: Optional[str],
    *,
    schedule: str = "auto",
    save_reduce: bool = False,
):
    """Launch the fused forward on checked arguments (see ``_checks.check_inception_args``).

    Args:
        x: ``[N, Cin, H, W]`` on CUDA, or on CPU under ``TRITON_INTERPRET=1``; any strides.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, any strides, x's dtype and device.
        biases: ``(b1, b3r, b3, b5r, b5, bp)``, each ``[Cout]`` or None.
        kernel_sizes: ``(K3, K5)``, odd.
        activation: ``"relu"`` or None.
        schedule: ``"auto"`` (``_plan`` chooses per layer), ``"one_launch"`` (1 launch) or
            ``"two_launch"`` (2 launches).
        save_reduce: also return ``r3`` / ``r5`` (post-activation; see ``_reduce_buffers``).

    Returns:
        ``(y, r3, r5)``: y ``[N, c1+c3+c5+cp, H, W]`` in x's dtype and memory format;
        r3 / r5 ``[N, c3r|c5r, H, W]`` when ``save_reduce``, else None.

    Raises:
        ValueError: an unknown schedule, or a tensor too large for the kernel's int32
            per-image offsets.
    """
    if schedule not in SCHEDULES + ("auto",):
        raise ValueError(f"schedule must be 'auto' or one of {SCHEDULES}, got {schedule!r}")
    N, cin, H, W = x.shape
    k3, k5 = kernel_sizes
    c1, c3r, c3, c5r, c5, cp = (w.shape[0] for w in weights)
    if max(cin, c1 + c3 + c5 + cp, _round_up(c3r, 16), _round_up(c5r, 16)) * H * W >= 2**31 or N * H * W >= 2**31:
        raise ValueError(
            f"x of shape {tuple(x.shape)} is too large: one image must have < 2^31 elements "
            f"and N*H*W < 2^31 pixels"
        )
    # the epilogues read a bias as a dense vector (a strided view would be read wrong)
    biases = [b.contiguous() if b is not None else None for b in biases]
    y = torch.empty((N, c1 + c3 + c5 + cp, H, W), device=x.device, dtype=x.dtype, memory_format=output_memory_format(x))
    target = target_of(x.device)
    plan = _plan((cin, c1, c3r, c3, c5r, c5, cp), kernel_sizes, N, H, W, x.dtype, target, schedule)
    r3 = r5 = None
    if save_reduce or plan.schedule == "two_launch":
        r3, r5 = _reduce_buffers(x, c3r, c5r)
    if N * H * W == 0:
        return y, (r3 if save_reduce else None), (r5 if save_reduce else None)
    dummy = y
    consts = dict(
        H=H, W=W, CIN=cin, C1=c1, C3R=c3r, C3=c3, C5R=c5r, C5=c5, CP=cp, K3=k3, K5=k5, **_weight_strides(weights),
        HAS_B1=biases[0] is not None, HAS_B3R=biases[1] is not None, HAS_B3=biases[2] is not None,
        HAS_B5R=biases[3] is not None, HAS_B5=biases[4] is not None, HAS_BP=biases[5] is not None,
        RELU=activation == "relu", SAVE_R=bool(save_reduce), CS3=plan.cs3, CS5=plan.cs5,
        RING=plan.ring, HALO=plan.halo, ACC=_ACC.get(x.dtype, tl.float32),
        PREC=dot_precision(x.dtype, x.device), BM=plan.BM, BN=plan.BN, BK=plan.BK, NSTAGE=plan.nstage,
        POOL_BK=POOL_BK, TMA=_horizontal_tma(x, weights, target),
        **dict(zip(("T1", "T3R", "T3", "T5R", "T5", "TP"), plan.splits)),
        num_warps=plan.num_warps, num_stages=plan.nstage, maxnreg=plan.maxnreg,
    )
    ring = None
    if plan.schedule == "one_launch":
        ring = torch.empty((plan.programs, plan.ring, plan.cs3 + plan.cs5), device=x.device, dtype=x.dtype)
    args = (
        x, *weights, *(b if b is not None else dummy for b in biases), y,
        r3 if r3 is not None else dummy, r5 if r5 is not None else dummy, ring if ring is not None else dummy,
        N * H * W, tuple(x.stride()), tuple(y.stride()), plan.chunk,
    )
    guard = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with guard, tma_scratch(x.device):
        if plan.schedule == "one_launch":
            _launch(_inception_fwd_kernel, plan.grids[0], *args, STAGE=0, **consts)
        else:
            _launch(_inception_fwd_kernel, plan.grids[0], *args, STAGE=1, **consts)
            _launch(_inception_fwd_kernel, plan.grids[1], *args, STAGE=2, **consts)
    if not save_reduce:
        r3 = r5 = None
    return y, r3, r5
