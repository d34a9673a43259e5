"""GPU benchmarks: the fused Inception kernels against PyTorch eager (cuDNN) and torch.compile.

Two suites share the cases defined here, so the pytest-benchmark files in ``benchmarks/`` and
``inception-kernels bench`` measure the same things:

- ``layers``: one Inception module (the nine of GoogLeNet at their 224x224 spatial sizes
  28/14/7), forward (``fwd``) or forward + backward (``fwdbwd``);
- ``googlenet``: the whole network, inference (``infer``, eval mode, no grad), the same
  inference captured in a CUDA graph and replayed (``infer_graph``: launch overhead removed,
  as a deployed batch-1 server would run it), or one training step (``train``: forward with
  the aux heads, :func:`googlenet_loss`, backward, SGD step).

Implementations (``impls``):

- ``fused``: the Triton kernels (``fused_inception(..., backend="triton")``; for the whole net,
  ``inception_kernels.fuse(model)``), channels_last input; ``fused_two_launch``: the
  launcher's two-launch schedule (layers, forward only), for comparison; ``fused_cuda``: the
  CUDA C++ kernels (``backend="cuda"``; for the whole net ``fuse(model, backend="cuda")``),
  channels_last, where the extension is built (else the case is unavailable, with the reason);
- ``eager``: PyTorch eager (cuDNN), NCHW; ``eager_cl``: the same, channels_last;
- ``compile``: ``torch.compile`` (default mode), channels_last;
  ``compile_max``: ``torch.compile(mode="max-autotune")``, channels_last.

Precision: fp16/bf16 layer cases run in that dtype; whole-network cases run the model in that
dtype for ``infer`` and under ``torch.autocast`` (fp32 master weights, no grad scaler) for
``train``. fp32 follows PyTorch's TF32 switches, whose values the results record.

Timing: :func:`triton.testing.do_bench` (warm-up first; the L2 cache is flushed before every
run), median with the 10th/90th percentiles as the spread; ``infer_graph`` cases use
:func:`triton.testing.do_bench_cudagraph` (the calls unrolled into one CUDA graph, replayed
10 times; no L2 flush). TFLOP/s uses the model FLOPs
(layers: :meth:`InceptionSpec.flops`, backward = 2x forward; network: counted with
``torch.utils.flop_counter``), effective GB/s uses the minimum bytes of
:func:`inception_kernels.tools.report.min_bytes`. Every number these produce is a measurement on the
device named in the output; without a CUDA device nothing runs.
"""

from __future__ import annotations

import csv
import datetime
import functools
import json
import math
import os
import platform
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..spec import GOOGLENET_INCEPTIONS, InceptionSpec
from .ui import dtype_help, dtype_type, short_dtype

__all__ = [
    "BenchCase",
    "DTYPES",
    "IMPLS",
    "QUICK",
    "SKIP_MESSAGE",
    "layer_case",
    "googlenet_case",
    "measure",
    "run",
    "run_pytest_benchmark",
    "add_arguments",
    "run_cli",
    "write_results",
]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_DTYPE_NAMES = ("float16", "bfloat16", "float32")  # the same, canonical names (what --help shows)
IMPLS = ("fused", "fused_two_launch", "fused_cuda", "eager", "eager_cl", "compile", "compile_max")
LAYER_MODES = ("fwd", "fwdbwd")
NET_MODES = ("infer", "train", "infer_graph")
BATCHES = (1, 32, 256)

#: The ``--quick`` preset: a subset that fits a ~10 minute GPU session (no torch.compile,
#: whose compiles take minutes; add them with ``--impls``).
QUICK = dict(
    suites=("layers", "googlenet"),
    layers=tuple(GOOGLENET_INCEPTIONS),
    batches=(256,),
    dtypes=("bf16",),
    modes=("fwd", "fwdbwd", "infer", "train"),
    impls=("fused", "fused_two_launch", "fused_cuda", "eager", "eager_cl"),
)

SKIP_MESSAGE = (
    "benchmarks skipped: no CUDA device (torch.cuda.is_available() is False). "
    "They measure GPU kernels and run only where a GPU exists."
)


@dataclass
class BenchCase:
    """One measurement: a callable to time plus what it computes.

    Args:
        suite: ``"layers"`` or ``"googlenet"``.
        name: the layer (``"3a"``...) or the network variant.
        batch, dtype, mode, impl: the case's coordinates.
        fn: the callable to time (``None`` when the case is unavailable).
        flops: model FLOPs of one call.
        bytes_min: minimum DRAM bytes of one call (0 when not modeled).
        grad_to_none: tensors whose ``.grad`` is reset between runs.
        unavailable: why the case cannot run here (``fn`` is then ``None``).
        cuda_graph: time ``fn`` captured in a CUDA graph (mode ``infer_graph``).
    """

    suite: str
    name: str
    batch: int
    dtype: str
    mode: str
    impl: str
    fn: Optional[Callable[[], object]] = None
    flops: int = 0
    bytes_min: int = 0
    grad_to_none: Sequence[torch.Tensor] = field(default_factory=tuple)
    unavailable: Optional[str] = None
    cuda_graph: bool = False

    @property
    def key(self) -> dict:
        """The case's coordinates, for records and benchmark names."""
        return dict(suite=self.suite, name=self.name, batch=self.batch, dtype=self.dtype, mode=self.mode,
                    impl=self.impl)


def _check_choice(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{name} must be among {list(allowed)}, got {bad}")


def _generator(device: str, seed: int) -> Optional[torch.Generator]:
    """A seeded generator on ``device`` (random inputs are made where they are used: a CPU
    randn of a batch-256 activation takes longer than timing the layer); None on 'meta'."""
    if torch.device(device).type == "meta":
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _random_params(spec: InceptionSpec, dtype: torch.dtype, device: str, channels_last: bool, grad: bool):
    """Weights scaled like Kaiming init (activations stay O(1) in fp16) and small biases."""
    gen = _generator(device, 0)
    weights, biases = [], []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for shape in spec.weight_shapes:
        fan_in = shape[1] * shape[2] * shape[3]
        w = torch.randn(shape, generator=gen, device=device) * math.sqrt(2.0 / fan_in)
        b = torch.randn(shape[0], generator=gen, device=device) * 0.1
        weights.append(w.to(device=device, dtype=dtype, memory_format=fmt).requires_grad_(grad))
        biases.append(b.to(device=device, dtype=dtype).requires_grad_(grad))
    return weights, biases


def _compiled(fn: Callable, impl: str) -> Callable:
    """``torch.compile`` with the mode ``impl`` names; dynamo's cache is reset so that the
    recompile limit never sends a case back to eager."""
    torch._dynamo.reset()
    return torch.compile(fn, mode="max-autotune" if impl == "compile_max" else None)


def _fused_backend(impl: str) -> str:
    """The ``fused_inception`` backend of a fused impl ("fused": Triton, "fused_cuda": the CUDA
    extension); raises :class:`_Unavailable` with the reason where the CUDA backend cannot run."""
    if impl != "fused_cuda":
        return "triton"
    from .. import _backends

    status = _backends.cuda_status()
    if not status.available:
        raise _Unavailable(f"backend 'cuda': {status.reason}")
    return "cuda"


def _layer_forward(impl: str, spec: InceptionSpec) -> Callable:
    from .. import reference

    kw = dict(kernel_sizes=spec.kernel_sizes, activation=spec.activation)
    if impl in ("fused", "fused_cuda"):
        import inception_kernels

        fused = getattr(inception_kernels, "fused_inception", None)
        if fused is None:
            raise _Unavailable("inception_kernels.fused_inception is not available in this build")
        return functools.partial(fused, backend=_fused_backend(impl), **kw)
    if impl == "fused_two_launch":
        from ..triton.inception_fwd import _inception_forward

        def two_launch(x, weights, biases):
            return _inception_forward(x, weights, biases, spec.kernel_sizes, spec.activation,
                                      schedule="two_launch")[0]

        return two_launch

    def fwd(x, weights, biases):
        return reference.inception(x, weights, biases, **kw)

    return _compiled(fwd, impl) if impl.startswith("compile") else fwd


class _Unavailable(Exception):
    """A case that cannot run in this build (a missing backend or entry point)."""


def layer_case(name: str, batch: int, dtype: str, mode: str, impl: str, device: str = "cuda") -> BenchCase:
    """Build one Inception-layer case at its 224x224 spatial size.

    Args:
        name: a key of :data:`GOOGLENET_INCEPTIONS` (``"3a"`` ... ``"5b"``).
        batch: batch size.
        dtype: ``"fp16"``, ``"bf16"`` or ``"fp32"``.
        mode: ``"fwd"`` or ``"fwdbwd"``.
        impl: one of :data:`IMPLS`.
        device: where the tensors live.

    Returns:
        The case (``unavailable`` set when this build cannot run it).
    """
    from .report import min_bytes

    _check_choice("layer", [name], list(GOOGLENET_INCEPTIONS))
    _check_choice("dtype", [dtype], list(DTYPES))
    _check_choice("mode", [mode], LAYER_MODES)
    _check_choice("impl", [impl], IMPLS)
    spec = GOOGLENET_INCEPTIONS[name]
    s = spec.spatial
    case = BenchCase("layers", name, batch, dtype, mode, impl)
    elt = torch.finfo(DTYPES[dtype]).bits // 8
    case.flops = spec.flops(batch, s, s) * (3 if mode == "fwdbwd" else 1)
    case.bytes_min = min_bytes(spec, batch, s, s, elt, backward=(mode == "fwdbwd"))
    try:
        if impl == "fused_two_launch" and mode != "fwd":
            raise _Unavailable("the two-launch schedule is forward-only")
        forward = _layer_forward(impl, spec)
    except _Unavailable as e:
        case.unavailable = str(e)
        return case
    channels_last = impl != "eager"
    grad = mode == "fwdbwd"
    gen = _generator(device, 1)
    x = torch.randn(batch, spec.in_channels, s, s, generator=gen, device=device)
    x = x.to(dtype=DTYPES[dtype],
             memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x.requires_grad_(grad)
    weights, biases = _random_params(spec, DTYPES[dtype], device, channels_last, grad)
    if not grad:
        case.fn = lambda: forward(x, weights, biases)
    else:
        dy = torch.randn(batch, spec.out_channels, s, s, generator=gen, device=device).to(dtype=DTYPES[dtype])
        if channels_last:
            dy = dy.contiguous(memory_format=torch.channels_last)
        case.fn = lambda: forward(x, weights, biases).backward(dy)
        case.grad_to_none = (x, *weights, *biases)
    return case


def googlenet_case(variant: str, batch: int, dtype: str, mode: str, impl: str, device: str = "cuda",
                   image_size: int = 224) -> BenchCase:
    """Build one whole-GoogLeNet case (224x224 images unless ``image_size`` says otherwise).

    Args:
        variant: ``"paper"`` or ``"torchvision"`` (see :func:`inception_kernels.googlenet`).
        batch: batch size.
        dtype: ``"fp16"``, ``"bf16"`` or ``"fp32"``.
        mode: ``"infer"`` (eval mode, no grad), ``"infer_graph"`` (the same, timed as a
            CUDA graph replay) or ``"train"`` (forward with aux heads, loss, backward, SGD step
            with momentum).
        impl: one of :data:`IMPLS`.
        device: where the model runs.
        image_size: input height and width.

    Returns:
        The case; ``flops`` counted by ``torch.utils.flop_counter`` on one call.
    """
    import inception_kernels
    from inception_kernels.models import googlenet, googlenet_loss

    _check_choice("dtype", [dtype], list(DTYPES))
    _check_choice("mode", [mode], NET_MODES)
    _check_choice("impl", [impl], IMPLS)
    case = BenchCase("googlenet", variant, batch, dtype, mode, impl, cuda_graph=mode == "infer_graph")
    if impl == "fused_two_launch":
        case.unavailable = "the two-launch schedule is benchmarked per layer only"
        return case
    try:
        backend = _fused_backend(impl)
    except _Unavailable as e:
        case.unavailable = str(e)
        return case
    train = mode == "train"
    amp = train and dtype != "fp32"
    channels_last = impl != "eager"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = googlenet(variant).train(train)
    model = model.to(device=device, dtype=torch.float32 if train else DTYPES[dtype], memory_format=fmt)
    x = torch.randn(batch, 3, image_size, image_size, device=device, dtype=torch.float32 if train else DTYPES[dtype])
    x = x.contiguous(memory_format=fmt)
    target = torch.randint(0, 1000, (batch,), device=device)

    def forward_loss(net):
        with torch.autocast(device_type=x.device.type, dtype=DTYPES[dtype], enabled=amp):
            out = net(x)
            return googlenet_loss(out, target) if train else out

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)  # on the eager model: custom ops have no FLOP formula
    with counter, torch.set_grad_enabled(train):
        out = forward_loss(model)
        if train:
            out.backward()
    case.flops = counter.get_total_flops()
    model.zero_grad(set_to_none=True)

    if impl in ("fused", "fused_cuda"):
        fuse = getattr(inception_kernels, "fuse", None)
        if fuse is None:
            case.unavailable = "inception_kernels.fuse is not available in this build"
            return case
        model = fuse(model, backend=backend, fold_batch_norm=not train)  # inference folds BatchNorm once
    runner = _compiled(model, impl) if impl.startswith("compile") else model
    if not train:
        def step():
            with torch.no_grad():
                return forward_loss(runner)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            forward_loss(runner).backward()
            opt.step()

    case.fn = step
    return case


def measure(case: BenchCase, warmup_ms: int = 25, rep_ms: int = 100) -> dict:
    """Time a case on the GPU with :func:`triton.testing.do_bench`.

    Args:
        case: from :func:`layer_case` or :func:`googlenet_case`.
        warmup_ms, rep_ms: do_bench's warm-up and measurement budgets (``infer_graph``: the
            graph holds about ``rep_ms`` of calls).

    Returns:
        A record: the case's coordinates, ``ms`` (median), ``ms_p10``/``ms_p90``, ``tflops``,
        ``gbps`` (minimum bytes / median time; ``None`` when not modeled), or ``error``.
    """
    import triton.testing

    rec = dict(case.key, flops=case.flops, bytes_min=case.bytes_min or None)
    if case.unavailable:
        return dict(rec, error=f"unavailable: {case.unavailable}")
    try:
        if case.cuda_graph:
            ms, p10, p90 = triton.testing.do_bench_cudagraph(case.fn, rep=rep_ms, quantiles=[0.5, 0.1, 0.9],
                                                             grad_to_none=list(case.grad_to_none) or None)
        else:
            ms, p10, p90 = triton.testing.do_bench(case.fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.1, 0.9],
                                                   grad_to_none=list(case.grad_to_none) or None)
    except Exception as e:  # noqa: BLE001 -- one failing case (OOM, compile error) must not end the run
        return dict(rec, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    sec = ms * 1e-3
    return dict(rec, ms=ms, ms_p10=p10, ms_p90=p90, tflops=case.flops / sec / 1e12,
                gbps=case.bytes_min / sec / 1e9 if case.bytes_min else None)


def _add_speedups(records: list[dict]) -> None:
    """``speedup_vs_eager`` and ``speedup_vs_eager_cl``: baseline time / this time, same case."""
    base = {}
    for r in records:
        if r["impl"] in ("eager", "eager_cl") and "ms" in r:
            base[(r["suite"], r["name"], r["batch"], r["dtype"], r["mode"], r["impl"])] = r["ms"]
    for r in records:
        for impl in ("eager", "eager_cl"):
            b = base.get((r["suite"], r["name"], r["batch"], r["dtype"], r["mode"], impl))
            r[f"speedup_vs_{impl}"] = b / r["ms"] if b and "ms" in r else None


def _environment() -> dict:
    import triton

    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        host=platform.node(),
    )


def run(suites=QUICK["suites"], layers=QUICK["layers"], batches=BATCHES, dtypes=tuple(DTYPES),
        modes=LAYER_MODES + NET_MODES, impls=IMPLS, variant="paper", warmup_ms: int = 25, rep_ms: int = 100,
        progress=print) -> dict:
    """Run a benchmark matrix on the current CUDA device.

    Args:
        suites: ``"layers"`` and/or ``"googlenet"``.
        layers: layer names (layers suite).
        batches, dtypes, impls: the matrix's other axes.
        modes: ``"fwd"``/``"fwdbwd"`` apply to layers, ``"infer"``/``"train"``/``"infer_graph"`` to googlenet.
        variant: the GoogLeNet variant of the googlenet suite.
        warmup_ms, rep_ms: do_bench budgets per case.
        progress: called with one line per finished case.

    Returns:
        ``{"environment": ..., "records": [...]}`` (see :func:`measure`), with speedups.

    Raises:
        RuntimeError: without a CUDA device (callers check first and print :data:`SKIP_MESSAGE`).
        ValueError: for unknown names on any axis.
    """
    if not torch.cuda.is_available():
        raise RuntimeError(SKIP_MESSAGE)
    _check_choice("suites", suites, ("layers", "googlenet"))
    _check_choice("layers", layers, list(GOOGLENET_INCEPTIONS))
    _check_choice("dtypes", dtypes, list(DTYPES))
    _check_choice("modes", modes, LAYER_MODES + NET_MODES)
    _check_choice("impls", impls, IMPLS)
    cases = []
    if "layers" in suites:
        cases += [functools.partial(layer_case, n, b, d, m, i)
                  for n in layers for b in batches for d in dtypes for m in modes if m in LAYER_MODES for i in impls
                  if not (i == "fused_two_launch" and m != "fwd")]
    if "googlenet" in suites:
        cases += [functools.partial(googlenet_case, variant, b, d, m, i)
                  for b in batches for d in dtypes for m in modes if m in NET_MODES for i in impls
                  if i != "fused_two_launch"]
    records = []
    for make in cases:
        try:
            rec = measure(make(), warmup_ms, rep_ms)
        except Exception as e:  # noqa: BLE001 -- building a case can OOM or fail to compile
            rec = dict(zip(("suite", "name", "batch", "dtype", "mode", "impl"),
                           ("layers" if make.func is layer_case else "googlenet",
                            *make.args)), error=f"{type(e).__name__}: {e}")
        records.append(rec)
        progress(_format_record(rec))
        torch.cuda.empty_cache()
    _add_speedups(records)
    return {"environment": _environment(), "records": records}


def _format_record(r: dict) -> str:
    head = f"{r['suite']:9} {r['name']:6} b={r['batch']:<4} {r['dtype']:4} {r['mode']:11} {r['impl']:16}"
    if "error" in r:
        return f"{head} {r['error']}"
    gb = f"{r['gbps']:8.1f} GB/s" if r.get("gbps") else ""
    return f"{head} {r['ms']:9.4f} ms [{r['ms_p10']:.4f}, {r['ms_p90']:.4f}] {r['tflops']:7.2f} TFLOP/s {gb}"


_CSV_FIELDS = ("suite", "name", "batch", "dtype", "mode", "impl", "ms", "ms_p10", "ms_p90", "tflops", "gbps",
               "speedup_vs_eager", "speedup_vs_eager_cl", "flops", "bytes_min", "error")


def write_results(results: dict, out_dir: str) -> list[str]:
    """Write ``bench.json``, ``bench.csv`` and ``speedup_layers.png`` (when matplotlib exists
    and the layers suite has results) into ``out_dir``.

    Args:
        results: what :func:`run` returned.
        out_dir: directory, created when missing.

    Returns:
        The paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "bench.json"), os.path.join(out_dir, "bench.csv")]
    with open(paths[0], "w") as f:
        json.dump(results, f, indent=1)
    with open(paths[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(results["records"])
    png = _plot_speedups(results, os.path.join(out_dir, "speedup_layers.png"))
    return paths + ([png] if png else [])


def _plot_speedups(results: dict, path: str) -> Optional[str]:
    """Bar chart of each implementation's speedup over eager NCHW, per layer; one panel per
    (mode, dtype, batch)."""
    recs = [r for r in results["records"] if r["suite"] == "layers" and r.get("speedup_vs_eager")]
    if not recs:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = sorted({(r["mode"], r["dtype"], r["batch"]) for r in recs})
    impls = [i for i in IMPLS if i != "eager" and any(r["impl"] == i for r in recs)]
    layers = [n for n in GOOGLENET_INCEPTIONS if any(r["name"] == n for r in recs)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(1.2 * len(layers) + 3, 3 * len(panels)), squeeze=False)
    width = 0.8 / max(len(impls), 1)
    for ax, (mode, dtype, batch) in zip(axes[:, 0], panels):
        for k, impl in enumerate(impls):
            val = {r["name"]: r["speedup_vs_eager"] for r in recs
                   if (r["mode"], r["dtype"], r["batch"], r["impl"]) == (mode, dtype, batch, impl)}
            ax.bar([i + k * width for i in range(len(layers))], [val.get(n, 0) for n in layers], width, label=impl)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(layers))], layers)
        ax.set_ylabel("speedup vs eager NCHW")
        ax.set_title(f"{mode}, {dtype}, batch {batch}")
        ax.legend(fontsize=7)
    env = results["environment"]
    fig.suptitle(f"measured on {env['device']}, {env['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_pytest_benchmark(benchmark, case: BenchCase, rounds: int = 20, warmup_rounds: int = 5) -> None:
    """Time ``case`` with pytest-benchmark's ``benchmark`` fixture (the ``benchmarks/`` suites).

    Each round is one call followed by ``torch.cuda.synchronize()``: wall-clock time per call,
    launch overhead included (``inception-kernels bench`` uses do_bench's GPU timing instead).
    TFLOP/s, effective GB/s and the device go to ``benchmark.extra_info``.

    Args:
        benchmark: the pytest-benchmark fixture.
        case: from :func:`layer_case` or :func:`googlenet_case`, available.
        rounds, warmup_rounds: pytest-benchmark's ``pedantic`` settings.
    """
    cuda = torch.cuda.is_available()

    def target():
        for t in case.grad_to_none:
            t.grad = None
        case.fn()
        if cuda:
            torch.cuda.synchronize()

    benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    benchmark.extra_info.update(device=torch.cuda.get_device_name() if cuda else "cpu", flops=case.flops,
                                bytes_min=case.bytes_min)
    if benchmark.stats:  # None with --benchmark-disable
        sec = benchmark.stats.stats.median
        benchmark.extra_info.update(tflops=case.flops / sec / 1e12,
                                    gbps=case.bytes_min / sec / 1e9 if case.bytes_min else None)


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_arguments(parser) -> None:
    """Add the ``bench`` options to an argparse parser."""
    parser.add_argument("--quick", action="store_true",
                        help="preset for a ~10 minute GPU session: all layers + GoogLeNet, batch 256, bf16, "
                             "fused vs eager (NCHW, channels_last); other options override it")
    parser.add_argument("--suites", help="comma-separated: layers,googlenet (default both)")
    parser.add_argument("--layers", help="comma-separated layers, e.g. 3a,5b (default all nine)")
    parser.add_argument("--batch", help="comma-separated batch sizes (default 1,32,256)")
    parser.add_argument("--dtype", type=dtype_type(_DTYPE_NAMES, many=True, convert=short_dtype), metavar="DTYPES",
                        help=f"comma-separated among {dtype_help(_DTYPE_NAMES)} (default all)")
    parser.add_argument("--modes", help="comma-separated: fwd,fwdbwd (layers), infer,train,infer_graph (googlenet); "
                                        "default all")
    parser.add_argument("--impls", help=f"comma-separated among {','.join(IMPLS)} (default all)")
    parser.add_argument("--variant", default="paper", help="GoogLeNet variant: paper or torchvision")
    parser.add_argument("--out", default="bench-results", help="directory for bench.json, bench.csv and the PNG")
    parser.add_argument("--warmup-ms", type=int, default=25, help="do_bench warm-up budget")
    parser.add_argument("--rep-ms", type=int, default=100, help="do_bench measurement budget")


def run_cli(args) -> int:
    """Run ``inception-kernels bench`` with parsed ``args``.

    Returns:
        0 after writing the results; 0 with :data:`SKIP_MESSAGE` on a machine without a CUDA
        device (a skip is not a failure); 2 for bad arguments.
    """
    if not torch.cuda.is_available():
        print(SKIP_MESSAGE)
        return 0
    base = dict(QUICK) if args.quick else dict(suites=("layers", "googlenet"), layers=tuple(GOOGLENET_INCEPTIONS),
                                               batches=BATCHES, dtypes=tuple(DTYPES),
                                               modes=LAYER_MODES + NET_MODES, impls=IMPLS)
    try:
        for opt, key, conv in (("suites", "suites", str), ("layers", "layers", str), ("batch", "batches", int),
                               ("modes", "modes", str), ("impls", "impls", str)):
            value = getattr(args, opt)
            if value:
                base[key] = tuple(conv(v) for v in _csv(value))
        if args.dtype:  # already parsed: short names, the keys of DTYPES
            base["dtypes"] = tuple(args.dtype)
        results = run(**base, variant=args.variant, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms)
    except ValueError as e:
        print(f"inception-kernels bench: {e}")
        return 2
    for p in write_results(results, args.out):
        print(f"wrote {p}")
    return 0
