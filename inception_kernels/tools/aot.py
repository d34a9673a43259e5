"""Ahead-of-time compile of the fused Inception kernels for real GPUs, without a GPU.

What is compiled is exactly what the launchers would launch: :func:`forward_launches` and
:func:`backward_launches` run the real launchers (``_inception_forward``,
``_inception_backward``) on 'meta' tensors laid out as :class:`~inception_kernels.FusedInception`
passes them (channels_last activations, weights in ``WEIGHT_MEMORY_FORMAT``), under
:func:`~inception_kernels.triton._config.aot_target` (the GPU's arch and SM count), with
launches recorded instead of run. Every tile shape, constexpr and stride specialization thus
comes from the launcher's own choice. :func:`compile_launch` then mirrors Triton's JIT (same
binder, same specialization of pointers and ints, same options) and calls
``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``.

Under ``TRITON_INTERPRET=1`` ``@triton.jit`` makes interpreted functions that cannot be
compiled: compile in a process without the interpreter (``inception-kernels report`` uses
worker processes for that). This module imports the kernels lazily, inside functions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional

__all__ = ["Plan", "STAGES", "module_inputs", "forward_launches", "backward_launches", "useful_macs",
           "kernel_label", "specialization_key", "compile_launch", "worker_init", "compile_batchnorm_launch"]

STAGES = ("forward", "backward")


@dataclass
class Plan:
    """What one pass of one layer launches on one GPU.

    Attributes:
        stage: ``"forward"`` or ``"backward"``.
        schedule: the forward schedule (``"one_launch"`` / ``"two_launch"``); ``"backward"``.
        reason: why the forward's ``"auto"`` chose the schedule ("" for the backward).
        plan: the launcher's ``ForwardPlan`` / ``BackwardPlan``.
        launches: ``(kernel, grid, args, kwargs)`` per launch, 'meta' tensors as pointers.
        phase_macs: multiply-accumulates the tensor cores execute, per GEMM phase (the plan's
            ``gemm_macs``).
    """

    stage: str
    schedule: str
    reason: str
    plan: object
    launches: list
    phase_macs: dict


def module_inputs(layer: str, dtype: str = "bfloat16", batch: int = 256, device: str = "meta"):
    """The tensors a ``FusedInception`` of GoogLeNet layer ``layer`` passes to the fused op at
    the layer's 224x224 size: x channels_last, weights in ``WEIGHT_MEMORY_FORMAT``, biases.

    Returns:
        ``(spec, x, weights, biases)``.
    """
    import torch

    from ..modules import WEIGHT_MEMORY_FORMAT
    from ..spec import GOOGLENET_INCEPTIONS

    spec = GOOGLENET_INCEPTIONS[layer]
    dt = getattr(torch, dtype)
    s = spec.spatial
    x = torch.empty(batch, spec.in_channels, s, s, device=device, dtype=dt).contiguous(
        memory_format=torch.channels_last)
    weights = [torch.empty(shape, device=device, dtype=dt).contiguous(memory_format=WEIGHT_MEMORY_FORMAT)
               for shape in spec.weight_shapes]
    biases = [torch.empty(shape[0], device=device, dtype=dt) for shape in spec.weight_shapes]
    return spec, x, weights, biases


def _channels(spec) -> tuple:
    return (spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj)


def forward_launches(layer: str, arch: int, *, dtype: str = "bfloat16", batch: int = 256,
                     schedule: str = "auto") -> Plan:
    """The forward's launches for GoogLeNet layer ``layer`` on ``sm_{arch}`` (132 SMs for sm_90,
    108 for sm_80), as the module makes them (``save_reduce`` as in training).

    Args:
        layer: a key of ``GOOGLENET_INCEPTIONS``.
        arch: 80 or 90.
        dtype: torch dtype name.
        batch: batch size.
        schedule: ``"auto"`` (the default the module runs), ``"one_launch"`` or ``"two_launch"``.
    """
    from ..testing import record_launches as _record_launches
    from ..triton._config import aot_target
    from ..triton.inception_fwd import _inception_forward, _plan

    spec, x, weights, biases = module_inputs(layer, dtype, batch)
    sms = 132 if arch >= 90 else 108
    n, _, h, w = x.shape
    with aot_target(arch, sms) as target, _record_launches() as launches:
        plan = _plan(_channels(spec), spec.kernel_sizes, n, h, w, x.dtype, target, schedule)
        _inception_forward(x, weights, biases, spec.kernel_sizes, spec.activation, schedule=schedule,
                           save_reduce=True)
    return Plan("forward", plan.schedule, plan.reason, plan, launches,
                plan.gemm_macs(_channels(spec), spec.kernel_sizes, n * h * w))


def backward_launches(layer: str, arch: int, *, dtype: str = "bfloat16", batch: int = 256) -> Plan:
    """The backward's launches for GoogLeNet layer ``layer`` on ``sm_{arch}``: every gradient
    needed, the saved ``y`` / ``r3`` / ``r5`` laid out as the forward makes them."""
    import torch

    from ..testing import record_launches as _record_launches
    from ..triton._config import aot_target
    from ..triton.backward import _backward_plan, _inception_backward
    from ..triton.inception_fwd import _reduce_buffers

    spec, x, weights, biases = module_inputs(layer, dtype, batch)
    n, _, h, w = x.shape
    y = torch.empty(n, spec.out_channels, h, w, device="meta", dtype=x.dtype).contiguous(
        memory_format=torch.channels_last)
    grad_y = torch.empty_like(y)
    r3, r5 = _reduce_buffers(x, spec.ch3x3red, spec.ch5x5red)
    sms = 132 if arch >= 90 else 108
    with aot_target(arch, sms) as target, _record_launches() as launches:
        plan = _backward_plan(_channels(spec), spec.kernel_sizes, n, h, w, x.dtype, target, True, [True] * 6)
        _inception_backward(grad_y, x, y, r3, r5, weights, biases, spec.kernel_sizes, spec.activation)
    return Plan("backward", "backward", "", plan, launches,
                plan.gemm_macs(_channels(spec), spec.kernel_sizes, n * h * w))


def useful_macs(layer: str, stage: str, batch: int = 256) -> int:
    """Multiply-accumulates of one pass's convolutions, no padding or recompute.

    The forward is the six convs; the backward the reduce convs' input gradients through the
    K x K convs, x's gradient through the four 1x1 convs, and the six weight gradients.
    """
    from ..spec import GOOGLENET_INCEPTIONS

    spec = GOOGLENET_INCEPTIONS[layer]
    cin, c1, c3r, c3, c5r, c5, cp = _channels(spec)
    k3, k5 = spec.kernel_sizes
    nhw = batch * spec.spatial ** 2
    fwd = nhw * (cin * (c1 + c3r + c5r + cp) + k3 * k3 * c3r * c3 + k5 * k5 * c5r * c5)
    if stage == "forward":
        return fwd
    reduce_grad = nhw * (k3 * k3 * c3 * c3r + k5 * k5 * c5 * c5r)
    dx = nhw * cin * (c1 + c3r + c5r + cp)
    return reduce_grad + dx + fwd


def kernel_label(launch) -> str:
    """A file name for a launch's kernel: its function name, with ``_stage<N>`` for the forward
    kernel (one function, specialized per ``STAGE``)."""
    kernel, _grid, _args, kwargs = launch
    name = getattr(getattr(kernel, "fn", kernel), "__name__", "kernel").strip("_")
    return f"{name}_stage{kwargs['STAGE']}" if "STAGE" in kwargs else name


def _spec_value(v, specialize: bool):
    """What Triton specializes an argument on: dtype of a pointer; ==1 / %16 of an int."""
    if hasattr(v, "data_ptr"):
        return ("ptr", str(v.dtype))
    if isinstance(v, bool) or not isinstance(v, int):
        return ("const", repr(v))
    if not specialize:
        return ("int",)
    return ("int", v == 1, v % 16 == 0)


def specialization_key(launch) -> tuple:
    """A hashable key, equal for launches that compile to the same kernel (the kernel, the
    dtype of every pointer, Triton's ``==1`` / ``%16`` specialization of every int, every
    constexpr and launch option)."""
    kernel, _grid, args, kwargs = launch
    fn = getattr(kernel, "fn", kernel)
    names = list(inspect.signature(fn).parameters)
    # JITFunction keeps do_not_specialize; the interpreter's InterpretedFunction its kwargs
    skip = set(getattr(kernel, "do_not_specialize", None) or getattr(kernel, "kwargs", {}).get("do_not_specialize", ()))
    skip |= {names[i] for i in skip if isinstance(i, int)}
    key = [_spec_value(a, names[i] not in skip) for i, a in enumerate(args)]
    key += [(k, repr(v)) for k, v in sorted(kwargs.items())]
    return (fn.__name__, tuple(key))


class _PtrArg:
    """Stands in for a tensor when binding arguments: dtype plus an aligned address."""

    def __init__(self, dtype):
        self.dtype = dtype

    @staticmethod
    def data_ptr():
        return 0


def compile_launch(launch, arch: int):
    """Compile one recorded launch for ``sm_{arch}`` exactly as Triton's JIT would.

    Args:
        launch: ``(kernel, grid, args, kwargs)`` from :func:`forward_launches` /
            :func:`backward_launches`; the kernel must be a ``JITFunction`` (TRITON_INTERPRET
            unset when the kernels were imported).
        arch: compute capability as an int, 80 or 90.

    Returns:
        The ``CompiledKernel`` (``.asm["cubin"]``, ``.asm["ptx"]``, ``.metadata``).

    Raises:
        RuntimeError: the kernel is an interpreted function.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    kernel, _grid, args, kwargs = launch
    if not isinstance(kernel, JITFunction):
        raise RuntimeError(
            f"{kernel!r} is not a JITFunction (TRITON_INTERPRET is set?): ahead-of-time compiles "
            "must run in a process without the interpreter"
        )
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    args = [_PtrArg(a.dtype) if hasattr(a, "data_ptr") else a for a in args]
    kwargs = dict(kwargs, debug=False)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    src = ASTSource(kernel, signature, constexprs, attrs)
    return triton.compile(src, target=target, options=options.__dict__)


def worker_init() -> None:
    """Initializer of a compile worker process: unset ``TRITON_INTERPRET`` before the kernels are
    imported (``@triton.jit`` must make compilable functions)."""
    import os

    os.environ.pop("TRITON_INTERPRET", None)


def launches_of(stage: str, layer: str, arch: int, *, dtype: str = "bfloat16", batch: int = 256,
                schedule: Optional[str] = "auto") -> Plan:
    """:func:`forward_launches` or :func:`backward_launches` by ``stage``."""
    if stage == "forward":
        return forward_launches(layer, arch, dtype=dtype, batch=batch, schedule=schedule or "auto")
    if stage == "backward":
        return backward_launches(layer, arch, dtype=dtype, batch=batch)
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def compile_batchnorm_launch(task) -> dict:
    """Compile launch ``index`` of :func:`inception_kernels.triton.batchnorm_train.launch_plan`
    ``(**plan)`` for ``sm_{arch}`` and read its cubin (run it in a process without
    ``TRITON_INTERPRET``, e.g. a worker started with :func:`worker_init`).

    Args:
        task: ``(index, arch, plan)``.

    Returns:
        dict: kernel, stage, arch, registers, stack_bytes, local_bytes, shared_bytes, num_warps,
        tensor_core (instruction counts), compile_seconds.
    """
    import time

    from ..triton.batchnorm_train import launch_plan
    from .report import facts

    index, arch, plan = task
    launch = launch_plan(**plan)[index]
    t0 = time.perf_counter()
    ck = compile_launch(launch, arch)
    seconds = time.perf_counter() - t0
    cubin = ck.asm["cubin"]
    (name, res), = facts.resource_usage(cubin).items()
    return dict(kernel=name, stage=launch[3].get("STAGE"), arch=f"sm_{arch}", registers=res["registers"],
                stack_bytes=res["stack_bytes"], local_bytes=res["local_bytes"],
                shared_bytes=ck.metadata.shared + res["shared_static_bytes"], num_warps=ck.metadata.num_warps,
                tensor_core=facts.tensor_core_instructions(cubin), compile_seconds=round(seconds, 1))
