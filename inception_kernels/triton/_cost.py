"""A small performance model of the fused kernels, for choosing between schedules and for the
static report (docs/design.md §6-7). Every figure it gives is an *estimate*, never a
measurement.

Model, per launch::

    seconds = max(executed_MACs / (MMA rate * efficiency), DRAM bytes / HBM bandwidth,
                  L2 bytes / L2 bandwidth) + launch overhead

* **MMA rate** is what the device sustains on a large matmul, not its datasheet peak:
  ``MACHINES[...].mma_macs_per_s``.
* **efficiency** (``mma_efficiency``) caps that rate by what a kernel's instruction shape,
  pipeline depth and occupancy allow:

  - *instruction shape*: a warpgroup MMA ``m64nNk16`` does ``64*N*16`` multiply-accumulates and
    reads ``(64*16 + 16*N) * 2`` bytes of operands from shared memory (A and B both in shared
    memory); at ``TENSOR_MACS_PER_CLK`` per SM and ``SMEM_BYTES_PER_CLK`` per SM the instruction
    is shared-memory-bound below N = 64: efficiency ``min(1, (N/2) / (16 + N/4))`` for bf16 --
    0.4 at N=16, 0.67 at N=32, 1 from N=64 up;
  - *pipeline depth*: ``stages - 1`` operand stages in flight hide ``stages - 1`` K steps of
    memory latency; with a single stage the loads are exposed: factor ``PIPELINE_EXPOSED``;
  - *occupancy*: one program per SM cannot hide its own epilogues and barriers behind another
    program's MMAs: factor ``SINGLE_PROGRAM``.

Constants and their sources:

=========================  ===================================================================
``mma_macs_per_s``         sm_90: 790e12 / 2 -- the ~790 TFLOP/s bf16 the project's H200
                           sustained on a large matmul (docs/design.md §8); sm_80: 312e12 / 2 *
                           0.8 -- the A100 datasheet's 312 TFLOP/s bf16 dense, times the same
                           0.8 sustained/peak ratio (an assumption).
``hbm_bytes_per_s``        sm_90: 4.3e12, the H200 copy bandwidth of docs/design.md §8; sm_80:
                           2.0e12, the A100 80GB datasheet's 2,039 GB/s.
``l2_bytes_per_s``         an assumption: 2.5x the HBM copy bandwidth (order of magnitude of
                           published L2 microbenchmarks; not measured here).
``launch_s``               4 us: an assumed CUDA launch latency plus Triton's Python launch
                           path, of the order PyTorch users observe; not measured here.
``TENSOR_MACS_PER_CLK``    2048 bf16 MACs per SM per clock: 989.4 TFLOP/s (H100 SXM datasheet)
                           / 132 SMs / 1.83 GHz boost clock / 2 FLOPs per MAC.
``SMEM_BYTES_PER_CLK``     128 bytes per SM per clock: 32 banks x 4 bytes (CUDA C Programming
                           Guide, shared memory).
``PIPELINE_EXPOSED``       0.5: an assumption -- a single-stage main loop waits for every load.
``SINGLE_PROGRAM``         0.8: an assumption.
=========================  ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Machine", "MACHINES", "machine_for", "mma_efficiency", "TENSOR_MACS_PER_CLK", "SMEM_BYTES_PER_CLK"]

#: bf16 multiply-accumulates one SM's tensor cores do per clock (see the module docstring).
TENSOR_MACS_PER_CLK = 2048
#: Shared-memory bytes one SM delivers per clock.
SMEM_BYTES_PER_CLK = 128
#: Efficiency factor of a main loop with no operand stage in flight (an assumption).
PIPELINE_EXPOSED = 0.5
#: Efficiency factor of one program per SM (an assumption).
SINGLE_PROGRAM = 0.8


@dataclass(frozen=True)
class Machine:
    """The figures of one GPU the model uses (see the module docstring for their sources)."""

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


def mma_efficiency(n_width: int, stages: int, ctas_per_sm: int) -> float:
    """Fraction of the sustained MMA rate a main loop of ``n_width``-wide tiles reaches.

    Args:
        n_width: N of the MMA instruction (the tile's width).
        stages: operand stages of the loop (``num_stages``).
        ctas_per_sm: programs resident per SM.

    Returns:
        The product of the instruction-shape, pipeline and occupancy factors, in (0, 1]. The
        shape factor is computed for 2-byte operands; tf32 halves both the MMA rate and the
        operand count per byte, so it has the same factor.
    """
    mma_clks = 64 * n_width * 16 / TENSOR_MACS_PER_CLK
    smem_clks = (64 * 16 + 16 * n_width) * 2 / SMEM_BYTES_PER_CLK
    shape = min(1.0, mma_clks / smem_clks)
    pipe = 1.0 if stages >= 2 else PIPELINE_EXPOSED
    occ = 1.0 if ctas_per_sm >= 2 else SINGLE_PROGRAM
    return shape * pipe * occ
