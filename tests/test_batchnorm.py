"""FusedInception(batch_norm=True) and fused_inception_bn against torchvision's Inception block.

The oracle is torchvision's own block (``BasicConv2d``: conv without bias, ``BatchNorm2d``
eps 1e-3, ReLU) and ``nn.BatchNorm2d``'s bookkeeping. For ``kernel_sizes=(3, 5)`` the block's
third branch gets torchvision's ``BasicConv2d`` with a 5x5 kernel.

Backends: every training test runs on ``BN_TRAINING_BACKENDS``: the reference path and the
fused Triton BatchNorm-training kernels (``inception_kernels.triton.batchnorm_train``; the
interpreter on the CPU). Eval mode runs on Triton with BatchNorm folded into the fused op.
Tolerances:

- fp64: outputs, every gradient and the running statistics after several SGD steps, to 1e-9
  relative to the largest magnitude (max |got - want| <= 1e-9 max |want|);
- fp32 / fp16: three-way -- the block's error against torchvision's block in fp64 (same
  inputs) is at most 2x torchvision's own error in that dtype, plus a small atol.

Spatial sizes are small (the Triton interpreter is slow); channel counts are GoogLeNet's.
"""

import copy
import warnings

import pytest
import torch
import torch.nn as nn

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, FusedInception, batchnorm
from inception_kernels.testing import count_launches
from inception_kernels.testing import THREE_WAY_ATOL, assert_three_way, randomize_batchnorm

from _support import assert_rel

torchvision = pytest.importorskip("torchvision")
from torchvision.models.googlenet import BasicConv2d as TVBasicConv2d  # noqa: E402
from torchvision.models.googlenet import Inception as TVInception  # noqa: E402

pytestmark = pytest.mark.usefixtures("ieee_fp32")

#: GoogLeNet's 3a and 4e configs (in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj).
L3A = GOOGLENET_INCEPTIONS["3a"].channels
L4E = GOOGLENET_INCEPTIONS["4e"].channels

#: Backends of the training tests (see the module docstring).
BN_TRAINING_BACKENDS = ["reference", "triton"]
#: SGD steps of the multi-step training tests: two on Triton (the interpreter's time on 2 CPU cores),
#: enough for the running statistics to be updated from updated ones and for momentum=None's
#: cumulative average (1, then 1/2) to matter.
TRAIN_STEPS = {"reference": 3, "triton": 2}
#: Backends of the eval tests: BatchNorm folded into the fused op.
BN_EVAL_BACKENDS = ["reference", "triton"]


def tv_block(cfg=L3A, kernel_sizes=(3, 3), *, dtype=torch.float64, device="cpu", seed=0) -> TVInception:
    """torchvision's block with non-trivial BatchNorm parameters and running statistics."""
    torch.manual_seed(seed)
    block = TVInception(*cfg)
    if kernel_sizes == (3, 5):
        block.branch3[1] = TVBasicConv2d(cfg[4], cfg[5], kernel_size=5, padding=2)
    else:
        assert kernel_sizes == (3, 3), kernel_sizes
    return randomize_batchnorm(block, seed + 1).to(device=device, dtype=dtype)


def _x(cfg, n, h, w, *, dtype=torch.float64, device="cpu", channels_last=False, seed=3):
    x = torch.randn(n, cfg[0], h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x.to(device=device, dtype=dtype)
    return x.to(memory_format=torch.channels_last) if channels_last else x


def _grads(module, x):
    return {"x": x.grad, **{name: p.grad for name, p in module.named_parameters()}}


def _step(module, x, grad_out, opt):
    """One forward, backward and SGD step; returns (y, grads) before the step."""
    opt.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = module(x)
    y.backward(grad_out)
    grads = _grads(module, x)
    opt.step()
    return y.detach(), {k: v.detach().clone() for k, v in grads.items()}


# ---------------------------------------------------------------------------- names and state


@pytest.mark.parametrize("kernel_sizes", [(3, 3), (3, 5)])
def test_state_dict_moves_strictly_both_ways_with_torchvision(kernel_sizes):
    tv = tv_block(kernel_sizes=kernel_sizes, dtype=torch.float32)
    fused = FusedInception(*L3A, kernel_sizes=kernel_sizes, batch_norm=True)
    assert list(fused.state_dict()) == list(tv.state_dict())
    assert all("conv.bias" not in k for k in fused.state_dict())
    assert {m.eps for m in fused.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    fused.load_state_dict(tv.state_dict(), strict=True)
    other = tv_block(kernel_sizes=kernel_sizes, dtype=torch.float32, seed=7)
    other.load_state_dict(fused.state_dict(), strict=True)
    for (k, v), (k2, v2) in zip(other.state_dict().items(), tv.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_fused_block_repr_and_accessors():
    fused = FusedInception(*L3A, kernel_sizes=(3, 3), batch_norm=True, backend="reference")
    assert "batch_norm=True" in repr(fused) and "bias=False" in repr(fused)
    assert [type(bn) for bn in fused.batch_norms()] == [nn.BatchNorm2d] * 6
    assert fused.weights_and_biases()[1] == (None,) * 6
    assert FusedInception(*L3A).batch_norms() is None


# ---------------------------------------------------------------------------- training mode


def _train_against_torchvision(backend, device, dtype, *, kernel_sizes=(3, 3), channels_last=False, cfg=L3A,
                               steps=3, shape=(2, 5, 4)):
    """Train torchvision's block and the fused one (same init) side by side with SGD.

    Returns ``[(y_tv, y_fused, grads_tv, grads_fused)]`` per step and both blocks after the steps.
    """
    tv = tv_block(cfg, kernel_sizes, dtype=dtype, device=device)
    fused = FusedInception.from_module(tv, backend=backend)
    n, h, w = shape
    x = _x(cfg, n, h, w, dtype=dtype, device=device, channels_last=channels_last)
    g = torch.Generator().manual_seed(5)
    grad_out = torch.randn(n, fused.spec.out_channels, h, w, generator=g, dtype=torch.float64).to(device, dtype)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (tv, fused)]
    records = []
    for _ in range(steps):
        y_tv, g_tv = _step(tv, x, grad_out, opts[0])
        y_f, g_f = _step(fused, x, grad_out, opts[1])
        records.append((y_tv, y_f, g_tv, g_f))
    return records, tv, fused


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("kernel_sizes", [(3, 3), (3, 5)])
@pytest.mark.parametrize("backend", BN_TRAINING_BACKENDS)
def test_train_fp64_matches_torchvision(backend, kernel_sizes, channels_last, device):
    """Outputs and every gradient at each of several SGD steps (TRAIN_STEPS), then every parameter
    and the running statistics (and num_batches_tracked), to 1e-9 relative."""
    steps = TRAIN_STEPS[backend]
    records, tv, fused = _train_against_torchvision(
        backend, device, torch.float64, kernel_sizes=kernel_sizes, channels_last=channels_last, steps=steps
    )
    for step, (y_tv, y_f, g_tv, g_f) in enumerate(records):
        assert_rel(y_f, y_tv, 1e-9, f"step {step} output")
        assert g_f.keys() == g_tv.keys()
        for name in g_tv:
            assert_rel(g_f[name], g_tv[name], 1e-9, f"step {step} grad {name}")
    want = tv.state_dict()
    got = fused.state_dict()
    assert list(got) == list(want)
    for name in want:
        if name.endswith("num_batches_tracked"):
            assert got[name].item() == want[name].item() == steps, name
        else:
            assert_rel(got[name], want[name], 1e-9, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("backend", BN_TRAINING_BACKENDS)
def test_train_low_precision_three_way(backend, dtype, device):
    """One training step in fp32 / fp16 of torchvision's block (ReLU): the fused block's output and
    running statistics -- and in fp32 every gradient -- are at most 2x as far from fp64 as
    torchvision in that dtype. fp64 runs on the same inputs and parameters (``dtype``-representable),
    as in test_fused_backward.

    fp16 gradients are compared by test_batchnorm_triton.py::test_train_fp16_gradients_three_way: through ReLU they are
    discontinuous where an input of ReLU is within fp16 rounding of 0 (each flip of the mask moves
    a BatchNorm-bias gradient by |dy| ~ 1), and at these sizes both torchvision in fp16 and the
    fused kernels flip a few such entries (measured: errors up to 0.9 on ``branch3.1.bn.bias``, of
    ~11, for torchvision itself) -- a max-error rule would compare coin flips."""
    cfg, (n, h, w) = L3A, (2, 5, 4)
    tv = tv_block(cfg, dtype=dtype, device=device)
    exact = copy.deepcopy(tv).double()
    fused = FusedInception.from_module(copy.deepcopy(tv), backend=backend)
    x64 = _x(cfg, n, h, w, dtype=dtype, device=device).double()
    grad64 = torch.randn(n, 256, h, w, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grad64 = grad64.to(dtype).to(device, torch.float64)
    results = {}
    for name, m in (("exact", exact), ("torch", tv), ("fused", fused)):
        x = x64.to(next(m.parameters()).dtype).detach().clone().requires_grad_()
        y = m(x)
        y.backward(grad64.to(y.dtype))
        grads = _grads(m, x) if dtype == torch.float32 else {}
        results[name] = {"y": y, **grads, **dict(m.named_buffers())}
    for key in results["exact"]:
        if key.endswith("num_batches_tracked"):
            continue
        want = results["exact"][key].double()
        atol = THREE_WAY_ATOL["batchnorm"][dtype] * max(1.0, want.abs().max().item())
        assert_three_way(results["fused"][key], results["torch"][key], want, atol=atol, what=key)


@pytest.mark.parametrize("backend", BN_TRAINING_BACKENDS)
def test_train_batch_one(backend, device):
    """Batch 1 trains (N*H*W values per channel); with a 1x1 image it raises BatchNorm's own error."""
    tv = tv_block(dtype=torch.float64, device=device)
    fused = FusedInception.from_module(tv, backend=backend)
    x = _x(L3A, 1, 3, 2, device=device)
    assert_rel(fused(x), tv(x), 1e-9, "batch-1 output")
    for name, t in tv.state_dict().items():
        assert_rel(fused.state_dict()[name], t, 1e-9, name)
    one = _x(L3A, 1, 1, 1, device=device)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training") as want:
        tv(one)
    before = copy.deepcopy(fused.state_dict())
    with pytest.raises(ValueError) as got:
        fused(one)
    assert str(got.value) == str(want.value)
    for name, t in fused.state_dict().items():  # nothing updated by the failed call
        assert torch.equal(t, before[name]), name


@pytest.mark.parametrize("backend", BN_TRAINING_BACKENDS)
def test_train_momentum_none_affine_false_and_no_running_stats(backend, device):
    """nn.BatchNorm2d's other settings: momentum=None (cumulative average over num_batches_tracked),
    affine=False, track_running_stats=False; eps as set per BatchNorm; TRAIN_STEPS SGD steps."""
    for setting in ("momentum_none", "affine_false", "no_running_stats"):
        tv = tv_block(dtype=torch.float64, device=device)
        for i, (name, m) in enumerate(list(tv.named_modules())):
            if isinstance(m, nn.BatchNorm2d):
                new = nn.BatchNorm2d(
                    m.num_features, eps=1e-3 * (1 + i), momentum=None if setting == "momentum_none" else 0.3,
                    affine=setting != "affine_false", track_running_stats=setting != "no_running_stats",
                ).to(device=device, dtype=torch.float64)
                new.load_state_dict(m.state_dict(), strict=False)
                parent, _, attr = name.rpartition(".")
                setattr(tv.get_submodule(parent), attr, new)
        fused = FusedInception.from_module(tv, backend=backend)
        assert list(fused.state_dict()) == list(tv.state_dict()), setting
        records = []
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) if list(m.parameters()) else None for m in (tv, fused)]
        x = _x(L3A, 2, 4, 3, device=device)
        grad_out = torch.randn(2, 256, 4, 3, dtype=torch.float64, device=device)
        for _ in range(TRAIN_STEPS[backend]):
            records.append([_step(m, x, grad_out, opt) for m, opt in zip((tv, fused), opts)])
        for step, ((y_tv, g_tv), (y_f, g_f)) in enumerate(records):
            assert_rel(y_f, y_tv, 1e-9, f"{setting} step {step}")
            for name in g_tv:
                assert_rel(g_f[name], g_tv[name], 1e-9, f"{setting} step {step} grad {name}")
        for name, t in tv.state_dict().items():
            assert_rel(fused.state_dict()[name], t, 1e-9, f"{setting} {name}")
        fused.eval()
        tv.eval()
        with torch.no_grad():
            assert_rel(fused(x), tv(x), 1e-9, f"{setting} eval after training")


def test_frozen_batchnorm_in_a_training_block(device):
    """Fine-tuning with frozen BatchNorm (block in train mode, its BatchNorms in eval mode)
    normalizes with the running statistics, as the unfused block does; BatchNorms in
    different modes inside one block are refused with a clear error."""
    tv = tv_block(dtype=torch.float64, device=device)
    fused = FusedInception.from_module(tv, backend="reference")
    for m in (tv, fused):
        m.train()
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.eval()
    x = _x(L3A, 2, 4, 3, device=device)
    assert_rel(fused(x), tv(x), 1e-9, "frozen BatchNorm")
    assert fused.branch1.bn.num_batches_tracked.item() == 0
    fused.get_submodule("branch2.0.bn").train()
    with pytest.raises(RuntimeError, match="must agree on training mode"):
        fused(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_train_under_autocast_matches_torchvision(dtype):
    """torch.autocast on the CPU: the convs run in the autocast dtype, BatchNorm's fp32 parameters and
    running statistics stay fp32 (mixed precision), as in torchvision's block."""
    tv = tv_block(dtype=torch.float32)
    fused = FusedInception.from_module(tv, backend="reference")
    x = _x(L3A, 2, 4, 3, dtype=torch.float32)
    with torch.autocast("cpu", dtype=dtype):
        y_tv, y_f = tv(x), fused(x)
    assert y_f.dtype == y_tv.dtype == dtype
    torch.testing.assert_close(y_f, y_tv, atol=0, rtol=0)
    for name, t in tv.state_dict().items():
        assert fused.state_dict()[name].dtype == t.dtype
        torch.testing.assert_close(fused.state_dict()[name], t, atol=0, rtol=0)


# ---------------------------------------------------------------------------- eval mode


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("kernel_sizes", [(3, 3), (3, 5)])
@pytest.mark.parametrize("backend", BN_EVAL_BACKENDS)
def test_eval_fp64_matches_torchvision(backend, kernel_sizes, channels_last, device):
    """Eval mode normalizes with the running statistics (and leaves them alone); gradients
    reach the convs and BatchNorm's weight and bias."""
    tv = tv_block(kernel_sizes=kernel_sizes, device=device).eval()
    fused = FusedInception.from_module(tv, backend=backend)
    assert not fused.training
    x = _x(L3A, 2, 4, 3, device=device, channels_last=channels_last)
    grad_out = torch.randn(2, fused.spec.out_channels, 4, 3, dtype=torch.float64, device=device)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (tv, fused)]
    (y_tv, g_tv), (y_f, g_f) = (_step(m, x, grad_out, opt) for m, opt in zip((tv, fused), opts))
    assert_rel(y_f, y_tv, 1e-9, "eval output")
    if channels_last:
        assert y_f.is_contiguous(memory_format=torch.channels_last)
    for name in g_tv:
        assert_rel(g_f[name], g_tv[name], 1e-9, f"eval grad {name}")
    for name, t in tv.state_dict().items():
        assert_rel(fused.state_dict()[name], t, 1e-9, name)
    assert fused.branch1.bn.num_batches_tracked.item() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("backend", BN_EVAL_BACKENDS)
def test_eval_low_precision_three_way(backend, dtype, device):
    cfg = L4E
    x64 = _x(cfg, 1, 3, 4, device=device)
    exact = tv_block(cfg, device=device).eval()
    tv = tv_block(cfg, dtype=dtype, device=device).eval()
    fused = FusedInception.from_module(tv, backend=backend)
    with torch.no_grad():
        want = exact(x64)
        y_torch = tv(x64.to(dtype))
        y = fused(x64.to(dtype))
    assert y.dtype == dtype
    assert_three_way(y, y_torch, want, atol=THREE_WAY_ATOL["batchnorm"][dtype] * max(1.0, want.abs().max().item()), what="y")


@pytest.mark.parametrize("mode, backend", [("train", "auto"), ("eval", "triton")])
def test_torch_compile_fullgraph(mode, backend, device):
    """torch.compile(fullgraph=True) traces the BatchNorm block in both modes (aot_eager: the
    real kernels run after tracing), running statistics and num_batches_tracked included."""
    torch.manual_seed(0)
    block = randomize_batchnorm(ik.Inception(6, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3), batch_norm=True), 1).to(device)
    block.train(mode == "train")
    fused = FusedInception.from_module(block, backend=backend)
    x = torch.randn(2, 6, 5, 4, device=device)
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), block(x), atol=1e-5, rtol=1e-5)
    for name, t in block.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], t, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------- backends


def _bn_args(tv):
    units = [tv.get_submodule(p) for p in ik.Inception.CONV_NAMES]
    return (
        [u.conv.weight for u in units], [u.bn.running_mean for u in units], [u.bn.running_var for u in units],
        [u.bn.weight for u in units], [u.bn.bias for u in units],
    )


def test_training_backends_today():
    """The single dispatch point: 'triton' runs the fused training kernels, 'auto' picks them
    wherever the fused op would pick Triton (here: the interpreter) without a warning, 'cuda'
    refuses training mode naming what is missing (and updates nothing); eval mode folds."""
    tv = tv_block()
    weights, means, variances, gammas, betas = _bn_args(tv)
    x = _x(L3A, 2, 3, 3)
    want_block = copy.deepcopy(tv).train()
    want = want_block(x)
    before = [t.clone() for t in (*means, *variances)]
    kw = dict(training=True, eps=1e-3, kernel_sizes=(3, 3))
    with pytest.raises(NotImplementedError, match="backend='cuda' cannot run BatchNorm in training mode yet"):
        ik.fused_inception_bn(x, weights, means, variances, gammas, betas, backend="cuda", **kw)
    for t, b in zip((*means, *variances), before):  # the refused call updated nothing
        assert torch.equal(t, b)
    assert batchnorm._resolve_bn_backend("triton", x, training=True) == "triton"
    assert batchnorm._resolve_bn_backend("auto", x, training=True) == "triton"
    assert batchnorm._resolve_bn_backend("triton", x, training=False) == "folded"
    with count_launches() as launches, warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ik.fused_inception_bn(x, weights, means, variances, gammas, betas, backend="auto", **kw)
    assert launches.triton_kernels == ["_fwd_conv_kernel", "_fwd_conv_kernel", "_fwd_norm_kernel"]
    assert_rel(y, want, 1e-9, "auto, training")
    want_stats = _bn_args(want_block)[1:3]
    for got_t, want_t in zip((*means, *variances), (*want_stats[0], *want_stats[1])):
        assert_rel(got_t, want_t, 1e-9, "running statistics")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ik.fused_inception_bn(x, weights, means, variances, gammas, betas, training=False, eps=1e-3,
                              kernel_sizes=(3, 3), backend="auto")


def test_triton_training_refuses_bf16_in_the_interpreter():
    """Triton's interpreter computes bf16 tl.dot wrongly, so bf16 training refuses 'triton' there
    (the fused op's rule) and 'auto' runs the reference path."""
    tv = tv_block(dtype=torch.bfloat16)
    weights, means, variances, gammas, betas = _bn_args(tv)
    x = _x(L3A, 2, 3, 3, dtype=torch.bfloat16)
    kw = dict(training=True, eps=1e-3, kernel_sizes=(3, 3))
    with pytest.raises(TypeError, match="backend='triton' cannot run bfloat16 in Triton's interpreter"):
        ik.fused_inception_bn(x, weights, means, variances, gammas, betas, backend="triton", **kw)
    assert batchnorm._resolve_bn_backend("auto", x, training=True) == "reference"


def test_auto_without_the_interpreter_runs_the_reference_quietly(no_interpreter):
    """On a CPU without Triton's interpreter "auto" trains on the reference path, without a warning."""
    tv = tv_block()
    fused = FusedInception.from_module(tv, backend="auto")
    x = _x(L3A, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(fused(x), tv(x), atol=0, rtol=0)


def test_functional_matches_module_and_reference():
    """fused_inception_bn (reference) is reference.inception_bn; per-conv eps and momentum."""
    tv = tv_block()
    weights, means, variances, gammas, betas = _bn_args(tv)
    x = _x(L3A, 2, 3, 3)
    eps = [1e-3, 2e-3, 3e-3, 1e-4, 1e-5, 1e-2]
    momentum = [0.1, 0.2, 0.3, 0.4, 0.5, 1.0]
    m1, v1 = [m.clone() for m in means], [v.clone() for v in variances]
    y = ik.fused_inception_bn(x, weights, m1, v1, gammas, betas, training=True, momentum=momentum, eps=eps,
                              kernel_sizes=(3, 3), backend="reference")
    m2, v2 = [m.clone() for m in means], [v.clone() for v in variances]
    want = ik.reference.inception_bn(x, weights, m2, v2, gammas, betas, training=True, momentum=momentum, eps=eps,
                                     kernel_sizes=(3, 3))
    torch.testing.assert_close(y, want, atol=0, rtol=0)
    for a, b, c in zip((*m1, *v1), (*m2, *v2), (*means, *variances)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        assert not torch.equal(a, c)  # updated in place


@pytest.mark.parametrize("case, error, match", [
    ("mean_shape", ValueError, r"running_means\[2\] \(for w3\) has shape \(5,\), expected \(128,\)"),
    ("mean_count", TypeError, "running_means must be None or a sequence of 6 tensors .* got 5 items"),
    ("only_means", ValueError, "running_means and running_vars go together"),
    ("eval_no_stats", ValueError, "training=False normalizes with the running statistics"),
    ("gamma_dtype", TypeError, r"BatchNorm tensors .* have dtypes \['torch.float32', 'torch.float64'\]"),
    ("fp16_fp64_stats", TypeError, r"one dtype: x's \(torch.float16\), or float32"),
    ("stats_grad", ValueError, r"running_vars\[0\] requires grad"),
    ("eps", ValueError, "eps must be positive in training mode, got 0.0 for conv w1"),
    ("eps_eval", ValueError, "eps must be >= 0, got -1.0 for conv w1"),
    ("momentum", TypeError, "momentum must be a number or a sequence of 6 numbers, got str"),
    ("training", TypeError, "training must be a bool, got int"),
    ("backend", ValueError, "backend must be one of"),
])
def test_functional_argument_errors(case, error, match):
    tv = tv_block()
    weights, means, variances, gammas, betas = _bn_args(tv)
    x = _x(L3A, 2, 3, 3)
    kw = dict(training=True, kernel_sizes=(3, 3), backend="reference")
    args = [x, weights, list(means), list(variances), list(gammas), list(betas)]
    if case == "mean_shape":
        args[2][2] = torch.zeros(5, dtype=torch.float64)
    elif case == "mean_count":
        args[2] = args[2][:5]
    elif case == "only_means":
        args[3] = None
    elif case == "eval_no_stats":
        args[2] = args[3] = None
        kw["training"] = False
    elif case == "gamma_dtype":
        args[4][1] = args[4][1].float()
    elif case == "fp16_fp64_stats":
        args[0] = x.half()
        args[1] = [w.half() for w in weights]
    elif case == "stats_grad":
        args[3][0] = args[3][0].clone().requires_grad_()
    elif case == "eps":
        kw["eps"] = 0.0
    elif case == "eps_eval":
        kw.update(eps=-1.0, training=False)
    elif case == "momentum":
        kw["momentum"] = "0.1"
    elif case == "training":
        kw["training"] = 1
    elif case == "backend":
        kw["backend"] = "cudnn"
    with pytest.raises(error, match=match):
        ik.fused_inception_bn(*args, **kw)


# ---------------------------------------------------------------------------- the whole network


def _train_googlenet(model, x, target, *, steps=3, lr=0.05, seed=1):
    """SGD with momentum on a fixed batch; dropout (main 0.2, aux 0.7) seeded the same for every model."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    torch.manual_seed(seed)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ik.googlenet_loss(model(x), target)  # torchvision's (logits, aux2, aux1), weights 0.3
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def _assert_trained_alike(fused, model, got, want, rtol):
    assert not torch.equal(want[0], want[-1])  # it did train
    assert_rel(got, want, rtol, "losses")
    state = fused.state_dict()
    assert list(state) == list(model.state_dict())
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(state[name], t), name
        else:
            assert_rel(state[name], t, rtol, name)


def test_torchvision_googlenet_trains_fused_like_unfused():
    """torchvision's GoogLeNet with its aux heads, fused in training mode, trains like the unfused
    model: losses, every parameter and every running statistic after three SGD steps, fp64,
    1e-9 relative.

    On the CPU the BatchNorm blocks run ``backend="reference"``: the Triton interpreter would need
    minutes for nine real-size blocks forward and backward. The fused Triton BatchNorm-training
    kernels train the whole network in the gpu-marked test below, and here real blocks
    (test_train_fp64_matches_torchvision and the other training tests). 47x47 is the smallest input at which the last blocks'
    maps are 2x2, so every 3x3 conv mixes neighbours (GoogLeNet's docstring)."""
    from inception_kernels.testing import googlenet_min_input_size

    size = googlenet_min_input_size("torchvision", aux_heads=True, last_map=2)
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=10).double()
    fused = ik.fuse(copy.deepcopy(model), backend="reference")
    assert sum(isinstance(m, FusedInception) and m.batch_norm for m in fused.modules()) == 9
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([1, 7])
    want = _train_googlenet(model, x, target)
    got = _train_googlenet(fused, x, target)
    _assert_trained_alike(fused, model, got, want, 1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_torchvision_googlenet_trains_fused_like_unfused_full_size(backend):
    """The same at 224x224, batch 8, fp32 (TF32 off), on the GPU: the BatchNorm blocks train on
    the fused Triton kernels (``"auto"`` picks them on a CUDA tensor)."""
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=1000).cuda()
    fused = ik.fuse(copy.deepcopy(model), backend=backend)
    x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(2)).cuda()
    target = torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(3)).cuda()
    want = _train_googlenet(model, x, target, lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _train_googlenet(fused, x, target, lr=0.01)
    _assert_trained_alike(fused, model, got, want, 1e-3)
