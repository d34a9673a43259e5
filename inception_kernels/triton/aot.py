"""Ahead-of-time compile of the fused Inception kernels for real GPUs, without a GPU.

What is compiled is exactly what the launcher would launch: :func:`launch_plan` runs the
real launcher (``_inception_forward``) on 'meta' tensors with launches recorded instead of
run, so every tile shape, constexpr and stride specialization comes from the launcher's own
choice. :func:`compile_launch` then mirrors Triton's JIT (same binder, same specialization
of pointers and ints, same options) and calls ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32))``; the cubin is read with :mod:`inception_kernels._cubin`
(``cuobjdump -res-usage`` for registers / stack, SASS for tensor-core instructions).

Compiles are slow (tens of seconds each on a small CPU), so :func:`compile_plans` dedups
launches by their specialization and compiles the distinct ones in parallel worker
processes. Workers run with ``TRITON_INTERPRET`` unset: under the interpreter
``@triton.jit`` makes interpreted functions that cannot be compiled. For that reason this
module imports the kernels lazily, inside functions.

Command line (prints one line per distinct kernel)::

    python -m inception_kernels.triton.aot [--arch 80 90] [--dtype float16 bfloat16] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["launch_plan", "specialization_key", "compile_launch", "compile_plans", "CASES"]

#: (schedule, save_reduce) combinations the forward launcher supports.
CASES = (("one_launch", False), ("one_launch", True), ("two_launch", False))


def launch_plan(layer: str, dtype: str, schedule: str, save_reduce: bool, *, batch: int = 256,
                channels_last: bool = True, kernel_sizes=(3, 5), activation="relu", bias=True) -> list:
    """The launches ``_inception_forward`` makes for one GoogLeNet layer at its 224x224 size.

    Args:
        layer: key of ``GOOGLENET_INCEPTIONS`` ("3a" ... "5b").
        dtype: torch dtype name, e.g. "float16".
        schedule, save_reduce: as for ``_inception_forward``.
        batch: batch size (sizes are runtime arguments; batch affects no specialization).
        channels_last: memory format of x (weights contiguous, as nn.Conv2d makes them).
        kernel_sizes, activation, bias: module variant.

    Returns:
        list of ``(kernel, grid, args, kwargs)`` with 'meta' tensors as pointer arguments.
    """
    import torch

    from .._launches import _record_launches
    from ..spec import GOOGLENET_INCEPTIONS
    from .inception_fwd import _inception_forward

    spec = GOOGLENET_INCEPTIONS[layer].with_(kernel_sizes=tuple(kernel_sizes), activation=activation)
    dt = getattr(torch, dtype)
    hw = spec.spatial
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty((batch, spec.in_channels, hw, hw), device="meta", dtype=dt, memory_format=fmt)
    weights = [torch.empty(s, device="meta", dtype=dt) for s in spec.weight_shapes]
    biases = [torch.empty(s[0], device="meta", dtype=dt) if bias else None for s in spec.weight_shapes]
    with _record_launches() as launches:
        _inception_forward(x, weights, biases, spec.kernel_sizes, activation,
                           schedule=schedule, save_reduce=save_reduce)
    return launches


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
    """A hashable key equal for launches that compile to the same kernel."""
    kernel, _grid, args, kwargs = launch
    fn = getattr(kernel, "fn", kernel)
    import inspect

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
        launch: ``(kernel, grid, args, kwargs)`` from :func:`launch_plan`; the kernel must be a
            ``JITFunction`` (TRITON_INTERPRET unset when the kernels were imported).
        arch: compute capability as an int, 80 or 90.

    Returns:
        The ``CompiledKernel`` (``.asm["cubin"]``, ``.asm["ptx"]``, ``.metadata``).
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


def _compile_report(task) -> dict:
    """Worker: rebuild the plan, compile one launch, read its cubin."""
    (layer, dtype, schedule, save_reduce, index, arch) = task
    from .. import _cubin

    launch = launch_plan(layer, dtype, schedule, save_reduce)[index]
    t0 = time.perf_counter()
    ck = compile_launch(launch, arch)
    seconds = time.perf_counter() - t0
    cubin = ck.asm["cubin"]
    usage = _cubin.resource_usage(cubin)
    (name, res), = usage.items()
    kwargs = launch[3]
    return dict(
        kernel=name,
        arch=f"sm_{arch}",
        dtype=dtype,
        stage=kwargs.get("STAGE"),
        save_reduce=kwargs.get("SAVE_R"),
        registers=res["registers"],
        stack_bytes=res["stack_bytes"],
        local_bytes=res["local_bytes"],
        shared_bytes=ck.metadata.shared + res["shared_static_bytes"],
        num_warps=ck.metadata.num_warps,
        num_stages=kwargs.get("num_stages"),
        tensor_core=_cubin.tensor_core_instructions(cubin),
        compile_seconds=round(seconds, 1),
    )


def _worker_init():
    os.environ.pop("TRITON_INTERPRET", None)


def compile_plans(layers, dtypes, archs, cases=CASES, workers: int = 2) -> list[dict]:
    """Compile every distinct kernel the launcher picks for ``layers x dtypes x cases`` per arch.

    Args:
        layers: GoogLeNet layer keys.
        dtypes: dtype names ("float16", "bfloat16").
        archs: compute capabilities (80, 90).
        cases: ``(schedule, save_reduce)`` pairs.
        workers: parallel compile processes.

    Returns:
        One report dict per distinct (kernel specialization, arch): registers, stack_bytes,
        shared_bytes, num_warps, tensor_core counts, compile_seconds, and ``layers`` (which
        layer/case launches use it).
    """
    distinct: dict = {}
    for layer in layers:
        for dtype in dtypes:
            for schedule, save_reduce in cases:
                for i, launch in enumerate(launch_plan(layer, dtype, schedule, save_reduce)):
                    key = specialization_key(launch)
                    entry = distinct.setdefault(key, dict(task=(layer, dtype, schedule, save_reduce, i), uses=[]))
                    entry["uses"].append(f"{layer}/{schedule}{'+save' if save_reduce else ''}#{i}")
    tasks = [(e["task"] + (arch,), e["uses"]) for e in distinct.values() for arch in archs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        reports = list(pool.map(_compile_report, [t for t, _ in tasks]))
    for report, (_task, uses) in zip(reports, tasks):
        report["layers"] = uses
    return reports


def main(argv=None) -> int:
    from ..spec import GOOGLENET_INCEPTIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--dtype", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--layer", nargs="+", default=list(GOOGLENET_INCEPTIONS))
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args(argv)
    reports = compile_plans(a.layer, a.dtype, a.arch, workers=a.workers)
    for r in reports:
        print(
            f"{r['arch']} {r['dtype']:9s} stage={r['stage']} save_r={r['save_reduce']!s:5s} "
            f"regs={r['registers']:3d} stack={r['stack_bytes']} shared={r['shared_bytes']} "
            f"warps={r['num_warps']} tc={r['tensor_core']} {r['compile_seconds']}s uses={len(r['layers'])}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
