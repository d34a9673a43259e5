"""The CUDA C++ kernels' code, run on the CPU by an emulator, against the reference.

``tests/csrc/emulator.cpp`` compiles ``csrc/inception_algo.h`` -- the jobs the CUDA kernels
run: tile and halo index math, operand loaders, epilogues, grid planning and the gradient
layout -- with the host compiler, in two builds:

- ``emu``: a plain loop computes each GEMM tile (fast; the broad suite below);
- ``emu_device``: the device's own ``DeviceCore`` (``csrc/inception_core.cuh``: the cp.async
  ring into swizzled tiles, ldmatrix fragments into mma.sync m16n8k16 -- the sm_80 build --, or
  SIMT micro-tiles, barriers) runs every block on 128 threads, with CPU versions of the PTX
  instructions written from the PTX ISA's documented layouts (``cuda_shim.h``);
- ``emu_wgmma``: the same with ``IK_WGMMA``, the sm_90a build: warpgroup MMA reading both
  operands through their shared-memory matrix descriptors (128-byte swizzle).

So every output and gradient here comes out of the kernels' own code; what is left to a GPU
(the ``gpu``-marked suites against backend ``"cuda"``) is the hardware itself: that the real
instructions behave as the PTX ISA documents them (what the shim implements), their rounding
order, bf16 (the emulator's 16-bit type is IEEE fp16, dtype code 1) and timing.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, reference
from inception_kernels import testing  # the layout contracts (defined in inception_kernels/_layout.py)
from inception_kernels.testing import grad_layout

from _support import (assert_same_nonfinite, conv_valid_taps, inception_valid_taps, make_relu_inputs,
                      nonfinite_corner_taps, tolerance)

ROOT = Path(__file__).resolve().parents[1]
SMALL = InceptionSpec(20, 7, 12, 9, 5, 6, 11)  # awkward channel counts
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.float64: 3}
# Tolerances: inception_kernels.testing.TOLERANCES["emulator"].
SMEM_H100 = 227 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100
GRAD_NAMES = ("dx", "dw1", "dw3r", "dw3", "dw5r", "dw5", "dwp", "db1", "db3r", "db3", "db5r", "db5", "dbp")


def _build(tmp_path_factory, name, flags):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no host C++ compiler (c++ / g++) to build the emulator")
    out = tmp_path_factory.mktemp(name) / f"{name}.so"
    src = ROOT / "tests" / "csrc" / "emulator.cpp"
    res = subprocess.run([cxx, *flags, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(src), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(str(out))


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The emulator with the plain-loop core."""
    return _build(tmp_path_factory, "emu", ["-std=c++17"])


@pytest.fixture(scope="module")
def emu_device(tmp_path_factory):
    """The emulator running the device's DeviceCore on 128 threads per block (sm_80 build)."""
    return _build(tmp_path_factory, "emu_device",
                  ["-std=c++20", "-pthread", "-DIK_EMU_DEVICE_CORE", "-Wno-unknown-pragmas"])


@pytest.fixture(scope="module")
def emu_wgmma(tmp_path_factory):
    """The same with warpgroup MMA through shared-memory descriptors (the sm_90a build)."""
    return _build(tmp_path_factory, "emu_wgmma",
                  ["-std=c++20", "-pthread", "-DIK_EMU_DEVICE_CORE", "-DIK_WGMMA", "-Wno-unknown-pragmas"])


def _dtype_code(x):
    return DTYPE_CODE[x.dtype]


def _i64(values):
    return (ctypes.c_int64 * len(values))(*values)


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else ctypes.c_void_p(0)


def _conv_args(ws, bs):
    w_ptrs = (ctypes.c_void_p * 6)(*[t.data_ptr() for t in ws])
    w_strides = _i64([s for t in ws for s in t.stride()])
    b_ptrs = (ctypes.c_void_p * 6)(*[(b.data_ptr() if b is not None else 0) for b in bs])
    b_strides = _i64([b.stride(0) if b is not None else 0 for b in bs])
    shape = (ctypes.c_int * 18)(*[d for t in ws for d in (t.shape[0], t.shape[1], t.shape[2])])
    return w_ptrs, w_strides, b_ptrs, b_strides, shape


def emu_forward(emu, x, ws, bs, *, relu=True, save_reduce=True, two_launch=None, smem_limit=SMEM_H100):
    """The CUDA forward's jobs on the CPU: (y, r3, r5, (th, tw)); y channels_last when x is.
    ``two_launch``: the schedule (default: the op's "auto", testing.cuda_two_launch)."""
    if two_launch is None:
        two_launch = testing.cuda_two_launch("auto", save_reduce)
    n, _, h, w = x.shape
    bs = bs or [None] * 6
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    y = torch.full((n, ws[0].shape[0] + ws[2].shape[0] + ws[4].shape[0] + ws[5].shape[0], h, w), float("nan"),
                   dtype=x.dtype).contiguous(memory_format=fmt)
    r3 = r5 = None
    if save_reduce:
        r3 = torch.full((n, ws[1].shape[0], h, w), float("nan"), dtype=x.dtype).contiguous(memory_format=torch.channels_last)
        r5 = torch.full((n, ws[3].shape[0], h, w), float("nan"), dtype=x.dtype).contiguous(memory_format=torch.channels_last)
    tiles = (ctypes.c_int * 2)()
    rc = emu.ik_emu_forward(
        _dtype_code(x), _ptr(x), _i64(x.stride()), _ptr(y), _i64(y.stride()),
        _ptr(r3), _i64(r3.stride() if r3 is not None else (0,) * 4), _ptr(r5), _i64(r5.stride() if r5 is not None else (0,) * 4),
        *_conv_args(ws, bs), ctypes.c_int64(n), h, w, int(relu), int(two_launch), ctypes.c_int64(smem_limit), tiles)
    assert rc == 0, f"ik_emu_forward returned {rc}"
    return y, r3, r5, (tiles[0], tiles[1])


def emu_backward(emu, gy, x, y, r3, r5, ws, bs, needs, *, relu=True, layout=None, rule=None):
    """The CUDA backward's three launches on the CPU: (dx, 12 gradients, launches, splits).

    ``layout`` (a ``testing.GradLayout``; default ``grad_layout(ws, bs, needs)``) and ``rule``
    (default ``testing.WGRAD_SPLIT``) travel to the C++ plan as the backward op passes them."""
    n, _, h, w = x.shape
    bs_list = bs or [None] * 6
    layout = grad_layout(ws, bs_list, needs) if layout is None else layout
    rule = testing.WGRAD_SPLIT if rule is None else rule
    flat = torch.full((layout.numel,), float("nan"), dtype=x.dtype)
    dx = torch.full_like(x, float("nan"), memory_format=torch.preserve_format) if needs[0] else None
    out = _i64([0, 0])
    rc = emu.ik_emu_backward(
        _dtype_code(x), _ptr(gy), _i64(gy.stride()), _ptr(x), _i64(x.stride()), _ptr(y), _i64(y.stride()),
        _ptr(r3), _i64(r3.stride()), _ptr(r5), _i64(r5.stride()), *_conv_args(ws, bs_list),
        ctypes.c_int64(n), h, w, int(relu), int(needs[0]), _i64(layout.as_ints()), _i64(rule.as_ints()),
        _ptr(dx), _i64(dx.stride() if dx is not None else (0,) * 4), _ptr(flat), out)
    assert rc == 0, f"ik_emu_backward returned {rc} (1: plan::grad_layout_fits refused the layout)"
    return dx, layout.views(flat, ws), out[0], out[1]


def _make(spec, n, h, w, dtype, *, bias=True, seed=0, kernel_sizes=(3, 5)):
    """x, weights, biases (None without) on the CPU, for kernel sizes ``kernel_sizes``."""
    return tuple(make_relu_inputs(spec.with_(kernel_sizes=kernel_sizes), n, h, w, dtype, seed=seed, bias=bias))


def _assert_close(got, want, dtype, what):
    scale = max(want.abs().max().item(), 1.0)
    err = (got.double() - want.double()).abs().max().item()
    assert err <= tolerance("emulator", dtype).atol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def _f64(t):
    return None if t is None else t.double()


def _reference(x, ws, bs, kernel_sizes, activation):
    """y, r3, r5 of the reference, in fp64 from the same (possibly fp16) values."""
    x, ws, bs = _f64(x), [_f64(w) for w in ws], (None if bs is None else [_f64(b) for b in bs])
    act = F.relu if activation == "relu" else (lambda t: t)
    y = reference.inception(x, ws, bs, kernel_sizes=kernel_sizes, activation=activation)
    r3 = act(F.conv2d(x, ws[1], bs[1] if bs else None))
    r5 = act(F.conv2d(x, ws[3], bs[3] if bs else None))
    return y, r3, r5


def _check_forward(emu, x, ws, bs, *, kernel_sizes=(3, 5), activation="relu", save_reduce=True, **kw):
    """The forward against the reference: y, and the saved reduce outputs where saved. By
    default (the op's "auto") saving them makes it the two-launch forward (stage 1: every 1x1
    conv on x over the tile's pixels; stage 2: the KxK branches from the saved outputs), else
    one launch (each KxK job computes its reduce conv over the tile's halo); ``two_launch=``
    forces either."""
    y, r3, r5, tiles = emu_forward(emu, x, ws, bs, relu=activation == "relu", save_reduce=save_reduce, **kw)
    want_y, want_r3, want_r5 = _reference(x, ws, bs, kernel_sizes, activation)
    _assert_close(y, want_y, x.dtype, "y")
    if save_reduce:
        _assert_close(r3, want_r3, x.dtype, "r3")
        _assert_close(r5, want_r5, x.dtype, "r5")
    return y, tiles


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_forward_googlenet_layers(emu, layer, save_reduce):
    spec = GOOGLENET_INCEPTIONS[layer]
    x, ws, bs = _make(spec, 1, 5, 6, torch.float32, seed=1)
    _check_forward(emu, x.contiguous(memory_format=torch.channels_last), ws, bs, save_reduce=save_reduce)


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch,hw", [(1, (1, 1)), (3, (7, 5)), (2, (13, 3)), (1, (9, 17))])
def test_forward_shapes(emu, dtype, batch, hw, save_reduce):
    x, ws, bs = _make(SMALL, batch, *hw, dtype, seed=2)
    _check_forward(emu, x, ws, bs, save_reduce=save_reduce)


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced", "transposed"])
def test_forward_layouts(emu, layout, save_reduce):
    x, ws, bs = _make(SMALL, 2, 6, 7, torch.float64, seed=3)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
    elif layout == "sliced":
        x = torch.cat([x, x], dim=1)[:, 1:1 + SMALL.in_channels]
    elif layout == "transposed":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    y, _ = _check_forward(emu, x, ws, bs, save_reduce=save_reduce)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3, 3), (5, 3)])
@pytest.mark.parametrize("activation", ["relu", None])
@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("bias", ["all", "none", "mixed"])
def test_forward_variants(emu, kernel_sizes, activation, bias, save_reduce):
    x, ws, bs = _make(SMALL, 2, 5, 4, torch.float64, seed=4, bias=bias != "none", kernel_sizes=kernel_sizes)
    if bias == "mixed":
        bs = [b if i % 2 else None for i, b in enumerate(bs)]
    _check_forward(emu, x, ws, bs, kernel_sizes=kernel_sizes, activation=activation, save_reduce=save_reduce)


@pytest.mark.parametrize("save_reduce,two_launch", [(True, False), (False, True)],
                         ids=["saved_one_launch", "unsaved_two_launches"])
def test_forward_schedule_forced(emu_tc, save_reduce, two_launch):
    """The schedules "auto" does not pick: one launch that also saves the reduce outputs (its
    halo GEMM writes the tile's own pixels), two launches through workspace reduce outputs."""
    x, ws, bs = _make(ALIGNED, 1, 9, 6, torch.float16, seed=9)
    _check_forward(emu_tc, *_channels_last(x, ws), bs, save_reduce=save_reduce, two_launch=two_launch)


def test_forward_small_shared_memory_shrinks_tiles(emu):
    """A device with little shared memory gets smaller tiles and the same numbers."""
    x, ws, bs = _make(GOOGLENET_INCEPTIONS["5b"], 1, 9, 9, torch.float64, seed=5)
    _, tiles_big = _check_forward(emu, x, ws, bs)
    _, tiles_small = _check_forward(emu, x, ws, bs, smem_limit=48 * 1024)
    assert tiles_big == (8, 8) and tiles_small[0] * tiles_small[1] < 64


def test_forward_nan_propagates(emu):
    x, ws, bs = _make(SMALL, 1, 5, 5, torch.float64, seed=6)
    x[0, 3, 2, 2] = float("nan")
    y, _, _, _ = emu_forward(emu, x, ws, bs)
    want = reference.inception(x, ws, bs)
    assert torch.equal(torch.isnan(y), torch.isnan(want))
    ok = ~torch.isnan(want)
    _assert_close(y[ok], want[ok], x.dtype, "y (non-NaN)")


def _backward_case(emu, x, ws, bs, *, kernel_sizes=(3, 5), activation="relu", needs=None, seed=0, rule=None):
    """The emulated backward against autograd through the fp64 reference. It gets the reference's
    y, r3, r5 (rounded to x's dtype, in the layouts the emulated forward writes), as
    test_fused_backward.py gives the kernels: the forward's own outputs differ in the last bits,
    and where a pre-activation is within that of 0 its ReLU mask differs from the reference's
    (at fp16, 3 images of 8x8 flip enough to move dw3 by 28% of its scale)."""
    relu = activation == "relu"
    y_fwd, r3_fwd, r5_fwd, _ = emu_forward(emu, x, ws, bs, relu=relu)
    gen = torch.Generator().manual_seed(seed + 100)
    gy = torch.randn(y_fwd.shape, generator=gen, dtype=torch.float64).to(x.dtype)
    leaves = [t.detach().double().requires_grad_(True) for t in [x, *ws, *(bs or [])]]
    yr = reference.inception(leaves[0], leaves[1:7], leaves[7:] if bs else None, kernel_sizes=kernel_sizes,
                             activation=activation)
    want = list(torch.autograd.grad(yr, leaves, gy.double())) + ([None] * 6 if bs is None else [])
    act = torch.relu if relu else (lambda t: t)
    with torch.no_grad():
        xd, bd = x.double(), [None] * 6 if bs is None else [b.double() for b in bs]
        outs = (yr.detach(), act(F.conv2d(xd, ws[1].double(), bd[1])), act(F.conv2d(xd, ws[3].double(), bd[3])))
    y, r3, r5 = (torch.empty_like(fwd).copy_(ref) for fwd, ref in zip((y_fwd, r3_fwd, r5_fwd), outs))
    if needs is None:
        needs = [True] * 7 + [b is not None for b in (bs or [None] * 6)]
    dx, grads, launches, splits = emu_backward(emu, gy, x, y, r3, r5, ws, bs, needs, relu=relu, rule=rule)
    got = [dx, *grads]
    for name, g, w, need in zip(GRAD_NAMES, got, want, needs):
        if need and w is not None:
            assert g is not None, name
            assert g.shape == w.shape, name
            _assert_close(g, w, x.dtype, name)
        elif not need:
            assert g is None, name
    assert launches <= 3
    return launches, splits


@pytest.mark.parametrize("layer", ["3a", "4e", "5b"])
def test_backward_googlenet_layers(emu, layer):
    x, ws, bs = _make(GOOGLENET_INCEPTIONS[layer], 1, 4, 3, torch.float32, seed=7)
    _backward_case(emu, x.contiguous(memory_format=torch.channels_last), ws, bs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch,hw", [(1, (1, 1)), (2, (5, 7)), (3, (3, 2))])
def test_backward_shapes(emu, dtype, batch, hw):
    x, ws, bs = _make(SMALL, batch, *hw, dtype, seed=8)
    _backward_case(emu, x, ws, bs)


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3, 3), (5, 3)])
@pytest.mark.parametrize("activation", ["relu", None])
def test_backward_variants(emu, kernel_sizes, activation):
    x, ws, bs = _make(SMALL, 2, 4, 5, torch.float64, seed=9, kernel_sizes=kernel_sizes)
    _backward_case(emu, x, ws, bs, kernel_sizes=kernel_sizes, activation=activation)


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_backward_layouts(emu, layout):
    x, ws, bs = _make(SMALL, 2, 5, 4, torch.float64, seed=10)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
    else:
        x = torch.cat([x, x], dim=1)[:, 2:2 + SMALL.in_channels]
    _backward_case(emu, x, ws, bs)


def test_backward_pool_ties_route_like_pytorch(emu):
    """Integer-valued x makes many equal maxima in the pool windows: dx routes like PyTorch."""
    x, ws, bs = _make(SMALL, 2, 5, 6, torch.float64, seed=11)
    gen = torch.Generator().manual_seed(12)
    x = torch.randint(-2, 3, x.shape, generator=gen).double()
    _backward_case(emu, x, ws, bs)


@pytest.mark.parametrize("needs_index", [0, 2, 3, 4, 6, 8, 12])
def test_backward_needs_one_gradient(emu, needs_index):
    """Only one input needs a gradient: the layout shrinks and the launches drop."""
    x, ws, bs = _make(SMALL, 1, 4, 4, torch.float64, seed=13)
    needs = [i == needs_index for i in range(13)]
    launches, _ = _backward_case(emu, x, ws, bs, needs=needs)
    assert launches == (2 if needs_index == 0 else 3 if needs_index in (2, 4, 8) else 2)


def test_backward_many_splits(emu):
    """Enough pixels for several pixel splits: the partial sums add up in order."""
    x, ws, bs = _make(InceptionSpec(8, 4, 4, 6, 3, 5, 4), 4, 16, 16, torch.float64, seed=14)
    _, splits = _backward_case(emu, x, ws, bs)
    assert splits > 1


def _reversed_layout(ws):
    """Every gradient computed, placed unlike testing.grad_layout: the db first (in reverse
    order), then the dW (in reverse order), each dW channels_last though the weights are not."""
    couts = [int(w.shape[0]) for w in ws]
    total, db, dw = 0, [0] * 6, [0] * 6
    for i in reversed(range(6)):
        db[i], total = total, total + couts[i]
    for i in reversed(range(6)):
        dw[i], total = total, total + ws[i].numel()
    strides = tuple(testing.dense_strides(w.contiguous(memory_format=torch.channels_last)) for w in ws)
    return testing.GradLayout(computed=(True,) * 6, returned=(True,) * 12, dw_offsets=tuple(dw),
                              db_offsets=tuple(db), dw_strides=strides, numel=total)


def test_backward_writes_the_layout_it_receives(emu):
    """The C++ plan takes the gradient layout from its argument (Python's _layout, the one
    source), not from a copy of the rule: a layout in another order and other strides still
    gives every gradient where the layout says."""
    x, ws, bs = _make(SMALL, 2, 4, 5, torch.float64, seed=15)
    y, r3, r5, _ = emu_forward(emu, x, ws, bs)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    needs = [True] * 13
    layout = _reversed_layout(ws)
    assert layout.as_ints() != grad_layout(ws, bs, needs).as_ints()
    _, want, _, _ = emu_backward(emu, gy, x, y, r3, r5, ws, bs, needs)
    _, got, _, _ = emu_backward(emu, gy, x, y, r3, r5, ws, bs, needs, layout=layout)
    for name, g, w in zip(GRAD_NAMES[1:], got, want):
        assert torch.equal(g, w), name
    assert got[2].stride() == testing.dense_strides(ws[2].contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("layer", [*GOOGLENET_INCEPTIONS, "odd"])
def test_backward_plan_takes_the_python_layout(emu, layer):
    """C++ receives the gradient layout (it keeps no copy of the rule): for the nine GoogLeNet
    layers and an odd module, every subset of needed gradients and both weight formats, the
    plan's offsets, strides and size are testing.grad_layout's."""
    spec = InceptionSpec(7, 3, 5, 9, 1, 3, 2, kernel_sizes=(5, 3)) if layer == "odd" else GOOGLENET_INCEPTIONS[layer]
    gen = torch.Generator().manual_seed(18)
    shapes = list(spec.weight_shapes)
    for channels_last in (False, True):
        ws = [torch.empty(s, device="meta") for s in shapes]
        if channels_last:
            ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
        for bias in (True, False):
            bs = [torch.empty(s[0], device="meta") if bias else None for s in shapes]
            for _ in range(3):
                needs = [bool(v) for v in torch.randint(0, 2, (13,), generator=gen)]
                layout = grad_layout(ws, bs, needs)
                offsets, strides, out = _i64([0] * 12), _i64([0] * 24), _i64([0] * 3)
                shape = (ctypes.c_int * 18)(*[d for w in ws for d in (w.shape[0], w.shape[1], w.shape[2])])
                rc = emu.ik_plan_backward(shape, ctypes.c_int64(4), 7, 7, int(needs[0]), _i64(layout.as_ints()),
                                          _i64(testing.WGRAD_SPLIT.as_ints()), offsets, strides, out)
                assert rc == 0, (layer, needs)
                ints = layout.as_ints()
                assert list(offsets) == ints[1:13] and list(strides) == ints[13:] and out[0] == layout.numel
                assert list(strides[8:12]) == list(testing.dense_strides(ws[2])), "dW3 in w3's memory format"


@pytest.mark.parametrize("corrupt", ["numel short by one", "dw without db", "negative stride", "stride too large",
                                     "db past the end"])
def test_backward_refuses_a_layout_outside_the_buffer(emu, corrupt):
    """plan::grad_layout_fits, ops.cpp's guard on the layout argument: a layout that would write
    outside the flat buffer is refused before any job runs."""
    x, ws, bs = _make(SMALL, 1, 3, 3, torch.float64, seed=17)
    y, r3, r5, _ = emu_forward(emu, x, ws, bs)
    good = grad_layout(ws, bs, [True] * 13)
    dw, db, st = list(good.dw_offsets), list(good.db_offsets), [list(v) for v in good.dw_strides]
    numel = good.numel
    if corrupt == "numel short by one":
        numel -= 1
    elif corrupt == "dw without db":
        db[2] = None
    elif corrupt == "negative stride":
        st[0][0] = -1
    elif corrupt == "stride too large":
        st[2][1] = 2**62
    else:
        db[5] = numel - int(ws[5].shape[0]) + 1
    bad = testing.GradLayout(computed=good.computed, returned=good.returned, dw_offsets=tuple(dw),
                             db_offsets=tuple(db), dw_strides=tuple(tuple(v) for v in st), numel=numel)
    with pytest.raises(AssertionError, match="returned 1"):
        emu_backward(emu, torch.ones_like(y), x, y, r3, r5, ws, bs, [True] * 13, layout=bad)


# --------------------------------------------------------------------------------------------
# The device's DeviceCore on 128 threads per block (slower: a subset of the cases above)
# --------------------------------------------------------------------------------------------

ALIGNED = InceptionSpec(16, 8, 16, 24, 8, 16, 8)  # channels in whole chunks: cp.async paths


@pytest.fixture(params=["mma_sync", "wgmma"])
def emu_tc(request):
    """The tensor-core core of either build: sm_80 (mma.sync) or sm_90a (wgmma)."""
    return request.getfixturevalue("emu_device" if request.param == "mma_sync" else "emu_wgmma")


def _channels_last(x, ws):
    return x.contiguous(memory_format=torch.channels_last), [w.contiguous(memory_format=torch.channels_last) for w in ws]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_core_simt_forward(emu_device, dtype):
    x, ws, bs = _make(SMALL, 2, 9, 6, dtype, seed=20)
    _check_forward(emu_device, x.contiguous(memory_format=torch.channels_last), ws, bs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_core_simt_backward(emu_device, dtype):
    x, ws, bs = _make(SMALL, 1, 5, 4, dtype, seed=21)
    _backward_case(emu_device, x, ws, bs)


def test_device_core_tensor_core_forward_computed_chunks(emu_tc):
    """Odd channel counts: no operand has aligned chunks, every chunk is computed (gathered)."""
    x, ws, bs = _make(SMALL, 2, 9, 6, torch.float16, seed=20)
    _check_forward(emu_tc, x.contiguous(memory_format=torch.channels_last), ws, bs)


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("weights", ["channels_last", "contiguous"])
def test_device_core_tensor_core_googlenet_layer(emu_tc, weights, save_reduce):
    """Real channel counts (several N tiles, K stages and halo chunks); x channels_last, so its
    chunks go through cp.async; KxK weights by cp.async (channels_last) or gathered (contiguous)."""
    x, ws, bs = _make(GOOGLENET_INCEPTIONS["4a"], 1, 3, 4, torch.float16, seed=22)
    x, cl = _channels_last(x, ws)
    _check_forward(emu_tc, x, cl if weights == "channels_last" else ws, bs, save_reduce=save_reduce)


# --------------------------------------------------------------------------------------------
# TMA on sm_90a (docs/design.md §7): x's tile and halo row tiles, and the 1x1 weights, as boxes
# --------------------------------------------------------------------------------------------


def _n_tile_widths(c):
    """tiling::n_tile_width's N tiles of c columns (the rule tests/test_cuda_tiling.py checks)."""
    out = []
    while c > 0:
        up = 16
        while up < c and up < 128:
            up *= 2
        bn = 128 if c >= 128 else up if up == 16 or up - c <= up // 4 else up // 2
        out.append(bn)
        c -= bn
    return out


def _expected_tma_boxes(spec, n, h, w, tiles, *, x_boxes, two_launches=True, kxk_boxes=False, k=(3, 5)):
    """The box loads the sm_90a forward issues: per stage (64 input channels) of each product, one
    box of x (the tile for w1, and for w3r / w5r the tile in the two-launch forward, a reduce row
    tile of whole halo lines in the one-launch one) where x takes TMA, and bn / 16 boxes of the
    weights (w1, w3r, w5r, wp: all take TMA here; w3 / w5 where ``kxk_boxes``: channels_last
    weights, reduce channels in whole chunks, stages of 64 of the K * K * cr reduction)."""
    th, tw = tiles
    steps = -(-spec.in_channels // 64)
    pad8 = lambda c: -(-c // 8) * 8  # noqa: E731
    boxes = lambda c, with_x: steps * sum(bn // 16 + with_x for bn in _n_tile_widths(c))  # noqa: E731
    per_tile = boxes(spec.ch1x1, x_boxes) + boxes(spec.pool_proj, 0)
    if kxk_boxes:
        for kk, cr, cout in zip(k, (spec.ch3x3red, spec.ch5x5red), (spec.ch3x3, spec.ch5x5)):
            per_tile += -(-(kk * kk * cr) // 64) * sum(bn // 16 for bn in _n_tile_widths(cout))
    if two_launches:
        per_tile += boxes(spec.ch3x3red, x_boxes) + boxes(spec.ch5x5red, x_boxes)
        return n * -(-h // th) * -(-w // tw) * per_tile
    for kk, cr in zip(k, (spec.ch3x3red, spec.ch5x5red)):
        hc, lines = tw + kk - 1, th + kk - 1
        per = 64 // hc
        assert per and -(-lines // per) <= -(-(lines * hc) // 64), "a case whose halo row tiles are boxes"
        per_tile += -(-lines // per) * boxes(pad8(cr), x_boxes)
    return n * -(-h // th) * -(-w // tw) * per_tile


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("x_layout,weights", [("channels_last", "channels_last"), ("channels_last", "oihw"),
                                               ("nchw", "oihw")])
def test_wgmma_forward_takes_x_and_weights_through_tma(emu_wgmma, x_layout, weights, save_reduce):
    """4a's channels on a 9 x 7 image (an 8 x 7 tile and one that overhangs the image; halos past
    every border): channels_last x goes as boxes (the tile, the halo row tiles, zeros outside
    the image), NCHW x by chunks; the 1x1 weights as boxes either way, the KxK ones where
    channels_last (their reduction index is then their memory order). The exact box count
    says every such operand took TMA; the results say the boxes landed where the wgmma
    descriptors read them (a box one row or channel off fails)."""
    spec = GOOGLENET_INCEPTIONS["4a"]
    x, ws, bs = _make(spec, 1, 9, 7, torch.float16, seed=23)
    if x_layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if weights == "channels_last":
        ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
    emu_wgmma.ik_emu_tma_boxes.restype = ctypes.c_long
    before = emu_wgmma.ik_emu_tma_boxes()
    _, tiles = _check_forward(emu_wgmma, x, ws, bs, save_reduce=save_reduce)
    assert tuple(tiles) == (8, 7)
    want = _expected_tma_boxes(spec, 1, 9, 7, tiles, x_boxes=x_layout == "channels_last", two_launches=save_reduce,
                               kxk_boxes=weights == "channels_last")
    assert emu_wgmma.ik_emu_tma_boxes() - before == want


def test_wgmma_backward_takes_gr_and_x_through_tma(emu_wgmma):
    """The 1x1 convs' weight gradients: x (B, channels_last: boxes of 64 pixels x 64 channels,
    two per 128-wide tile) and, for dW3r / dW5r, the reduce gradients gr (A) come as boxes. Two
    pixel splits of 112 (198 pixels): the stage that would run past the first split into the
    second goes by chunks, the one past the batch's end by boxes (zero-filled). Exact count,
    and every gradient against the reference."""
    spec, n, h, w = WIDE, 2, 9, 11
    x, ws, bs = _make(spec, n, h, w, torch.float16, seed=25)
    rule = testing.PixelSplitRule(10**6, 1, 2)
    emu_wgmma.ik_emu_tma_boxes.restype = ctypes.c_long
    before = emu_wgmma.ik_emu_tma_boxes()
    _, splits = _backward_case(emu_wgmma, *_channels_last(x, ws), bs, rule=rule)
    forward_boxes = _expected_tma_boxes(spec, n, h, w, (8, 8), x_boxes=True, kxk_boxes=True)
    pixels, chunk = n * h * w, 112
    assert splits == 2 and -(-pixels // chunk) == 2
    box_stages = sum(first + 64 <= min(s0 + chunk, pixels) or s0 + chunk >= pixels
                     for s0 in range(0, pixels, chunk) for first in range(s0, min(s0 + chunk, pixels), 64))
    assert box_stages == 3
    per_stage = 0
    for cout, gr_boxes in ((spec.ch1x1, 0), (spec.ch3x3red, 1), (spec.ch5x5red, 1)):
        per_stage += -(-cout // 64) * sum(-(-bn // 64) + gr_boxes for bn in _n_tile_widths(spec.in_channels))
    assert emu_wgmma.ik_emu_tma_boxes() - before == forward_boxes + box_stages * per_stage


def test_mma_sync_build_takes_no_tma(emu_device):
    """The sm_80 build has no TMA: the same forward issues no box."""
    x, ws, bs = _make(ALIGNED, 1, 5, 4, torch.float16, seed=24)
    emu_device.ik_emu_tma_boxes.restype = ctypes.c_long
    before = emu_device.ik_emu_tma_boxes()
    _check_forward(emu_device, *_channels_last(x, ws), bs)
    assert emu_device.ik_emu_tma_boxes() == before


# Channels past 64: 128-wide N tiles (wgmma m64n128k16: an MN-major B line over two swizzle
# atoms; on sm_80 one pass of 32 x 64 warp quarters) in the reduce-gradient (c3r = 96 -> one 128
# tile), the weight-gradient (cin = 144 -> 128 + 16) and the forward products, and several dx
# channel tiles.
WIDE = InceptionSpec(144, 136, 96, 24, 16, 8, 72)


@pytest.mark.parametrize("spec,batch,hw", [(SMALL, 1, (5, 4)), (ALIGNED, 1, (5, 4)), (WIDE, 1, (5, 4)),
                                           (ALIGNED, 3, (7, 5))],
                         ids=["computed_chunks", "aligned_chunks", "wide_tiles", "stages_cross_images"])
def test_device_core_tensor_core_backward(emu_tc, spec, batch, hw):
    """The last case: 105 pixels, so the weight gradients' pixel cursors (DeviceCore::stage_tile)
    are placed in two stages and stepped across rows and images inside each."""
    x, ws, bs = _make(spec, batch, *hw, torch.float16, seed=21)
    _backward_case(emu_tc, *_channels_last(x, ws), bs)


# --------------------------------------------------------------------------------------------
# Non-finite weights at the borders (issue 16, item 8): padding taps contribute nothing
# --------------------------------------------------------------------------------------------


def test_valid_taps_oracle_is_conv2d_for_finite_weights():
    x, ws, _ = _make(SMALL, 2, 5, 6, torch.float64, seed=30)
    for w in (ws[2], ws[4]):
        r = torch.randn(2, w.shape[1], 5, 6, dtype=torch.float64)
        torch.testing.assert_close(conv_valid_taps(r, w), F.conv2d(r, w, padding=w.shape[-1] // 2))


@pytest.mark.parametrize("save_reduce", [True, False], ids=["two_launches", "one_launch"])
@pytest.mark.parametrize("activation", ["relu", None])
def test_forward_nonfinite_weights_padding_contributes_nothing(emu, activation, save_reduce):
    """inf / NaN in corner taps of w3 and w5: border pixels get what the taps inside the image
    give (inf, -inf or finite), not the NaN of 0 * inf from the zero padding."""
    x, ws, bs = _make(SMALL, 2, 6, 7, torch.float64, seed=31)
    x = x.abs() + 0.1  # positive reduce outputs: no real 0 * inf inside the image either
    ws = [w.abs() if i in (1, 3) else w for i, w in enumerate(ws)]
    ws = nonfinite_corner_taps(ws)
    y, r3, r5, _ = emu_forward(emu, x, ws, bs, relu=activation == "relu", save_reduce=save_reduce)
    want = inception_valid_taps(x, ws, bs, activation or "none")
    assert torch.isfinite(want[:, SMALL.ch1x1:SMALL.ch1x1 + 3, 0]).any(), "the oracle has finite border values"
    assert_same_nonfinite(y, want, "y", lambda g, w, what: _assert_close(g, w, g.dtype, what))


def test_backward_nonfinite_weights_padding_contributes_nothing(emu):
    """The transposed KxK convs of the backward skip the output pixels outside the image
    (no 0 * inf there either): every gradient as autograd of the valid-taps forward.

    No activation: ReLU's mask at a NaN output is a separate rule (the kernels mask it by
    y > 0, autograd passes the gradient through), so this test isolates the padding."""
    x, ws, bs = _make(SMALL, 1, 6, 7, torch.float64, seed=32)
    ws = nonfinite_corner_taps(ws)
    y, r3, r5, _ = emu_forward(emu, x, ws, bs, relu=False)
    gen = torch.Generator().manual_seed(33)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_(True) for t in [x, *ws, *bs]]
    want = torch.autograd.grad(inception_valid_taps(leaves[0], leaves[1:7], leaves[7:], "none"), leaves, gy)
    needs = [True] * 13
    dx, grads, _, _ = emu_backward(emu, gy, x, y, r3, r5, ws, bs, needs, relu=False)
    assert torch.isfinite(want[2]).any(), "dw3r has finite entries (the channels no non-finite tap reaches)"
    for name, g, w in zip(GRAD_NAMES, [dx, *grads], want):
        assert_same_nonfinite(g, w, name, lambda g_, w_, what: _assert_close(g_, w_, g_.dtype, what))


@pytest.mark.parametrize("bias_layout", ["contiguous", "strided"])
def test_bias_stride_is_honoured(emu, bias_layout):
    """Biases that are views with a stride (every other element of a buffer) read the right
    values, forward and backward (issue 14, item 6: the kernels read a bias by its stride)."""
    x, ws, bs = _make(SMALL, 2, 5, 4, torch.float64, seed=34)
    if bias_layout == "strided":
        bs = [torch.stack([b, torch.full_like(b, 1e3)], dim=1).reshape(-1)[::2] for b in bs]
        assert all(b.stride(0) == 2 for b in bs)
    _check_forward(emu, x, ws, bs)
    _backward_case(emu, x, ws, bs)
