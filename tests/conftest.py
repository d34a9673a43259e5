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
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture
def device() -> str:
    """The device the kernels run on here: CUDA when present, else the CPU (Triton interpreter)."""
    return "cuda" if HAS_CUDA else "cpu"
