"""The optional CUDA extension ``inception_kernels._C``: lazy loading and why it is (not) usable.

setup.py builds the extension from csrc/ when a CUDA toolkit and a CUDA build of torch are
present, and writes ``_build_info.py`` (git-ignored) beside this file either way. Nothing here
runs at package import: :func:`status` loads the extension on first use, and answers why it is
not usable when it is not -- never built, skipped on purpose, built for another torch (the C++
ABI of torch is not stable across versions, so such a library is not even loaded), or failed
to import.

Importing the extension registers CUDA kernels (and the plan op's kernel) for ops of
``torch.ops.inception_kernels`` whose schemas and fake impls :mod:`inception_kernels.ops`
defines. What the built library holds (architectures, kernels, registers; read with
``cuobjdump``) is a tool's question: ``inception_kernels.tools.report.facts.extension_info``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Optional

import torch

#: Values of :attr:`ExtStatus.state`.
STATES = ("loaded", "not_built", "skipped", "torch_mismatch", "missing", "import_error")


@dataclass(frozen=True)
class ExtStatus:
    """Whether the CUDA extension is usable in this process, and why not.

    Args:
        state: one of :data:`STATES`: ``"loaded"``; ``"not_built"`` (no build record, or the
            build found no toolkit / no CUDA torch); ``"skipped"`` (INCEPTION_KERNELS_NO_CUDA
            was set at build time); ``"torch_mismatch"`` (built against another torch);
            ``"missing"`` (the build record says built, but no library file is there);
            ``"import_error"`` (the library failed to load).
        reason: a sentence for humans: what happened and what to do.
        build: the build record (``_build_info.py``) as a dict; empty when there is none.
    """

    state: str
    reason: str
    build: dict = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        """True when ``torch.ops.inception_kernels`` holds the extension's ops."""
        return self.state == "loaded"


_REBUILD = 'reinstall to rebuild it: pip install --no-build-isolation -e ".[test]"'


def _read_build_info() -> Optional[dict]:
    try:
        mod = importlib.import_module(f"{__package__}._build_info")
    except ImportError:
        return None
    return {k.lower(): v for k, v in vars(mod).items() if k.isupper()}


@functools.cache
def status() -> ExtStatus:
    """Load the extension once, and say whether it is usable.

    Returns:
        An :class:`ExtStatus`; ``status().loaded`` is True when the ops are registered.
    """
    build = _read_build_info()
    if build is None:
        return ExtStatus("not_built", f"not built: no build record ({__package__}/_build_info.py); {_REBUILD}")
    if not build.get("built"):
        reason = build.get("reason") or "not built"
        state = "skipped" if "INCEPTION_KERNELS_NO_CUDA" in reason else "not_built"
        return ExtStatus(state, f"not built: {reason}", build)
    if build.get("torch_version") != torch.__version__:
        return ExtStatus(
            "torch_mismatch",
            f"built for torch {build.get('torch_version')}, running torch {torch.__version__}; {_REBUILD}",
            build,
        )
    if importlib.util.find_spec(f"{__package__}._C") is None:
        return ExtStatus("missing", f"build record says built, but {__package__}/_C*.so is missing; {_REBUILD}", build)
    try:
        importlib.import_module(f"{__package__}._C")
    except ImportError as e:  # also OSError subclasses raised as ImportError by the loader
        return ExtStatus("import_error", f"import failed: {e}", build)
    return ExtStatus("loaded", f"built for {', '.join(build.get('archs', []))} with torch {build['torch_version']}", build)


def fused_kernels_registered() -> bool:
    """Whether the loaded extension registered CUDA kernels for the fused ops (whose schemas
    inception_kernels.ops defines); False for a library built from older sources."""
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"inception_kernels::{op}", "CUDA")
               for op in ("cuda_fused_inception", "cuda_fused_inception_backward"))


def library_path() -> Optional[str]:
    """Path of the extension's shared library, or None when there is none."""
    spec = importlib.util.find_spec(f"{__package__}._C")
    return spec.origin if spec is not None else None
