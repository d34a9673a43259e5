"""fuse() and unfuse(): blocks recognized by their computation, modes and state_dict keys kept,
all-or-nothing replacement, warnings that name the block and the reason.

Most tests use ``backend="reference"`` (they test recognition and bookkeeping, not kernels);
fusing computes the same function, so the fused model is compared with the unfused one.
The tests marked "regression" failed on main before this rework (checked).
"""

import copy
import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from inception_kernels import FusedInception, Inception, fuse, googlenet, unfuse
from inception_kernels.testing import randomize_batchnorm

torchvision = pytest.importorskip("torchvision")
from torchvision.models.googlenet import Inception as TVInception  # noqa: E402

#: A small spec with distinct channel counts everywhere: (in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool).
SMALL = (6, 3, 4, 5, 2, 3, 2)


def _x(c=6, h=5, w=4, n=2, seed=1):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


class ConvBN(nn.Module):
    """torchvision's BasicConv2d without its ReLU (conv, BatchNorm)."""

    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return self.bn(self.conv(x))


class ConvOnly(nn.Module):
    """A conv with a bias and no activation, named like BasicConv2d."""

    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, **kw)

    def forward(self, x):
        return self.conv(x)


class InceptionV3Names(nn.Module):
    """An Inception-v1 block in Inception-v3's naming: bare nn.Conv2d, F.relu or nn.ReLU modules."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp, relu_modules=False):
        super().__init__()
        self.branch1x1 = nn.Conv2d(cin, c1, 1)
        self.branch3x3_1 = nn.Conv2d(cin, c3r, 1)
        self.branch3x3_2 = nn.Conv2d(c3r, c3, 3, padding=1)
        self.branch5x5_1 = nn.Conv2d(cin, c5r, 1)
        self.branch5x5_2 = nn.Conv2d(c5r, c5, 5, padding=2)
        self.branch_pool = nn.Conv2d(cin, pp, 1)
        self.act = nn.ReLU(inplace=True) if relu_modules else F.relu

    def forward(self, x):
        b1 = self.act(self.branch1x1(x))
        b3 = self.act(self.branch3x3_2(self.act(self.branch3x3_1(x))))
        b5 = self.act(self.branch5x5_2(self.act(self.branch5x5_1(x))))
        bp = self.act(self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1)))
        return torch.cat([b1, b3, b5, bp], 1)


class Holder(nn.Module):
    """A model around one block (fuse() replaces ``block`` in place)."""

    def __init__(self, block):
        super().__init__()
        self.stem = nn.Conv2d(block_in(block), block_in(block), 1)
        self.block = block

    def forward(self, x):
        return self.block(self.stem(x))


def block_in(block):
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels


# ---------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("unit", [ConvBN, ConvOnly])
def test_regression_block_without_relu_is_not_given_relu(unit):
    """A block matching branch1..branch4 without any ReLU is fused without ReLU (main fused it
    with ReLU: a silent wrong answer)."""
    block = randomize_batchnorm(TVInception(*SMALL, conv_block=unit)).double().eval()
    model = Holder(block).double().eval()
    x = _x()
    want = model(x)
    fused = fuse(model, backend="reference")
    torch.testing.assert_close(fused(x), want, atol=1e-12, rtol=1e-10)
    assert isinstance(fused.block, FusedInception) and fused.block.spec.activation is None


def test_regression_block_fused_in_eval_then_trained_uses_batch_statistics():
    """A BatchNorm block fused in eval mode and then switched to train() normalizes with batch
    statistics and updates the running ones (main had folded the running statistics in: silently
    wrong in training)."""
    ref = Holder(randomize_batchnorm(TVInception(*SMALL))).double().eval()
    model = fuse(copy.deepcopy(ref), backend="reference")
    ref.train()
    model.train()
    x = _x()
    torch.testing.assert_close(model(x), ref(x), atol=1e-12, rtol=1e-10)
    for (k, v), (k2, v2) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v2, v, atol=1e-12, rtol=1e-10, msg=k)


def test_regression_batchnorm_without_running_stats_is_fused_not_half_replaced():
    """A BatchNorm without running statistics (track_running_stats=False) in the second block:
    both blocks are fused and compute what they did (main raised after the first block had
    already been replaced)."""
    first = randomize_batchnorm(Inception(*SMALL, kernel_sizes=(3, 3), batch_norm=True))
    second = Inception(13, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3), batch_norm=True)
    for unit in second.convs():
        unit.bn = nn.BatchNorm2d(unit.bn.num_features, eps=1e-3, track_running_stats=False)
    model = nn.Sequential(first, second).double().eval()
    x = _x()
    want = model(x)
    fused = fuse(copy.deepcopy(model), backend="reference")
    assert [type(m) for m in fused] == [FusedInception, FusedInception]
    torch.testing.assert_close(fused(x), want, atol=1e-12, rtol=1e-10)


def test_regression_second_fuse_is_a_quiet_noop():
    model = googlenet("torchvision", aux_logits=False, init_weights=False, num_classes=10).eval()
    fuse(model, backend="reference")
    before = {name: id(m) for name, m in model.named_modules()}
    ctx = _no_warnings()
    try:
        assert fuse(model, backend="reference") is model
    finally:
        ctx.__exit__(None, None, None)
    assert {name: id(m) for name, m in model.named_modules()} == before


@pytest.mark.parametrize("relu_modules", [False, True], ids=["F.relu", "nn.ReLU"])
def test_regression_inception_v3_names_with_bare_convs_are_recognized(relu_modules):
    block = InceptionV3Names(*SMALL, relu_modules=relu_modules).double()
    model = Holder(block).double()
    keys = list(model.state_dict())
    x = _x()
    want = model(x)
    ctx = _no_warnings()
    try:
        fuse(model, backend="reference")
    finally:
        ctx.__exit__(None, None, None)
    assert isinstance(model.block, FusedInception)
    assert model.block.spec.kernel_sizes == (3, 5) and model.block.spec.activation == "relu"
    assert list(model.state_dict()) == keys  # branch1x1.weight, ... kept
    torch.testing.assert_close(model(x), want, atol=1e-12, rtol=1e-10)


def test_convs_with_and_without_bias_in_one_block():
    """Biases are read per conv: a block with some bias-less convs keeps exactly its keys."""
    block = InceptionV3Names(*SMALL).double()
    block.branch3x3_2 = nn.Conv2d(4, 5, 3, padding=1, bias=False).double()
    block.branch_pool = nn.Conv2d(6, 2, 1, bias=False).double()
    fused = fuse(copy.deepcopy(block), backend="reference")
    assert [c.bias is not None for c in fused.convs()] == [True, True, False, True, True, False]
    assert list(fused.state_dict()) == list(block.state_dict())
    assert "bias=(True, True, False, True, True, False)" in repr(fused)
    torch.testing.assert_close(fused(_x()), block(_x()), atol=1e-12, rtol=1e-10)
    made = FusedInception(*SMALL, bias=(True, True, False, True, True, False))
    assert [k for k in made.state_dict() if k.endswith("bias")] == [
        "branch1.conv.bias", "branch2.0.conv.bias", "branch3.0.conv.bias", "branch3.1.conv.bias"]
    with pytest.raises(TypeError, match="bias must be None, a bool or 6 bools"):
        FusedInception(*SMALL, bias=(True, False))


# ---------------------------------------------------------------------------- modes and keys


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fuse_torchvision_googlenet_keeps_mode_keys_and_parameters(mode):
    """Train or eval: every block becomes FusedInception(batch_norm=True) holding the very
    parameters and BatchNorm modules (an optimizer made before fuse() keeps working), and the
    state_dict keys stay torchvision's, in order."""
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=10)
    model.train(mode == "train")
    keys = list(model.state_dict())
    params = {name: p for name, p in model.named_parameters()}
    bns = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    fuse(model, backend="reference")
    blocks = [m for m in model.modules() if isinstance(m, FusedInception)]
    assert len(blocks) == 9 and all(b.batch_norm and not b.folded_batch_norm for b in blocks)
    assert all(b.training == (mode == "train") for b in model.modules())
    assert list(model.state_dict()) == keys
    assert {name: id(p) for name, p in model.named_parameters()} == {name: id(p) for name, p in params.items()}
    assert {name: id(m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)} == \
        {name: id(m) for name, m in bns.items()}
    assert model.inception3a.spec.kernel_sizes == (3, 3)


def test_fuse_a_bare_block_returns_the_fused_block():
    block = randomize_batchnorm(TVInception(*SMALL)).double()
    ctx = _no_warnings()
    try:
        fused = fuse(block, backend="reference")
    finally:
        ctx.__exit__(None, None, None)
    assert isinstance(fused, FusedInception) and fused.backend == "reference" and fused.training
    assert list(fused.state_dict()) == list(block.state_dict())
    x = _x()
    torch.testing.assert_close(fused(x), copy.deepcopy(block)(x), atol=1e-12, rtol=1e-10)


def test_from_module_copies():
    block = randomize_batchnorm(TVInception(*SMALL)).double().eval()
    fused = FusedInception.from_module(block, backend="reference")
    assert not fused.training
    assert not {id(t) for t in fused.state_dict(keep_vars=True).values()} & \
        {id(t) for t in block.state_dict(keep_vars=True).values()}
    x = _x()
    torch.testing.assert_close(fused(x), block(x), atol=1e-12, rtol=1e-10)
    with pytest.raises(TypeError, match=r"block \(Sequential\) is not an Inception block the fused op computes"):
        FusedInception.from_module(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(TypeError, match="already a FusedInception"):
        FusedInception.from_module(fused)


# ---------------------------------------------------------------------------- folding


def test_fold_batch_norm_is_explicit_eval_only_and_all_or_nothing():
    model = nn.Sequential(randomize_batchnorm(Inception(*SMALL, kernel_sizes=(3, 3), batch_norm=True)),
                          randomize_batchnorm(Inception(13, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3), batch_norm=True)))
    model = model.double().eval()
    model[1].train()
    with pytest.raises(ValueError, match=r"^1: fold_batch_norm=True folds BatchNorm's running statistics.*training mode"):
        fuse(model, fold_batch_norm=True)
    assert [type(m) for m in model] == [Inception, Inception]  # nothing replaced
    model.eval()
    for unit in model[1].convs():
        unit.bn = nn.BatchNorm2d(unit.bn.num_features, eps=1e-3, track_running_stats=False).double().eval()
    with pytest.raises(ValueError, match=r"^1: fold_batch_norm=True needs running statistics, but branch1.bn"):
        fuse(model, fold_batch_norm=True)
    assert [type(m) for m in model] == [Inception, Inception]


def test_folded_blocks_compute_eval_mode_and_refuse_train():
    ref = nn.Sequential(randomize_batchnorm(Inception(*SMALL, kernel_sizes=(3, 3), batch_norm=True)),
                        randomize_batchnorm(Inception(13, 3, 4, 5, 2, 3, 2, batch_norm=True), seed=1)).double().eval()
    model = fuse(copy.deepcopy(ref), backend="reference", fold_batch_norm=True)
    assert all(m.folded_batch_norm and not m.batch_norm for m in model)
    assert "branch1.bn.running_mean" not in model.state_dict() and "0.branch1.conv.bias" in model.state_dict()
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-12, rtol=1e-10)
    with pytest.raises(RuntimeError, match="made by fuse\\(..., fold_batch_norm=True\\).*cannot train"):
        model.train()
    with pytest.raises(RuntimeError, match="cannot train"):
        model[1].train()
    model[1].eval()  # eval is fine
    assert "folded_batch_norm=True" in repr(model[0])


# ---------------------------------------------------------------------------- what is not fused


class _Odd(Inception):
    """Our block (torchvision's names) with one thing changed by ``kind``."""

    def __init__(self, kind):
        super().__init__(*SMALL, kernel_sizes=(3, 5), batch_norm=kind.startswith("bn"))
        self.kind = kind
        if kind == "avg_pool":
            self.branch4[0] = nn.AvgPool2d(3, stride=1, padding=1)
        elif kind == "pool_stride2":
            self.branch4[0] = nn.MaxPool2d(3, stride=2, padding=1)
        elif kind == "conv_stride2":
            self.branch2[1].conv.stride = (2, 2)
        elif kind == "dilation":
            self.branch3[1].conv.dilation = (2, 2)
            self.branch3[1].conv.padding = (4, 4)
        elif kind == "groups":
            self.branch1.conv = nn.Conv2d(6, 3, 1, groups=3)
        elif kind == "padding":
            self.branch3[1].conv.padding = (1, 1)
        elif kind == "relu_some":
            self.branch3[0].activation = None
        elif kind == "bn_some":
            self.branch2[1].bn = None
        elif kind == "shared_conv":
            self.branch4[1].conv = self.branch1.conv
        elif kind == "hook":
            self.branch1.conv.register_forward_hook(lambda *a: None)
        elif kind == "extra_buffer":
            self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        if self.kind == "order":
            return torch.cat([self.branch4(x), self.branch2(x), self.branch3(x), self.branch1(x)], 1)
        if self.kind == "extra_after":
            return super().forward(x) * 2
        if self.kind == "extra_before":
            return super().forward(x * 2)
        if self.kind == "extra_in_branch":
            return torch.cat([self.branch1(x), torch.tanh(self.branch2(x)), self.branch3(x), self.branch4(x)], 1)
        if self.kind == "untraceable":
            if x.shape[1] != 6:
                raise ValueError("x must have 6 channels")
        return super().forward(x)


@pytest.mark.parametrize("kind, reason", [
    ("avg_pool", r"branch 4 pools with AvgPool2d \(branch4.0\); the fused block max-pools"),
    ("pool_stride2", r"MaxPool2d \(branch4.0\) has kernel \(3, 3\), stride \(2, 2\)"),
    ("conv_stride2", r"branch2.1.conv has stride \(2, 2\); the fused block needs stride 1"),
    ("dilation", r"branch3.1.conv has dilation \(2, 2\)"),
    ("groups", "branch1.conv has groups=3"),
    ("padding", r"branch3.1.conv has padding \(1, 1\); the fused block needs padding 2"),
    ("relu_some", "ReLU follows some convs but not all"),
    ("bn_some", "BatchNorm follows some convs but not all"),
    ("shared_conv", "one conv module is called twice"),
    ("hook", "hooks are registered on branch1.conv"),
    ("extra_buffer", "it holds scale, which its computation does not use"),
    ("order", r"branch 1 has an op the fused block does not compute: MaxPool2d \(branch4.0\)"),
    ("extra_after", "an extra op after the concatenation: mul"),
    ("extra_before", "branch 1 has an op the fused block does not compute: mul"),
    ("extra_in_branch", "branch 2 has an op the fused block does not compute: tanh"),
    ("untraceable", "torch.fx cannot trace it"),
])
def test_unfusable_blocks_are_left_alone_with_one_warning(kind, reason):
    model = nn.Sequential(nn.Identity(), _Odd(kind))
    before = copy.deepcopy(model.state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fuse(model, backend="reference") is model
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert messages[0].startswith("fuse(): 1 (_Odd) is left unfused: "), messages
    assert re.search(reason, messages[0]), messages[0]
    assert type(model[1]) is _Odd and not any(isinstance(m, FusedInception) for m in model.modules())
    assert model.state_dict().keys() == before.keys()


def test_swapped_spatial_branches_are_an_inception_block_too():
    """cat([1x1, 1x1->5x5, 1x1->3x3, pool]) is the block with kernel_sizes (5, 3): fused as such."""
    class Swapped(Inception):
        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch3(x), self.branch2(x), self.branch4(x)], 1)

    block = Swapped(*SMALL, kernel_sizes=(3, 5)).double()
    fused = fuse(copy.deepcopy(block), backend="reference")
    assert fused.spec.kernel_sizes == (5, 3) and (fused.spec.ch3x3red, fused.spec.ch3x3) == (2, 3)
    assert list(fused.state_dict()) == list(block.state_dict())
    torch.testing.assert_close(fused(_x()), block(_x()), atol=1e-12, rtol=1e-10)


def test_block_used_piecemeal_by_its_parent_is_left_alone():
    class Piecemeal(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inception(*SMALL)

        def forward(self, x):
            return self.inner(x) + self.inner.branch1(x).sum()

    model = Piecemeal()
    with pytest.warns(UserWarning, match=r"fuse\(\): inner \(Inception\) is left unfused: Piecemeal calls its "
                                         r"submodule inner.branch1.conv directly"):
        fuse(model)
    assert type(model.inner) is Inception


def test_functional_conv_block_is_left_alone():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, k, padding=k // 2) for c_in, c_out, k in
                                       [(6, 3, 1), (6, 4, 1), (4, 5, 3), (6, 2, 1), (2, 3, 5), (6, 2, 1)])

        def forward(self, x):
            c = self.convs
            return torch.cat([c[0](x), c[2](c[1](x)), F.conv2d(c[3](x), c[4].weight, None, padding=2),
                              c[5](F.max_pool2d(x, 3, 1, 1))], 1)

    with pytest.warns(UserWarning, match="left unfused: branch 3 has an op with 2 inputs: conv2d "
                                         "\\(a functional conv; fuse\\(\\) fuses nn.Conv2d modules\\)"):
        fuse(nn.Sequential(Functional()))


def test_a_block_held_twice_is_replaced_everywhere_by_one_fused_block():
    block = Inception(*SMALL)
    model = nn.Sequential(block, nn.Conv2d(13, 6, 1), block)
    fuse(model, backend="reference")
    assert isinstance(model[0], FusedInception) and model[0] is model[2]


# ---------------------------------------------------------------------------- unfuse


def test_unfuse_torchvision_googlenet_loads_strictly_into_torchvision():
    torch.manual_seed(0)
    tv = randomize_batchnorm(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=10))
    model = fuse(copy.deepcopy(tv), backend="reference")
    assert unfuse(model) is model
    assert not any(isinstance(m, FusedInception) for m in model.modules())
    assert sum(type(m) is Inception for m in model.modules()) == 9 and model.inception5b.batch_norm
    fresh = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=10)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 15, 15)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), tv.eval()(x), atol=0, rtol=0)
        torch.testing.assert_close(model.eval()(x), tv(x), atol=0, rtol=0)


@pytest.mark.parametrize("source", ["no_relu", "v3_names", "bn_momentum"])
def test_unfuse_a_block_computes_what_the_fused_block_computes(source):
    if source == "no_relu":
        block = Inception(*SMALL, activation=None)
    elif source == "v3_names":
        block = InceptionV3Names(*SMALL)
    else:
        block = randomize_batchnorm(TVInception(*SMALL))
        block.branch2[0].bn.momentum = None
    block = block.double()
    fused = fuse(copy.deepcopy(block), backend="reference")
    plain = unfuse(copy.deepcopy(fused))
    assert type(plain) is Inception and plain.spec == fused.spec
    x = _x()
    for m in (block, fused, plain):
        m.train()
    want = block(x)
    torch.testing.assert_close(fused(x), want, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(plain(x), want, atol=1e-12, rtol=1e-10)
    if source == "bn_momentum":
        assert plain.branch2[0].bn.momentum is None
        torch.testing.assert_close(plain.branch2[0].bn.running_mean, block.branch2[0].bn.running_mean)


def test_unfuse_refuses_folded_blocks_before_replacing_any():
    model = nn.Sequential(Inception(*SMALL), Inception(13, 3, 4, 5, 2, 3, 2, batch_norm=True)).eval()
    fuse(model, fold_batch_norm=True)
    with pytest.raises(ValueError, match="^unfuse\\(\\): 1 was fused with fold_batch_norm=True"):
        unfuse(model)
    assert [type(m) for m in model] == [FusedInception, FusedInception]
