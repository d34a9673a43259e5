"""The CUDA extension: built where a toolkit is, what the fat binary holds, and its one kernel.

Static checks (archs, kernels, spills, op registration via meta tensors) run on this machine
without a GPU; the kernel's numerics need a CUDA device (``gpu`` marker).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inception_kernels import InceptionSpec, _ext
from inception_kernels.tools.report.facts import extension_info

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["sm_80", "sm_90a"]  # sm_90a: the arch-specific Hopper target (wgmma)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _toolkit_present() -> bool:
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    return shutil.which("nvcc") is not None or any(h and Path(h, "bin", "nvcc").is_file() for h in homes)


@pytest.fixture
def ext_info():
    """What the built library holds; skips where there is no library."""
    if _ext.library_path() is None:
        pytest.skip(f"CUDA extension not built: {_ext.status().reason}")
    info = extension_info()
    assert info["error"] is None, info["error"]
    return info


@pytest.fixture
def maxpool():
    """The registered op; skips where the extension is not loaded."""
    st = _ext.status()
    if not st.loaded:
        pytest.skip(f"CUDA extension not loaded: {st.reason}")
    return torch.ops.inception_kernels.maxpool3x3_s1


def test_extension_built_where_toolkit_present():
    st = _ext.status()
    if os.environ.get("INCEPTION_KERNELS_NO_CUDA", "") not in ("", "0"):
        assert st.state == "skipped", st
        return
    if not (_toolkit_present() and torch.version.cuda):
        pytest.skip("no CUDA toolkit or CPU-only torch: the extension is skipped by design")
    assert st.loaded, f"a CUDA toolkit and torch {torch.__version__} are here, but: {st.reason}"
    assert st.build["torch_version"] == torch.__version__
    assert st.build["archs"] == ARCHS


def test_fat_binary_has_sm80_and_sm90(ext_info):
    assert ext_info["archs"] == ARCHS
    assert sorted(ext_info["resources"]) == ARCHS


def test_maxpool_kernel_in_every_arch_and_dtype(ext_info):
    for arch in ARCHS:
        names = list(ext_info["resources"][arch])
        assert len([n for n in names if "maxpool3x3_s1_kernel" in n]) == 6, (arch, names)  # 3 dtypes x 2 layouts
    for t in ("float", "__half", "__nv_bfloat16"):
        assert any(f"maxpool3x3_s1_kernel<{t}, true>" in k for k in ext_info["kernels"]), ext_info["kernels"]


def test_no_spills(ext_info):
    for arch, kernels in ext_info["resources"].items():
        assert kernels, f"no kernels for {arch}"
        for name, rec in kernels.items():
            assert rec["stack_bytes"] == 0 and rec["local_bytes"] == 0, (arch, name, rec)


def test_build_info_reasons(monkeypatch):
    """Each reason the loader can give, from a forged build record (no rebuild needed)."""
    cases = [
        (None, "not_built", "no build record"),
        ({"built": False, "reason": "skipped by INCEPTION_KERNELS_NO_CUDA=1"}, "skipped", "INCEPTION_KERNELS_NO_CUDA"),
        ({"built": False, "reason": "no CUDA toolkit found"}, "not_built", "no CUDA toolkit"),
        ({"built": True, "torch_version": "1.0.0+cu000", "archs": ARCHS}, "torch_mismatch", "built for torch 1.0.0+cu000"),
    ]
    for record, state, text in cases:
        monkeypatch.setattr(_ext, "_read_build_info", lambda r=record: r)
        _ext.status.cache_clear()
        try:
            st = _ext.status()
        finally:
            _ext.status.cache_clear()
        assert st.state == state and text in st.reason, (record, st)
        assert not st.loaded


def test_setup_env_switch_skips_extension(tmp_path):
    """INCEPTION_KERNELS_NO_CUDA=1: setup.py says why and records the skip (in a copy of the tree)."""
    for f in ("setup.py", "pyproject.toml", "README.md", "inception_kernels/__init__.py"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    env = dict(os.environ, INCEPTION_KERNELS_NO_CUDA="1")
    res = subprocess.run([sys.executable, "setup.py", "--name"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "CUDA extension not built: skipped by INCEPTION_KERNELS_NO_CUDA=1" in res.stdout
    record = (tmp_path / "inception_kernels" / "_build_info.py").read_text()
    assert "BUILT = False" in record and "INCEPTION_KERNELS_NO_CUDA" in record


@pytest.mark.cuda_ext
@pytest.mark.parametrize("channels_last", [False, True])
def test_maxpool_meta_shape_and_layout(maxpool, channels_last):
    x = torch.empty(2, 5, 7, 3, device="meta")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = maxpool(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.cuda_ext
@pytest.mark.parametrize(
    "shape, dtype, message",
    [((2, 3, 5), torch.float32, "x must be 4-D"), ((1, 2, 3, 3), torch.float64, "x must be float32, float16 or bfloat16")],
)
def test_maxpool_meta_bad_input(maxpool, shape, dtype, message):
    with pytest.raises((ValueError, TypeError), match=message):  # the fake impl (ops.py)
        maxpool(torch.empty(shape, dtype=dtype, device="meta"))


@pytest.mark.gpu
@pytest.mark.cuda_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 17, 9, 1), (2, 64, 13, 11)])
def test_maxpool_matches_torch(maxpool, dtype, channels_last, shape):
    x = torch.randn(shape, device="cuda").to(dtype)
    x[0, 0, 0, 0] = float("nan")  # NaN propagates, as in max_pool2d
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # runs on the current stream
        y = maxpool(x)
    stream.synchronize()
    want = F.max_pool2d(x, 3, stride=1, padding=1)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=x.suggest_memory_format())
    torch.testing.assert_close(y, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.gpu
@pytest.mark.cuda_ext
def test_maxpool_strided_input(maxpool):
    x = torch.randn(2, 8, 9, 10, device="cuda")[:, ::2, :, 1:]
    torch.testing.assert_close(maxpool(x), F.max_pool2d(x, 3, stride=1, padding=1), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.cuda_ext
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: torch.randn(2, 3, 5, device="cuda"), "x must be 4-D"),
        (lambda: torch.randn(1, 2, 3, 3, device="cuda", dtype=torch.float64), "x must be float32, float16 or bfloat16"),
        (lambda: torch.ones(1, 2, 3, 3, device="cuda", dtype=torch.int32), "x must be float32, float16 or bfloat16"),
    ],
)
def test_maxpool_bad_input_raises(maxpool, make, message):
    with pytest.raises(RuntimeError, match=message):
        maxpool(make())


def test_readme_commands_match_ci():
    """The README's install and test commands are the exact strings .ci/run runs."""
    import re

    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    for var in ("INSTALL", "TEST"):
        m = re.search(rf"^{var}='(.*)'$", ci, re.M)
        assert m, f".ci/run defines no {var}='...'"
        assert m.group(1) in blocks, f".ci/run's {var} {m.group(1)!r} is not a command block of README.md"


# --------------------------------------------------------------------------------------------
# The fused CUDA C++ Inception kernels (csrc/inception_fused_fwd.cu, inception_fused_bwd.cu)
# --------------------------------------------------------------------------------------------

FUSED_KERNELS = ("inception_fwd_kernel", "inception_reduce_grad_kernel", "inception_grads_kernel",
                 "inception_sum_partials_kernel")
GEMM_KERNELS = FUSED_KERNELS[:3]
KERNEL_TYPES = {"__half": True, "__nv_bfloat16": True, "float": False, "double": False}  # type -> tensor cores


def _fused_records():
    from inception_kernels.tools import report

    facts = report.cuda_kernel_facts()
    assert facts["error"] is None, facts["error"]
    return facts["kernels"]


def _record(records, arch, kernel, t):
    found = [r for r in records if r["arch"] == arch and f"{kernel}<{t}>" in r["kernel"]]
    assert len(found) == 1, (arch, kernel, t, [r["kernel"] for r in records if r["arch"] == arch])
    return found[0]


def test_fused_kernels_in_every_arch_and_dtype(ext_info):
    records = _fused_records()
    for arch in ARCHS:
        for kernel in FUSED_KERNELS:
            for t in KERNEL_TYPES:
                rec = _record(records, arch, kernel, t)
                assert rec["spill_bytes"] == 0 and rec["local_bytes"] == 0, rec


def test_fused_gemm_kernels_use_tensor_cores_for_fp16_and_bf16(ext_info):
    """fp16/bf16 products run on tensor cores: mma.sync m16n8k16 (HMMA.16816) on sm_80, warpgroup
    MMA on sm_90a, m64n128k16 (HGMMA.64x128x16) for the 128-wide N tiles and m64n64k16 for the
    narrower ones, chained four per stage (one WARPGROUP.ARRIVE per four HGMMAs: ptxas did not
    serialize them); fp32 and fp64 are SIMT (exact fp32, no TF32), so no tensor-core
    instruction there."""
    records = _fused_records()
    for arch in ARCHS:
        for kernel in GEMM_KERNELS:
            for t, tensor_cores in KERNEL_TYPES.items():
                rec = _record(records, arch, kernel, t)
                tc, shapes = rec["tensor_core_instructions"], rec["mma_instructions"]
                if not tensor_cores:
                    assert tc == {}, (arch, kernel, t, tc)
                elif arch == "sm_80":
                    assert tc.get("HMMA", 0) > 0 and all(op.startswith("HMMA.16816.F32") for op in shapes), rec
                else:
                    assert {op.split(".F32")[0] for op in shapes} == {"HGMMA.64x64x16", "HGMMA.64x128x16"}, rec
                    assert all(op.startswith(("HGMMA.64x64x16.F32", "HGMMA.64x128x16.F32")) for op in shapes), rec
                    assert tc["HGMMA"] == 4 * rec["wgmma_groups"], rec


def test_fused_gemm_kernels_feed_tensor_cores_through_a_cp_async_pipeline(ext_info):
    """The static proof of issue 14 for every fp16/bf16 fused GEMM kernel (forward, reduce-grad,
    grads) of both archs: no scalar 16-bit global load (LDG.E.U16 or kin), operands through
    cp.async (LDGSTS) with a ring of >= 3 stages (a wait that leaves >= 1 group in flight:
    DEPBAR.LE SB0, 0x1), ldmatrix (LDSM) feeding HMMA on sm_80, HGMMA on sm_90a, 0 spill bytes;
    every epilogue writes its outputs with 16-byte stores (STG.E.128) where the layout allows: the
    forward's y and saved reduce outputs, the reduce-grad's gr rows, the grads launch's dx
    (channels_last) and fp32 weight-gradient partial sums. On sm_90a the forward and the grads
    kernel also load through TMA (UTMALDG: x's tiles and the 1x1 weights; the 1x1 weight
    gradients' x and gr, docs/design.md §4.2); sm_80 has no TMA, nor has the reduce-grad kernel
    (its operands are computed)."""
    records = _fused_records()
    for arch in ARCHS:
        for kernel in GEMM_KERNELS:
            for t in ("__half", "__nv_bfloat16"):
                rec = _record(records, arch, kernel, t)
                assert rec["scalar_16bit_loads"] == 0, rec
                assert rec["ldgsts"] > 0 or rec["utmaldg"] > 0, rec
                assert rec["pipeline_stages"] is not None and rec["pipeline_stages"] >= 3, rec
                assert rec["spill_bytes"] == 0 and rec["local_bytes"] == 0, rec
                if arch == "sm_80":
                    assert rec["ldsm"] > 0 and rec["tensor_core_instructions"].get("HMMA", 0) > 0, rec
                else:
                    assert rec["tensor_core_instructions"].get("HGMMA", 0) > 0, rec
                assert rec["global_stores_128"] > 0, rec  # 8 outputs a store (epilogue_chunk, store8)
                tma = arch != "sm_80" and kernel != "inception_reduce_grad_kernel"
                assert (rec["utmaldg"] > 0) == tma, rec


def _meta_module(spec, n=2, h=5, w=7, *, channels_last=False, dtype=torch.float32, bias=True, kernel_sizes=(3, 5)):
    shapes = list(spec.weight_shapes)
    shapes[2] = (*shapes[2][:2], kernel_sizes[0], kernel_sizes[0])
    shapes[4] = (*shapes[4][:2], kernel_sizes[1], kernel_sizes[1])
    x = torch.empty(n, spec.in_channels, h, w, device="meta", dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ws = [torch.empty(s, device="meta", dtype=dtype) for s in shapes]
    bs = [torch.empty(s[0], device="meta", dtype=dtype) if bias else None for s in shapes]
    return x, ws, bs


def _cuda_module(spec, **kw):
    """_meta_module's tensors on the CUDA device, small random values."""
    x, ws, bs = _meta_module(spec, **kw)
    return tuple(None if t is None else torch.randn_like(t, device="cuda") if isinstance(t, torch.Tensor)
                 else [None if v is None else torch.randn_like(v, device="cuda") for v in t] for t in (x, ws, bs))


@pytest.mark.gpu
@pytest.mark.cuda_ext
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("save_reduce", [False, True])
def test_fused_forward_matches_its_fake(maxpool, channels_last, save_reduce):
    """The C++ op's outputs have the shapes and strides its fake impl (ops.py) promises, y in
    the memory format it is passed (_layout.output_memory_format)."""
    from inception_kernels import GOOGLENET_INCEPTIONS
    from inception_kernels.testing import output_memory_format

    x, ws, bs = _cuda_module(GOOGLENET_INCEPTIONS["4a"], channels_last=channels_last, dtype=torch.float16)
    op = torch.ops.inception_kernels.cuda_fused_inception
    args = (x, ws, bs, 3, 5, "relu", save_reduce, save_reduce, output_memory_format(x))
    got = op(*args)
    want = op(*[a.to("meta") if isinstance(a, torch.Tensor) else
                [None if t is None else t.to("meta") for t in a] if isinstance(a, list) else a for a in args])
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.stride() == w.stride() and g.dtype == w.dtype, (g.shape, w.shape)


@pytest.mark.gpu
@pytest.mark.cuda_ext
def test_fused_backward_gradient_layout(maxpool):
    """The flat gradient buffer has _layout.grad_layout's size for every subset of needed grads."""
    from inception_kernels.testing import WGRAD_SPLIT, grad_layout

    gen = torch.Generator().manual_seed(0)
    spec = InceptionSpec(20, 7, 12, 9, 5, 6, 11)
    for bias in (True, False):
        x, ws, bs = _cuda_module(spec, channels_last=True, bias=bias)
        y, r3, r5 = torch.ops.inception_kernels.cuda_fused_inception(x, ws, bs, 3, 5, "relu", True,
                                                                     True, torch.channels_last)
        for _ in range(4):
            needs = [bool(v) for v in torch.randint(0, 2, (13,), generator=gen)]
            layout = grad_layout(ws, bs, needs)
            dx, flat = torch.ops.inception_kernels.cuda_fused_inception_backward(
                y, x, y, r3, r5, ws, bs, 3, 5, "relu", needs[0], layout.as_ints(), WGRAD_SPLIT.as_ints())
            assert flat.numel() == layout.numel, needs
            assert (dx.shape, dx.stride()) == ((x.shape, x.stride()) if needs[0] else ((0,), (1,)))


@pytest.mark.gpu
@pytest.mark.cuda_ext
def test_fused_ops_guard_their_memory_accesses(maxpool):
    """The C++ ops' own TORCH_CHECKs (memory guards, docs/design.md §5) refuse what would make the
    kernels read or write out of bounds, before any launch, when called directly (past Python's
    one argument check)."""
    from inception_kernels.testing import WGRAD_SPLIT, grad_layout

    spec = InceptionSpec(20, 7, 12, 9, 5, 6, 11)
    x, ws, bs = _cuda_module(spec)
    fwd = torch.ops.inception_kernels.cuda_fused_inception
    ok = torch.contiguous_format

    def call(x=x, ws=ws, bs=bs, k=(3, 5)):
        return fwd(x, ws, bs, *k, "relu", True, True, ok)

    huge = torch.empty(1, device="cuda").as_strided((1, 20, 50000, 50000), (0, 0, 0, 0))
    cases = [
        (dict(x=x[0]), "x must be 4-D"),
        (dict(x=x.to(torch.int32)), "x must be float16, bfloat16, float32 or float64"),
        (dict(ws=ws[:5]), "weights and biases must hold 6 entries each"),
        (dict(ws=ws[:2] + [ws[2].half()] + ws[3:]), "w3 must have x's dtype"),
        (dict(ws=ws[:2] + [ws[2][:, :5]] + ws[3:]), "w3 must have shape [Cout > 0, 12, 3, 3]"),
        (dict(ws=[ws[0][:, :3]] + ws[1:]), "w1 must have shape [Cout > 0, 20, 1, 1]"),
        (dict(ws=ws[:5] + [ws[5].cpu()]), "wp must be on x's device"),
        (dict(bs=bs[:4] + [bs[4][:-1]] + bs[5:]), "b5 must have shape [6]"),
        (dict(k=(65, 5)), "kernel sizes must be odd and between 1 and 63, got (65, 5)"),
        (dict(x=huge), "N * H * W below 2^31 pixels (H * W too)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(RuntimeError, match=re.escape(message)):
            call(**kwargs)
    y, r3, r5 = call()
    bwd = torch.ops.inception_kernels.cuda_fused_inception_backward
    layout, split = grad_layout(ws, bs, [True] * 13).as_ints(), WGRAD_SPLIT.as_ints()
    with pytest.raises(RuntimeError, match=re.escape("r3 must be 4-D, got 1-D with shape [0]")):
        bwd(y, x, y, torch.empty(0, device="cuda"), r5, ws, bs, 3, 5, "relu", True, layout, split)
    with pytest.raises(RuntimeError, match=re.escape("grad_y must have shape [2, 33, 5, 7]")):
        bwd(y[:, 1:], x, y, r3, r5, ws, bs, 3, 5, "relu", True, layout, split)
    with pytest.raises(RuntimeError, match="grad_layout must be 37 ints"):
        bwd(y, x, y, r3, r5, ws, bs, 3, 5, "relu", True, [layout[0] - 1, *layout[1:]], split)
    with pytest.raises(RuntimeError, match="wgrad_split must be"):
        bwd(y, x, y, r3, r5, ws, bs, 3, 5, "relu", True, layout, [1024, 0, 64])


def test_extension_defines_no_schema():
    """Python (ops.py) defines every op of the namespace, schema and fake, once; csrc/ only
    registers kernels for them (TORCH_LIBRARY_IMPL), never a schema of its own."""
    for path in sorted((ROOT / "csrc").iterdir()):
        text = path.read_text()
        for banned in ("TORCH_LIBRARY(", "TORCH_LIBRARY_FRAGMENT(", "m.def("):
            assert banned not in text, f"{path.name} defines a schema ({banned})"
    assert "TORCH_LIBRARY_IMPL(inception_kernels, CUDA, m)" in (ROOT / "csrc" / "ops.cpp").read_text()
    names = {s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("inception_kernels::")}
    assert {"inception_kernels::maxpool3x3_s1", "inception_kernels::cuda_fused_inception",
            "inception_kernels::cuda_fused_inception_backward", "inception_kernels::cuda_fused_inception_plan",
            "inception_kernels::fused_inception", "inception_kernels::fused_inception_backward"} <= names, names


@pytest.mark.cuda_ext
def test_extension_registers_its_kernels(maxpool):
    """The loaded library registered CUDA kernels for the Python-defined ops, and no Meta kernel
    (the fakes are Python's)."""
    from inception_kernels.testing import extension_ops_registered

    assert extension_ops_registered()
    for op in ("maxpool3x3_s1", "cuda_fused_inception", "cuda_fused_inception_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"inception_kernels::{op}", "CUDA"), op


@pytest.mark.cuda_ext
def test_plan_reports_the_kernels_block_size(maxpool):
    """The plan op's last entry is tiling::kThreads (tools.report.facts derives the kernels' warps from it
    instead of a hand copy): the constant of csrc/inception_tiling.h."""
    threads = int(re.search(r"constexpr int kThreads = (\d+);", (ROOT / "csrc" / "inception_tiling.h").read_text())[1])
    plan = torch.ops.inception_kernels.cuda_fused_inception_plan(1, 8, 8, 16, 3, 16, 5, torch.float16, 232448)
    assert len(plan) == 7 and plan[6] == threads, plan


@pytest.mark.cuda_ext
def test_plan_stages_alike_on_both_builds(maxpool):
    """Both builds multiply a 128-wide tile in one pass over k, so every device gets the same
    24 KiB stages (the same backward shared memory, and the same forward plan where there is
    room). The wgmma build's forward kernel also has tiling::kTmaStaticSmem of static shared
    memory (its TMA barriers), which the plan keeps out of the per-block budget: at a budget
    that exactly fits the sm_80 forward's largest tile, the sm_90 plan takes a smaller one."""
    from inception_kernels import GOOGLENET_INCEPTIONS

    static = int(re.search(r"constexpr int kTmaStaticSmem = (\d+);", (ROOT / "csrc" / "inception_tiling.h").read_text())[1])
    plan = torch.ops.inception_kernels.cuda_fused_inception_plan
    spec = GOOGLENET_INCEPTIONS["4e"]
    args = (8, spec.spatial, spec.spatial, spec.ch3x3red, 3, spec.ch5x5red, 5)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        hopper = plan(*args, dtype, 227 * 1024, 90)
        assert plan(*args, dtype, 227 * 1024) == hopper, "cc defaults to 9.0"
        for cc in (80, 86, 89):
            ampere = plan(*args, dtype, 227 * 1024, cc)
            assert ampere == hopper, (dtype, cc, ampere, hopper)
            exact = plan(*args, dtype, ampere[2], cc)
            assert exact == ampere, "the sm_80 plan fits a budget of its own shared memory"
            tight = plan(*args, dtype, ampere[2], 90)
            assert tight[0] * tight[1] < ampere[0] * ampere[1], (dtype, tight, ampere)
            assert tight[2] + static <= ampere[2] and tight[4:] == ampere[4:]
            assert plan(*args, dtype, ampere[2] + static, 90) == ampere
