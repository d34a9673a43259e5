"""Which backends of the fused op can run here, and why not when they cannot.

One place for the availability logic, shared by ``inception-kernels info``, ``verify`` and the
op dispatch. Nothing is probed at import; every answer is computed when asked (cheaply: no
kernel is compiled or launched).

Backends:
    reference           plain PyTorch (:mod:`inception_kernels.reference`); always available.
    triton              Triton kernels on a CUDA device.
    triton-interpreter  the same Triton kernels on CPU tensors, under ``TRITON_INTERPRET=1``.
    cuda                the CUDA C++ extension ``inception_kernels._C`` on a CUDA device.

Also the data-driven part of backend ``"auto"``: :func:`auto_picks_cuda` says whether the
measured table :mod:`inception_kernels._measured` records the CUDA kernels as verified and
faster than Triton for a call's device, dtype, module shape, input size and layout.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from . import _ext, _measured

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


def _interpret_env() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def interpreter_enabled() -> bool:
    """True when the package's Triton kernels run in Triton's interpreter (on CPU tensors).

    ``@triton.jit`` decides when a module that defines kernels is imported (``TRITON_INTERPRET=1``
    then, or not) -- ours and Triton's own ``triton.language`` -- so this looks at the kernels
    themselves: every such module already imported holds interpreted kernels, and
    ``TRITON_INTERPRET=1`` is set now for those still to be imported.

    Under ``torch.compile`` tracing (which cannot trace the module scan) the variable alone
    answers; the traced op call then checks again when it runs (``ops._check_runnable``).
    """
    if torch.compiler.is_compiling():
        return _interpret_env()
    return _kernel_modes() == {"interpreted"}


def interpreter_mismatch() -> Optional[str]:
    """Why the interpreter is not in effect although ``TRITON_INTERPRET=1`` is set, or None.

    The case: Triton (``triton.language``) or our kernel modules were imported before the
    variable was set; their ``@triton.jit`` functions are compiled for a GPU, so Triton cannot
    run them on CPU tensors ("0 active drivers", or "Cannot call @triton.jit'd outside of the
    scope of a kernel" from an interpreted kernel calling a compiled one).
    """
    if not _interpret_env() or torch.compiler.is_compiling():
        return None
    compiled = [name for name, mode in _loaded_kernel_modes().items() if mode == "compiled"]
    if not compiled:
        return None
    return (
        f"TRITON_INTERPRET=1 was set after {', '.join(compiled)} defined its Triton kernels (compiled for a "
        "GPU; a process cannot switch them to the interpreter); set TRITON_INTERPRET=1 before anything "
        "imports triton (inception_kernels imports it at its first Triton call) -- in the environment of a "
        "new process, or at the top of the script"
    )


#: Triton's own ``@triton.jit`` functions that our kernels call (``tl.cdiv``, ``tl.max``...): defined,
#: and exported by ``triton.language``, when Triton is imported.
_TRITON_LANGUAGE_KERNELS = "triton.language"


@functools.lru_cache(maxsize=None)
def _kernel_module_names() -> tuple[str, ...]:
    """The modules whose ``@triton.jit`` functions our kernels run: the modules of our ``triton``
    subpackage (imported lazily) and Triton's ``triton.language``."""
    pkg = f"{__package__}.triton"
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("triton") is None:
        return ()
    ours = tuple(f"{pkg}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations))
    return (_TRITON_LANGUAGE_KERNELS, *ours)


def _loaded_kernel_modes() -> dict[str, Optional[str]]:
    """``{module: mode}`` of the kernel modules imported so far: "interpreted" or "compiled"
    by the kind of their ``@triton.jit`` objects, None for a module without kernels."""
    out = {}
    for name in _kernel_module_names():
        mod = sys.modules.get(name)
        if mod is None:
            continue
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import KernelInterface

        kernels = [v for v in vars(mod).values() if isinstance(v, KernelInterface)]
        out[name] = (None if not kernels else
                     "interpreted" if all(isinstance(k, InterpretedFunction) for k in kernels) else "compiled")
    return out


def _kernel_modes() -> set:
    """How the package's kernels run, as a set: imported modules by their kernels, the rest by
    ``TRITON_INTERPRET`` now. ``{"interpreted"}``, ``{"compiled"}``, or both (mixed)."""
    loaded = _loaded_kernel_modes()
    modes = {m for m in loaded.values() if m is not None}
    if len(loaded) < len(_kernel_module_names()) or not modes:
        modes.add("interpreted" if _interpret_env() else "compiled")
    return modes


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
    mismatch = interpreter_mismatch()
    if mismatch is not None:
        return BackendStatus("triton-interpreter", False, mismatch)
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


# ------------------------------------------------------------------ backend "auto" and "cuda"

#: The fields of a :data:`inception_kernels._measured.CUDA_FASTER` entry a call must match.
MEASURED_KEYS = ("device", "capability", "dtype", "channels", "kernel_sizes", "activation", "height", "width",
                 "channels_last")


def measured_key(x: torch.Tensor, spec, device_name: str, capability: str) -> dict:
    """What a call is matched on in the measured table.

    Args:
        x: the op's input ``[N, Cin, H, W]``.
        spec: the :class:`~inception_kernels.spec.InceptionSpec` its weights describe.
        device_name: ``torch.cuda.get_device_name`` of x's device.
        capability: its compute capability, ``"major.minor"``.

    Returns:
        A dict with the keys of :data:`MEASURED_KEYS`.
    """
    return dict(device=device_name, capability=capability, dtype=str(x.dtype).removeprefix("torch."),
                channels=(spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                          spec.pool_proj),
                kernel_sizes=tuple(spec.kernel_sizes), activation=spec.activation or "none",
                height=x.shape[2], width=x.shape[3], channels_last=x.is_contiguous(memory_format=torch.channels_last))


def find_measured(table: Sequence[dict], key: dict) -> Optional[dict]:
    """The entry of ``table`` equal to ``key`` on every field of :data:`MEASURED_KEYS`, or None."""
    for entry in table:
        if all((tuple(entry[k]) if isinstance(entry[k], (list, tuple)) else entry[k]) == key[k]
               for k in MEASURED_KEYS):
            return entry
    return None


def _device_identity(index: int) -> tuple:
    """``(name, "major.minor")`` of CUDA device ``index`` (``torch.cuda.get_device_properties``
    is constant-folded by torch.compile, so tracing needs no graph break)."""
    props = torch.cuda.get_device_properties(index)
    return props.name, f"{props.major}.{props.minor}"


_CUDA_RUNS: list = []  # the answer of _cuda_backend_runs, once known


def _cuda_backend_runs() -> bool:
    """The CUDA extension is loaded, has the fused op, and a device is there (asked once)."""
    if not _CUDA_RUNS:
        _CUDA_RUNS.append(cuda_status().available and _ext.fused_kernels_registered())
    return _CUDA_RUNS[0]


def auto_picks_cuda(x: torch.Tensor, spec) -> bool:
    """Whether backend ``"auto"`` runs ``x`` on the CUDA C++ kernels.

    True only for a CUDA tensor whose call matches an entry of
    :data:`inception_kernels._measured.CUDA_FASTER` (verified and measured faster than Triton
    on this device, dtype, module shape, input size and layout) and where the CUDA backend
    can run. With the table empty (no GPU run committed) it is False without a device query.

    Args:
        x: the op's input.
        spec: the module's :class:`~inception_kernels.spec.InceptionSpec`, or None (then False).

    Returns:
        True to run backend "cuda", False to keep "auto"'s other rules.
    """
    table = _measured.CUDA_FASTER
    if not table or spec is None or x.device.type != "cuda":
        return False
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    name, capability = _device_identity(index)
    if find_measured(table, measured_key(x, spec, name, capability)) is None:
        return False
    return _cuda_backend_runs()
