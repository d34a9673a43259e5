"""Real GPU code, checked without a GPU (docs/design.md §7): the kernels the launchers choose
are compiled ahead of time for sm_80 and sm_90 exactly as the modules launch them, dumped as
``inception-kernels report --dump`` dumps them, and checked against the static targets.

CI checks two representative layers: 3a (28x28, one-launch forward) and 5b (7x7, two-launch
forward at batch 256; the widest channels). The nine-layer dump is the slower command
``inception-kernels report --dump DIR``. Compiles run in worker processes without the
interpreter, once per arch per session (``-k sm_90`` compiles sm_90 alone: CI's run with the
GPU machine's Triton does); Triton's on-disk cache makes reruns fast.
"""

import json
from pathlib import Path

import pytest
import torch

from inception_kernels import FusedInception, GOOGLENET_INCEPTIONS
from inception_kernels.testing import record_launches
from inception_kernels.tools import aot

LAYERS = ("3a", "5b")
ARCHS = ("sm_80", "sm_90")

_DUMPS: dict = {}


@pytest.fixture(params=ARCHS)
def dumped(request, tmp_path_factory):
    """``(arch, out_dir, manifest)`` of ``report.dump_kernels`` for LAYERS on one arch."""
    from inception_kernels.tools import report

    arch = request.param
    if arch not in _DUMPS:
        out = tmp_path_factory.mktemp(f"dump_{arch}")
        manifest = report.dump_kernels(out, LAYERS, (arch,), "bf16", 256, workers=2, progress=False)
        _DUMPS[arch] = (arch, out, manifest)
    return _DUMPS[arch]


def test_manifest_lists_every_launch_with_its_files(dumped):
    arch, out, manifest = dumped
    assert manifest["errors"] == []
    assert json.loads((Path(out) / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    for layer in LAYERS:
        fwd = aot.forward_launches(layer, int(arch[3:]))
        bwd = aot.backward_launches(layer, int(arch[3:]))
        assert manifest["default_schedule"][layer] == fwd.schedule
        mine = [k for k in manifest["kernels"] if k["layer"] == layer]
        assert {(k["stage"], k["kernel"]) for k in mine} == (
            {("forward", aot.kernel_label(la)) for la in fwd.launches}
            | {("backward", aot.kernel_label(la)) for la in bwd.launches})
        for k in mine:
            assert k["schedule"] == fwd.schedule and k["arch"] == arch
            for ext in ("cubin", "ptx", "sass"):
                path = Path(k[ext])
                assert not path.is_absolute() and path.parts[:3] == (layer, fwd.schedule, arch)
                assert path.name == f"{k['kernel']}.{ext}"
            assert (out / k["cubin"]).read_bytes()[:4] == b"\x7fELF"
            assert f".target sm_{arch[3:]}" in (out / k["ptx"]).read_text()
            assert "Function :" in (out / k["sass"]).read_text()
        flops = {r["stage"]: r for r in manifest["flops"] if r["layer"] == layer}
        assert flops["forward"]["useful"] == GOOGLENET_INCEPTIONS[layer].flops(256, GOOGLENET_INCEPTIONS[layer].spatial,
                                                                             GOOGLENET_INCEPTIONS[layer].spatial)
        assert flops["forward"]["executed"] == 2 * sum(fwd.phase_macs.values()) >= flops["forward"]["useful"]
        assert flops["backward"]["executed"] >= flops["backward"]["useful"]


def test_static_targets(dumped, record_property):
    """docs/design.md §7 on each layer's default schedule: no scalar 16-bit loads, cp.async with
    >= 2 groups in flight, HGMMA N >= 128 in the sm_90 forward, no spills, executed/useful FLOPs
    <= 1.25 forward and <= 1.35 backward."""
    from inception_kernels.tools.report import check_targets

    _arch, _out, manifest = dumped
    rows = check_targets(manifest)
    for k in manifest["kernels"]:
        f = k["facts"]
        record_property(f"{k['layer']}_{k['arch']}_{k['kernel']}",
                        f"{f['registers']} regs, {f['shared_bytes']} B smem, {f['mma_instructions']}")
    targets = {r["target"] for r in rows}
    assert len(targets) >= 5 and {r["layer"] for r in rows} == set(LAYERS)
    missed = [r for r in rows if not r["ok"]]
    assert not missed, missed


def test_check_targets_catches_a_miss(dumped):
    """The target check can fail: a spill, a scalar load or a single-stage wait is reported."""
    import copy

    from inception_kernels.tools.report import check_targets

    _arch, _out, manifest = dumped
    for field, value, target in (("spill_bytes", 8, "0 spill bytes"),
                                 ("ptx_scalar_16bit_loads", 3, "0 scalar 16-bit loads (PTX and SASS)"),
                                 ("cp_async_wait_max", 0, ">= 2 cp.async groups in flight")):
        bad = copy.deepcopy(manifest)
        bad["kernels"][0]["facts"][field] = value
        k = bad["kernels"][0]
        rows = [r for r in check_targets(bad) if r["target"] == target]
        assert [r["ok"] for r in rows if (r["layer"], r["arch"]) == (k["layer"], k["arch"])] == [False]
    # a TMA kernel whose loads are not pipelined (one stage) misses the in-flight target
    for i, k in enumerate(manifest["kernels"]):
        if k["facts"]["utmaldg"]:
            bad = copy.deepcopy(manifest)
            bad["kernels"][i]["facts"]["tma_ring_min"] = 1
            rows = [r for r in check_targets(bad) if r["target"] == ">= 2 cp.async groups in flight"
                    and (r["layer"], r["arch"]) == (k["layer"], k["arch"])]
            assert [r["ok"] for r in rows] == [False]


def test_sm90_box_operands_read_through_tma(dumped):
    """sm_90: every forward kernel that runs the horizontal GEMM (one-launch, and stage 1 of
    two-launch) loads x and the 1x1 weights, and the backward's grads kernel loads dx's reduce
    gradients and w3r / w5r, with ``UTMALDG`` into a ring of the plan's ``nstage`` stages (the
    TTGIR's TMA destinations); the other kernels, and every sm_80 kernel, keep cp.async."""
    arch, out, manifest = dumped
    for k in manifest["kernels"]:
        f = k["facts"]
        boxes = ((k["stage"] == "forward" and not k["kernel"].endswith("stage2"))
                 or k["kernel"] == "grads_kernel")
        if arch == "sm_90" and boxes:
            assert f["utmaldg"] > 0 and "UTMALDG" in (out / k["sass"]).read_text(), k["kernel"]
            assert f["tma_loads"] > 0 and f["tma_ring_min"] == f["num_stages"] >= 3, f
            assert "tma" in k["loads"]
        else:
            assert f["utmaldg"] == 0 and f["tma_loads"] == 0 and "tma" not in k["loads"], (arch, k["kernel"])


@pytest.mark.parametrize("layer", LAYERS)
def test_dumped_specialization_is_the_runtime_launch(layer):
    """What the dump compiles is what a FusedInception launches: record the module's own
    forward and backward launches (a CPU run, recorded instead of run; fp16, which the
    interpreter accepts) and compare each specialization key with the dump's plan for sm_90
    (the CPU plans the sm_90 tiling)."""
    spec = GOOGLENET_INCEPTIONS[layer]
    block = FusedInception.from_spec(spec, backend="triton").half()
    s = spec.spatial
    x = torch.randn(2, spec.in_channels, s, s, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with record_launches() as fwd_launches:
        y = block(x)
    with record_launches() as bwd_launches:
        y.backward(torch.ones_like(y))
    want_fwd = aot.forward_launches(layer, 90, dtype="float16", batch=2)
    want_bwd = aot.backward_launches(layer, 90, dtype="float16", batch=2)
    assert [aot.specialization_key(la) for la in fwd_launches] == [aot.specialization_key(la)
                                                                   for la in want_fwd.launches]
    # the TMA choice is part of the key: both read the horizontal GEMM through descriptors
    assert [la[3]["TMA"] for la in fwd_launches] == [True] * len(fwd_launches)
    assert [aot.specialization_key(la) for la in bwd_launches] == [aot.specialization_key(la)
                                                                   for la in want_bwd.launches]
    # and the key sees the weight layout: OIHW weights would compile another kernel
    for p in block.parameters():
        p.data = p.data.contiguous()
    with record_launches() as other:
        block(x.detach().requires_grad_(True))
    assert aot.specialization_key(other[0]) != aot.specialization_key(want_fwd.launches[0])
