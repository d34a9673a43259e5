"""Validation of the fused-op arguments, shared by the reference and every backend.

Every user-facing error names the argument, what was expected and what was given.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .spec import InceptionSpec, _check_activation, _check_kernel_sizes

WEIGHT_NAMES = ("w1", "w3r", "w3", "w5r", "w5", "wp")
BIAS_NAMES = ("b1", "b3r", "b3", "b5r", "b5", "bp")

#: Floating dtypes the op accepts (fp64 is for gradcheck and the reference).
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inception_args(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]],
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
) -> tuple[InceptionSpec, tuple[torch.Tensor, ...], tuple[Optional[torch.Tensor], ...]]:
    """Check the op's arguments; return the spec they describe and the normalized tuples.

    Raises:
        TypeError: a non-tensor argument, a non-floating or unsupported dtype, or a dtype
            that differs between ``x`` and a weight or bias.
        ValueError: a wrong rank, inconsistent channel counts or kernel shapes, a device
            that differs from ``x``'s, or a bad ``kernel_sizes`` / ``activation``.
    """
    k3, k5 = _check_kernel_sizes(kernel_sizes)
    _check_activation(activation)

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [N, Cin, H, W], got {x.dim()}-D with shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; supported dtypes are {', '.join(str(d) for d in SUPPORTED_DTYPES)}"
        )

    if isinstance(weights, torch.Tensor) or not isinstance(weights, Sequence) or len(weights) != 6:
        raise TypeError(
            "weights must be a sequence of 6 tensors (w1, w3r, w3, w5r, w5, wp), got "
            + (f"{len(weights)} items" if isinstance(weights, Sequence) and not isinstance(weights, torch.Tensor)
               else type(weights).__name__)
        )
    if biases is None:
        biases = (None,) * 6
    if isinstance(biases, torch.Tensor) or not isinstance(biases, Sequence) or len(biases) != 6:
        raise TypeError(
            "biases must be None or a sequence of 6 tensors-or-None (b1, b3r, b3, b5r, b5, bp), got "
            + (f"{len(biases)} items" if isinstance(biases, Sequence) and not isinstance(biases, torch.Tensor)
               else type(biases).__name__)
        )

    for name, w in zip(WEIGHT_NAMES, weights):
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"weight {name} must be a torch.Tensor, got {type(w).__name__}")
        if w.dim() != 4:
            raise ValueError(f"weight {name} must be 4-D [Cout, Cin, k, k], got shape {tuple(w.shape)}")
        _check_same(name, w, x)
    for name, b in zip(BIAS_NAMES, biases):
        if b is None:
            continue
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"bias {name} must be a torch.Tensor or None, got {type(b).__name__}")
        _check_same(name, b, x)

    w1, w3r, w3, w5r, w5, wp = weights
    cin = x.shape[1]
    expected = {
        "w1": (None, cin, 1, 1),
        "w3r": (None, cin, 1, 1),
        "w3": (None, w3r.shape[0], k3, k3),
        "w5r": (None, cin, 1, 1),
        "w5": (None, w5r.shape[0], k5, k5),
        "wp": (None, cin, 1, 1),
    }
    why = {
        "w1": "x's channels",
        "w3r": "x's channels",
        "w3": f"w3r's output channels and kernel_sizes[0]={k3}",
        "w5r": "x's channels",
        "w5": f"w5r's output channels and kernel_sizes[1]={k5}",
        "wp": "x's channels",
    }
    for name, w in zip(WEIGHT_NAMES, weights):
        exp = expected[name]
        if tuple(w.shape[1:]) != exp[1:]:
            shown = "[Cout, " + ", ".join(str(v) for v in exp[1:]) + "]"
            raise ValueError(
                f"weight {name} has shape {tuple(w.shape)}, expected {shown} from {why[name]}"
            )
        if w.shape[0] == 0:
            raise ValueError(f"weight {name} has 0 output channels; every branch needs at least one")
    for name, b, w in zip(BIAS_NAMES, biases, weights):
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ValueError(
                f"bias {name} has shape {tuple(b.shape)}, expected ({w.shape[0]},) to match weight "
                f"{WEIGHT_NAMES[BIAS_NAMES.index(name)]}"
            )
    if cin == 0:
        raise ValueError(f"x has 0 channels (shape {tuple(x.shape)}); Cin must be positive")

    spec = InceptionSpec(
        in_channels=int(cin),
        ch1x1=int(w1.shape[0]),
        ch3x3red=int(w3r.shape[0]),
        ch3x3=int(w3.shape[0]),
        ch5x5red=int(w5r.shape[0]),
        ch5x5=int(w5.shape[0]),
        pool_proj=int(wp.shape[0]),
        kernel_sizes=(k3, k5),
        activation=activation,
    )
    return spec, tuple(weights), tuple(biases)


def _check_same(name: str, t: torch.Tensor, x: torch.Tensor) -> None:
    kind = "weight" if name.startswith("w") else "bias"
    if t.device != x.device:
        raise ValueError(f"{kind} {name} is on {t.device}, but x is on {x.device}; put them on one device")
    if t.dtype != x.dtype:
        raise TypeError(f"{kind} {name} has dtype {t.dtype}, but x has dtype {x.dtype}; they must match")
