"""The fused Triton kernels for BatchNorm in training mode (inception_kernels.triton.batchnorm_train),
through ``fused_inception_bn``, against the plain-PyTorch reference (``reference.inception_bn``):
launch counts, determinism over several tiles and splits, odd inputs, fp16 three-way.

No torchvision needed (the module-level tests against torchvision's block are in
test_batchnorm.py), so CI's run with the GPU machine's torch and Triton can run these too.
Shapes are small: the kernels run in Triton's interpreter on the CPU.
"""

import pytest
import torch

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS
from inception_kernels.testing import count_launches
from inception_kernels.testing import THREE_WAY_ATOL, assert_three_way

from _support import assert_rel

pytestmark = pytest.mark.usefixtures("ieee_fp32")

#: GoogLeNet's 3a config (in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj).
L3A = GOOGLENET_INCEPTIONS["3a"].channels


def _problem(cfg, n, h, w, kernel_sizes, *, dtype=torch.float64, bias=False, affine=(True,) * 6, device="cpu",
             seed=0, channels_last=False):
    """Functional arguments: ``(x, weights, biases, running_means, running_vars, bn_weights, bn_biases)``;
    BatchNorm tensors fp32 for an fp16 x. ``affine[i]`` False: conv i has no BatchNorm weight (i even)
    or bias (i odd)."""
    g = torch.Generator().manual_seed(seed)
    cin, c1, c3r, c3, c5r, c5, cp = cfg
    k3, k5 = kernel_sizes
    shapes = [(c1, cin, 1, 1), (c3r, cin, 1, 1), (c3, c3r, k3, k3), (c5r, cin, 1, 1), (c5, c5r, k5, k5),
              (cp, cin, 1, 1)]
    bn_dtype = torch.float32 if dtype == torch.float16 else dtype

    def rnd(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (shift + scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(device, dt)

    weights = [rnd(*s, scale=(s[1] * s[2] * s[3]) ** -0.5) for s in shapes]
    biases = [rnd(s[0], scale=0.1) if bias else None for s in shapes]
    means = [rnd(s[0], scale=0.2, dt=bn_dtype) for s in shapes]
    variances = [rnd(s[0], scale=0.1, shift=1.0, dt=bn_dtype).abs() for s in shapes]
    gammas = [rnd(s[0], scale=0.3, shift=1.0, dt=bn_dtype) if affine[i] or i % 2 else None
              for i, s in enumerate(shapes)]
    betas = [rnd(s[0], scale=0.1, dt=bn_dtype) if affine[i] or i % 2 == 0 else None for i, s in enumerate(shapes)]
    x = rnd(n, cin, h, w)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x, weights, biases, means, variances, gammas, betas


def _run_functional(backend, x, weights, biases, means, variances, gammas, betas, grad, **kw):
    """One fused_inception_bn training call and its backward on fresh leaves / buffer copies: outputs,
    every gradient and the updated running statistics, by name (lists of six, None where absent)."""
    def leaf(ts):
        return None if ts is None else [t.detach().clone().requires_grad_() if t is not None else None for t in ts]

    x = x.detach().clone().requires_grad_()
    weights, biases, gammas, betas = leaf(weights), leaf(biases), leaf(gammas), leaf(betas)
    means = None if means is None else [t.clone() for t in means]
    variances = None if variances is None else [t.clone() for t in variances]
    y = ik.fused_inception_bn(x, weights, means, variances, gammas, betas, biases=biases, backend=backend, **kw)
    y.backward(grad)
    grad_of = lambda ts: [t.grad if t is not None else None for t in (ts or [None] * 6)]  # noqa: E731
    return {"y": [y.detach()], "x": [x.grad], "weights": grad_of(weights), "biases": grad_of(biases),
            "bn_weights": grad_of(gammas), "bn_biases": grad_of(betas), "running_means": means or [None] * 6,
            "running_vars": variances or [None] * 6}


def _assert_matches_reference(got, want, rtol, what):
    """Every output of _run_functional to ``rtol`` relative; the conv biases' gradients, which are 0
    mathematically under batch statistics (BatchNorm subtracts the mean), to ``rtol`` of the weight gradients."""
    assert got.keys() == want.keys()
    scale = max(w.abs().max().item() for w in want["weights"])
    for key in want:
        for i, (g, w) in enumerate(zip(got[key], want[key])):
            assert (g is None) == (w is None), (what, key, i)
            if w is None:
                continue
            assert g.dtype == w.dtype and g.shape == w.shape, (what, key, i)
            if key == "biases":
                assert g.abs().max().item() <= rtol * scale and w.abs().max().item() <= rtol * scale, (what, key, i)
            else:
                assert_rel(g, w, rtol, f"{what} {key}[{i}]")


#: Tiles small enough that every loop of the kernels runs several times at small shapes: pixel
#: tiles (40 pixels / 16), channel tiles (17 > 16), partial-sum blocks (3 tiles / 2 rows),
#: finishing blocks, weight-gradient splits (with _MIN_PIXELS_PER_SPLIT = 8: 5 splits).
_TINY_TILES = dict(BM=16, BN=16, BK=16, BLOCK_T=2, BLOCK_E=64, num_warps=4, num_stages=1)
#: Odd channel counts (in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj).
ODD = (20, 9, 10, 17, 3, 5, 4)


def test_triton_training_launches(device):
    """Forward: 3 Triton launches; backward: 5; no other kernel (no fill, copy or sum) in either."""
    x, weights, biases, means, variances, gammas, betas = _problem(ODD, 2, 5, 4, (3, 5), bias=True, device=device)
    x.requires_grad_()
    with count_launches() as fwd:
        y = ik.fused_inception_bn(x, weights, means, variances, gammas, betas, training=True, biases=biases,
                                  kernel_sizes=(3, 5), backend="triton")
    grad = torch.randn_like(y)
    with count_launches() as bwd:
        y.backward(grad)
    assert fwd.triton_kernels == ["_fwd_conv_kernel", "_fwd_conv_kernel", "_fwd_norm_kernel"], fwd
    assert bwd.triton_kernels == ["_bwd_stats_kernel"] + ["_bwd_grads_kernel"] * 3 + ["_bwd_finish_kernel"], bwd
    assert fwd.triton <= 3 and bwd.triton <= 5
    assert fwd.aten == 0 and bwd.aten == 0, (fwd.aten_ops, bwd.aten_ops)
    with count_launches() as eager:  # what the fused launches replace
        y = ik.reference.inception_bn(x, weights, means, variances, gammas, betas, training=True,
                                      kernel_sizes=(3, 5), biases=biases)
    assert eager.total >= 20, eager.aten_ops  # 6 x (conv, batch_norm, relu), max-pool, cat


@pytest.mark.parametrize("tiles", ["tiny", "interpreter"])
def test_triton_training_deterministic_multi_tile(tiles, monkeypatch, device):
    """Several pixel tiles, channel tiles, partial-sum blocks and weight-gradient splits (tiny
    tiles), or the interpreter's own tiles: fp64 against the reference to 1e-9 (outputs, every
    gradient, running statistics; per-conv momentum and eps, some BatchNorms without weight or
    bias, conv biases, kernel sizes (3, 5)), and two runs bitwise equal."""
    from inception_kernels.triton import batchnorm_train as bt

    if tiles == "tiny":
        monkeypatch.setattr(bt, "bn_training_tiles", lambda dtype, target: dict(_TINY_TILES))
        monkeypatch.setattr(bt, "_MIN_PIXELS_PER_SPLIT", 8)
    problem = _problem(ODD, 2, 5, 4, (3, 5), bias=True, affine=(True, False, True, True, False, True), device=device)
    grad = torch.randn(2, 9 + 17 + 5 + 4, 5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grad = grad.to(device)
    kw = dict(training=True, momentum=[0.1, 0.2, 0.0, 1.0, 0.5, 0.3], eps=[1e-3, 1e-5, 1e-2, 1e-4, 1e-3, 1e-1],
              kernel_sizes=(3, 5))
    want = _run_functional("reference", *problem, grad, **kw)
    first = _run_functional("triton", *problem, grad, **kw)
    second = _run_functional("triton", *problem, grad, **kw)
    _assert_matches_reference(first, want, 1e-9, tiles)
    for key in first:
        for i, (a, b) in enumerate(zip(first[key], second[key])):
            assert (a is None and b is None) or torch.equal(a, b), (key, i)


@pytest.mark.parametrize("case", ["no_relu_5x3_strided_views", "no_running_stats_no_affine_two_pixels",
                                  "channels_last_expanded_grad", "pool_ties"])
def test_triton_training_odd_inputs(case, device):
    """Odd inputs against the reference in fp64 (1e-9): a strided view of x and kernel sizes (5, 3)
    without activation; two values per channel (N*H*W = 2), no running statistics, no affine
    parameters; a channels_last x and an expanded (stride-0) upstream gradient; x of small
    integers, so that max-pool windows tie (the gradient goes to the first maximum, PyTorch's rule)."""
    kernel_sizes, activation, n, h, w = (3, 5), "relu", 2, 3, 5
    affine, stats, channels_last = (True,) * 6, True, False
    if case == "no_relu_5x3_strided_views":
        kernel_sizes, activation = (5, 3), None
    elif case == "no_running_stats_no_affine_two_pixels":
        n, h, w, affine, stats = 2, 1, 1, (False,) * 6, False
    elif case == "channels_last_expanded_grad":
        channels_last = True
    x, weights, biases, means, variances, gammas, betas = _problem(ODD, n, h, w, kernel_sizes, affine=affine,
                                                                   channels_last=channels_last, device=device)
    if not any(affine):
        gammas = betas = None
    if not stats:
        means = variances = None
    if case == "no_relu_5x3_strided_views":
        x = torch.randn(n, ODD[0] * 2, h, w + 3, dtype=torch.float64, device=device)[:, ::2, :, 1:w + 1]
        assert not x.is_contiguous()
    if case == "pool_ties":
        x = torch.randint(-1, 2, x.shape, generator=torch.Generator().manual_seed(1)).to(device, torch.float64)
    cout = ODD[1] + ODD[3] + ODD[5] + ODD[6]
    grad = torch.randn(n, cout, h, w, dtype=torch.float64, device=device)
    if case == "channels_last_expanded_grad":
        grad = torch.randn(1, cout, 1, 1, dtype=torch.float64, device=device).expand(n, cout, h, w)
    kw = dict(training=True, eps=1e-3, kernel_sizes=kernel_sizes, activation=activation)
    want = _run_functional("reference", x, weights, biases, means, variances, gammas, betas, grad, **kw)
    got = _run_functional("triton", x, weights, biases, means, variances, gammas, betas, grad, **kw)
    _assert_matches_reference(got, want, 1e-9, case)
    if channels_last:
        assert got["y"][0].is_contiguous(memory_format=torch.channels_last)


def test_triton_training_empty_batch(device):
    """N = 0: an empty y, no launch, the running statistics left alone (as F.batch_norm)."""
    x, weights, biases, means, variances, gammas, betas = _problem(ODD, 0, 5, 4, (3, 5), device=device)
    before = [t.clone() for t in (*means, *variances)]
    with count_launches() as launches:
        y = ik.fused_inception_bn(x, weights, means, variances, gammas, betas, training=True, kernel_sizes=(3, 5),
                                  backend="triton")
    assert y.shape == (0, 9 + 17 + 5 + 4, 5, 4) and launches.triton == 0
    assert all(torch.equal(a, b) for a, b in zip((*means, *variances), before))


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_train_fp16_gradients_three_way(backend, device):
    """fp16, every gradient (x, conv weights and biases, BatchNorm weights and biases), the output and
    the running statistics, three-way against fp64 on the same inputs: the block without ReLU
    (``activation=None``), where gradients are continuous (see test_batchnorm.py::test_train_low_precision_three_way).
    GoogLeNet's 3a channels, kernel sizes (3, 5), conv biases, fp32 BatchNorm tensors (mixed precision)."""
    cfg, (n, h, w) = L3A, (2, 5, 4)
    x16, weights, biases, means, variances, gammas, betas = _problem(cfg, n, h, w, (3, 5), dtype=torch.float16,
                                                                     bias=True, device=device)
    grad = torch.randn(n, 256, h, w, generator=torch.Generator().manual_seed(5)).to(device, torch.float16)
    kw = dict(training=True, momentum=0.1, eps=1e-3, kernel_sizes=(3, 5), activation=None)
    d = lambda ts: [t.double() if t is not None else None for t in ts]  # noqa: E731
    exact = _run_functional("reference", x16.double(), d(weights), d(biases), d(means), d(variances), d(gammas),
                            d(betas), grad.double(), **kw)
    torch16 = _run_functional("reference", x16, weights, biases, means, variances, gammas, betas, grad, **kw)
    fused = _run_functional(backend, x16, weights, biases, means, variances, gammas, betas, grad, **kw)
    assert fused["y"][0].dtype == torch.float16 and fused["bn_weights"][0].dtype == torch.float32
    for key in exact:
        for i, (want, t16, got) in enumerate(zip(exact[key], torch16[key], fused[key])):
            if want is None:
                continue
            atol = THREE_WAY_ATOL["batchnorm"][torch.float16] * max(1.0, want.abs().max().item())
            assert_three_way(got, t16, want, atol=atol, what=f"{key}[{i}]")
