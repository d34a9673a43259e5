"""Test support shared by the suites (import it as ``from _support import ...``; pytest puts
``tests/`` on ``sys.path``): the library's :mod:`inception_kernels.testing` (input makers,
BatchNorm randomizer, the tolerance table, the three-way check), re-exported, and helpers that
only tests need.

The oracle of the fused op is :func:`inception_kernels.reference.inception`. For non-finite
weights it has one blind spot: PyTorch's CPU ``F.conv2d`` multiplies the zero padding by the
weight (``0 * inf = NaN`` at the border) where a convolution has no term at all. The fused
kernels follow the mathematical definition (padding taps contribute nothing, issue 16 item 8),
and :func:`inception_valid_taps` is the oracle for it.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

# The shared support of the library (input makers, BatchNorm randomizer, tolerance table,
# three-way check), re-exported so that a suite imports its helpers from one place.
from inception_kernels.testing import (
    THREE_WAY_ATOL, TOLERANCES, InceptionInputs, assert_three_way, make_inception_inputs, randomize_batchnorm,
    three_way_errors, tolerance,
)

__all__ = [
    "THREE_WAY_ATOL", "TOLERANCES", "InceptionInputs", "assert_three_way", "make_inception_inputs",
    "randomize_batchnorm", "three_way_errors", "tolerance", "make_relu_inputs",
    "conv_valid_taps", "inception_valid_taps", "nonfinite_corner_taps", "assert_same_nonfinite", "assert_rel",
]


def conv_valid_taps(r, w, b=None):
    """A KxK conv (stride 1, pad K//2) in which the zero padding contributes nothing: the sum
    over taps, each an F.conv2d of its 1x1 slice of w over the pixels where that tap reads
    inside the image. Equal to F.conv2d(r, w, b, padding=K//2) for finite weights; with a
    non-finite weight it gives no 0*inf at the border (torch 2.14's CPU F.conv2d does)."""
    n, _, h, wd = r.shape
    k = w.shape[-1]
    p = k // 2
    out = torch.zeros(n, w.shape[0], h, wd, dtype=r.dtype)
    for dy in range(k):
        for dx in range(k):
            oy0, oy1 = max(0, p - dy), min(h, h + p - dy)
            ox0, ox1 = max(0, p - dx), min(wd, wd + p - dx)
            if oy0 >= oy1 or ox0 >= ox1:
                continue
            src = r[:, :, oy0 + dy - p:oy1 + dy - p, ox0 + dx - p:ox1 + dx - p]
            out[:, :, oy0:oy1, ox0:ox1] += F.conv2d(src, w[:, :, dy:dy + 1, dx:dx + 1])
    return out if b is None else out + b.view(1, -1, 1, 1)


def inception_valid_taps(x, ws, bs, activation="relu"):
    """reference.inception with the KxK convs of conv_valid_taps (autograd-able)."""
    act = F.relu if activation == "relu" else (lambda t: t)
    b = bs or [None] * 6
    y1 = act(F.conv2d(x, ws[0], b[0]))
    y3 = act(conv_valid_taps(act(F.conv2d(x, ws[1], b[1])), ws[2], b[2]))
    y5 = act(conv_valid_taps(act(F.conv2d(x, ws[3], b[3])), ws[4], b[4]))
    yp = act(F.conv2d(F.max_pool2d(x, 3, stride=1, padding=1), ws[5], b[5]))
    return torch.cat([y1, y3, y5, yp], dim=1)


def nonfinite_corner_taps(ws):
    """±inf and NaN in corner taps of both KxK weights (w3: K=3, w5: K=5; needs c3 >= 3,
    c3r >= 4, c5 >= 4, c5r >= 5)."""
    ws = [w.clone() for w in ws]
    inf, nan = float("inf"), float("nan")
    ws[2][0, 0, 0, 0] = inf
    ws[2][1, 3, 2, 2] = -inf
    ws[2][2, 1, 0, 2] = nan
    ws[4][0, 0, 4, 4] = -inf
    ws[4][1, 2, 0, 0] = inf
    ws[4][3, 4, 4, 0] = nan
    return ws


def assert_same_nonfinite(got, want, what, close):
    """Same NaN / +inf / -inf positions, and finite values checked by ``close(got, want, what)``."""
    for name, f in (("NaN", torch.isnan), ("+inf", lambda t: t == float("inf")), ("-inf", lambda t: t == -float("inf"))):
        bad = (f(got) != f(want)).sum().item()
        assert bad == 0, f"{what}: {bad} elements differ in where they are {name}"
    ok = torch.isfinite(want)
    if ok.any():
        close(got[ok], want[ok], f"{what} (finite)")


#: Inputs of the backward and CUDA suites: Kaiming ("he") weights and biases of std 0.2 keep the
#: activations O(1) through the reduce -> ReLU -> KxK chain, so gradients are O(1) too.
make_relu_inputs = partial(make_inception_inputs, weight_init="he", bias_scale=0.2)


def assert_rel(got, want, rtol, what=""):
    """max |got - want| <= rtol * max |want| (relative to the largest magnitude)."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} x {scale:.3g}"
