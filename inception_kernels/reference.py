"""The oracle: one Inception module in plain PyTorch (docs/design.md §3).

Every fused backend is tested against :func:`inception`. It is written for clarity,
not speed: four branches of ``F.conv2d`` / ``F.max_pool2d`` and a ``torch.cat``.
:func:`inception_bn` is the same block with BatchNorm after every conv (torchvision's
``Inception``), ``F.batch_norm`` between each conv and its activation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_inception_args

__all__ = ["inception", "inception_bn"]


def inception(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
    *,
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
) -> torch.Tensor:
    """One Inception module forward, in plain PyTorch.

    Computes, with ``act`` ReLU or identity::

        y1 = act(conv1x1(x, w1) + b1)
        r3 = act(conv1x1(x, w3r) + b3r);  y3 = act(convKxK(r3, w3, pad=K3//2) + b3)
        r5 = act(conv1x1(x, w5r) + b5r);  y5 = act(convKxK(r5, w5, pad=K5//2) + b5)
        p  = maxpool3x3(x, stride=1, pad=1);  yp = act(conv1x1(p, wp) + bp)
        y  = cat([y1, y3, y5, yp], dim=1)

    Args:
        x: input ``[N, Cin, H, W]``, any memory format.
        weights: ``(w1, w3r, w3, w5r, w5, wp)`` in conv shape ``[Cout, Cin, k, k]``.
        biases: ``(b1, b3r, b3, b5r, b5, bp)``, each ``[Cout]`` or None; or None for no biases.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` or ``None``.

    Returns:
        ``[N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]`` in ``x``'s dtype; channels_last when
        ``x`` is channels_last (as PyTorch's convolutions propagate it).

    Raises:
        TypeError, ValueError: for inconsistent arguments (see ``check_inception_args``).
    """
    spec, (w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp) = check_inception_args(
        x, weights, biases, kernel_sizes, activation
    )
    k3, k5 = spec.kernel_sizes

    def act(t: torch.Tensor) -> torch.Tensor:
        return F.relu(t) if activation == "relu" else t

    y1 = act(F.conv2d(x, w1, b1))
    y3 = act(F.conv2d(act(F.conv2d(x, w3r, b3r)), w3, b3, padding=k3 // 2))
    y5 = act(F.conv2d(act(F.conv2d(x, w5r, b5r)), w5, b5, padding=k5 // 2))
    yp = act(F.conv2d(F.max_pool2d(x, 3, stride=1, padding=1), wp, bp))
    return torch.cat([y1, y3, y5, yp], dim=1)


def _six(name: str, value) -> tuple:
    """A float, or a sequence of six, as six values (one per conv, in the weight order)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 6:
            raise ValueError(f"{name} must be a number or a sequence of 6 (one per conv), got {len(value)} items")
        return tuple(value)
    return (value,) * 6


def inception_bn(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    running_means: Optional[Sequence[torch.Tensor]],
    running_vars: Optional[Sequence[torch.Tensor]],
    bn_weights: Optional[Sequence[Optional[torch.Tensor]]] = None,
    bn_biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
    *,
    training: bool = False,
    momentum=0.1,
    eps=1e-5,
    biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
) -> torch.Tensor:
    """One Inception module with BatchNorm after every conv, in plain PyTorch.

    Every conv of :func:`inception` becomes ``act(batch_norm(conv(t)))``, as torchvision's
    ``BasicConv2d`` computes it::

        bn_i(t) = F.batch_norm(t, running_means[i], running_vars[i], bn_weights[i], bn_biases[i],
                               training, momentum[i], eps[i])

    so in training mode the batch statistics normalize and the running statistics are updated
    in place (momentum, unbiased variance), with gradients through the statistics; in eval
    mode the running statistics normalize.

    Args:
        x: input ``[N, Cin, H, W]``, any memory format.
        weights: ``(w1, w3r, w3, w5r, w5, wp)`` in conv shape ``[Cout, Cin, k, k]``.
        running_means, running_vars: six ``[Cout_i]`` tensors each, in the weight order, or
            None (training mode only: batch statistics, nothing to update).
        bn_weights, bn_biases: six ``[Cout_i]`` tensors-or-None each (BatchNorm's ``affine``),
            or None for none.
        training: normalize with the batch statistics (and update the running ones).
        momentum: the running statistics' update factor, one number or six.
        eps: BatchNorm's epsilon, one number or six.
        biases: the convs' own biases ``(b1, ..., bp)`` (each ``[Cout]`` or None), or None.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` or ``None``.

    Returns:
        ``[N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]`` in the convs' output dtype.

    Raises:
        TypeError, ValueError: inconsistent conv arguments (``check_inception_args``), a
            ``momentum``/``eps`` that is neither a number nor six, or ``F.batch_norm``'s own
            errors for the BatchNorm arguments (use
            :func:`inception_kernels.batchnorm.fused_inception_bn` for named checks).
    """
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    k3, k5 = spec.kernel_sizes
    momentum, eps = _six("momentum", momentum), _six("eps", eps)
    none6 = (None,) * 6
    means = none6 if running_means is None else tuple(running_means)
    variances = none6 if running_vars is None else tuple(running_vars)
    gammas = none6 if bn_weights is None else tuple(bn_weights)
    betas = none6 if bn_biases is None else tuple(bn_biases)

    def unit(i: int, t: torch.Tensor, padding: int = 0) -> torch.Tensor:
        # the conv in the weight's standard layout: FusedInception keeps its weights channels_last
        # for the kernels, and PyTorch's conv picks another algorithm for those, whose last bits
        # differ from an nn.Conv2d's (the batch statistics would then differ from torchvision's)
        t = F.conv2d(t, weights[i].contiguous(), biases[i], padding=padding)
        t = F.batch_norm(t, means[i], variances[i], gammas[i], betas[i], training, momentum[i], eps[i])
        return F.relu(t) if activation == "relu" else t

    y1 = unit(0, x)
    y3 = unit(2, unit(1, x), k3 // 2)
    y5 = unit(4, unit(3, x), k5 // 2)
    yp = unit(5, F.max_pool2d(x, 3, stride=1, padding=1))
    return torch.cat([y1, y3, y5, yp], dim=1)
