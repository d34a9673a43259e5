"""Inception module specifications and the GoogLeNet (Inception-v1) table.

An :class:`InceptionSpec` names the seven channel counts of one Inception module
(``in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj``), the kernel sizes of its two
spatial branches and its activation.  :data:`GOOGLENET_INCEPTIONS` holds the nine
modules of GoogLeNet ("Going deeper with convolutions", Szegedy et al., 2014,
arXiv:1409.4842, Table 1) with their spatial size at a 224x224 input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["InceptionSpec", "GOOGLENET_INCEPTIONS", "ACTIVATIONS"]

#: Activations the fused op supports: ReLU, or none (identity).
ACTIVATIONS = ("relu", None)


def _check_activation(activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be 'relu' or None, got {activation!r}")


def _check_kernel_sizes(kernel_sizes) -> tuple[int, int]:
    try:
        ks = tuple(kernel_sizes)
    except TypeError:
        raise TypeError(f"kernel_sizes must be a pair of odd ints, got {kernel_sizes!r}") from None
    if len(ks) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        raise TypeError(f"kernel_sizes must be a pair of odd ints, got {kernel_sizes!r}")
    for k in ks:
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel_sizes must be odd and positive (same-size 'pad=K//2' convolutions), got {ks}"
            )
    return ks


@dataclass(frozen=True)
class InceptionSpec:
    """Shape of one Inception module.

    Args:
        in_channels: channels of the input ``x``.
        ch1x1: output channels of the 1x1 branch.
        ch3x3red: channels of the 1x1 reduce before the first spatial conv.
        ch3x3: output channels of the first spatial branch.
        ch5x5red: channels of the 1x1 reduce before the second spatial conv.
        ch5x5: output channels of the second spatial branch.
        pool_proj: output channels of the max-pool -> 1x1 projection branch.
        kernel_sizes: kernel sizes ``(K3, K5)`` of the two spatial branches; odd.
            The paper uses ``(3, 5)``; torchvision's GoogLeNet uses ``(3, 3)``.
        activation: ``"relu"`` (every conv followed by ReLU) or ``None``.
        spatial: spatial size (H = W) of the module's input at a 224x224 image,
            for the GoogLeNet table; ``None`` when unknown.
    """

    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    kernel_sizes: tuple[int, int] = (3, 5)
    activation: Optional[str] = "relu"
    spatial: Optional[int] = None

    def __post_init__(self):
        for name in ("in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        object.__setattr__(self, "kernel_sizes", _check_kernel_sizes(self.kernel_sizes))
        _check_activation(self.activation)

    @property
    def channels(self) -> tuple[int, int, int, int, int, int, int]:
        """The seven channel counts ``(in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj)``: the
        argument order of this class and of torchvision's ``Inception``."""
        return (self.in_channels, self.ch1x1, self.ch3x3red, self.ch3x3, self.ch5x5red, self.ch5x5, self.pool_proj)

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated output: ``ch1x1 + ch3x3 + ch5x5 + pool_proj``."""
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    @property
    def channel_offsets(self) -> tuple[int, int, int, int]:
        """First output channel of each branch (1x1, 3x3, 5x5, pool) in the concatenation."""
        o3 = self.ch1x1
        o5 = o3 + self.ch3x3
        op = o5 + self.ch5x5
        return (0, o3, o5, op)

    @property
    def weight_shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """Conv weight shapes ``(w1, w3r, w3, w5r, w5, wp)``, each ``[Cout, Cin, k, k]``."""
        k3, k5 = self.kernel_sizes
        c = self.in_channels
        return (
            (self.ch1x1, c, 1, 1),
            (self.ch3x3red, c, 1, 1),
            (self.ch3x3, self.ch3x3red, k3, k3),
            (self.ch5x5red, c, 1, 1),
            (self.ch5x5, self.ch5x5red, k5, k5),
            (self.pool_proj, c, 1, 1),
        )

    @property
    def num_parameters(self) -> int:
        """Weights plus biases of the six convs."""
        return sum(s[0] * s[1] * s[2] * s[3] + s[0] for s in self.weight_shapes)

    def macs(self, batch: int, height: int, width: int) -> int:
        """Multiply-accumulates of one forward at ``[batch, in_channels, height, width]``."""
        per_pixel = sum(s[0] * s[1] * s[2] * s[3] for s in self.weight_shapes)
        return batch * height * width * per_pixel

    def flops(self, batch: int, height: int, width: int) -> int:
        """Floating-point operations of one forward (2 per multiply-accumulate)."""
        return 2 * self.macs(batch, height, width)

    def with_(self, **changes) -> "InceptionSpec":
        """A copy with some fields changed, e.g. ``spec.with_(kernel_sizes=(3, 3))``."""
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        fields.update(changes)
        return InceptionSpec(**fields)


def _g(cin, c1, c3r, c3, c5r, c5, pp, spatial) -> InceptionSpec:
    return InceptionSpec(cin, c1, c3r, c3, c5r, c5, pp, spatial=spatial)


#: The nine Inception modules of GoogLeNet (paper variant: (3, 5) kernels, ReLU),
#: keyed "3a" ... "5b", in network order.
GOOGLENET_INCEPTIONS: dict[str, InceptionSpec] = {
    "3a": _g(192, 64, 96, 128, 16, 32, 32, 28),
    "3b": _g(256, 128, 128, 192, 32, 96, 64, 28),
    "4a": _g(480, 192, 96, 208, 16, 48, 64, 14),
    "4b": _g(512, 160, 112, 224, 24, 64, 64, 14),
    "4c": _g(512, 128, 128, 256, 24, 64, 64, 14),
    "4d": _g(512, 112, 144, 288, 32, 64, 64, 14),
    "4e": _g(528, 256, 160, 320, 32, 128, 128, 14),
    "5a": _g(832, 256, 160, 320, 32, 128, 128, 7),
    "5b": _g(832, 384, 192, 384, 48, 128, 128, 7),
}
