"""GoogLeNet (Inception-v1), in two variants built from the same blocks (docs/design.md §2).

``variant="paper"`` follows "Going deeper with convolutions" (Szegedy et al., 2014,
arXiv:1409.4842, Table 1 and §5): every convolution has a bias and is followed by ReLU, no
BatchNorm; LocalResponseNorm (size 5, alpha 1e-4, beta 0.75, k 1) after the first max-pool and
after the 3x3 stem conv; a true 5x5 conv in each Inception block's third branch; 3x3/2
max-pools (ceil mode, as Caffe pools); global average pool, dropout 0.4 and a linear classifier.

Its parameter count without the auxiliary heads is **6,998,552**, with a bias on *every*
convolution (stem conv1 7x7, conv2 1x1, conv3 3x3 included) and on the classifier::

    stem        3*64*49 + 64  +  64*64 + 64  +  64*192*9 + 192   =   124,416
    inceptions  sum of InceptionSpec.num_parameters, 3a ... 5b   = 5,849,136
    classifier  1024*1000 + 1000                                 = 1,025,000
    total                                                          6,998,552

This is the faithful architecture; no stem detail needs changing to reach docs/design.md §2's figure
(an earlier hand count of 6,998,744 was 192 too high). The two auxiliary heads add 6,379,728.

``variant="torchvision"`` reproduces ``torchvision.models.googlenet`` module for module and
name for name (conv without bias + BatchNorm eps 1e-3 + ReLU; a 3x3 where the paper has a 5x5,
kept by torchvision for its checkpoint, pytorch/vision#906; a 2x2 ``maxpool4``; adaptive 4x4
pooling in the aux heads; dropout 0.2; ``transform_input``), so a torchvision state_dict loads
with ``strict=True``: 6,624,904 parameters without the aux heads, 13,004,888 with them.
torchvision itself is not imported here.

Auxiliary heads (``aux1`` on 4a's output, ``aux2`` on 4d's) run in training mode only. The
paper's head is 5x5/3 average pool -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> dropout 0.7 ->
FC classes. At a 224x224 input its 14x14 map pools to 4x4, which the 2048-input FC expects; at
other input sizes an adaptive average pool to 4x4 follows the 5x5/3 pool (identity at 224), so
the head works whenever 4a's map is at least 5x5. torchvision's head pools adaptively to 4x4.

Input sizes: H and W may differ; each must be at least :attr:`GoogLeNet.min_input_size`, the
smallest size at which every layer (aux heads included, whether or not in training mode) has a
non-empty output:

    ==============  ===========  ==============
    variant         aux heads    minimum H, W
    ==============  ===========  ==============
    paper           yes          79  (4a map 5x5)
    paper           no           31  (5b map 1x1)
    torchvision     yes or no    15  (5b map 1x1; torchvision's own ``min_size``)
    ==============  ===========  ==============

BatchNorm in training mode needs more than one value per channel, so the torchvision variant at
batch size 1 in training mode needs a 5b map larger than 1x1 (e.g. 47x47 or larger on one side).
Smaller inputs raise a ValueError that names the input's size and the minimum.

Weight init (``init_weights=True``): torchvision's for that variant (truncated normal, std 0.01,
on every conv and linear weight; BatchNorm weight 1, bias 0). For the paper variant, the
BVLC Caffe replication's: "xavier" (uniform, variance 1/fan_in) on every conv and linear
weight, conv biases 0.2, linear biases 0. ``init_weights=False`` keeps PyTorch's defaults.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..spec import GOOGLENET_INCEPTIONS, InceptionSpec

__all__ = [
    "BasicConv2d",
    "Inception",
    "InceptionAux",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "googlenet",
    "googlenet_loss",
    "VARIANTS",
]

#: The two model variants.
VARIANTS = ("paper", "torchvision")

#: Training-mode output with auxiliary heads; torchvision's field names and order.
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

_DEFAULT_DROPOUT = {"paper": 0.4, "torchvision": 0.2}

class BasicConv2d(nn.Module):
    """Conv2d, then BatchNorm (optional), then ReLU (optional).

    Attributes ``conv`` and ``bn`` (``None`` without BatchNorm) match torchvision's
    ``BasicConv2d``. With BatchNorm the conv has no bias and the BatchNorm eps is 1e-3.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as for ``nn.Conv2d``.
        batch_norm: add ``BatchNorm2d(out_channels, eps=1e-3)`` and drop the conv bias.
        activation: ``"relu"`` or ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = False,
        activation: Optional[str] = "relu",
    ) -> None:
        super().__init__()
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=not batch_norm
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3) if batch_norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activation == "relu":
            x = F.relu(x, inplace=True)
        return x


class Inception(nn.Module):
    """One Inception module: four branches concatenated along channels (docs/design.md §3).

    Sub-modules carry torchvision's names, so a fused block can replace this one one for one
    and state_dicts move between them::

        branch1 = BasicConv2d 1x1                                   -> w1,  b1
        branch2 = Sequential(BasicConv2d 1x1, BasicConv2d K3xK3)   -> w3r, b3r / w3, b3
        branch3 = Sequential(BasicConv2d 1x1, BasicConv2d K5xK5)   -> w5r, b5r / w5, b5
        branch4 = Sequential(MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d 1x1)  -> wp, bp

    :attr:`CONV_NAMES` lists the six ``BasicConv2d`` paths in the op's weight order
    (``block.get_submodule(name).conv.weight``); they are the same in torchvision's block.

    Args:
        in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: channel counts, as in
            :class:`~inception_kernels.InceptionSpec`.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches
            (paper ``(3, 5)``, torchvision ``(3, 3)``).
        activation: ``"relu"`` after every conv, or ``None`` for no activation in the block.
        batch_norm: BatchNorm (eps 1e-3) after every conv, whose bias is then dropped.

    Attributes:
        spec: the block's :class:`~inception_kernels.InceptionSpec`.
        batch_norm: whether the convs are followed by BatchNorm.
    """

    #: Paths of the six convolutions in the op's order (w1, w3r, w3, w5r, w5, wp).
    CONV_NAMES = ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1")

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
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.spec = InceptionSpec(
            in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
            kernel_sizes=kernel_sizes, activation=activation,
        )
        self.batch_norm = bool(batch_norm)
        k3, k5 = self.spec.kernel_sizes
        conv = functools.partial(BasicConv2d, batch_norm=self.batch_norm, activation=activation)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, k3, padding=k3 // 2))
        self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, k5, padding=k5 // 2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_channels, pool_proj, 1)
        )

    @classmethod
    def from_spec(cls, spec: InceptionSpec, *, batch_norm: bool = False) -> "Inception":
        """A block with ``spec``'s channels, kernel sizes and activation.

        Args:
            spec: the module's shape.
            batch_norm: BatchNorm after every conv.

        Returns:
            A freshly initialized :class:`Inception`.
        """
        return cls(
            spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
            spec.pool_proj, kernel_sizes=spec.kernel_sizes, activation=spec.activation,
            batch_norm=batch_norm,
        )

    def convs(self) -> tuple[BasicConv2d, ...]:
        """The six ``BasicConv2d`` in the op's order (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)."""
        return tuple(self.get_submodule(name) for name in self.CONV_NAMES)

    def weights_and_biases(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The parameters in the layout ``reference.inception`` and the fused op take.

        Returns:
            ``((w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp))``, the conv parameters
            themselves (not copies), so gradients flow into this block.

        Raises:
            ValueError: for a BatchNorm block, whose convs have no bias and whose BatchNorm
                must be folded first (in eval mode); use :meth:`convs` to read both.
        """
        if self.batch_norm:
            raise ValueError(
                "weights_and_biases() needs a block without BatchNorm; this block has batch_norm=True "
                "(fold each convs()[i].bn into convs()[i].conv first)"
            )
        convs = self.convs()
        return tuple(c.conv.weight for c in convs), tuple(c.conv.bias for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: pool -> 1x1 conv 128 -> FC 1024 + ReLU -> dropout -> FC classes.

    Args:
        in_channels: channels of the Inception output it reads (512 for 4a, 528 for 4d).
        num_classes: classifier outputs.
        paper_pool: the paper's 5x5/3 average pool (then an adaptive 4x4 average pool, the
            identity at a 224x224 image); otherwise torchvision's adaptive 4x4 average pool.
        batch_norm: BatchNorm after the 1x1 conv (torchvision) instead of a conv bias (paper).
        dropout: dropout probability before the last FC.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        paper_pool: bool,
        batch_norm: bool,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        self.pool = (
            nn.Sequential(nn.AvgPool2d(5, stride=3), nn.AdaptiveAvgPool2d(4))
            if paper_pool
            else nn.AdaptiveAvgPool2d(4)
        )
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


def _pool_out(n: int, kernel: int, stride: int) -> int:
    """Output size of an unpadded ceil-mode pool over ``n`` (PyTorch's rule); <= 0 if none."""
    if n < 1:
        return 0
    out = -(-(n - kernel) // stride) + 1
    if out >= 1 and (out - 1) * stride >= n:  # the last window must start inside the input
        out -= 1
    return out


def _stage_sizes(n: int, variant: str) -> tuple[int, int]:
    """Spatial size (along one axis) of the 4a...4e maps and of the 5a/5b maps, for input ``n``."""
    n = (n + 2 * 3 - 7) // 2 + 1  # conv1 7x7/2, pad 3
    n = _pool_out(_pool_out(n, 3, 2), 3, 2)  # maxpool1, maxpool2
    n4 = _pool_out(n, 3, 2)  # maxpool3
    n5 = _pool_out(n4, 2 if variant == "torchvision" else 3, 2)  # maxpool4
    return n4, n5


def _min_input_size(variant: str, aux_heads: bool, last_map: int = 1) -> int:
    """Smallest H (or W) at which every layer of the variant has a non-empty output.

    With ``last_map`` > 1: the smallest at which the 5a/5b maps are at least that large.
    """
    for n in range(1, 1024):
        n4, n5 = _stage_sizes(n, variant)
        if n5 >= last_map and (not (aux_heads and variant == "paper") or n4 >= 5):
            return n
    raise AssertionError("unreachable: a 1023-pixel input always fits")


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception-v1), the paper's or torchvision's variant (see the module docstring).

    Args:
        variant: ``"paper"`` or ``"torchvision"``.
        num_classes: classifier outputs.
        aux_logits: build the two auxiliary heads (used in training mode only).
        transform_input: re-normalize an ImageNet-normalized input the way torchvision's
            pretrained weights expect (torchvision's formula, on both variants).
        init_weights: the variant's init (module docstring); ``False`` keeps PyTorch's defaults.
        dropout: dropout before the classifier; ``None`` for the variant's (0.4 paper, 0.2
            torchvision).
        dropout_aux: dropout in the aux heads.

    Forward:
        ``x`` ``[N, 3, H, W]`` (NCHW or channels_last), H and W >= :attr:`min_input_size`.
        Returns the logits ``[N, num_classes]``; in training mode with aux heads, a
        :data:`GoogLeNetOutputs` ``(logits, aux_logits2, aux_logits1)``.
    """

    def __init__(
        self,
        variant: str = "paper",
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: Optional[float] = None,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be 'paper' or 'torchvision', got {variant!r}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.variant = variant
        self.aux_logits = bool(aux_logits)
        self.transform_input = bool(transform_input)
        paper = variant == "paper"
        bn = not paper
        # The nine blocks' channels come from the one table, spec.GOOGLENET_INCEPTIONS (the
        # paper's (3, 5) kernels); torchvision keeps a 3x3 in the third branch (pytorch/vision#906).
        kernel_sizes = (3, 5) if paper else (3, 3)

        def inception(name: str) -> Inception:
            return Inception.from_spec(GOOGLENET_INCEPTIONS[name].with_(kernel_sizes=kernel_sizes), batch_norm=bn)


        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else None
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else None
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = inception("3a")
        self.inception3b = inception("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception("4a")
        self.inception4b = inception("4b")
        self.inception4c = inception("4c")
        self.inception4d = inception("4d")
        self.inception4e = inception("4e")
        self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)
        self.inception5a = inception("5a")
        self.inception5b = inception("5b")
        if self.aux_logits:
            aux = functools.partial(
                InceptionAux, num_classes=num_classes, paper_pool=paper, batch_norm=bn, dropout=dropout_aux
            )
            self.aux1 = aux(512)
            self.aux2 = aux(528)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=_DEFAULT_DROPOUT[variant] if dropout is None else dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._min_size = _min_input_size(variant, self.aux_logits)
        if init_weights:
            self._init_weights()

    @property
    def min_input_size(self) -> int:
        """Smallest H and W this model accepts (aux heads included when it has them)."""
        return self._min_size

    def inceptions(self) -> dict[str, Inception]:
        """The nine Inception blocks, keyed "3a" ... "5b", in network order."""
        return {name: getattr(self, f"inception{name}") for name in GOOGLENET_INCEPTIONS}

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.variant == "torchvision":
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                else:
                    # Caffe's "xavier" filler: uniform with variance 1/fan_in.
                    nn.init.kaiming_uniform_(m.weight, a=1.0)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must be 4-D [N, 3, H, W], got {x.dim()}-D with shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"x must have 3 channels (RGB), got {x.shape[1]} channels (shape {tuple(x.shape)})")
        h, w = int(x.shape[2]), int(x.shape[3])
        least = self.min_input_size
        if h < least or w < least:
            heads = "with" if self.aux_logits else "without"
            raise ValueError(
                f"x is {h}x{w} (H x W), but the {self.variant} GoogLeNet {heads} aux heads needs "
                f"H and W >= {least}"
            )
        if self.training and self.variant == "torchvision" and x.shape[0] == 1:
            if _stage_sizes(h, self.variant)[1] * _stage_sizes(w, self.variant)[1] == 1:
                raise ValueError(
                    f"x is 1x3x{h}x{w}: BatchNorm in training mode needs more than one value per "
                    "channel, and this input leaves a 1x1 map at inception5b; use a batch of 2 or more, "
                    f"an input of {_min_input_size(self.variant, self.aux_logits, last_map=2)} or more "
                    "on one side, or eval mode"
                )

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x_ch0, x_ch1, x_ch2), 1)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, GoogLeNetOutputs]:
        self._check_input(x)
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))
        if self.lrn2 is not None:
            x = self.lrn2(x)
        x = self.maxpool2(x)
        x = self.inception3b(self.inception3a(x))
        x = self.inception4a(self.maxpool3(x))
        with_aux = self.training and self.aux_logits
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if with_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(variant: str = "paper", **kwargs) -> GoogLeNet:
    """Build a GoogLeNet.

    Args:
        variant: ``"paper"`` (Szegedy et al. 2014) or ``"torchvision"`` (loads torchvision's
            state_dict with ``strict=True``).
        **kwargs: ``num_classes``, ``aux_logits``, ``init_weights``, ``transform_input``,
            ``dropout``, ``dropout_aux`` (see :class:`GoogLeNet`).

    Returns:
        The model, in training mode, on the CPU.
    """
    return GoogLeNet(variant, **kwargs)


def googlenet_loss(
    outputs: Union[torch.Tensor, GoogLeNetOutputs, Sequence[Optional[torch.Tensor]]],
    target: torch.Tensor,
    aux_weight: float = 0.3,
) -> torch.Tensor:
    """Training loss: cross-entropy of the main logits plus ``aux_weight`` x each aux head's.

    Args:
        outputs: the model's output: a logits tensor (eval mode or no aux heads: plain
            cross-entropy), or :data:`GoogLeNetOutputs` ``(logits, aux_logits2, aux_logits1)``;
            an aux entry that is ``None`` is skipped.
        target: class indices ``[N]`` (or class probabilities, as ``F.cross_entropy`` takes).
        aux_weight: weight of each auxiliary loss (0.3 in the paper).

    Returns:
        A scalar tensor.
    """
    if isinstance(outputs, torch.Tensor):
        return F.cross_entropy(outputs, target)
    if not isinstance(outputs, Sequence) or len(outputs) != 3:
        raise TypeError(
            "outputs must be a logits tensor or GoogLeNetOutputs(logits, aux_logits2, aux_logits1), got "
            + type(outputs).__name__
        )
    logits, *aux = outputs
    loss = F.cross_entropy(logits, target)
    for a in aux:
        if a is not None:
            loss = loss + aux_weight * F.cross_entropy(a, target)
    return loss
