"""The fused backward against autograd through the reference, on every fused backend.

Every gradient -- dx and the six weight and six bias gradients -- is compared with
``torch.autograd.grad`` of ``reference.inception`` for the same ``grad_output``. The ``backend``
fixture (conftest.py) runs each test on the Triton backward launcher (``triton/backward.py``)
and on the CUDA C++ backward through the custom op ``inception_kernels::fused_inception_backward``
(needs a GPU and the built extension; skipped without them). Without a GPU
the kernels run in the Triton interpreter (tests/conftest.py), which is slow: the nine
GoogLeNet configs run at their real channel counts on tiny spatial sizes, and the layout,
shape and semantics variants run on a small module with awkward channel counts.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, reference
from inception_kernels.testing import WGRAD_SPLIT, count_launches, override_wgrad_split
from inception_kernels.testing import THREE_WAY_ATOL, assert_three_way, make_inception_inputs, tolerance

from _support import make_relu_inputs as _make

# Awkward channel counts (not multiples of 8), for the variant tests.
SMALL = InceptionSpec(20, 7, 12, 9, 5, 6, 11)

GRAD_NAMES = ("dx", "dw1", "dw3r", "dw3", "dw5r", "dw5", "dwp",
              "db1", "db3r", "db3", "db5r", "db5", "dbp")


def _backward_fn():
    # Imported lazily: the kernels must be defined after conftest chose the interpreter.
    from inception_kernels.testing import triton_backward

    return triton_backward


def _reference_grads(x, ws, bs, grad_y, kernel_sizes, activation):
    """Output, reduce outputs and autograd gradients of the reference (13 entries, None for
    absent biases)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in [x, *ws, *(bs or [])]]
    xr, wr, br = leaves[0], leaves[1:7], (leaves[7:] if bs is not None else None)
    y = reference.inception(xr, wr, br, kernel_sizes=kernel_sizes, activation=activation)
    grads = torch.autograd.grad(y, leaves, grad_y)
    act = F.relu if activation == "relu" else (lambda t: t)
    with torch.no_grad():
        r3 = act(F.conv2d(x, ws[1], bs[1] if bs else None))
        r5 = act(F.conv2d(x, ws[3], bs[3] if bs else None))
    grads = list(grads) + ([None] * 6 if bs is None else [])
    return y.detach(), r3, r5, grads


def _run(backend, x, ws, bs, grad_y, y, r3, r5, kernel_sizes, activation, needs_input_grad=None):
    """The 13 gradients ``[dx, dw1..dwp, db1..dbp]`` (None where not computed) of one backend:
    Triton's backward launcher, or for "cuda" the custom op, given r3 / r5 channels_last as
    the forward saves them and the flags autograd would pass (False for absent biases)."""
    if backend == "triton":
        kw = {} if needs_input_grad is None else dict(needs_input_grad=needs_input_grad)
        dx, dws, dbs = _backward_fn()(grad_y, x, y, r3, r5, ws, bs, kernel_sizes, activation, **kw)
        return [dx, *dws, *dbs]
    from inception_kernels.testing import split_grads

    bs = bs if bs is not None else [None] * 6
    needs = [True] * 13 if needs_input_grad is None else list(needs_input_grad)
    needs = [n and (i < 7 or bs[i - 7] is not None) for i, n in enumerate(needs)]
    cl = torch.channels_last
    dx, flat = torch.ops.inception_kernels.fused_inception_backward(
        grad_y, x, y, r3.contiguous(memory_format=cl), r5.contiguous(memory_format=cl), ws, bs, *kernel_sizes,
        activation or "none", needs, backend,
    )
    return [dx if needs[0] else None, *split_grads(flat, ws, bs, needs)]


def _assert_grads(mine, ref, atol, rtol, names=GRAD_NAMES):
    for name, m, r in zip(names, mine, ref):
        if r is None:
            assert m is None, f"{name}: expected None"
            continue
        assert m is not None, f"{name}: missing"
        assert m.shape == r.shape and m.dtype == r.dtype, f"{name}: {m.shape} {m.dtype} vs {r.shape} {r.dtype}"
        scale = r.abs().max().item() if r.numel() else 1.0
        torch.testing.assert_close(m, r, atol=atol * max(scale, 1e-30), rtol=rtol, msg=lambda s: f"{name}: {s}")


def _check(backend, spec, n, h, w, dtype, device, *, kernel_sizes=(3, 5), activation="relu", bias=True,
           channels_last=False, grad_layout="contiguous", x=None):
    spec = spec.with_(kernel_sizes=kernel_sizes)
    x, ws, bs = _make(spec, n, h, w, dtype, device, bias=bias, x=x)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(1)
    grad_y = torch.randn(n, spec.out_channels, h, w, generator=gen, dtype=torch.float64).to(device, dtype)
    if grad_layout == "channels_last":
        grad_y = grad_y.to(memory_format=torch.channels_last)
    elif grad_layout == "strided":  # non-contiguous: every other element of a wider tensor
        wide = torch.zeros(n, spec.out_channels, h, 2 * w, dtype=dtype, device=device)
        wide[..., ::2] = grad_y
        grad_y = wide[..., ::2]
        assert not grad_y.is_contiguous()
    y, r3, r5, ref = _reference_grads(x, ws, bs, grad_y, kernel_sizes, activation)
    mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, kernel_sizes, activation)
    _assert_grads(mine, ref, *tolerance("backward", dtype))
    if channels_last and h * w > 1:
        assert mine[0].is_contiguous(memory_format=torch.channels_last) and not mine[0].is_contiguous()
    return mine


#: fp32 checks compare exact products: TF32 off (matters on a GPU only).
pytestmark = pytest.mark.usefixtures("ieee_fp32")


# ------------------------------------------------------------------------------------------
# The nine GoogLeNet modules at real channel counts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GOOGLENET_INCEPTIONS))
def test_googlenet_configs_fp32(name, device, backend):
    _check(backend, GOOGLENET_INCEPTIONS[name], 1, 3, 4, torch.float32, device)


@pytest.mark.parametrize("name", list(GOOGLENET_INCEPTIONS))
def test_googlenet_configs_fp16_three_way(name, device, backend):
    """fp16: the kernel's error against an fp64 reference is at most 2x PyTorch's own fp16
    error (same inputs, autograd through the reference in fp16), plus half an fp16 ulp of the
    largest gradient (2^-11): PyTorch's CPU fp16 convs accumulate in fp32 and round once, so
    its error is often just the final rounding, which the kernel shares (measured here: the
    kernel's error is at most PyTorch's on every gradient of 3a)."""
    spec = GOOGLENET_INCEPTIONS[name]
    x, ws, bs = _make(spec, 1, 4, 3, torch.float16, device)
    gen = torch.Generator().manual_seed(1)
    grad_y = torch.randn(1, spec.out_channels, 4, 3, generator=gen).to(device, torch.float16)
    d = lambda t: t.double() if t is not None else None  # noqa: E731
    y, r3, r5, ref16 = _reference_grads(x, ws, bs, grad_y, (3, 5), "relu")
    # fp64 reference on the same (fp16-representable) inputs; the kernel gets the fp16 y, r3, r5.
    _, _, _, ref64 = _reference_grads(d(x), [d(w) for w in ws], [d(b) for b in bs], d(grad_y), (3, 5), "relu")
    mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    for name_, m, r16, r64 in zip(GRAD_NAMES, mine, ref16, ref64):
        assert m.dtype == torch.float16, name_
        assert_three_way(m, r16, r64, atol=THREE_WAY_ATOL["backward"][torch.float16], relative=True, what=name_)


# ------------------------------------------------------------------------------------------
# Variants on a small module
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,h,w,kernel_sizes,activation,bias,dtype",
    [
        (2, 5, 4, (3, 5), "relu", True, torch.float64),
        (2, 5, 4, (3, 5), "relu", True, torch.float32),
        (1, 3, 7, (3, 5), None, True, torch.float32),
        (3, 4, 3, (3, 3), "relu", False, torch.float64),
        (1, 1, 1, (3, 5), "relu", True, torch.float32),
        (1, 7, 5, (5, 3), None, False, torch.float64),
        (1, 2, 11, (3, 3), None, True, torch.float32),
    ],
)
def test_variants(n, h, w, kernel_sizes, activation, bias, dtype, device, backend):
    _check(backend, SMALL, n, h, w, dtype, device, kernel_sizes=kernel_sizes, activation=activation, bias=bias)


@pytest.mark.parametrize("channels_last,grad_layout", [(True, "channels_last"), (True, "contiguous"),
                                                       (False, "strided")])
def test_layouts(channels_last, grad_layout, device, backend):
    _check(backend, SMALL, 2, 5, 3, torch.float64, device, channels_last=channels_last, grad_layout=grad_layout)


@pytest.fixture
def split_small():
    """Several partial sums per weight gradient even on a small problem (the split rule both
    backends take from _layout, with no minimum of pixels per split)."""
    with override_wgrad_split(dataclasses.replace(WGRAD_SPLIT, min_pixels=1)):
        yield


def test_many_pixel_tiles_and_pixel_splits(device, split_small):
    """More pixels than one tile, and weight gradients reduced over several pixel splits."""
    import inception_kernels.triton.backward as bw

    from inception_kernels.testing import triton_target as target_of

    channels = (SMALL.in_channels, SMALL.ch1x1, SMALL.ch3x3red, SMALL.ch3x3, SMALL.ch5x5red, SMALL.ch5x5,
                SMALL.pool_proj)
    plan = bw._backward_plan(channels, SMALL.kernel_sizes, 1, 9, 11, torch.float64, target_of(torch.device(device)),
                             True, [True] * 6)
    assert plan.S > 1 and plan.BM < 9 * 11
    _check("triton", SMALL, 1, 9, 11, torch.float64, device)


def test_maxpool_ties_route_like_pytorch(device, backend):
    """Integer-valued x: most 3x3 windows hold several equal maxima; dx must route each
    window's gradient to the same position as PyTorch's max_pool2d backward (first in scan)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (2, SMALL.in_channels, 6, 5), generator=gen).double()
    mine = _check(backend, SMALL, 2, 6, 5, torch.float64, device, activation=None, x=x)
    assert mine[0].abs().sum() > 0


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul")  # NaN x in the dW products
def test_maxpool_nan_and_inf_route_like_pytorch(device, backend):
    """NaN wins its windows (the last NaN in scan order); -inf windows route to their first
    pixel; padding never wins. Only the pool branch is non-zero, so dx is pure routing."""
    spec = SMALL
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 3, (1, spec.in_channels, 5, 6), generator=gen).double()
    x[0, 0, 1, 1] = x[0, 0, 1, 3] = x[0, 2, 4, 5] = float("nan")
    x[0, 1] = float("-inf")
    x[0, 3, :2, :2] = float("-inf")
    x, ws, bs = _make(spec, 1, 5, 6, torch.float64, device, x=x)
    ws = [w if i == 5 else torch.zeros_like(w) for i, w in enumerate(ws)]
    grad_y = torch.randn(1, spec.out_channels, 5, 6, generator=gen, dtype=torch.float64).to(device)
    y, r3, r5, ref = _reference_grads(x, ws, bs, grad_y, (3, 5), None)
    dx = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), None)[0]
    torch.testing.assert_close(dx, ref[0], atol=1e-12, rtol=1e-10, equal_nan=True)
    assert torch.isfinite(dx).all() and dx[0, 1].abs().sum() > 0


# ------------------------------------------------------------------------------------------
# Launches, determinism, skipped gradients, edge cases, bad input
# ------------------------------------------------------------------------------------------


def _small_problem(device, dtype=torch.float32, n=2, h=5, w=4):
    x, ws, bs = _make(SMALL, n, h, w, dtype, device)
    grad_y = torch.randn(n, SMALL.out_channels, h, w, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    y, r3, r5, ref = _reference_grads(x, ws, bs, grad_y, (3, 5), "relu")
    return (x, ws, bs, grad_y, y, r3, r5), ref


#: The launches of the backward, named by the CUDA kernels' stages (csrc/inception_fused_bwd.cu).
ALL_STAGES = ("reduce_grad", "grads", "sum_partials")


def _assert_launches(launches, backend, stages):
    """One launch per stage, in order: Triton's kernel count; for CUDA every kernel the device
    ran (so a hidden fill or copy would count) is exactly ``inception_<stage>_kernel``. No aten
    op either way."""
    kernels = launches.fused_kernels(backend)
    assert len(kernels) == len(stages), kernels
    if backend == "cuda":
        for name, stage in zip(kernels, stages):
            assert f"inception_{stage}_kernel" in name, (kernels, stages)
    assert launches.aten == 0, launches.aten_ops


def test_three_launches_no_aten_kernels_deterministic(device, split_small, backend):
    """The whole backward is 3 launches and no other kernel (no fill, sum or copy),
    and bitwise reproducible, also under ``torch.use_deterministic_algorithms(True)``;
    with several partial sums per gradient (split_small)."""
    (x, ws, bs, grad_y, y, r3, r5), _ = _small_problem(device, n=1, h=5, w=4)
    with count_launches(cuda=backend == "cuda") as launches:
        first = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    _assert_launches(launches, backend, ALL_STAGES)
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        second = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    finally:
        torch.use_deterministic_algorithms(old)
    for name, a, b in zip(GRAD_NAMES, first, second):
        assert torch.equal(a, b), name


def test_needs_input_grad_skips(device, backend):
    (x, ws, bs, grad_y, y, r3, r5), ref = _small_problem(device)
    only_dx = [True] + [False] * 12
    with count_launches(cuda=backend == "cuda") as launches:
        mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu", needs_input_grad=only_dx)
    _assert_launches(launches, backend, ("reduce_grad", "grads"))  # no parameter gradient: no partial sum
    _assert_grads(mine, [ref[0]] + [None] * 12, *tolerance("backward", torch.float32))
    # weights of the 1x1 and pool branches only, plus one bias
    needs = [False, True, False, False, False, False, True, False, False, False, False, False, True]
    with count_launches(cuda=backend == "cuda") as launches:
        mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu", needs_input_grad=needs)
    _assert_launches(launches, backend, ("grads", "sum_partials"))  # nothing needs gr3 / gr5
    _assert_grads(mine, [r if k else None for r, k in zip(ref, needs)], *tolerance("backward", torch.float32))


def test_empty_batch(device, backend):
    x, ws, bs = _make(SMALL, 0, 4, 4, torch.float32, device)
    y = torch.empty(0, SMALL.out_channels, 4, 4, device=device)
    r3 = torch.empty(0, SMALL.ch3x3red, 4, 4, device=device)
    r5 = torch.empty(0, SMALL.ch5x5red, 4, 4, device=device)
    mine = _run(backend, x, ws, bs, torch.empty_like(y), y, r3, r5, (3, 5), "relu")
    assert mine[0].shape == x.shape
    for name, g, w in zip(GRAD_NAMES[1:], mine[1:], [*ws, *bs]):
        assert g.shape == w.shape and not g.any(), name


def test_bad_input(device):
    (x, ws, bs, grad_y, y, r3, r5), _ = _small_problem(device)
    bw = _backward_fn()
    with pytest.raises(ValueError, match="grad_y has shape"):
        bw(grad_y[:, 1:], x, y, r3, r5, ws, bs, (3, 5), "relu")
    with pytest.raises(ValueError, match="r5 has shape"):
        bw(grad_y, x, y, r3, r3, ws, bs, (3, 5), "relu")
    with pytest.raises(TypeError, match="y has dtype"):
        bw(grad_y, x, y.double(), r3, r5, ws, bs, (3, 5), "relu")
    with pytest.raises(ValueError, match="needs_input_grad must be 13 bools"):
        bw(grad_y, x, y, r3, r5, ws, bs, (3, 5), "relu", needs_input_grad=(True, True))
    with pytest.raises(ValueError, match="weight w3 has shape"):
        bw(grad_y, x, y, r3, r5, ws, bs, (5, 5), "relu")


# ------------------------------------------------------------------------------------------
# gradcheck through a private autograd.Function (reference forward + fused backward)
# ------------------------------------------------------------------------------------------


class _FusedBackwardInception(torch.autograd.Function):
    """Reference forward (saving y, r3, r5) with a backend's fused backward; test-only wiring."""

    @staticmethod
    def forward(ctx, x, kernel_sizes, activation, backend, *params):
        ws, bs = list(params[:6]), list(params[6:])
        act = F.relu if activation == "relu" else (lambda t: t)
        y = reference.inception(x, ws, bs, kernel_sizes=kernel_sizes, activation=activation)
        r3, r5 = act(F.conv2d(x, ws[1], bs[1])), act(F.conv2d(x, ws[3], bs[3]))
        ctx.save_for_backward(x, y, r3, r5, *params)
        ctx.kernel_sizes, ctx.activation, ctx.backend = kernel_sizes, activation, backend
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, y, r3, r5, *params = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0],) + tuple(ctx.needs_input_grad[4:])
        grads = _run(ctx.backend, x, params[:6], params[6:], grad_y, y, r3, r5, ctx.kernel_sizes, ctx.activation,
                     needs_input_grad=needs)
        return (grads[0], None, None, None, *grads[1:])


def test_gradcheck_fp64(device, backend):
    activation = "relu"
    spec = InceptionSpec(5, 3, 4, 3, 2, 3, 2)
    x, ws, bs = _make(spec, 1, 4, 3, torch.float64, device, seed=7)
    inputs = [t.requires_grad_(True) for t in [x, *ws, *bs]]
    fn = lambda x, *p: _FusedBackwardInception.apply(x, (3, 5), activation, backend, *p)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


# ------------------------------------------------------------------------------------------
# GPU only
# ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(GOOGLENET_INCEPTIONS))
def test_gpu_low_precision_three_way(name, dtype, backend):
    """bf16 (the interpreter's bf16 dot is broken) and fp16 on CUDA at a real spatial size:
    the kernel's error against an fp64 reference at most 2x PyTorch's (cuDNN) in the same dtype."""
    spec = GOOGLENET_INCEPTIONS[name]
    n, h, w = 4, spec.spatial, spec.spatial
    x, ws, bs = _make(spec, n, h, w, dtype, "cuda")
    x = x.to(memory_format=torch.channels_last)
    grad_y = torch.randn(n, spec.out_channels, h, w, device="cuda").to(dtype)
    d = lambda t: t.double()  # noqa: E731
    y, r3, r5, ref_lp = _reference_grads(x, ws, bs, grad_y, (3, 5), "relu")
    _, _, _, ref64 = _reference_grads(d(x), [d(t) for t in ws], [d(t) for t in bs], d(grad_y), (3, 5), "relu")
    mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    for name_, m, rl, r64 in zip(GRAD_NAMES, mine, ref_lp, ref64):
        assert_three_way(m, rl, r64, atol=THREE_WAY_ATOL["backward"][dtype], relative=True, what=name_)


@pytest.mark.gpu
def test_gpu_fp32_tf32_follows_cudnn_switch(backend):
    """With TF32 on (torch's default for cuDNN convs), fp32 gradients are TF32-accurate on
    Triton; the CUDA backend's stay exact fp32 (tolerance "backward") against the fp64 reference."""
    torch.backends.cudnn.allow_tf32 = True
    spec = GOOGLENET_INCEPTIONS["4a"]
    x, ws, bs = _make(spec, 2, 14, 14, torch.float32, "cuda")
    grad_y = torch.randn(2, spec.out_channels, 14, 14, device="cuda")
    y, r3, r5, ref = _reference_grads(x, ws, bs, grad_y, (3, 5), "relu")
    d = lambda t: t.double()  # noqa: E731
    _, _, _, ref64 = _reference_grads(d(x), [d(t) for t in ws], [d(t) for t in bs], d(grad_y), (3, 5), "relu")
    mine = _run(backend, x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    if backend == "cuda":
        _assert_grads([m.double() for m in mine], ref64, *tolerance("backward", torch.float32))
        return
    for name_, m, r, r64 in zip(GRAD_NAMES, mine, ref, ref64):
        assert_three_way(m, r, r64, atol=THREE_WAY_ATOL["backward_tf32"][torch.float32], relative=True, what=name_)


def test_nonfinite_weights_padding_contributes_nothing(device, backend):
    """The transposed KxK convs of the backward skip the output pixels outside the image, so
    inf / NaN in corner taps of w3 and w5 give no 0 * inf at the border (issue 16 item 8): every
    gradient as autograd of the valid-taps forward.

    No activation: ReLU's mask at a NaN output is a separate rule (the kernels mask by y > 0,
    autograd passes the gradient through), so this test isolates the padding."""
    from _support import assert_same_nonfinite, inception_valid_taps, nonfinite_corner_taps

    spec = InceptionSpec(20, 7, 12, 9, 5, 6, 11)
    inp = make_inception_inputs(spec, 1, 6, 7, torch.float64, bias_scale=0.2, seed=32, grad_out=True)
    x, ws, bs, gy = inp.x, nonfinite_corner_taps(inp.weights), inp.biases, inp.grad_out
    leaves = [t.detach().clone().requires_grad_(True) for t in [x, *ws, *bs]]
    y_want = inception_valid_taps(leaves[0], leaves[1:7], leaves[7:], "none")
    want = torch.autograd.grad(y_want, leaves, gy)
    dev = [t.detach().clone().to(device).requires_grad_(True) for t in [x, *ws, *bs]]
    y = ik.fused_inception(dev[0], dev[1:7], dev[7:], activation=None, backend=backend)
    got = torch.autograd.grad(y, dev, gy.to(device))
    assert torch.isfinite(want[2]).any(), "dw3r has finite entries (the channels no non-finite tap reaches)"
    for name, g, w in zip(GRAD_NAMES, got, want):
        assert_same_nonfinite(g.cpu(), w, name,
                              lambda g_, w_, what: torch.testing.assert_close(g_, w_, atol=1e-9, rtol=1e-9, msg=what))


@pytest.mark.parametrize("weights", ["dense", "offset"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dx_reduce_gradients_through_tma(weights, dtype, device, monkeypatch):
    """dx's products of the reduce gradients with w3r / w5r read both operands through tensor
    descriptors on an sm_90 tiling (which the interpreter runs) when the weights are 16-byte
    aligned 2-D rows (docs/design.md §4.1), else through pointer loads; every gradient agrees
    with the reference either way. c3r = 40 and c5r = 24 (fp16: 32-deep steps, fp32: 16):
    multi-step K loops and K tails."""
    from inception_kernels.triton import backward
    from inception_kernels.testing import triton_target as target_of

    spec = InceptionSpec(24, 16, 40, 32, 24, 16, 16)
    x, ws, bs = _make(spec, 2, 5, 3, dtype, device)
    if weights == "offset":  # w3r 4 (fp32) / 2 (fp16) bytes off a 16-byte boundary
        buf = torch.empty(ws[1].numel() + 1, dtype=dtype, device=device)
        ws[1] = buf[1:].view(ws[1].shape).copy_(ws[1])
    gen = torch.Generator().manual_seed(1)
    grad_y = torch.randn(2, spec.out_channels, 5, 3, generator=gen, dtype=torch.float64).to(device, dtype)
    y, r3, r5, ref = _reference_grads(x, ws, bs, grad_y, (3, 5), "relu")
    chosen, run = [], backward._launch

    def launch(kernel, grid, *args, **kwargs):
        if "TMA" in kwargs:
            chosen.append(kwargs["TMA"])
        return run(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(backward, "_launch", launch)
    mine = _run("triton", x, ws, bs, grad_y, y, r3, r5, (3, 5), "relu")
    assert chosen == [weights == "dense" and target_of(x.device).arch >= 90]
    if dtype == torch.float32:
        _assert_grads(mine, ref, *tolerance("backward", dtype))
        return
    # fp16: three-way, as test_googlenet_configs_fp16_three_way
    d = lambda t: t.double() if t is not None else None  # noqa: E731
    _, _, _, ref64 = _reference_grads(d(x), [d(w) for w in ws], [d(b) for b in bs], d(grad_y), (3, 5), "relu")
    for name_, m, r16, r64 in zip(GRAD_NAMES, mine, ref, ref64):
        assert_three_way(m, r16, r64, atol=THREE_WAY_ATOL["backward"][torch.float16], relative=True, what=name_)
