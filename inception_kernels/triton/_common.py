"""Shared Triton building blocks of the fused Inception kernels, forward and backward.

Every product of the fused op is an implicit GEMM whose rows are *flat pixels*
``p = (n * H + h) * W + w`` of ``N*H*W`` (docs/design.md §4). A pixel tile is a run of ``BM``
consecutive flat pixels; it may straddle images. A KxK tap shifts a pixel by ``(dh, dw)``,
i.e. by ``dh * W + dw`` flat pixels, and is valid when ``(h + dh, w + dw)`` lies in the image
(zero padding otherwise, ``-inf`` for the max-pool). ``H`` and ``W`` are compile-time
constants of every kernel of the forward and the backward (one specialization per layer), so
these divisions are cheap and the compiler can prove the alignment of every operand load.
:func:`_tap_ok` also takes them as runtime integers (the BatchNorm training kernels,
``triton/batchnorm_train.py``, compile once for every image size): a Triton call specializes
on the constexpr-ness of its arguments, not on the callee's annotations, so the constexpr
callers compile exactly as before.

Activations are addressed by element strides ``(s_n, s_c, s_h, s_w)``: channels_last tensors
(``s_c == 1``, the fast path) give 16-byte vector loads; any other layout is correct, only
slower. Weights are addressed by compile-time strides, so a channels_last KxK weight
(``[Cout, K, K, Cin]`` in memory) is one contiguous ``K*K*Cin`` row per output channel and the
(tap, channel) reduction of a KxK conv is one flat, contiguous K loop.

Limits: offsets inside one image are int32; image offsets are int64 (``n * s_n``); the
launchers check that one image has fewer than 2^31 elements and ``N*H*W < 2^31``.
"""

import triton
import triton.language as tl


@triton.jit
def _pixel_rows(p, NHW, s_n, s_h, s_w, H: tl.constexpr, W: tl.constexpr):
    """Flat pixels ``p`` (int32 ``[BM]``) -> ``(offset, h, w, ok)``.

    ``offset`` (int64) is the element offset of channel 0 of each pixel for a tensor of pixel
    strides ``(s_n, s_h, s_w)``; ``ok`` is ``0 <= p < NHW``. Rows with ``ok`` False carry
    meaningless coordinates and must be masked by the caller.
    """
    ok = (p >= 0) & (p < NHW)
    q = tl.where(ok, p, 0)
    w = q % W
    t = q // W
    h = t % H
    n = t // H
    return n.to(tl.int64) * s_n + (h * s_h + w * s_w), h, w, ok


@triton.jit
def _tap_ok(h, w, dh, dw, H, W):
    """``(h + dh, w + dw)`` lies inside the ``H x W`` image (broadcasting)."""
    hh = h + dh
    ww = w + dw
    return (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)


@triton.jit
def _bias_acc(b_ptrs, b_ok, BM: tl.constexpr, BN: tl.constexpr, ACC: tl.constexpr):
    """A ``[BM, BN]`` accumulator that starts at the bias (``b_ptrs``/``b_ok`` ``[BN]``; columns
    without a bias start at 0). The bias is loaded as a ``[BM, BN]`` broadcast (every row
    reads the same L1-resident values): a ``[BN]`` load spreads 128 values over 128 threads,
    one scalar 16-bit load each."""
    z = tl.zeros((BM, BN), tl.int32)
    return tl.load(b_ptrs[None, :] + z, mask=b_ok[None, :] & (z == 0), other=0.0).to(ACC)


@triton.jit
def _act(acc, RELU: tl.constexpr):
    """The activation: ReLU (NaN stays NaN, as in ``torch.relu``) or identity."""
    if RELU:
        acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)
    return acc


@triton.jit
def _pool_tile(x_ptr, x_row, h, w, row_ok, ci, ci_ok, s_c, s_h, s_w, H: tl.constexpr, W: tl.constexpr):
    """``[BM, BK]`` tile of ``maxpool3x3(x)`` (stride 1, ``-inf`` padding, NaN propagating like
    PyTorch) at pixels ``x_row``/``(h, w)`` and channels ``ci``; zero on masked rows and columns
    (so that it is a safe GEMM operand)."""
    cols = (ci * s_c)[None, :]
    a = tl.load(x_ptr + x_row[:, None] + cols, mask=row_ok[:, None] & ci_ok[None, :], other=float("-inf"))
    for q in range(8):  # the 8 neighbours; a loop (not unrolled) keeps one neighbour tile live
        t = q + (q >= 4)
        ok = row_ok & _tap_ok(h, w, t // 3 - 1, t % 3 - 1, H, W)
        v = tl.load(x_ptr + (x_row + ((t // 3 - 1) * s_h + (t % 3 - 1) * s_w))[:, None] + cols,
                    mask=ok[:, None] & ci_ok[None, :], other=float("-inf"))
        a = tl.maximum(a, v, propagate_nan=tl.PropagateNan.ALL).to(a.dtype)  # (bf16 max promotes)
    return tl.where(row_ok[:, None] & ci_ok[None, :], a, 0.0).to(x_ptr.dtype.element_ty)


@triton.jit
def _tap_of(k, C: tl.constexpr, KS: tl.constexpr):
    """Flat reduction index ``k = tap * C + c`` of a KxK conv -> ``(c, kh, kw)``; for a 1x1 conv
    (``KS == 1``) simply ``(k, 0, 0)``, which keeps the compiler's alignment facts about ``k``."""
    if KS == 1:
        return k, 0 * k, 0 * k
    tap = k // C
    return k % C, tap // KS, tap % KS
