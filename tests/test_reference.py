"""The oracle, ``reference.inception``, against an Inception block built from nn.Conv2d / nn.MaxPool2d.

Outputs and every gradient (x and the twelve weights and biases) with the same grad_output,
for the nine GoogLeNet configs, plus the argument checks.
"""

import pytest
import torch

from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, reference
from inception_kernels.models import Inception
from inception_kernels.testing import make_inception_inputs, tolerance

# (dtype, atol, rtol): both sides run PyTorch's own convolutions, so the tolerances are tight.
DTYPES = [(d, *tolerance("reference", d)) for d in (torch.float64, torch.float32)]
DTYPE_IDS = ["fp64", "fp32"]


def _block(spec: InceptionSpec, dtype, seed: int = 0) -> Inception:
    """A paper-style block (conv + bias + activation, no BatchNorm) with random parameters."""
    torch.manual_seed(seed)
    block = Inception.from_spec(spec).to(dtype)
    with torch.no_grad():
        for p in block.parameters():
            if p.dim() == 1:  # biases of both signs, so activations switch on and off
                p.uniform_(-0.5, 0.5)
    return block


def _compare(block: Inception, x: torch.Tensor, atol: float, rtol: float, drop_biases=()) -> None:
    """reference.inception vs the block: outputs and gradients of x and all parameters."""
    for i in drop_biases:
        block.convs()[i].conv.bias = None
    weights, biases = block.weights_and_biases()
    ref_w = [w.detach().clone().requires_grad_() for w in weights]
    ref_b = [None if b is None else b.detach().clone().requires_grad_() for b in biases]
    x_mod = x.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()

    spec = block.spec
    y_mod = block(x_mod)
    y_ref = reference.inception(x_ref, ref_w, ref_b, kernel_sizes=spec.kernel_sizes, activation=spec.activation)
    assert y_ref.shape == (x.shape[0], spec.out_channels, x.shape[2], x.shape[3])
    assert y_ref.dtype == x.dtype
    torch.testing.assert_close(y_ref, y_mod, atol=atol, rtol=rtol)
    if spec.activation == "relu":  # the data exercises both sides of every ReLU
        assert 0.05 < (y_ref > 0).float().mean() < 0.95

    grad_out = torch.randn_like(y_mod)
    y_mod.backward(grad_out)
    y_ref.backward(grad_out)
    torch.testing.assert_close(x_ref.grad, x_mod.grad, atol=atol, rtol=rtol)
    for name, rw, w in zip(("w1", "w3r", "w3", "w5r", "w5", "wp"), ref_w, weights):
        torch.testing.assert_close(rw.grad, w.grad, atol=atol, rtol=rtol, msg=lambda m, n=name: f"d{n}: {m}")
    for name, rb, b in zip(("b1", "b3r", "b3", "b5r", "b5", "bp"), ref_b, biases):
        assert (rb is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(rb.grad, b.grad, atol=atol, rtol=rtol, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(GOOGLENET_INCEPTIONS))
def test_matches_module_for_googlenet_configs(name, dtype, atol, rtol):
    spec = GOOGLENET_INCEPTIONS[name].with_(spatial=None)
    block = _block(spec, dtype)
    x = torch.randn(2, spec.in_channels, 5, 7, dtype=dtype)
    _compare(block, x, atol, rtol)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "kernel_sizes, activation",
    [((3, 3), "relu"), ((3, 5), None), ((3, 3), None), ((5, 3), "relu")],
)
def test_kernel_sizes_and_activation(kernel_sizes, activation, dtype, atol, rtol):
    spec = GOOGLENET_INCEPTIONS["3a"].with_(spatial=None, kernel_sizes=kernel_sizes, activation=activation)
    _compare(_block(spec, dtype), torch.randn(2, spec.in_channels, 6, 5, dtype=dtype), atol, rtol)


@pytest.mark.parametrize("drop_biases", [(0, 1, 2, 3, 4, 5), (1, 4), (5,)], ids=["none", "some", "bp"])
def test_missing_biases(drop_biases):
    spec = GOOGLENET_INCEPTIONS["3a"].with_(spatial=None)
    block = _block(spec, torch.float64)
    _compare(block, torch.randn(2, spec.in_channels, 5, 7, dtype=torch.float64), 1e-12, 1e-12, drop_biases)


def test_biases_none_means_no_biases():
    spec = InceptionSpec(8, 4, 3, 5, 2, 3, 4)
    block = _block(spec, torch.float64)
    weights, _ = block.weights_and_biases()
    x = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    zeros = [torch.zeros(w.shape[0], dtype=torch.float64) for w in weights]
    torch.testing.assert_close(reference.inception(x, weights, None), reference.inception(x, weights, zeros))


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES, ids=DTYPE_IDS)
def test_channels_last_input(dtype, atol, rtol):
    spec = GOOGLENET_INCEPTIONS["4a"].with_(spatial=None)
    block = _block(spec, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(3, spec.in_channels, 7, 5, dtype=dtype).to(memory_format=torch.channels_last)
    _compare(block, x, atol, rtol)
    nchw = reference.inception(x.contiguous(), *block.weights_and_biases())
    torch.testing.assert_close(reference.inception(x, *block.weights_and_biases()), nchw, atol=atol, rtol=rtol)


def test_pool_padding_is_minus_infinity():
    # All-negative input with one channel: a zero-padded max-pool would give 0 at the border.
    spec = InceptionSpec(1, 1, 1, 1, 1, 1, 1)
    ones = [torch.ones(s, dtype=torch.float64) for s in spec.weight_shapes]
    x = -1.0 - torch.rand(1, 1, 4, 4, dtype=torch.float64)
    y = reference.inception(x, ones, None, activation=None)
    expected_pool = torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1)
    assert (expected_pool < 0).all()
    torch.testing.assert_close(y[:, 3:4], expected_pool)


# ---------------------------------------------------------------------------------------------
# Argument checks: every message names the argument, the expected and the actual value.

SMALL = InceptionSpec(8, 4, 3, 5, 2, 6, 4)  # w3: [5, 3, 3, 3], w5: [6, 2, 5, 5]


def _args(spec=SMALL, dtype=torch.float32):
    """x, weights, biases of ``spec`` (unscaled: only the argument checks matter here)."""
    return tuple(make_inception_inputs(spec, 2, 5, 5, dtype, weight_init="unit"))


def test_valid_small_args_pass():
    x, w, b = _args()
    assert reference.inception(x, w, b).shape == (2, SMALL.out_channels, 5, 5)


def test_wrong_channel_count():
    x, w, b = _args()
    x = torch.randn(2, 9, 5, 5)
    with pytest.raises(ValueError, match=r"weight w1 has shape \(4, 8, 1, 1\), expected \[Cout, 9, 1, 1\] from x's channels"):
        reference.inception(x, w, b)


def test_wrong_rank_of_x():
    x, w, b = _args()
    with pytest.raises(ValueError, match=r"x must be 4-D \[N, Cin, H, W\], got 3-D with shape \(8, 5, 5\)"):
        reference.inception(x[0], w, b)


def test_wrong_rank_of_weight():
    x, w, b = _args()
    w[2] = w[2].flatten(1)
    with pytest.raises(ValueError, match=r"weight w3 must be 4-D \[Cout, Cin, k, k\], got shape \(5, 27\)"):
        reference.inception(x, w, b)


def test_dtype_mismatch():
    x, w, b = _args()
    w[4] = w[4].double()
    with pytest.raises(TypeError, match=r"weight w5 has dtype torch.float64, but x has dtype torch.float32"):
        reference.inception(x, w, b)
    x, w, b = _args()
    b[0] = b[0].half()
    with pytest.raises(TypeError, match=r"bias b1 has dtype torch.float16, but x has dtype torch.float32"):
        reference.inception(x, w, b)


def test_unsupported_dtype():
    x, w, b = _args()
    with pytest.raises(TypeError, match=r"x has dtype torch.int64; supported dtypes are"):
        reference.inception(x.long(), w, b)


def test_device_mismatch():
    x, w, b = _args()
    w[5] = w[5].to("meta")
    with pytest.raises(ValueError, match=r"weight wp is on meta, but x is on cpu"):
        reference.inception(x, w, b)
    x, w, b = _args()
    b[3] = b[3].to("meta")
    with pytest.raises(ValueError, match=r"bias b5r is on meta, but x is on cpu"):
        reference.inception(x, w, b)


def test_w3_in_channels_must_match_w3r_out_channels():
    x, w, b = _args()
    w[2] = torch.randn(5, 4, 3, 3)
    with pytest.raises(
        ValueError,
        match=r"weight w3 has shape \(5, 4, 3, 3\), expected \[Cout, 3, 3, 3\] from w3r's output channels and kernel_sizes\[0\]=3",
    ):
        reference.inception(x, w, b)


def test_kernel_must_match_kernel_sizes():
    x, w, b = _args()
    with pytest.raises(
        ValueError,
        match=r"weight w5 has shape \(6, 2, 5, 5\), expected \[Cout, 2, 3, 3\] from w5r's output channels and kernel_sizes\[1\]=3",
    ):
        reference.inception(x, w, b, kernel_sizes=(3, 3))
    w[2] = torch.randn(5, 3, 5, 5)
    with pytest.raises(ValueError, match=r"weight w3 has shape \(5, 3, 5, 5\), expected \[Cout, 3, 3, 3\]"):
        reference.inception(x, w, b)


def test_bad_bias_shape():
    x, w, b = _args()
    b[2] = torch.randn(4)
    with pytest.raises(ValueError, match=r"bias b3 has shape \(4,\), expected \(5,\) to match weight w3"):
        reference.inception(x, w, b)
    b[2] = torch.randn(5, 1)
    with pytest.raises(ValueError, match=r"bias b3 has shape \(5, 1\), expected \(5,\)"):
        reference.inception(x, w, b)


def test_even_kernel_size():
    x, w, b = _args()
    with pytest.raises(ValueError, match=r"kernel_sizes must be odd and positive .*got \(3, 4\)"):
        reference.inception(x, w, b, kernel_sizes=(3, 4))
    with pytest.raises(TypeError, match=r"kernel_sizes must be a pair of odd ints, got \(3, 5, 7\)"):
        reference.inception(x, w, b, kernel_sizes=(3, 5, 7))


def test_bad_activation():
    x, w, b = _args()
    with pytest.raises(ValueError, match=r"activation must be 'relu' or None, got 'gelu'"):
        reference.inception(x, w, b, activation="gelu")


def test_weights_and_biases_must_have_six_items():
    x, w, b = _args()
    with pytest.raises(TypeError, match=r"weights must be a sequence of 6 tensors \(w1, w3r, w3, w5r, w5, wp\), got 5 items"):
        reference.inception(x, w[:5], b)
    with pytest.raises(TypeError, match=r"weights must be a sequence of 6 tensors .*got Tensor"):
        reference.inception(x, w[0], b)
    with pytest.raises(TypeError, match=r"biases must be None or a sequence of 6 tensors-or-None .*got 7 items"):
        reference.inception(x, w, b + [b[0]])
    w[1] = w[1].tolist()
    with pytest.raises(TypeError, match=r"weight w3r must be a torch.Tensor, got list"):
        reference.inception(x, w, b)
