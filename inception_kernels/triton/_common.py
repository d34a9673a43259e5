"""Shared Triton building blocks of the fused Inception kernels.

Every convolution of an Inception module -- the 1x1s on ``x``, the 1x1 projection of the
max-pooled ``x``, the reduce 1x1 over a halo tile, the KxK conv over the reduce output -- is
one implicit GEMM tile computed by :func:`_conv_tile`:

    acc[m, n] += sum_{kh, kw, ci} src[pixel m shifted by (kh - KS//2, kw - KS//2), ci]
                                  * w[co[n], ci, kh, kw]

The source is addressed by strides, so NCHW, channels_last, strided views and the
program-private scratch of the one-launch kernel are all the same code. A pixel is named by
its int64 offset ``pix_off`` (offset of channel 0 of the centre tap) and its ``(pix_h, pix_w)``
coordinates in a source grid of ``src_h x src_w``: taps that fall outside the grid read zero
(zero padding), or -inf for the max-pool, and are never dereferenced.

Limits: offsets inside one image (``c * H * W``) and inside a weight are int32; the batch
term of ``pix_off`` is int64 (callers build it from an int64 image index), so a batch may
exceed 2^31 elements but one image may not (the launcher checks).

These helpers are used by the forward (``inception_fwd.py``) and are meant for the backward.
"""

import triton
import triton.language as tl


@triton.jit
def _conv_tile(
    acc,  # [BLOCK_M, BLOCK_N] accumulator (fp32, or fp64 for fp64 inputs)
    src_ptr,  # source map: element (pixel m, channel c) at src_ptr + pix_off[m] + c * src_sc
    pix_off,  # [BLOCK_M] int64 offset of channel 0 of each output pixel's centre tap
    pix_h,  # [BLOCK_M] row of each output pixel in the source grid
    pix_w,  # [BLOCK_M] column of each output pixel in the source grid
    pix_ok,  # [BLOCK_M] bool: the output pixel exists (masked rows read nothing)
    src_h,  # source grid height (taps outside [0, src_h) read the padding value)
    src_w,  # source grid width
    src_sh,  # element stride of one source row
    src_sw,  # element stride of one source column
    src_sc,  # element stride of one source channel
    C,  # reduction channels (channel tails are masked)
    w_ptr,  # [Cout, C, KS, KS] weight, by strides
    co,  # [BLOCK_N] output channels of this tile
    co_ok,  # [BLOCK_N] bool: co < Cout
    w_so,  # weight strides: output channel, input channel, kernel row, kernel column
    w_si,
    w_sh,
    w_sw,
    KS: tl.constexpr,  # odd kernel size; "same" padding KS // 2
    POOL: tl.constexpr,  # max-pool 3x3/s1/pad1 (-inf padding) the source before the GEMM (KS must be 1)
    BLOCK_K: tl.constexpr,  # channels per tl.dot step
    PREC: tl.constexpr,  # tl.dot input_precision: "ieee" or "tf32"
):
    """Add one implicit-GEMM conv tile to ``acc`` and return it (see the module docstring).

    Taps and channel chunks are runtime loops (not unrolled) to keep register pressure flat;
    the pool variant keeps a running max over its 9 taps while loading the A operand, so the
    pooled map never reaches memory.
    """
    PAD: tl.constexpr = KS // 2
    offs_k = tl.arange(0, BLOCK_K)
    for t in range(KS * KS):
        dh = t // KS - PAD
        dw = t % KS - PAD
        th = pix_h + dh
        tw = pix_w + dw
        tap_ok = pix_ok & (th >= 0) & (th < src_h) & (tw >= 0) & (tw < src_w)
        tap_off = pix_off + (dh * src_sh + dw * src_sw)
        w_tap = w_ptr + (t // KS) * w_sh + (t % KS) * w_sw
        for c0 in range(0, C, BLOCK_K):
            ci = c0 + offs_k
            ci_ok = ci < C
            if POOL:
                a_ptrs = src_ptr + tap_off[:, None] + (ci * src_sc)[None, :]
                a = tl.load(a_ptrs, mask=tap_ok[:, None] & ci_ok[None, :], other=float("-inf"))
                for q in range(8):
                    q9 = q + (q >= 4)  # the 8 neighbours of the centre tap
                    qh = pix_h + (q9 // 3 - 1)
                    qw = pix_w + (q9 % 3 - 1)
                    q_ok = pix_ok & (qh >= 0) & (qh < src_h) & (qw >= 0) & (qw < src_w)
                    q_off = tap_off + ((q9 // 3 - 1) * src_sh + (q9 % 3 - 1) * src_sw)
                    v = tl.load(
                        src_ptr + q_off[:, None] + (ci * src_sc)[None, :],
                        mask=q_ok[:, None] & ci_ok[None, :],
                        other=float("-inf"),
                    )
                    a = tl.maximum(a, v, propagate_nan=tl.PropagateNan.ALL).to(src_ptr.dtype.element_ty)  # bf16 max promotes
                # rows of absent pixels and channel tails are -inf: zero them (-inf * 0 = NaN)
                a = tl.where(pix_ok[:, None] & ci_ok[None, :], a, 0.0).to(src_ptr.dtype.element_ty)
            else:
                a = tl.load(
                    src_ptr + tap_off[:, None] + (ci * src_sc)[None, :],
                    mask=tap_ok[:, None] & ci_ok[None, :],
                    other=0.0,
                )
            b = tl.load(
                w_tap + (ci * w_si)[:, None] + (co * w_so)[None, :],
                mask=ci_ok[:, None] & co_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(a, b, acc, input_precision=PREC)
    return acc


@triton.jit
def _bias_act(
    acc,  # [BLOCK_M, BLOCK_N] accumulator
    b_ptr,  # [Cout] bias by stride (unused when HAS_BIAS is False)
    b_s,  # bias element stride
    co,  # [BLOCK_N] output channels
    co_ok,  # [BLOCK_N] bool
    HAS_BIAS: tl.constexpr,
    RELU: tl.constexpr,
):
    """Epilogue: ``act(acc + b)`` in the accumulator's precision."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + co * b_s, mask=co_ok, other=0.0).to(acc.dtype)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN, as in torch.relu
    return acc
