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

- ``inception_kernels::fused_inception(x, w1, w3r, w3, w5r, w5, wp, b1?, ..., bp?, k3, k5,
  activation, schedule, save_reduce, backend) -> (y, r3, r5)``: one forward launch.
  ``activation`` is ``"relu"`` or ``"none"``; ``schedule`` (``"one_launch"`` /
  ``"two_launch"``) is Triton's (the CUDA kernels have only ``"one_launch"``); with
  ``save_reduce`` the post-activation reduce outputs ``r3`` / ``r5`` (channels_last) are
  returned for the backward, else two empty ``[0]`` tensors (custom ops cannot return None).
- ``inception_kernels::fused_inception_backward(grad_y, x, y, r3, r5, w1, ..., wp, b1?, ...,
  bp?, k3, k5, activation, needs_input_grad, backend) -> (dx, grads)``: the fused backward
  (Triton: 3 launches; CUDA: at most 3). ``grads`` is one flat buffer holding every needed weight and bias gradient (custom-op
  outputs may not alias each other, so the 12 gradients come back as one tensor and
  :func:`_split_grads` views it); ``dx`` is an empty ``[0]`` tensor when not needed.

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

from . import _backends, _ext, reference
from ._checks import OP_ACTIVATIONS, check_backward_op_args, check_dense, check_inception_args, check_op_args

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
        if not hasattr(torch.ops.inception_kernels, "cuda_fused_inception"):
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
        x, *weights, *biases, k3, k5, activation or "none", "auto", save_reduce, chosen
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


def _output_memory_format(x: Tensor) -> torch.memory_format:
    """y's memory format, as the Triton forward chooses it: channels_last when x is."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# ------------------------------------------------------------------------------------------
# The custom ops: schemas, implementations, fake impls.
#
# Declared with the low-level torch.library API rather than torch.library.custom_op because
# their Autograd kernels are our own (see "Autograd" below); the schemas are written once, here.
# ------------------------------------------------------------------------------------------

_LIB = torch.library.Library("inception_kernels", "FRAGMENT")

_MODULE_ARGS = (
    "Tensor w1, Tensor w3r, Tensor w3, Tensor w5r, Tensor w5, Tensor wp, "
    "Tensor? b1, Tensor? b3r, Tensor? b3, Tensor? b5r, Tensor? b5, Tensor? bp, int k3, int k5, str activation"
)
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


def _check_runnable(backend: str, x: Tensor) -> None:
    """Raise the public API's error when the op's ``backend`` cannot run ``x`` here (e.g. a CPU
    tensor without Triton's interpreter, bf16 in the interpreter, no CUDA extension)."""
    _resolve_backend(backend, x)


def _fused_inception_impl(
    x: Tensor, w1: Tensor, w3r: Tensor, w3: Tensor, w5r: Tensor, w5: Tensor, wp: Tensor,
    b1: Optional[Tensor], b3r: Optional[Tensor], b3: Optional[Tensor],
    b5r: Optional[Tensor], b5: Optional[Tensor], bp: Optional[Tensor],
    k3: int, k5: int, activation: str, schedule: str, save_reduce: bool, backend: str,
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
    weights, biases = (w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp)
    check_op_args(x, weights, biases, k3, k5, activation, schedule, save_reduce, backend)
    _check_runnable(backend, x)
    if backend == "cuda":
        return torch.ops.inception_kernels.cuda_fused_inception(
            x, *weights, *biases, k3, k5, activation, save_reduce
        )
    from .triton.inception_fwd import _inception_forward

    y, r3, r5 = _inception_forward(
        x, weights, biases, (k3, k5), _activation(activation), schedule=schedule, save_reduce=save_reduce,
    )
    if r3 is None:
        r3, r5 = x.new_empty(0), x.new_empty(0)
    return y, r3, r5


def _fused_inception_fake(x, w1, w3r, w3, w5r, w5, wp, b1, b3r, b3, b5r, b5, bp, k3, k5, activation, schedule,
                          save_reduce, backend):
    """Shapes and strides of the forward op's outputs (``torch.compile``, meta tensors)."""
    check_op_args(x, (w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp), k3, k5, activation, schedule,
                  save_reduce, backend)
    n, _, h, w = x.shape
    y = x.new_empty((n, w1.shape[0] + w3.shape[0] + w5.shape[0] + wp.shape[0], h, w)).contiguous(
        memory_format=_output_memory_format(x)
    )
    if not save_reduce:
        return y, x.new_empty(0), x.new_empty(0)
    if backend == "triton":
        from .triton.inception_fwd import _reduce_buffers

        r3, r5 = _reduce_buffers(x, w3r.shape[0], w5r.shape[0])
        return y, r3, r5
    cl = torch.channels_last
    return y, x.new_empty((n, w3r.shape[0], h, w)).contiguous(memory_format=cl), \
        x.new_empty((n, w5r.shape[0], h, w)).contiguous(memory_format=cl)


def _grad_layout(weights: Sequence[Tensor], biases: Sequence[Optional[Tensor]], needs: Sequence[bool]):
    """Where the backward's flat gradient buffer keeps each gradient.

    The layout of ``triton.backward._inception_backward``: the dW of every branch whose
    weight or bias gradient is needed, in weight order, then their db.

    Returns:
        ``(offsets, strides, numel)``: 12 element offsets (dW1..dWp, db1..dbp; None where not
        returned), the dW strides, and the buffer's length.
    """
    from .triton.backward import _dense_strides

    branch = [needs[1 + i] or (needs[7 + i] and biases[i] is not None) for i in range(6)]
    offsets, total = [None] * 12, 0
    for i, w in enumerate(weights):
        if branch[i]:
            offsets[i] = total if needs[1 + i] else None
            total += w.numel()
    for i, w in enumerate(weights):
        if branch[i]:
            offsets[6 + i] = total if needs[7 + i] and biases[i] is not None else None
            total += w.shape[0]
    return offsets, [_dense_strides(w) for w in weights], total


def _split_grads(flat: Tensor, weights, biases, needs) -> tuple[Optional[Tensor], ...]:
    """The 12 gradients ``(dw1, ..., dwp, db1, ..., dbp)`` as views of the flat buffer."""
    offsets, strides, _ = _grad_layout(weights, biases, needs)
    out = []
    for i, off in enumerate(offsets):
        if off is None:
            out.append(None)
        elif i < 6:
            out.append(flat.as_strided(weights[i].shape, strides[i], off))
        else:
            out.append(flat.as_strided((weights[i - 6].shape[0],), (1,), off))
    return tuple(out)


def _fused_inception_backward_impl(
    grad_y: Tensor, x: Tensor, y: Tensor, r3: Tensor, r5: Tensor,
    w1: Tensor, w3r: Tensor, w3: Tensor, w5r: Tensor, w5: Tensor, wp: Tensor,
    b1: Optional[Tensor], b3r: Optional[Tensor], b3: Optional[Tensor],
    b5r: Optional[Tensor], b5: Optional[Tensor], bp: Optional[Tensor],
    k3: int, k5: int, activation: str, needs_input_grad: list[bool], backend: str,
) -> tuple[Tensor, Tensor]:
    """The fused backward op (at most 3 launches).

    Args:
        needs_input_grad: 13 bools for ``(x, w1, ..., wp, b1, ..., bp)``.
        backend: ``"triton"`` or ``"cuda"``.

    Returns:
        ``(dx, grads)``: dx (an empty ``[0]`` tensor when not needed) and the flat gradient
        buffer of :func:`_grad_layout` (empty when no parameter gradient is needed).

    Raises:
        TypeError, ValueError: what ``_checks.check_backward_op_args`` refuses.
        RuntimeError: a backend that cannot run x here.
    """
    weights, biases = (w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp)
    check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad, backend)
    _check_runnable(backend, x)
    if backend == "cuda":
        dx, flat = torch.ops.inception_kernels.cuda_fused_inception_backward(
            grad_y, x, y, r3, r5, *weights, *biases, k3, k5, activation, needs_input_grad
        )
        _, _, total = _grad_layout(weights, biases, needs_input_grad)
        if flat.shape != (total,):
            raise RuntimeError(
                f"fused_inception_backward: the CUDA backward returned a gradient buffer of shape "
                f"{tuple(flat.shape)}, ops._grad_layout expects ({total},)"
            )
        return dx, flat
    from .triton.backward import _inception_backward

    dx, dws, dbs = _inception_backward(
        grad_y, x, y, r3, r5, weights, biases, (k3, k5), _activation(activation), needs_input_grad
    )
    grads = [g for g in (*dws, *dbs) if g is not None]
    if not grads:
        flat = w1.new_empty(0)
    else:
        offsets, _, total = _grad_layout(weights, biases, needs_input_grad)
        storage = grads[0].untyped_storage()
        got = [None if g is None else g.storage_offset() for g in (*dws, *dbs)]
        if (got != offsets or storage.nbytes() != total * grads[0].element_size()
                or any(g.untyped_storage().data_ptr() != storage.data_ptr() for g in grads)):
            raise RuntimeError(
                "fused_inception_backward: the Triton backward's gradient buffer layout changed "
                f"(offsets {got}, expected {offsets}, {storage.nbytes()} bytes for {total} elements); "
                "update ops._grad_layout"
            )
        flat = grads[0].as_strided((total,), (1,), 0)  # the whole buffer (a view: no copy)
    return (dx if dx is not None else x.new_empty(0)), flat


def _fused_inception_backward_fake(grad_y, x, y, r3, r5, w1, w3r, w3, w5r, w5, wp, b1, b3r, b3, b5r, b5, bp,
                                   k3, k5, activation, needs_input_grad, backend):
    """Shapes and strides of the backward op's outputs."""
    weights, biases = (w1, w3r, w3, w5r, w5, wp), (b1, b3r, b3, b5r, b5, bp)
    check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad, backend)
    _, _, total = _grad_layout(weights, biases, needs_input_grad)
    dx = torch.empty_like(x, memory_format=torch.preserve_format) if needs_input_grad[0] else x.new_empty(0)
    return dx, w1.new_empty(total)


# Every device (the implementations dispatch on the backend argument); the fake impls also
# serve meta tensors.
_LIB.impl("fused_inception", _fused_inception_impl, "CompositeExplicitAutograd")
_LIB.impl("fused_inception_backward", _fused_inception_backward_impl, "CompositeExplicitAutograd")
torch.library.register_fake(_FWD, _fused_inception_fake, lib=_LIB)
torch.library.register_fake(_BWD, _fused_inception_backward_fake, lib=_LIB)


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
# ------------------------------------------------------------------------------------------

_NO_FORWARD_AD = (
    "{op} has no forward-mode derivative (torch.func.jvp, jacfwd, torch.autograd.forward_ad); reverse mode "
    "works (backward, create_graph=True, torch.func.grad / vjp / jacrev, vmap); for forward mode use "
    "backend='reference'"
)
_N_FWD_ARGS = 19  # x, 6 weights, 6 biases, k3, k5, activation, schedule, save_reduce, backend
_N_BWD_ARGS = 22  # grad_y, x, y, r3, r5, 6 weights, 6 biases, k3, k5, activation, needs, backend


def _below_autograd(op, args):
    """Run ``op`` on ``args`` past the Autograd key (inside a node's forward). Grad mode is
    switched back on so that a torch.func level below this one records its own node."""
    with torch.enable_grad(), torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _setup_context(ctx, inputs, output):
    x, *params = inputs[:13]
    k3, k5, activation, _, save_reduce, backend = inputs[13:]
    y, r3, r5 = output
    ctx.mark_non_differentiable(r3, r5)
    ctx.set_materialize_grads(False)
    ctx.kernel_args = (k3, k5, activation, save_reduce, backend)
    ctx.save_for_backward(x, y, r3, r5, *params)


def _backward(ctx, grad_y, grad_r3, grad_r5):
    del grad_r3, grad_r5  # non-differentiable outputs
    if grad_y is None:
        return (None,) * _N_FWD_ARGS
    k3, k5, activation, save_reduce, backend = ctx.kernel_args
    if not save_reduce:
        raise RuntimeError(
            "inception_kernels::fused_inception ran with save_reduce=False, so its backward has no r3/r5; "
            "call inception_kernels.fused_inception (it saves them when gradients are needed)"
        )
    x, y, r3, r5, *params = ctx.saved_tensors
    weights, biases = params[:6], params[6:]
    needs = [bool(v) for v in ctx.needs_input_grad[:13]]
    dx, flat = _BWD(grad_y, x, y, r3, r5, *weights, *biases, k3, k5, activation, needs, backend)
    return (dx if needs[0] else None, *_split_grads(flat, weights, biases, needs)) + (None,) * (_N_FWD_ARGS - 13)


class _FusedInceptionNode(torch.autograd.function._SingleLevelFunction):
    """The forward op's autograd node: the fused backward of the forward's backend."""

    @staticmethod
    def forward(*args):
        return _below_autograd(_FWD, args)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


def _backward_setup_context(ctx, inputs, output):
    grad_y, x, _, _, _, *rest = inputs
    params = rest[:12]
    k3, k5, activation, needs, _ = rest[12:]
    ctx.set_materialize_grads(False)
    ctx.kernel_args = (k3, k5, activation, list(needs))
    ctx.save_for_backward(grad_y, x, *params)


def _double_backward(ctx, grad_dx, grad_flat):
    """Gradients of the backward op's outputs ``(dx, flat)`` with respect to ``grad_y``, ``x``
    and the parameters (``y``, ``r3``, ``r5`` only select ReLU masks: zero gradient)."""
    k3, k5, activation, needs = ctx.kernel_args
    grad_y, x, *params = ctx.saved_tensors
    weights, biases = params[:6], params[6:]
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
    return (d_gy, d_x, None, None, None, *d_ws, *with_nones(d_bs)) + (None,) * (_N_BWD_ARGS - 17)


class _FusedInceptionBackwardNode(torch.autograd.function._SingleLevelFunction):
    """The backward op's autograd node (double backward), through the reference."""

    @staticmethod
    def forward(*args):
        return _below_autograd(_BWD, args)

    setup_context = staticmethod(_backward_setup_context)
    backward = staticmethod(_double_backward)


def _autograd_kernel(op, node):
    """The Autograd kernel of ``op``: a ``node`` when a gradient is needed, else straight on.

    It first refuses non-strided tensors (``_checks.check_dense``: nested tensors would not
    reach the implementation's checks, the dispatcher has no nested kernel for the op) and
    forward-mode tangents (the nodes have no jvp; without this check the tangent would be
    dropped silently, since a dual tensor does not require grad).
    """
    from torch._functorch.utils import enable_single_level_autograd_function

    names = [a.name for a in op._schema.arguments]
    tensors = [i for i, a in enumerate(op._schema.arguments) if a.type.isSubtypeOf(torch._C.OptionalType.ofTensor())]

    def kernel(keyset, *args):
        for i in tensors:
            if args[i] is not None:
                check_dense(names[i], args[i])
        if forward_ad._current_level >= 0 and any(  # inside torch.autograd.forward_ad / torch.func.jvp
                args[i] is not None and forward_ad.unpack_dual(args[i]).tangent is not None for i in tensors):
            raise RuntimeError(_NO_FORWARD_AD.format(op=op._schema.name))
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            with enable_single_level_autograd_function():
                return node.apply(*args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    return kernel


_LIB.impl("fused_inception", _autograd_kernel(_FWD, _FusedInceptionNode), "Autograd", with_keyset=True)
_LIB.impl("fused_inception_backward", _autograd_kernel(_BWD, _FusedInceptionBackwardNode), "Autograd",
          with_keyset=True)
