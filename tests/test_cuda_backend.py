"""The CUDA C++ backend's runtime contract (issue 6): current stream, no host synchronization,
CUDA-graph capture, determinism, device guard, 64-bit offsets.

Every test here needs a CUDA device and the built extension (``gpu`` + ``cuda_ext``); the
numerics against the reference are in the backend-parametrized suites (test_fused_forward.py,
test_fused_backward.py, test_ops.py), the kernels' algorithm on the CPU in
test_cuda_emulator.py, and the static checks (archs, spills, tensor cores, argument checks)
in test_build.py.
"""

import pytest
import torch

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec, reference
from inception_kernels.testing import extension_status
from inception_kernels.testing import tolerance

from _support import make_relu_inputs

pytestmark = [pytest.mark.gpu, pytest.mark.cuda_ext]

SMALL = InceptionSpec(20, 7, 12, 9, 5, 6, 11)


@pytest.fixture(autouse=True)
def _extension_loaded():
    st = extension_status()
    if not st.loaded:
        pytest.skip(f"CUDA extension not loaded: {st.reason}")


def _module(spec, n, h, w, dtype, *, seed=0, channels_last=True):
    """x (channels_last by default, as the CUDA backend prefers), weights and biases on the GPU."""
    return tuple(make_relu_inputs(spec, n, h, w, dtype, "cuda", seed=seed, channels_last=channels_last))


def _step(x, ws, bs):
    """Forward + backward through autograd; returns y and all 13 gradients."""
    leaves = [t.detach().requires_grad_(True) for t in (x, *ws, *bs)]
    y = ik.fused_inception(leaves[0], leaves[1:7], leaves[7:], backend="cuda")
    grads = torch.autograd.grad(y, leaves, torch.ones_like(y))
    return y.detach(), grads


def test_runs_on_the_current_stream_without_host_sync():
    x, ws, bs = _module(SMALL, 2, 9, 7, torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
    try:
        with torch.cuda.stream(side):
            y, grads = _step(x, ws, bs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    want = reference.inception(x.float(), [w.float() for w in ws], [b.float() for b in bs])
    torch.testing.assert_close(y.float(), want, **tolerance("cuda", torch.float16)._asdict())
    assert all(torch.isfinite(g).all() for g in grads)


def test_cuda_graph_capture_and_replay():
    x, ws, bs = _module(GOOGLENET_INCEPTIONS["3b"], 2, 8, 8, torch.bfloat16)
    static_x = x.clone()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up outside the capture (allocator, attributes)
        _step(static_x, ws, bs)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y_g, grads_g = _step(static_x, ws, bs)
    for seed in (1, 2):
        new_x, _, _ = _module(GOOGLENET_INCEPTIONS["3b"], 2, 8, 8, torch.bfloat16, seed=seed)
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        y, grads = _step(new_x, ws, bs)
        assert torch.equal(y_g, y)
        for a, b in zip(grads_g, grads):
            assert torch.equal(a, b)


def test_bitwise_deterministic():
    x, ws, bs = _module(GOOGLENET_INCEPTIONS["4d"], 3, 14, 14, torch.float16)
    y1, g1 = _step(x, ws, bs)
    y2, g2 = _step(x, ws, bs)
    assert torch.equal(y1, y2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_runs_on_a_non_default_device_index():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    x, ws, bs = _module(SMALL, 1, 5, 5, torch.float32)
    with torch.cuda.device(0):
        y1 = ik.fused_inception(x.to("cuda:1"), [w.to("cuda:1") for w in ws], [b.to("cuda:1") for b in bs],
                                backend="cuda")
    assert y1.device == torch.device("cuda:1")
    torch.testing.assert_close(y1.cpu(), ik.fused_inception(x, ws, bs, backend="cuda").cpu(), atol=1e-5, rtol=1e-5)


def test_mixed_devices_are_refused():
    x, ws, bs = _module(SMALL, 1, 5, 5, torch.float32)
    with pytest.raises(RuntimeError, match="must be on x's device"):
        torch.ops.inception_kernels.cuda_fused_inception(x, [*ws[:5], ws[5].cpu()], bs, 3, 5, "relu", False,
                                                          False, torch.contiguous_format)


def test_batch_offsets_beyond_int32():
    """x of more than 2^31 elements: batch offsets are 64-bit (about 4.3 GB of fp16 input)."""
    free, _ = torch.cuda.mem_get_info()
    spec = InceptionSpec(64, 8, 8, 8, 8, 8, 8)
    n, h, w = 2 ** 31 // (64 * 32 * 32) + 2, 32, 32
    if free < 3 * n * (64 + 32 + 16) * h * w * 2:
        pytest.skip("not enough free GPU memory")
    x, ws, bs = _module(spec, 1, h, w, torch.float16)
    big = x.expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    assert big.numel() > 2 ** 31
    y = ik.fused_inception(big, ws, bs, backend="cuda")
    last = ik.fused_inception(big[-1:], ws, bs, backend="cuda")
    assert torch.equal(y[-1:], last)
    torch.testing.assert_close(last.float(), reference.inception(x.float(), [t.float() for t in ws],
                                                                 [t.float() for t in bs]), **tolerance("cuda", torch.float16)._asdict())


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("bias_layout", ["contiguous", "strided"])
def test_bias_stride_is_honoured(dtype, bias_layout):
    """A bias that is a strided view reads the right values (issue 14, item 6), forward and
    backward; its gradient comes back contiguous."""
    x, ws, bs = _module(SMALL, 2, 9, 7, dtype, seed=5)
    if bias_layout == "strided":
        bs = [torch.stack([b, torch.full_like(b, 1e3)], dim=1).reshape(-1)[::2] for b in bs]
    y, grads = _step(x, ws, bs)
    leaves = [t.detach().double().requires_grad_(True) for t in (x, *ws, *bs)]
    want_y = reference.inception(leaves[0], leaves[1:7], leaves[7:])
    want = torch.autograd.grad(want_y, leaves, torch.ones_like(want_y))
    atol, rtol = tolerance("cuda", dtype)
    torch.testing.assert_close(y.double(), want_y.detach(), atol=atol, rtol=rtol)
    for g, w in zip(grads, want):
        torch.testing.assert_close(g.double(), w, atol=atol * max(1.0, w.abs().max().item()), rtol=rtol)
