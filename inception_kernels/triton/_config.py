"""Where the Triton kernels run and how they are tiled: the one config module of the forward
and the backward (docs/design.md §4).

A :class:`Target` is the GPU a launch compiles for -- its architecture and SM count. On a CUDA
tensor it is read from the device; on a 'meta' tensor (ahead-of-time compiles and the static
report, no GPU) it is whatever :func:`aot_target` set (default: sm_90 with 132 SMs, an H100 /
H200); on a CPU tensor (Triton's interpreter) it is the sm_90 tiling with a few programs, so
the interpreter runs the code paths a GPU runs.

:func:`gemm_tiles` is the tiling rule every GEMM of the package follows, and why:

* **sm_90** (wgmma): 64 pixel rows x up to 128 output channels, a 32-deep reduction step for
  2-byte dtypes, 4 warps (one warpgroup), 4 operand stages (3 in flight), at most 168 registers
  per thread: three programs per SM (3 x 4 x 20 KiB of operand stages fit the 228 KiB of shared
  memory), so one program's epilogue or barrier overlaps the others' MMAs. ``HGMMA.64x128x16``.
* **sm_80** (mma.sync): the same 64 x 128 tiles, 32-deep step and 4 stages at up to 255
  registers (mma.sync keeps its operand fragments in registers): two programs per SM.
* fp32 steps 16 deep, fp64 16 deep with 64-wide N tiles (fp64 accumulators).

The register caps were found by compiling the one-launch forward of the nine GoogLeNet layers
(``inception-kernels report --dump``): 0 spill bytes at these caps, spills at lower ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

__all__ = ["Target", "target_of", "aot_target", "gemm_tiles", "dot_precision", "Tiles", "Machine", "MACHINES",
           "machine_for"]


@dataclass(frozen=True)
class Target:
    """The GPU a launch is planned and compiled for.

    Attributes:
        arch: compute capability as an int (80, 90).
        sms: streaming multiprocessors; None in Triton's interpreter.
    """

    arch: int
    sms: Optional[int]


_AOT = [Target(90, 132)]


@contextlib.contextmanager
def aot_target(arch: int = 90, sms: int = 132) -> Iterator[Target]:
    """Plan launches on 'meta' tensors for ``sm_{arch}`` with ``sms`` SMs (ahead-of-time
    compiles, the static report)."""
    _AOT.append(Target(arch, sms))
    try:
        yield _AOT[-1]
    finally:
        _AOT.pop()


def target_of(device: torch.device) -> Target:
    """The :class:`Target` of a tensor on ``device``."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return Target(props.major * 10 + props.minor, props.multi_processor_count)
    if device.type == "meta":
        return _AOT[-1]
    return Target(90, None)


@dataclass(frozen=True)
class Tiles:
    """One GEMM tiling: ``BM`` rows x ``BN`` columns per tile, ``BK`` reduction step,
    ``stages`` operand stages in flight (``num_stages``), ``warps``, ``maxnreg`` (register cap
    per thread), ``ctas_per_sm`` (programs the caps let share an SM)."""

    BM: int
    BN: int
    BK: int
    stages: int
    warps: int
    maxnreg: int
    ctas_per_sm: int


def gemm_tiles(dtype: torch.dtype, target: Target) -> Tiles:
    """The package's GEMM tiling for ``dtype`` on ``target`` (see the module docstring)."""
    elt = dtype.itemsize
    bn = 64 if elt == 8 else 128
    if target.arch >= 90:
        bk = {2: 32, 4: 16, 8: 16}[elt]
        return Tiles(BM=64, BN=bn, BK=bk, stages=4, warps=4, maxnreg=168, ctas_per_sm=3)
    bk = {2: 32, 4: 16, 8: 16}[elt]
    return Tiles(BM=64, BN=bn, BK=bk, stages=4, warps=4, maxnreg=255, ctas_per_sm=2)


def dot_precision(dtype: torch.dtype, device: torch.device) -> str:
    """``tl.dot``'s ``input_precision``: ``"tf32"`` for fp32 on CUDA when
    ``torch.backends.cudnn.allow_tf32`` is set (as PyTorch's convolutions), else ``"ieee"``."""
    if dtype == torch.float32 and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


# The machine figures the forward's "auto" schedule weighs (``_plan``): a modeled cost of the
# halo warm-up against a second launch. The rest of the performance model, and the source of
# every figure below, is in the static report's model (inception_kernels/tools/report/model.py).


@dataclass(frozen=True)
class Machine:
    """The figures of one GPU the performance model uses (their sources: the docstring of
    ``inception_kernels/tools/report/model.py``)."""

    name: str
    sms: int
    mma_macs_per_s: float
    hbm_bytes_per_s: float
    l2_bytes_per_s: float
    launch_s: float = 4e-6


MACHINES = {
    90: Machine("H200 (sm_90)", 132, 790e12 / 2, 4.3e12, 2.5 * 4.3e12),
    80: Machine("A100 80GB (sm_80)", 108, 312e12 / 2 * 0.8, 2.0e12, 2.5 * 2.0e12),
}


def machine_for(arch: int) -> Machine:
    """The modeled machine of a compute capability (sm_90 for anything newer)."""
    return MACHINES[90] if arch >= 90 else MACHINES[80]
