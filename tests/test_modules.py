"""FusedInception and fuse(model): parameter names and state_dicts, BatchNorm folding, whole
GoogLeNets (ours and torchvision's) against their unfused selves, torch.compile, training.

Without a GPU the Triton kernels run in the interpreter (tests/conftest.py). A whole fused
GoogLeNet is expensive there (every block has the real channel counts), so the whole-model
tests use batch 1 at the model's minimum input size, and the CPU training test trains a
small network of Inception blocks; the same test on the paper GoogLeNet is GPU-marked.
"""

import copy
import warnings

import pytest
import torch
import torch.nn as nn

from inception_kernels import FusedInception, Inception, InceptionSpec, fuse, googlenet, googlenet_loss, reference
from inception_kernels.testing import randomize_batchnorm

SMALL = InceptionSpec(6, 3, 4, 5, 2, 3, 2)


def _x(c, h, w, n=1, seed=1, device="cpu"):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed)).to(device)


# ---------------------------------------------------------------------------- the module


def test_parameter_names_match_inception_and_state_dict_moves_both_ways(device):
    ours = Inception.from_spec(SMALL).to(device)
    fused = FusedInception.from_spec(SMALL, backend="triton").to(device)
    assert list(fused.state_dict()) == list(ours.state_dict())
    fused.load_state_dict(ours.state_dict(), strict=True)
    x = _x(6, 4, 5, n=2, device=device)
    torch.testing.assert_close(fused(x), ours(x), atol=1e-5, rtol=1e-4)

    other = Inception.from_spec(SMALL).to(device)
    other.load_state_dict(FusedInception.from_spec(SMALL).to(device).state_dict(), strict=True)
    fused.load_state_dict(other.state_dict(), strict=True)
    torch.testing.assert_close(fused(x), other(x), atol=1e-5, rtol=1e-4)


def test_bias_false_has_no_bias_parameters(device):
    """Our Inception has no bias-less option without BatchNorm, so this compares with the op."""
    fused = FusedInception(6, 3, 4, 5, 2, 3, 2, bias=False, activation=None, backend="triton").to(device)
    assert all("bias" not in name for name, _ in fused.named_parameters())
    assert len(list(fused.parameters())) == 6
    x = _x(6, 3, 4, device=device)
    weights, biases = fused.weights_and_biases()
    assert biases == (None,) * 6
    torch.testing.assert_close(fused(x), reference.inception(x, weights, None, activation=None),
                               atol=1e-5, rtol=1e-4)


def test_spec_backend_and_repr():
    fused = FusedInception(6, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3), backend="reference")
    assert fused.spec == InceptionSpec(6, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3))
    text = repr(fused)
    assert "6, 3, 4, 5, 2, 3, 2" in text and "kernel_sizes=(3, 3)" in text and "backend='reference'" in text
    with pytest.raises(ValueError, match="backend"):
        FusedInception(6, 3, 4, 5, 2, 3, 2, backend="cudnn")


def test_from_module_paper_block(device):
    block = Inception.from_spec(SMALL).to(device)
    fused = FusedInception.from_module(block, backend="triton")
    assert fused.spec == block.spec and fused.training == block.training
    x = _x(6, 5, 4, n=2, device=device)
    torch.testing.assert_close(fused(x), block(x), atol=1e-5, rtol=1e-4)


def test_from_module_keeps_or_folds_batchnorm(device):
    """Our torchvision-variant block (conv without bias + BatchNorm eps 1e-3): kept by default
    (torchvision's keys), folded exactly on request (checked in float64, where folding is the
    only difference)."""
    block = Inception(6, 3, 4, 5, 2, 3, 2, kernel_sizes=(3, 3), batch_norm=True)
    randomize_batchnorm(block)
    block = block.eval().double().to(device)
    kept = FusedInception.from_module(block, backend="triton")
    assert kept.batch_norm and list(kept.state_dict()) == list(block.state_dict())
    fused = FusedInception.from_module(block, backend="triton", fold_batch_norm=True)
    assert fused.spec.kernel_sizes == (3, 3) and fused.branch1.conv.bias is not None and fused.folded_batch_norm
    x = _x(6, 4, 4, n=2, device=device).double()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), block(x), atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(kept(x), block(x), atol=1e-12, rtol=1e-10)


def test_fuse_without_inception_warns_and_returns_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.warns(UserWarning, match="no Inception block"):
        assert fuse(model) is model
    with pytest.raises(TypeError, match="Inception block"):
        FusedInception.from_module(model)


def test_fuse_a_block_itself_returns_fused_block():
    block = Inception.from_spec(SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = fuse(block, backend="reference")
    assert isinstance(fused, FusedInception) and fused.backend == "reference"


# ---------------------------------------------------------------------------- whole GoogLeNets


def test_fused_paper_googlenet_outputs_and_gradients_match(device):
    """All nine GoogLeNet configs through the fused op (real channels): logits and every
    parameter gradient of the fused paper model equal the unfused model's.

    fp64: the network's max-pools route a gradient to the argmax of each window, so in fp32 a
    rounding difference of 1e-6 in a block's output can move a near-tie's gradient to the
    neighbour pixel and change upstream gradients by far more than rounding; in fp64 the two
    models' pooling decisions are the same and the comparison can be tight."""
    torch.manual_seed(0)
    model = googlenet("paper", aux_logits=False, dropout=0.0, num_classes=10).to(device, torch.float64)
    fused = fuse(copy.deepcopy(model), backend="triton")
    assert sum(isinstance(m, FusedInception) for m in fused.modules()) == 9
    assert not any(isinstance(m, Inception) for m in fused.modules())
    assert dict(fused.named_parameters()).keys() == dict(model.named_parameters()).keys()
    x = _x(3, model.min_input_size, model.min_input_size, device=device).double()
    target = torch.tensor([3], device=device)
    losses = []
    for m in (model, fused):
        out = m(x)
        loss = googlenet_loss(out, target)
        loss.backward()
        losses.append((out.detach(), loss.detach()))
    torch.testing.assert_close(losses[1][0], losses[0][0], atol=1e-10, rtol=1e-10)
    fused_params = dict(fused.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused_params[name].grad, p.grad, atol=1e-10, rtol=1e-9,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_fuse_torchvision_googlenet_eval_matches():
    """A real torchvision GoogLeNet (BatchNorm folded) -- torchvision is only a test dependency."""
    torchvision = pytest.importorskip("torchvision")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, init_weights=True, num_classes=10)
    randomize_batchnorm(model)
    model = model.eval().to(device)
    fused = fuse(copy.deepcopy(model), backend="triton")
    assert sum(isinstance(m, FusedInception) for m in fused.modules()) == 9
    x = _x(3, 15, 15, device=device)  # torchvision's min_size
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


def test_torch_compile_fused_googlenet_fullgraph(device):
    """aot_eager: traces the fake impls with no graph break, then runs the real kernels.
    (Inductor also compiles the op on CPU, but its C++ codegen of the rest of the network
    costs minutes on this machine, so the test stays with aot_eager.)"""
    torch.manual_seed(0)
    model = googlenet("paper", aux_logits=False, num_classes=10).eval().to(device)
    fused = fuse(copy.deepcopy(model), backend="triton")
    x = _x(3, model.min_input_size, model.min_input_size, device=device)
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------- training


def _train(model, x, target, steps=3, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = googlenet_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_fused_network_trains_like_unfused(device):
    """Three SGD steps on a fixed batch: the fused network's loss falls exactly like the unfused."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        Inception(8, 4, 4, 6, 2, 3, 3),
        Inception(16, 4, 4, 6, 2, 4, 2, kernel_sizes=(3, 3)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).to(device)
    fused = fuse(copy.deepcopy(net), backend="triton")
    x = _x(3, 5, 6, n=4, device=device)
    target = torch.tensor([0, 1, 2, 3], device=device)
    want, got = _train(net, x, target), _train(fused, x, target)
    assert want[-1] < want[0] and got[-1] < got[0]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_fused_paper_googlenet_trains_like_unfused():
    torch.manual_seed(0)
    model = googlenet("paper", num_classes=10, dropout=0.0, dropout_aux=0.0).cuda()
    fused = fuse(copy.deepcopy(model), backend="triton")
    x = _x(3, 96, 96, n=4, device="cuda")
    target = torch.tensor([0, 1, 2, 3], device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        want, got = _train(model, x, target, lr=0.01), _train(fused, x, target, lr=0.01)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert want[-1] < want[0] and got[-1] < got[0]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------------------- verify's model rows


def test_verify_model_rows_pass_and_fail(monkeypatch):
    """``inception-kernels verify``'s whole-model check: passes on a correct backend (reference:
    cheap) and fails, naming the model, when the fused blocks are wrong."""
    from inception_kernels import modules
    from inception_kernels.tools import verify as _verify

    for variant in _verify.MODEL_VARIANTS:
        row = _verify.check_model(variant, "reference", size=1, device="cpu")
        assert row.passed and row.layer == f"GoogLeNet-{variant}", row
    real = modules.fused_inception
    monkeypatch.setattr(modules, "fused_inception", lambda *a, **k: real(*a, **k) * 1.001)
    row = _verify.check_model("torchvision", "reference", size=1, device="cpu")
    assert not row.passed and row.err_out > row.tol_out
    assert "GoogLeNet-torchvision" in _verify.format_table([row]) and "FAIL" in _verify.format_table([row])
