"""Which backends of the fused op can run here, and why not when they cannot.

One place for the availability logic, shared by ``inception-kernels info``, ``verify`` and the
op dispatch. Nothing is probed at import; every answer is computed when asked (cheaply: no
kernel is compiled or launched).

Backends:
    reference           plain PyTorch (:mod:`inception_kernels.reference`); always available.
    triton              Triton kernels on a CUDA device.
    triton-interpreter  the same Triton kernels on CPU tensors, under ``TRITON_INTERPRET=1``.
    cuda                the CUDA C++ extension ``inception_kernels._C`` on a CUDA device.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import torch

from . import _ext

BACKENDS = ("reference", "triton", "triton-interpreter", "cuda")


@dataclass(frozen=True)
class BackendStatus:
    """Availability of one backend.

    Args:
        name: one of :data:`BACKENDS`.
        available: True when the backend can run in this process now.
        reason: why it can or cannot, and how to enable it when it cannot.
        detail: extra facts (e.g. the CUDA extension's archs and kernels).
    """

    name: str
    available: bool
    reason: str
    detail: dict = field(default_factory=dict)


def _cuda_device_reason() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    return "no CUDA device visible to torch (torch.cuda.is_available() is False)"


def _triton_version():
    if importlib.util.find_spec("triton") is None:
        return None
    import triton

    return triton.__version__


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels defined from now on run on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def reference_status() -> BackendStatus:
    """The plain-PyTorch oracle: always available, on every device."""
    return BackendStatus("reference", True, "plain PyTorch, any device")


def triton_status() -> BackendStatus:
    """Triton on a CUDA device."""
    version = _triton_version()
    if version is None:
        return BackendStatus("triton", False, "triton is not installed")
    if not torch.cuda.is_available():
        return BackendStatus("triton", False, _cuda_device_reason())
    return BackendStatus("triton", True, f"triton {version} on {torch.cuda.get_device_name()}")


def triton_interpreter_status() -> BackendStatus:
    """Triton's interpreter: the kernels run on CPU tensors (numpy emulation; slow)."""
    version = _triton_version()
    if version is None:
        return BackendStatus("triton-interpreter", False, "triton is not installed")
    if interpreter_enabled():
        return BackendStatus("triton-interpreter", True, f"triton {version}, TRITON_INTERPRET=1 is set")
    return BackendStatus(
        "triton-interpreter",
        False,
        "TRITON_INTERPRET=1 is not set; to enable, export it before inception_kernels is imported "
        "(inception-kernels verify sets it by itself when there is no CUDA device)",
    )


def cuda_status() -> BackendStatus:
    """The CUDA C++ extension: built and loadable, and a CUDA device to run it on."""
    ext = _ext.status()
    if not ext.loaded:
        return BackendStatus("cuda", False, f"CUDA extension {ext.reason}", {"state": ext.state})
    detail = {"state": ext.state, "archs": ext.build.get("archs", [])}
    if not torch.cuda.is_available():
        return BackendStatus("cuda", False, f"CUDA extension {ext.reason}, but {_cuda_device_reason()}", detail)
    return BackendStatus("cuda", True, f"CUDA extension {ext.reason}", detail)


def available_backends() -> dict[str, BackendStatus]:
    """Every backend's status, in the order of :data:`BACKENDS`.

    Returns:
        ``{name: BackendStatus}``.
    """
    return {
        "reference": reference_status(),
        "triton": triton_status(),
        "triton-interpreter": triton_interpreter_status(),
        "cuda": cuda_status(),
    }
