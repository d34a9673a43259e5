"""The fused Inception op: argument checks and backend dispatch.

``fused_inception`` computes one whole Inception module (DESIGN.md §3) with the semantics
of :func:`inception_kernels.reference.inception`. Backends:

- ``"triton"``: one Triton kernel launch (:mod:`inception_kernels.triton.inception_fwd`), on
  CUDA tensors, or on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``).
- ``"reference"``: the plain-PyTorch oracle.
- ``"cuda"``: the CUDA C++ extension (not available yet, issue 6).
- ``"auto"``: ``"triton"`` on CUDA tensors and on CPU tensors under the interpreter,
  else ``"reference"``.

The Triton forward is not differentiable yet (the fused backward is issue 4): calling it
with grad mode on and an input that requires grad raises instead of silently returning a
tensor without ``grad_fn``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _backends, reference
from ._checks import check_inception_args

__all__ = ["fused_inception", "BACKEND_CHOICES"]

#: Values of ``fused_inception(..., backend=...)``.
BACKEND_CHOICES = ("auto", "triton", "cuda", "reference")


def _resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The backend that runs ``x`` for a requested ``backend`` (raises when it cannot)."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    interpreting = _backends.interpreter_enabled()
    if backend == "auto":
        return "triton" if x.device.type == "cuda" or (x.device.type == "cpu" and interpreting) else "reference"
    if backend == "triton":
        if x.device.type == "cuda" or (x.device.type == "cpu" and interpreting):
            return "triton"
        if x.device.type == "cpu":
            raise RuntimeError(
                "backend='triton' needs a CUDA tensor, or TRITON_INTERPRET=1 set before inception_kernels "
                "is imported to run the Triton kernels on the CPU; x is on cpu and the interpreter is off "
                "(use backend='auto' or 'reference')"
            )
        raise RuntimeError(f"backend='triton' needs a CUDA tensor (or CPU under TRITON_INTERPRET=1), x is on {x.device}")
    if backend == "cuda":
        status = _backends.cuda_status()
        raise NotImplementedError(
            "backend='cuda': the CUDA C++ fused Inception op is not implemented yet (issue 6); "
            f"extension status: {status.reason}. Use backend='triton' or 'reference'"
        )
    return "reference"


def fused_inception(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
    *,
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
    backend: str = "auto",
) -> torch.Tensor:
    """One Inception module forward, fused: all four branches and the concat in one launch.

    Args:
        x: input ``[N, Cin, H, W]`` (fp16, bf16, fp32 or fp64), any memory format or strides.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, each ``[Cout, Cin, k, k]`` in x's dtype and device.
        biases: ``(b1, b3r, b3, b5r, b5, bp)``, each ``[Cout]`` or None; or None for no biases.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` or ``None``.
        backend: ``"auto"``, ``"triton"``, ``"cuda"`` or ``"reference"`` (see the module docstring).

    Returns:
        ``[N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]`` in x's dtype; channels_last when x is
        channels_last, else contiguous NCHW. fp16/bf16 accumulate in fp32; fp32 on CUDA follows
        ``torch.backends.cudnn.allow_tf32``.

    Raises:
        TypeError, ValueError: inconsistent arguments (see ``check_inception_args``) or an
            unknown backend.
        RuntimeError: ``backend="triton"`` where Triton cannot run x.
        NotImplementedError: ``backend="cuda"`` (not built yet), or the Triton forward asked
            for gradients (the fused backward is not implemented yet).
    """
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    chosen = _resolve_backend(backend, x)
    if chosen == "reference":
        return reference.inception(x, weights, biases, kernel_sizes=spec.kernel_sizes, activation=activation)
    tensors = (x, *weights, *(b for b in biases if b is not None))
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise NotImplementedError(
            "the Triton fused_inception forward is not differentiable yet (fused backward: issue 4); "
            "run it under torch.no_grad(), or use backend='reference' for training"
        )
    from .triton.inception_fwd import _inception_forward

    y, _, _ = _inception_forward(x, weights, biases, spec.kernel_sizes, activation)
    return y
