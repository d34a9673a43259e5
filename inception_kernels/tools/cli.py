"""Command line: ``inception-kernels info | verify | report | bench | train | evaluate``
(also ``python -m inception_kernels``).

    info     versions, driver, GPU, and which backends can run here (``--json``)
    verify   every available backend against an independent nn composition, output and
             gradients, on the nine GoogLeNet Inception layers; exits 1 on any failure
    report   static kernel report, no GPU needed: launches, FLOPs, modeled bytes, cubin
             registers/spills/shared/tensor cores, H100 roofline estimates (``--json PATH``)
    bench    GPU benchmarks vs eager and torch.compile (JSON, CSV, PNG); without a GPU it
             prints that it skipped and exits 0
    train    train GoogLeNet (fused) on an ImageFolder or synthetic data, one process or
             torchrun; checkpoint.pt, metrics.csv, curves.png (``inception_kernels.tools.train``)
    evaluate top-1/top-5 of checkpoints with 1, 10 or 144 crops and model ensembles
             (``inception_kernels.tools.evaluate``)
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Optional, Sequence

from .ui import dtype_help, dtype_type, plain, short_kernel

PKG = "inception_kernels"  # python -m PKG runs main()


# ---------------------------------------------------------------------------------------- info


def _driver() -> dict:
    """The NVIDIA driver: CUDA driver API version (libcuda) and driver release (nvidia-smi)."""
    out = {"cuda_driver_api": None, "driver_version": None, "reason": ""}
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(v)) == 0:
            out["cuda_driver_api"] = f"{v.value // 1000}.{v.value % 1000 // 10}"
    except OSError:
        out["reason"] = "no driver (libcuda.so.1 not found)"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            if res.returncode == 0 and res.stdout.strip():
                out["driver_version"] = res.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return out


def _gpus() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                     "sm_count": p.multi_processor_count, "memory_gib": round(p.total_memory / 2**30, 1)})
    return gpus


def collect_info() -> dict:
    """Everything ``info`` prints, as a JSON-ready dict."""
    import torch

    from .. import __version__, _backends
    from .report.facts import extension_info

    triton_version = None
    if importlib.util.find_spec("triton") is not None:
        import triton

        triton_version = triton.__version__
    return {
        "inception_kernels": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "driver": _driver(),
        "gpus": _gpus(),
        "backends": {n: {"available": b.available, "reason": b.reason, **b.detail}
                     for n, b in _backends.available_backends().items()},
        "cuda_extension": extension_info(),
    }


def _print_info(info: dict) -> None:
    drv = info["driver"]
    if drv["cuda_driver_api"] or drv["driver_version"]:
        driver = f"{drv['driver_version'] or '?'} (CUDA driver API {drv['cuda_driver_api'] or '?'})"
    else:
        driver = drv["reason"] or "no driver"
    rows = [
        ("inception-kernels", info["inception_kernels"]),
        ("python", info["python"]),
        ("torch", f"{info['torch']} (CUDA {info['torch_cuda'] or 'none: CPU-only build'})"),
        ("triton", info["triton"] or "not installed"),
        ("driver", driver),
    ]
    if info["gpus"]:
        for g in info["gpus"]:
            rows.append((f"GPU {g['index']}", f"{g['name']}, capability {g['capability']}, "
                                              f"{g['sm_count']} SMs, {g['memory_gib']} GiB"))
    else:
        rows.append(("GPU", "none"))
    for k, v in rows:
        print(f"{k:<18} {v}")
    print("\nbackends:")
    for name, b in info["backends"].items():
        print(f"  {name:<19} {'yes' if b['available'] else 'no ':<4} {b['reason']}")
    ext = info["cuda_extension"]
    print(f"\nCUDA extension: {ext['state']} ({ext['reason']})")
    if ext["path"]:
        print(f"  library  {ext['path']}")
        if ext["error"]:
            print(f"  {ext['error']}")
        else:
            print(f"  archs    {', '.join(ext['archs']) or 'none'}")
            print(f"  kernels  {', '.join(short_kernel(k) for k in ext['kernels']) or 'none'}")


def _cmd_info(args) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


# -------------------------------------------------------------------------------------- verify


def _interpreter_needs_subprocess() -> bool:
    """Without a CUDA device, verify runs the Triton kernels in the interpreter.

    TRITON_INTERPRET=1 must be set before a kernel is defined (ours, or Triton's own in
    ``triton.language``). If none is defined yet, setting it here is enough; if some are,
    verify reruns itself in a child process with the switch set.
    """
    import torch

    from .. import _backends

    if torch.cuda.is_available() or _backends.interpreter_enabled() or importlib.util.find_spec("triton") is None:
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return _backends.interpreter_mismatch() is not None  # kernels defined before: compiled


def _cmd_verify(args, argv: Sequence[str]) -> int:
    if _interpreter_needs_subprocess():
        print("verify: rerunning with TRITON_INTERPRET=1 (the Triton kernels were already defined)", flush=True)
        return subprocess.call([sys.executable, "-m", PKG, *argv], env=dict(os.environ, TRITON_INTERPRET="1"))
    from . import verify

    layers = args.layers.split(",") if args.layers else ([] if args.models else None)
    dtypes = args.dtype or None  # canonical names (parsed by argparse)
    models = args.models or layers is None
    t0 = time.perf_counter()
    try:
        rows, skipped, device = verify.run(layers, dtypes, batch=args.batch, size=args.size, models=models,
                                           progress=not args.quiet)
    except ValueError as e:
        print(f"inception-kernels verify: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    ok = bool(rows) and all(r.passed for r in rows)
    if args.json:
        print(json.dumps(verify.as_json(rows, skipped, device, args.batch, args.size), indent=2))
        return 0 if ok else 1
    checked: dict[str, tuple[dict, dict]] = {}  # backend -> (layers, dtypes), ordered sets
    for r in rows:
        ls, ds = checked.setdefault(r.backend, ({}, {}))
        ls[r.layer] = ds[r.dtype] = None
    print(f"verify: fused Inception op vs. an nn.Conv2d/nn.MaxPool2d/torch.cat composition with the same "
          f"parameters\n  device {device}; input [{args.batch}, Cin, {args.size}, {args.size}]; "
          f"checked: output and gradients of x, w1..wp, b1..bp\n  (max abs error; tolerance atol + "
          f"rtol*max|expected|)")
    for b, (ls, ds) in checked.items():
        print(f"  backend {b}: layers {', '.join(ls)}; {', '.join(ds)}")
    if device == "cpu" and "triton" in checked:
        print("  (the Triton interpreter is slow: it runs batch 1, and float32 unless --dtype chooses)")
    if models:
        print(f"  whole models: {', '.join('GoogLeNet-' + v for v in verify.MODEL_VARIANTS)}, eval mode, "
              "fused vs. unfused logits (batch 1, the variant's minimum input size or --size)")
    print()
    print(verify.format_table(rows))
    for b, why in skipped:
        print(f"skipped backend {b}: {why}")
    failed = sum(not r.passed for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed in {elapsed:.1f} s" if rows else "\nno checks ran")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inception-kernels", description=plain(__doc__.split("\n\n")[0]))
    from .. import __version__

    p.add_argument("--version", action="version", version=f"inception-kernels {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, GPU and available backends")
    info.add_argument("--json", action="store_true", help="print JSON")
    ver = sub.add_parser("verify", help="check every available backend against an nn composition")
    ver.add_argument("--layers", default="", help="comma-separated layers, e.g. 3a,5b (default: all nine)")
    ver.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    ver.add_argument("--size", type=int, default=7, help="spatial size H = W (default 7)")
    ver.add_argument("--dtype", default=None, type=dtype_type(many=True), metavar="DTYPES",
                     help=f"comma-separated among {dtype_help(('float64', 'float32', 'float16', 'bfloat16'))}; "
                          "float16/bfloat16 are checked three-way against float64 and PyTorch in the same dtype "
                          "(default float64,float32 on the CPU, all four on a CUDA device)")
    ver.add_argument("--models", action="store_true",
                     help="check the whole fused GoogLeNets (with --layers: those layers too; without: no layers)")
    ver.add_argument("--json", action="store_true", help="print JSON")
    ver.add_argument("--quiet", action="store_true",
                     help="no progress bar (it is shown on stderr only when stderr is a terminal)")
    from . import bench, report

    report.add_arguments(sub.add_parser("report", help="static kernel report: plans, compiled-code facts, targets and a model (no GPU needed)"))
    bench.add_arguments(sub.add_parser("bench", help="GPU benchmarks: fused vs eager vs torch.compile"))
    from . import evaluate, train  # the tools import torchvision, tqdm and matplotlib only when they run

    train.add_arguments(sub.add_parser("train", help="train GoogLeNet: one process or torchrun (DDP)"))
    evaluate.add_arguments(sub.add_parser("evaluate", help="top-1/top-5 of checkpoints: 1, 10 or 144 crops, ensembles"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``inception-kernels``.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 success, 1 a check failed, 2 bad arguments.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and bad arguments (2): a status, not an exception
        return e.code if isinstance(e.code, int) else 2
    if args.command == "info":
        return _cmd_info(args)
    if args.command in ("report", "bench"):
        from . import bench, report

        return {"report": report, "bench": bench}[args.command].run_cli(args)
    if args.command in ("train", "evaluate"):
        from . import evaluate, train

        return {"train": train, "evaluate": evaluate}[args.command].run_cli(args)
    return _cmd_verify(args, argv)
