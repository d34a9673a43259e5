"""Drop-in fused modules: :class:`FusedInception` and :func:`fuse`.

``FusedInception`` holds the six convolutions' parameters under the names of our reference
:class:`~inception_kernels.models.googlenet.Inception` block (and of torchvision's)::

    branch1.conv.weight    branch1.conv.bias        w1,  b1   (1x1)
    branch2.0.conv.weight  branch2.0.conv.bias      w3r, b3r  (3x3 reduce)
    branch2.1.conv.weight  branch2.1.conv.bias      w3,  b3   (K3 x K3)
    branch3.0.conv.weight  branch3.0.conv.bias      w5r, b5r  (5x5 reduce)
    branch3.1.conv.weight  branch3.1.conv.bias      w5,  b5   (K5 x K5)
    branch4.1.conv.weight  branch4.1.conv.bias      wp,  bp   (pool projection)

so a state_dict moves between it and an ``Inception(batch_norm=False)`` of the same spec with
``strict=True``, both ways. Its forward is one :func:`~inception_kernels.fused_inception` call.

``fuse(model)`` replaces, in place, every Inception block of a model -- ours (both GoogLeNet
variants) and torchvision's, recognized by structure (``branch1``..``branch4`` made of
``BasicConv2d``-like modules with ``.conv`` and an optional ``.bn``), torchvision is never
imported -- by a ``FusedInception`` that computes the same function. BatchNorm is folded into
the convolution exactly, in eval mode only: ``w' = w * gamma / sqrt(var + eps)``,
``b' = beta + (b - mean) * gamma / sqrt(var + eps)``. A BatchNorm block in training mode is
refused (fused BatchNorm training is a later step), because folding would freeze the batch
statistics that training mode uses.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn

from .models.googlenet import Inception
from .ops import BACKEND_CHOICES, fused_inception
from .spec import InceptionSpec

__all__ = ["FusedInception", "fuse"]

#: Paths of the six convolutions in the op's order (w1, w3r, w3, w5r, w5, wp): the reference
#: block's, so parameter names match it (and torchvision's block, which uses the same paths).
_CONV_PATHS = Inception.CONV_NAMES

_BN_TRAINING = (
    "fused BatchNorm training is not supported yet; call model.eval() before fuse() for inference "
    "(BatchNorm is folded into the convolutions in eval mode)"
)


class _Conv(nn.Module):
    """Parameter holder named like ``BasicConv2d.conv``: ``weight`` and optional ``bias``."""

    def __init__(self, weight_shape, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default init
        if self.bias is not None:
            bound = 1 / (weight_shape[1] * weight_shape[2] * weight_shape[3]) ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)


class _Branch(nn.Module):
    """Holds a ``conv`` (:class:`_Conv`), like ``BasicConv2d``."""

    def __init__(self, conv: _Conv):
        super().__init__()
        self.conv = conv


class FusedInception(nn.Module):
    """An Inception module computed by the fused op (docs/design.md §3): a drop-in for ``Inception``.

    Args:
        in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: channel counts, as in
            :class:`~inception_kernels.InceptionSpec`.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` after every conv, or ``None``.
        bias: give every conv a bias (``False``: no bias parameters at all).
        backend: ``"auto"``, ``"triton"``, ``"cuda"`` or ``"reference"``
            (see :func:`~inception_kernels.fused_inception`).

    Attributes:
        spec: the block's :class:`~inception_kernels.InceptionSpec`.
        backend: the backend every forward asks for.

    Parameters are initialized like ``nn.Conv2d``'s; use :meth:`from_module` or
    ``load_state_dict`` to take them from a reference block.
    """

    CONV_NAMES = _CONV_PATHS

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        kernel_sizes=(3, 5),
        activation: Optional[str] = "relu",
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
        self.spec = InceptionSpec(
            in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
            kernel_sizes=kernel_sizes, activation=activation,
        )
        self.backend = backend
        shapes = self.spec.weight_shapes
        branch = [_Branch(_Conv(shape, bias)) for shape in shapes]
        self.branch1 = branch[0]
        self.branch2 = nn.Sequential(branch[1], branch[2])
        self.branch3 = nn.Sequential(branch[3], branch[4])
        # Index 0 of the pool branch is the max-pool in Inception (no parameters); keep the
        # projection at index 1 so the parameter names match.
        self.branch4 = nn.Sequential(nn.Identity(), branch[5])

    @classmethod
    def from_spec(cls, spec: InceptionSpec, *, bias: bool = True, backend: str = "auto") -> "FusedInception":
        """A freshly initialized block with ``spec``'s channels, kernel sizes and activation."""
        return cls(
            spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj,
            kernel_sizes=spec.kernel_sizes, activation=spec.activation, bias=bias, backend=backend,
        )

    @classmethod
    def from_module(cls, block: nn.Module, backend: str = "auto") -> "FusedInception":
        """A FusedInception computing what ``block`` computes, with its parameters copied.

        Args:
            block: our :class:`~inception_kernels.models.googlenet.Inception` (with or without
                BatchNorm) or torchvision's ``Inception`` (recognized by structure).
            backend: the new block's backend.

        Returns:
            A new FusedInception on ``block``'s device and dtype. BatchNorm (eval mode) is
            folded into the weights and biases; without BatchNorm the parameters are copied.
            The new block is in ``block``'s training mode.

        Raises:
            TypeError: ``block`` is not an Inception block.
            ValueError: a BatchNorm block in training mode.
        """
        spec, convs = _inception_structure(block)
        if spec is None:
            raise TypeError(
                f"block must be an Inception block (branch1..branch4 of Conv2d(+BatchNorm) modules), "
                f"got {type(block).__name__}"
            )
        if any(bn is not None for _, bn in convs) and block.training:
            raise ValueError(f"{type(block).__name__}: {_BN_TRAINING}")
        has_bias = any(conv.bias is not None or bn is not None for conv, bn in convs)
        ref = convs[0][0].weight
        fused = cls.from_spec(spec, bias=has_bias, backend=backend).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for holder, (conv, bn) in zip(fused.convs(), convs):
                weight, bias = _folded(conv, bn)
                holder.weight.copy_(weight)
                if holder.bias is not None:
                    holder.bias.copy_(bias if bias is not None else torch.zeros_like(holder.bias))
        return fused.train(block.training)

    def convs(self) -> tuple[nn.Module, ...]:
        """The six parameter holders (``.weight``, ``.bias``) in the op's order."""
        return tuple(self.get_submodule(f"{path}.conv") for path in _CONV_PATHS)

    def weights_and_biases(self) -> tuple[tuple[torch.Tensor, ...], tuple[Optional[torch.Tensor], ...]]:
        """``((w1, ..., wp), (b1, ..., bp))``: the parameters themselves (biases None without bias)."""
        convs = self.convs()
        return tuple(c.weight for c in convs), tuple(c.bias for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output ``[N, out_channels, H, W]`` (see ``fused_inception``)."""
        weights, biases = self.weights_and_biases()
        return fused_inception(
            x, weights, biases, kernel_sizes=self.spec.kernel_sizes, activation=self.spec.activation,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"{s.in_channels}, {s.ch1x1}, {s.ch3x3red}, {s.ch3x3}, {s.ch5x5red}, {s.ch5x5}, {s.pool_proj}, "
            f"kernel_sizes={s.kernel_sizes}, activation={s.activation!r}, "
            f"bias={self.branch1.conv.bias is not None}, backend={self.backend!r}"
        )


def _inception_structure(block: nn.Module):
    """``(spec, [(conv, bn_or_None) x 6])`` when ``block`` is an Inception block, else ``(None, None)``.

    Recognizes our block and torchvision's by structure: ``branch1`` a BasicConv2d-like module
    (``.conv`` an ``nn.Conv2d``, optional ``.bn`` an ``nn.BatchNorm2d``), ``branch2`` /
    ``branch3`` two of them (1x1 then KxK with "same" padding), ``branch4`` a 3x3 stride-1
    max-pool then one; every conv stride 1, no dilation or groups.
    """
    try:
        paths = [block.get_submodule(p) for p in _CONV_PATHS]
        pool = block.get_submodule("branch4.0")
    except AttributeError:
        return None, None
    if isinstance(block, FusedInception) or not isinstance(pool, nn.MaxPool2d):
        return None, None
    if (_pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding), _pair(pool.dilation)) != \
            ((3, 3), (1, 1), (1, 1), (1, 1)):
        return None, None
    convs = []
    for m in paths:
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if not isinstance(conv, nn.Conv2d) or not (bn is None or isinstance(bn, nn.BatchNorm2d)):
            return None, None
        k = conv.kernel_size[0]
        if (conv.kernel_size != (k, k) or _pair(conv.stride) != (1, 1) or _pair(conv.padding) != (k // 2, k // 2)
                or _pair(conv.dilation) != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
            return None, None
        convs.append((conv, bn))
    if len({conv.bias is not None or bn is not None for conv, bn in convs}) != 1:
        return None, None  # some convs with bias, some without: not representable
    activation = _block_activation(block, paths)
    w = [conv.weight for conv, _ in convs]
    spec = InceptionSpec(
        w[0].shape[1], w[0].shape[0], w[1].shape[0], w[2].shape[0], w[3].shape[0], w[4].shape[0], w[5].shape[0],
        kernel_sizes=(w[2].shape[2], w[4].shape[2]), activation=activation,
    )
    return spec, convs


def _block_activation(block: nn.Module, paths) -> Optional[str]:
    """Our blocks know their activation; torchvision's BasicConv2d always applies ReLU."""
    spec = getattr(block, "spec", None)
    if isinstance(spec, InceptionSpec):
        return spec.activation
    acts = {getattr(m, "activation", "relu") for m in paths}
    return acts.pop() if len(acts) == 1 else "relu"


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _folded(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]):
    """``(weight, bias)`` of ``conv`` followed by ``bn`` in eval mode, folded exactly."""
    if bn is None:
        return conv.weight, conv.bias
    var = bn.running_var if bn.track_running_stats else None
    if var is None:
        raise ValueError(f"{bn}: BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = -bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    if bn.bias is not None:
        bias = bias + bn.bias
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


def fuse(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Replace every Inception block of ``model`` by a :class:`FusedInception`, in place.

    Recognizes our ``Inception`` (paper and torchvision variants) and torchvision's
    ``Inception`` by structure; BatchNorm blocks are folded (eval mode only).

    Args:
        model: a module containing Inception blocks (or one itself: then use the returned
            value, since a module cannot replace itself in place).
        backend: the FusedInception blocks' backend.

    Returns:
        ``model`` (or a new FusedInception when ``model`` itself is an Inception block).

    Raises:
        ValueError: a BatchNorm Inception block in training mode (nothing is replaced then),
            or an unknown backend.

    Warns:
        UserWarning: ``model`` contains no Inception block (it is returned unchanged).
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if _inception_structure(model)[0] is not None:
        return FusedInception.from_module(model, backend)
    found = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix, _ in found):
            continue  # inside a block already found
        spec, convs = _inception_structure(module)
        if spec is not None:
            if module.training and any(bn is not None for _, bn in convs):
                raise ValueError(f"{name} ({type(module).__name__}): {_BN_TRAINING}")
            found.append((name, module))
    if not found:
        warnings.warn(f"fuse(): {type(model).__name__} has no Inception block; returned unchanged", stacklevel=2)
        return model
    for name, module in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, FusedInception.from_module(module, backend))
    return model
