"""Where the Triton kernels run and how they are tiled: the one config module of the forward,
the backward and the BatchNorm-training kernels (docs/design.md §4, §9).

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

__all__ = ["Target", "target_of", "aot_target", "gemm_tiles", "bn_training_tiles", "dot_precision", "Tiles",
           "Machine", "MACHINES", "machine_for", "tma_rows_ok", "pixel_row_stride", "tma_scratch"]


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


def bn_training_tiles(dtype: torch.dtype, target: Target) -> dict:
    """The tiling of the fused BatchNorm-training kernels (``triton/batchnorm_train.py``,
    docs/design.md §9) for ``dtype`` on ``target``: ``BM``, ``BN``, ``BK`` as in
    :func:`gemm_tiles`, ``BLOCK_T`` (partial-statistics rows reduced at a time), ``BLOCK_E``
    (elements per finishing program), ``num_warps``, ``num_stages``.

    Not :func:`gemm_tiles`: those persistent kernels run several jobs (GEMMs, statistics,
    normalization) per program, each with its own live state, and were compiled without spills
    at 64 x 64 tiles, 8 warps and one stage. On a GPU: 64 pixels x 64 channels per GEMM tile,
    32 reduction channels (or pixels, for the weight gradients) per tensor-core dot for 16-bit
    dtypes (16 for fp32 / fp64), statistics partials reduced 64 rows at a time, 256 elements per
    finishing program. In Triton's interpreter (``target.sms`` None) the cost is per Triton op,
    not per element, so the reduction steps are 64 and the finishing blocks 8192 (same code,
    fewer loop trips).
    """
    if target.sms is None:
        return dict(BM=64, BN=128, BK=64, BLOCK_T=16, BLOCK_E=8192, num_warps=4, num_stages=2)
    bk = 32 if dtype.itemsize == 2 else 16
    return dict(BM=64, BN=64, BK=bk, BLOCK_T=64, BLOCK_E=256, num_warps=8, num_stages=1)


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


def tma_rows_ok(t: torch.Tensor, row_stride: int, target: Target) -> bool:
    """Whether a GEMM operand whose rows are ``row_stride`` elements apart (unit stride along a
    row) in ``t``'s storage can be read through TMA (a tensor descriptor) on ``target``.

    The rule (docs/design.md §4.1): sm_90 or newer; a 2- or 4-byte dtype (the tensor-core
    operands; fp64 keeps the pointer loads); the base address and the row stride in bytes are
    multiples of 16 (what ``cuTensorMapEncodeTiled`` requires of a global tensor). Anything else
    -- e.g. a channels_last x with an odd channel count, or a view at an odd offset -- reads
    through ``cp.async`` instead: correct, only without the tensor memory accelerator.
    """
    elt = t.element_size()
    return (target.arch >= 90 and elt in (2, 4) and t.data_ptr() % 16 == 0
            and (row_stride * elt) % 16 == 0 and row_stride > 0)


def pixel_row_stride(t: torch.Tensor) -> Optional[int]:
    """The row stride of ``t`` ``[N, C, H, W]`` viewed as the 2-D tensor of pixel rows
    ``[N*H*W, C]`` (channels contiguous, pixels evenly spaced: ``s_c == 1``, ``s_h == W * s_w``,
    ``s_n == H * W * s_w``, as channels_last storage has), or None when it is not such a view."""
    n, c, h, w = t.shape
    s_n, s_c, s_h, s_w = t.stride()
    if (c == 1 or s_c == 1) and (h == 1 or s_h == w * s_w) and (n == 1 or s_n == h * w * s_w) and s_w >= c:
        return s_w
    return None


def _torch_scratch(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


@contextlib.contextmanager
def tma_scratch(device: torch.device) -> Iterator[None]:
    """Give Triton a global-memory allocator for the launches inside the block.

    A kernel that builds tensor descriptors on the device (``tl.make_tensor_descriptor``) needs
    128 bytes of global scratch per descriptor and program, which Triton asks of the allocator
    set with ``triton.set_allocator``. When the caller set none, this sets one backed by
    PyTorch's caching allocator for the block only (and resets it after); a caller's own
    allocator is left in place. No-op off CUDA (the interpreter needs no scratch).
    """
    if device.type != "cuda":
        yield
        return
    from triton.runtime import _allocation

    var = _allocation._allocator
    if var.get() is not _allocation._NULL_ALLOCATOR:
        yield
        return
    token = var.set(_torch_scratch)
    try:
        yield
    finally:
        var.reset(token)
