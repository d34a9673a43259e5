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

Bytes (:func:`forward_launches` / :func:`backward_launches`, per launch, from the launcher's own
plan):

* **DRAM**: every tensor the launch must read or write once -- x, y, weights, the saved reduce
  buffers, dy, dx, the weight-gradient partials -- assuming that a tile's re-reads (the 3x3
  pool's neighbours, halo rows, the A operand of each N tile) hit L2. The one-launch ring
  buffers stay in L2 (a few hundred KiB per program live at once).
* **L2**: a GEMM phase of ``M`` rows x ``K`` x ``N`` columns tiled ``BM`` x ``bn`` requests its A
  operand once per N tile (``M*K*ceil(N/bn)``, nine times for the pool branch's max over its
  neighbours) and its B operand once per row tile (``ceil(M/BM)*K*N``), and writes ``M*N``:
  ``MACs * elt * (reads_A / tile_width + 1 / BM)`` plus the output, with the MACs the plan
  executes (padding included). Plus the DRAM bytes, which pass through L2.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...triton._config import MACHINES, Machine, machine_for

__all__ = ["Machine", "MACHINES", "machine_for", "mma_efficiency", "Launch", "estimate", "forward_launches",
           "backward_launches", "TENSOR_MACS_PER_CLK", "SMEM_BYTES_PER_CLK"]

#: bf16 multiply-accumulates one SM's tensor cores do per clock (see the module docstring).
TENSOR_MACS_PER_CLK = 2048
#: Shared-memory bytes one SM delivers per clock.
SMEM_BYTES_PER_CLK = 128
#: Efficiency factor of a main loop with no operand stage in flight (an assumption).
PIPELINE_EXPOSED = 0.5
#: Efficiency factor of one program per SM (an assumption).
SINGLE_PROGRAM = 0.8


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


@dataclass(frozen=True)
class Launch:
    """The modeled work of one launch: executed multiply-accumulates, bytes from DRAM and from
    L2, and the average N width of its MMA tiles (0 for a launch without GEMMs)."""

    kernel: str
    macs: int
    dram_bytes: int
    l2_bytes: int
    n_width: float


def estimate(launch: Launch, arch: int, stages: int, ctas_per_sm: int) -> dict:
    """The model's seconds for one launch and the term that bounds it.

    ``max(MACs / (mma rate * mma_efficiency), DRAM / HBM, L2 / L2 bandwidth) + launch``.

    Returns:
        ``{"seconds", "bound": "mma"|"dram"|"l2", "efficiency", "mma_s", "dram_s", "l2_s"}``.
    """
    m = machine_for(arch)
    eff = mma_efficiency(int(launch.n_width), stages, ctas_per_sm) if launch.macs else 1.0
    terms = {
        "mma": launch.macs / (m.mma_macs_per_s * eff),
        "dram": launch.dram_bytes / m.hbm_bytes_per_s,
        "l2": launch.l2_bytes / m.l2_bytes_per_s,
    }
    bound = max(terms, key=terms.get)
    return dict(seconds=terms[bound] + m.launch_s, bound=bound, efficiency=eff,
                **{f"{k}_s": v for k, v in terms.items()})


def _gemm_l2(macs: int, elt: int, split: tuple, bn: int, bm: int, out_cols: int, rows: int,
             a_reads: int = 1) -> tuple[int, float]:
    """L2 bytes of one GEMM phase and its average tile width (see the module docstring)."""
    from ...triton.backward import _ntiles
    from ...triton.inception_fwd import _tile_width

    width = _tile_width(split, bn)
    tiles = max(_ntiles(split), 1)
    avg = width / tiles
    return int(macs * elt * (a_reads / max(avg, 1) + 1 / bm) + rows * out_cols * elt), avg


def _weighted_width(parts) -> float:
    """MAC-weighted average tile width of several GEMM phases."""
    total = sum(m for m, _ in parts)
    return sum(m * w for m, w in parts) / total if total else 0.0


def forward_launches(plan, channels, kernel_sizes, nhw: int, elt: int, save_reduce: bool) -> list:
    """The :class:`Launch` es of a forward ``ForwardPlan`` (``channels = (cin, c1, c3r, c3, c5r,
    c5, cp)``), in launch order."""
    cin, c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    macs = plan.gemm_macs(channels, kernel_sizes, nhw)
    s1, s3r, s3, s5r, s5, sp = plan.splits
    bm, bn = plan.BM, plan.BN
    params = (cin * (c1 + c3r + c5r + cp) + k3 * k3 * c3r * c3 + k5 * k5 * c5r * c5) * elt
    x_b, y_b, r_b = nhw * cin * elt, nhw * (c1 + c3 + c5 + cp) * elt, nhw * (plan.cs3 + plan.cs5) * elt
    hor_tiles = [(w, bn) for w in (s1, s3r, s5r)]
    from ...triton.inception_fwd import _tile_width
    from ...triton.backward import _ntiles

    hor_w = sum(_tile_width(t, b) for t, b in hor_tiles)
    hor_n = max(sum(_ntiles(t) for t, _ in hor_tiles), 1)
    rows_h = macs["horizontal"] // max(_round(cin, plan.BK) * hor_w, 1)
    hor_l2 = int(macs["horizontal"] * elt * (1 / (hor_w / hor_n) + 1 / bm) + rows_h * hor_w * elt)
    rows = nhw
    pool_l2, pool_w = _gemm_l2(macs["pool"], elt, sp, bn, bm, cp, rows, a_reads=9)
    k3_l2, k3_w = _gemm_l2(macs["k3"], elt, s3, bn, bm, c3, rows)
    k5_l2, k5_w = _gemm_l2(macs["k5"], elt, s5, bn, bm, c5, rows)
    first = [(macs["horizontal"], hor_w / hor_n), (macs["pool"], pool_w)]
    second = [(macs["k3"], k3_w), (macs["k5"], k5_w)]
    if plan.schedule == "one_launch":
        dram = x_b + y_b + params + (r_b if save_reduce else 0)
        return [Launch("inception_fwd_kernel_stage0", sum(macs.values()), dram,
                       dram + hor_l2 + pool_l2 + k3_l2 + k5_l2, _weighted_width(first + second))]
    d1 = x_b + nhw * (c1 + cp) * elt + r_b + cin * (c1 + c3r + c5r + cp) * elt
    d2 = r_b + nhw * (c3 + c5) * elt + (k3 * k3 * c3r * c3 + k5 * k5 * c5r * c5) * elt
    return [Launch("inception_fwd_kernel_stage1", macs["horizontal"] + macs["pool"], d1, d1 + hor_l2 + pool_l2,
                   _weighted_width(first)),
            Launch("inception_fwd_kernel_stage2", macs["k3"] + macs["k5"], d2, d2 + k3_l2 + k5_l2,
                   _weighted_width(second))]


def _round(a: int, b: int) -> int:
    return -(-a // b) * b


def backward_launches(plan, channels, kernel_sizes, nhw: int, elt: int) -> list:
    """The :class:`Launch` es of a ``BackwardPlan`` with every gradient needed, in launch order."""
    from ...triton.backward import _ntiles
    from ...triton.inception_fwd import _tile_width

    cin, c1, c3r, c3, c5r, c5, cp = channels
    k3, k5 = kernel_sizes
    macs = plan.gemm_macs(channels, kernel_sizes, nhw)
    cout = c1 + c3 + c5 + cp
    cs3, cs5 = _round(c3r, 16), _round(c5r, 16)
    params = (cin * (c1 + c3r + c5r + cp) + k3 * k3 * c3r * c3 + k5 * k5 * c5r * c5)
    bm, bn = plan.BM, plan.BN
    # launch 1: the reduce convs' gradients (dy and y of the K x K branches, r3 / r5 for the mask)
    rg_w = (_tile_width(plan.t3r, bn) + _tile_width(plan.t5r, bn)) / max(_ntiles(plan.t3r) + _ntiles(plan.t5r), 1)
    d1 = nhw * (2 * (c3 + c5) + 2 * (cs3 + cs5)) * elt + (k3 * k3 * c3 * c3r + k5 * k5 * c5 * c5r) * elt
    l1 = d1 + int(macs["reduce_grad"] * elt * (1 / max(rg_w, 1) + 1 / bm))
    # launch 2: dx and the weight gradients; partials in fp32
    p_total = params + (c1 + c3r + c3 + c5r + c5 + cp)
    d2 = nhw * (2 * cout + (cs3 + cs5) + 2 * cin + (cs3 + cs5)) * elt + plan.S * p_total * 4 + params * elt
    dx_w = _tile_width(plan.tx, plan.dx_bn) / max(_ntiles(plan.tx), 1)
    tw = [_tile_width(t, plan.pool_bn if i == 5 else bn) / max(_ntiles(t), 1) for i, t in enumerate(plan.tw)]
    wg_w = sum(tw) / len(tw)
    l2 = d2 + int(macs["dx"] * elt * (1 / max(dx_w, 1) + 1 / bm) + macs["wgrad"] * elt * (1 / max(wg_w, 1) + 1 / bm))
    # launch 3: sum the partials
    d3 = plan.S * p_total * 4 + p_total * elt
    return [Launch("reduce_grad_kernel", macs["reduce_grad"], d1, l1, rg_w),
            Launch("grads_kernel", macs["dx"] + macs["wgrad"], d2, l2,
                   _weighted_width([(macs["dx"], dx_w), (macs["wgrad"], wg_w)])),
            Launch("sum_partials_kernel", 0, d3, d3, 0.0)]
