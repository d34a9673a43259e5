"""The differentiable fused op through its public API: torch.library registration (opcheck,
torch.compile), gradients against the reference (and gradcheck in fp64), backward launch
count through autograd, determinism and autocast -- on every fused backend (the ``backend``
fixture of conftest.py: Triton, and the CUDA C++ extension where a GPU and the build are).

Without a GPU the Triton kernels run in the interpreter (tests/conftest.py), one program at a
time, so shapes are small; the nine real GoogLeNet configs go through the op in
tests/test_modules.py (a whole fused GoogLeNet, outputs and every parameter gradient) and at
the kernel level in tests/test_fused_backward.py.
"""

import dataclasses

import pytest
import torch

from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, fused_inception, reference
from inception_kernels.testing import count_launches
from inception_kernels.testing import make_inception_inputs

SMALL = InceptionSpec(5, 3, 4, 6, 2, 3, 4)
TINY = InceptionSpec(2, 1, 2, 1, 1, 2, 1)

FWD = torch.ops.inception_kernels.fused_inception
BWD = torch.ops.inception_kernels.fused_inception_backward

#: fp32 is compared tightly: TF32 off (on a GPU) for the reference and the Triton kernels; the
#: CUDA backend's fp32 is exact fp32 anyway.
pytestmark = pytest.mark.usefixtures("ieee_fp32")

#: Every check of torch.library.opcheck (its default).
ALL_CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _inputs(spec, n, h, w, dtype, device, *, channels_last=False, bias=True):
    """x, the six weights and the six biases (None entries without biases; std 0.1)."""
    inp = make_inception_inputs(spec, n, h, w, dtype, device, bias_scale=0.1, bias=bias, channels_last=channels_last)
    return inp.x, inp.weights, inp.biases_or_nones()


def _grads(fn, x, ws, bs, grad_out):
    """Output and gradients of (x, *ws, *bs) for one call of fn, in float64 copies."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, *ws, *bs)]
    x_, ws_, bs_ = leaves[0], leaves[1:7], leaves[7:]
    y = fn(x_, ws_, bs_)
    inputs = [t for t in leaves if t is not None]
    got = torch.autograd.grad(y, inputs, grad_out)
    return y.detach(), got


def _op_args(x, ws, bs, spec, backend, save_reduce=True):
    k3, k5 = spec.kernel_sizes
    return (x, list(ws), list(bs), k3, k5, spec.activation or "none", "one_launch", save_reduce, backend)


# ---------------------------------------------------------------------------- torch.library


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_forward(channels_last, device, backend):
    x, ws, bs = _inputs(SMALL, 1, 3, 4, torch.float32, device, channels_last=channels_last)
    for t in (x, *ws, *bs):
        t.requires_grad_(True)
    # The aot_dispatch checks (which run the op several times) once; layouts by the fake check.
    utils = ("test_schema", "test_autograd_registration", "test_faketensor") if channels_last else \
        ALL_CHECKS
    torch.library.opcheck(FWD, _op_args(x, ws, bs, SMALL, backend, save_reduce=True), test_utils=utils)


def test_opcheck_forward_no_save_no_bias(device, backend):
    x, ws, _ = _inputs(SMALL, 1, 3, 4, torch.float32, device)
    torch.library.opcheck(FWD, _op_args(x, ws, [None] * 6, SMALL, backend, save_reduce=False),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("needs", ["all", "some"])
def test_opcheck_backward(needs, device, backend):
    x, ws, bs = _inputs(SMALL, 1, 3, 4, torch.float32, device, channels_last=needs == "some")
    y, r3, r5 = FWD(*_op_args(x, ws, bs, SMALL, backend))
    grad_y = torch.randn_like(y)
    if needs == "all":
        flags = [True] * 13
    else:  # no dx, a few weights, one bias, and missing biases
        flags = [False, True, False, True, False, False, True, False, True, False, False, False, False]
        bs = [None, bs[1], None, None, None, None]
    utils = ("test_schema", "test_faketensor") if needs == "all" else ALL_CHECKS
    torch.library.opcheck(BWD, (grad_y, x, y, r3, r5, ws, bs, 3, 5, "relu", flags, backend), test_utils=utils)


def test_fake_outputs_match_real_layouts(device, backend):
    """y follows x's memory format; r3/r5 are channels_last; dx follows x; grads of channels_last
    weights are channels_last (the fake impls promise what the kernels produce)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, ws, bs = _inputs(SMALL, 2, 3, 4, torch.float32, device, channels_last=True)
    ws = [w.to(memory_format=torch.channels_last) for w in ws]
    real = FWD(*_op_args(x, ws, bs, SMALL, backend))
    grad_y = torch.randn_like(real[0])
    real_b = BWD(grad_y, x, *real, ws, bs, 3, 5, "relu", [True] * 13, backend)
    with FakeTensorMode() as mode:
        fx, fws, fbs, fg = (mode.from_tensor(x), [mode.from_tensor(w) for w in ws],
                            [mode.from_tensor(b) for b in bs], mode.from_tensor(grad_y))
        fake = FWD(*_op_args(fx, fws, fbs, SMALL, backend))
        fake_b = BWD(fg, fx, *fake, fws, fbs, 3, 5, "relu", [True] * 13, backend)
    for r, f in zip((*real, *real_b), (*fake, *fake_b)):
        assert (r.shape, r.stride(), r.dtype) == (f.shape, f.stride(), f.dtype)
    assert real[0].is_contiguous(memory_format=torch.channels_last)


def test_op_backend_argument_checked():
    """The ops' backend argument is "triton" or "cuda"; the schedule is one the backend has
    (the CUDA kernels: auto, one_launch, two_launch), checked before anything runs."""
    x, ws, bs = _inputs(SMALL, 1, 3, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match="backend must be one of \\('triton', 'cuda'\\), got 'tpu'"):
        FWD(*_op_args(x, ws, bs, SMALL, "tpu"))
    args = list(_op_args(x, ws, bs, SMALL, "cuda"))
    args[-3] = "three_launch"
    with pytest.raises(ValueError, match=r"schedule must be one of \('auto', 'one_launch', 'two_launch'\) on backend "
                                         r"'cuda', got 'three_launch'"):
        FWD(*args)
    y = torch.zeros(1, SMALL.out_channels, 3, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        BWD(y, x, y, y.new_empty(0), y.new_empty(0), ws, bs, 3, 5, "relu", [True] * 13, "tpu")


def test_fake_impls_serve_the_cuda_backend():
    """backend="cuda" traces on any machine (fake tensors: what torch.compile sees): y follows
    x's layout, r3/r5 are channels_last, dx follows x, the flat buffer holds every gradient."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    cl = torch.channels_last
    with FakeTensorMode():
        x = torch.empty(2, SMALL.in_channels, 3, 4).to(memory_format=cl)
        ws = [torch.empty(s) for s in SMALL.weight_shapes]
        bs = [torch.empty(s[0]) for s in SMALL.weight_shapes]
        y, r3, r5 = FWD(*_op_args(x, ws, bs, SMALL, "cuda"))
        dx, flat = BWD(torch.empty_like(y), x, y, r3, r5, ws, bs, 3, 5, "relu", [True] * 13, "cuda")
    assert y.shape == (2, SMALL.out_channels, 3, 4) and y.is_contiguous(memory_format=cl)
    assert r3.shape == (2, SMALL.ch3x3red, 3, 4) and r3.is_contiguous(memory_format=cl)
    assert r5.shape == (2, SMALL.ch5x5red, 3, 4) and r5.is_contiguous(memory_format=cl)
    assert dx.shape == x.shape and dx.stride() == x.stride()
    assert flat.shape == (SMALL.num_parameters,)


def test_torch_compile_fullgraph_matches_eager(device, backend):
    x, ws, bs = _inputs(SMALL, 1, 3, 4, torch.float32, device)

    def f(x, ws, bs):
        return fused_inception(x, ws, bs, backend=backend).relu().sum(dim=1)

    eager = f(x, ws, bs)
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)(x, ws, bs)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


# ---------------------------------------------------------------------------- gradients


def test_gradcheck_fp64(device, backend):
    """Finite differences in float64 through the fused forward and backward (fast mode: one
    random direction per input; the full Jacobian is O(elements) forward launches)."""
    x, ws, bs = _inputs(TINY, 1, 3, 3, torch.float64, device)
    inputs = [t.requires_grad_(True) for t in (x, *ws, *bs)]
    assert torch.autograd.gradcheck(
        lambda x, *p: fused_inception(x, p[:6], p[6:], backend=backend), inputs, fast_mode=True
    )


CASES = [  # (spec, n, h, w, channels_last, activation, bias)
    (SMALL, 2, 4, 5, False, "relu", True),
    (SMALL, 1, 5, 3, True, "relu", True),
    (SMALL, 2, 4, 5, False, None, True),
    (SMALL, 1, 3, 4, True, None, False),
    (InceptionSpec(7, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3)), 1, 4, 4, False, "relu", False),
]


@pytest.mark.parametrize("spec,n,h,w,channels_last,activation,bias", CASES)
def test_grads_match_reference_fp32(spec, n, h, w, channels_last, activation, bias, device, backend):
    spec = dataclasses.replace(spec, activation=activation)
    x, ws, bs = _inputs(spec, n, h, w, torch.float32, device, channels_last=channels_last, bias=bias)
    call = dict(kernel_sizes=spec.kernel_sizes, activation=activation)
    grad_out = torch.randn(n, spec.out_channels, h, w, dtype=torch.float32, device=device)
    y, got = _grads(lambda x, ws, bs: fused_inception(x, ws, bs, backend=backend, **call), x, ws, bs, grad_out)
    y_ref, want = _grads(lambda x, ws, bs: reference.inception(x, ws, bs, **call), x, ws, bs, grad_out)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["3a"])
def test_grads_match_reference_googlenet_config_channels_last(name, device, backend):
    spec = GOOGLENET_INCEPTIONS[name]
    x, ws, bs = _inputs(spec, 1, 3, 3, torch.float32, device, channels_last=True)
    grad_out = torch.randn(1, spec.out_channels, 3, 3, device=device)
    _, got = _grads(lambda x, ws, bs: fused_inception(x, ws, bs, backend=backend), x, ws, bs, grad_out)
    _, want = _grads(lambda x, ws, bs: reference.inception(x, ws, bs), x, ws, bs, grad_out)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("channels_last,activation", [(False, "relu"), (True, None)])
def test_grads_fp16_three_way(channels_last, activation, device, backend):
    """fp16 kernel error against an fp64 oracle at most 2x PyTorch's own fp16 error (+ a small
    absolute floor for gradients that are ~0 in every implementation)."""
    spec = InceptionSpec(16, 8, 8, 16, 4, 8, 8, activation=activation)
    x, ws, bs = _inputs(spec, 2, 4, 5, torch.float64, device, channels_last=channels_last)
    grad_out = torch.randn(2, spec.out_channels, 4, 5, dtype=torch.float64, device=device)
    call = dict(activation=activation)
    half = lambda ts: [t.half() for t in ts]  # noqa: E731
    y16, got = _grads(lambda x, ws, bs: fused_inception(x, ws, bs, backend=backend, **call),
                      x.half(), half(ws), half(bs), grad_out.half())
    yt, torch16 = _grads(lambda x, ws, bs: reference.inception(x, ws, bs, **call),
                         x.half(), half(ws), half(bs), grad_out.half())
    y64, want = _grads(lambda x, ws, bs: reference.inception(x, ws, bs, **call), x, ws, bs, grad_out)
    assert y16.dtype == torch.float16 and all(g.dtype == torch.float16 for g in got)
    for name, k, t, r in [("y", y16, yt, y64), *zip(range(13), got, torch16, want)]:
        err_k = (k.double() - r).abs().max().item()
        err_t = (t.double() - r).abs().max().item()
        assert err_k <= 2 * err_t + 1e-3 * r.abs().max().item() + 1e-6, (name, err_k, err_t)


# ---------------------------------------------------------------------------- launches, determinism


def _assert_backward_launches(kernels, backend):
    """The backward with every gradient needed is exactly 3 launches; for CUDA every kernel the
    device ran (so a hidden fill or copy would count) is one of the three stages, in order."""
    assert len(kernels) == 3, kernels
    if backend == "cuda":
        for name, stage in zip(kernels, ("reduce_grad", "grads", "sum_partials")):
            assert f"inception_{stage}_kernel" in name, kernels


def test_backward_is_three_launches_through_autograd(device, backend):
    """The op's backward through autograd: 3 launches and no aten kernel. With explicit
    grad_outputs autograd adds nothing; loss.backward() adds exactly the aten ops of the loss's
    own backward (measured on a plain tensor of y's shape), nothing for the module."""
    cuda = backend == "cuda"
    x, ws, bs = _inputs(SMALL, 2, 4, 5, torch.float32, device)
    x = x.requires_grad_(True)
    params = [t.requires_grad_(True) for t in (*ws, *bs)]
    y = fused_inception(x, ws, bs, backend=backend)
    grad_y = torch.ones_like(y)
    with count_launches(cuda=cuda) as launches:
        torch.autograd.grad(y, [x, *params], grad_y)
    _assert_backward_launches(launches.fused_kernels(backend), backend)
    assert launches.aten_ops == [], launches.aten_ops

    def loss_fn(y):
        return (y * y).sum()

    plain = y.detach().clone().requires_grad_(True)
    loss = loss_fn(plain)
    with count_launches(cuda=cuda) as loss_only:
        loss.backward()
    loss = loss_fn(fused_inception(x, ws, bs, backend=backend))
    with count_launches(cuda=cuda) as launches:
        loss.backward()
    assert launches.aten_ops == loss_only.aten_ops, (launches.aten_ops, loss_only.aten_ops)
    if cuda:  # the device ran the loss's own kernels, then the module's
        assert launches.cuda_kernels[:len(loss_only.cuda_kernels)] == loss_only.cuda_kernels, launches.cuda_kernels
        _assert_backward_launches(launches.cuda_kernels[len(loss_only.cuda_kernels):], backend)
    else:
        _assert_backward_launches(launches.triton_kernels, backend)


def test_backward_deterministic(device, backend):
    """The backward has no atomics: bitwise equal gradients under deterministic algorithms."""
    x, ws, bs = _inputs(SMALL, 2, 4, 5, torch.float32, device)
    grad_out = torch.randn(2, SMALL.out_channels, 4, 5, device=device)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_grads(lambda x, ws, bs: fused_inception(x, ws, bs, backend=backend), x, ws, bs, grad_out)[1]
                for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(before)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_no_grad_forward_is_not_differentiable(device, backend):
    x, ws, bs = _inputs(SMALL, 1, 3, 3, torch.float32, device)
    with torch.no_grad():
        assert fused_inception(x, ws, bs, backend=backend).grad_fn is None
    assert fused_inception(x.requires_grad_(True), ws, bs, backend=backend).grad_fn is not None


def test_op_without_saved_reduce_refuses_backward(device, backend):
    x, ws, bs = _inputs(SMALL, 1, 3, 3, torch.float32, device)
    x = x.requires_grad_(True)
    y, _, _ = FWD(*_op_args(x, ws, bs, SMALL, backend, save_reduce=False))
    with pytest.raises(RuntimeError, match="save_reduce=False"):
        y.sum().backward()


# ---------------------------------------------------------------------------- autocast (GPU)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_runs_in_autocast_dtype(dtype, backend):
    spec = GOOGLENET_INCEPTIONS["3a"]
    x, ws, bs = _inputs(spec, 2, 14, 14, torch.float32, "cuda", channels_last=True)
    leaves = [t.requires_grad_(True) for t in (x, *ws, *bs)]
    with torch.autocast("cuda", dtype=dtype):
        y = fused_inception(x, ws, bs, backend=backend)
        y_ref = reference.inception(x, ws, bs)
    assert y.dtype == dtype == y_ref.dtype
    torch.testing.assert_close(y.float(), y_ref.float(), atol=3e-2, rtol=3e-2)
    grads = torch.autograd.grad(y.float().sum(), leaves)
    assert all(g.dtype == torch.float32 for g in grads)  # back through the casts
