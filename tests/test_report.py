"""The kernel report's counting and modeling, on cases computed by hand.

No test here needs a GPU: cubins are compiled ahead of time (in a subprocess, outside the
Triton interpreter) and read with the tools bundled in the Triton wheel.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from inception_kernels import _cubin

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
    res = _cubin.parse_resource_usage(_RES_USAGE_SAMPLE)
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
        _cubin.parse_resource_usage(" Function _k:\n")


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
    ops = _cubin.sass_opcodes(text)
    assert ops == {"HMMA": 2, "HGMMA": 1, "STL": 1, "LDL": 1, "EXIT": 1}
    assert _cubin.tensor_core_instructions(text) == {"HGMMA": 1, "HMMA": 2}


def test_occupancy_by_hand():
    # sm_90, 168 regs, 8 warps, 40 KB dynamic shared:
    #   regs/warp = ceil(168*32/256)*256 = 5376 -> 65536 // 5376 = 12 warps -> 12 // 8 = 1 block
    #   shared/block = 40960 + 1024 reserved = 41984 -> 233472 // 41984 = 5 blocks
    occ = _cubin.occupancy(168, 40 * 1024, 8, "sm_90")
    assert occ["limits"]["registers"] == 1 and occ["limits"]["shared"] == 5
    assert occ["blocks_per_sm"] == 1 and occ["warps_per_sm"] == 8 and occ["limited_by"] == "registers"
    assert occ["occupancy"] == 8 / 64
    # sm_80, 64 regs, 4 warps, 100 KB shared: regs/warp 2048 -> 32 warps -> 8 blocks;
    #   shared 102400 + 1024 = 103424 -> 167936 // 103424 = 1 block
    occ = _cubin.occupancy(64, 100 * 1024, 4, "sm_80")
    assert occ["limits"]["registers"] == 8 and occ["blocks_per_sm"] == 1 and occ["limited_by"] == "shared"
    # over the per-block maximum (163 KB on sm_80) it cannot run at all
    assert _cubin.occupancy(32, 200 * 1024, 4, "sm_80")["limited_by"] == "does not fit"


def test_occupancy_rejects_bad_input():
    with pytest.raises(ValueError, match="arch"):
        _cubin.occupancy(32, 0, 4, "sm_75")
    with pytest.raises(ValueError, match="num_warps"):
        _cubin.occupancy(32, 0, 0, "sm_80")
    with pytest.raises(ValueError, match="registers"):
        _cubin.occupancy(300, 0, 4, "sm_80")


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
    res = _cubin.resource_usage(cubin)
    assert list(res) == ["_tiny_dot"]
    assert res["_tiny_dot"]["registers"] > 0
    assert res["_tiny_dot"]["stack_bytes"] == 0
    assert _cubin.tensor_core_instructions(cubin).get(mma, 0) > 0
    # a path works like bytes
    path = tmp_path / "k.cubin"
    path.write_bytes(cubin)
    assert _cubin.resource_usage(path) == res
    assert "_tiny_dot" in _cubin.sass(path)
