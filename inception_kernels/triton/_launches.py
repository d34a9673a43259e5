"""Counting kernel launches: the package's Triton launches plus every aten compute op.

Usage::

    with count_launches() as launches:
        y = inception_kernels.fused_inception(x, weights, biases)
    launches.total       # Triton launches + aten ops that launch a kernel
    launches.triton      # Triton launches made through ``_launch``
    launches.aten        # aten compute ops, e.g. a hidden .contiguous() / zeros / cat
    launches.aten_ops    # their names, in order

With ``count_launches(cuda=True)`` (needs a CUDA device) every kernel the device runs inside
the block is also recorded, with ``torch.profiler``: that is how the CUDA C++ backend's
kernels are counted (they are launched from C++, not through :func:`_launch`)::

    with count_launches(cuda=True) as launches:
        y = inception_kernels.fused_inception(x, weights, biases, backend="cuda")
    launches.cuda_kernels  # names of every CUDA kernel, memcpy and memset that ran

Triton launches are counted in :func:`_launch` (every kernel of this package is launched
through it), which also works in the interpreter. Aten ops are counted by a
``TorchDispatchMode``: every op that reaches the dispatcher counts, except views,
allocations without a fill (``empty``, ``empty_strided``, ``new_empty``) and metadata-only
ops -- so an eager PyTorch module counts its convs, pools, activations and cat. This package's
own ``torch.library`` ops (namespace ``inception_kernels``) are not counted themselves: the
Triton launches inside them are. Aten ops that Triton's
interpreter runs internally while executing one of our launches are not counted (they
are part of that launch).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["count_launches", "LaunchCount"]

_NO_KERNEL = {
    "aten::empty",
    "aten::empty_strided",
    "aten::empty_like",
    "aten::new_empty",
    "aten::new_empty_strided",
    "aten::detach",
    "aten::alias",
    "aten::lift_fresh",
    "aten::_local_scalar_dense",
    "aten::is_same_size",
    "aten::sym_size",
    "aten::sym_stride",
    "aten::sym_numel",
    "aten::sym_storage_offset",
    "aten::resize_",
    "aten::set_",
}


@dataclass
class LaunchCount:
    """Launches seen inside one :func:`count_launches` block."""

    triton: int = 0
    aten_ops: list = field(default_factory=list)
    triton_kernels: list = field(default_factory=list)
    cuda_kernels: list = field(default_factory=list)

    @property
    def aten(self) -> int:
        """Aten ops that launch a kernel."""
        return len(self.aten_ops)

    def fused_kernels(self, backend: str) -> list:
        """The kernels of one fused backend: ``triton_kernels`` for ``"triton"``, for ``"cuda"``
        every device kernel (``cuda_kernels``; count with ``cuda=True``)."""
        return self.cuda_kernels if backend == "cuda" else self.triton_kernels

    @property
    def total(self) -> int:
        """Triton launches plus aten kernel-launching ops."""
        return self.triton + self.aten


_OWN_NAMESPACE = "inception_kernels::"
_active: list = []  # open LaunchCount records (nested blocks all count)
_recording: list = []  # open _record_launches lists: launches are recorded, not run
_suspended = [0]  # > 0 while one of our launches runs (interpreter-internal aten ops)


class _AtenCounter(TorchDispatchMode):
    def __init__(self, record: LaunchCount):
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _suspended[0]:
            name = func._schema.name
            # this package's own custom ops count through the _launch calls they make
            if not func.is_view and name not in _NO_KERNEL and not name.startswith(_OWN_NAMESPACE):
                self.record.aten_ops.append(str(func))
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_launches(cuda: bool = False):
    """Count Triton launches of this package and aten compute ops run inside the block.

    Args:
        cuda: also record every kernel the CUDA device runs in the block (``torch.profiler``;
            the device is synchronized at the end of the block). Needs a CUDA device.

    Yields:
        A :class:`LaunchCount`, filled in while the block runs (``cuda_kernels`` when it ends).

    Raises:
        RuntimeError: ``cuda=True`` without a CUDA device.
    """
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("count_launches(cuda=True) needs a CUDA device; torch.cuda.is_available() is False")
    record = LaunchCount()
    _active.append(record)
    try:
        with contextlib.ExitStack() as stack:
            prof = None
            if cuda:
                from torch.profiler import ProfilerActivity, profile

                torch.cuda.synchronize()  # kernels queued before the block are not counted
                prof = stack.enter_context(profile(activities=[ProfilerActivity.CUDA]))
            with _AtenCounter(record):
                yield record
            if prof is not None:
                torch.cuda.synchronize()
        if prof is not None:
            record.cuda_kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    finally:
        _active.remove(record)


@contextlib.contextmanager
def _record_launches():
    """Record, instead of running, every ``_launch`` inside the block (ahead-of-time compile
    of exactly what a launcher would launch, e.g. on 'meta' tensors).

    Yields:
        A list that receives ``(kernel, grid, args, kwargs)`` per launch.
    """
    launches: list = []
    _recording.append(launches)
    try:
        yield launches
    finally:
        _recording.remove(launches)


def _launch(kernel, grid, *args, **kwargs):
    """Launch a Triton ``kernel`` on ``grid`` and count it in every open ``count_launches``.

    Returns:
        Whatever ``kernel[grid](...)`` returns.
    """
    if _recording:
        _recording[-1].append((kernel, grid, args, kwargs))
        return None
    for record in _active:
        record.triton += 1
        record.triton_kernels.append(getattr(kernel, "__name__", None) or getattr(kernel.fn, "__name__", "?"))
    _suspended[0] += 1
    try:
        return kernel[grid](*args, **kwargs)
    finally:
        _suspended[0] -= 1
