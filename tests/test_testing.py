"""inception_kernels.testing: the shared input maker, BatchNorm randomizer, tolerance table and
three-way check behave as documented (the other suites rely on them)."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec
from inception_kernels.testing import (
    THREE_WAY_ATOL, TOLERANCES, assert_three_way, make_inception_inputs, randomize_batchnorm, three_way_errors,
    tolerance,
)

SPEC = InceptionSpec(5, 3, 4, 6, 2, 3, 4, kernel_sizes=(3, 5))


def test_inputs_shapes_dtypes_and_reproducibility():
    a = make_inception_inputs(SPEC, 2, 3, 4, torch.float16, seed=7, grad_out=True)
    b = make_inception_inputs(SPEC, 2, 3, 4, torch.float16, seed=7, grad_out=True)
    c = make_inception_inputs(SPEC, 2, 3, 4, torch.float16, seed=8)
    assert a.x.shape == (2, 5, 3, 4) and a.grad_out.shape == (2, SPEC.out_channels, 3, 4)
    assert [tuple(w.shape) for w in a.weights] == list(SPEC.weight_shapes)
    assert [tuple(b_.shape) for b_ in a.biases] == [(s[0],) for s in SPEC.weight_shapes]
    assert all(t.dtype == torch.float16 for t in (a.x, *a.weights, *a.biases, a.grad_out))
    assert all(torch.equal(p, q) for p, q in zip((a.x, *a.weights, *a.biases, a.grad_out),
                                                  (b.x, *b.weights, *b.biases, b.grad_out)))
    assert not torch.equal(a.x, c.x)
    x, ws, bs = a  # unpacks as the op's first three arguments
    assert x is a.x and ws is a.weights and bs is a.biases


def test_low_precision_inputs_are_the_rounded_float64_ones():
    hi = make_inception_inputs(SPEC, 1, 4, 4, torch.float64, seed=3)
    lo = make_inception_inputs(SPEC, 1, 4, 4, torch.bfloat16, seed=3)
    assert torch.equal(lo.x, hi.x.to(torch.bfloat16))
    assert all(torch.equal(w, v.to(torch.bfloat16)) for w, v in zip(lo.weights, hi.weights))


def test_bias_choices_do_not_change_the_other_tensors():
    full = make_inception_inputs(SPEC, 1, 3, 3, torch.float64, seed=1)
    none = make_inception_inputs(SPEC, 1, 3, 3, torch.float64, seed=1, bias="none")
    mixed = make_inception_inputs(SPEC, 1, 3, 3, torch.float64, seed=1, bias="mixed")
    no = make_inception_inputs(SPEC, 1, 3, 3, torch.float64, seed=1, bias=False)
    assert none.biases is None and no.biases is None and none.biases_or_nones() == [None] * 6
    assert [b is None for b in mixed.biases] == [False, True] * 3
    assert torch.equal(mixed.biases[2], full.biases[2]) and torch.equal(none.weights[4], full.weights[4])


@pytest.mark.parametrize("init, gain", [("lecun", 1.0), ("he", 2.0 ** 0.5), ("unit", None)])
def test_weight_inits_scale_by_fan_in(init, gain):
    spec = GOOGLENET_INCEPTIONS["4e"]
    ws = make_inception_inputs(spec, 1, 1, 1, torch.float64, weight_init=init, seed=0).weights
    for w in ws:
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        want = 1.0 if gain is None else gain / fan_in ** 0.5
        assert abs(w.std().item() / want - 1) < 0.1, (init, tuple(w.shape))


def test_bias_scale_x_and_channels_last():
    inp = make_inception_inputs(SPEC, 2, 4, 4, torch.float32, seed=0, bias_scale=0.0, channels_last=True)
    assert all(torch.count_nonzero(b) == 0 for b in inp.biases)
    assert inp.x.is_contiguous(memory_format=torch.channels_last) and not inp.x.is_contiguous()
    given = torch.ones(1, 5, 2, 2, dtype=torch.float64)
    with_x = make_inception_inputs(SPEC, 1, 2, 2, torch.float64, seed=4, x=given)
    assert torch.equal(with_x.x, given)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_init="xavier"), "weight_init must be one of"),
    (dict(bias="some"), "bias must be 'all', 'none', 'mixed' or a bool"),
])
def test_inputs_reject_unknown_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_inception_inputs(SPEC, 1, 2, 2, **kwargs)


def test_randomize_batchnorm_is_reproducible_and_non_trivial():
    def model():
        return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(6, affine=False))

    a, b = randomize_batchnorm(model(), 3), randomize_batchnorm(model(), 3)
    for i in (1, 2):
        assert all(torch.equal(p, q) for p, q in zip(a[i].state_dict().values(), b[i].state_dict().values()))
    bn = a[1]
    assert not torch.equal(bn.running_mean, torch.zeros(4)) and (bn.running_var >= 0.5).all()
    assert not torch.equal(bn.weight, torch.ones(4)) and not torch.equal(a[2].running_mean, torch.zeros(6))
    stats_only = randomize_batchnorm(model(), 3, affine=False)
    assert torch.equal(stats_only[1].weight, torch.ones(4)) and torch.equal(stats_only[1].running_mean, bn.running_mean)


def test_tolerance_table_lookup():
    assert tolerance("verify", torch.float32) == (1e-5, 1e-4) == TOLERANCES["verify"][torch.float32]
    assert tolerance("backward", torch.float64).atol == 1e-11
    with pytest.raises(KeyError, match="no tolerance for check 'forward' in torch.float16"):
        tolerance("forward", torch.float16)
    assert THREE_WAY_ATOL["forward"][torch.float16] == 1e-3


def test_three_way_passes_within_twice_pytorch_and_fails_beyond():
    exact = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    torch_res = exact + torch.tensor([0.0, 1e-3, 0.0], dtype=torch.float64)
    assert_three_way(exact + 2e-3, torch_res, exact, atol=1e-6)           # 2e-3 <= 2 * 1e-3 + 1e-6
    with pytest.raises(AssertionError, match="kernel error"):
        assert_three_way(exact + 2.1e-3, torch_res, exact, atol=1e-6)      # 2.1e-3 > 2e-3 + 1e-6
    with pytest.raises(AssertionError):
        assert_three_way(exact.clone().fill_(float("nan")), torch_res, exact, atol=1.0)
    k, t = three_way_errors(exact + 4e-3, torch_res, exact, relative=True)
    assert (k, t) == pytest.approx((1e-3, 2.5e-4))


def test_testing_imports_only_torch_and_the_library():
    code = ("import sys, inception_kernels.testing\n"
            "bad = [m for m in sys.modules if m.startswith(('pytest', 'inception_kernels.tools', "
            "'inception_kernels.cli', 'inception_kernels.report', 'inception_kernels.bench'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_override_wgrad_split_applies_inside_the_block_only():
    """The backward's split rule is the override inside the block, the shipped one after it (also
    after an exception), and a non-rule is refused by name."""
    import dataclasses

    from inception_kernels.testing import WGRAD_SPLIT, override_wgrad_split, pixel_split

    nothing_small = dataclasses.replace(WGRAD_SPLIT, min_pixels=1)
    shipped = pixel_split(64, 1, 1)[0]
    assert shipped == 1, "64 pixels are below the shipped minimum per split"
    with override_wgrad_split(nothing_small):
        assert pixel_split(64, 1, 1)[0] > 1
    assert pixel_split(64, 1, 1)[0] == shipped
    with pytest.raises(RuntimeError, match="inside"), override_wgrad_split(nothing_small):
        raise RuntimeError("inside")
    assert pixel_split(64, 1, 1)[0] == shipped
    with pytest.raises(TypeError, match="rule must be a PixelSplitRule, got dict"):
        with override_wgrad_split({"min_pixels": 1}):
            pass


def test_googlenet_min_input_size_is_the_models():
    """The door gives what a built model reports, and a larger size for a larger last map."""
    from inception_kernels.models import GoogLeNet
    from inception_kernels.testing import googlenet_min_input_size

    for variant in ("paper", "torchvision"):
        for aux in (False, True):
            model = GoogLeNet(variant=variant, aux_logits=aux, num_classes=10, init_weights=False)
            assert googlenet_min_input_size(variant, aux) == model.min_input_size, (variant, aux)
    assert googlenet_min_input_size("torchvision", True, last_map=2) > googlenet_min_input_size("torchvision", True)


def test_triton_forward_plan_takes_the_schedule_and_target():
    """The forward's plan for a GPU given by arch and SMs, with the schedule asked for."""
    from inception_kernels.testing import triton_forward_plan

    channels, ks = (16, 8, 4, 8, 2, 4, 4), (3, 5)
    for schedule in ("one_launch", "two_launch"):
        plan = triton_forward_plan(channels, ks, 1, 8, 8, torch.float16, arch=90, sms=132, schedule=schedule)
        assert plan.schedule == schedule


def test_override_measured_applies_inside_the_block_only():
    """auto's table is the override inside the block, the committed one after it, and a table
    that is not a sequence of dicts is refused."""
    from inception_kernels.testing import measured_table, override_measured

    committed = measured_table()
    entry = {"device": "X", "source": "test"}
    with override_measured([entry]):
        assert measured_table() == (entry,)
    assert measured_table() is committed
    with pytest.raises(TypeError, match="table must be a list or tuple of dicts"):
        with override_measured("not a table"):
            pass
    assert measured_table() is committed
