"""The oracle: one Inception module in plain PyTorch (docs/design.md §3).

Every fused backend is tested against :func:`inception`. It is written for clarity,
not speed: four branches of ``F.conv2d`` / ``F.max_pool2d`` and a ``torch.cat``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_inception_args

__all__ = ["inception"]


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
