"""The kernel report: what the fused kernels execute and how they compile, argued without a GPU.

For each GoogLeNet Inception layer (its 224x224 spatial size, a batch of 256, channels_last
activations and the weight layout :class:`~inception_kernels.FusedInception` holds) the report
gives, for the Triton kernels:

- the **schedule** ``"auto"`` picks for the forward and *why* (the launcher's own plan,
  :func:`inception_kernels.triton.inception_fwd._plan`), and the model's view of the other one;
- **launches** per forward and per backward, *counted* with
  :func:`inception_kernels._launches.count_launches` on a small CPU run under the Triton
  interpreter (the count does not depend on sizes), and the eager figure (aten compute ops);
- **FLOPs**: useful (the convolutions) and executed (what the tiles multiply: padding to the
  tile widths, the one-launch halo warm-up), from the launchers' plans;
- **static facts** of every kernel the launchers choose, compiled ahead of time for sm_80 and
  sm_90 (:mod:`inception_kernels.triton.aot`): registers, spill bytes, shared memory, MMA
  instruction shapes, cp.async loads and how many groups stay in flight at a wait, scalar
  16-bit global loads in the PTX; checked against the targets of docs/design.md §7;
- a **modeled** time per launch (:mod:`inception_kernels.triton._cost`: executed MACs at a
  sustained tensor rate times an efficiency cap, DRAM and L2 bytes, launch overhead; every
  constant and its source is listed there) -- a model, never a measurement, and no speedup
  over eager is printed (none has been measured);
- the **CUDA C++ extension's kernels** (:func:`cuda_kernel_facts`), read from the built library.

``--dump DIR`` keeps what was compiled: ``DIR/<layer>/<schedule>/<arch>/<kernel>.{cubin,ptx,sass}``
and ``DIR/manifest.json`` (see :func:`dump_kernels`).

Command line: ``inception-kernels report [--layers 3a,5b] [--arch sm_80,sm_90] [--dtype bf16]
[--batch 256] [--dump DIR] [--no-compile] [--json PATH] [--markdown]``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from ._checks import OP_SCHEDULES
from .spec import GOOGLENET_INCEPTIONS, InceptionSpec

__all__ = [
    "SCHEDULES",
    "DTYPE_BYTES",
    "TARGETS",
    "min_bytes",
    "count_all_launches",
    "ptx_facts",
    "dump_kernels",
    "check_targets",
    "cuda_kernel_facts",
    "sass_kernel_facts",
    "cuda_launch_facts",
    "build_report",
    "format_table",
    "format_markdown",
    "add_arguments",
    "run_cli",
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

    from . import reference
    from ._launches import count_launches
    from .ops import fused_inception as fused
    from .triton.inception_fwd import _inception_forward

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
    from .triton.backward import _inception_backward
    from .triton.inception_fwd import _inception_forward

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


def count_all_launches(layers: Sequence[str]) -> dict:
    """Launch counts for ``layers``: fused (both schedules) and eager, forward and backward.

    On a machine without CUDA this runs in a subprocess with ``TRITON_INTERPRET=1`` (the
    interpreter must be chosen before the kernels are imported). Counts are cached next to
    the compiled-kernel facts, keyed by the sources they depend on and torch's version.

    Args:
        layers: GoogLeNet layer keys.

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
        counted = _count_in_process(todo) if torch.cuda.is_available() else _count_in_subprocess(todo)
        cache.mkdir(parents=True, exist_ok=True)
        for n, rec in counted.items():
            paths[n].write_text(json.dumps(rec))
    return {n: json.loads(paths[n].read_text()) for n in layers}


def _count_in_subprocess(layers: Sequence[str]) -> dict:
    """:func:`_count_in_process` in a fresh interpreter with ``TRITON_INTERPRET=1``."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = "import json,sys; from inception_kernels.report import _count_in_process; " \
           "print(json.dumps(_count_in_process(sys.argv[1:])))"
    proc = subprocess.run([sys.executable, "-c", code, *layers], capture_output=True, text=True, env=env,
                          cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0:
        raise RuntimeError(f"launch counting failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    root = os.environ.get("INCEPTION_KERNELS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                       "inception_kernels")
    return Path(root) / "aot"


#: Sources a compiled kernel depends on (package-relative globs); launch counts also depend
#: on the op layer around the kernels.
_KERNEL_SOURCES = ("triton/*.py", "_launches.py")
_COUNT_SOURCES = _KERNEL_SOURCES + ("ops.py", "_checks.py", "_backends.py", "reference.py", "__init__.py")


def _source_hash(globs: Sequence[str] = _KERNEL_SOURCES) -> str:
    """Hash of the package sources matching ``globs`` and Triton's version."""
    import triton

    h = hashlib.sha256(triton.__version__.encode())
    pkg = Path(__file__).resolve().parent
    for f in sorted({p for g in globs for p in pkg.glob(g)}):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The Triton kernels: plans, the model, ahead-of-time compiles and the dump
# ---------------------------------------------------------------------------------------------

_PTX_SCALAR_16BIT_LOAD = re.compile(r"\bld\.global(?:\.[a-z0-9:]+)*?\.(?:b16|u16|s16|f16|bf16)\s")
_PTX_CP_ASYNC = re.compile(r"\bcp\.async\.c[ag]\.shared\.global\b")
_HGMMA_SHAPE = re.compile(r"^HGMMA\.(\d+)x(\d+)x(\d+)")


def ptx_facts(ptx: str) -> dict:
    """Facts of a kernel's PTX: ``{"ptx_scalar_16bit_loads": ld.global of a single 16-bit value,
    "ptx_cp_async": cp.async instructions, "ptx_vector_loads": ld.global.v2/v4/v8}`` (static
    counts)."""
    return dict(
        ptx_scalar_16bit_loads=len(_PTX_SCALAR_16BIT_LOAD.findall(ptx)),
        ptx_cp_async=len(_PTX_CP_ASYNC.findall(ptx)),
        ptx_vector_loads=len(re.findall(r"\bld\.global(?:\.[a-z0-9:]+)*?\.v[248]\.", ptx)),
    )


# "ttng.async_tma_copy_global_to_local %x_desc[%p0, %c0] %a_24, %bar, %true : !tt.tensordesc<...>, ... ->
# !ttg.memdesc<64x32xbf16, ...>" and "%a_24 = ttg.memdesc_index %a[%c0_i32] : !ttg.memdesc<4x64x32xbf16, ..."
# (Triton 3.6 and 3.8 alike)
_TTGIR_TMA_LOAD = re.compile(r"ttng\.async_tma_copy_global_to_local\s+%[\w.]+\[[^\]]*\]\s+(%[\w.]+)\s*,"
                             r".*?->\s*!ttg\.memdesc<((?:\d+x)+)")
_TTGIR_MEMDESC_DEF = re.compile(r"^\s*(%[\w.]+)\s*=\s*ttg\.memdesc_(?:index|subview)\s+%[\w.]+.*?:\s*"
                                r"!ttg\.memdesc<((?:\d+x)+)", re.M)


def ttgir_facts(ttgir: str) -> dict:
    """TMA facts of a kernel's TTGIR (Triton's GPU IR): ``{"tma_loads": n (descriptor loads
    the pipeliner made asynchronous copies), "tma_ring_min": the fewest shared-memory stages
    any of them lands in (None without TMA)}``.

    A TMA load of a pipelined loop writes one stage ``memdesc_index %buf[i]`` of a buffer of
    ``stages`` boxes (``!ttg.memdesc<4x64x32xbf16 ...>``: 4 stages, ``stages - 1`` loads in
    flight while one is multiplied); a load outside any ring writes a lone box (1 stage).
    """
    defs: dict = {}  # SSA name -> [(position, dims)]: names repeat across functions and regions
    for m in _TTGIR_MEMDESC_DEF.finditer(ttgir):
        defs.setdefault(m.group(1), []).append((m.start(), [int(d) for d in m.group(2).rstrip("x").split("x")]))
    rings = []
    for m in _TTGIR_TMA_LOAD.finditer(ttgir):
        box_rank = len(m.group(2).rstrip("x").split("x"))
        before = [d for pos, d in defs.get(m.group(1), []) if pos < m.start()]  # the nearest definition
        dims = before[-1] if before else None
        rings.append(dims[0] if dims is not None and len(dims) == box_rank + 1 else 1)
    return dict(tma_loads=len(rings), tma_ring_min=min(rings) if rings else None)


def _arch_int(arch: str) -> int:
    return int(arch[3:5])


def _plans(layer: str, arch: str, dtype: str, batch: int, schedules: Sequence[str]) -> list:
    """``aot.Plan`` s of the forward (each of ``schedules``; "auto" is the default) and the
    backward of one layer on one arch."""
    from .triton import aot

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

    from .triton import _cost
    from .triton._config import Target, gemm_tiles

    spec = GOOGLENET_INCEPTIONS[layer]
    channels = (spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj)
    nhw, elt, a = batch * spec.spatial ** 2, DTYPE_BYTES[dtype], _arch_int(arch)
    p = plan.plan
    if plan.stage == "forward":
        launches = _cost.forward_launches(p, channels, spec.kernel_sizes, nhw, elt, save_reduce=True)
        ctas = gemm_tiles(getattr(torch, _TORCH_DTYPE_NAME[dtype]), Target(a, None)).ctas_per_sm
    else:
        launches = _cost.backward_launches(p, channels, spec.kernel_sizes, nhw, elt)
        ctas = 2  # BackwardPlan: two programs per SM
    out = []
    for launch in launches:
        est = _cost.estimate(launch, a, p.nstage, ctas)
        out.append(dict(kernel=launch.kernel, macs=launch.macs, dram_bytes=launch.dram_bytes,
                        l2_bytes=launch.l2_bytes, n_width=round(launch.n_width, 1),
                        efficiency=round(est["efficiency"], 3), bound=est["bound"],
                        modeled_us=round(est["seconds"] * 1e6, 2)))
    return out


def _compile_task(task: tuple) -> dict:
    """Worker (no interpreter): rebuild one plan, compile one launch, return its code and facts."""
    import time

    from . import _cubin
    from .triton import aot

    stage, layer, arch, dtype, batch, schedule, index = task
    plan = aot.launches_of(stage, layer, _arch_int(arch), dtype=_TORCH_DTYPE_NAME[dtype], batch=batch,
                           schedule=schedule)
    launch = plan.launches[index]
    t0 = time.perf_counter()
    ck = aot.compile_launch(launch, _arch_int(arch))
    seconds = time.perf_counter() - t0
    cubin, ptx = ck.asm["cubin"], ck.asm["ptx"]
    sass = _cubin.sass(cubin)
    ((name, res),) = _cubin.resource_usage(cubin).items()
    facts = dict(
        registers=res["registers"], spill_bytes=res["stack_bytes"], local_bytes=res["local_bytes"],
        shared_bytes=ck.metadata.shared + res["shared_static_bytes"], num_warps=ck.metadata.num_warps,
        num_stages=launch[3].get("num_stages"), **sass_kernel_facts(sass), **ptx_facts(ptx),
        **ttgir_facts(ck.asm.get("ttgir", "")),
        occupancy=_cubin.occupancy(res["registers"], ck.metadata.shared + res["shared_static_bytes"],
                                   ck.metadata.num_warps, arch),
        compile_seconds=round(seconds, 1),
    )
    hg = [_HGMMA_SHAPE.match(op) for op in facts["mma_instructions"]]
    facts["hgmma_max_n"] = max((int(m.group(2)) for m in hg if m), default=None)
    return dict(symbol=name, cubin=cubin, ptx=ptx, sass=sass, facts=facts)


def _progress(iterable, total: int, desc: str):
    """tqdm progress on stderr when tqdm is installed (compiles take minutes), else plain."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: the report runs without it
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="kernel", file=sys.stderr, leave=False)


def dump_kernels(out_dir, layers: Sequence[str] = tuple(GOOGLENET_INCEPTIONS), archs: Sequence[str] = ARCHS,
                 dtype: str = "bf16", batch: int = BATCH, schedules: Sequence[str] = ("auto",),
                 workers: int = 2, progress: bool = True) -> dict:
    """Compile every kernel the launchers choose and write their code and the manifest.

    For each layer and arch: the forward of each of ``schedules`` (``"auto"`` = the default the
    module runs) and the backward, planned on 'meta' tensors as the module passes them
    (:mod:`inception_kernels.triton.aot`), compiled for ``sm_80`` / ``sm_90`` in ``workers``
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

    from .triton import aot

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
        for fut in (_progress(done, len(futures), "compiling kernels") if progress else done):
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
# The CUDA C++ extension's kernels (read from the built library)
# ---------------------------------------------------------------------------------------------

_SASS_ARCH = re.compile(r"^arch = (sm_\d+a?)\s*$", re.M)
_SASS_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$", re.M)


# "/*0a40*/  @!P0 HMMA.16816.F32.BF16 R4, R8, R12, R4 ;" -> ("HMMA.16816.F32.BF16", " R4, ...")
_SASS_FULL_OPCODE = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Za-z0-9_.]*)(.*)$")
# A scalar 16-bit load from global memory, direct or through a generic pointer: LDG.E.U16,
# LDG.E.U16.CONSTANT, LD.E.S16, ...
_SCALAR_16BIT_LOAD = re.compile(r"^LDG?\.E(?:\.[A-Z0-9]+)*?\.[US]16(?:\.|$)")
_DEPBAR_SB0 = re.compile(r"SB0,\s*(0x[0-9a-fA-F]+|\d+)")


def sass_kernel_facts(sass_body: str) -> dict:
    """Static facts of one kernel's SASS that show how its GEMMs are fed.

    Args:
        sass_body: the kernel's disassembly (``cuobjdump -sass``, one ``Function`` section).

    Returns:
        ``{"tensor_core_instructions": {base opcode: n}, "mma_instructions": {full opcode: n}
        (the MMA shapes, e.g. ``HMMA.16816.F32.BF16`` = mma.sync m16n8k16, ``HGMMA.64x64x16.F32.BF16``
        = wgmma m64n64k16), "ldgsts": n (cp.async), "utmaldg": n (TMA loads), "ldsm": n (ldmatrix),
        "scalar_16bit_loads": n (``LDG.E.U16`` and kin), "cp_async_wait_max": the largest N of
        ``DEPBAR.LE SB0, N`` (cp.async groups left in flight at a wait; None without one),
        "pipeline_stages": N + 2 (the stage being multiplied, the N still in flight, and the one
        issued next: the ring of stages the main loop cycles through; None without cp.async),
        "wgmma_groups": n (``WARPGROUP.ARRIVE``: each opens a run of warpgroup MMAs that chain
        without waiting for one another; as many as HGMMAs when ptxas serializes them),
        "global_stores_128": n (16-byte global stores, ``STG.E.128``)}``.
        Static counts of instructions in the binary, not executed counts.
    """
    from ._cubin import tensor_core_instructions

    mma: Counter = Counter()
    counts = Counter()
    waits = []
    for line in sass_body.splitlines():
        m = _SASS_FULL_OPCODE.match(line)
        if not m:
            continue
        op, rest = m.groups()
        base = op.split(".")[0]
        if base in ("HMMA", "HGMMA", "IMMA", "DMMA", "BMMA", "IGMMA", "QGMMA", "BGMMA"):
            mma[op] += 1
        elif base in ("LDGSTS", "UTMALDG", "LDSM"):
            counts[base.lower()] += 1
        elif op == "WARPGROUP.ARRIVE":
            counts["wgmma_groups"] += 1
        elif base == "STG" and ".128" in op:
            counts["global_stores_128"] += 1
        elif base == "DEPBAR":
            w = _DEPBAR_SB0.search(rest)
            if w:
                waits.append(int(w.group(1), 0))
        if _SCALAR_16BIT_LOAD.match(op):
            counts["scalar_16bit_loads"] += 1
    wait_max = max(waits) if waits else None
    return dict(
        tensor_core_instructions=tensor_core_instructions(sass_body + "\n"),
        mma_instructions=dict(sorted(mma.items())),
        ldgsts=counts["ldgsts"], utmaldg=counts["utmaldg"], ldsm=counts["ldsm"],
        scalar_16bit_loads=counts["scalar_16bit_loads"], cp_async_wait_max=wait_max,
        pipeline_stages=None if wait_max is None or not counts["ldgsts"] else wait_max + 2,
        wgmma_groups=counts["wgmma_groups"], global_stores_128=counts["global_stores_128"],
    )


def _sass_facts_per_kernel(sass_text: str) -> dict[str, dict[str, dict]]:
    """``{arch: {mangled kernel: sass_kernel_facts(...)}}`` from ``cuobjdump -sass`` of a fat
    binary (one section per embedded cubin, each headed ``arch = sm_XX``, kernels headed
    ``Function : name``)."""
    out: dict[str, dict[str, dict]] = {}
    arches = list(_SASS_ARCH.finditer(sass_text))
    for a, nxt in zip(arches, arches[1:] + [None]):
        section = sass_text[a.end(): nxt.start() if nxt else len(sass_text)]
        funcs = list(_SASS_FUNCTION.finditer(section))
        for f, fnxt in zip(funcs, funcs[1:] + [None]):
            body = section[f.end(): fnxt.start() if fnxt else len(section)]
            out.setdefault(a.group(1), {})[f.group(1)] = sass_kernel_facts(body)
    return out


def _arch_selected(arch: str, archs: Optional[Sequence[str]]) -> bool:
    """Whether ``arch`` of the binary is asked for: ``"sm_90"`` also selects ``"sm_90a"``."""
    return archs is None or arch in archs or arch.rstrip("a") in archs


def cuda_kernel_facts(archs: Optional[Sequence[str]] = None) -> dict:
    """Static facts of the CUDA C++ extension's kernels, per kernel and arch, from the built
    library (``cuobjdump -res-usage`` via :func:`inception_kernels._ext.extension_info`, and
    ``cuobjdump -sass`` for the tensor-core instructions). No GPU and no import of the library.

    Args:
        archs: keep these architectures only (default: every arch in the fat binary);
            ``"sm_90"`` also keeps the arch-specific ``"sm_90a"``.

    Returns:
        ``{"state", "reason", "path", "archs", "error", "kernels"}``: the extension's status
        and why (``state`` / ``reason`` of :func:`inception_kernels._ext.status`), and
        ``kernels``, one record per kernel and arch: ``arch``, ``kernel`` (demangled),
        ``mangled``, ``registers``, ``spill_bytes`` (stack frame: spills and local arrays),
        ``local_bytes``, ``shared_static_bytes`` (dynamic shared memory is chosen at launch and
        is not in the binary), and the SASS facts of :func:`sass_kernel_facts`
        (``tensor_core_instructions``, ``mma_instructions`` -- the MMA shapes --, ``ldgsts``,
        ``utmaldg``, ``ldsm``, ``scalar_16bit_loads``, ``cp_async_wait_max``,
        ``pipeline_stages``). ``kernels`` is empty when there is no library (``reason`` says
        why) or the tools failed (``error``).
    """
    from . import _cubin, _ext

    info = _ext.extension_info()
    out = dict(state=info["state"], reason=info["reason"], path=info["path"],
               archs=[a for a in info["archs"] if _arch_selected(a, archs)], error=info["error"], kernels=[])
    if info["path"] is None or info["error"]:
        return out
    try:
        sass_facts = _sass_facts_per_kernel(_cubin.sass(info["path"]))
    except (OSError, RuntimeError) as e:
        out["error"] = f"cuobjdump -sass failed: {e}"
        return out
    mangled = sorted({k for kernels in info["resources"].values() for k in kernels})
    names = _ext._demangle(mangled)
    for arch in out["archs"]:
        for k, res in sorted(info["resources"].get(arch, {}).items(), key=lambda kv: names[kv[0]]):
            out["kernels"].append(dict(
                arch=arch, kernel=names[k], mangled=k, registers=res["registers"], spill_bytes=res["stack_bytes"],
                local_bytes=res["local_bytes"], shared_static_bytes=res["shared_static_bytes"],
                **sass_facts.get(arch, {}).get(k, sass_kernel_facts("")),
            ))
    return out


#: The C++ template argument of each report dtype (the kernels are instantiated per type).
_CUDA_TYPES = {"bf16": ("__nv_bfloat16", "bfloat16"), "fp16": ("__half", "float16"), "fp32": ("float", "float32")}
#: The fused CUDA kernels of one module: (kernel, which plan entry is its dynamic shared memory).
_CUDA_LAUNCH_KERNELS = (("inception_fwd_kernel", 2), ("inception_reduce_grad_kernel", 4),
                        ("inception_grads_kernel", 5))
_CUDA_WARPS = 4  # 128 threads per block (csrc/inception_tiling.h kThreads)


def cuda_launch_facts(cuda: dict, layers: Sequence[str], dtype: str, batch: int) -> list[dict]:
    """Launch facts of the fused CUDA kernels per layer and arch: the forward's tile and grid,
    each kernel's dynamic shared memory (which cuobjdump cannot see) and the occupancy it
    allows with the kernel's registers, from the extension's own plan
    (``torch.ops.inception_kernels.cuda_fused_inception_plan``; no GPU needed).

    Args:
        cuda: :func:`cuda_kernel_facts` (registers per kernel and arch).
        layers: GoogLeNet layer keys (spatial sizes at 224x224).
        dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        batch: the modeled batch.

    Returns:
        One record per ``(layer, arch, kernel)``: ``layer, arch, kernel, tile`` (``[th, tw]``,
        forward only), ``blocks`` (forward only; the backward's grid depends on which gradients
        are needed), ``dynamic_smem_bytes``, ``registers`` and ``occupancy``
        (:func:`inception_kernels._cubin.occupancy` of the registers and the dynamic plus static
        shared memory). Empty when the extension is not loaded.
    """
    import torch

    from . import _cubin, _ext

    if not cuda["kernels"] or not _ext.status().loaded:
        return []
    tname, tdtype = _CUDA_TYPES[dtype][0], getattr(torch, _CUDA_TYPES[dtype][1])
    regs = {(k["arch"], name): (k["registers"], k["shared_static_bytes"]) for k in cuda["kernels"]
            for name, _ in _CUDA_LAUNCH_KERNELS if f"{name}<{tname}>" in k["kernel"]}
    out = []
    for layer in layers:
        spec = GOOGLENET_INCEPTIONS[layer]
        for arch in cuda["archs"]:
            limit = _cubin.ARCH_LIMITS[arch].shared_per_block
            plan = torch.ops.inception_kernels.cuda_fused_inception_plan(
                batch, spec.spatial, spec.spatial, spec.ch3x3red, spec.kernel_sizes[0], spec.ch5x5red,
                spec.kernel_sizes[1], tdtype, limit, int(arch[3:5]))
            for name, smem_index in _CUDA_LAUNCH_KERNELS:
                r, static = regs.get((arch, name), (None, 0))
                forward = name == "inception_fwd_kernel"
                out.append(dict(
                    layer=layer, arch=arch, kernel=f"{name}<{tname}>", tile=plan[:2] if forward else None,
                    blocks=plan[3] if forward else None, dynamic_smem_bytes=plan[smem_index], registers=r,
                    occupancy=None if r is None else _cubin.occupancy(r, plan[smem_index] + static, _CUDA_WARPS, arch),
                ))
    return out


def _cuda_launch_lines(launches: Sequence[dict], markdown: bool) -> list[str]:
    """Per layer: the forward's tile and grid, and each fused kernel's dynamic shared memory
    and occupancy (blocks per SM)."""
    if not launches:
        return []
    archs = sorted({r["arch"] for r in launches})
    by = {(r["layer"], r["arch"], r["kernel"].split("<")[0]): r for r in launches}
    layers = list(dict.fromkeys(r["layer"] for r in launches))

    def cell(layer, name):
        parts = []
        for a in archs:
            r = by[(layer, a, name)]
            occ = r["occupancy"]
            parts.append(f"{r['dynamic_smem_bytes'] / 1024:.1f} KiB, {occ['blocks_per_sm'] if occ else '?'} blk/SM")
        return " / ".join(parts)

    head = ["layer", "fwd tile", "fwd blocks", *(f"{n[len('inception_'):-len('_kernel')]} {'/'.join(archs)}"
                                                  for n, _ in _CUDA_LAUNCH_KERNELS)]
    rows = []
    for layer in layers:
        f = by[(layer, archs[0], "inception_fwd_kernel")]
        tile = "x".join(map(str, f["tile"])) if f["tile"][0] else "does not fit"
        rows.append([layer, tile, str(f["blocks"]), *(cell(layer, n) for n, _ in _CUDA_LAUNCH_KERNELS)])
    title = (f"CUDA C++ fused kernels per layer ({launches[0]['kernel'].split('<')[1].rstrip('>')}; dynamic shared "
             "memory from the extension's launch plan, occupancy modeled from registers + shared memory):")
    if markdown:
        return ["", title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    return ["", title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]


def _cuda_lines(cuda: dict, markdown: bool) -> list[str]:
    """The CUDA extension's section: one row per kernel and arch, or why there is none."""
    from .cli import _short_kernel

    if not cuda["kernels"]:
        why = cuda["error"] or (cuda["reason"] if cuda["path"] is None else "no kernels in the library")
        return [f"CUDA C++ extension kernels: none to report ({cuda['state']}: {why})"]
    head = ("arch", "regs", "spill B", "local B", "static smem B", "LDGSTS", "LDSM", "16-bit LDG", "stages",
            "MMA instructions (shape: count)", "kernel")
    rows = [(k["arch"][3:], str(k["registers"]), str(k["spill_bytes"]), str(k["local_bytes"]),
             str(k["shared_static_bytes"]), str(k["ldgsts"]), str(k["ldsm"]), str(k["scalar_16bit_loads"]),
             str(k["pipeline_stages"] or "-"),
             ",".join(f"{op}:{n}" for op, n in k["mma_instructions"].items()) or "-",
             _short_kernel(k["kernel"]))
            for k in cuda["kernels"]]
    no_spill = sum(k["spill_bytes"] == 0 and k["local_bytes"] == 0 for k in cuda["kernels"])
    title = (f"CUDA C++ extension kernels ({cuda['reason']}; static facts from cuobjdump of {cuda['path']}; "
             f"0 spill bytes {no_spill}/{len(cuda['kernels'])}; LDGSTS / LDSM / scalar 16-bit global loads and MMA "
             "instructions are static counts in the SASS; stages: the cp.async ring, largest DEPBAR.LE SB0, N + 2):")
    if markdown:
        return [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(r[:-1]) + f" | `{r[-1]}` |" for r in rows] + _cuda_launch_lines(
            cuda.get("launches", []), True)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: " ".join(c.ljust(w) if i in (9, 10) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [title] + [fmt(r).rstrip() for r in [head, *rows]] + _cuda_launch_lines(cuda.get("launches", []), False)


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
        dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        compile: compile the kernels for the static facts and targets (minutes; else None).
        batch: batch of the problem (spatial sizes are the layers' own at 224x224).
        workers: parallel compiles.
        dump: keep the compiled kernels and the manifest in this directory
            (:func:`dump_kernels`); None compiles into a temporary one.
        progress: a progress bar over the compiles.

    Returns:
        ``{"meta", "records", "targets", "manifest", "cuda_extension"}``: one record per
        ``(layer, arch)`` with the default schedule and its reason, launches (counted, fused and
        eager), useful and executed FLOPs forward and backward, the modeled time per launch,
        the other schedule's modeled time, and the static facts of each kernel (None without
        ``compile``); ``targets`` from :func:`check_targets`.

    Raises:
        ValueError: unknown layer, arch or dtype, or a batch < 1.
    """
    from ._cubin import ARCH_LIMITS
    from .triton import aot

    bad = [n for n in layers if n not in GOOGLENET_INCEPTIONS]
    if bad:
        raise ValueError(f"layers must be among {list(GOOGLENET_INCEPTIONS)}, got {bad}")
    bad = [a for a in archs if a not in ARCH_LIMITS or a not in ARCHS]
    if bad:
        raise ValueError(f"archs must be among {list(ARCHS)}, got {bad}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {list(DTYPE_BYTES)}, got {dtype!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    counts = count_all_launches(layers)
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
    from .triton import _cost

    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        measured=False,
        machines={f"sm_{a}": vars(m) for a, m in _cost.MACHINES.items()},
        notes=[
            "nothing here ran on a GPU: launches are counted under the Triton interpreter, FLOPs and bytes come "
            "from the launchers' plans, static facts from ahead-of-time compiles, and times from the model of "
            "inception_kernels.triton._cost (assumptions and sources listed there)",
            "modeled time per launch = max(executed MACs / (sustained MMA rate x efficiency), DRAM bytes / HBM, "
            "L2 bytes / L2 bandwidth) + launch overhead",
            "no speedup over eager or cuDNN is given: none has been measured (benchmarks/gpu_check.sh measures it)",
        ],
    )
    cuda = cuda_kernel_facts(archs)
    cuda["launches"] = cuda_launch_facts(cuda, layers, dtype, batch)
    return dict(meta=meta, records=records, targets=check_targets(manifest) if manifest else None,
                manifest=manifest, cuda_extension=cuda)


def _s(v) -> str:
    return "-" if v is None else str(v)


def _kernel_cell(name: str, f: dict) -> str:
    mma = ",".join(f"{op.split('.F32')[0]}x{n}" for op, n in f["mma_instructions"].items()) or "no MMA"
    return (f"{name}: {f['registers']} regs, {f['spill_bytes']} B spill, {round(f['shared_bytes'] / 1024)} KiB smem, "
            f"{f['occupancy']['blocks_per_sm']} CTA/SM, {mma}, cp.async {f['ldgsts']} "
            f"(wait<= {_s(f['cp_async_wait_max'])}), "
            + (f"TMA {f['utmaldg']} (ring {_s(f.get('tma_ring_min'))}), " if f["utmaldg"] else "")
            + f"16-bit scalar loads {f['ptx_scalar_16bit_loads']}")


def _target_lines(report: dict) -> list[str]:
    rows = report.get("targets")
    if rows is None:
        return ["targets: not checked (--no-compile)"]
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        bad = [f"{r['layer']}/{r['arch']} ({r['detail']})" for r in mine if not r["ok"]]
        out.append(f"target {target}: {sum(r['ok'] for r in mine)}/{len(mine)}"
                   + (f" -- missed: {'; '.join(bad)}" if bad else ""))
    errors = (report.get("manifest") or {}).get("errors") or []
    out += [f"compile failed: {e['layer']}/{e['arch']} {e['kernel']}: {e['error']}" for e in errors]
    return out


def format_table(report: dict) -> str:
    """The report for a terminal: one block per layer and arch."""
    recs = report["records"]
    head = recs[0] if recs else dict(batch=BATCH, dtype="bf16")
    lines = [f"Triton kernels, GoogLeNet Inception layers at 224x224, batch {head['batch']}, {head['dtype']}, "
             "channels_last -- static facts and a MODEL (nothing measured; no GPU)", ""]
    for r in recs:
        lines.append(
            f"{r['layer']} {r['arch']}: forward {r['schedule']} ({_s(r['launches_forward'])} launch), backward "
            f"{_s(r['launches_backward'])} launches (eager aten ops: {r['launches_forward_eager']} / "
            f"{r['launches_backward_eager']})")
        lines.append(f"  why: {r['reason']}")
        lines.append(
            f"  GFLOP forward {r['flops_forward'] / 1e9:.1f} useful, {r['flops_forward_executed'] / 1e9:.1f} executed "
            f"({r['flops_forward_executed'] / r['flops_forward']:.3f}x); backward {r['flops_backward'] / 1e9:.1f} "
            f"useful, {r['flops_backward_executed'] / 1e9:.1f} executed "
            f"({r['flops_backward_executed'] / r['flops_backward']:.3f}x)")
        for stage in ("forward", "backward"):
            parts = [f"{m['kernel']} {m['modeled_us']:.1f} us ({m['bound']}-bound, MMA efficiency {m['efficiency']:.2f})"
                     for m in r[f"model_{stage}"]]
            lines.append(f"  modeled {stage}: {r[f'modeled_{stage}_us']:.1f} us = " + " + ".join(parts))
        lines.append(f"  modeled forward as {r['other_schedule']}: {r['other_modeled_forward_us']:.1f} us, "
                     f"{r['other_flops_executed'] / r['flops_forward']:.3f}x the useful FLOPs")
        for name, f in (r["kernels"] or {}).items():
            lines.append("  " + _kernel_cell(name, f))
    lines += [""] + _target_lines(report) + [""] + [f"note: {n}" for n in report["meta"]["notes"]]
    if "cuda_extension" in report:
        lines += [""] + _cuda_lines(report["cuda_extension"], markdown=False)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The report as Markdown tables (for the README)."""
    recs = report["records"]
    lines = [
        "| layer | arch | forward schedule | launches fwd / bwd (eager aten ops) | GFLOP fwd useful / executed "
        "| GFLOP bwd useful / executed | modeled us fwd / bwd (bound) | regs / spill / MMA [/ TMA] (fwd kernels) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        bounds = "/".join(m["bound"] for m in r["model_forward"] + r["model_backward"])
        ks = r["kernels"] or {}
        static = "; ".join(
            f"{f['registers']} / {f['spill_bytes']} / "
            + (",".join(op.split(".F32")[0] for op in f["mma_instructions"]) or "-")
            + (f" / TMA ({f['utmaldg']} UTMALDG, ring {_s(f.get('tma_ring_min'))})" if f["utmaldg"] else "")
            for name, f in ks.items() if name.startswith("inception_fwd")) or "-"
        lines.append(
            f"| {r['layer']} | {r['arch']} | {r['schedule']} | {_s(r['launches_forward'])} / "
            f"{_s(r['launches_backward'])} ({r['launches_forward_eager']} / {r['launches_backward_eager']}) "
            f"| {r['flops_forward'] / 1e9:.1f} / {r['flops_forward_executed'] / 1e9:.1f} "
            f"| {r['flops_backward'] / 1e9:.1f} / {r['flops_backward_executed'] / 1e9:.1f} "
            f"| {r['modeled_forward_us']:.0f} / {r['modeled_backward_us']:.0f} ({bounds}) | {static} |"
        )
    lines += [""] + [f"- {t}" for t in _target_lines(report)]
    cuda = [""] + _cuda_lines(report["cuda_extension"], markdown=True) if "cuda_extension" in report else []
    return "\n".join(lines + cuda)


def add_arguments(parser) -> None:
    """Add the ``report`` options to an argparse parser."""
    parser.add_argument("--layers", default=",".join(GOOGLENET_INCEPTIONS),
                        help="comma-separated GoogLeNet layers, e.g. 3a,5b (default: all nine)")
    parser.add_argument("--arch", default=",".join(ARCHS), help="comma-separated architectures (default sm_80,sm_90)")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES))
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch size (default {BATCH})")
    parser.add_argument("--dump", metavar="DIR",
                        help="keep every compiled kernel: DIR/<layer>/<schedule>/<arch>/<kernel>.{cubin,ptx,sass} "
                             "and DIR/manifest.json")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiles and the static targets (fast)")
    parser.add_argument("--workers", type=int, default=2, help="parallel compiles")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables instead (for the README)")


def run_cli(args) -> int:
    """Run ``inception-kernels report`` with parsed ``args``; returns the exit code (1 when a
    compiled kernel misses a target or fails to compile, 2 for bad arguments)."""
    if args.dump and args.no_compile:
        print("inception-kernels report: --dump needs the compiles (drop --no-compile)", file=sys.stderr)
        return 2
    try:
        report = build_report(args.layers.split(","), args.arch.split(","), args.dtype, compile=not args.no_compile,
                              batch=args.batch, workers=args.workers, dump=args.dump)
    except ValueError as e:
        print(f"inception-kernels report: {e}", file=sys.stderr)
        return 2
    print(format_markdown(report) if args.markdown else format_table(report))
    if args.dump:
        print(f"kernels and manifest written to {args.dump}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in report.items() if k != "manifest"}, f, indent=1, default=str)
        print(f"report written to {args.json}")
    missed = [t for t in report["targets"] or [] if not t["ok"]]
    errors = (report["manifest"] or {}).get("errors") if report["manifest"] else None
    return 1 if missed or errors else 0
