"""The fused Inception op: argument checks and backend dispatch.

``fused_inception`` computes one whole Inception module (docs/design.md §3) with the semantics
of :func:`inception_kernels.reference.inception`. Backends:

- ``"triton"``: one Triton kernel launch (:mod:`inception_kernels.triton.inception_fwd`), on
  CUDA tensors, or on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``).
- ``"reference"``: the plain-PyTorch oracle.
- ``"cuda"``: the CUDA C++ extension ``inception_kernels._C`` (one forward launch, at most
  three backward launches), on CUDA tensors; needs the extension built (``setup.py``) and a
  CUDA device. fp16 / bf16 run on tensor cores; fp32 is exact fp32 (SIMT, never TF32); fp64
  works.
- ``"auto"``: ``"triton"`` on CUDA tensors and on CPU tensors under the interpreter,
  else ``"reference"``; ``"cuda"`` only where a committed GPU run measured the CUDA kernels
  correct and faster than Triton for the call's device, dtype, module shape, input size and
  layout (the table :mod:`inception_kernels._measured`, empty until a GPU run is committed;
  :func:`inception_kernels._backends.auto_picks_cuda`).

Both fused backends go through the same two ``torch.library`` custom ops (namespace
``inception_kernels``), so ``torch.compile(fullgraph=True)`` traces them without graph breaks
and autograd works; their last argument ``backend`` (``"triton"`` or ``"cuda"``) picks the
kernels:

- ``inception_kernels::fused_inception(x, weights, biases, k3, k5, activation, schedule,
  save_reduce, backend) -> (y, r3, r5)``: one or two forward launches. ``weights`` is the list
  ``[w1, w3r, w3, w5r, w5, wp]`` (``Tensor[]``), ``biases`` ``[b1, ..., bp]`` with None for a
  missing bias (``Tensor?[]``).
  ``activation`` is ``"relu"`` or ``"none"``; ``schedule`` (``"auto"``, ``"one_launch"`` /
  ``"two_launch"``) picks the forward's launches on both backends; with
  ``save_reduce`` the post-activation reduce outputs ``r3`` / ``r5`` (channels_last) are
  returned for the backward, else two empty ``[0]`` tensors (custom ops cannot return None).
- ``inception_kernels::fused_inception_backward(grad_y, x, y, r3, r5, weights, biases, k3, k5,
  activation, needs_input_grad, backend) -> (dx, grads)``: the fused backward (Triton: 3
  launches; CUDA: at most 3). ``grads`` is one flat buffer holding every needed weight and bias
  gradient (custom-op outputs may not alias each other, so the 12 gradients come back as one
  tensor laid out by :func:`inception_kernels._layout.grad_layout`, and :func:`_split_grads`
  views it); ``dx`` is an empty ``[0]`` tensor when not needed.

Both ops check their arguments, in the op and in its fake impl, with the public wrapper's checks
(``_checks.check_op_args`` / ``check_backward_op_args``), and refuse a backend that cannot run
x here with the wrapper's message.

Autograd: the forward op's node saves ``x``, ``y``, ``r3``, ``r5`` and the parameters (no other
activations) and the backend, so the backward runs on the forward's backend; the backward op's
node (double backward, ``create_graph=True``) differentiates the reference's first-order
gradients. The nodes are single-level autograd Functions applied by our own Autograd kernels
(not ``register_autograd``, whose generated Function torch.func refuses), so ``torch.func.grad``
/ ``vjp`` / ``vmap`` work over the ops; forward mode raises. The CUDA backend's ops
``inception_kernels::cuda_fused_inception`` / ``cuda_fused_inception_backward`` (registered by
the extension, CUDA and Meta kernels) are called inside these ops' implementations. The ops are
plain Python ``torch.library`` ops with ``register_fake`` rather than ``triton_op`` because only
the former compiles on CPU tensors under Triton's interpreter (docs/design.md §6), which is how
this machine tests it.

Autocast: under ``torch.autocast`` for x's device type, :func:`fused_inception` casts x and
the parameters to the autocast dtype first (as ``F.conv2d`` does), in the Python wrapper
rather than by ``torch.library.register_autocast``, which fixes one dtype per device and so
cannot follow fp16 *and* bf16 autocast. Gradients flow back through the casts in fp32.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.autograd import forward_ad

from . import _backends, _ext, _layout, reference
from ._layout import grad_layout, output_memory_format
from ._checks import (
    BIAS_NAMES, OP_ACTIVATIONS, WEIGHT_NAMES, check_backward_op_args, check_dense, check_inception_args, check_op_args,
    cuda_two_launch,
)

__all__ = ["fused_inception", "BACKEND_CHOICES"]

#: Values of ``fused_inception(..., backend=...)``.
BACKEND_CHOICES = ("auto", "triton", "cuda", "reference")


def _resolve_backend(backend: str, x: torch.Tensor, spec=None) -> str:
    """The backend that runs ``x`` for a requested ``backend``.

    Args:
        backend: one of :data:`BACKEND_CHOICES`.
        x: the input.
        spec: the module's InceptionSpec, which ``"auto"`` looks up in the measured table.

    Returns:
        ``"triton"``, ``"cuda"`` or ``"reference"``. ``"auto"`` resolves to ``"cuda"`` only
        where :func:`_backends.auto_picks_cuda` says so (measured faster and correct).

    Meta tensors resolve ``"auto"`` to ``"reference"`` and every other backend to itself (the
    fused ops' fake impls compute their shapes). On a CPU tensor with ``TRITON_INTERPRET=1`` set
    only after the Triton kernels were defined, ``"auto"`` warns and resolves to
    ``"reference"``, and ``"triton"`` raises (see ``_backends.interpreter_mismatch``).

    Raises:
        ValueError: an unknown backend.
        TypeError: ``"triton"`` with bfloat16 in Triton's interpreter.
        RuntimeError: ``"triton"`` or ``"cuda"`` where it cannot run x (the message says why:
            for ``"cuda"``, the extension's status, x not being a CUDA tensor, or a build
            without the fused ops).
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if x.device.type == "meta":
        # Shape inference: the fused ops' fake impls serve meta tensors on any machine.
        return "reference" if backend == "auto" else backend
    interpreting = x.device.type == "cpu" and _backends.interpreter_enabled()
    # Triton's interpreter multiplies the raw bits of bfloat16 operands in tl.dot (docs/design.md §6):
    # its bf16 results would be silently wrong, so bf16 never runs there.
    interpretable = interpreting and x.dtype != torch.bfloat16
    if backend == "auto" and _backends.auto_picks_cuda(x, spec):
        return "cuda"
    if backend == "auto":
        if x.device.type == "cuda" or interpretable:
            return "triton"
        mismatch = _backends.interpreter_mismatch() if x.device.type == "cpu" else None
        if mismatch is not None:
            warnings.warn(f"backend='auto' runs the plain-PyTorch reference on this CPU tensor: {mismatch}",
                          RuntimeWarning, stacklevel=3)
        return "reference"
    if backend == "triton":
        if x.device.type == "cuda" or interpretable:
            return "triton"
        if interpreting:
            raise TypeError(
                "backend='triton' cannot run bfloat16 in Triton's interpreter (its bf16 tl.dot is wrong); "
                "run bf16 on a CUDA device, or use backend='auto' or 'reference' on the CPU"
            )
        mismatch = _backends.interpreter_mismatch() if x.device.type == "cpu" else None
        if mismatch is not None:
            raise RuntimeError(f"backend='triton' cannot run a CPU tensor here: {mismatch} "
                               "(or use backend='auto' or 'reference')")
        if x.device.type == "cpu":
            raise RuntimeError(
                "backend='triton' needs a CUDA tensor, or TRITON_INTERPRET=1 set before inception_kernels "
                "is imported to run the Triton kernels on the CPU; x is on cpu and the interpreter is off "
                "(use backend='auto' or 'reference')"
            )
        raise RuntimeError(f"backend='triton' needs a CUDA tensor (or CPU under TRITON_INTERPRET=1), x is on {x.device}")
    if backend == "cuda":
        status = _backends.cuda_status()
        if status.detail.get("state") != "loaded":  # not built, or not loadable here
            raise RuntimeError(
                f"backend='cuda' needs the CUDA extension inception_kernels._C: {status.reason} "
                "(use backend='triton' or 'reference')"
            )
        if x.device.type != "cuda":
            why = "" if status.available else f"; {status.reason}"
            raise RuntimeError(
                f"backend='cuda' needs a CUDA tensor, x is on {x.device}{why} (use backend='triton' or 'reference')"
            )
        if not _ext.fused_kernels_registered():
            raise RuntimeError(
                "backend='cuda': the loaded CUDA extension has no inception_kernels::cuda_fused_inception op "
                f"(built from older sources); {_ext._REBUILD}"
            )
        return "cuda"
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
        ``[N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]`` in x's dtype (the autocast dtype under
        ``torch.autocast``); channels_last when x is channels_last, else contiguous NCHW.
        fp16/bf16 accumulate in fp32; fp32 on CUDA follows ``torch.backends.cudnn.allow_tf32``
        on the Triton backend and is exact fp32 (no TF32) on the CUDA backend.
        Differentiable on every backend: with grad mode on and an input that requires grad,
        the fused forward also saves ``r3`` / ``r5`` and the backward is the fused kernel set
        of the same backend (at most 3 launches).

    Raises:
        TypeError, ValueError: inconsistent arguments (see ``check_inception_args``) or an
            unknown backend.
        RuntimeError: ``backend="triton"`` where Triton cannot run x; ``backend="cuda"``
            without the built extension, or on a tensor that is not on a CUDA device.
    """
    x, weights, biases = _autocast_args(x, weights, biases)
    spec, weights, biases = check_inception_args(x, weights, biases, kernel_sizes, activation)
    chosen = _resolve_backend(backend, x, spec)
    if chosen == "reference":
        return reference.inception(x, weights, biases, kernel_sizes=spec.kernel_sizes, activation=activation)
    tensors = (x, *weights, *(b for b in biases if b is not None))
    save_reduce = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    k3, k5 = spec.kernel_sizes
    y, _, _ = torch.ops.inception_kernels.fused_inception(
        x, list(weights), list(biases), k3, k5, activation or "none", "auto", save_reduce, chosen
    )
    return y


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False for a device without autocast (meta, ...).
    (A try rather than ``torch.amp.is_autocast_available``, which torch 2.11's Dynamo cannot trace.)"""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # "unknown device type for autocast"
        return False


def _autocast_args(x, weights, biases):
    """Cast x and the parameters to the autocast dtype when autocast is on for x's device
    (floating tensors except fp64, like autocast's own casts for ``F.conv2d``). Devices without
    autocast (meta, ...) are left alone."""
    if (not isinstance(x, torch.Tensor) or not isinstance(weights, (list, tuple))
            or not isinstance(biases, (list, tuple, type(None))) or not _autocast_enabled(x.device.type)):
        return x, weights, biases  # (malformed arguments are left to check_inception_args)
    dtype = torch.get_autocast_dtype(x.device.type)

    def cast(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64:
            return t.to(dtype)
        return t

    return cast(x), [cast(w) for w in weights], None if biases is None else [cast(b) for b in biases]


def _activation(name: str) -> Optional[str]:
    """The op schema's activation string ("relu" / "none") as the launchers take it."""
    return OP_ACTIVATIONS[name]


# ------------------------------------------------------------------------------------------
# The custom ops: schemas, implementations, fake impls.
#
# Declared with the low-level torch.library API rather than torch.library.custom_op because
# their Autograd kernels are our own (see "Autograd" below); the schemas are written once, here.
# A module's parameters travel as two lists, ``Tensor[] weights`` (w1, w3r, w3, w5r, w5, wp) and
# ``Tensor?[] biases`` (b1, ..., bp; None for a missing bias); ``_checks`` refuses other lengths.
# ------------------------------------------------------------------------------------------

_LIB = torch.library.Library("inception_kernels", "FRAGMENT")

_MODULE_ARGS = "Tensor[] weights, Tensor?[] biases, int k3, int k5, str activation"
_LIB.define(
    f"fused_inception(Tensor x, {_MODULE_ARGS}, str schedule, bool save_reduce, str backend) "
    "-> (Tensor, Tensor, Tensor)",
    tags=(torch.Tag.pt2_compliant_tag,),
)
_LIB.define(
    f"fused_inception_backward(Tensor grad_y, Tensor x, Tensor y, Tensor r3, Tensor r5, {_MODULE_ARGS}, "
    "bool[] needs_input_grad, str backend) -> (Tensor, Tensor)",
    tags=(torch.Tag.pt2_compliant_tag,),
)
_FWD = torch.ops.inception_kernels.fused_inception.default
_BWD = torch.ops.inception_kernels.fused_inception_backward.default

# The CUDA extension's ops: their schemas and fakes are here, csrc/ops.cpp registers only their
# kernels (TORCH_LIBRARY_IMPL). The fused pair is what the two ops above run for backend="cuda";
# the contracts both backends share come from _layout as arguments (y's memory format, the flat
# gradient layout, the weight-gradient split rule), so the C++ code holds no copy of them.
_LIB.define("maxpool3x3_s1(Tensor x) -> Tensor")
_LIB.define(f"cuda_fused_inception(Tensor x, {_MODULE_ARGS}, bool save_reduce, bool two_launch, MemoryFormat y_format) "
            "-> (Tensor, Tensor, Tensor)")
_LIB.define(f"cuda_fused_inception_backward(Tensor grad_y, Tensor x, Tensor y, Tensor r3, Tensor r5, {_MODULE_ARGS}, "
            "bool need_dx, int[] grad_layout, int[] wgrad_split) -> (Tensor, Tensor)")
_LIB.define("cuda_fused_inception_plan(int n, int h, int w, int c3r, int k3, int c5r, int k5, ScalarType dtype, "
            "int smem_limit, int cc=90) -> int[]")


def _check_runnable(backend: str, x: Tensor) -> None:
    """Raise the public API's error when the op's ``backend`` cannot run ``x`` here (e.g. a CPU
    tensor without Triton's interpreter, bf16 in the interpreter, no CUDA extension)."""
    _resolve_backend(backend, x)


def _fused_inception_impl(
    x: Tensor, weights: list[Tensor], biases: list[Optional[Tensor]], k3: int, k5: int, activation: str,
    schedule: str, save_reduce: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """The fused forward op (see the module docstring for the schema).

    Args:
        backend: ``"triton"`` or ``"cuda"``.

    Returns:
        ``(y, r3, r5)``; ``r3`` / ``r5`` are empty ``[0]`` tensors unless ``save_reduce``.

    Raises:
        TypeError, ValueError: what ``_checks.check_op_args`` refuses.
        RuntimeError: a backend that cannot run x here (as ``fused_inception`` says it).
    """
    check_op_args(x, weights, biases, k3, k5, activation, schedule, save_reduce, backend)
    _check_runnable(backend, x)
    if backend == "cuda":
        return torch.ops.inception_kernels.cuda_fused_inception(
            x, weights, biases, k3, k5, activation, save_reduce, cuda_two_launch(schedule, save_reduce),
            output_memory_format(x)
        )
    from .triton.inception_fwd import _inception_forward

    y, r3, r5 = _inception_forward(
        x, weights, biases, (k3, k5), _activation(activation), schedule=schedule, save_reduce=save_reduce,
    )
    if r3 is None:
        r3, r5 = x.new_empty(0), x.new_empty(0)
    return y, r3, r5


def _forward_outputs(x: Tensor, weights, save_reduce: bool, backend: str,
                     y_format: Optional[torch.memory_format] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Empty ``(y, r3, r5)`` as the forward op returns them on ``backend``: y in ``y_format``
    (None: :func:`_layout.output_memory_format`), r3 / r5 channels_last (Triton's with a padded
    channel stride) or empty ``[0]`` tensors without ``save_reduce``."""
    n, _, h, w = x.shape
    c1, c3r, c3, c5r, c5, cp = (int(wt.shape[0]) for wt in weights)
    y_format = output_memory_format(x) if y_format is None else y_format
    y = x.new_empty((n, c1 + c3 + c5 + cp, h, w)).contiguous(memory_format=y_format)
    if not save_reduce:
        return y, x.new_empty(0), x.new_empty(0)
    if backend == "triton":
        from .triton.inception_fwd import _reduce_buffers

        r3, r5 = _reduce_buffers(x, c3r, c5r)
        return y, r3, r5
    cl = torch.channels_last
    return y, x.new_empty((n, c3r, h, w)).contiguous(memory_format=cl), \
        x.new_empty((n, c5r, h, w)).contiguous(memory_format=cl)


def _fused_inception_fake(x, weights, biases, k3, k5, activation, schedule, save_reduce, backend):
    """Shapes and strides of the forward op's outputs (``torch.compile``, meta tensors)."""
    check_op_args(x, weights, biases, k3, k5, activation, schedule, save_reduce, backend)
    return _forward_outputs(x, weights, save_reduce, backend)


def _split_grads(flat: Tensor, weights, biases, needs) -> tuple[Optional[Tensor], ...]:
    """The 12 gradients ``(dw1, ..., dwp, db1, ..., dbp)`` as views of the flat buffer."""
    return grad_layout(weights, biases, needs).views(flat, weights)


def _fused_inception_backward_impl(
    grad_y: Tensor, x: Tensor, y: Tensor, r3: Tensor, r5: Tensor,
    weights: list[Tensor], biases: list[Optional[Tensor]], k3: int, k5: int, activation: str,
    needs_input_grad: list[bool], backend: str,
) -> tuple[Tensor, Tensor]:
    """The fused backward op (at most 3 launches).

    Args:
        needs_input_grad: 13 bools for ``(x, w1, ..., wp, b1, ..., bp)``.
        backend: ``"triton"`` or ``"cuda"``.

    Returns:
        ``(dx, grads)``: dx (an empty ``[0]`` tensor when not needed) and the flat gradient
        buffer of ``_layout.grad_layout`` (empty when no parameter gradient is needed).

    Raises:
        TypeError, ValueError: what ``_checks.check_backward_op_args`` refuses.
        RuntimeError: a backend that cannot run x here.
    """
    check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad, backend)
    _check_runnable(backend, x)
    if backend == "cuda":
        return torch.ops.inception_kernels.cuda_fused_inception_backward(
            grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad[0],
            grad_layout(weights, biases, needs_input_grad).as_ints(), _layout.WGRAD_SPLIT.as_ints(),
        )
    from .triton.backward import _inception_backward_flat

    dx, flat = _inception_backward_flat(
        grad_y, x, y, r3, r5, weights, biases, (k3, k5), _activation(activation), needs_input_grad
    )
    return (dx if dx is not None else x.new_empty(0)), flat


def _backward_outputs(x: Tensor, weights, biases, needs_input_grad) -> tuple[Tensor, Tensor]:
    """Empty ``(dx, flat)`` as the backward op returns them: dx like x (``[0]`` when not
    needed), the flat buffer of ``_layout.grad_layout`` in the weights' dtype."""
    numel = grad_layout(weights, biases, needs_input_grad).numel
    dx = torch.empty_like(x, memory_format=torch.preserve_format) if needs_input_grad[0] else x.new_empty(0)
    return dx, weights[0].new_empty(numel)


def _fused_inception_backward_fake(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad,
                                   backend):
    """Shapes and strides of the backward op's outputs."""
    check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad, backend)
    return _backward_outputs(x, weights, biases, needs_input_grad)


def _cuda_forward_fake(x, weights, biases, k3, k5, activation, save_reduce, two_launch, y_format):
    """Shapes and strides of ``cuda_fused_inception``'s outputs, after the ops' one check
    (``two_launch`` changes the launches, not the outputs)."""
    del two_launch
    check_op_args(x, weights, biases, k3, k5, activation, "auto", save_reduce, "cuda")
    return _forward_outputs(x, weights, save_reduce, "cuda", y_format)


def _cuda_backward_fake(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, need_dx, layout, split):
    """Shapes and strides of ``cuda_fused_inception_backward``'s outputs: dx like x (``[0]``
    without ``need_dx``), the flat buffer of ``layout[0]`` elements (``GradLayout.as_ints``)."""
    del split
    needs = [bool(need_dx)] + [False] * 12
    check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs, "cuda")
    dx = torch.empty_like(x, memory_format=torch.preserve_format) if need_dx else x.new_empty(0)
    return dx, weights[0].new_empty(layout[0])


def _maxpool_fake(x):
    """``maxpool3x3_s1``'s output: x's shape and dtype in x's suggested memory format (as the
    CUDA kernel's ``suggest_memory_format``)."""
    if x.dim() != 4:
        raise ValueError(f"maxpool3x3_s1: x must be 4-D [N, C, H, W], got {x.dim()}-D with shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"maxpool3x3_s1: x must be float32, float16 or bfloat16, got {x.dtype}")
    from torch._prims_common import suggest_memory_format

    return torch.empty_like(x, memory_format=suggest_memory_format(x))


# Every device (the implementations dispatch on the backend argument); the fake impls also
# serve meta tensors.
_LIB.impl("fused_inception", _fused_inception_impl, "CompositeExplicitAutograd")
_LIB.impl("fused_inception_backward", _fused_inception_backward_impl, "CompositeExplicitAutograd")
torch.library.register_fake(_FWD, _fused_inception_fake, lib=_LIB)
torch.library.register_fake(_BWD, _fused_inception_backward_fake, lib=_LIB)
torch.library.register_fake("inception_kernels::cuda_fused_inception", _cuda_forward_fake, lib=_LIB)
torch.library.register_fake("inception_kernels::cuda_fused_inception_backward", _cuda_backward_fake, lib=_LIB)
torch.library.register_fake("inception_kernels::maxpool3x3_s1", _maxpool_fake, lib=_LIB)


# ------------------------------------------------------------------------------------------
# Autograd
#
# The forward op's backward is the backward op (the fused kernels of the forward's backend);
# the backward op's backward (double backward, create_graph=True) differentiates the
# reference's first-order gradients (``torch.func.vjp`` of ``reference.inception``): exact
# and differentiable again, at the reference's speed.
#
# Why not ``register_autograd``: the autograd.Function it generates has no setup_context, so
# torch.func (grad, vjp, jacrev) refuses it (pytorch/pytorch#170834, open in torch 2.11 and
# 2.14). Our Autograd kernels apply single-level autograd Functions instead -- the mechanism
# functorch itself uses for a node at one transform level -- so the same nodes serve eager
# autograd and every torch.func level.
#
# An autograd Function tracks only the tensors among its top-level arguments, so a node takes
# the op's arguments with the tensor lists spread out (``_FlatArgs``).
# ------------------------------------------------------------------------------------------

_NO_FORWARD_AD = (
    "{op} has no forward-mode derivative (torch.func.jvp, jacfwd, torch.autograd.forward_ad); reverse mode "
    "works (backward, create_graph=True, torch.func.grad / vjp / jacrev, vmap); for forward mode use "
    "backend='reference'"
)


class _FlatArgs:
    """An op's arguments with each tensor-list argument (``Tensor[]``, ``Tensor?[]``) spread
    out, and back: ``flatten(args) -> (lengths, flat)``, ``unflatten(lengths, flat) -> args``."""

    def __init__(self, op):
        tensor = torch._C.OptionalType.ofTensor()
        self.arguments = op._schema.arguments
        self.lists = frozenset(i for i, a in enumerate(self.arguments)
                               if isinstance(a.type, torch._C.ListType) and a.type.getElementType().isSubtypeOf(tensor))
        self.tensors = frozenset(i for i, a in enumerate(self.arguments) if a.type.isSubtypeOf(tensor))

    def flatten(self, args) -> tuple[tuple[int, ...], list]:
        lengths, flat = [], []
        for i, a in enumerate(args):
            if i in self.lists:
                lengths.append(len(a))
                flat.extend(a)
            else:
                flat.append(a)
        return tuple(lengths), flat

    def unflatten(self, lengths, flat) -> list:
        args, it, sizes = [], iter(flat), iter(lengths)
        for i in range(len(flat) - sum(lengths) + len(lengths)):
            args.append([next(it) for _ in range(next(sizes))] if i in self.lists else next(it))
        return args

    def named_tensors(self, args):
        """``(name, tensor)`` of every tensor argument, list elements included (None skipped)."""
        for i, a in enumerate(args):
            name = self.arguments[i].name
            if i in self.lists:
                names = _LIST_NAMES.get(name, ())
                yield from ((names[j] if j < len(names) else f"{name}[{j}]", t) for j, t in enumerate(a)
                            if t is not None)
            elif i in self.tensors and a is not None:
                yield name, a


#: How errors name the elements of the tensor-list arguments.
_LIST_NAMES = {"weights": WEIGHT_NAMES, "biases": BIAS_NAMES}
_FWD_ARGS = _FlatArgs(_FWD)
_BWD_ARGS = _FlatArgs(_BWD)


def _below_autograd(op, args):
    """Run ``op`` on ``args`` past the Autograd key (inside a node's forward). Grad mode is
    switched back on so that a torch.func level below this one records its own node."""
    with torch.enable_grad(), torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _setup_context(ctx, inputs, output):
    x, weights, biases, k3, k5, activation, _, save_reduce, backend = _FWD_ARGS.unflatten(inputs[0], inputs[1:])
    y, r3, r5 = output
    ctx.mark_non_differentiable(r3, r5)
    ctx.set_materialize_grads(False)
    ctx.kernel_args = (k3, k5, activation, save_reduce, backend, len(weights), len(inputs))
    ctx.save_for_backward(x, y, r3, r5, *weights, *biases)


def _backward(ctx, grad_y, grad_r3, grad_r5):
    del grad_r3, grad_r5  # non-differentiable outputs
    k3, k5, activation, save_reduce, backend, nw, n_inputs = ctx.kernel_args
    if grad_y is None:
        return (None,) * n_inputs
    if not save_reduce:
        raise RuntimeError(
            "inception_kernels::fused_inception ran with save_reduce=False, so its backward has no r3/r5; "
            "call inception_kernels.fused_inception (it saves them when gradients are needed)"
        )
    x, y, r3, r5, *params = ctx.saved_tensors
    weights, biases = params[:nw], params[nw:]
    # inputs: (lengths, x, *weights, *biases, k3, ...): the flags of x and the parameters
    needs = [bool(v) for v in ctx.needs_input_grad[1:2 + len(params)]]
    dx, flat = _BWD(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs, backend)
    grads = (dx if needs[0] else None, *_split_grads(flat, weights, biases, needs))
    return (None, *grads) + (None,) * (n_inputs - 1 - len(grads))


class _FusedInceptionNode(torch.autograd.function._SingleLevelFunction):
    """The forward op's autograd node: the fused backward of the forward's backend."""

    @staticmethod
    def forward(lengths, *flat):
        return _below_autograd(_FWD, _FWD_ARGS.unflatten(lengths, flat))

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


def _backward_setup_context(ctx, inputs, output):
    grad_y, x, _, _, _, weights, biases, k3, k5, activation, needs, _ = _BWD_ARGS.unflatten(inputs[0], inputs[1:])
    ctx.set_materialize_grads(False)
    ctx.kernel_args = (k3, k5, activation, list(needs), len(weights), len(inputs))
    ctx.save_for_backward(grad_y, x, *weights, *biases)


def _double_backward(ctx, grad_dx, grad_flat):
    """Gradients of the backward op's outputs ``(dx, flat)`` with respect to ``grad_y``, ``x``
    and the parameters (``y``, ``r3``, ``r5`` only select ReLU masks: zero gradient)."""
    k3, k5, activation, needs, nw, n_inputs = ctx.kernel_args
    grad_y, x, *params = ctx.saved_tensors
    weights, biases = params[:nw], params[nw:]
    has_bias = [b is not None for b in biases]
    act = _activation(activation)

    def with_nones(present):  # the six biases from the present ones
        it = iter(present)
        return [next(it) if h else None for h in has_bias]

    def reference_grads(gy, x, ws, bs_present):  # (dx, dws, dbs_present) of the reference
        def module(x, ws, bs_present):
            return reference.inception(x, ws, with_nones(bs_present), kernel_sizes=(k3, k5), activation=act)

        return torch.func.vjp(module, x, ws, bs_present)[1](gy)

    _, vjp = torch.func.vjp(reference_grads, grad_y, x, list(weights), [b for b in biases if b is not None])
    split = _split_grads(grad_flat, weights, biases, needs) if grad_flat is not None else (None,) * 12
    cot_dx = grad_dx if grad_dx is not None and needs[0] else torch.zeros_like(x)
    cot_w = [g if g is not None else torch.zeros_like(w) for g, w in zip(split[:6], weights)]
    cot_b = [g if g is not None else torch.zeros_like(b) for g, b in zip(split[6:], biases) if b is not None]
    d_gy, d_x, d_ws, d_bs = vjp((cot_dx, cot_w, cot_b))
    # inputs: (lengths, grad_y, x, y, r3, r5, *weights, *biases, k3, ...)
    grads = (d_gy, d_x, None, None, None, *d_ws, *with_nones(d_bs))
    return (None, *grads) + (None,) * (n_inputs - 1 - len(grads))


class _FusedInceptionBackwardNode(torch.autograd.function._SingleLevelFunction):
    """The backward op's autograd node (double backward), through the reference."""

    @staticmethod
    def forward(lengths, *flat):
        return _below_autograd(_BWD, _BWD_ARGS.unflatten(lengths, flat))

    setup_context = staticmethod(_backward_setup_context)
    backward = staticmethod(_double_backward)


def _autograd_kernel(op, node, flat_args: _FlatArgs):
    """The Autograd kernel of ``op``: a ``node`` when a gradient is needed, else straight on.

    It first refuses non-strided tensors (``_checks.check_dense``: nested tensors would not
    reach the implementation's checks, the dispatcher has no nested kernel for the op) and
    forward-mode tangents (the nodes have no jvp; without this check the tangent would be
    dropped silently, since a dual tensor does not require grad).
    """
    from torch._functorch.utils import enable_single_level_autograd_function

    def kernel(keyset, *args):
        tensors = list(flat_args.named_tensors(args))
        for name, t in tensors:
            check_dense(name, t)
        if forward_ad._current_level >= 0 and any(  # inside torch.autograd.forward_ad / torch.func.jvp
                forward_ad.unpack_dual(t).tangent is not None for _, t in tensors):
            raise RuntimeError(_NO_FORWARD_AD.format(op=op._schema.name))
        if torch.is_grad_enabled() and any(t.requires_grad for _, t in tensors):
            lengths, flat = flat_args.flatten(args)
            with enable_single_level_autograd_function():
                return node.apply(lengths, *flat)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    return kernel


def _vmap_by_loop(op):
    """A vmap rule of ``op`` that runs it once per sample and stacks the outputs along dim 0:
    what PyTorch's own for-loop fallback does for other ops, which it refuses for an op with a
    tensor-list argument ("We could not generate a fallback")."""

    def rule(info, in_dims, *args):
        def sample(a, dim, i):  # argument a of sample i (in_dims mirrors the arguments, lists included)
            if isinstance(a, (list, tuple)):
                return [sample(t, d, i) for t, d in zip(a, dim)]
            return a if dim is None else a.select(dim, i)

        outs = [op(*[sample(a, d, i) for a, d in zip(args, in_dims)]) for i in range(info.batch_size)]
        return tuple(torch.stack(list(o)) for o in zip(*outs)), (0,) * len(outs[0])

    return rule


torch.library.register_vmap("inception_kernels::fused_inception", _vmap_by_loop(_FWD), lib=_LIB)
torch.library.register_vmap("inception_kernels::fused_inception_backward", _vmap_by_loop(_BWD), lib=_LIB)
_LIB.impl("fused_inception", _autograd_kernel(_FWD, _FusedInceptionNode, _FWD_ARGS), "Autograd", with_keyset=True)
_LIB.impl("fused_inception_backward", _autograd_kernel(_BWD, _FusedInceptionBackwardNode, _BWD_ARGS), "Autograd",
          with_keyset=True)
