"""The Inception block with BatchNorm after every conv (torchvision's), as one functional op.

:func:`fused_inception_bn` computes torchvision's ``Inception`` block: every conv of the
fused op (docs/design.md §3) is followed by BatchNorm, then the activation::

    unit_i(t) = act(batch_norm(conv(t, w_i) [+ b_i], running_mean_i, running_var_i, gamma_i, beta_i))

with the semantics of ``F.batch_norm`` per conv: in training mode the batch statistics
normalize (biased variance), the running statistics are updated in place
(``running = (1 - momentum) * running + momentum * batch``, with the *unbiased* batch
variance) and gradients flow through the statistics; in eval mode the running statistics
normalize. :class:`~inception_kernels.FusedInception` with ``batch_norm=True`` calls it and
handles what ``nn.BatchNorm2d`` handles around ``F.batch_norm`` (``num_batches_tracked``,
``momentum=None``'s cumulative average, ``track_running_stats``).

Backends, decided in one place, :func:`_resolve_bn_backend`:

- ``"reference"``: :func:`inception_kernels.reference.inception_bn`, plain PyTorch (conv,
  ``F.batch_norm``, ReLU per conv; max-pool branch; cat), autograd by PyTorch.
- Eval mode (running statistics) on ``"triton"`` / ``"cuda"`` / ``"auto"``: BatchNorm is then a
  per-channel affine map, so it is folded into each conv's weight and bias on every call
  (a few elementwise ops on the parameters, differentiable) and the fused op
  :func:`~inception_kernels.fused_inception` runs the block on that backend, with its own
  backend rules. For inference, ``fuse(model, fold_batch_norm=True)`` folds once instead.
- Training mode (batch statistics) on ``"triton"`` / ``"auto"``: the fused Triton kernels of
  :mod:`inception_kernels.triton.batchnorm_train` -- 3 launches forward (convs + partial
  statistics; KxK convs over the normalized reduce outputs; statistics, running-statistics
  update and normalization), 5 backward, fixed-order reductions (docs/design.md §7, §9).
  ``backend="auto"`` picks them wherever the fused op would pick Triton (a CUDA tensor, or a
  CPU tensor under the interpreter), else the reference path; under ``torch.compile`` tracing
  ``"auto"`` runs the reference path (the Triton training op is an autograd Function with
  in-place running-statistics updates, not a traceable custom op yet) and ``"triton"`` raises.
  ``backend="cuda"`` raises ``NotImplementedError`` (no CUDA C++ BatchNorm kernels).
  A backend's training kernels plug in through :data:`_TRAINING_KERNELS`.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from . import ops, reference
from ._checks import WEIGHT_NAMES, check_inception_args

__all__ = ["fused_inception_bn", "check_batch_norm_args"]

#: Values of ``fused_inception_bn(..., backend=...)`` (the fused op's).
BACKEND_CHOICES = ops.BACKEND_CHOICES

def _triton_training(
    x: Tensor,
    weights: tuple[Tensor, ...],
    biases: tuple[Optional[Tensor], ...],
    running_means: Optional[tuple[Tensor, ...]],
    running_vars: Optional[tuple[Tensor, ...]],
    bn_weights: tuple[Optional[Tensor], ...],
    bn_biases: tuple[Optional[Tensor], ...],
    momentum: tuple[float, ...],
    eps: tuple[float, ...],
    kernel_sizes: tuple[int, int],
    activation: Optional[str],
) -> Tensor:
    """The fused Triton BatchNorm-training block (3 launches forward, 5 backward).

    Contract (what :func:`fused_inception_bn` has checked and normalized before the call):

    Args:
        x: ``[N, Cin, H, W]`` (autocast already applied), any memory format; ``N*H*W != 1``.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, ``[Cout_i, Cin_i, k, k]``, x's dtype and device.
        biases: the convs' biases, six ``[Cout_i]`` or None.
        running_means, running_vars: six ``[Cout_i]`` each, updated in place exactly as
            ``F.batch_norm(training=True, momentum=momentum[i])`` does (unbiased variance);
            or None (``track_running_stats=False``: nothing to update).
        bn_weights, bn_biases: six ``[Cout_i]`` or None each (``affine=False``: None).
            Every BatchNorm tensor has one dtype: x's, or float32 with a float16/bfloat16 x.
        momentum, eps: six floats.
        kernel_sizes: ``(K3, K5)``; activation: ``"relu"`` or None.

    Returns:
        y ``[N, Cout, H, W]`` in x's dtype, differentiable with respect to x, weights,
        biases, bn_weights and bn_biases (gradients through the batch statistics).
    """
    # imported here: whether the kernels are interpreted is decided when their module is imported
    from .triton.batchnorm_train import fused_inception_bn_training

    return fused_inception_bn_training(
        x, weights, biases, running_means, running_vars, bn_weights, bn_biases, momentum, eps, kernel_sizes, activation
    )


#: Backends whose fused kernels run BatchNorm in training mode: ``{backend: function}``, each
#: with :func:`_triton_training`'s signature; ``backend="auto"`` picks them up.
_TRAINING_KERNELS: dict[str, Callable[..., Tensor]] = {"triton": _triton_training}


def _resolve_bn_backend(backend: str, x: Tensor, training: bool) -> str:
    """THE dispatch point of the BatchNorm block: what runs ``x`` for a requested ``backend``.

    Args:
        backend: one of :data:`BACKEND_CHOICES`.
        x: the (checked) input.
        training: normalize with batch statistics (else the running statistics).

    Returns:
        ``"reference"``; in eval mode ``"folded"`` (fold, then the fused op on ``backend``);
        in training mode a key of :data:`_TRAINING_KERNELS`.

    Raises:
        ValueError: an unknown backend.
        NotImplementedError: training mode on ``"cuda"`` (no CUDA C++ BatchNorm kernels), or on
            ``"triton"`` under ``torch.compile`` tracing (the message says what to use instead).
        TypeError, RuntimeError: training mode on ``"triton"`` where Triton cannot run x (as
            ``fused_inception`` says it, e.g. bfloat16 in the interpreter).
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if backend == "reference":
        return "reference"
    if not training:
        return "folded"  # the fused op resolves the backend itself (same rules as fused_inception)
    if backend == "cuda":
        raise NotImplementedError(
            "backend='cuda' cannot run BatchNorm in training mode yet: the CUDA C++ extension has no "
            "BatchNorm kernels (use backend='triton', 'auto' or 'reference'; eval mode runs on 'cuda' with "
            "BatchNorm folded)"
        )
    compiling = torch.compiler.is_compiling()
    if backend == "triton":
        if compiling:
            raise NotImplementedError(
                "backend='triton' with BatchNorm in training mode cannot be traced by torch.compile yet (the fused "
                "training kernels are an autograd Function that updates the running statistics in place); use "
                "backend='auto', which runs the reference path while compiling, or call the block eagerly"
            )
        ops._resolve_backend("triton", x)  # raises where Triton cannot run x
        return "triton"
    # "auto": Triton wherever the fused op would run a fused backend (a CUDA tensor -- also where it
    # would pick "cuda", which has no BatchNorm kernels -- or a CPU tensor under the interpreter)
    chosen = ops._resolve_backend("auto", x)
    if compiling or chosen == "reference" or "triton" not in _TRAINING_KERNELS:
        return "reference"
    return "triton"


def _six_numbers(name: str, value) -> tuple[float, ...]:
    items = value if isinstance(value, (list, tuple)) else (value,) * 6
    if len(items) != 6:
        raise ValueError(f"{name} must be a number or a sequence of 6 numbers (one per conv), got {len(items)} items")
    out = []
    for i, v in enumerate(items):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"{name} must be a number or a sequence of 6 numbers, got {type(v).__name__} at index {i}")
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be finite, got {v} for conv {WEIGHT_NAMES[i]}")
        out.append(float(v))
    return tuple(out)


def _six_tensors(name: str, value, weights, x: Tensor, *, optional_items: bool, dtypes: set):
    """Six ``[Cout_i]`` tensors (or None where allowed), on x's device; their dtypes go into ``dtypes``."""
    if value is None:
        return None
    if isinstance(value, Tensor) or not isinstance(value, Sequence) or len(value) != 6:
        what = f"{len(value)} items" if isinstance(value, Sequence) and not isinstance(value, Tensor) \
            else type(value).__name__
        kind = "tensors-or-None" if optional_items else "tensors"
        raise TypeError(f"{name} must be None or a sequence of 6 {kind} (one per conv, in the weight order), got {what}")
    for i, (t, w) in enumerate(zip(value, weights)):
        where = f"{name}[{i}] (for {WEIGHT_NAMES[i]})"
        if t is None and optional_items:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != (w.shape[0],):
            raise ValueError(f"{where} has shape {tuple(t.shape)}, expected ({w.shape[0]},): one per output channel")
        if t.device != x.device:
            raise ValueError(f"{where} is on {t.device}, but x is on {x.device}; put them on one device")
        dtypes.add(t.dtype)
    return tuple(value)


def check_batch_norm_args(
    x: Tensor,
    weights: Sequence[Tensor],
    running_means,
    running_vars,
    bn_weights,
    bn_biases,
    training,
    momentum,
    eps,
):
    """Check the BatchNorm arguments of :func:`fused_inception_bn` (x and weights already checked).

    Returns:
        ``(running_means, running_vars, bn_weights, bn_biases, momentum, eps)``: tuples of
        six (the running statistics None when not given, the affine parameters six
        ``None`` when not given), momentum and eps six floats each.

    Raises:
        TypeError: a wrong type, or BatchNorm tensors of a dtype other than x's (float32 is
            also accepted with a float16/bfloat16 x) or of several dtypes.
        ValueError: a wrong shape or device, a non-finite momentum or eps, a negative eps (or
            in training mode a zero one, as ``F.batch_norm``), one of the running statistics
            without the other, eval mode without running statistics, running statistics
            that require grad, or training with one value per channel (``N*H*W == 1``,
            BatchNorm's own error).
    """
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    dtypes: set = set()
    means = _six_tensors("running_means", running_means, weights, x, optional_items=False, dtypes=dtypes)
    variances = _six_tensors("running_vars", running_vars, weights, x, optional_items=False, dtypes=dtypes)
    gammas = _six_tensors("bn_weights", bn_weights, weights, x, optional_items=True, dtypes=dtypes)
    betas = _six_tensors("bn_biases", bn_biases, weights, x, optional_items=True, dtypes=dtypes)
    allowed = {x.dtype} | ({torch.float32} if x.dtype in (torch.float16, torch.bfloat16) else set())
    if len(dtypes) > 1 or not dtypes <= allowed:
        raise TypeError(
            f"the BatchNorm tensors (running statistics, bn_weights, bn_biases) have dtypes "
            f"{sorted(str(d) for d in dtypes)}; they must all have one dtype: x's ({x.dtype})"
            + (", or float32 (mixed precision)" if len(allowed) > 1 else "")
        )
    if (means is None) != (variances is None):
        raise ValueError(
            "running_means and running_vars go together: got "
            f"running_means={'None' if means is None else '6 tensors'}, "
            f"running_vars={'None' if variances is None else '6 tensors'}"
        )
    if means is None and not training:
        raise ValueError(
            "training=False normalizes with the running statistics: running_means and running_vars are required "
            "(pass training=True to normalize with the batch statistics)"
        )
    if means is not None and training:
        for name, stats in (("running_means", means), ("running_vars", variances)):
            for i, t in enumerate(stats):
                if t.requires_grad:
                    raise ValueError(
                        f"{name}[{i}] requires grad; running statistics are buffers updated in place in training mode"
                    )
    if training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        # F.batch_norm's own check and message, for the first BatchNorm's input (w1's conv output)
        size = torch.Size((x.shape[0], weights[0].shape[0], x.shape[2], x.shape[3]))
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    momentum = _six_numbers("momentum", momentum)
    eps = _six_numbers("eps", eps)
    for i, e in enumerate(eps):
        if e < 0 or (training and e == 0):  # training divides by sqrt(batch var + eps); the var can be 0
            raise ValueError(
                f"eps must be {'positive in training mode' if training else '>= 0'}, got {e} for conv {WEIGHT_NAMES[i]}"
            )
    none6 = (None,) * 6
    return means, variances, gammas or none6, betas or none6, momentum, eps


def _folded(weights, biases, means, variances, gammas, betas, eps, dtype):
    """Each conv with its eval-mode BatchNorm folded in: ``(weights, biases)`` in ``dtype``.

    ``w' = w * s``, ``b' = beta + (b - mean) * s`` with ``s = gamma / sqrt(var + eps)``,
    computed in float32 (float64 for float64 tensors) and differentiable.
    """
    folded_w, folded_b = [], []
    for w, b, mean, var, gamma, beta, e in zip(weights, biases, means, variances, gammas, betas, eps):
        cd = torch.promote_types(torch.promote_types(w.dtype, var.dtype), torch.float32)
        scale = torch.rsqrt(var.to(cd) + e)
        if gamma is not None:
            scale = scale * gamma.to(cd)
        shift = -mean.to(cd) * scale
        if b is not None:
            shift = shift + b.to(cd) * scale
        if beta is not None:
            shift = shift + beta.to(cd)
        folded_w.append((w.to(cd) * scale.reshape(-1, 1, 1, 1)).to(dtype))
        folded_b.append(shift.to(dtype))
    return folded_w, folded_b


def fused_inception_bn(
    x: Tensor,
    weights: Sequence[Tensor],
    running_means: Optional[Sequence[Tensor]],
    running_vars: Optional[Sequence[Tensor]],
    bn_weights: Optional[Sequence[Optional[Tensor]]] = None,
    bn_biases: Optional[Sequence[Optional[Tensor]]] = None,
    *,
    training: bool = False,
    momentum=0.1,
    eps=1e-5,
    biases: Optional[Sequence[Optional[Tensor]]] = None,
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
    backend: str = "auto",
) -> Tensor:
    """One Inception module with BatchNorm after every conv (torchvision's block), functional.

    The BatchNorm arguments follow ``F.batch_norm`` (same order, same defaults), one entry per
    conv in the weight order ``(w1, w3r, w3, w5r, w5, wp)``.

    Args:
        x: input ``[N, Cin, H, W]`` (fp16, bf16, fp32 or fp64), any memory format.
        weights: ``(w1, w3r, w3, w5r, w5, wp)``, each ``[Cout, Cin, k, k]`` in x's dtype and device.
        running_means, running_vars: six ``[Cout_i]`` tensors each, or None (training mode
            only: batch statistics without running ones, like ``track_running_stats=False``).
            In training mode they are updated in place.
        bn_weights, bn_biases: BatchNorm's affine parameters, six ``[Cout_i]`` tensors-or-None
            each, or None (``affine=False``). All BatchNorm tensors share one dtype: x's, or
            float32 with a float16/bfloat16 x (as under ``torch.autocast``).
        training: normalize with the batch statistics and update the running ones.
        momentum: update factor of the running statistics, one number or six (``nn.BatchNorm2d``
            computes it from ``num_batches_tracked`` when its ``momentum`` is None).
        eps: added to the variance, one number or six (torchvision uses 1e-3).
        biases: the convs' own biases (six ``[Cout]``-or-None), or None (torchvision: none).
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` after every BatchNorm, or ``None``.
        backend: ``"auto"``, ``"triton"``, ``"cuda"`` or ``"reference"`` (module docstring):
            eval mode runs the fused op with BatchNorm folded; training mode runs the fused
            Triton training kernels (``"triton"``, and ``"auto"`` where the fused op would pick
            Triton), ``"cuda"`` raises.

    Returns:
        ``[N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]`` in x's dtype (the autocast dtype
        under ``torch.autocast``), differentiable with respect to x, the weights, the conv
        biases and the BatchNorm affine parameters.

    Raises:
        TypeError, ValueError: inconsistent arguments (``check_inception_args`` and
            :func:`check_batch_norm_args`), an unknown backend; training with one value per
            channel raises BatchNorm's own ``ValueError``.
        NotImplementedError: training mode on ``backend="cuda"`` (not yet), or on ``"triton"``
            under ``torch.compile`` tracing.
        TypeError, RuntimeError: a backend that cannot run x (see ``fused_inception``).
    """
    x, weights, biases = ops._autocast_args(x, weights, biases)
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    means, variances, gammas, betas, momentum, eps = check_batch_norm_args(
        x, weights, running_means, running_vars, bn_weights, bn_biases, training, momentum, eps
    )
    chosen = _resolve_bn_backend(backend, x, training)
    if chosen == "reference":
        return reference.inception_bn(
            x, weights, means, variances, gammas, betas, training=training, momentum=momentum, eps=eps,
            biases=biases, kernel_sizes=spec.kernel_sizes, activation=activation,
        )
    if chosen == "folded":
        w, b = _folded(weights, biases, means, variances, gammas, betas, eps, x.dtype)
        return ops.fused_inception(x, w, b, kernel_sizes=spec.kernel_sizes, activation=activation, backend=backend)
    return _TRAINING_KERNELS[chosen](
        x, weights, biases, means, variances, gammas, betas, momentum, eps, spec.kernel_sizes, activation
    )
