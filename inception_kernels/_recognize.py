"""Recognize Inception blocks by what they compute, for :func:`inception_kernels.fuse`.

A module is an Inception block when its ``torch.fx`` graph is exactly::

    x -> unit                              (1x1)
    x -> unit -> unit                      (1x1 reduce, then KxK)
    x -> unit -> unit                      (1x1 reduce, then KxK)
    x -> max_pool(3, stride 1, pad 1) -> unit   (pool projection, 1x1)
    cat([branch1, branch2, branch3, branch4], dim=1)  -> output

where a *unit* is an ``nn.Conv2d`` module, then optionally an ``nn.BatchNorm2d`` module, then
optionally a ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``.relu()``, in place or not),
in any module naming. The facts are read from the graph and the modules it calls -- ReLU or
none, conv biases, BatchNorm and its settings, kernel sizes, padding ``K//2``, stride 1,
dilation 1, groups 1 -- never assumed from names. Anything else is reported with a reason
that names the op or the module (its path in the block).

Which modules are *candidates* (traced and, when they do not match, reported): those with at
least six ``nn.Conv2d`` among their submodules whose graph has exactly six convs and exactly
one concatenation of four tensors along channels. A module that cannot be traced is a
candidate only when it holds exactly six convs (it may be an Inception block fx cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .spec import InceptionSpec

__all__ = ["Unit", "Recognized", "Rejected", "recognize", "called_inside"]

_CATS = (torch.cat, torch.concat, torch.concatenate)
_CONV_FUNCTIONS = (F.conv2d, torch.conv2d)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
_RELU_METHODS = ("relu", "relu_")
_MAX_POOL_FUNCTIONS = (F.max_pool2d, torch.max_pool2d)
_AVG_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d, nn.AdaptiveMaxPool2d)
_AVG_POOL_FUNCTIONS = (F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.lp_pool2d)


@dataclass(frozen=True)
class Unit:
    """One conv of a recognized block, with what follows it.

    Attributes:
        conv: the ``nn.Conv2d`` module; conv_path: its path in the block.
        bn: the ``nn.BatchNorm2d`` after it, or None; bn_path: its path (None without).
        relu: whether a ReLU follows.
    """

    conv: nn.Conv2d = field(repr=False)
    conv_path: str
    bn: Optional[nn.BatchNorm2d] = field(repr=False)
    bn_path: Optional[str]
    relu: bool


@dataclass(frozen=True)
class Recognized:
    """An Inception block read from its graph.

    Attributes:
        spec: its :class:`InceptionSpec` (channels, kernel sizes, activation).
        units: the six units in the op's weight order ``(w1, w3r, w3, w5r, w5, wp)``.
        paths_in_order: the units' conv and BatchNorm paths in the block's registration order
            (the order of its state_dict keys).
    """

    spec: InceptionSpec
    units: tuple[Unit, ...]
    paths_in_order: tuple[str, ...]

    @property
    def batch_norm(self) -> bool:
        return self.units[0].bn is not None

    def batch_norms(self) -> tuple[nn.BatchNorm2d, ...]:
        return tuple(u.bn for u in self.units if u.bn is not None)


@dataclass(frozen=True)
class Rejected:
    """A candidate that is not an Inception block the fused op computes; ``reason`` says why."""

    reason: str


class _Tracer(fx.Tracer):
    """fx's tracer, with already-fused blocks (their forward is not traceable) and ``leaves``
    kept as leaves. A fused block says so with a class attribute ``_TRACE_AS_LEAF = True``
    (:class:`~inception_kernels.FusedInception`): this module does not import the modules that
    use it."""

    def __init__(self, leaves=()):
        super().__init__()
        self.leaves = {id(m) for m in leaves}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (getattr(type(m), "_TRACE_AS_LEAF", False) or id(m) in self.leaves
                or super().is_leaf_module(m, module_qualified_name))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _NotInception(Exception):
    """Raised inside the analysis with the reason a candidate does not match."""


def _describe(node: fx.Node, root: nn.Module) -> str:
    if node.op == "call_module":
        return f"{type(root.get_submodule(node.target)).__name__} ({node.target})"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "get_attr":
        return f"the attribute {node.target} used directly"
    return f"{node.op} {node.target}"


def _is_conv(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(root.get_submodule(node.target), nn.Conv2d)
    return node.op == "call_function" and node.target in _CONV_FUNCTIONS


def _channel_cat(node: fx.Node) -> Optional[list]:
    """The four tensors of a ``cat(..., dim=1)`` node, else None."""
    if node.op != "call_function" or node.target not in _CATS:
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    if not isinstance(tensors, (list, tuple)) or len(tensors) != 4 or dim not in (1, -3):
        return None
    return list(tensors)


def _arg(node: fx.Node, index: int, name: str, default):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


@dataclass
class _Token:
    kind: str  # conv, bn, relu, maxpool, avgpool, identity, other
    node: fx.Node
    desc: str
    module: Optional[nn.Module] = None
    pool: Optional[tuple] = None  # (kernel, stride, padding, dilation, return_indices) of a max-pool


def _token(node: fx.Node, root: nn.Module) -> _Token:
    desc = _describe(node, root)
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        kind = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu", nn.Identity: "identity"}.get(type(m))
        if type(m) is nn.MaxPool2d:
            pool = (_pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation), m.return_indices)
            return _Token("maxpool", node, desc, m, pool)
        if isinstance(m, _AVG_POOLS):
            return _Token("avgpool", node, desc, m)
        return _Token(kind or "other", node, desc, m)
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return _Token("relu", node, desc)
        if node.target in _MAX_POOL_FUNCTIONS:
            kernel = _arg(node, 1, "kernel_size", None)
            stride = _arg(node, 2, "stride", None)
            stride = kernel if stride in (None, [], ()) else stride
            pool = (_pair(kernel), _pair(stride), _pair(_arg(node, 3, "padding", 0)),
                    _pair(_arg(node, 4, "dilation", 1)), bool(_arg(node, 6, "return_indices", False)))
            return _Token("maxpool", node, desc, pool=pool)
        if node.target in _AVG_POOL_FUNCTIONS:
            return _Token("avgpool", node, desc)
        if node.target in _CONV_FUNCTIONS:
            return _Token("other", node, f"{desc} (a functional conv; fuse() fuses nn.Conv2d modules)")
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return _Token("relu", node, desc)
    return _Token("other", node, desc)


def _branch_tokens(end: fx.Node, x: fx.Node, root: nn.Module, branch: int) -> list[_Token]:
    """The ops from ``x`` to ``end`` (one chain of single-input ops), in order."""
    nodes = []
    node = end
    while node is not x:
        inputs = node.all_input_nodes
        if len(inputs) != 1:
            what = "no tensor input" if not inputs else f"{len(inputs)} inputs"
            raise _NotInception(f"branch {branch} has an op with {what}: {_token(node, root).desc}")
        nodes.append(node)
        node = inputs[0]
    tokens = [_token(n, root) for n in reversed(nodes)]
    return [t for t in tokens if t.kind != "identity"]


def _units(tokens: list[_Token], branch: int) -> list[tuple[_Token, Optional[_Token], bool]]:
    """Split a branch's ops into units ``(conv, bn_or_None, relu)``; branch 4 starts with its pool."""
    units, i = [], 0
    if branch == 4:
        if not tokens or tokens[0].kind not in ("maxpool", "avgpool"):
            first = tokens[0].desc if tokens else "nothing"
            raise _NotInception(f"branch 4 does not start with a max-pool (it starts with {first})")
        if tokens[0].kind == "avgpool":
            raise _NotInception(f"branch 4 pools with {tokens[0].desc}; the fused block max-pools")
        i = 1
    while i < len(tokens):
        t = tokens[i]
        if t.kind != "conv":
            raise _NotInception(f"branch {branch} has an op the fused block does not compute: {t.desc}")
        bn = relu = None
        i += 1
        if i < len(tokens) and tokens[i].kind == "bn":
            bn, i = tokens[i], i + 1
        if i < len(tokens) and tokens[i].kind == "relu":
            relu, i = tokens[i], i + 1
        units.append((t, bn, relu is not None))
    want = 2 if branch in (2, 3) else 1
    if len(units) != want:
        raise _NotInception(
            f"branch {branch} has {len(units)} conv(s); an Inception block has {want} there "
            + ("(1x1 reduce, then KxK)" if want == 2 else "(1x1)")
        )
    return units


def _check_conv(conv: nn.Conv2d, path: str, role: str) -> int:
    """Raise for a conv the fused op cannot compute in ``role`` (``"1x1"`` or ``"KxK"``); return K."""
    kh, kw = conv.kernel_size
    if role == "1x1" and (kh, kw) != (1, 1):
        raise _NotInception(f"{path} has kernel {conv.kernel_size} where the block needs a 1x1 conv")
    if kh != kw or kh % 2 == 0:
        raise _NotInception(f"{path} has kernel {conv.kernel_size}; the fused block needs a square, odd kernel")
    if _pair(conv.stride) != (1, 1):
        raise _NotInception(f"{path} has stride {conv.stride}; the fused block needs stride 1")
    if _pair(conv.dilation) != (1, 1):
        raise _NotInception(f"{path} has dilation {conv.dilation}; the fused block needs dilation 1")
    if conv.groups != 1:
        raise _NotInception(f"{path} has groups={conv.groups}; the fused block needs groups=1")
    pad = conv.padding
    same = pad == "same" or _pair(pad) == (kh // 2, kh // 2) or (kh == 1 and pad == "valid")
    if not same:
        raise _NotInception(f"{path} has padding {pad}; the fused block needs padding {kh // 2} (K//2, 'same')")
    if kh > 1 and conv.padding_mode != "zeros":
        raise _NotInception(f"{path} has padding_mode={conv.padding_mode!r}; the fused block zero-pads")
    return kh


def _check_pool(tok: _Token) -> None:
    kernel, stride, padding, dilation, return_indices = tok.pool
    if (kernel, stride, padding, dilation) != ((3, 3), (1, 1), (1, 1), (1, 1)) or return_indices:
        raise _NotInception(
            f"the pool branch's {tok.desc} has kernel {kernel}, stride {stride}, padding {padding}, dilation "
            f"{dilation}{', return_indices' if return_indices else ''}; the fused block max-pools 3x3, stride 1, "
            "padding 1"
        )


def _analyze(block: nn.Module, graph: fx.Graph) -> Recognized:
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise _NotInception(f"its forward takes {len(inputs)} inputs; an Inception block takes one (x)")
    x = inputs[0]
    output = next(n for n in nodes if n.op == "output")
    result = output.args[0]
    cats = [n for n in nodes if _channel_cat(n) is not None]
    cat = cats[0]
    if result is not cat:
        if isinstance(result, fx.Node):
            raise _NotInception(f"an extra op after the concatenation: {_describe(result, block)}")
        raise _NotInception("it returns more than the concatenation of its branches")
    branches = _channel_cat(cat)
    units, used = [], {x, cat, output}
    for b, end in enumerate(branches, start=1):
        if not isinstance(end, fx.Node):
            raise _NotInception(f"branch {b} of the concatenation is not a tensor computed from x")
        tokens = _branch_tokens(end, x, block, b)
        for t in tokens:
            if t.node in used:
                raise _NotInception(f"branches share an op: {t.desc}")
            used.add(t.node)
        branch_units = _units(tokens, b)
        if b == 4:
            _check_pool(tokens[0])
        units += branch_units
    extra = [n for n in nodes if n not in used and _token(n, block).kind != "identity"]
    if extra:
        raise _NotInception(f"an extra op: {_describe(extra[0], block)}")

    # The modules the units call, and the facts they hold.
    convs = [(block.get_submodule(c.node.target), c.node.target) for c, _, _ in units]
    bns = [(block.get_submodule(bn.node.target), bn.node.target) if bn is not None else (None, None)
           for _, bn, _ in units]
    ks = [_check_conv(conv, path, "KxK" if i in (2, 4) else "1x1") for i, (conv, path) in enumerate(convs)]
    cin = convs[0][0].in_channels
    for i, (conv, path) in enumerate(convs):
        want = convs[i - 1][0].out_channels if i in (2, 4) else cin
        if conv.in_channels != want:
            raise _NotInception(f"{path} reads {conv.in_channels} channels, its input has {want}")
    if len({id(c) for c, _ in convs}) != 6:
        raise _NotInception("one conv module is called twice (weights shared between branches)")
    relus = [r for _, _, r in units]
    if len(set(relus)) != 1:
        with_relu = [convs[i][1] for i, r in enumerate(relus) if r]
        raise _NotInception(f"ReLU follows some convs but not all (only {', '.join(with_relu)})")
    has_bn = [bn is not None for bn, _ in bns]
    if len(set(has_bn)) != 1:
        with_bn = [convs[i][1] for i, b in enumerate(has_bn) if b]
        raise _NotInception(f"BatchNorm follows some convs but not all (only {', '.join(with_bn)})")
    if has_bn[0]:
        if len({id(bn) for bn, _ in bns}) != 6:
            raise _NotInception("one BatchNorm module is called twice (shared between branches)")
        for (bn, path), (conv, _) in zip(bns, convs):
            if bn.num_features != conv.out_channels:
                raise _NotInception(f"{path} has {bn.num_features} features, its conv gives {conv.out_channels}")
        for attr in ("affine", "track_running_stats"):
            if len({getattr(bn, attr) for bn, _ in bns}) != 1:
                raise _NotInception(f"its BatchNorm modules differ in {attr}")
    tensors = [t for conv, _ in convs for t in conv.parameters()]
    if len({t.dtype for t in tensors}) != 1 or len({t.device for t in tensors}) != 1:
        raise _NotInception("its convs' parameters differ in dtype or device")

    # Everything the block holds must be what the units use: fusing keeps exactly those.
    owned = {id(t) for conv, _ in convs for t in conv.parameters()}
    owned |= {id(t) for bn, _ in bns if bn is not None for t in (*bn.parameters(), *bn.buffers())}
    if len(owned) != sum(1 for conv, _ in convs for _ in conv.parameters()) + sum(
            1 for bn, _ in bns if bn is not None for _ in (*bn.parameters(), *bn.buffers())):
        raise _NotInception("its convs or BatchNorms share a parameter or buffer")
    stray = [name for name, t in (*block.named_parameters(), *block.named_buffers()) if id(t) not in owned]
    if stray:
        raise _NotInception(f"it holds {', '.join(stray)}, which its computation does not use")
    hooked = [name or "the block itself" for name, m in block.named_modules()
              if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks]
    if hooked:
        raise _NotInception(f"hooks are registered on {', '.join(hooked)} (a fused block would not call them)")

    c = [conv.out_channels for conv, _ in convs]
    spec = InceptionSpec(cin, c[0], c[1], c[2], c[3], c[4], c[5], kernel_sizes=(ks[2], ks[4]),
                         activation="relu" if relus[0] else None)
    paths = {path for _, path in convs} | {path for _, path in bns if path is not None}
    order = tuple(name for name, _ in block.named_modules() if name in paths)
    return Recognized(spec, tuple(
        Unit(conv, path, bn, bn_path, relu) for (conv, path), (bn, bn_path), relu in zip(convs, bns, relus)
    ), order)


def recognize(block: nn.Module) -> Union[Recognized, Rejected, None]:
    """Read ``block``'s computation: an Inception block, a rejected candidate, or neither.

    Args:
        block: any module (not modified; its forward is traced symbolically, not run).

    Returns:
        :class:`Recognized` when ``block`` computes an Inception block that the fused op
        computes; :class:`Rejected` (with the reason) when it is a candidate that does not (see
        the module docstring); None when it is not a candidate.
    """
    if type(block).forward is nn.Module.forward:
        return None  # a container without a forward (ModuleList, ModuleDict)
    n_convs = sum(isinstance(m, nn.Conv2d) for _, m in block.named_modules(remove_duplicate=False))
    if n_convs < 6:
        return None
    try:
        graph = _Tracer().trace(block)
    except Exception as e:  # noqa: BLE001 -- fx raises many kinds of errors for untraceable code
        if n_convs == 6:
            return Rejected(f"torch.fx cannot trace it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        return None
    nodes = list(graph.nodes)
    if sum(_channel_cat(n) is not None for n in nodes) != 1 or sum(_is_conv(n, block) for n in nodes) != 6:
        return None
    try:
        return _analyze(block, graph)
    except _NotInception as e:
        return Rejected(str(e))


def called_inside(module: nn.Module, blocks: dict) -> dict:
    """Which of ``blocks`` (``{path in module: block}``) ``module`` uses piecemeal.

    ``module`` is traced with the blocks as leaves; a block whose submodule is called directly
    (``self.block.branch1(x)`` rather than ``self.block(x)``) cannot be swapped for a fused one.

    Returns:
        ``{path: the first such call}``; empty when none, or when ``module`` cannot be traced.
    """
    try:
        graph = _Tracer(leaves=blocks.values()).trace(module)
    except Exception:  # noqa: BLE001 -- untraceable code cannot be read; see recognize()
        return {}
    found = {}
    for node in graph.nodes:
        if node.op == "call_module":
            for path in blocks:
                if node.target.startswith(path + ".") and path not in found:
                    found[path] = node.target
    return found
