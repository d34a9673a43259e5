"""Backend "auto" picks the CUDA C++ kernels only where a committed GPU run measured them correct
and faster than Triton (inception_kernels/_measured.py, read by _backends.auto_picks_cuda; tests swap it with
inception_kernels.testing.override_measured).

On the CPU the selection runs on fake CUDA tensors (FakeTensorMode needs no device) with the
device query and the extension's availability replaced; the GPU test runs the real op.
"""

import contextlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import inception_kernels as ik
from inception_kernels import GOOGLENET_INCEPTIONS, _backends, ops
from inception_kernels.testing import measured_table, override_measured

SPEC = GOOGLENET_INCEPTIONS["3a"]
DEVICE = ("NVIDIA H200", "9.0")


def _fake_cuda_x(dtype=torch.bfloat16, hw=(28, 28), channels_last=True):
    with FakeTensorMode():
        x = torch.empty(256, SPEC.in_channels, *hw, device="cuda", dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _entry(**changes):
    entry = dict(device=DEVICE[0], capability=DEVICE[1], dtype="bfloat16", channels=SPEC.channels,
                 kernel_sizes=(3, 5), activation="relu", height=28, width=28, channels_last=True, layer="3a",
                 batch=256, ms={"fwd": {"triton": 1.0, "cuda": 0.5}}, source="synthetic")
    entry.update(changes)
    return entry


@pytest.fixture
def measured():
    """``measured(table)``: auto reads ``table`` for the rest of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda table: stack.enter_context(override_measured(table))


@pytest.fixture
def fake_device(monkeypatch):
    """A CUDA device named DEVICE on which the CUDA backend runs."""
    monkeypatch.setattr(_backends, "_device_identity", lambda index: DEVICE)
    monkeypatch.setattr(_backends, "_cuda_backend_runs", lambda: True)


def test_the_committed_table_is_empty_and_auto_keeps_triton(monkeypatch):
    """No GPU run is committed: auto never picks cuda and never queries the device."""
    assert measured_table() == ()

    def no_query(index):
        raise AssertionError("the device was queried with an empty table")

    monkeypatch.setattr(_backends, "_device_identity", no_query)
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC) == "triton"


def test_auto_picks_cuda_where_measured(measured, fake_device):
    measured((_entry(),))
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC) == "cuda"
    # JSON-like lists match as well as tuples
    measured((_entry(channels=[192, 64, 96, 128, 16, 32, 32], kernel_sizes=[3, 5]),))
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC) == "cuda"


@pytest.mark.parametrize("change", [
    dict(device="NVIDIA H100 80GB HBM3"), dict(capability="8.0"), dict(dtype="float16"),
    dict(channels=(256, 128, 128, 192, 32, 96, 64)), dict(kernel_sizes=(3, 3)), dict(activation="none"),
    dict(height=14), dict(width=14), dict(channels_last=False),
])
def test_auto_keeps_triton_on_any_other_key(measured, fake_device, change):
    measured((_entry(**change),))
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC) == "triton"


def test_auto_keeps_triton_for_other_calls(measured, fake_device):
    measured((_entry(),))
    assert ops._resolve_backend("auto", _fake_cuda_x(torch.float16), SPEC) == "triton"
    assert ops._resolve_backend("auto", _fake_cuda_x(hw=(28, 27)), SPEC) == "triton"
    assert ops._resolve_backend("auto", _fake_cuda_x(channels_last=False), SPEC) == "triton"
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC.with_(activation=None)) == "triton"
    assert ops._resolve_backend("auto", _fake_cuda_x(), None) == "triton"
    # an explicit backend is what runs, whatever the table says
    assert ops._resolve_backend("triton", _fake_cuda_x(), SPEC) == "triton"


def test_auto_keeps_triton_where_the_cuda_backend_cannot_run(monkeypatch, measured, fake_device):
    measured((_entry(),))
    monkeypatch.setattr(_backends, "_cuda_backend_runs", lambda: False)
    assert ops._resolve_backend("auto", _fake_cuda_x(), SPEC) == "triton"


def test_auto_never_picks_cuda_for_cpu_tensors(measured, fake_device):
    measured((_entry(),))
    x = torch.empty(1, SPEC.in_channels, 28, 28, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert ops._resolve_backend("auto", x, SPEC) in ("triton", "reference")


@pytest.mark.gpu
@pytest.mark.cuda_ext
def test_auto_runs_the_cuda_kernels_where_the_table_says(measured):
    """The real device query and the real op: with this device's entry in the table, "auto"
    launches the CUDA extension's kernels, eagerly and under torch.compile."""
    from inception_kernels.testing import count_launches

    spec = GOOGLENET_INCEPTIONS["4a"]
    x = torch.randn(2, spec.in_channels, 14, 14, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    ws = [torch.randn(s, device="cuda", dtype=torch.bfloat16) * 0.05 for s in spec.weight_shapes]
    name, cap = _backends._device_identity(torch.cuda.current_device())
    measured((dict(_backends.measured_key(x, spec, name, cap), source="test"),))
    with count_launches(cuda=True) as launches:
        y = ik.fused_inception(x, ws, None)
    assert launches.triton == 0 and any("inception_fwd_kernel" in k for k in launches.cuda_kernels), launches
    compiled = torch.compile(lambda x: ik.fused_inception(x, ws, None), fullgraph=True)
    with count_launches(cuda=True) as launches:
        y2 = compiled(x)
    assert launches.triton == 0 and any("inception_fwd_kernel" in k for k in launches.cuda_kernels), launches
    torch.testing.assert_close(y2, y, atol=0, rtol=0)


def test_importing_the_package_loads_neither_dynamo_nor_triton():
    """The lookup adds nothing to import: marking functions for torch.compile would import
    torch._dynamo (seconds), which imports Triton before TRITON_INTERPRET is settled."""
    import subprocess
    import sys

    code = "import sys, inception_kernels; print('torch._dynamo' in sys.modules, 'triton' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]
