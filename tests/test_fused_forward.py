"""The fused Inception forward against the plain-PyTorch reference, on every fused backend.

The ``backend`` fixture (conftest.py) runs each test on Triton and on the CUDA C++ extension;
the CUDA runs need a GPU and the built extension and skip without them. On a machine without
a GPU the Triton kernels run in Triton's interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1), with small batch / spatial sizes and real channel counts. Tolerances:

- fp64: 1e-10 (same math, different summation order).
- fp32: the interpreter's tl.dot is IEEE fp32 and the CUDA backend's fp32 is exact SIMT fp32,
  so the error is summation order only (atol 1e-4 on unit-scale data; TF32 is off for the
  Triton kernels and the reference on a GPU, except in ``test_fp32_follows_tf32_switch``).
- fp16 / bf16: three-way -- the kernel's error against an fp64 reference (computed from the
  same fp16 inputs) must be at most 2x PyTorch's own error in that dtype, plus a small atol.
  PyTorch's fp16 conv runs on the CPU here, so the baseline is real PyTorch, not a model.
"""

import os

import pytest
import torch

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, reference
from inception_kernels.testing import count_launches
from inception_kernels.testing import THREE_WAY_ATOL, make_inception_inputs as make_inputs, tolerance
from inception_kernels.testing import assert_three_way as _assert_three_way

pytestmark = pytest.mark.usefixtures("ieee_fp32")

#: Channel counts that are primes (no multiple of 8 or 16 anywhere): masks on every tail.
PRIME = InceptionSpec(37, 11, 13, 17, 7, 19, 5)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def _f64(t):
    return None if t is None else t.double()


def reference_f64(x, ws, bs, **kw):
    """The reference in fp64 from the same (possibly low-precision) inputs."""
    return reference.inception(_f64(x), [_f64(w) for w in ws], None if bs is None else [_f64(b) for b in bs], **kw)


def run_fused(x, ws, bs, backend, **kw):
    """fused_inception(backend=backend) with its launches checked (one kernel: a Triton launch,
    or for "cuda" every kernel the device ran); the output is returned."""
    with count_launches(cuda=backend == "cuda") as launches:
        y = ik.fused_inception(x, ws, bs, backend=backend, **kw)
    assert len(launches.fused_kernels(backend)) == 1, launches
    assert launches.aten == 0, f"hidden aten kernels: {launches.aten_ops}"
    # y comes from torch.empty: any element the kernel did not write would be garbage
    assert torch.isfinite(y).all(), "non-finite output (unwritten or overflowed elements)"
    return y


def assert_close_to_reference(y, x, ws, bs, **kw):
    """y against the reference in y's dtype, with the "forward" tolerance of that dtype."""
    expected = reference.inception(x, ws, bs, **kw)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    atol, rtol = tolerance("forward", y.dtype)
    torch.testing.assert_close(y, expected, atol=atol, rtol=rtol)


def assert_three_way(y, x, ws, bs, *, check="forward", **kw):
    """Kernel error vs fp64 at most 2x PyTorch-in-the-same-dtype error vs fp64, plus the
    ``THREE_WAY_ATOL[check]`` floor of y's dtype."""
    exact = reference_f64(x, ws, bs, **kw)
    _assert_three_way(y, reference.inception(x, ws, bs, **kw), exact, atol=THREE_WAY_ATOL[check][y.dtype], what="y")


# ---------------------------------------------------------------------------- the nine layers


@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_googlenet_layers_fp32(layer, device, backend):
    spec = GOOGLENET_INCEPTIONS[layer]
    x, ws, bs = make_inputs(spec, 1, 7, 5, torch.float32, device, seed=1)
    y = run_fused(x, ws, bs, backend)
    assert_close_to_reference(y, x, ws, bs)


@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_googlenet_layers_fp16_three_way(layer, device, backend):
    spec = GOOGLENET_INCEPTIONS[layer]
    x, ws, bs = make_inputs(spec, 1, 6, 5, torch.float16, device, seed=2, channels_last=True)
    y = run_fused(x, ws, bs, backend)
    assert y.dtype == torch.float16
    assert_three_way(y, x, ws, bs)


# ------------------------------------------------------------- variants on the prime-channel spec


@pytest.mark.parametrize("activation", ["relu", None])
@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3, 3), (5, 3)])
@pytest.mark.parametrize("bias", ["all", "none", "mixed"])
def test_variants_fp64(activation, kernel_sizes, bias, device, backend):
    spec = PRIME.with_(kernel_sizes=kernel_sizes)
    x, ws, bs = make_inputs(spec, 1, 9, 10, torch.float64, device, bias=bias, seed=3)
    y = run_fused(x, ws, bs, backend, kernel_sizes=kernel_sizes, activation=activation)
    assert_close_to_reference(y, x, ws, bs, kernel_sizes=kernel_sizes, activation=activation)


@pytest.mark.parametrize(
    "batch, hw",
    [(1, (1, 1)), (3, (1, 1)), (1, (7, 7)), (3, (7, 7)), (1, (13, 13)), (1, (28, 28)), (3, (3, 11)), (1, (11, 2))],
)
def test_spatial_sizes_and_batch(batch, hw, device, backend):
    x, ws, bs = make_inputs(PRIME, batch, *hw, torch.float32, device, seed=4)
    y = run_fused(x, ws, bs, backend)
    assert_close_to_reference(y, x, ws, bs)


def _channel_sliced(x):
    """A non-contiguous view: x's channels inside a wider tensor."""
    wide = torch.cat([x, x[:, :3]], dim=1)
    return wide[:, : x.shape[1]]


def _hw_transposed(x):
    """A non-contiguous view: H and W swapped by a transpose of a [N, C, W, H] tensor."""
    return x.transpose(2, 3).contiguous().transpose(2, 3)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channel_sliced", "hw_transposed", "weights_cl"])
def test_layouts(layout, device, backend):
    x, ws, bs = make_inputs(PRIME, 2, 6, 9, torch.float64, device, seed=5)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "channel_sliced":
        x = _channel_sliced(x)
    elif layout == "hw_transposed":
        x = _hw_transposed(x)
    elif layout == "weights_cl":
        ws = [w.to(memory_format=torch.channels_last) for w in ws]
        bs = [b[None].expand(2, -1)[1] for b in bs]  # stride-1 views of a 2-D tensor
    if layout in ("channel_sliced", "hw_transposed"):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    y = run_fused(x, ws, bs, backend)
    assert_close_to_reference(y, x, ws, bs)
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def test_fp16_three_way_prime(device, backend):
    x, ws, bs = make_inputs(PRIME, 3, 7, 6, torch.float16, device, seed=6)
    y = run_fused(x, ws, bs, backend)
    assert_three_way(y, x, ws, bs)


# ----------------------------------------------------------------- schedules, save_reduce, launches


def _forward_saving_reduce(backend, x, ws, bs, kernel_sizes, schedule, save_reduce):
    """``(y, r3, r5)`` of one forward (r3 / r5 None without ``save_reduce``): Triton's launcher
    itself, or for "cuda" the custom op (whose empty r3 / r5 stand for None)."""
    if backend == "triton":
        from inception_kernels.testing import triton_forward

        return triton_forward(x, ws, bs, kernel_sizes, "relu", schedule=schedule, save_reduce=save_reduce)
    y, r3, r5 = torch.ops.inception_kernels.fused_inception(
        x, ws, bs, *kernel_sizes, "relu", schedule, save_reduce, backend
    )
    if save_reduce:
        return y, r3, r5
    assert r3.numel() == 0 and r5.numel() == 0
    return y, None, None


@pytest.mark.parametrize("schedule", ["one_launch", "two_launch"])
@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3, 3)])
def test_schedules_and_save_reduce(schedule, kernel_sizes, device, backend):
    spec = PRIME.with_(kernel_sizes=kernel_sizes)
    x, ws, bs = make_inputs(spec, 2, 10, 9, torch.float64, device, seed=7, channels_last=True)
    with count_launches(cuda=backend == "cuda") as launches:
        y, r3, r5 = _forward_saving_reduce(backend, x, ws, bs, kernel_sizes, schedule, True)
    kernels = launches.fused_kernels(backend)
    assert len(kernels) == (1 if schedule == "one_launch" else 2) and launches.aten == 0, launches
    assert_close_to_reference(y, x, ws, bs, kernel_sizes=kernel_sizes)
    tol = tolerance("forward", torch.float64)._asdict()
    torch.testing.assert_close(r3, torch.relu(torch.nn.functional.conv2d(x, ws[1], bs[1])), **tol)
    torch.testing.assert_close(r5, torch.relu(torch.nn.functional.conv2d(x, ws[3], bs[3])), **tol)
    # channels_last storage, the channel stride rounded up to 16 (aligned vector loads)
    if backend == "triton":
        n, _, h, w = x.shape
        for r, c in ((r3, spec.ch3x3red), (r5, spec.ch5x5red)):
            cs = -(-c // 16) * 16
            assert r.stride() == (h * w * cs, 1, w * cs, cs), (r.stride(), c)
    else:
        assert r3.is_contiguous(memory_format=torch.channels_last)
    y_plain, none3, none5 = _forward_saving_reduce(backend, x, ws, bs, kernel_sizes, schedule, False)
    assert none3 is None and none5 is None
    torch.testing.assert_close(y_plain, y, atol=0, rtol=0)


def test_schedules_agree_fp16(device):
    from inception_kernels.testing import triton_forward

    x, ws, bs = make_inputs(PRIME, 1, 9, 9, torch.float16, device, seed=8)
    y1, _, _ = triton_forward(x, ws, bs, (3, 5), "relu", schedule="one_launch")
    y2, _, _ = triton_forward(x, ws, bs, (3, 5), "relu", schedule="two_launch")
    # same operands, same fp32 accumulation and same fp16 rounding of r: equal up to order
    torch.testing.assert_close(y1, y2, **tolerance("reordered", torch.float16)._asdict())


def test_unknown_schedule():
    from inception_kernels.testing import triton_forward

    x, ws, bs = make_inputs(PRIME, 1, 2, 2, torch.float32, "cpu")
    with pytest.raises(ValueError, match="schedule must be 'auto' or one of"):
        triton_forward(x, ws, bs, (3, 5), "relu", schedule="three_launch")


def test_empty_batch_no_launch(device, backend):
    x, ws, bs = make_inputs(PRIME, 0, 5, 4, torch.float32, device)
    with count_launches(cuda=backend == "cuda") as launches:
        y = ik.fused_inception(x, ws, bs, backend=backend)
    assert y.shape == (0, PRIME.out_channels, 5, 4)
    assert launches.total == 0 and not launches.fused_kernels(backend), launches


# -------------------------------------------------------------------------------- GPU-only dtypes


@pytest.mark.gpu
@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_googlenet_layers_bf16_three_way(layer, backend):
    # GPU only: the interpreter's bf16 tl.dot multiplies raw bits (docs/design.md §6)
    spec = GOOGLENET_INCEPTIONS[layer]
    x, ws, bs = make_inputs(spec, 2, 14, 13, torch.bfloat16, "cuda", seed=9, channels_last=True)
    y = run_fused(x, ws, bs, backend)
    assert y.dtype == torch.bfloat16
    assert_three_way(y, x, ws, bs)


@pytest.mark.gpu
@pytest.mark.parametrize("allow_tf32", [True, False])
def test_fp32_follows_tf32_switch(allow_tf32, backend):
    """Triton's fp32 follows cuDNN's TF32 switch; the CUDA backend is exact fp32 under either."""
    spec = GOOGLENET_INCEPTIONS["4e"]
    x, ws, bs = make_inputs(spec, 2, 14, 14, torch.float32, "cuda", seed=10)
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    try:
        y = run_fused(x, ws, bs, backend)
        if backend == "cuda":
            torch.testing.assert_close(y.double(), reference_f64(x, ws, bs), **tolerance("forward", torch.float32)._asdict())
        else:  # the baseline (PyTorch/cuDNN) follows the same switch: three-way against fp64
            assert_three_way(y, x, ws, bs, check="forward_tf32" if allow_tf32 else "forward")
    finally:
        torch.backends.cudnn.allow_tf32 = old


# ------------------------------------------------------------------------- dispatch and bad input


def test_auto_backend(device):
    x, ws, bs = make_inputs(PRIME, 1, 3, 3, torch.float32, device)
    with count_launches() as launches:
        y = ik.fused_inception(x, ws, bs)
    expected_triton = 1 if (device == "cuda" or _interpreting()) else 0
    assert launches.triton == expected_triton
    assert_close_to_reference(y, x, ws, bs)


def test_reference_backend():
    x, ws, bs = make_inputs(PRIME, 1, 3, 3, torch.float32, "cpu")
    with count_launches() as launches:
        y = ik.fused_inception(x, ws, bs, backend="reference")
    assert launches.triton == 0 and launches.aten > 4  # convs, pool, relus, cat
    torch.testing.assert_close(y, reference.inception(x, ws, bs), atol=0, rtol=0)


@pytest.mark.parametrize("activation", ["relu", None])
def test_nan_propagates_like_pytorch(device, activation, backend):
    """A NaN in x spreads as in PyTorch: max-pool windows and ReLU keep it (a plain max would drop it)."""
    x, ws, bs = make_inputs(PRIME, 1, 5, 6, torch.float32, device)
    x[0, 3, 2, 2] = float("nan")
    want = reference.inception(x, ws, bs, activation=activation)
    y = ik.fused_inception(x, ws, bs, activation=activation, backend=backend)
    assert torch.isnan(want).any() and not torch.isnan(want).all()
    torch.testing.assert_close(torch.isnan(y), torch.isnan(want), atol=0, rtol=0)
    torch.testing.assert_close(y, want, **tolerance("forward", y.dtype)._asdict(), equal_nan=True)


@pytest.mark.skipif(not _interpreting(), reason="about Triton's interpreter on CPU tensors")
def test_bf16_never_runs_in_the_interpreter():
    """The interpreter's bf16 tl.dot multiplies raw bits: 'auto' must take the reference and
    'triton' must refuse, instead of returning wrong numbers."""
    x, ws, bs = make_inputs(PRIME, 1, 3, 3, torch.bfloat16, "cpu")
    with count_launches() as launches:
        y = ik.fused_inception(x, ws, bs)
    assert launches.triton == 0
    torch.testing.assert_close(y, reference.inception(x, ws, bs), atol=0, rtol=0)
    with pytest.raises(TypeError, match="bfloat16 in Triton's interpreter"):
        ik.fused_inception(x, ws, bs, backend="triton")


def test_backend_errors(no_interpreter):
    x, ws, bs = make_inputs(PRIME, 1, 3, 3, torch.float32, "cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        ik.fused_inception(x, ws, bs, backend="tpu")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ik.fused_inception(x, ws, bs, backend="triton")
    # auto without the interpreter on a CPU tensor: the reference, no Triton launch
    with count_launches() as launches:
        y = ik.fused_inception(x, ws, bs)
    assert launches.triton == 0
    torch.testing.assert_close(y, reference.inception(x, ws, bs), atol=0, rtol=0)


def test_cuda_backend_says_why_it_cannot_run(monkeypatch):
    """backend="cuda" on a CPU tensor, or without the extension: a RuntimeError with the reason."""
    from inception_kernels import _backends

    x, ws, bs = make_inputs(PRIME, 1, 3, 3, torch.float32, "cpu")
    status = _backends.cuda_status()
    loaded = status.detail.get("state") == "loaded"
    match = "backend='cuda' needs a CUDA tensor, x is on cpu" if loaded else "backend='cuda' needs the CUDA extension"
    with pytest.raises(RuntimeError, match=match) as err:
        ik.fused_inception(x, ws, bs, backend="cuda")
    if not status.available:  # no device, or no extension: the status says which
        assert status.reason in str(err.value)
    forged = _backends.BackendStatus("cuda", False, "CUDA extension not built: forged reason", {"state": "not_built"})
    monkeypatch.setattr(_backends, "cuda_status", lambda: forged)
    with pytest.raises(RuntimeError, match="needs the CUDA extension inception_kernels._C: CUDA extension not built: "
                                           "forged reason"):
        ik.fused_inception(x, ws, bs, backend="cuda")


def test_bad_inputs(device):
    x, ws, bs = make_inputs(PRIME, 1, 4, 4, torch.float32, device)
    with pytest.raises(ValueError, match="is on meta, but x is on"):
        ik.fused_inception(x, [ws[0].to("meta")] + ws[1:], bs, backend="triton")
    with pytest.raises(TypeError, match="weight w3 has dtype torch.float64, but x has dtype torch.float32"):
        ik.fused_inception(x, ws[:2] + [ws[2].double()] + ws[3:], bs, backend="triton")
    with pytest.raises(ValueError, match="weight w5 has shape"):
        ik.fused_inception(x, ws[:4] + [ws[4][:, :3]] + ws[5:], bs, backend="triton")
    with pytest.raises(ValueError, match="weight w1 has shape"):
        ik.fused_inception(x[:, :5], ws, bs, backend="triton")
    with pytest.raises(ValueError, match="x must be 4-D"):
        ik.fused_inception(x[0], ws, bs, backend="triton")
    with pytest.raises(ValueError, match="kernel_sizes must be odd"):
        ik.fused_inception(x, ws, bs, kernel_sizes=(3, 4), backend="triton")
    with pytest.raises(ValueError, match="bias b3 has shape"):
        ik.fused_inception(x, ws, bs[:2] + [bs[2][:-1]] + bs[3:], backend="triton")
    with pytest.raises(ValueError, match="activation must be"):
        ik.fused_inception(x, ws, bs, activation="gelu", backend="triton")


def test_too_large_for_int32_image_offsets():
    from inception_kernels.testing import triton_forward

    spec = PRIME
    x = torch.empty((2, spec.in_channels, 2**13, 2**13), device="meta")  # 37 * 2^26 > 2^31 per image
    ws = [torch.empty(s, device="meta") for s in spec.weight_shapes]
    with pytest.raises(ValueError, match="one image must have < 2\\^31 elements"):
        triton_forward(x, ws, [None] * 6, (3, 5), "relu")


@pytest.mark.parametrize("activation", ["relu", None])
def test_nonfinite_weights_padding_contributes_nothing(activation, device, backend):
    """inf / NaN in corner taps of w3 and w5 (issue 16 item 8): border pixels get what the taps
    inside the image give (inf, -inf or finite), not the NaN of 0 * inf from the zero padding."""
    from _support import assert_same_nonfinite, inception_valid_taps, nonfinite_corner_taps

    spec = InceptionSpec(20, 7, 12, 9, 5, 6, 11)
    x, ws, bs = make_inputs(spec, 2, 6, 7, torch.float64, device, seed=31)
    x = x.abs() + 0.1  # positive reduce outputs: no real 0 * inf inside the image either
    ws = [w.abs() if i in (1, 3) else w for i, w in enumerate(ws)]
    ws = nonfinite_corner_taps(ws)
    y = ik.fused_inception(x, ws, bs, activation=activation, backend=backend)
    want = inception_valid_taps(x.cpu(), [w.cpu() for w in ws], [b.cpu() for b in bs], activation or "none")
    c3 = slice(spec.ch1x1, spec.ch1x1 + spec.ch3x3)
    assert torch.isfinite(want[:, c3, 0]).any() and torch.isnan(ik.reference.inception(
        x.cpu(), [w.cpu() for w in ws], [b.cpu() for b in bs], activation=activation)[:, c3, 0]).any(), \
        "the case must tell the two semantics apart: finite border values the padding would turn to NaN"
    assert_same_nonfinite(y.cpu(), want, "y",
                          lambda g, w, what: torch.testing.assert_close(g, w, atol=1e-9, rtol=1e-9, msg=what))


def test_strided_biases(backend, device):
    """Biases given as strided views (every other element of a bigger buffer) are read by their
    strides, not as dense vectors (a silent wrong answer in the first rewrite, found by the fuzz
    test)."""
    x, ws, bs = make_inputs(PRIME, 2, 3, 4, torch.float64 if device == "cpu" else torch.float32, device)
    strided = []
    for b in bs:
        big = torch.full((2 * b.numel() + 1,), 1e3, dtype=b.dtype, device=b.device)
        big[1::2] = b
        strided.append(big[1::2])
    assert all(b.stride() == (2,) for b in strided)
    want = reference.inception(x, ws, bs)
    torch.testing.assert_close(ik.fused_inception(x, ws, strided, backend=backend), want, atol=1e-9, rtol=1e-7)


# ------------------------------------------------------- TMA: the horizontal GEMM's operand reads


def _tma_input(case, dtype, device):
    """(x, weights, biases, TMA expected on an sm_90 tiling) for one case of the TMA rule."""
    # Cin > 32: the K loop has two steps or more (one step keeps the pointer loads)
    spec = InceptionSpec(37 if case == "odd_cin" else 40, 16, 24, 32, 8, 16, 16)
    x, ws, bs = make_inputs(spec, 3, 5, 6, dtype, device, seed=11, channels_last=case != "nchw")
    if case == "offset_view":  # the same values, 2 bytes (fp16) / 4 bytes (fp32) off a 16-byte boundary
        buf = torch.empty(x.numel() + 1, dtype=dtype, device=device)
        x = buf[1:].view(3, 5, 6, x.shape[1]).permute(0, 3, 1, 2).copy_(x)
    return x, ws, bs, case == "channels_last"


@pytest.mark.parametrize("case", ["channels_last", "nchw", "odd_cin", "offset_view"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_horizontal_gemm_through_tma(case, dtype, device, monkeypatch):
    """The horizontal GEMM reads x's pixel rows and the 1x1 weights through tensor descriptors
    exactly when the TMA rule allows it (sm_90 tiling -- which the interpreter runs --,
    channels_last x with 16-byte aligned rows and base; docs/design.md §4.1), else through
    pointer loads; both agree with the reference. Three images of 5x6 on two programs: the
    one-launch warm-up reads rows before pixel 0 and the last tile rows past the end (the
    descriptor's zero fill)."""
    from inception_kernels.triton import inception_fwd
    from inception_kernels.testing import triton_target as target_of

    x, ws, bs, eligible = _tma_input(case, dtype, device)
    chosen, run = [], inception_fwd._launch

    def launch(kernel, grid, *args, **kwargs):
        chosen.append(kwargs["TMA"])
        return run(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(inception_fwd, "_launch", launch)
    y = run_fused(x, ws, bs, "triton")
    assert chosen == [eligible and target_of(x.device).arch >= 90]
    if dtype == torch.float32:
        assert_close_to_reference(y, x, ws, bs)
    else:
        assert_three_way(y, x, ws, bs)
