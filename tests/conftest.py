"""Test configuration shared by every suite.

Without a CUDA device the Triton kernels run in the interpreter, on CPU tensors. The
interpreter is chosen when a ``@triton.jit`` function is defined, so the switch has to be
set here, before any test module imports the package's kernels.
"""

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    ext = None
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
        elif "cuda_ext" in item.keywords:
            if ext is None:
                from inception_kernels.testing import extension_status

                ext = extension_status()
            if not ext.loaded:
                item.add_marker(pytest.mark.skip(reason=f"needs the CUDA extension inception_kernels._C: {ext.reason}"))


#: The fused backends every correctness suite runs: Triton everywhere (the interpreter on the
#: CPU), the CUDA C++ extension where a GPU and the built extension are.
FUSED_BACKENDS = ["triton", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.cuda_ext])]


@pytest.fixture(params=FUSED_BACKENDS)
def backend(request) -> str:
    """The fused backend under test: ``"triton"``, and ``"cuda"`` (skipped without a CUDA device
    or without the built extension, with the extension's status as the reason)."""
    return request.param


@pytest.fixture
def device() -> str:
    """The device the kernels run on here: CUDA when present, else the CPU (Triton interpreter)."""
    return "cuda" if HAS_CUDA else "cpu"


@pytest.fixture
def ieee_fp32():
    """TF32 off for the test (matters on a GPU only): fp32 results are compared with tight
    tolerances, against an fp32 reference that must itself be exact."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture
def no_interpreter(monkeypatch):
    """A process without Triton's interpreter: ``TRITON_INTERPRET=0`` and every kernel module
    reported as compiled for a GPU. Setting the variable alone is not enough: once all of the
    package's kernel modules have been imported interpreted (by earlier tests), they stay
    interpreted, and ``_backends.interpreter_enabled`` rightly says so -- the outcome would then
    depend on test order."""
    from inception_kernels import _backends

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(_backends, "_kernel_modes", lambda: {"compiled"})
