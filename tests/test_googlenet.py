"""GoogLeNet, both variants: structure, parameter counts, torchvision parity, aux heads, loss, input checks."""

import importlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, GoogLeNetOutputs, googlenet, googlenet_loss, reference
from inception_kernels.models import Inception
from inception_kernels.testing import randomize_batchnorm

torchvision = pytest.importorskip("torchvision")

def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _on_meta(variant: str, **kwargs) -> nn.Module:
    """A model with no storage, for counting and inspecting parameters quickly."""
    with torch.device("meta"):
        return googlenet(variant, init_weights=False, **kwargs)


def _torchvision_googlenet(aux_logits: bool, transform_input: bool = False) -> nn.Module:
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(
        weights=None, aux_logits=aux_logits, init_weights=True, transform_input=transform_input
    )
    randomize_batchnorm(tv)
    return tv


@pytest.fixture(scope="module")
def torchvision_models() -> dict:
    """torchvision GoogLeNets with and without aux heads, built once (tests set mode and layout)."""
    return {aux: _torchvision_googlenet(aux) for aux in (False, True)}


# ---------------------------------------------------------------------------------------------
# Structure and parameter counts


def test_paper_parameter_count_without_aux_heads():
    model = _on_meta("paper", aux_logits=False)
    # Every conv with a bias: stem 7x7/2 64, 1x1 64, 3x3 192; the nine blocks; the classifier.
    stem = (3 * 64 * 49 + 64) + (64 * 64 + 64) + (64 * 192 * 9 + 192)
    blocks = sum(spec.num_parameters for spec in GOOGLENET_INCEPTIONS.values())
    fc = 1024 * 1000 + 1000
    assert stem + blocks + fc == 6_998_552  # docs/design.md §2
    assert _num_params(model) == 6_998_552


def test_paper_parameter_count_with_aux_heads():
    aux = sum(c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    assert _num_params(_on_meta("paper", aux_logits=True)) == 6_998_552 + aux == 13_378_280


@pytest.mark.parametrize("aux_logits, expected", [(False, 6_624_904), (True, 13_004_888)])
def test_torchvision_parameter_count(aux_logits, expected):
    assert _num_params(_on_meta("torchvision", aux_logits=aux_logits)) == expected


def test_paper_structure():
    model = _on_meta("paper")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for name, block in model.inceptions().items():
        assert block.spec == GOOGLENET_INCEPTIONS[name].with_(spatial=None)
        assert block.branch3[1].conv.kernel_size == (5, 5)
        assert block.branch3[1].conv.padding == (2, 2)
    for pool in (model.maxpool1, model.maxpool2, model.maxpool3, model.maxpool4):
        assert (pool.kernel_size, pool.stride, pool.ceil_mode) == (3, 2, True)
    for lrn in (model.lrn1, model.lrn2):
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert model.dropout.p == 0.4
    assert model.aux1.dropout.p == model.aux2.dropout.p == 0.7


@pytest.mark.parametrize("variant, kernel_sizes", [("paper", (3, 5)), ("torchvision", (3, 3))])
def test_blocks_are_built_from_the_one_table(monkeypatch, variant, kernel_sizes):
    """Both variants take the nine blocks' channels from spec.GOOGLENET_INCEPTIONS, not a copy:
    a change to the table shows in the model."""
    changed = GOOGLENET_INCEPTIONS["5b"].with_(pool_proj=64)
    monkeypatch.setitem(GOOGLENET_INCEPTIONS, "5b", changed)
    model = _on_meta(variant)
    for name, block in model.inceptions().items():
        assert block.spec == GOOGLENET_INCEPTIONS[name].with_(spatial=None, kernel_sizes=kernel_sizes), name
    assert model.inception5b.branch4[1].conv.out_channels == 64


def test_inception_block_exposes_spec_and_op_weights():
    spec = GOOGLENET_INCEPTIONS["4d"].with_(spatial=None)
    block = Inception.from_spec(spec)
    assert block.spec == spec
    weights, biases = block.weights_and_biases()
    assert tuple(tuple(w.shape) for w in weights) == spec.weight_shapes
    assert tuple(tuple(b.shape) for b in biases) == tuple((s[0],) for s in spec.weight_shapes)
    # The accessors return the block's own parameters, at the documented paths.
    params = dict(block.named_parameters())
    for name, w, b in zip(Inception.CONV_NAMES, weights, biases):
        assert params[f"{name}.conv.weight"] is w and params[f"{name}.conv.bias"] is b

    bn_block = Inception.from_spec(spec.with_(kernel_sizes=(3, 3)), batch_norm=True)
    with pytest.raises(ValueError, match="batch_norm=True"):
        bn_block.weights_and_biases()


def test_inception_block_without_activation_has_no_relu():
    torch.manual_seed(0)
    block = Inception(8, 4, 3, 5, 2, 3, 4, activation=None)
    assert not any(isinstance(m, nn.ReLU) for m in block.modules())
    y = block(torch.randn(2, 8, 5, 6))
    assert y.shape == (2, 16, 5, 6)
    assert (y < 0).any()


# ---------------------------------------------------------------------------------------------
# torchvision parity


@pytest.mark.parametrize("aux_logits", [False, True])
def test_torchvision_state_dict_loads_strictly_and_outputs_match(torchvision_models, aux_logits):
    tv = torchvision_models[aux_logits].eval()
    ours = googlenet("torchvision", aux_logits=aux_logits, init_weights=False).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(tv.state_dict())

    for memory_format in (torch.contiguous_format, torch.channels_last):
        tv, ours = tv.to(memory_format=memory_format), ours.to(memory_format=memory_format)
        x = torch.randn(2, 3, 64, 48).to(memory_format=memory_format)
        with torch.no_grad():
            expected, actual = tv(x), ours(x)
        assert expected.abs().max() > 0.1  # not a trivially small output
        torch.testing.assert_close(actual, expected)


def test_torchvision_inception_block_loads_into_ours():
    torch.manual_seed(0)
    cfg = (24, 8, 6, 10, 4, 6, 5)
    tv_block = importlib.import_module("torchvision.models.googlenet").Inception(*cfg)
    randomize_batchnorm(tv_block)
    ours = Inception(*cfg, kernel_sizes=(3, 3), batch_norm=True)
    ours.load_state_dict(tv_block.state_dict(), strict=True)
    for name in Inception.CONV_NAMES:  # the documented conv paths exist in torchvision's block too
        assert isinstance(tv_block.get_submodule(name).conv, nn.Conv2d)
    x = torch.randn(2, 24, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv_block.eval()(x))


def test_torchvision_outputs_match_at_224_with_transform_input():
    tv = _torchvision_googlenet(aux_logits=True, transform_input=True).eval()
    ours = googlenet("torchvision", transform_input=True, init_weights=False).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))


def test_torchvision_training_outputs_match(torchvision_models):
    tv = torchvision_models[True].train().to(memory_format=torch.contiguous_format)
    ours = googlenet("torchvision", init_weights=False).train()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 40, 40)
    torch.manual_seed(1)
    expected = tv(x)
    torch.manual_seed(1)
    actual = ours(x)
    assert isinstance(actual, GoogLeNetOutputs)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    # Training-mode BatchNorm updated the running statistics the same way.
    torch.testing.assert_close(ours.state_dict(), tv.state_dict())


# ---------------------------------------------------------------------------------------------
# The paper variant against its definition, written out functionally


def _paper_forward_by_hand(model, x):
    """docs/design.md §2's paper network in functional form, with the model's parameters."""

    def conv(m, t, **kw):
        return F.relu(F.conv2d(t, m.conv.weight, m.conv.bias, **kw))

    def block(b, t):
        weights, biases = b.weights_and_biases()
        return reference.inception(t, weights, biases, kernel_sizes=(3, 5), activation="relu")

    def aux(head, t):
        t = F.adaptive_avg_pool2d(F.avg_pool2d(t, 5, stride=3), 4)
        t = torch.flatten(conv(head.conv, t), 1)
        return F.linear(F.relu(F.linear(t, head.fc1.weight, head.fc1.bias)), head.fc2.weight, head.fc2.bias)

    def pool(t):
        return F.max_pool2d(t, 3, stride=2, ceil_mode=True)

    def lrn(t):
        return F.local_response_norm(t, 5, alpha=1e-4, beta=0.75, k=1.0)

    t = lrn(pool(conv(model.conv1, x, stride=2, padding=3)))
    t = pool(lrn(conv(model.conv3, conv(model.conv2, t), padding=1)))
    t = pool(block(model.inception3b, block(model.inception3a, t)))
    t = block(model.inception4a, t)
    aux1 = aux(model.aux1, t)
    t = block(model.inception4d, block(model.inception4c, block(model.inception4b, t)))
    aux2 = aux(model.aux2, t)
    t = pool(block(model.inception4e, t))
    t = block(model.inception5b, block(model.inception5a, t))
    logits = F.linear(t.mean(dim=(2, 3)), model.fc.weight, model.fc.bias)
    return logits, aux2, aux1


def test_paper_forward_matches_its_definition():
    torch.manual_seed(0)
    # No dropout, so training mode (which runs the aux heads) is deterministic.
    model = googlenet("paper", dropout=0.0, dropout_aux=0.0).train()
    x = torch.randn(2, 3, 83, 80)
    with torch.no_grad():
        actual = model(x)
        expected = _paper_forward_by_hand(model, x)
    assert isinstance(actual, GoogLeNetOutputs)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


def test_paper_aux_head_sees_4x4_after_5x5_stride_3_pool_at_224():
    model = googlenet("paper", num_classes=10).train()
    seen = []
    hook = model.aux1.conv.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    hook.remove()
    assert seen == [(1, 512, 4, 4)]
    assert [tuple(t.shape) for t in out] == [(1, 10)] * 3


# ---------------------------------------------------------------------------------------------
# Outputs, loss, batch 1, channels_last


def _cross_entropy_by_hand(logits, target):
    return -(logits.log_softmax(dim=1)[torch.arange(len(target)), target]).mean()


def test_googlenet_loss_weighs_aux_heads():
    g = torch.Generator().manual_seed(0)
    logits, aux2, aux1 = (torch.randn(4, 5, generator=g) for _ in range(3))
    target = torch.tensor([0, 3, 4, 1])
    ce = _cross_entropy_by_hand
    expected = ce(logits, target) + 0.3 * (ce(aux2, target) + ce(aux1, target))
    torch.testing.assert_close(googlenet_loss(GoogLeNetOutputs(logits, aux2, aux1), target), expected)
    torch.testing.assert_close(
        googlenet_loss(GoogLeNetOutputs(logits, aux2, aux1), target, aux_weight=1.0),
        ce(logits, target) + ce(aux2, target) + ce(aux1, target),
    )
    torch.testing.assert_close(googlenet_loss(logits, target), ce(logits, target))
    torch.testing.assert_close(
        googlenet_loss(GoogLeNetOutputs(logits, None, None), target), ce(logits, target)
    )
    with pytest.raises(TypeError, match="outputs must be a logits tensor or GoogLeNetOutputs"):
        googlenet_loss({"logits": logits}, target)


def test_paper_trains_at_batch_one_at_minimum_size():
    torch.manual_seed(0)
    model = googlenet("paper", num_classes=3, dropout=0.0, dropout_aux=0.0).train()
    out = model(torch.randn(1, 3, model.min_input_size, model.min_input_size))
    assert all(t.shape == (1, 3) for t in out)
    googlenet_loss(out, torch.tensor([2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.aux1.fc2.weight.grad.abs().sum() > 0 and model.aux2.fc2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ik.models.VARIANTS)
def test_batch_one_and_channels_last(variant):
    torch.manual_seed(0)
    model = googlenet(variant, num_classes=6).eval()
    if variant == "torchvision":
        randomize_batchnorm(model)
    x = torch.randn(1, 3, model.min_input_size + 2, model.min_input_size)
    with torch.no_grad():
        expected = model(x)
        actual = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert expected.shape == (1, 6)
    torch.testing.assert_close(actual, expected)


def test_torchvision_batch_one_training_needs_more_than_one_value_per_batchnorm_channel():
    model = googlenet("torchvision", num_classes=4).train()
    out = model(torch.randn(1, 3, 47, 15))  # the 5b map is 2x1
    assert all(t.shape == (1, 4) for t in out)
    with pytest.raises(ValueError, match=r"x is 1x3x46x46: BatchNorm in training mode"):
        model(torch.randn(1, 3, 46, 46))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 15, 15)).shape == (1, 4)


# ---------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize(
    "variant, aux_logits, minimum",
    [("paper", True, 79), ("paper", False, 31), ("torchvision", True, 15), ("torchvision", False, 15)],
)
def test_minimum_input_size_outputs_and_size_errors(variant, aux_logits, minimum):
    model = googlenet(variant, aux_logits=aux_logits, num_classes=4).train()
    assert model.min_input_size == minimum
    if variant == "torchvision":
        assert torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["min_size"] == (minimum, minimum)
    assert (model.aux1 is None) == (model.aux2 is None) == (not aux_logits)
    x = torch.randn(2, 3, minimum, minimum + 3)
    out = model(x)
    if aux_logits:  # training with aux heads: the named triple, torchvision's fields
        assert isinstance(out, GoogLeNetOutputs)
        assert out._fields == ("logits", "aux_logits2", "aux_logits1")
        assert all(t.shape == (2, 4) for t in out)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    model.train()

    heads = "with" if aux_logits else "without"
    for h, w in ((minimum - 1, minimum - 1), (minimum, minimum - 1), (minimum - 1, minimum + 20)):
        with pytest.raises(ValueError, match=rf"x is {h}x{w} .*{variant} GoogLeNet {heads} aux heads needs H and W >= {minimum}"):
            model(torch.randn(2, 3, h, w))

    # Without the check, one size less fails deep inside the network: the minimum is tight.
    model._check_input = lambda x: None
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, minimum - 1, minimum - 1))


@pytest.mark.parametrize("variant", ik.models.VARIANTS)
def test_bad_input_raises_clear_errors(variant):
    model = googlenet(variant, aux_logits=False).eval()
    with pytest.raises(ValueError, match=r"x must have 3 channels \(RGB\), got 1 channels \(shape \(2, 1, 64, 64\)\)"):
        model(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"x must be 4-D \[N, 3, H, W\], got 3-D with shape \(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match=r"x must be 4-D .* got 5-D"):
        model(torch.randn(1, 2, 3, 64, 64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        model([[0.0]])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="variant must be 'paper' or 'torchvision', got 'v3'"):
        googlenet("v3")
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        googlenet("paper", num_classes=0)
    with pytest.raises(ValueError, match="activation must be 'relu' or None, got 'tanh'"):
        Inception(8, 4, 3, 5, 2, 3, 4, activation="tanh")
    with pytest.raises(ValueError, match="kernel_sizes must be odd"):
        Inception(8, 4, 3, 5, 2, 3, 4, kernel_sizes=(3, 4))
