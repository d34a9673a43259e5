"""Triton forward of a whole Inception module (docs/design.md §3-4) in one kernel launch.

Semantics (``act`` = ReLU or identity)::

    y1 = act(conv1x1(x, w1) + b1)
    r3 = act(conv1x1(x, w3r) + b3r);  y3 = act(convK3(r3, w3, pad=K3//2) + b3)
    r5 = act(conv1x1(x, w5r) + b5r);  y5 = act(convK5(r5, w5, pad=K5//2) + b5)
    p  = maxpool3x3(x, stride 1, pad 1 with -inf);  yp = act(conv1x1(p, wp) + bp)
    y  = cat([y1, y3, y5, yp], dim=1)      # never materialized: each branch writes its slice

Schedules (``_inception_forward(..., schedule=...)``):

* ``"one_launch"`` (default): ONE launch of :func:`_inception_fwd_kernel` with ``STAGE=0``.
  Program ids are persistent workers looping over a job list, heavy jobs first:

  - job kind B / C (the K3 and K5 branches): a ``TH x TW`` output tile of one image. The
    program computes ``r = act(x @ wr^T + br)`` on the tile plus its halo
    (``(TH+K-1) x (TW+K-1)`` pixels, ZERO for halo pixels outside the image -- the conv's
    zero padding of ``r``), stores it in its private scratch slot (global memory, L2
    resident), ``tl.debug_barrier()``, then runs the KxK conv as an implicit GEMM over the
    slot and writes ``y3`` / ``y5`` straight into their channel slice of ``y``.
  - job kind A: a flat tile of ``BLOCK_M`` pixels of ``N*H*W`` times ``BLOCK_N`` output
    channels of either the 1x1 branch or the pool branch (3x3 max computed while loading
    the GEMM operand; the pooled map is never stored).

  The grid is sized to the programs that can be resident (``_resident_programs``), and the
  scratch by programs, not tiles: ``programs * max((TH+K3-1)(TW+K3-1) c3r, (TH+K5-1)(TW+K5-1) c5r)``
  elements.
* ``"two_launch"``: launch 1 (``STAGE=1``) computes all four 1x1s (``w1``, ``w3r``, ``w5r``
  read by pointer -- one GEMM over the virtual concatenation ``[c1 + c3r + c5r, Cin]``) and
  the pool branch, writing ``y1`` / ``yp`` into ``y`` and ``r3`` / ``r5`` into buffers;
  launch 2 (``STAGE=2``) runs both KxK convs over those buffers (zero padding by masks).

Both schedules are the same jitted kernel with the same helpers
(:func:`~inception_kernels.triton._common._conv_tile`, ``_bias_act``, ``_pixel_job``,
``_spatial_job``); ``STAGE`` is a constexpr.

Launcher (private)::

    _inception_forward(x, weights, biases, kernel_sizes, activation, *,
                       schedule="one_launch", save_reduce=False) -> (y, r3, r5)

``y`` has x's dtype and memory format (channels_last when x is channels_last, else NCHW
contiguous). With ``save_reduce=True`` (training: the backward needs the reduce outputs)
``r3`` ``[N, c3r, H, W]`` and ``r5`` ``[N, c5r, H, W]`` are returned post-activation, stored
channels_last physically (``r.is_contiguous(memory_format=torch.channels_last)``), still in
one launch (one_launch writes them from the non-halo pixels of each spatial tile); else
``None``. Accumulation is fp32 (fp64 for fp64 inputs); fp16/bf16 use tensor cores; fp32 on
CUDA follows ``torch.backends.cudnn.allow_tf32``.

Design limits: one image (``C*H*W`` of x, y, r) must have < 2^31 elements (batch offsets are
int64); ``N*H*W < 2^31`` pixels. Static quality (``tests/test_triton_compile.py``: nine
GoogLeNet layers, fp16/bf16, 8 warps): 0 spill bytes everywhere; one_launch 174-218 registers
on sm_80 (HMMA), 114-234 on sm_90 (HGMMA; the higher figures with ``save_reduce``). Triton
software-pipelines the 1x1 loops (cp.async: reduce, 1x1 branch, two-launch stage 1) but not
the KxK loops over the scratch nor the pool's 9-tap loads (8-50 KB shared memory in all).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from .._launches import _launch
from ._common import _bias_act, _conv_tile

__all__ = ["_inception_forward", "_pick_config", "SCHEDULES"]

SCHEDULES = ("one_launch", "two_launch")


@triton.jit
def _pixel_job(
    pt,  # pixel tile index over the flat N*H*W pixels
    ct,  # output-channel tile index inside this job's Cout
    src_ptr,  # [N, C, H, W] source map by strides (x, or a reduce buffer)
    N,
    H,
    W,
    C,
    s_n,
    s_c,
    s_h,
    s_w,
    w_ptr,  # [COUT, C, KS, KS] weight by strides
    w_so,
    w_si,
    w_sh,
    w_sw,
    b_ptr,  # [COUT] bias by stride
    b_s,
    out_ptr,  # [N, >= c_base + COUT, H, W] output by strides (y or a reduce buffer)
    o_n,
    o_c,
    o_h,
    o_w,
    c_base,  # first output channel of this job's slice in out
    COUT,
    KS: tl.constexpr,
    POOL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    RELU: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PREC: tl.constexpr,
):
    """out[pixels, c_base + co] = act(convKS(src or maxpool(src), w) + b) on a flat pixel tile."""
    HW = H * W
    p = pt * BLOCK_M + tl.arange(0, BLOCK_M)
    pix_ok = p < N * HW
    n64 = (p // HW).to(tl.int64)
    hw = p % HW
    h = hw // W
    w = hw % W
    co = ct * BLOCK_N + tl.arange(0, BLOCK_N)
    co_ok = co < COUT
    acc = tl.zeros([BLOCK_M, BLOCK_N], ACC)
    acc = _conv_tile(
        acc, src_ptr, n64 * s_n + (h * s_h + w * s_w), h, w, pix_ok, H, W, s_h, s_w, s_c, C,
        w_ptr, co, co_ok, w_so, w_si, w_sh, w_sw, KS, POOL, BLOCK_K, PREC,
    )
    acc = _bias_act(acc, b_ptr, b_s, co, co_ok, HAS_BIAS, RELU)
    o_ptrs = out_ptr + (n64 * o_n + (h * o_h + w * o_w))[:, None] + ((c_base + co) * o_c)[None, :]
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=pix_ok[:, None] & co_ok[None, :])


@triton.jit
def _spatial_job(
    tile,  # spatial tile index over N * tiles_h * tiles_w
    x_ptr,  # [N, CIN, H, W] by strides
    N,
    H,
    W,
    CIN,
    sx_n,
    sx_c,
    sx_h,
    sx_w,
    wr_ptr,  # [CR, CIN, 1, 1] reduce weight by strides
    wr_so,
    wr_si,
    br_ptr,  # [CR] reduce bias
    br_s,
    wk_ptr,  # [CO, CR, KS, KS] spatial weight by strides
    wk_so,
    wk_si,
    wk_sh,
    wk_sw,
    bk_ptr,  # [CO] spatial bias
    bk_s,
    y_ptr,  # [N, Cy, H, W] module output by strides
    sy_n,
    sy_c,
    sy_h,
    sy_w,
    c_base,  # first channel of this branch in y
    CR,
    CO,
    slot_ptr,  # [(TH+KS-1) * (TW+KS-1), CR] this program's private scratch
    r_ptr,  # [N, CR, H, W] saved reduce output by strides (SAVE_R only)
    sr_n,
    sr_c,
    sr_h,
    sr_w,
    tiles_h,
    tiles_w,
    KS: tl.constexpr,
    HAS_BR: tl.constexpr,
    HAS_BK: tl.constexpr,
    RELU: tl.constexpr,
    SAVE_R: tl.constexpr,
    ACC: tl.constexpr,
    TH: tl.constexpr,
    TW: tl.constexpr,
    BLOCK_M: tl.constexpr,  # == TH * TW
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PREC: tl.constexpr,
):
    """y[n, c_base:c_base+CO, tile] = act(convKS(act(x @ wr + br), wk) + bk), reduce kept in the slot."""
    PAD: tl.constexpr = KS // 2
    SH: tl.constexpr = TH + KS - 1
    SW: tl.constexpr = TW + KS - 1
    per_img = tiles_h * tiles_w
    n64 = (tile // per_img).to(tl.int64)
    t = tile % per_img
    h0 = (t // tiles_w) * TH
    w0 = (t % tiles_w) * TW
    dtype = y_ptr.dtype.element_ty
    # the slot may still be read by the previous job of this program (write-after-read)
    tl.debug_barrier()
    # 1. reduce over the tile plus halo, zero outside the image -> slot [SH*SW, CR]
    for m0 in range(0, SH * SW, BLOCK_M):
        hp = m0 + tl.arange(0, BLOCK_M)
        hh = hp // SW
        hw = hp % SW
        h = h0 - PAD + hh
        w = w0 - PAD + hw
        in_slot = hp < SH * SW
        in_img = in_slot & (h >= 0) & (h < H) & (w >= 0) & (w < W)
        x_off = n64 * sx_n + (h * sx_h + w * sx_w)
        for c0 in range(0, CR, BLOCK_N):
            co = c0 + tl.arange(0, BLOCK_N)
            co_ok = co < CR
            acc = tl.zeros([BLOCK_M, BLOCK_N], ACC)
            acc = _conv_tile(
                acc, x_ptr, x_off, h, w, in_img, H, W, sx_h, sx_w, sx_c, CIN,
                wr_ptr, co, co_ok, wr_so, wr_si, 0, 0, 1, False, BLOCK_K, PREC,
            )
            acc = _bias_act(acc, br_ptr, br_s, co, co_ok, HAS_BR, RELU)
            r = tl.where(in_img[:, None], acc, 0.0).to(dtype)
            tl.store(slot_ptr + (hp * CR)[:, None] + co[None, :], r, mask=in_slot[:, None] & co_ok[None, :])
            if SAVE_R:
                inner = in_img & (hh >= PAD) & (hh < PAD + TH) & (hw >= PAD) & (hw < PAD + TW)
                r_ptrs = r_ptr + (n64 * sr_n + (h * sr_h + w * sr_w))[:, None] + (co * sr_c)[None, :]
                tl.store(r_ptrs, r, mask=inner[:, None] & co_ok[None, :])
    tl.debug_barrier()
    # 2. KxK conv over the slot (its halo already holds the zero padding)
    i = tl.arange(0, BLOCK_M) // TW
    j = tl.arange(0, BLOCK_M) % TW
    h = h0 + i
    w = w0 + j
    ok = (h < H) & (w < W)
    s_off = (((i + PAD) * SW + (j + PAD)) * CR).to(tl.int64)
    y_off = n64 * sy_n + (h * sy_h + w * sy_w)
    for c0 in range(0, CO, BLOCK_N):
        co = c0 + tl.arange(0, BLOCK_N)
        co_ok = co < CO
        acc = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        acc = _conv_tile(
            acc, slot_ptr, s_off, i + PAD, j + PAD, ok, SH, SW, SW * CR, CR, 1, CR,
            wk_ptr, co, co_ok, wk_so, wk_si, wk_sh, wk_sw, KS, False, BLOCK_K, PREC,
        )
        acc = _bias_act(acc, bk_ptr, bk_s, co, co_ok, HAS_BK, RELU)
        y_ptrs = y_ptr + y_off[:, None] + ((c_base + co) * sy_c)[None, :]
        tl.store(y_ptrs, acc.to(dtype), mask=ok[:, None] & co_ok[None, :])


# Batch and spatial sizes are runtime values that are not specialized on (one compiled kernel
# serves every batch and resolution). Channel counts and strides keep Triton's ==1 /
# multiple-of-16 specialization: channel-tail masks (ci < C) are only provably constant over
# 8-element vectors when C is a known multiple of 16, and without that every operand load
# and output store becomes scalar (measured: 168 ld.global.b16 in one 1x1 job, 255 registers).
_RUNTIME_INTS = ["N", "H", "W", "slot", "tiles_h", "tiles_w", "n_jobs"]


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _inception_fwd_kernel(
    x_ptr,  # [N, CIN, H, W] by strides
    w1_ptr,  # [C1, CIN, 1, 1]
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
    y_ptr,  # [N, C1 + C3 + C5 + CP, H, W] by strides
    r3_ptr,  # [N, C3R, H, W] by strides (STAGE 1/2 buffer, or saved when SAVE_R; else dummy)
    r5_ptr,  # [N, C5R, H, W] by strides
    scratch_ptr,  # [programs, slot] private halo buffers (STAGE 0 only; else dummy)
    N, H, W, CIN, C1, C3R, C3, C5R, C5, CP,
    sx_n, sx_c, sx_h, sx_w,
    sy_n, sy_c, sy_h, sy_w,
    sr3_n, sr3_c, sr3_h, sr3_w,
    sr5_n, sr5_c, sr5_h, sr5_w,
    w1_so, w1_si,
    w3r_so, w3r_si,
    w3_so, w3_si, w3_sh, w3_sw,
    w5r_so, w5r_si,
    w5_so, w5_si, w5_sh, w5_sw,
    wp_so, wp_si,
    b1_s, b3r_s, b3_s, b5r_s, b5_s, bp_s,
    slot,  # elements per scratch slot
    tiles_h,  # spatial tiles per image column / row (STAGE 0)
    tiles_w,
    n_jobs,  # total jobs of this stage
    K3: tl.constexpr,
    K5: tl.constexpr,
    RELU: tl.constexpr,
    HAS_B1: tl.constexpr,
    HAS_B3R: tl.constexpr,
    HAS_B3: tl.constexpr,
    HAS_B5R: tl.constexpr,
    HAS_B5: tl.constexpr,
    HAS_BP: tl.constexpr,
    STAGE: tl.constexpr,  # 0: one launch; 1: 1x1s + pool of two_launch; 2: KxKs of two_launch
    SAVE_R: tl.constexpr,
    ACC: tl.constexpr,  # accumulator dtype
    TH: tl.constexpr,
    TW: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PREC: tl.constexpr,
):
    pid = tl.program_id(0)
    n_pt = tl.cdiv(N * H * W, BLOCK_M)
    t1 = tl.cdiv(C1, BLOCK_N)
    tp = tl.cdiv(CP, BLOCK_N)
    oy3 = C1
    oy5 = C1 + C3
    oyp = C1 + C3 + C5
    for job in range(pid, n_jobs, tl.num_programs(0)):
        if STAGE == 0:
            n_sp = N * tiles_h * tiles_w
            slot_ptr = scratch_ptr + pid.to(tl.int64) * slot
            if job < n_sp:
                _spatial_job(
                    job, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    w3r_ptr, w3r_so, w3r_si, b3r_ptr, b3r_s, w3_ptr, w3_so, w3_si, w3_sh, w3_sw, b3_ptr, b3_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, oy3, C3R, C3,
                    slot_ptr, r3_ptr, sr3_n, sr3_c, sr3_h, sr3_w, tiles_h, tiles_w,
                    K3, HAS_B3R, HAS_B3, RELU, SAVE_R, ACC, TH, TW, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            elif job < 2 * n_sp:
                _spatial_job(
                    job - n_sp, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    w5r_ptr, w5r_so, w5r_si, b5r_ptr, b5r_s, w5_ptr, w5_so, w5_si, w5_sh, w5_sw, b5_ptr, b5_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, oy5, C5R, C5,
                    slot_ptr, r5_ptr, sr5_n, sr5_c, sr5_h, sr5_w, tiles_h, tiles_w,
                    K5, HAS_B5R, HAS_B5, RELU, SAVE_R, ACC, TH, TW, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            else:
                j = job - 2 * n_sp
                pt = j // (t1 + tp)
                ct = j % (t1 + tp)
                if ct < t1:
                    _pixel_job(
                        pt, ct, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                        w1_ptr, w1_so, w1_si, 0, 0, b1_ptr, b1_s,
                        y_ptr, sy_n, sy_c, sy_h, sy_w, 0, C1,
                        1, False, HAS_B1, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                    )
                else:
                    _pixel_job(
                        pt, ct - t1, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                        wp_ptr, wp_so, wp_si, 0, 0, bp_ptr, bp_s,
                        y_ptr, sy_n, sy_c, sy_h, sy_w, oyp, CP,
                        1, True, HAS_BP, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                    )
        elif STAGE == 1:
            t3r = tl.cdiv(C3R, BLOCK_N)
            t5r = tl.cdiv(C5R, BLOCK_N)
            nct = t1 + t3r + t5r + tp
            pt = job // nct
            ct = job % nct
            if ct < t1:
                _pixel_job(
                    pt, ct, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    w1_ptr, w1_so, w1_si, 0, 0, b1_ptr, b1_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, 0, C1,
                    1, False, HAS_B1, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            elif ct < t1 + t3r:
                _pixel_job(
                    pt, ct - t1, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    w3r_ptr, w3r_so, w3r_si, 0, 0, b3r_ptr, b3r_s,
                    r3_ptr, sr3_n, sr3_c, sr3_h, sr3_w, 0, C3R,
                    1, False, HAS_B3R, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            elif ct < t1 + t3r + t5r:
                _pixel_job(
                    pt, ct - t1 - t3r, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    w5r_ptr, w5r_so, w5r_si, 0, 0, b5r_ptr, b5r_s,
                    r5_ptr, sr5_n, sr5_c, sr5_h, sr5_w, 0, C5R,
                    1, False, HAS_B5R, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            else:
                _pixel_job(
                    pt, ct - t1 - t3r - t5r, x_ptr, N, H, W, CIN, sx_n, sx_c, sx_h, sx_w,
                    wp_ptr, wp_so, wp_si, 0, 0, bp_ptr, bp_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, oyp, CP,
                    1, True, HAS_BP, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
        else:
            t3 = tl.cdiv(C3, BLOCK_N)
            t5 = tl.cdiv(C5, BLOCK_N)
            pt = job // (t3 + t5)
            ct = job % (t3 + t5)
            if ct < t3:
                _pixel_job(
                    pt, ct, r3_ptr, N, H, W, C3R, sr3_n, sr3_c, sr3_h, sr3_w,
                    w3_ptr, w3_so, w3_si, w3_sh, w3_sw, b3_ptr, b3_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, oy3, C3,
                    K3, False, HAS_B3, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )
            else:
                _pixel_job(
                    pt, ct - t3, r5_ptr, N, H, W, C5R, sr5_n, sr5_c, sr5_h, sr5_w,
                    w5_ptr, w5_so, w5_si, w5_sh, w5_sw, b5_ptr, b5_s,
                    y_ptr, sy_n, sy_c, sy_h, sy_w, oy5, C5,
                    K5, False, HAS_B5, RELU, ACC, BLOCK_M, BLOCK_N, BLOCK_K, PREC,
                )


def _pick_config(spec_channels: Sequence[int], H: int, W: int, dtype: torch.dtype) -> dict:
    """Tile shapes and launch options for one problem -- the only place they are chosen.

    The heuristic: spatial jobs own 8x8 output tiles (BLOCK_M = 64 = TH*TW; the 3x3 halo
    recomputes (10*10)/(8*8) of the cheap reduce, the 5x5 (12*12)/(8*8)); every GEMM tile is
    64 pixels x 64 output channels, stepping 32 input channels per tensor-core dot (16 for
    4-byte and 8-byte dtypes, keeping the operands' shared-memory footprint the same).
    Channel counts are runtime arguments, so the nine GoogLeNet layers share one compiled
    kernel per (dtype, kernel sizes, biases, activation, stage, arch).

    Args:
        spec_channels: ``(Cin, c1, c3r, c3, c5r, c5, cp)`` (reserved for size-dependent tiles).
        H, W: spatial size.
        dtype: input dtype.

    Returns:
        dict with ``BLOCK_M, BLOCK_N, BLOCK_K, TH, TW, num_warps, num_stages``.
    """
    del spec_channels, H, W  # one config fits every GoogLeNet layer (see the compile test)
    block_k = 32 if dtype in (torch.float16, torch.bfloat16) else 16
    # 8 warps: at 4 warps the one-launch kernel sat at 248-255 registers (spilling before the
    # channel counts were specialized); at 8 it needs 174 (sm_80) / 116 (sm_90), no spills.
    return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=block_k, TH=8, TW=8, num_warps=8, num_stages=2)


def _resident_programs(device: torch.device) -> int:
    """Programs of the persistent grid: as many as fit on the GPU at once, from the compiled
    kernel's measured footprint at 8 warps (sm_80: ~174 registers -> 1 program per SM;
    sm_90: ~116 -> 2); 3 in the interpreter (it runs programs one after another, and 3
    exercises the persistent loop and the reuse of scratch slots)."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.multi_processor_count * (2 if props.major >= 9 else 1)
    return 3


def _dot_precision(dtype: torch.dtype, device: torch.device) -> str:
    if dtype == torch.float32 and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


_ACC = {torch.float64: tl.float64}


def _stage_args(x, weights, biases, y, r3, r5, scratch):
    """Runtime pointer and stride arguments of the kernel, in its order."""
    w1, w3r, w3, w5r, w5, wp = weights
    dummy = y
    bias_ptrs = [b if b is not None else dummy for b in biases]
    bias_strides = [b.stride(0) if b is not None else 0 for b in biases]
    r3s = r3.stride() if r3 is not None else (0, 0, 0, 0)
    r5s = r5.stride() if r5 is not None else (0, 0, 0, 0)
    N, cin, H, W = x.shape
    return (
        x, w1, w3r, w3, w5r, w5, wp, *bias_ptrs, y,
        r3 if r3 is not None else dummy, r5 if r5 is not None else dummy,
        scratch if scratch is not None else dummy,
        N, H, W, cin, w1.shape[0], w3r.shape[0], w3.shape[0], w5r.shape[0], w5.shape[0], wp.shape[0],
        *x.stride(), *y.stride(), *r3s, *r5s,
        w1.stride(0), w1.stride(1), w3r.stride(0), w3r.stride(1), *w3.stride(),
        w5r.stride(0), w5r.stride(1), *w5.stride(), wp.stride(0), wp.stride(1),
        *bias_strides,
    )


def _inception_forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[Optional[torch.Tensor]],
    kernel_sizes: tuple[int, int],
    activation: Optional[str],
    *,
    schedule: str = "one_launch",
    save_reduce: bool = False,
):
    """Launch the fused forward on checked arguments (see ``_checks.check_inception_args``).

    Args:
        x: ``[N, Cin, H, W]`` on CUDA, or on CPU under ``TRITON_INTERPRET=1``; any strides.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, any strides, x's dtype and device.
        biases: ``(b1, b3r, b3, b5r, b5, bp)``, each ``[Cout]`` or None.
        kernel_sizes: ``(K3, K5)``, odd.
        activation: ``"relu"`` or None.
        schedule: ``"one_launch"`` (1 launch) or ``"two_launch"`` (2 launches).
        save_reduce: also return ``r3`` / ``r5`` (post-activation, channels_last storage).

    Returns:
        ``(y, r3, r5)``: y ``[N, c1+c3+c5+cp, H, W]`` in x's dtype and memory format;
        r3 / r5 ``[N, c3r|c5r, H, W]`` (channels_last storage) when ``save_reduce``, else None.

    Raises:
        ValueError: an unknown schedule, or a tensor too large for the kernel's int32
            per-image offsets.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    N, cin, H, W = x.shape
    k3, k5 = kernel_sizes
    c1, c3r, c3, c5r, c5, cp = (w.shape[0] for w in weights)
    if max(cin, c1 + c3 + c5 + cp, c3r, c5r) * H * W >= 2**31 or N * H * W >= 2**31:
        raise ValueError(
            f"x of shape {tuple(x.shape)} is too large: one image must have < 2^31 elements "
            f"and N*H*W < 2^31 pixels"
        )
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = torch.empty((N, c1 + c3 + c5 + cp, H, W), device=x.device, dtype=x.dtype, memory_format=fmt)
    need_r = save_reduce or schedule == "two_launch"
    r3 = r5 = None
    if need_r:
        r3 = torch.empty((N, c3r, H, W), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
        r5 = torch.empty((N, c5r, H, W), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    if N == 0 or H == 0 or W == 0:
        return y, r3, r5

    cfg = _pick_config((cin, c1, c3r, c3, c5r, c5, cp), H, W, x.dtype)
    consts = dict(
        K3=k3, K5=k5, RELU=activation == "relu",
        HAS_B1=biases[0] is not None, HAS_B3R=biases[1] is not None, HAS_B3=biases[2] is not None,
        HAS_B5R=biases[3] is not None, HAS_B5=biases[4] is not None, HAS_BP=biases[5] is not None,
        SAVE_R=bool(save_reduce), ACC=_ACC.get(x.dtype, tl.float32),
        TH=cfg["TH"], TW=cfg["TW"], BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        PREC=_dot_precision(x.dtype, x.device),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    guard = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with guard:
        _launch_stages(x, weights, biases, y, r3, r5, (c1, c3r, c3, c5r, c5, cp), kernel_sizes, schedule, cfg, consts)
    if not save_reduce:
        r3 = r5 = None
    return y, r3, r5


def _launch_stages(x, weights, biases, y, r3, r5, channels, kernel_sizes, schedule, cfg, consts):
    """Size the persistent grid and the scratch, then launch the schedule's stage(s)."""
    N, _, H, W = x.shape
    c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    bm, bn, th, tw = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["TH"], cfg["TW"]
    cdiv = triton.cdiv
    n_pt = cdiv(N * H * W, bm)
    t1, tp = cdiv(c1, bn), cdiv(cp, bn)
    max_programs = _resident_programs(x.device)
    if schedule == "one_launch":
        tiles_h, tiles_w = cdiv(H, th), cdiv(W, tw)
        n_jobs = 2 * N * tiles_h * tiles_w + n_pt * (t1 + tp)
        programs = min(n_jobs, max_programs)
        slot = max((th + k3 - 1) * (tw + k3 - 1) * c3r, (th + k5 - 1) * (tw + k5 - 1) * c5r)
        scratch = torch.empty((programs, slot), device=x.device, dtype=x.dtype)
        args = _stage_args(x, weights, biases, y, r3, r5, scratch)
        _launch(_inception_fwd_kernel, (programs,), *args, slot, tiles_h, tiles_w, n_jobs, STAGE=0, **consts)
    else:
        args = _stage_args(x, weights, biases, y, r3, r5, None)
        n_jobs = n_pt * (t1 + cdiv(c3r, bn) + cdiv(c5r, bn) + tp)
        _launch(_inception_fwd_kernel, (min(n_jobs, max_programs),), *args, 0, 0, 0, n_jobs, STAGE=1, **consts)
        n_jobs = n_pt * (cdiv(c3, bn) + cdiv(c5, bn))
        _launch(_inception_fwd_kernel, (min(n_jobs, max_programs),), *args, 0, 0, 0, n_jobs, STAGE=2, **consts)
