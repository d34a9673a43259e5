"""The kernel report: why the fused kernels should be fast, argued without a GPU.

For each GoogLeNet Inception layer (at its 224x224 spatial size and a batch of 256) and each
forward schedule of the Triton launcher (``one_launch``, ``two_launch``), the report gives:

- **launches** per forward and per backward, *counted* with
  :func:`inception_kernels._launches.count_launches` on a small CPU run under the Triton
  interpreter (the count does not depend on the batch or spatial size), for the fused op and
  for eager PyTorch (:func:`inception_kernels.reference.inception` and its autograd backward).
  The eager figure is the number of aten compute ops. On CUDA each is at least one kernel, and
  more where cuDNN runs several: PyTorch adds a conv's bias in a separate kernel after the
  cuDNN convolution (inside ``aten.convolution``), and ``convolution_backward`` runs separate
  data-, weight- and bias-gradient kernels.
- **FLOPs** (:meth:`InceptionSpec.flops`; a backward is modeled as 2x the forward) and the
  FLOPs the fused tiles execute (tiles padded to full tensor-core blocks, halo recompute).
- **bytes moved** (forward), modeled -- see :func:`min_bytes`, :func:`fused_model`,
  :func:`eager_ops` for the models and their stated assumptions -- against the minimum.
- **static kernel facts** from the sm_80 and sm_90 cubins of every kernel the launchers pick,
  forward (per schedule) and backward (compiled ahead of time through
  :mod:`inception_kernels.triton.aot`, cached on disk): registers, spill (stack) bytes,
  shared memory, occupancy, tensor-core instruction counts.
- an **H100 roofline estimate** of the forward, fused against eager -- an *estimate* from
  datasheet peaks (:data:`H100`), never a measurement.
- the **CUDA C++ extension's kernels** beside the Triton ones (:func:`cuda_kernel_facts`):
  registers, spill (stack) and local bytes, static shared memory and tensor-core instruction
  counts per kernel and arch, read from the built library with ``cuobjdump``; where no
  extension is built, the reason.

Command line: ``inception-kernels report [--layers 3a,5b] [--arch sm_80,sm_90] [--dtype bf16]
[--no-compile] [--json PATH]``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from .spec import GOOGLENET_INCEPTIONS, InceptionSpec

__all__ = [
    "H100",
    "SCHEDULES",
    "DTYPE_BYTES",
    "min_bytes",
    "eager_ops",
    "fused_model",
    "count_all_launches",
    "kernel_facts",
    "cuda_kernel_facts",
    "sass_kernel_facts",
    "cuda_launch_facts",
    "build_report",
    "format_table",
    "format_markdown",
    "add_arguments",
    "run_cli",
]

SCHEDULES = ("one_launch", "two_launch")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_TORCH_DTYPE_NAME = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
BATCH = 256

#: Assumed H100 SXM5 figures (NVIDIA datasheet, dense, no sparsity) for the roofline estimate.
#: fp32 convolutions are assumed to run as TF32 (PyTorch's cuDNN default, and the fused
#: kernels follow ``torch.backends.cudnn.allow_tf32``). ``launch_s`` is an assumed per-kernel
#: launch + ramp overhead; ``l2_bytes`` the L2 capacity used by the DRAM model.
H100 = {
    "device": "H100 SXM5 (datasheet peaks, dense)",
    "tensor_flops": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},
    "fp32_simt_flops": 67e12,
    "hbm_bytes_per_s": 3.35e12,
    "l2_bytes": 50 * 2**20,
    "launch_s": 3e-6,
}


# ---------------------------------------------------------------------------------------------
# Bytes and FLOPs models
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


def _conv_list(spec: InceptionSpec):
    """The six convs as ``(name, cin, cout, k)``, in weight order."""
    k3, k5 = spec.kernel_sizes
    c = spec.in_channels
    return [
        ("conv1", c, spec.ch1x1, 1),
        ("conv3r", c, spec.ch3x3red, 1),
        ("conv3", spec.ch3x3red, spec.ch3x3, k3),
        ("conv5r", c, spec.ch5x5red, 1),
        ("conv5", spec.ch5x5red, spec.ch5x5, k5),
        ("convp", c, spec.pool_proj, 1),
    ]


def eager_ops(spec: InceptionSpec, n: int, h: int, w: int, elt: int, bias: bool = True) -> list[dict]:
    """The CUDA kernels of eager PyTorch's forward, modeled one by one.

    Model: every kernel reads its inputs from DRAM and writes its outputs to DRAM (no reuse
    through L2 between kernels -- at batch 256 each activation is tens of MB); a conv reads
    its input and weight once; PyTorch's cuDNN path adds a conv's bias in a separate in-place
    kernel (read + write the output); ReLU is out of place (read + write); max-pool writes the
    pooled map; ``cat`` reads the four branch outputs and writes ``y``.

    Args:
        spec: the module (its activation decides the ReLU kernels).
        n, h, w: batch and spatial size.
        elt: bytes per element.
        bias: the convs have biases.

    Returns:
        ``[{"op", "flops", "bytes"}]`` in execution order.
    """
    p = n * h * w
    relu = spec.activation == "relu"
    ops = []
    for name, cin, cout, k in _conv_list(spec):
        if name == "convp":
            ops.append(dict(op="maxpool", flops=0, bytes=2 * p * cin * elt))
        ops.append(dict(op=name, flops=2 * p * cin * cout * k * k, bytes=(p * cin + cout * cin * k * k + p * cout) * elt))
        if bias:
            ops.append(dict(op=f"{name}.bias", flops=p * cout, bytes=(2 * p * cout + cout) * elt))
        if relu:
            ops.append(dict(op=f"{name}.relu", flops=p * cout, bytes=2 * p * cout * elt))
    ops.append(dict(op="cat", flops=0, bytes=2 * p * spec.out_channels * elt))
    return ops


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pad(a: int, b: int) -> int:
    return _cdiv(a, b) * b


def fused_model(spec: InceptionSpec, n: int, h: int, w: int, elt: int, schedule: str, cfg: dict,
                l2_bytes: int = H100["l2_bytes"]) -> dict:
    """DRAM bytes and executed FLOPs of the fused forward, from the launcher's tiling.

    The tiling (``cfg``: ``BLOCK_M, BLOCK_N, BLOCK_K, TH, TW``) is what
    ``inception_fwd._pick_config`` returns. Model, forward without saving ``r3``/``r5``:

    ``one_launch``: persistent programs take jobs in order -- all K3-branch spatial tiles
    (job B), then all K5-branch tiles (C), then the 1x1 and pool pixel tiles (A). Within a job
    kind, the re-reads of ``x`` (one per reduce-channel chunk or output-channel tile, the
    halo, the pool's 9 taps) come from tiles that run at the same time: L2 hits. Across job
    kinds ``x`` is read from DRAM again when it does not fit in half the L2 (the other half
    holds the scratch, weights and the stream of ``y``): ``x`` passes = 3, else 1. The
    scratch (``programs x slot`` elements) is assumed L2-resident (it is sized by programs,
    not tiles, for that reason); weights are read from DRAM once and re-read from L2.

    ``two_launch``: launch 1 reads ``x`` once (all channel tiles of a pixel tile run
    together) and writes ``y1``, ``yp``, ``r3``, ``r5``; launch 2 reads ``r3``/``r5`` once
    (halo re-reads hit L2) and writes ``y3``, ``y5``. ``r3``/``r5`` are counted as DRAM
    traffic both ways (at batch 256 they exceed what L2 keeps between the launches).

    Args:
        spec: the module.
        n, h, w: batch and spatial size.
        elt: bytes per element.
        schedule: ``"one_launch"`` or ``"two_launch"``.
        cfg: the launcher's tile config.
        l2_bytes: L2 capacity assumed by the ``x`` passes rule.

    Returns:
        ``{"bytes_dram", "bytes_l2", "x_passes", "flops_executed", "scratch_bytes_per_program",
        "kernels": [{"flops", "bytes"}]}``: ``bytes_l2`` is every byte the tiles request from
        the memory system (DRAM + L2 hits), the upper bound if nothing were reused.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    bm, bn, bk, th, tw = (cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "TH", "TW"))
    cin = spec.in_channels
    c1, c3r, c3, c5r, c5, cp = (spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj)
    k3, k5 = spec.kernel_sizes
    p = n * h * w
    x_bytes = p * cin * elt
    y_bytes = p * spec.out_channels * elt
    w_bytes = spec.num_parameters * elt
    n_pt = _cdiv(p, bm)

    def gemm(m, nn, k):  # executed FLOPs of an [m, k] x [k, nn] tile product, padded to blocks
        return 2 * _pad(m, bm) * _pad(nn, bn) * _pad(k, bk)

    def pixel_jobs(src_c, couts, taps=1, pool=False):
        """Flat pixel-tile jobs over ``couts`` output-channel groups: (flops, L2-requested bytes)."""
        flops = l2 = 0
        for co, k in couts:
            tiles = _cdiv(co, bn)
            flops += n_pt * tiles * gemm(bm, bn, src_c) * k * k
            reads_a = (9 if pool else 1) * k * k * bm * src_c
            l2 += n_pt * tiles * (reads_a + bn * src_c * k * k + bm * bn) * elt
        return flops, l2

    if schedule == "one_launch":
        tiles = n * _cdiv(h, th) * _cdiv(w, tw)
        flops = l2 = 0
        slot = 0
        for cr, co, k in ((c3r, c3, k3), (c5r, c5, k5)):
            halo = (th + k - 1) * (tw + k - 1)
            slot = max(slot, halo * cr)
            rchunks = _cdiv(cr, bn)
            flops += tiles * (_cdiv(halo, bm) * rchunks * gemm(bm, bn, cin) + _cdiv(co, bn) * k * k * gemm(bm, bn, cr))
            l2 += tiles * elt * (
                rchunks * halo * cin + cr * cin  # x over tile + halo per reduce chunk; reduce weight
                + 2 * halo * cr  # scratch write + first read
                + _cdiv(co, bn) * (k * k * bm * cr + co * cr * k * k // _cdiv(co, bn) + bm * bn)
            )
        fa, la = pixel_jobs(cin, [(c1, 1)])
        fp, lp = pixel_jobs(cin, [(cp, 1)], pool=True)
        flops += fa + fp
        l2 += la + lp
        passes = 3 if x_bytes > l2_bytes // 2 else 1
        dram = passes * x_bytes + w_bytes + y_bytes
        kernels = [dict(flops=flops, bytes=dram)]
        return dict(bytes_dram=dram, bytes_l2=l2, x_passes=passes, flops_executed=flops,
                    scratch_bytes_per_program=slot * elt, kernels=kernels)

    r_bytes = p * (c3r + c5r) * elt
    f1a, l1a = pixel_jobs(cin, [(c1, 1), (c3r, 1), (c5r, 1)])
    f1p, l1p = pixel_jobs(cin, [(cp, 1)], pool=True)
    f2a, l2a = pixel_jobs(c3r, [(c3, k3)])
    f2b, l2b = pixel_jobs(c5r, [(c5, k5)])
    w1_bytes = (cin * (c1 + c3r + c5r + cp) + c1 + c3r + c5r + cp) * elt
    k1 = dict(flops=f1a + f1p, bytes=x_bytes + w1_bytes + p * (c1 + cp) * elt + r_bytes)
    k2 = dict(flops=f2a + f2b, bytes=r_bytes + (w_bytes - w1_bytes) + p * (c3 + c5) * elt)
    return dict(bytes_dram=k1["bytes"] + k2["bytes"], bytes_l2=l1a + l1p + l2a + l2b, x_passes=1,
                flops_executed=k1["flops"] + k2["flops"], scratch_bytes_per_program=0, kernels=[k1, k2])


def _roofline_s(kernels: Sequence[dict], dtype: str, peaks: dict = H100) -> float:
    """Sum over kernels of ``max(flops / peak, bytes / bandwidth) + launch overhead``; the
    tensor-core peak for convs, fp32 SIMT peak for elementwise kernels (no tensor work)."""
    total = 0.0
    for k in kernels:
        peak = peaks["tensor_flops"][dtype] if k.get("tensor", True) else peaks["fp32_simt_flops"]
        total += max(k["flops"] / peak, k["bytes"] / peaks["hbm_bytes_per_s"]) + peaks["launch_s"]
    return total


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
# Static kernel facts (ahead-of-time compiles, cached)
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


def _backward_plan(layer: str, tdt: str) -> list:
    """The launches the fused backward makes for ``layer`` at batch 256 (channels_last, biases,
    the layer's kernel sizes and activation), recorded on 'meta' tensors instead of run."""
    import torch

    from ._launches import _record_launches
    from .triton.backward import _inception_backward

    spec = GOOGLENET_INCEPTIONS[layer]
    dt, s, cl = getattr(torch, tdt), spec.spatial, torch.channels_last

    def act(c):
        return torch.empty(BATCH, c, s, s, device="meta", dtype=dt, memory_format=cl)

    y = act(spec.out_channels)
    weights = [torch.empty(shape, device="meta", dtype=dt) for shape in spec.weight_shapes]
    biases = [torch.empty(shape[0], device="meta", dtype=dt) for shape in spec.weight_shapes]
    with _record_launches() as launches:
        _inception_backward(act(spec.out_channels), act(spec.in_channels), y, act(spec.ch3x3red),
                            act(spec.ch5x5red), weights, biases, spec.kernel_sizes, spec.activation)
    return launches


def _plan(desc: tuple) -> list:
    """Launches of a plan descriptor ``(pass, layer, torch dtype name, schedule)``."""
    kind, layer, tdt, schedule = desc
    if kind == "forward":
        from .triton import aot

        return aot.launch_plan(layer, tdt, schedule, False)
    return _backward_plan(layer, tdt)


def _compile_task(task: tuple) -> dict:
    """Worker: rebuild one plan, compile one of its launches for one arch, read the cubin."""
    import time

    from . import _cubin
    from .triton import aot

    desc, index, arch = task
    t0 = time.perf_counter()
    ck = aot.compile_launch(_plan(desc)[index], int(arch[3:]))
    cubin = ck.asm["cubin"]
    ((name, res),) = _cubin.resource_usage(cubin).items()
    return dict(
        kernel=name, arch=arch, registers=res["registers"], stack_bytes=res["stack_bytes"],
        local_bytes=res["local_bytes"], shared_bytes=ck.metadata.shared + res["shared_static_bytes"],
        num_warps=ck.metadata.num_warps, tensor_core=_cubin.tensor_core_instructions(cubin),
        compile_seconds=round(time.perf_counter() - t0, 1),
    )


def _worker_init() -> None:
    os.environ.pop("TRITON_INTERPRET", None)  # @triton.jit must make compilable functions


def kernel_facts(layers: Sequence[str], dtype: str, archs: Sequence[str], workers: int = 2) -> dict:
    """Registers, spills, shared memory and tensor-core counts of every kernel the launchers
    pick -- the forward per schedule and the backward -- per layer and arch, from
    ahead-of-time compiles.

    Launches come from the launchers themselves run on 'meta' tensors
    (:func:`inception_kernels.triton.aot.launch_plan` for the forward, the same recording for
    the backward); each distinct specialization is compiled once with
    :func:`inception_kernels.triton.aot.compile_launch` in ``workers`` processes without the
    interpreter. Results are cached in ``~/.cache/inception_kernels/aot``
    (``$INCEPTION_KERNELS_CACHE/aot``) keyed by the kernel sources' hash, Triton's version,
    the launch's specialization and the arch.

    Args:
        layers: GoogLeNet layer keys.
        dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        archs: ``"sm_80"`` / ``"sm_90"``.
        workers: parallel compiles.

    Returns:
        ``{(layer, schedule or "backward", arch): [per-launch facts]}``, or instead of the list
        a string saying why a kernel of that entry did not compile.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .triton import aot

    tdt = _TORCH_DTYPE_NAME[dtype]
    src = _source_hash()
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    def path_for(key, arch):
        return cache / f"{hashlib.sha256(repr((src, key, arch)).encode()).hexdigest()[:24]}.json"

    descs = [("forward", layer, tdt, sch) for layer in layers for sch in SCHEDULES]
    descs += [("backward", layer, tdt, None) for layer in layers]
    keys = {d: [aot.specialization_key(launch) for launch in _plan(d)] for d in descs}
    todo = {}  # (key, arch) -> task: each distinct kernel compiled once
    for d in descs:
        for i, k in enumerate(keys[d]):
            for arch in archs:
                if not path_for(k, arch).exists():
                    todo.setdefault((k, arch), (d, i, arch))
    errors = {}
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {ka: pool.submit(_compile_task, task) for ka, task in todo.items()}
            for (k, arch), fut in futures.items():
                try:
                    path_for(k, arch).write_text(json.dumps(fut.result()))
                except Exception as e:  # noqa: BLE001 -- a kernel that does not compile is a finding
                    msg = str(e).strip().splitlines()
                    errors[(k, arch)] = f"{type(e).__name__}: {msg[-1] if msg else ''}"
    out = {}
    for (kind, layer, _, schedule) in descs:
        for arch in archs:
            ks = keys[(kind, layer, tdt, schedule)]
            errs = [errors[(k, arch)] for k in ks if (k, arch) in errors]
            out[(layer, schedule or kind, arch)] = (
                errs[0] if errs else [json.loads(path_for(k, arch).read_text()) for k in ks]
            )
    return out


def _summarize_kernels(ks, arch: str) -> dict:
    """Aggregate per-launch facts: the worst registers / spills / shared memory / occupancy
    over the launches, tensor-core instruction counts summed."""
    from ._cubin import occupancy

    if not isinstance(ks, list):
        return dict(registers=None, spill_bytes=None, shared_bytes=None, num_warps=None,
                    tensor_core_instructions=None, occupancy=None, blocks_per_sm=None, kernels=None,
                    compile_error=ks)
    occ = [occupancy(k["registers"], k["shared_bytes"], k["num_warps"], arch) for k in ks]
    tc: dict = {}
    for k in ks:
        for op, c in k["tensor_core"].items():
            tc[op] = tc.get(op, 0) + c
    return dict(
        registers=max(k["registers"] for k in ks),
        spill_bytes=max(k["stack_bytes"] for k in ks),
        shared_bytes=max(k["shared_bytes"] for k in ks),
        num_warps=max(k["num_warps"] for k in ks),
        tensor_core_instructions=tc,
        occupancy=min(o["occupancy"] for o in occ),
        blocks_per_sm=min(o["blocks_per_sm"] for o in occ),
        kernels=[dict(k, occupancy=o) for k, o in zip(ks, occ)],
        compile_error=None,
    )


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


def _pick_config(spec: InceptionSpec, h: int, w: int, dtype: str) -> dict:
    import torch

    from .triton.inception_fwd import _pick_config as pick

    c = spec
    return pick((c.in_channels, c.ch1x1, c.ch3x3red, c.ch3x3, c.ch5x5red, c.ch5x5, c.pool_proj), h, w,
                getattr(torch, _TORCH_DTYPE_NAME[dtype]))


def build_report(layers: Sequence[str] = tuple(GOOGLENET_INCEPTIONS), archs: Sequence[str] = ("sm_80", "sm_90"),
                 dtype: str = "bf16", compile: bool = True, batch: int = BATCH, workers: int = 2) -> dict:
    """Build the report's records.

    Args:
        layers: GoogLeNet layer keys.
        archs: architectures of the static columns.
        dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        compile: compile the kernels for the static columns (else they are None).
        batch: batch of the modeled problem (spatial sizes are the layers' own at 224x224).
        workers: parallel compiles.

    Returns:
        ``{"meta": {...assumptions...}, "records": [...], "cuda_extension": {...}}``, one
        record per ``(layer, schedule, arch)`` with at least ``layer, schedule, arch,
        launches_forward, launches_backward, flops, bytes_modeled, bytes_min, registers,
        spill_bytes, shared_bytes, tensor_core_instructions, occupancy`` and the estimates
        (the Triton kernels); ``cuda_extension`` is :func:`cuda_kernel_facts` for ``archs``
        with ``launches`` (:func:`cuda_launch_facts`) added.

    Raises:
        ValueError: unknown layer, arch or dtype.
    """
    from ._cubin import ARCH_LIMITS

    bad = [n for n in layers if n not in GOOGLENET_INCEPTIONS]
    if bad:
        raise ValueError(f"layers must be among {list(GOOGLENET_INCEPTIONS)}, got {bad}")
    bad = [a for a in archs if a not in ARCH_LIMITS]
    if bad:
        raise ValueError(f"archs must be among {sorted(ARCH_LIMITS)}, got {bad}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {list(DTYPE_BYTES)}, got {dtype!r}")
    elt = DTYPE_BYTES[dtype]
    counts = count_all_launches(layers)
    facts = kernel_facts(layers, dtype, archs, workers=workers) if compile else {}
    records = []
    for name in layers:
        spec = GOOGLENET_INCEPTIONS[name]
        s = spec.spatial
        cfg = _pick_config(spec, s, s, dtype)
        flops = spec.flops(batch, s, s)
        b_min = min_bytes(spec, batch, s, s, elt)
        eager = eager_ops(spec, batch, s, s, elt)
        for k in eager:
            k["tensor"] = k["op"].startswith("conv") and "." not in k["op"]
        eager_bytes = sum(k["bytes"] for k in eager)
        eager_s = _roofline_s(eager, dtype)
        ce = counts[name]["eager"]
        for schedule in SCHEDULES:
            fm = fused_model(spec, batch, s, s, elt, schedule, cfg)
            fused_s = _roofline_s(fm["kernels"], dtype)
            cf = counts[name][schedule]
            base = dict(
                layer=name, schedule=schedule, batch=batch, spatial=s, dtype=dtype, config=cfg,
                launches_forward=cf["forward"]["total"] if cf["forward"] else None,
                launches_backward=cf["backward"]["total"] if cf["backward"] else None,
                launches_backward_reason=cf.get("backward_reason"),
                launches_backward_via=cf.get("backward_via"),
                launches_counted_via=cf.get("via"),
                launches_forward_eager=ce["forward"]["total"],
                launches_backward_eager=ce["backward"]["total"],
                eager_forward_ops=ce["forward"]["aten_ops"],
                flops=flops, flops_backward=2 * flops, flops_executed=fm["flops_executed"],
                bytes_min=b_min, bytes_modeled=fm["bytes_dram"], bytes_l2_requested=fm["bytes_l2"],
                bytes_eager_modeled=eager_bytes, x_dram_passes=fm["x_passes"],
                scratch_bytes_per_program=fm["scratch_bytes_per_program"],
                bytes_ratio=fm["bytes_dram"] / b_min, bytes_ratio_eager=eager_bytes / b_min,
                estimate_fused_us=fused_s * 1e6, estimate_eager_us=eager_s * 1e6,
                estimate_speedup=eager_s / fused_s,
                estimate_bound_us=max(flops / H100["tensor_flops"][dtype], b_min / H100["hbm_bytes_per_s"]) * 1e6,
            )
            for arch in archs:
                rec = dict(base, arch=arch)
                skipped = "not compiled (--no-compile)"
                fwd = _summarize_kernels(facts[(name, schedule, arch)] if compile else skipped, arch)
                bwd = _summarize_kernels(facts[(name, "backward", arch)] if compile else skipped, arch)
                rec.update(fwd, **{f"backward_{k}": v for k, v in bwd.items()})
                if not compile:
                    rec.update(compile_error=None, backward_compile_error=None)
                records.append(rec)
    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        measured=False,
        peaks=H100,
        notes=[
            "estimates are roofline ESTIMATES from datasheet peaks plus an assumed per-launch overhead, "
            "not measurements; no GPU was used",
            "launches are counted on a small CPU run (Triton interpreter) and do not depend on size; eager "
            "counts are aten compute ops: on CUDA a biased conv adds a bias kernel inside aten.convolution and "
            "cuDNN may run several kernels per op",
            "backward FLOPs are modeled as 2x forward",
            "bytes_modeled: DRAM model of fused_model(); bytes_eager_modeled: eager_ops() model; both forward",
        ],
    )
    cuda = cuda_kernel_facts(archs)
    cuda["launches"] = cuda_launch_facts(cuda, layers, dtype, batch)
    return dict(meta=meta, records=records, cuda_extension=cuda)


def _fmt_bytes(b: Optional[float]) -> str:
    return "-" if b is None else f"{b / 1e6:8.1f}"


def format_table(report: dict) -> str:
    """A terminal table of the report (one line per layer, schedule and arch)."""
    recs = report["records"]
    lines = [
        f"Inception layers, batch {recs[0]['batch'] if recs else '-'}, {recs[0]['dtype'] if recs else ''} "
        f"-- static facts and H100 ESTIMATES (no GPU measured)",
        f"{'layer':5} {'schedule':10} {'arch':5} {'fwd':>3} {'bwd':>3} {'eag f/b':>7} {'GFLOP':>6} {'exec':>6} "
        f"{'MB min':>8} {'MB fused':>8} {'MB eager':>8} {'regs':>4} {'spill':>5} {'smem KB':>7} {'occ':>5} "
        f"{'tensor-core':16} {'bwd regs/spill':>14} {'est fused us':>12} {'est eager us':>12} {'est x':>6}",
    ]
    for r in recs:
        tc = ",".join(f"{k}:{v}" for k, v in (r["tensor_core_instructions"] or {}).items()) or "-"
        if r["tensor_core_instructions"] is None:
            tc = "compile failed" if r.get("compile_error") else "(not compiled)"
        occ = "-" if r["occupancy"] is None else f"{r['occupancy']:.2f}"
        bwd = "-" if r.get("backward_registers") is None else f"{r['backward_registers']}/{r['backward_spill_bytes']}"
        lines.append(
            f"{r['layer']:5} {r['schedule']:10} {r['arch'][3:]:5} "
            f"{_s(r['launches_forward']):>3} {_s(r['launches_backward']):>3} "
            f"{r['launches_forward_eager']:>3}/{r['launches_backward_eager']:<3} {r['flops'] / 1e9:6.1f} "
            f"{r['flops_executed'] / 1e9:6.1f} "
            f"{_fmt_bytes(r['bytes_min'])} {_fmt_bytes(r['bytes_modeled'])} {_fmt_bytes(r['bytes_eager_modeled'])} "
            f"{_s(r['registers']):>4} {_s(r['spill_bytes']):>5} "
            f"{'-' if r['shared_bytes'] is None else round(r['shared_bytes'] / 1024, 1):>7} "
            f"{occ:>5} "
            f"{tc:16} {bwd:>14} {r['estimate_fused_us']:12.1f} {r['estimate_eager_us']:12.1f} {r['estimate_speedup']:6.2f}"
        )
    reasons = {r["launches_backward_reason"] for r in recs if r["launches_backward_reason"]}
    for reason in sorted(reasons):
        lines.append(f"bwd '-': {reason}")
    for via in sorted({r["launches_backward_via"] for r in recs if r.get("launches_backward_via")}):
        lines.append(f"bwd counted via {via}")
    for err in sorted({f"{r['schedule']} {r['arch']}: {r['compile_error']}" for r in recs if r.get("compile_error")}
                      | {f"backward {r['arch']}: {r['backward_compile_error']}" for r in recs
                         if r.get("backward_compile_error")}):
        lines.append(f"compile failed: {err}")
    lines += _target_summary(recs)
    p = report["meta"]["peaks"]
    lines.append(
        f"Estimate = sum over kernels of max(FLOPs / peak, bytes / HBM) + {p['launch_s'] * 1e6:.0f} us per launch; "
        f"assumed {p['device']}: tensor {p['tensor_flops']['bf16'] / 1e12:.0f} TFLOP/s bf16/fp16, "
        f"{p['tensor_flops']['fp32'] / 1e12:.0f} tf32, {p['fp32_simt_flops'] / 1e12:.0f} fp32 SIMT, "
        f"HBM {p['hbm_bytes_per_s'] / 1e12:.2f} TB/s."
    )
    lines.append("eag f/b: eager aten ops forward/backward (CUDA kernels >= these). exec: GFLOP the fused tiles "
                 "execute (padding, halo). MB: forward DRAM bytes, modeled.")
    if "cuda_extension" in report:
        lines += [""] + _cuda_lines(report["cuda_extension"], markdown=False)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The report as a Markdown table, one row per layer and schedule (archs side by side)."""
    recs = report["records"]
    archs = sorted({r["arch"] for r in recs})
    by = {(r["layer"], r["schedule"], r["arch"]): r for r in recs}

    def per_arch(layer, schedule, fn):
        return " / ".join(fn(by[(layer, schedule, a)]) for a in archs)

    def static(r, prefix=""):
        if r[f"{prefix}registers"] is None:
            return "-"
        tc = ",".join(f"{k} {v}" for k, v in r[f"{prefix}tensor_core_instructions"].items()) or "none"
        return f"{r[f'{prefix}registers']} r, {r[f'{prefix}spill_bytes']} B spill, {tc}"

    arch_names = " / ".join(archs)
    lines = [
        f"| layer | schedule | launches fwd / bwd (eager aten ops) | GFLOP (executed) | MB min / fused / eager "
        f"| fwd kernels {arch_names} | bwd kernels {arch_names} | estimate us fused / eager (x) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen = []
    for r in recs:
        key = (r["layer"], r["schedule"])
        if key in seen:
            continue
        seen.append(key)
        lines.append(
            f"| {r['layer']} | {r['schedule']} | {_s(r['launches_forward'])} / {_s(r['launches_backward'])} "
            f"({r['launches_forward_eager']} / {r['launches_backward_eager']}) "
            f"| {r['flops'] / 1e9:.1f} ({r['flops_executed'] / 1e9:.1f}) "
            f"| {r['bytes_min'] / 1e6:.0f} / {r['bytes_modeled'] / 1e6:.0f} / {r['bytes_eager_modeled'] / 1e6:.0f} "
            f"| {per_arch(*key, static)} | {per_arch(*key, lambda q: static(q, 'backward_'))} "
            f"| {r['estimate_fused_us']:.0f} / {r['estimate_eager_us']:.0f} ({r['estimate_speedup']:.2f}x) |"
        )
    cuda = [""] + _cuda_lines(report["cuda_extension"], markdown=True) if "cuda_extension" in report else []
    return "\n".join(lines + [""] + _target_summary(recs) + cuda)


def _target_summary(recs: Sequence[dict]) -> list[str]:
    """Lines checking docs/design.md §7's static targets, per schedule, over the records' layers."""
    lines = []
    for schedule in SCHEDULES:
        rs = [r for r in recs if r["schedule"] == schedule]
        if not rs:
            continue
        layers = sorted({r["layer"] for r in rs})
        compiled = [r for r in rs if r["registers"] is not None]
        checks = [
            ("forward 1 launch", [r["launches_forward"] == 1 for r in rs]),
            ("backward <= 3 launches", [r["launches_backward"] is not None and r["launches_backward"] <= 3 for r in rs]),
            ("modeled DRAM <= 1.2x min", [r["bytes_ratio"] <= 1.2 for r in rs]),
        ]
        if compiled:
            checks += [("0 spill bytes", [r["spill_bytes"] == 0 for r in compiled]),
                       ("tensor cores", [bool(r["tensor_core_instructions"]) for r in compiled]),
                       ("backward 0 spill bytes", [r.get("backward_spill_bytes") == 0 for r in compiled]),
                       ("backward tensor cores", [bool(r.get("backward_tensor_core_instructions")) for r in compiled])]
        speedups = [r["estimate_speedup"] for r in rs]
        geo = math.exp(sum(math.log(v) for v in speedups) / len(speedups))
        parts = [f"{name} {sum(ok)}/{len(ok)}" for name, ok in checks]
        lines.append(f"targets [{schedule}, {len(layers)} layers x {len(rs) // len(layers)} archs]: "
                     + ", ".join(parts) + f"; estimated speedup vs eager, geo-mean {geo:.2f}x (estimate)")
    return lines


def _s(v) -> str:
    return "-" if v is None else str(v)


def add_arguments(parser) -> None:
    """Add the ``report`` options to an argparse parser."""
    parser.add_argument("--layers", default=",".join(GOOGLENET_INCEPTIONS),
                        help="comma-separated GoogLeNet layers, e.g. 3a,5b (default: all nine)")
    parser.add_argument("--arch", default="sm_80,sm_90", help="comma-separated cubin architectures (default sm_80,sm_90)")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES))
    parser.add_argument("--no-compile", action="store_true", help="skip the cubin columns (fast)")
    parser.add_argument("--workers", type=int, default=2, help="parallel compiles")
    parser.add_argument("--json", metavar="PATH", help="also write the records as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead (for the README)")


def run_cli(args) -> int:
    """Run ``inception-kernels report`` with parsed ``args``; returns the exit code."""
    try:
        report = build_report(args.layers.split(","), args.arch.split(","), args.dtype, compile=not args.no_compile,
                              workers=args.workers)
    except ValueError as e:
        print(f"inception-kernels report: {e}", file=sys.stderr)
        return 2
    report["meta"]["command"] = "inception-kernels report " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
        for k, v in sorted(vars(args).items()) if k in ("layers", "arch", "dtype", "no_compile") and v
    )
    print(format_markdown(report) if args.markdown else format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"records written to {args.json}")
    return 0
