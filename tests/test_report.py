"""The kernel report's counting and modeling, on cases computed by hand.

No test here needs a GPU: cubins are compiled ahead of time (in a subprocess, outside the
Triton interpreter) and read with the tools bundled in the Triton wheel.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
import torch

from inception_kernels.tools.report import facts as kernel_facts
from inception_kernels.spec import GOOGLENET_INCEPTIONS

# ---------------------------------------------------------------------------------------------
# cubin parsing
# ---------------------------------------------------------------------------------------------

_RES_USAGE_SAMPLE = """
Resource usage:
 Common:
  GLOBAL:0
 Function _fused_inception_kernel:
  REG:168 STACK:40 SHARED:512 LOCAL:8 CONSTANT[0]:568 CONSTANT[2]:24 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _other:
  REG:32 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:392 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def test_parse_resource_usage_sample_by_hand():
    res = kernel_facts.parse_resource_usage(_RES_USAGE_SAMPLE)
    assert set(res) == {"_fused_inception_kernel", "_other"}
    k = res["_fused_inception_kernel"]
    assert k["registers"] == 168
    assert k["stack_bytes"] == 40
    assert k["shared_static_bytes"] == 512
    assert k["local_bytes"] == 8
    assert k["constant_banks"] == {0: 568, 2: 24}
    assert k["constant_bytes"] == 568 + 24
    assert res["_other"]["registers"] == 32 and res["_other"]["stack_bytes"] == 0


def test_parse_resource_usage_rejects_truncated_text():
    with pytest.raises(ValueError, match="no resource fields"):
        kernel_facts.parse_resource_usage(" Function _k:\n")


def test_sass_opcode_counting_by_hand():
    text = textwrap.dedent(
        """
            /*04b0*/                   HMMA.16816.F32 R16, R20.reuse, R8, RZ ;
                                                                              /* 0x000fe400078e00ff */
            /*04c0*/                   HMMA.16816.F32.BF16 R20, R20, R4, RZ ;
            /*04d0*/               @P0 HGMMA.64x64x16.F32 gdesc[UR4], RZ, !UPT ;
            /*04e0*/              @!P1 STL [R1+0x8], R2 ;
            /*04f0*/                   LDL R3, [R1+0x8] ;
            /*0500*/                   EXIT ;
        """
    )
    ops = kernel_facts.sass_opcodes(text)
    assert ops == {"HMMA": 2, "HGMMA": 1, "STL": 1, "LDL": 1, "EXIT": 1}
    assert kernel_facts.tensor_core_instructions(text) == {"HGMMA": 1, "HMMA": 2}


def test_sass_kernel_facts_by_hand():
    """MMA shapes, cp.async / TMA / ldmatrix counts, scalar 16-bit global loads (direct, read-only
    or generic) and the pipeline depth from the largest cp.async wait, on a hand-written SASS body."""
    from inception_kernels.tools.report import sass_kernel_facts

    text = textwrap.dedent(
        """
            /*0100*/                   LDGSTS.E.BYPASS.128.ZFILL [R3], desc[UR4][R4.64], P0 ;
            /*0110*/                   LDGSTS.E.BYPASS.128.ZFILL [R3+0x800], desc[UR4][R6.64] ;
            /*0120*/                   LDGDEPBAR ;
            /*0130*/                   DEPBAR.LE SB0, 0x1 ;
            /*0140*/                   LDSM.16.M88.4 R8, [R2] ;
            /*0150*/                   LDSM.16.MT88.4 R12, [R2+0x400] ;
            /*0160*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
            /*0170*/                   HMMA.16816.F32.BF16 R20, R8, R14, R20 ;
            /*0172*/                   WARPGROUP.ARRIVE ;
            /*0174*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR8], R24 ;
            /*0175*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR8], R24, gsb0 ;
            /*0176*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
            /*0180*/               @P1 LDG.E.U16 R5, desc[UR4][R10.64] ;
            /*0190*/                   LDG.E.U16.CONSTANT R6, desc[UR4][R10.64+0x2] ;
            /*01a0*/                   LD.E.S16 R7, [R12.64] ;
            /*01b0*/                   LDG.E.128 R24, desc[UR4][R10.64] ;
            /*01c0*/                   LDG.E R9, desc[UR4][R10.64] ;
            /*01c4*/                   STG.E.128 desc[UR4][R10.64], R12 ;
            /*01c8*/                   STG.E.U16 desc[UR4][R10.64], R9 ;
            /*01cc*/                   STS.128 [R3], R12 ;
            /*01d0*/                   DEPBAR.LE SB0, 0x0 ;
            /*01e0*/                   EXIT ;
        """
    )
    facts = sass_kernel_facts(text)
    assert facts["mma_instructions"] == {"HGMMA.64x128x16.F32.BF16": 1, "HGMMA.64x64x16.F32.BF16": 1,
                                         "HMMA.16816.F32.BF16": 2}
    assert facts["tensor_core_instructions"] == {"HGMMA": 2, "HMMA": 2}
    assert facts["wgmma_groups"] == 1, "one WARPGROUP.ARRIVE: the two HGMMAs chain"
    assert facts["global_stores_128"] == 1, "STG.E.128 only: not a 2-byte global or a 16-byte shared store"
    assert (facts["ldgsts"], facts["ldsm"], facts["utmaldg"], facts["scalar_16bit_loads"]) == (2, 2, 0, 3)
    assert facts["cp_async_wait_max"] == 1 and facts["pipeline_stages"] == 3
    empty = sass_kernel_facts("        /*0000*/                   EXIT ;\n")
    assert empty["pipeline_stages"] is None and empty["mma_instructions"] == {} and empty["scalar_16bit_loads"] == 0
    assert empty["wgmma_groups"] == 0 and empty["global_stores_128"] == 0


def test_ttgir_facts_read_the_tma_ring():
    """The ring depth of each TMA load is the leading dimension of the buffer its destination
    indexes (nearest definition: SSA names repeat across functions); a load into a lone box is
    a ring of 1. Both the Triton 3.8 (``tensordesc<64x32xbf16>``) and 3.6
    (``tensordesc<tensor<...>>``) spellings."""
    ttgir_facts = kernel_facts.ttgir_facts

    ringed = (
        "  %a_24 = ttg.memdesc_index %z[%c0_i32] : !ttg.memdesc<2x64x32xbf16, #shared, #smem, mutable> -> "
        "!ttg.memdesc<64x32xbf16, #shared, #smem, mutable>\n"  # the same name in an earlier function
        "  %a_24 = ttg.memdesc_index %a[%c0_i32] : !ttg.memdesc<4x64x32xbf16, #shared, #smem, mutable> -> "
        "!ttg.memdesc<64x32xbf16, #shared, #smem, mutable>\n"
        "  ttng.async_tma_copy_global_to_local %x_desc[%p0, %c0_i32] %a_24, %bar, %true : "
        "!tt.tensordesc<64x32xbf16, #shared>, !ttg.memdesc<1xi64, #shared1, #smem, mutable> -> "
        "!ttg.memdesc<64x32xbf16, #shared, #smem, mutable>\n"
    )
    assert ttgir_facts(ringed) == {"tma_loads": 1, "tma_ring_min": 4}
    lone = (
        "  %b_7 = ttg.local_alloc : () -> !ttg.memdesc<32x64xbf16, #shared, #smem, mutable>\n"
        "  ttng.async_tma_copy_global_to_local %w_desc[%c0_i32, %n0] %b_7, %bar, %true : "
        "!tt.tensordesc<tensor<32x64xbf16, #shared>>, !ttg.memdesc<1xi64, #shared1, #smem, mutable> -> "
        "!ttg.memdesc<32x64xbf16, #shared, #smem, mutable>\n"
    )
    assert ttgir_facts(ringed + lone) == {"tma_loads": 2, "tma_ring_min": 1}
    assert ttgir_facts("tt.func @k() { tt.return }") == {"tma_loads": 0, "tma_ring_min": None}


def test_occupancy_by_hand():
    # sm_90, 168 regs, 8 warps, 40 KB dynamic shared:
    #   regs/warp = ceil(168*32/256)*256 = 5376 -> 65536 // 5376 = 12 warps -> 12 // 8 = 1 block
    #   shared/block = 40960 + 1024 reserved = 41984 -> 233472 // 41984 = 5 blocks
    occ = kernel_facts.occupancy(168, 40 * 1024, 8, "sm_90")
    assert occ["limits"]["registers"] == 1 and occ["limits"]["shared"] == 5
    assert occ["blocks_per_sm"] == 1 and occ["warps_per_sm"] == 8 and occ["limited_by"] == "registers"
    assert occ["occupancy"] == 8 / 64
    # sm_80, 64 regs, 4 warps, 100 KB shared: regs/warp 2048 -> 32 warps -> 8 blocks;
    #   shared 102400 + 1024 = 103424 -> 167936 // 103424 = 1 block
    occ = kernel_facts.occupancy(64, 100 * 1024, 4, "sm_80")
    assert occ["limits"]["registers"] == 8 and occ["blocks_per_sm"] == 1 and occ["limited_by"] == "shared"
    # over the per-block maximum (163 KB on sm_80) it cannot run at all
    assert kernel_facts.occupancy(32, 200 * 1024, 4, "sm_80")["limited_by"] == "does not fit"


def test_occupancy_rejects_bad_input():
    with pytest.raises(ValueError, match="arch"):
        kernel_facts.occupancy(32, 0, 4, "sm_75")
    with pytest.raises(ValueError, match="num_warps"):
        kernel_facts.occupancy(32, 0, 0, "sm_80")
    with pytest.raises(ValueError, match="registers"):
        kernel_facts.occupancy(300, 0, 4, "sm_80")


_COMPILE_TINY = textwrap.dedent(
    """
    import sys
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    @triton.jit
    def _tiny_dot(a_ptr, b_ptr, c_ptr, BLOCK: tl.constexpr):  # a, b: [BLOCK, BLOCK] fp16; c fp32
        r = tl.arange(0, BLOCK)
        a = tl.load(a_ptr + r[:, None] * BLOCK + r[None, :])
        b = tl.load(b_ptr + r[:, None] * BLOCK + r[None, :])
        tl.store(c_ptr + r[:, None] * BLOCK + r[None, :], tl.dot(a, b))

    sig = {"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "BLOCK": "constexpr"}
    src = ASTSource(_tiny_dot, sig, {"BLOCK": int(sys.argv[2])})
    k = triton.compile(src, target=GPUTarget("cuda", int(sys.argv[1]), 32), options={"num_warps": 4})
    sys.stdout.buffer.write(k.asm["cubin"])
    """
)


def _compile_tiny(tmp_path, cc: int, block: int) -> bytes:
    """Compile the tiny kernel for ``sm_<cc>`` in a subprocess without the interpreter."""
    script = tmp_path / "compile_tiny.py"  # @triton.jit needs its source in a file
    script.write_text(_COMPILE_TINY)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, str(script), str(cc), str(block)], capture_output=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.mark.parametrize("cc,block,mma", [(80, 32, "HMMA"), (90, 64, "HGMMA")])
def test_real_cubin(tmp_path, cc, block, mma):
    cubin = _compile_tiny(tmp_path, cc, block)
    res = kernel_facts.resource_usage(cubin)
    assert list(res) == ["_tiny_dot"]
    assert res["_tiny_dot"]["registers"] > 0
    assert res["_tiny_dot"]["stack_bytes"] == 0
    assert kernel_facts.tensor_core_instructions(cubin).get(mma, 0) > 0
    # a path works like bytes
    path = tmp_path / "k.cubin"
    path.write_bytes(cubin)
    assert kernel_facts.resource_usage(path) == res
    assert "_tiny_dot" in kernel_facts.sass(path)


# ---------------------------------------------------------------------------------------------
# launch counting
# ---------------------------------------------------------------------------------------------


def test_count_launches_known_aten_ops():
    import torch

    from inception_kernels.testing import count_launches

    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with count_launches() as c:
        s = a + b  # 1 kernel
        v = s.view(16)  # a view: no kernel
        e = torch.empty(3)  # allocation without fill: no kernel
        r = torch.relu(v)  # 1
        torch.cat([r, e])  # 1
    assert c.aten == 3 and c.triton == 0 and c.total == 3


@pytest.mark.gpu
def test_count_launches_cuda_records_device_kernels():
    """count_launches(cuda=True) lists every kernel the device ran in the block (none before it)."""
    import torch

    from inception_kernels.testing import count_launches

    a = torch.randn(64, 64, device="cuda")
    torch.relu(a)  # queued before the block: not counted
    with count_launches(cuda=True) as c:
        torch.relu(a + a)  # 2 kernels
    assert len(c.cuda_kernels) == 2 and c.fused_kernels("cuda") == c.cuda_kernels, c.cuda_kernels
    assert c.aten == 2 and c.fused_kernels("triton") == []


def test_count_launches_cuda_needs_a_device():
    import torch

    from inception_kernels.testing import count_launches

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    with pytest.raises(RuntimeError, match="count_launches\\(cuda=True\\) needs a CUDA device"):
        with count_launches(cuda=True):
            pass


def test_count_eager_inception_by_hand():
    """reference.inception with biases and ReLU: 6 convs + 6 ReLUs + 1 max-pool + 1 cat = 14."""
    import torch

    from inception_kernels import reference
    from inception_kernels.testing import count_launches
    from inception_kernels.spec import InceptionSpec

    spec = InceptionSpec(8, 4, 4, 4, 2, 4, 4)
    x = torch.randn(1, 8, 3, 3)
    ws = [torch.randn(s) for s in spec.weight_shapes]
    bs = [torch.randn(s[0]) for s in spec.weight_shapes]
    with count_launches() as c:
        reference.inception(x, ws, bs)
    assert c.total == 14
    assert sum("convolution" in op for op in c.aten_ops) == 6
    assert sum("relu" in op for op in c.aten_ops) == 6
    with count_launches() as c:
        reference.inception(x, ws, bs, activation=None)
    assert c.total == 8


# ---------------------------------------------------------------------------------------------
# bytes and FLOPs models, computed by hand
# ---------------------------------------------------------------------------------------------

# A small module: Cin 16; 1x1 8; 3x3 reduce 4 -> 8; 5x5 reduce 2 -> 4; pool proj 4 (out 24),
# at batch 1, 4x4 pixels (P = 16), 2 bytes per element, tiles 16 x 16 x 16, 4x4 spatial tiles.
_SMALL = dict(in_channels=16, ch1x1=8, ch3x3red=4, ch3x3=8, ch5x5red=2, ch5x5=4, pool_proj=4)


def _small_spec():
    from inception_kernels.spec import InceptionSpec

    return InceptionSpec(**_SMALL)


def test_min_bytes_by_hand():
    from inception_kernels.tools.report import min_bytes

    # x: 16 px * 16 ch = 256; y: 16 px * 24 ch = 384
    # params: w1 8*16 + 8, w3r 4*16 + 4, w3 8*4*9 + 8, w5r 2*16 + 2, w5 4*2*25 + 4, wp 4*16 + 4
    params = (128 + 8) + (64 + 4) + (288 + 8) + (32 + 2) + (200 + 4) + (64 + 4)
    assert params == 806
    assert min_bytes(_small_spec(), 1, 4, 4, 2) == (256 + 806 + 384) * 2 == 2892
    # + backward: read dy (384), x (256), params (806); write dx (256), dparams (806)
    assert min_bytes(_small_spec(), 1, 4, 4, 2, backward=True) == 2892 + (384 + 256 + 806 + 256 + 806) * 2


def test_mma_efficiency_by_hand():
    """The instruction-shape cap: m64nNk16 needs 64*N*16/2048 clocks of MMA and
    (64*16 + 16*N)*2/128 of shared memory; pipeline and occupancy factors multiply."""
    from inception_kernels.tools.report.model import PIPELINE_EXPOSED, SINGLE_PROGRAM, mma_efficiency

    assert mma_efficiency(16, 4, 2) == pytest.approx((64 * 16 * 16 / 2048) / ((64 * 16 + 16 * 16) * 2 / 128)) == \
        pytest.approx(0.4)
    assert mma_efficiency(32, 4, 2) == pytest.approx(2 / 3)
    assert mma_efficiency(64, 4, 2) == mma_efficiency(256, 3, 3) == 1.0
    assert mma_efficiency(128, 1, 2) == PIPELINE_EXPOSED
    assert mma_efficiency(128, 2, 1) == SINGLE_PROGRAM


def test_model_estimate_takes_the_binding_term():
    """seconds = max(MACs / (rate * efficiency), DRAM / HBM, L2 / L2 bandwidth) + launch."""
    from inception_kernels.tools.report.model import Launch, estimate, machine_for

    m = machine_for(90)
    mma_bound = Launch("k", macs=int(m.mma_macs_per_s * 1e-3), dram_bytes=0, l2_bytes=0, n_width=32)
    e = estimate(mma_bound, 90, stages=4, ctas_per_sm=2)
    assert e["bound"] == "mma" and e["seconds"] == pytest.approx(1e-3 / (2 / 3) + m.launch_s)
    dram_bound = Launch("k", macs=1, dram_bytes=int(m.hbm_bytes_per_s * 2e-3), l2_bytes=int(m.hbm_bytes_per_s * 2e-3),
                        n_width=128)
    e = estimate(dram_bound, 90, stages=4, ctas_per_sm=2)
    assert e["bound"] == "dram" and e["seconds"] == pytest.approx(2e-3 + m.launch_s)
    l2_bound = Launch("k", macs=0, dram_bytes=0, l2_bytes=int(m.l2_bytes_per_s * 5e-4), n_width=0)
    e = estimate(l2_bound, 80, stages=4, ctas_per_sm=2)
    assert e["bound"] == "l2" and e["seconds"] == pytest.approx(5e-4 * m.l2_bytes_per_s / machine_for(80).l2_bytes_per_s
                                                               + machine_for(80).launch_s)


def test_model_bytes_by_hand():
    """The forward's DRAM model on a plan built by hand: x, y and the weights once, plus the
    saved reduce buffers (written once; the two-launch schedule reads them back)."""
    import dataclasses

    from inception_kernels.testing import triton_forward_plan
    from inception_kernels.tools.report import model

    channels, ks = (16, 8, 4, 8, 2, 4, 4), (3, 5)
    plan = triton_forward_plan(channels, ks, 1, 8, 8, torch.float16, arch=90, sms=132, schedule="one_launch")
    nhw, elt = 64, 2
    params = 16 * (8 + 4 + 2 + 4) + 9 * 4 * 8 + 25 * 2 * 4
    x, y, r = nhw * 16 * elt, nhw * 24 * elt, nhw * (16 + 16) * elt  # reduce channels padded to 16
    (one,) = model.forward_launches(plan, channels, ks, nhw, elt, save_reduce=True)
    assert one.dram_bytes == x + y + params * elt + r
    (one,) = model.forward_launches(plan, channels, ks, nhw, elt, save_reduce=False)
    assert one.dram_bytes == x + y + params * elt
    assert one.macs == sum(plan.gemm_macs(channels, ks, nhw).values()) and one.l2_bytes > one.dram_bytes
    two = dataclasses.replace(triton_forward_plan(channels, ks, 1, 8, 8, torch.float16, arch=90, sms=132,
                                                  schedule="two_launch"))
    first, second = model.forward_launches(two, channels, ks, nhw, elt, save_reduce=False)
    assert first.dram_bytes == x + nhw * (8 + 4) * elt + r + 16 * (8 + 4 + 2 + 4) * elt
    assert second.dram_bytes == r + nhw * (8 + 4) * elt + (9 * 4 * 8 + 25 * 2 * 4) * elt


# ---------------------------------------------------------------------------------------------
# bench: builds its cases, writes results, skips without a GPU (no timing here)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_bench_layer_case_runs_on_cpu(mode):
    from inception_kernels.tools import bench

    case = bench.layer_case("5b", 1, "fp32", mode, "eager_cl", device="cpu")
    assert case.unavailable is None
    assert case.flops == GOOGLENET_5B_FLOPS_7x7 * (3 if mode == "fwdbwd" else 1)
    case.fn()
    if mode == "fwdbwd":
        assert all(t.grad is not None for t in case.grad_to_none)
    two = bench.layer_case("5b", 1, "fp32", "fwdbwd", "fused_two_launch", device="cpu")
    assert two.fn is None and "forward-only" in two.unavailable
    with pytest.raises(ValueError, match="impl"):
        bench.layer_case("5b", 1, "fp32", mode, "cudnn", device="cpu")


def test_bench_fused_cuda_unavailable_says_why():
    """The CUDA C++ contender is skipped, with the backend's reason, where it cannot run."""
    from inception_kernels.testing import cuda_status
    from inception_kernels.tools import bench

    status = cuda_status()
    if status.available:
        pytest.skip("the CUDA backend can run here")
    for case in (bench.layer_case("3a", 1, "fp32", "fwd", "fused_cuda", device="cpu"),
                 bench.googlenet_case("paper", 1, "fp32", "infer", "fused_cuda", device="cpu")):
        assert case.fn is None and case.unavailable == f"backend 'cuda': {status.reason}"


# 5b at 7x7, batch 1: MACs per pixel = 832*384 + 832*192 + 192*384*9 + 832*48 + 48*128*25 + 832*128
GOOGLENET_5B_FLOPS_7x7 = 2 * 49 * (832 * 384 + 832 * 192 + 192 * 384 * 9 + 832 * 48 + 48 * 128 * 25 + 832 * 128)


def test_bench_pytest_benchmark_adapter():
    """run_pytest_benchmark on a CPU case with a stand-in fixture whose median is 2 ms."""
    from types import SimpleNamespace

    from inception_kernels.tools import bench

    calls = []

    class _Fixture:
        extra_info: dict = {}
        stats = SimpleNamespace(stats=SimpleNamespace(median=2e-3))

        def pedantic(self, target, rounds, warmup_rounds, iterations):
            calls.append((rounds, warmup_rounds, iterations))
            target()

    case = bench.layer_case("3a", 1, "fp32", "fwdbwd", "eager", device="cpu")
    fx = _Fixture()
    bench.run_pytest_benchmark(fx, case, rounds=3, warmup_rounds=1)
    assert calls == [(3, 1, 1)]
    assert fx.extra_info["tflops"] == case.flops / 2e-3 / 1e12
    assert fx.extra_info["gbps"] == case.bytes_min / 2e-3 / 1e9
    assert all(t.grad is not None for t in case.grad_to_none)


def test_bench_googlenet_cases_run_on_cpu():
    from inception_kernels.tools import bench

    case = bench.googlenet_case("paper", 1, "fp32", "infer", "eager_cl", device="cpu")
    # about 1.58 GMACs per 224x224 image (docs/design.md §2), 2 FLOPs each
    assert 2 * 1.5e9 < case.flops < 2 * 1.65e9
    case.fn()
    # a training step (aux heads, loss, backward, SGD) at a small size: the parameters move
    case = bench.googlenet_case("paper", 1, "fp32", "train", "eager", device="cpu", image_size=96)
    assert case.flops > 0
    case.fn()


def test_bench_results_writer(tmp_path):
    from inception_kernels.tools import bench

    recs = []
    for impl, ms in (("eager", 2.0), ("eager_cl", 1.6), ("fused", 0.5)):
        recs.append(dict(suite="layers", name="3a", batch=256, dtype="bf16", mode="fwd", impl=impl, ms=ms,
                         ms_p10=ms, ms_p90=ms, tflops=1.0, gbps=1.0, flops=1, bytes_min=1))
    recs.append(dict(suite="layers", name="3b", batch=256, dtype="bf16", mode="fwd", impl="fused",
                     error="unavailable: test"))
    results = {"environment": {"device": "synthetic records (test)", "date": "-"}, "records": recs}
    bench._add_speedups(recs)
    assert recs[2]["speedup_vs_eager"] == 4.0 and recs[2]["speedup_vs_eager_cl"] == 3.2
    assert recs[3]["speedup_vs_eager"] is None
    paths = bench.write_results(results, str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == ["bench.csv", "bench.json", "speedup_layers.png"]
    lines = (tmp_path / "bench.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("suite,name,batch")


def test_bench_skips_without_gpu(capsys):
    import argparse

    import torch

    from inception_kernels.tools import bench

    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists: bench would run")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.run_cli(parser.parse_args(["--quick"])) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# inception-kernels report, end to end
# ---------------------------------------------------------------------------------------------

_REQUIRED_KEYS = {
    "layer", "arch", "schedule", "reason", "launches_forward", "launches_backward", "launches_forward_eager",
    "launches_backward_eager", "flops_forward", "flops_forward_executed", "flops_backward", "flops_backward_executed",
    "model_forward", "model_backward", "modeled_forward_us", "modeled_backward_us", "other_schedule",
    "other_modeled_forward_us", "kernels",
}


def _report_cli(tmp_path, *args, rc=0):
    """Run ``python -m inception_kernels report ... --json`` in a fresh process; return the JSON
    and the printed text."""
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "inception_kernels", "report", *args, "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == rc, proc.stderr[-3000:]
    assert "a MODEL (nothing measured; no GPU)" in proc.stdout
    return json.loads(out.read_text()), proc.stdout


def test_report_cli_no_compile(tmp_path):
    """Counted launches, the plans' FLOPs, the model per launch; no speedup over eager."""
    from inception_kernels.tools import aot

    rep, text = _report_cli(tmp_path, "--layers", "3a,5b", "--no-compile")
    recs = rep["records"]
    assert [(r["layer"], r["arch"]) for r in recs] == [(n, a) for n in ("3a", "5b") for a in ("sm_80", "sm_90")]
    for r in recs:
        assert _REQUIRED_KEYS <= set(r)
        fwd = aot.forward_launches(r["layer"], int(r["arch"][3:]))
        assert r["schedule"] == fwd.schedule and r["reason"] == fwd.reason and r["reason"].startswith(r["schedule"])
        assert r["launches_forward"] == len(fwd.launches) == (1 if r["schedule"] == "one_launch" else 2)  # counted
        assert r["launches_backward"] == 3
        assert r["launches_forward_eager"] == 14  # 6 conv + 6 relu + pool + cat
        spec = GOOGLENET_INCEPTIONS[r["layer"]]
        assert r["flops_forward"] == spec.flops(256, spec.spatial, spec.spatial)
        assert r["flops_forward"] <= r["flops_forward_executed"] and r["flops_backward"] <= r["flops_backward_executed"]
        assert [m["kernel"] for m in r["model_forward"]] == [aot.kernel_label(la) for la in fwd.launches]
        assert r["modeled_forward_us"] == pytest.approx(sum(m["modeled_us"] for m in r["model_forward"]), abs=0.1)
        assert all(m["bound"] in ("mma", "dram", "l2") for m in r["model_forward"] + r["model_backward"])
        assert r["kernels"] is None
    assert rep["meta"]["measured"] is False and rep["targets"] is None
    assert "speedup" not in json.dumps(recs) and "speedup" not in text.split("CUDA C++")[0].lower().replace(
        "no speedup", "")
    assert "targets: not checked (--no-compile)" in text
    from inception_kernels.tools.report import cuda_kernel_facts, cuda_launch_facts

    cuda = dict(rep["cuda_extension"])  # the CUDA section, in the JSON
    launches = cuda.pop("launches")
    assert cuda == cuda_kernel_facts(["sm_80", "sm_90"])
    assert launches == json.loads(json.dumps(cuda_launch_facts(cuda, ["3a", "5b"], "bf16", 256)))


def test_report_cli_dump_one_layer(tmp_path):
    """--dump writes the manifest and the files; the report shows the kernels and the targets."""
    rep, text = _report_cli(tmp_path, "--layers", "5b", "--arch", "sm_90", "--dump", str(tmp_path / "dump"))
    manifest = json.loads((tmp_path / "dump" / "manifest.json").read_text())
    assert manifest["default_schedule"] == {"5b": "two_launch"} and manifest["errors"] == []
    assert set(manifest) >= {"default_schedule", "kernels", "flops"}
    for k in manifest["kernels"]:
        assert set(k) >= {"layer", "schedule", "arch", "stage", "kernel", "cubin", "ptx", "sass"}
        assert (tmp_path / "dump" / k["cubin"]).is_file()
    for r in manifest["flops"]:
        assert set(r) >= {"layer", "schedule", "stage", "useful", "executed"}
    (r,) = rep["records"]
    assert set(r["kernels"]) == {k["kernel"] for k in manifest["kernels"]}
    assert all(t["ok"] for t in rep["targets"]), [t for t in rep["targets"] if not t["ok"]]
    assert "target sm_90 forward HGMMA N >= 128: 1/1" in text


def test_report_cli_rejects_bad_arguments(tmp_path):
    for args, msg in ((["--layers", "9z"], "layers must be among"), (["--arch", "sm_75"], "archs must be among"),
                      (["--batch", "0"], "batch must be >= 1"), (["--dump", "d", "--no-compile"], "--dump needs")):
        proc = subprocess.run([sys.executable, "-m", "inception_kernels", "report", *args, "--no-compile"]
                              if "--no-compile" not in args else
                              [sys.executable, "-m", "inception_kernels", "report", *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.stderr[-2000:])


# ---------------------------------------------------------------------------------------------
# The CUDA C++ extension's kernels in the report
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cuda_facts():
    """The report's CUDA section and the extension's own account of its library."""
    from inception_kernels.tools.report import cuda_kernel_facts

    info = kernel_facts.extension_info()
    if info["path"] is None:
        pytest.skip(f"CUDA extension not built: {info['reason']}")
    assert info["error"] is None, info["error"]
    facts = cuda_kernel_facts()
    assert facts["error"] is None, facts["error"]
    return facts, info


def test_cuda_kernel_facts_match_the_extension(cuda_facts):
    """Every kernel of every arch of the built library, with the resources cuobjdump gives
    (extension_info); per-kernel tensor-core counts add up to each arch's whole SASS."""
    facts, info = cuda_facts
    got = {(k["arch"], k["mangled"]): k for k in facts["kernels"]}
    want = {(arch, name): r for arch, kernels in info["resources"].items() for name, r in kernels.items()}
    assert set(got) == set(want) and len(got) == len(facts["kernels"])
    for key, r in want.items():
        k = got[key]
        assert (k["registers"], k["spill_bytes"], k["local_bytes"], k["shared_static_bytes"]) == (
            r["registers"], r["stack_bytes"], r["local_bytes"], r["shared_static_bytes"]), key
        assert k["kernel"] in info["kernels"]
    assert facts["archs"] == info["archs"] and facts["state"] == info["state"]
    sass = kernel_facts.sass(info["path"])
    parts = re.split(r"^arch = (sm_\d+a?)\s*$", sass, flags=re.M)
    whole, summed = Counter(), Counter()
    for arch, text in zip(parts[1::2], parts[2::2]):
        for op, n in kernel_facts.tensor_core_instructions(text + "\n").items():
            whole[(arch, op)] += n
    for k in facts["kernels"]:
        for op, n in k["tensor_core_instructions"].items():
            summed[(k["arch"], op)] += n
    assert summed == whole
    pools = [k for k in facts["kernels"] if "maxpool3x3_s1_kernel" in k["kernel"]]
    assert pools and all(k["tensor_core_instructions"] == {} for k in pools)  # a max-pool has no MMA


def test_cuda_kernel_facts_arch_filter(cuda_facts):
    from inception_kernels.tools.report import cuda_kernel_facts

    facts, _ = cuda_facts
    only = cuda_kernel_facts(["sm_90"])  # the sm_90 family: the binary's sm_90a
    assert only["archs"] == [a for a in facts["archs"] if a.startswith("sm_90")] and only["archs"]
    assert only["kernels"] == [k for k in facts["kernels"] if k["arch"] in only["archs"]]


def _report_with(cuda):
    return {"meta": {"notes": []}, "records": [], "targets": None, "manifest": None, "cuda_extension": cuda}


def test_report_tables_list_cuda_kernels(cuda_facts):
    """The text table and the Markdown table have one row per CUDA kernel and arch, with its
    registers, spills, shared memory, cp.async / TMA loads and tensor-core counts."""
    from inception_kernels.tools.report import format_markdown, format_table
    from inception_kernels.tools.ui import short_kernel

    facts, _ = cuda_facts
    md = format_markdown(_report_with(facts)).splitlines()
    text = [line.split() for line in format_table(_report_with(facts)).splitlines()]
    for k in facts["kernels"]:
        mma = ",".join(f"{op}:{n}" for op, n in k["mma_instructions"].items()) or "-"
        cells = [k["arch"][3:], k["registers"], k["spill_bytes"], k["local_bytes"], k["shared_static_bytes"],
                 k["ldgsts"], k["utmaldg"], k["ldsm"], k["scalar_16bit_loads"], k["pipeline_stages"] or "-", mma]
        row = "| " + " | ".join(map(str, cells)) + f" | `{short_kernel(k['kernel'])}` |"
        assert md.count(row) == 1, row
        assert [*map(str, cells), *short_kernel(k["kernel"]).split()] in text, cells


def test_report_says_why_there_are_no_cuda_kernels(monkeypatch):
    from inception_kernels.tools.report import cuda_kernel_facts, format_markdown, format_table

    monkeypatch.setattr(kernel_facts, "extension_info", lambda: dict(
        state="not_built", reason="not built: no CUDA toolkit found", path=None, archs=[], kernels=[],
        resources={}, error=None))
    facts = cuda_kernel_facts()
    assert facts["kernels"] == [] and facts["reason"] == "not built: no CUDA toolkit found"
    line = "CUDA C++ extension kernels: none to report (not_built: not built: no CUDA toolkit found)"
    assert line in format_table(_report_with(facts)).splitlines()
    assert line in format_markdown(_report_with(facts)).splitlines()


@pytest.mark.cuda_ext
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_cuda_launch_facts(cuda_facts, dtype):
    """Per layer and arch: the forward's tile covers the image in at most 64-pixel tiles, one block
    per (image, tile, branch job), shared memory within the arch's per-block limit, and the
    occupancy of the kernel's registers with that shared memory; the table shows each row."""
    from inception_kernels.tools.report import cuda_launch_facts, format_markdown

    facts, _ = cuda_facts
    launches = cuda_launch_facts(facts, list(GOOGLENET_INCEPTIONS), dtype, 32)
    assert len(launches) == 9 * len(facts["archs"]) * 3
    regs = {(k["arch"], k["kernel"]): (k["registers"], k["shared_static_bytes"]) for k in facts["kernels"]}
    for r in launches:
        spec = GOOGLENET_INCEPTIONS[r["layer"]]
        limit = kernel_facts.ARCH_LIMITS[r["arch"]].shared_per_block
        assert 0 < r["dynamic_smem_bytes"] <= limit
        full = [name for (arch, name) in regs if arch == r["arch"] and r["kernel"] in name]
        assert len(full) == 1
        registers, static = regs[(r["arch"], full[0])]
        assert r["registers"] == registers
        assert r["occupancy"] == kernel_facts.occupancy(registers, r["dynamic_smem_bytes"] + static, 4, r["arch"])
        assert r["occupancy"]["blocks_per_sm"] >= 1
        if r["kernel"].startswith("inception_fwd_kernel"):
            th, tw = r["tile"]
            assert th * tw <= 64 and th <= spec.spatial and tw <= spec.spatial
            assert r["blocks"] == 32 * -(-spec.spatial // th) * -(-spec.spatial // tw) * 3
    text = format_markdown(_report_with(dict(facts, launches=launches)))
    for layer in GOOGLENET_INCEPTIONS:
        assert f"| {layer} | " in text
