"""The kernel report: what the fused kernels execute and how they compile, argued without a GPU.

This module gathers the figures; :mod:`.model` is the bytes/FLOP/time model, :mod:`.facts`
reads compiled kernels, :mod:`.format` prints, :mod:`.command` is the command line.

For each GoogLeNet Inception layer (its 224x224 spatial size, a batch of 256, channels_last
activations and the weight layout :class:`~inception_kernels.FusedInception` holds) the report
gives, for the Triton kernels:

- the **schedule** ``"auto"`` picks for the forward and *why* (the launcher's own plan,
  :func:`inception_kernels.triton.inception_fwd._plan`), and the model's view of the other one;
- **launches** per forward and per backward, *counted* with
  :func:`inception_kernels.testing.count_launches` on a small CPU run under the Triton
  interpreter (the count does not depend on sizes), and the eager figure (aten compute ops);
- **FLOPs**: useful (the convolutions) and executed (what the tiles multiply: padding to the
  tile widths, the one-launch halo warm-up), from the launchers' plans;
- **static facts** of every kernel the launchers choose, compiled ahead of time for sm_80 and
  sm_90 (:mod:`inception_kernels.tools.aot`): registers, spill bytes, shared memory, MMA
  instruction shapes, cp.async loads and how many groups stay in flight at a wait, scalar
  16-bit global loads in the PTX; checked against the targets of docs/design.md §7;
- a **modeled** time per launch (:mod:`inception_kernels.tools.report.model`: executed MACs at a
  sustained tensor rate times an efficiency cap, DRAM and L2 bytes, launch overhead; every
  constant and its source is listed there) -- a model, never a measurement, and no speedup
  over eager is printed (none has been measured);
- the **CUDA C++ extension's kernels**
  (:func:`~inception_kernels.tools.report.facts.cuda_kernel_facts`), read from the built library.

``--dump DIR`` keeps what was compiled: ``DIR/<layer>/<schedule>/<arch>/<kernel>.{cubin,ptx,sass}``
and ``DIR/manifest.json`` (see :func:`dump_kernels`).

Command line: ``inception-kernels report [--layers 3a,5b] [--arch sm_80,sm_90] [--dtype bfloat16]
[--batch 256] [--dump DIR] [--no-compile] [--json PATH] [--markdown]``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..._checks import OP_SCHEDULES
from ...spec import GOOGLENET_INCEPTIONS, InceptionSpec
from ..ui import DTYPE_SHORT, progress as _progress
from .facts import _HGMMA_SHAPE, cuda_kernel_facts, cuda_launch_facts, ptx_facts, sass_kernel_facts, ttgir_facts

__all__ = [
    "SCHEDULES",
    "DTYPE_BYTES",
    "TARGETS",
    "min_bytes",
    "count_all_launches",
    "dump_kernels",
    "check_targets",
    "build_report",
]

SCHEDULES = tuple(s for s in OP_SCHEDULES["triton"] if s != "auto")  # the Triton forward's schedules
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_TORCH_DTYPE_NAME = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
BATCH = 256
ARCHS = ("sm_80", "sm_90")

#: docs/design.md §7's static targets for each layer's default schedule.
TARGETS = dict(
    scalar_16bit_loads=0,  # ld.global of 16-bit scalars in the PTX
    min_cp_async_in_flight=1,  # DEPBAR.LE SB0, >= 0x1 at some wait: >= 2 cp.async groups in flight
    min_tma_ring=3,  # TMA loads land in a ring of >= 3 shared-memory stages: >= 2 in flight
    min_hgmma_n=128,  # the sm_90 forward's widest HGMMA
    spill_bytes=0,
    max_flop_ratio={"forward": 1.25, "backward": 1.35},  # executed / useful
)


# ---------------------------------------------------------------------------------------------
# Bytes (minimum traffic; bench.py compares measured times with it)
# ---------------------------------------------------------------------------------------------


def min_bytes(spec: InceptionSpec, n: int, h: int, w: int, elt: int, backward: bool = False) -> int:
    """Minimum DRAM traffic of one module: read ``x`` once, the parameters once, write ``y`` once.

    Args:
        spec: the module.
        n, h, w: batch and spatial size.
        elt: bytes per element (activations and parameters in the same dtype).
        backward: add the backward's minimum (read ``dy``, ``x`` and the parameters; write
            ``dx`` and the parameter gradients), for forward + backward.

    Returns:
        Bytes.
    """
    x = n * spec.in_channels * h * w
    y = n * spec.out_channels * h * w
    params = spec.num_parameters
    fwd = (x + params + y) * elt
    return fwd + ((y + x + params) + (x + params)) * elt if backward else fwd



# ---------------------------------------------------------------------------------------------
# Launch counting (a subprocess under the Triton interpreter)
# ---------------------------------------------------------------------------------------------


def _count_in_process(layers: Sequence[str]) -> dict:
    """Count launches for ``layers`` in this process (needs TRITON_INTERPRET=1 on a CPU, or a GPU).

    Runs each layer at batch 1 and spatial 3x3 (the launch sequence does not depend on sizes)
    with its real channel counts, in fp16 (the interpreter runs it twice as fast as fp32).
    """
    import torch

    from ... import reference
    from ...ops import fused_inception as fused
    from ...testing import count_launches
    from ...triton.inception_fwd import _inception_forward

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for name in layers:
        spec = GOOGLENET_INCEPTIONS[name]
        gen = torch.Generator().manual_seed(0)
        dt = torch.float16
        x = torch.randn(1, spec.in_channels, 3, 3, generator=gen).to(device, dt)
        ws = [(torch.randn(s, generator=gen) * 0.1).to(device, dt) for s in spec.weight_shapes]
        bs = [(torch.randn(s[0], generator=gen) * 0.1).to(device, dt) for s in spec.weight_shapes]
        kw = dict(kernel_sizes=spec.kernel_sizes, activation=spec.activation)
        rec = {}

        def count(fn):
            with count_launches() as c:
                fn()
            return dict(total=c.total, triton=c.triton, aten=c.aten, aten_ops=list(c.aten_ops))

        # eager: forward, then the autograd backward alone
        xg = x.clone().requires_grad_(True)
        wg = [t.clone().requires_grad_(True) for t in ws]
        bg = [t.clone().requires_grad_(True) for t in bs]
        holder = {}
        rec["eager"] = dict(forward=count(lambda: holder.setdefault("y", reference.inception(xg, wg, bg, **kw))))
        dy = torch.randn_like(holder["y"])
        rec["eager"]["backward"] = count(lambda: holder["y"].backward(dy))

        for schedule in SCHEDULES:
            r = {}
            if schedule == "one_launch":  # the public op's schedule
                r["via"] = "inception_kernels.fused_inception(backend='triton')"
                r["forward"] = count(lambda: fused(x, ws, bs, backend="triton", **kw))
            else:
                r["via"] = f"triton.inception_fwd._inception_forward(schedule={schedule!r})"
                r["forward"] = count(lambda: _inception_forward(x, ws, bs, spec.kernel_sizes, spec.activation,
                                                                schedule=schedule))
            rec[schedule] = r
        backward, how = _count_backward(fused, x, ws, bs, spec, count)
        for schedule in SCHEDULES:
            rec[schedule].update(backward=backward, backward_via=how if backward else None,
                                 backward_reason=None if backward else how)
        out[name] = rec
    return out


def _count_backward(fused, x, ws, bs, spec, count):
    """The fused backward's launches: through autograd when ``fused_inception`` is
    differentiable, else by calling the Triton backward launcher directly on the outputs of
    ``_inception_forward(save_reduce=True)``. The backward does not depend on the forward
    schedule.

    Returns:
        ``(count or None, how it was counted, or why there is no count)``.
    """
    from ...triton.backward import _inception_backward
    from ...triton.inception_fwd import _inception_forward

    kw = dict(kernel_sizes=spec.kernel_sizes, activation=spec.activation)
    xg = x.clone().requires_grad_(True)
    wg = [t.clone().requires_grad_(True) for t in ws]
    bg = [t.clone().requires_grad_(True) for t in bs]
    try:
        y = fused(xg, wg, bg, backend="triton", **kw)
    except NotImplementedError:
        y = None  # not differentiable yet: count the launcher itself
    if y is not None and y.grad_fn is not None:
        dy = y.detach().clone().normal_()
        return count(lambda: y.backward(dy)), "autograd through fused_inception(backend='triton')"
    y, r3, r5 = _inception_forward(x, ws, bs, spec.kernel_sizes, spec.activation, save_reduce=True)
    dy = y.clone().normal_()
    return (count(lambda: _inception_backward(dy, x, y, r3, r5, ws, bs, **kw)),
            "triton.backward._inception_backward called directly (fused_inception is not differentiable yet)")


def count_all_launches(layers: Sequence[str], progress: bool = False) -> dict:
    """Launch counts for ``layers``: fused (both schedules) and eager, forward and backward.

    On a machine without CUDA this runs in a subprocess with ``TRITON_INTERPRET=1`` (the
    interpreter must be chosen before the kernels are imported). Counts are cached next to
    the compiled-kernel facts, keyed by the sources they depend on and torch's version.

    Args:
        layers: GoogLeNet layer keys.
        progress: a progress bar on stderr while counting (the first run takes minutes).

    Returns:
        ``{layer: {"eager": {"forward", "backward"}, "one_launch": {...}, "two_launch": {...}}}``,
        each count a dict ``{"total", "triton", "aten", "aten_ops"}`` (or None with a reason).
    """
    import torch

    cache = _cache_dir().parent / "launches"
    key = hashlib.sha256((_source_hash(_COUNT_SOURCES) + torch.__version__).encode()).hexdigest()[:16]
    paths = {n: cache / f"{n}-{key}.json" for n in layers}
    todo = [n for n in layers if not paths[n].exists()]
    if todo:
        counted = _count_in_process(todo) if torch.cuda.is_available() else _count_in_subprocess(todo, progress)
        cache.mkdir(parents=True, exist_ok=True)
        for n, rec in counted.items():
            paths[n].write_text(json.dumps(rec))
    return {n: json.loads(paths[n].read_text()) for n in layers}


def _count_in_subprocess(layers: Sequence[str], progress: bool = False) -> dict:
    """:func:`_count_in_process` in a fresh interpreter with ``TRITON_INTERPRET=1``, one layer
    after another (one JSON line per layer, so that a progress bar can follow)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = "import json,sys; from inception_kernels.tools.report.build import _count_in_process; " \
           "[print(json.dumps({n: _count_in_process([n])[n]}), flush=True) for n in sys.argv[1:]]"
    out: dict = {}
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            [sys.executable, "-c", code, *layers], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
            cwd=str(Path(__file__).resolve().parents[3])) as proc:  # the checkout holding inception_kernels/
        lines = (line for line in proc.stdout if line.startswith("{"))
        for line in _progress(lines, len(layers), "counting launches (Triton interpreter)", unit="layer",
                              enabled=progress):
            out.update(json.loads(line))
        proc.wait()
        if proc.returncode != 0 or set(out) != set(layers):
            err.seek(0)
            raise RuntimeError(f"launch counting failed:\n{err.read()[-3000:]}")
    return out


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    root = os.environ.get("INCEPTION_KERNELS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                       "inception_kernels")
    return Path(root) / "aot"


#: Sources a compiled kernel depends on (package-relative globs); launch counts also depend
#: on the op layer around the kernels.
_KERNEL_SOURCES = ("triton/*.py",)  # triton/_launches.py counts and launches them
_COUNT_SOURCES = _KERNEL_SOURCES + ("ops.py", "_checks.py", "_backends.py", "reference.py", "__init__.py")


def _source_hash(globs: Sequence[str] = _KERNEL_SOURCES) -> str:
    """Hash of the package sources matching ``globs`` and Triton's version."""
    import triton

    h = hashlib.sha256(triton.__version__.encode())
    pkg = Path(__file__).resolve().parents[2]  # inception_kernels/
    for f in sorted({p for g in globs for p in pkg.glob(g)}):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The Triton kernels: plans, the model, ahead-of-time compiles and the dump
# ---------------------------------------------------------------------------------------------

def _arch_int(arch: str) -> int:
    return int(arch[3:5])


def _plans(layer: str, arch: str, dtype: str, batch: int, schedules: Sequence[str]) -> list:
    """``aot.Plan`` s of the forward (each of ``schedules``; "auto" is the default) and the
    backward of one layer on one arch."""
    from .. import aot

    tdt, a = _TORCH_DTYPE_NAME[dtype], _arch_int(arch)
    out, seen = [], set()
    for schedule in schedules:
        plan = aot.forward_launches(layer, a, dtype=tdt, batch=batch, schedule=schedule)
        if plan.schedule not in seen:
            seen.add(plan.schedule)
            out.append(plan)
    out.append(aot.backward_launches(layer, a, dtype=tdt, batch=batch))
    return out


def _model(plan, layer: str, arch: str, dtype: str, batch: int) -> list[dict]:
    """The model's per-launch work and time for one ``aot.Plan``."""
    import torch

    from . import model
    from ...triton._config import Target, gemm_tiles

    spec = GOOGLENET_INCEPTIONS[layer]
    channels = (spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj)
    nhw, elt, a = batch * spec.spatial ** 2, DTYPE_BYTES[dtype], _arch_int(arch)
    p = plan.plan
    if plan.stage == "forward":
        launches = model.forward_launches(p, channels, spec.kernel_sizes, nhw, elt, save_reduce=True)
        ctas = gemm_tiles(getattr(torch, _TORCH_DTYPE_NAME[dtype]), Target(a, None)).ctas_per_sm
    else:
        launches = model.backward_launches(p, channels, spec.kernel_sizes, nhw, elt)
        ctas = 2  # BackwardPlan: two programs per SM
    out = []
    for launch in launches:
        est = model.estimate(launch, a, p.nstage, ctas)
        out.append(dict(kernel=launch.kernel, macs=launch.macs, dram_bytes=launch.dram_bytes,
                        l2_bytes=launch.l2_bytes, n_width=round(launch.n_width, 1),
                        efficiency=round(est["efficiency"], 3), bound=est["bound"],
                        modeled_us=round(est["seconds"] * 1e6, 2)))
    return out


def _compile_task(task: tuple) -> dict:
    """Worker (no interpreter): rebuild one plan, compile one launch, return its code and facts."""
    import time

    from . import facts as kernel_facts
    from .. import aot

    stage, layer, arch, dtype, batch, schedule, index = task
    plan = aot.launches_of(stage, layer, _arch_int(arch), dtype=_TORCH_DTYPE_NAME[dtype], batch=batch,
                           schedule=schedule)
    launch = plan.launches[index]
    t0 = time.perf_counter()
    ck = aot.compile_launch(launch, _arch_int(arch))
    seconds = time.perf_counter() - t0
    cubin, ptx = ck.asm["cubin"], ck.asm["ptx"]
    sass = kernel_facts.sass(cubin)
    ((name, res),) = kernel_facts.resource_usage(cubin).items()
    facts = dict(
        registers=res["registers"], spill_bytes=res["stack_bytes"], local_bytes=res["local_bytes"],
        shared_bytes=ck.metadata.shared + res["shared_static_bytes"], num_warps=ck.metadata.num_warps,
        num_stages=launch[3].get("num_stages"), **sass_kernel_facts(sass), **ptx_facts(ptx),
        **ttgir_facts(ck.asm.get("ttgir", "")),
        occupancy=kernel_facts.occupancy(res["registers"], ck.metadata.shared + res["shared_static_bytes"],
                                   ck.metadata.num_warps, arch),
        compile_seconds=round(seconds, 1),
    )
    hg = [_HGMMA_SHAPE.match(op) for op in facts["mma_instructions"]]
    facts["hgmma_max_n"] = max((int(m.group(2)) for m in hg if m), default=None)
    return dict(symbol=name, cubin=cubin, ptx=ptx, sass=sass, facts=facts)


def dump_kernels(out_dir, layers: Sequence[str] = tuple(GOOGLENET_INCEPTIONS), archs: Sequence[str] = ARCHS,
                 dtype: str = "bf16", batch: int = BATCH, schedules: Sequence[str] = ("auto",),
                 workers: int = 2, progress: bool = True) -> dict:
    """Compile every kernel the launchers choose and write their code and the manifest.

    For each layer and arch: the forward of each of ``schedules`` (``"auto"`` = the default the
    module runs) and the backward, planned on 'meta' tensors as the module passes them
    (:mod:`inception_kernels.tools.aot`), compiled for ``sm_80`` / ``sm_90`` in ``workers``
    processes without the interpreter (each distinct specialization once).

    Writes ``out_dir/<layer>/<schedule>/<arch>/<kernel>.{cubin,ptx,sass}`` -- ``<schedule>`` is
    the forward's schedule; the backward's kernels sit beside the default forward's -- and
    ``out_dir/manifest.json``::

        {"default_schedule": {layer: schedule},
         "kernels": [{"layer", "schedule", "arch", "stage", "kernel", "cubin", "ptx", "sass",
                      "key", "facts"}],
         "flops": [{"layer", "schedule", "stage", "useful", "executed"}],
         "reasons": {layer: why auto chose its schedule}, "model": [...], ...}

    with paths relative to ``out_dir``; ``key`` is the launch's ``aot.specialization_key`` (as
    a string), ``facts`` the static facts (:func:`sass_kernel_facts`, :func:`ptx_facts`,
    registers, spills, shared memory, occupancy).

    Args:
        out_dir: the directory (created).
        layers, archs, dtype, batch: the problems (GoogLeNet layers at 224x224).
        schedules: forward schedules to dump ("auto", "one_launch", "two_launch").
        workers: parallel compile processes.
        progress: show a tqdm bar.

    Returns:
        The manifest (also written), with ``"errors"``: kernels that failed to compile.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .. import aot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = dict(dtype=dtype, batch=batch, archs=list(archs), default_schedule={},
                    default_schedule_by_arch={a: {} for a in archs}, reasons={}, kernels=[], flops=[], model=[],
                    errors=[])
    main_arch = "sm_90" if "sm_90" in archs else archs[0]  # default_schedule: the sm_90 plan's
    jobs: dict = {}  # (specialization key, arch) -> compile task
    entries = []
    for layer in layers:
        for arch in archs:
            plans = _plans(layer, arch, dtype, batch, schedules)
            default = plans[0].schedule if "auto" in schedules else None
            if default is not None:
                manifest["default_schedule_by_arch"][arch][layer] = default
                if arch == main_arch:
                    manifest["default_schedule"][layer] = default
                    manifest["reasons"][layer] = plans[0].reason
            for plan in plans:
                where = plan.schedule if plan.stage == "forward" else (default or plans[0].schedule)
                manifest["flops"].append(dict(
                    layer=layer, schedule=where, stage=plan.stage, arch=arch,
                    useful=2 * aot.useful_macs(layer, plan.stage, batch),
                    executed=2 * sum(plan.phase_macs.values())))
                manifest["model"].append(dict(layer=layer, schedule=where, stage=plan.stage, arch=arch,
                                              launches=_model(plan, layer, arch, dtype, batch)))
                for i, launch in enumerate(plan.launches):
                    key = (aot.specialization_key(launch), arch)
                    jobs.setdefault(key, (plan.stage, layer, arch, dtype, batch, plan.schedule if plan.stage ==
                                          "forward" else None, i))
                    entries.append(dict(layer=layer, schedule=where, arch=arch, stage=plan.stage,
                                        kernel=aot.kernel_label(launch), _key=key))
    results: dict = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=aot.worker_init) as pool:
        futures = {pool.submit(_compile_task, task): key for key, task in jobs.items()}
        from concurrent.futures import as_completed

        done = as_completed(futures)
        for fut in _progress(done, len(futures), "compiling kernels", unit="kernel", enabled=progress):
            key = futures[fut]
            try:
                results[key] = fut.result()
            except Exception as e:  # noqa: BLE001 -- a kernel that does not compile is a finding
                msg = str(e).strip().splitlines()
                results[key] = f"{type(e).__name__}: {msg[-1] if msg else ''}"
    for e in entries:
        key = e.pop("_key")
        r = results[key]
        e["key"] = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        if isinstance(r, str):
            manifest["errors"].append(dict(e, error=r))
            continue
        rel = Path(e["layer"]) / e["schedule"] / e["arch"]
        (out / rel).mkdir(parents=True, exist_ok=True)
        for ext, data in (("cubin", r["cubin"]), ("ptx", r["ptx"]), ("sass", r["sass"])):
            path = rel / f"{e['kernel']}.{ext}"
            (out / path).write_bytes(data) if isinstance(data, bytes) else (out / path).write_text(data)
            e[ext] = str(path)
        e["facts"] = r["facts"]
        e["loads"] = "+".join(w for w, n in (("cp.async", r["facts"]["ldgsts"]), ("tma", r["facts"]["utmaldg"])) if n)
        manifest["kernels"].append(e)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def check_targets(manifest: dict) -> list[dict]:
    """docs/design.md §7's targets, per (layer, arch), on the default schedule of a manifest.

    Returns:
        ``[{"layer", "arch", "target", "ok", "detail"}]``: 0 scalar 16-bit loads (PTX); every
        kernel loads through cp.async with >= 2 groups in flight at some wait (``DEPBAR.LE SB0,
        >= 1``) or through TMA (``UTMALDG``) into a ring of >= 3 stages, and a kernel that does
        both meets both; the sm_90 forward's HGMMA N >= 128; 0 spill bytes; executed / useful FLOPs within
        ``TARGETS["max_flop_ratio"]``.
    """
    rows = []
    for arch in manifest["archs"]:
        default = manifest["default_schedule_by_arch"][arch]
        for layer in default:
            mine = [k for k in manifest["kernels"]
                    if k["layer"] == layer and k["schedule"] == default[layer] and k["arch"] == arch]
            if not mine:
                continue

            def add(target, ok, detail):
                rows.append(dict(layer=layer, arch=arch, target=target, ok=bool(ok), detail=detail))

            f = {k["kernel"]: k["facts"] for k in mine}
            b16 = {n: v["ptx_scalar_16bit_loads"] + v["scalar_16bit_loads"] for n, v in f.items()}
            add("0 scalar 16-bit loads (PTX and SASS)", not any(b16.values()), b16)
            inflight = {n: dict(cp_async_wait=v["cp_async_wait_max"], **({"tma_ring": v.get("tma_ring_min")}
                                                                         if v["utmaldg"] else {}))
                        for n, v in f.items()}
            add(">= 2 cp.async groups in flight",
                all((v["ldgsts"] or v["utmaldg"])
                    and (not v["ldgsts"] or (v["cp_async_wait_max"] or 0) >= TARGETS["min_cp_async_in_flight"])
                    and (not v["utmaldg"] or (v.get("tma_ring_min") or 0) >= TARGETS["min_tma_ring"])
                    for v in f.values()), inflight)
            if arch == "sm_90":
                fwd = {n: f[n]["hgmma_max_n"] for n in f if n.startswith("inception_fwd")}
                add(f"sm_90 forward HGMMA N >= {TARGETS['min_hgmma_n']}",
                    fwd and all((v or 0) >= TARGETS["min_hgmma_n"] for v in fwd.values()), fwd)
            spills = {n: v["spill_bytes"] + v["local_bytes"] for n, v in f.items()}
            add("0 spill bytes", not any(spills.values()), spills)
            for stage, limit in TARGETS["max_flop_ratio"].items():
                for r in manifest["flops"]:
                    if (r["layer"], r["stage"], r["schedule"], r["arch"]) == (layer, stage, default[layer], arch):
                        ratio = r["executed"] / r["useful"]
                        add(f"{stage} executed/useful FLOPs <= {limit}", ratio <= limit, round(ratio, 3))
    return rows


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def build_report(layers: Sequence[str] = tuple(GOOGLENET_INCEPTIONS), archs: Sequence[str] = ARCHS,
                 dtype: str = "bf16", compile: bool = True, batch: int = BATCH, workers: int = 2,
                 dump: Optional[str] = None, progress: bool = True) -> dict:
    """Build the report.

    Args:
        layers: GoogLeNet layer keys.
        archs: ``"sm_80"`` / ``"sm_90"``.
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"`` (or ``"bf16"``, ``"fp16"``, ``"fp32"``).
        compile: compile the kernels for the static facts and targets (minutes; else None).
        batch: batch of the problem (spatial sizes are the layers' own at 224x224).
        workers: parallel compiles.
        dump: keep the compiled kernels and the manifest in this directory
            (:func:`dump_kernels`); None compiles into a temporary one.
        progress: progress bars on stderr (a terminal only) over the launch counting and the compiles.

    Returns:
        ``{"meta", "records", "targets", "manifest", "cuda_extension"}``: one record per
        ``(layer, arch)`` with the default schedule and its reason, launches (counted, fused and
        eager), useful and executed FLOPs forward and backward, the modeled time per launch,
        the other schedule's modeled time, and the static facts of each kernel (None without
        ``compile``); ``targets`` from :func:`check_targets`.

    Raises:
        ValueError: unknown layer, arch or dtype, or a batch < 1.
    """
    from .facts import ARCH_LIMITS
    from .. import aot

    bad = [n for n in layers if n not in GOOGLENET_INCEPTIONS]
    if bad:
        raise ValueError(f"layers must be among {list(GOOGLENET_INCEPTIONS)}, got {bad}")
    bad = [a for a in archs if a not in ARCH_LIMITS or a not in ARCHS]
    if bad:
        raise ValueError(f"archs must be among {list(ARCHS)}, got {bad}")
    dtype = DTYPE_SHORT.get(dtype, dtype)  # either spelling: "bfloat16" or "bf16"
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {list(DTYPE_BYTES)}, got {dtype!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    counts = count_all_launches(layers, progress)
    manifest = None
    if compile:
        if dump is None:
            with tempfile.TemporaryDirectory(prefix="inception-kernels-report-") as tmp:
                manifest = dump_kernels(tmp, layers, archs, dtype, batch, workers=workers, progress=progress)
        else:
            manifest = dump_kernels(dump, layers, archs, dtype, batch, workers=workers, progress=progress)
    records = []
    for layer in layers:
        ce = counts[layer]["eager"]
        for arch in archs:
            plans = _plans(layer, arch, dtype, batch, ("auto", "one_launch", "two_launch"))
            default, other, backward = plans[0], plans[1], plans[-1]
            fwd_model = _model(default, layer, arch, dtype, batch)
            bwd_model = _model(backward, layer, arch, dtype, batch)
            other_model = _model(other, layer, arch, dtype, batch)
            cf = counts[layer][default.schedule]
            kernels = None
            if manifest is not None:
                kernels = {k["kernel"]: k["facts"] for k in manifest["kernels"]
                           if k["layer"] == layer and k["arch"] == arch and k["schedule"] == default.schedule}
            records.append(dict(
                layer=layer, arch=arch, batch=batch, dtype=dtype, spatial=GOOGLENET_INCEPTIONS[layer].spatial,
                schedule=default.schedule, reason=default.reason,
                launches_forward=cf["forward"]["total"] if cf["forward"] else None,
                launches_backward=cf["backward"]["total"] if cf["backward"] else None,
                launches_forward_eager=ce["forward"]["total"], launches_backward_eager=ce["backward"]["total"],
                flops_forward=2 * aot.useful_macs(layer, "forward", batch),
                flops_forward_executed=2 * sum(default.phase_macs.values()),
                flops_backward=2 * aot.useful_macs(layer, "backward", batch),
                flops_backward_executed=2 * sum(backward.phase_macs.values()),
                model_forward=fwd_model, model_backward=bwd_model,
                modeled_forward_us=round(sum(m["modeled_us"] for m in fwd_model), 1),
                modeled_backward_us=round(sum(m["modeled_us"] for m in bwd_model), 1),
                other_schedule=other.schedule,
                other_flops_executed=2 * sum(other.phase_macs.values()),
                other_modeled_forward_us=round(sum(m["modeled_us"] for m in other_model), 1),
                bytes_min=min_bytes(GOOGLENET_INCEPTIONS[layer], batch, GOOGLENET_INCEPTIONS[layer].spatial,
                                    GOOGLENET_INCEPTIONS[layer].spatial, DTYPE_BYTES[dtype]),
                kernels=kernels,
            ))
    from . import model

    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        measured=False,
        machines={f"sm_{a}": vars(m) for a, m in model.MACHINES.items()},
        notes=[
            "nothing here ran on a GPU: launches are counted under the Triton interpreter, FLOPs and bytes come "
            "from the launchers' plans, static facts from ahead-of-time compiles, and times from the model of "
            "inception_kernels.tools.report.model (assumptions and sources listed there)",
            "modeled time per launch = max(executed MACs / (sustained MMA rate x efficiency), DRAM bytes / HBM, "
            "L2 bytes / L2 bandwidth) + launch overhead",
            "no speedup over eager or cuDNN is given: none has been measured (benchmarks/gpu_check.sh measures it)",
        ],
    )
    cuda = cuda_kernel_facts(archs)
    cuda["launches"] = cuda_launch_facts(cuda, layers, dtype, batch)
    return dict(meta=meta, records=records, targets=check_targets(manifest) if manifest else None,
                manifest=manifest, cuda_extension=cuda)
