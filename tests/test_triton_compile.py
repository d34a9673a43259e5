"""Real GPU code, checked without a GPU: every kernel configuration the forward launcher picks
for the nine GoogLeNet layers (fp16, bf16; one_launch with and without save_reduce, and
two_launch) compiles ahead of time for sm_80 and sm_90, with 0 bytes of stack (no register
spills) and tensor-core instructions (HMMA / HGMMA) in its SASS.

The distinct kernels of each (arch, dtype) are compiled once per session, when a selected test
needs them (``-k 90`` compiles sm_90 alone: CI's run with the GPU machine's Triton does), in
2 parallel worker processes (Triton's on-disk cache makes reruns fast). Registers / shared
memory per kernel are printed (run with ``-s``) and attached to the test report as properties.
"""

import pytest

from inception_kernels import GOOGLENET_INCEPTIONS
from inception_kernels.triton import aot

ARCHS = (80, 90)
DTYPES = ("float16", "bfloat16")


_COMPILED: dict = {}


@pytest.fixture
def compiled(arch, dtype):
    """Reports of the distinct kernels for one (arch, dtype), compiled on first use."""
    if (arch, dtype) not in _COMPILED:
        reports = aot.compile_plans(list(GOOGLENET_INCEPTIONS), (dtype,), (arch,), workers=2)
        print(f"\nfused Inception forward kernels, sm_{arch} {dtype} (distinct specializations, batch 256, "
              "channels_last x):")
        for r in reports:
            print(
                f"  {r['arch']} {r['dtype']:9s} stage={r['stage']} save_reduce={r['save_reduce']!s:5s} "
                f"registers={r['registers']:3d} stack={r['stack_bytes']} shared={r['shared_bytes']:6d} B "
                f"warps={r['num_warps']} tensor_core={r['tensor_core']} used_by={len(r['layers'])} launches"
            )
        _COMPILED[(arch, dtype)] = reports
    return _COMPILED[(arch, dtype)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_config_compiles_without_spills_on_tensor_cores(compiled, arch, dtype, record_property):
    mine = [r for r in compiled if r["arch"] == f"sm_{arch}" and r["dtype"] == dtype]
    # every layer and case of the launcher is covered by some compiled kernel
    covered = {use.split("#")[0] for r in mine for use in r["layers"]}
    for layer in GOOGLENET_INCEPTIONS:
        for schedule, save in aot.CASES:
            assert f"{layer}/{schedule}{'+save' if save else ''}" in covered
    # one_launch: 1 stage; two_launch: 2 stages -> at least 3 distinct kernels (stage 0, 1, 2)
    assert {r["stage"] for r in mine} == {0, 1, 2}
    for r in mine:
        record_property(f"sm_{arch}_{dtype}_stage{r['stage']}_save{int(r['save_reduce'])}_regs", r["registers"])
        assert r["stack_bytes"] == 0 and r["local_bytes"] == 0, f"register spills: {r}"
        assert r["registers"] <= 255, r
        expected_ops = {"HMMA"} if arch == 80 else {"HMMA", "HGMMA"}
        assert any(r["tensor_core"].get(op, 0) > 0 for op in expected_ops), f"no tensor-core instructions: {r}"
        # fits the per-block shared memory (sm_80: 163 KB, sm_90: 227 KB opt-in)
        assert r["shared_bytes"] <= (163 if arch == 80 else 227) * 1024, r
