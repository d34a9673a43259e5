"""``inception-kernels report``: its options and what it prints (see :mod:`.build`)."""

from __future__ import annotations

import json
import sys

from ...spec import GOOGLENET_INCEPTIONS
from ..ui import dtype_help, dtype_type, short_dtype
from .build import ARCHS, BATCH, build_report
from .format import format_markdown, format_table

__all__ = ["add_arguments", "run_cli"]

_DTYPES = ("bfloat16", "float16", "float32")  # the report's dtypes (build.DTYPE_BYTES), canonical names


def add_arguments(parser) -> None:
    """Add the ``report`` options to an argparse parser."""
    parser.add_argument("--layers", default=",".join(GOOGLENET_INCEPTIONS),
                        help="comma-separated GoogLeNet layers, e.g. 3a,5b (default: all nine)")
    parser.add_argument("--arch", default=",".join(ARCHS), help="comma-separated architectures (default sm_80,sm_90)")
    parser.add_argument("--dtype", default="bf16", type=dtype_type(_DTYPES, convert=short_dtype), metavar="DTYPE",
                        help=f"{dtype_help(_DTYPES)} (default bfloat16)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch size (default {BATCH})")
    parser.add_argument("--dump", metavar="DIR",
                        help="keep every compiled kernel: DIR/<layer>/<schedule>/<arch>/<kernel>.{cubin,ptx,sass} "
                             "and DIR/manifest.json")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiles and the static targets (fast)")
    parser.add_argument("--workers", type=int, default=2, help="parallel compiles")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables instead (for the README)")


def run_cli(args) -> int:
    """Run inception-kernels report with parsed ``args``; returns the exit code (1 when a
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
