"""Drop-in fused modules: :class:`FusedInception`, :func:`fuse` and :func:`unfuse`.

``FusedInception`` holds the six convolutions' parameters (and, with ``batch_norm=True``,
their BatchNorm modules) under the names of torchvision's ``Inception`` block and of ours
(:class:`~inception_kernels.models.googlenet.Inception`)::

    branch1.conv.weight    branch1.conv.bias    branch1.bn.*      w1   (1x1)
    branch2.0.conv.weight  branch2.0.conv.bias  branch2.0.bn.*    w3r  (3x3 reduce)
    branch2.1.conv.weight  branch2.1.conv.bias  branch2.1.bn.*    w3   (K3 x K3)
    branch3.0.conv.weight  branch3.0.conv.bias  branch3.0.bn.*    w5r  (5x5 reduce)
    branch3.1.conv.weight  branch3.1.conv.bias  branch3.1.bn.*    w5   (K5 x K5)
    branch4.1.conv.weight  branch4.1.conv.bias  branch4.1.bn.*    wp   (pool projection)

(``bn.*``: ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``;
with BatchNorm the convs have no bias, as torchvision's), so a state_dict moves between it
and an ``Inception`` of the same spec with ``strict=True``, both ways. A block made by
:func:`fuse` keeps the names of the block it replaces, whatever they are. Its forward is one
:func:`~inception_kernels.fused_inception` call, or with BatchNorm one
:func:`~inception_kernels.batchnorm.fused_inception_bn` call, which trains (batch statistics,
running statistics updated like ``nn.BatchNorm2d``) and evaluates (running statistics).

``fuse(model)`` replaces, in place, every Inception block of a model -- recognized by its
computation (``torch.fx``, :mod:`inception_kernels._recognize`), in any module naming -- by a
``FusedInception`` that computes the same function with the same parameters, in either mode.
Folding BatchNorm into the convolutions (``w' = w * gamma / sqrt(var + eps)``,
``b' = beta + (b - mean) * gamma / sqrt(var + eps)``) is an explicit choice for inference,
``fuse(model, fold_batch_norm=True)``, in eval mode; a folded block refuses ``.train()``.
``unfuse(model)`` turns fused blocks back into plain ``Inception`` blocks.
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from ._recognize import Recognized, Rejected, called_inside, recognize
from .batchnorm import fused_inception_bn
from .models.googlenet import Inception
from .ops import BACKEND_CHOICES, fused_inception
from .spec import InceptionSpec

__all__ = ["FusedInception", "fuse", "unfuse", "WEIGHT_MEMORY_FORMAT"]

#: Paths of the six convs' parameter holders in the op's order (w1, w3r, w3, w5r, w5, wp), and of
#: their BatchNorms: torchvision's (and our Inception's) names.
_CONV_PATHS = tuple(f"{name}.conv" for name in Inception.CONV_NAMES)
_BN_PATHS = tuple(f"{name}.bn" for name in Inception.CONV_NAMES)

#: Memory format FusedInception keeps its conv weights in: channels_last makes a KxK weight one
#: contiguous (tap, input channel) row per output channel, the operand the fused kernels'
#: flat (tap, channel) reduction reads with 16-byte vector loads (docs/design.md §4). A 1x1
#: weight is the same memory either way. Values, names and state_dicts are unaffected.
WEIGHT_MEMORY_FORMAT = torch.channels_last

_FOLDED_TRAIN = (
    "this FusedInception was made by fuse(..., fold_batch_norm=True): its BatchNorm running statistics are "
    "folded into the conv weights, for inference, so it cannot train (training normalizes with batch "
    "statistics). Fuse the unfused model without fold_batch_norm to train it: BatchNorm is then kept"
)


class _Conv(nn.Module):
    """Parameter holder named like ``nn.Conv2d``: ``weight`` and optional ``bias``."""

    def __init__(self, weight_shape, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default init
        if self.bias is not None:
            bound = 1 / (weight_shape[1] * weight_shape[2] * weight_shape[3]) ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def holding(cls, weight: nn.Parameter, bias: Optional[nn.Parameter]) -> "_Conv":
        """A holder of these very parameters (not copies)."""
        holder = cls.__new__(cls)
        nn.Module.__init__(holder)
        holder.weight = weight
        holder.bias = bias
        return holder


class _Path(nn.Module):
    """A container on a parameter path (``branch2`` in ``branch2.0.conv``); it computes nothing."""


def _bias_flags(bias, batch_norm: bool) -> tuple[bool, ...]:
    if bias is None:
        return (not batch_norm,) * 6
    if isinstance(bias, bool):
        return (bias,) * 6
    flags = tuple(bias)
    if len(flags) != 6 or not all(isinstance(b, bool) for b in flags):
        raise TypeError(f"bias must be None, a bool or 6 bools (one per conv), got {bias!r}")
    return flags


class FusedInception(nn.Module):
    """An Inception module computed by the fused op (docs/design.md §3): a drop-in for ``Inception``.

    Args:
        in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: channel counts, as in
            :class:`~inception_kernels.InceptionSpec`.
        kernel_sizes: ``(K3, K5)``, odd kernel sizes of the two spatial branches.
        activation: ``"relu"`` after every conv (after its BatchNorm), or ``None``.
        bias: give the convs a bias: a bool, or six (one per conv, in the op's order); None
            (default) means ``not batch_norm`` (torchvision's convs before BatchNorm have none).
        batch_norm: ``nn.BatchNorm2d(eps=1e-3)`` (torchvision's) after every conv, as
            ``branchX.bn``; it trains with batch statistics and evaluates with running ones,
            following each BatchNorm module's ``eps``, ``momentum`` (None: cumulative average),
            ``affine``, ``track_running_stats`` and training flag, like ``nn.BatchNorm2d``.
        backend: ``"auto"``, ``"triton"``, ``"cuda"`` or ``"reference"`` (see
            :func:`~inception_kernels.fused_inception`; with BatchNorm,
            :func:`~inception_kernels.batchnorm.fused_inception_bn`).

    Attributes:
        spec: the block's :class:`~inception_kernels.InceptionSpec`.
        backend: the backend every forward asks for.
        batch_norm: whether BatchNorm follows the convs.
        folded_batch_norm: True for a block made by ``fuse(..., fold_batch_norm=True)`` (its
            convs hold BatchNorm folded in; it refuses ``.train()``).
        conv_paths, bn_paths: where the six parameter holders (``.weight``, ``.bias``) and
            BatchNorms (None without) are, in the op's order.

    The conv weights are kept in :data:`WEIGHT_MEMORY_FORMAT` (channels_last), the layout the
    fused kernels read fastest; a block made by :func:`fuse` converts the replaced block's own
    weight Parameters in place (same objects, same values).

    Parameters are initialized like ``nn.Conv2d``'s (BatchNorm: weight 1, bias 0); use
    :meth:`from_module`, :func:`fuse` or ``load_state_dict`` to take them from a block.
    """

    #: Paths of the six ``BasicConv2d``-like units, as in ``Inception.CONV_NAMES``.
    CONV_NAMES = Inception.CONV_NAMES
    #: torch.fx keeps the block whole (its forward calls the fused op): read by ``_recognize``.
    _TRACE_AS_LEAF = True

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
        bias: Union[None, bool, Sequence[bool]] = None,
        batch_norm: bool = False,
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
        flags = _bias_flags(bias, batch_norm)
        convs = [_Conv(shape, b) for shape, b in zip(self.spec.weight_shapes, flags)]
        bns = [nn.BatchNorm2d(shape[0], eps=1e-3) for shape in self.spec.weight_shapes] if batch_norm else None
        self._install(_CONV_PATHS, convs, _BN_PATHS if batch_norm else None, bns)

    def _install(self, conv_paths, convs, bn_paths, bns, order: Optional[Sequence[str]] = None) -> None:
        """Put the holders (and BatchNorms) at their paths, creating containers on the way.

        ``order`` lists every path in the order to register them (so that state_dict keys come
        in the replaced block's order); default: each conv, then its BatchNorm.
        """
        self.conv_paths = tuple(conv_paths)
        self.bn_paths = None if bn_paths is None else tuple(bn_paths)
        self.batch_norm = bn_paths is not None
        self.folded_batch_norm = False
        modules = dict(zip(conv_paths, convs))
        if bn_paths is not None:
            modules.update(zip(bn_paths, bns))
        if order is None:
            order = [p for i in range(6) for p in ((conv_paths[i], bn_paths[i]) if bn_paths else (conv_paths[i],))]
        for path in order:
            parent = self
            *heads, leaf = path.split(".")
            for head in heads:
                if head not in parent._modules:
                    parent.add_module(head, _Path())
                parent = parent._modules[head]
            parent.add_module(leaf, modules[path])
        # the kernels' fast layout, in place (fuse() keeps the model's own Parameters); unfuse()
        # gives each weight back the layout it came with
        self._weight_formats = tuple(_memory_format(conv.weight) for conv in convs)
        for conv in convs:
            conv.weight.data = conv.weight.data.contiguous(memory_format=WEIGHT_MEMORY_FORMAT)

    @classmethod
    def from_spec(cls, spec: InceptionSpec, *, bias: Union[None, bool, Sequence[bool]] = None,
                  batch_norm: bool = False, backend: str = "auto") -> "FusedInception":
        """A freshly initialized block with ``spec``'s channels, kernel sizes and activation
        (``bias``, ``batch_norm``, ``backend`` as in the constructor)."""
        return cls(
            spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj,
            kernel_sizes=spec.kernel_sizes, activation=spec.activation, bias=bias, batch_norm=batch_norm,
            backend=backend,
        )

    @classmethod
    def from_module(cls, block: nn.Module, backend: str = "auto", *,
                    fold_batch_norm: bool = False) -> "FusedInception":
        """A FusedInception computing what ``block`` computes, with copies of its parameters.

        Args:
            block: an Inception block, recognized by its computation (see :func:`fuse`): ours,
                torchvision's, or any module that computes one.
            backend: the new block's backend.
            fold_batch_norm: fold BatchNorm into the convs (eval mode only; the new block then
                cannot train). By default BatchNorm is kept, with its parameters and buffers.

        Returns:
            A new FusedInception with ``block``'s parameter names, device, dtype and mode;
            ``block`` is not modified and shares nothing with it.

        Raises:
            TypeError: ``block`` is not an Inception block the fused op computes (the message
                says why) or is already a FusedInception.
            ValueError: ``fold_batch_norm`` with a block in training mode or a BatchNorm
                without running statistics; an unknown backend.
        """
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
        if isinstance(block, FusedInception):
            raise TypeError("block is already a FusedInception (copy.deepcopy it to get another)")
        block = copy.deepcopy(block)
        found = recognize(block)
        if not isinstance(found, Recognized):
            why = found.reason if isinstance(found, Rejected) else (
                "its computation is not four branches concatenated (1x1 | 1x1->KxK | 1x1->KxK | max-pool->1x1)")
            raise TypeError(f"block ({type(block).__name__}) is not an Inception block the fused op computes: {why}")
        if fold_batch_norm:
            _check_foldable(found, block.training, type(block).__name__)
        return cls._replacing(found, block.training, backend, fold_batch_norm)

    @classmethod
    def _replacing(cls, found: Recognized, training: bool, backend: str, fold: bool) -> "FusedInception":
        """The block that replaces a recognized one: its very parameters and BatchNorm modules
        (or, folding, new parameters with BatchNorm folded in), under its paths."""
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused.spec = found.spec
        fused.backend = backend
        conv_paths = [u.conv_path for u in found.units]
        if found.batch_norm and fold:
            convs = []
            for u in found.units:
                weight, bias = _folded(u.conv, u.bn)
                convs.append(_Conv.holding(nn.Parameter(weight, requires_grad=u.conv.weight.requires_grad),
                                           nn.Parameter(bias, requires_grad=u.conv.weight.requires_grad)))
            fused._install(conv_paths, convs, None, None)
            fused.folded_batch_norm = True
        elif found.batch_norm:
            bn_paths = [u.bn_path for u in found.units]
            fused._install(conv_paths, [_Conv.holding(u.conv.weight, u.conv.bias) for u in found.units],
                           bn_paths, [u.bn for u in found.units], order=found.paths_in_order)
        else:
            fused._install(conv_paths, [_Conv.holding(u.conv.weight, u.conv.bias) for u in found.units], None, None,
                           order=found.paths_in_order)
        fused.training = training
        for m in fused.modules():  # the containers and holders follow; BatchNorms keep their own modes
            if isinstance(m, (_Path, _Conv)):
                m.training = training
        return fused

    def train(self, mode: bool = True) -> "FusedInception":
        """Set training mode (see ``nn.Module.train``).

        Raises:
            RuntimeError: ``mode=True`` on a block made with ``fold_batch_norm=True``.
        """
        if mode and self.folded_batch_norm:
            raise RuntimeError(_FOLDED_TRAIN)
        return super().train(mode)

    def convs(self) -> tuple[nn.Module, ...]:
        """The six parameter holders (``.weight``, ``.bias``) in the op's order."""
        return tuple(self.get_submodule(path) for path in self.conv_paths)

    def batch_norms(self) -> Optional[tuple[nn.BatchNorm2d, ...]]:
        """The six ``nn.BatchNorm2d`` in the op's order, or None without BatchNorm."""
        return None if self.bn_paths is None else tuple(self.get_submodule(path) for path in self.bn_paths)

    def weights_and_biases(self) -> tuple[tuple[torch.Tensor, ...], tuple[Optional[torch.Tensor], ...]]:
        """``((w1, ..., wp), (b1, ..., bp))``: the convs' parameters themselves (a bias is None
        where its conv has none)."""
        convs = self.convs()
        return tuple(c.weight for c in convs), tuple(c.bias for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output ``[N, out_channels, H, W]`` (see ``fused_inception`` /
        ``fused_inception_bn``); with BatchNorm in training mode, updates the running statistics."""
        weights, biases = self.weights_and_biases()
        if not self.batch_norm:
            return fused_inception(
                x, weights, biases, kernel_sizes=self.spec.kernel_sizes, activation=self.spec.activation,
                backend=self.backend,
            )
        bns = self.batch_norms()
        # nn.BatchNorm2d.forward's rules, per BatchNorm; the six must agree on the mode.
        bn_training = [bn.training or (bn.running_mean is None and bn.running_var is None) for bn in bns]
        stats = [bn.running_mean is not None and (not bn.training or bn.track_running_stats) for bn in bns]
        if len(set(bn_training)) != 1 or len(set(stats)) != 1:
            modes = ", ".join(f"{p}: {'batch' if t else 'running'} statistics" for p, t in zip(self.bn_paths, bn_training))
            raise RuntimeError(
                "FusedInception normalizes its six BatchNorms together, so they must agree on training mode and "
                f"track_running_stats; got {modes} (call .train() or .eval() on the block)"
            )
        counting = [bn.training and bn.track_running_stats and bn.num_batches_tracked is not None for bn in bns]
        momentum = []
        for bn, counts in zip(bns, counting):
            if bn.momentum is None:  # cumulative moving average over the batches seen, this one included
                momentum.append(1.0 / float(bn.num_batches_tracked + 1) if counts else 0.0)
            else:
                momentum.append(bn.momentum)
        y = fused_inception_bn(
            x, weights,
            [bn.running_mean for bn in bns] if stats[0] else None,
            [bn.running_var for bn in bns] if stats[0] else None,
            [bn.weight for bn in bns], [bn.bias for bn in bns],
            training=bn_training[0], momentum=momentum, eps=[bn.eps for bn in bns], biases=biases,
            kernel_sizes=self.spec.kernel_sizes, activation=self.spec.activation, backend=self.backend,
        )
        for bn, counts in zip(bns, counting):
            if counts:
                bn.num_batches_tracked.add_(1)
        return y

    def extra_repr(self) -> str:
        s = self.spec
        biases = [c.bias is not None for c in self.convs()]
        bias = biases[0] if len(set(biases)) == 1 else tuple(biases)
        text = (
            f"{s.in_channels}, {s.ch1x1}, {s.ch3x3red}, {s.ch3x3}, {s.ch5x5red}, {s.ch5x5}, {s.pool_proj}, "
            f"kernel_sizes={s.kernel_sizes}, activation={s.activation!r}, bias={bias}, "
            f"batch_norm={self.batch_norm}, backend={self.backend!r}"
        )
        return text + (", folded_batch_norm=True" if self.folded_batch_norm else "")


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d):
    """``(weight, bias)`` of ``conv`` followed by ``bn`` in eval mode, folded exactly (new tensors)."""
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = -bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        if bn.bias is not None:
            bias = bias + bn.bias
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    return weight.to(conv.weight.dtype), bias.to(conv.weight.dtype)


def _check_foldable(found: Recognized, training: bool, name: str) -> None:
    """Raise ValueError unless every BatchNorm of ``found`` can be folded (eval mode, running stats)."""
    if not found.batch_norm:
        return
    if training or any(bn.training for bn in found.batch_norms()):
        raise ValueError(
            f"{name}: fold_batch_norm=True folds BatchNorm's running statistics, which only eval mode uses; "
            "the block is in training mode (call model.eval() first, or fuse without fold_batch_norm to keep "
            "BatchNorm, which trains)"
        )
    for u in found.units:
        if u.bn.running_mean is None or u.bn.running_var is None:
            raise ValueError(
                f"{name}: fold_batch_norm=True needs running statistics, but {u.bn_path} has none "
                "(track_running_stats=False); fuse without fold_batch_norm to keep it (batch statistics)"
            )


def _scan(model: nn.Module):
    """Walk ``model`` top-down; return ``(found, rejected, has_fused)``.

    ``found``: ``[(name, module, Recognized)]`` of the outermost Inception blocks;
    ``rejected``: ``[(name, reason)]`` of the innermost candidates left unfused (their
    warnings: a candidate that holds another candidate or a block is not one itself);
    ``has_fused``: the model already holds FusedInception blocks.
    """
    found, rejected, seen = [], [], {}
    has_fused = False

    def visit(name: str, module: nn.Module) -> bool:
        """Returns True when ``module`` is or holds a candidate (fused, found or rejected)."""
        nonlocal has_fused
        if id(module) in seen:
            return seen[id(module)]
        if isinstance(module, FusedInception):
            has_fused = seen[id(module)] = True
            return True
        result = recognize(module)
        if isinstance(result, Recognized):
            found.append((name, module, result))
            seen[id(module)] = True
            return True
        holds = False
        for child_name, child in module.named_children():
            holds |= visit(f"{name}.{child_name}" if name else child_name, child)
        if isinstance(result, Rejected) and not holds:
            rejected.append((name, result.reason))
            holds = True
        seen[id(module)] = holds
        return holds

    visit("", model)
    # A block whose parts an enclosing module calls directly stays (see _recognize.called_inside).
    for parent_name, parent in list(model.named_modules()):
        prefix = parent_name + "." if parent_name else ""
        inside = {name[len(prefix):]: m for name, m, _ in found if name.startswith(prefix) and name != parent_name}
        if not inside or isinstance(parent, FusedInception):
            continue
        for path, call in called_inside(parent, inside).items():
            name = prefix + path
            found = [f for f in found if f[0] != name]
            where = f"{parent_name} ({type(parent).__name__})" if parent_name else type(parent).__name__
            rejected.append((name, f"{where} calls its submodule {call} directly"))
    return found, rejected, has_fused


def fuse(model: nn.Module, backend: str = "auto", *, fold_batch_norm: bool = False) -> nn.Module:
    """Replace every Inception block of ``model`` by a :class:`FusedInception`, in place.

    Blocks are recognized by their computation, in any module naming (``torch.fx``, see
    :mod:`inception_kernels._recognize`): four branches concatenated in order,
    1x1 | 1x1->KxK | 1x1->KxK | max-pool 3/1/1->1x1, each conv optionally followed by
    BatchNorm and ReLU -- ours, torchvision's, or blocks named ``branch1x1``, ``branch3x3``,
    ``branch_pool``, ... with bare ``nn.Conv2d`` and ``F.relu``. The facts (ReLU or none, conv
    biases, BatchNorm, kernel sizes) come from the graph. Each fused block holds the replaced
    block's parameters and BatchNorm modules themselves, under the same names: the model's
    state_dict keys do not change, and an optimizer made before ``fuse`` keeps working. Modes
    are kept: a BatchNorm model trains (batch statistics) and evaluates (running statistics).

    Every block is checked before any is replaced: on an error nothing changes. A second
    ``fuse`` finds only fused blocks and does nothing, quietly.

    Args:
        model: a module containing Inception blocks, or one itself (then use the returned
            value: a module cannot replace itself in place).
        backend: the FusedInception blocks' backend.
        fold_batch_norm: fold BatchNorm into the convs, for inference: needs eval mode and
            running statistics; the folded blocks have new parameters (a bias per conv, no
            BatchNorm keys) and refuse ``.train()``.

    Returns:
        ``model`` (or a new FusedInception when ``model`` itself is an Inception block).

    Raises:
        ValueError: an unknown backend; ``fold_batch_norm`` with a BatchNorm block in training
            mode or without running statistics (nothing is replaced).

    Warns:
        UserWarning: once per module that looks like an Inception block (a concatenation of
            four tensors over six convs) but is not one the fused op computes, naming it and
            the reason (it is left unfused); or when ``model`` holds no Inception block at all.
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    found, rejected, has_fused = _scan(model)
    for name, reason in rejected:
        where = f"{name} ({type(model.get_submodule(name)).__name__})" if name else type(model).__name__
        warnings.warn(f"fuse(): {where} is left unfused: {reason}", stacklevel=2)
    if fold_batch_norm:
        for name, module, rec in found:
            _check_foldable(rec, module.training, name or type(module).__name__)
    replacements = [(name, FusedInception._replacing(rec, module.training, backend, fold_batch_norm))
                    for name, module, rec in found]
    if not found and not has_fused and not rejected:
        warnings.warn(f"fuse(): {type(model).__name__} has no Inception block; returned unchanged", stacklevel=2)
    return _replace(model, found, replacements)


def _replace(model: nn.Module, found, replacements) -> nn.Module:
    """Put each replacement where its block was (every place that holds it); the root is returned."""
    by_id = {id(module): new for (_, module, *_), (_, new) in zip(found, replacements)}
    if id(model) in by_id:
        return by_id[id(model)]
    for parent in list(model.modules()):
        for child_name, child in list(parent._modules.items()):  # every name, duplicates included
            if child is not None and id(child) in by_id:
                setattr(parent, child_name, by_id[id(child)])
    return model


def unfuse(model: nn.Module) -> nn.Module:
    """Turn every :class:`FusedInception` of ``model`` back into a plain ``Inception``, in place.

    The new :class:`~inception_kernels.models.googlenet.Inception` blocks hold the fused
    blocks' parameters and BatchNorm modules themselves, under torchvision's names (our
    ``Inception``'s), with BatchNorm where it was: a torchvision GoogLeNet that was fused and
    unfused loads into ``torchvision.models.googlenet`` with ``strict=True``.

    Args:
        model: a module containing FusedInception blocks, or one itself (then use the
            returned value).

    Returns:
        ``model`` (or a new ``Inception`` when ``model`` itself is a FusedInception); a model
        without fused blocks is returned unchanged.

    Raises:
        ValueError: a block made with ``fold_batch_norm=True`` (its BatchNorm is folded away
            and cannot be recovered); nothing is replaced then.
    """
    found = []
    for name, module in model.named_modules():
        if isinstance(module, FusedInception):
            if module.folded_batch_norm:
                raise ValueError(
                    f"unfuse(): {name or type(module).__name__} was fused with fold_batch_norm=True; its BatchNorm "
                    "is folded into the conv weights and cannot be recovered (unfuse the model fused without folding)"
                )
            found.append((name, module))
    replacements = [(name, _unfused(module)) for name, module in found]
    return _replace(model, found, replacements)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """``t``'s memory format: contiguous, channels_last, or (anything else) preserve_format."""
    if t.is_contiguous():
        return torch.contiguous_format
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.preserve_format


def _unfused(fused: FusedInception) -> Inception:
    """An ``Inception`` holding ``fused``'s parameters and BatchNorm modules (not copies)."""
    with torch.device("meta"):  # its own parameters are replaced below: allocate nothing
        block = Inception.from_spec(fused.spec, batch_norm=fused.batch_norm)
    block.train(fused.training)
    bns = fused.batch_norms() or (None,) * 6
    formats = getattr(fused, "_weight_formats", (torch.preserve_format,) * 6)
    for unit, holder, bn, fmt in zip(block.convs(), fused.convs(), bns, formats):
        if fmt is not torch.preserve_format:  # the layout the weight had before fuse()
            holder.weight.data = holder.weight.data.contiguous(memory_format=fmt)
        unit.conv.weight = holder.weight
        unit.conv.bias = holder.bias
        if bn is not None:
            unit.bn = bn
    left = [name for name, t in (*block.named_parameters(), *block.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"unfuse(): internal error, {left} were not taken from the fused block")
    return block
