"""Real GPU code for the fused BatchNorm-training kernels, checked without a GPU: the 8 launches of
one training step (3 forward, 5 backward) that the launchers pick for GoogLeNet's 3a block (fp16,
batch 256, channels_last x, GPU tiles) compile ahead of time for sm_90 with ``triton.compile``,
with 0 bytes of stack (no register spills) and tensor-core instructions (HGMMA / HMMA) in every
kernel that multiplies matrices.

Compiled once per session in 2 worker processes without ``TRITON_INTERPRET`` (about a minute on
2 cores; Triton's on-disk cache makes reruns fast). Run with ``-s`` to see the figures.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from inception_kernels.tools import aot
from inception_kernels.triton import batchnorm_train

#: The kernels of a training step: (kernel, STAGE) -> multiplies matrices on tensor cores.
KERNELS = {
    ("_fwd_conv_kernel", 1): True, ("_fwd_conv_kernel", 2): True, ("_fwd_norm_kernel", None): False,
    ("_bwd_stats_kernel", None): False, ("_bwd_grads_kernel", 1): True, ("_bwd_grads_kernel", 2): True,
    ("_bwd_grads_kernel", 3): True, ("_bwd_finish_kernel", None): False,
}


@pytest.fixture(scope="module")
def reports():
    plan = dict(dtype="float16")  # launch_plan's defaults: GoogLeNet 3a, batch 256, 28x28, channels_last
    n = len(batchnorm_train.launch_plan(**plan))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=aot.worker_init) as pool:
        out = list(pool.map(aot.compile_batchnorm_launch, [(i, 90, plan) for i in range(n)]))
    print("\nBatchNorm-training kernels, sm_90 fp16, GoogLeNet 3a, batch 256:")
    for r in out:
        print(f"  {r['kernel']:20s} stage={r['stage']!s:4s} registers={r['registers']:3d} stack={r['stack_bytes']} "
              f"shared={r['shared_bytes']:6d} B warps={r['num_warps']} tensor_core={r['tensor_core']} "
              f"{r['compile_seconds']} s")
    return out


def test_training_step_compiles_for_sm90_without_spills(reports, record_property):
    assert [(r["kernel"], r["stage"]) for r in reports] == list(KERNELS)
    for r in reports:
        record_property(f"{r['kernel']}_stage{r['stage']}_regs", r["registers"])
        assert r["stack_bytes"] == 0 and r["local_bytes"] == 0, f"register spills: {r}"
        assert r["registers"] <= 255, r
        assert r["shared_bytes"] <= 227 * 1024, r
        if KERNELS[(r["kernel"], r["stage"])]:
            assert r["tensor_core"].get("HGMMA", 0) + r["tensor_core"].get("HMMA", 0) > 0, r
