"""The prepared GPU check: one run that measures what is worth knowing, inside 8 minutes.

Run from a fresh checkout on a GPU machine (``benchmarks/gpu_check.sh`` is the entry point)::

    OUT=bench-results GIT_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_check.sh
    bash benchmarks/gpu_check.sh --dry-run      # no GPU: the plan, its budgets, what can be checked

What it does, in order of value (the table :data:`PLAN`; every step has its own timeout, and a
step that fails, hangs or crashes does not stop the next):

1. ``info``: device, driver, versions (``inception-kernels info``, ``nvidia-smi``, ``nvcc``, ``ncu``).
2. ``build`` the CUDA extension against the installed torch (``setup.py build_ext --inplace``,
   ``MAX_JOBS=16``, no downloads) -- while ``warmup`` JIT-compiles, in parallel worker
   processes, every Triton kernel and ``torch.compile`` graph the timed steps will use, so the
   timed steps load them from the on-disk caches (Triton's and Inductor's).
3. ``verify`` (``python -m inception_kernels verify`` on every backend at fp32, fp16 and bf16,
   sharded by dtype and layer group, plus the whole models) alongside ``tests`` (the tests
   marked ``gpu`` or ``cuda_ext``, sharded round-robin over processes).
4. Timed, alone on the GPU (``triton.testing.do_bench`` with capped warm-up/repetition times):
   ``bench_layers`` (nine layers, batch 256, bf16, forward and forward+backward: fused
   one-launch, two-launch, CUDA C++, eager NCHW, eager channels_last), ``train_step`` (the
   GoogLeNet training step, batch 256, bf16 autocast), ``infer_graph`` (batch-1 inference,
   eager and replayed as a CUDA graph), ``bench_compile`` (``torch.compile`` on the nine layers).
5. ``ncu``: where Nsight Compute exists, one profile of the fused forward and backward of one
   layer (tensor-pipe throughput, DRAM and L2 bytes, stall reasons).

Each step runs as subprocesses ("shards") in their own process groups; a step's timeout kills
its group. Slack left by a fast step rolls over to the later ones, which keep their own
budgets. Results stream to files as they are measured (JSON lines), so a timeout keeps what
was finished. Outputs in ``$OUT`` (at most 8 files, none in folders): ``summary.json``
(device, versions, commit, each step's status, seconds and key numbers, all records),
``bench.csv``, ``speedup.png``, ``ncu.csv`` (when profiled) and ``logs.tar.gz``.

After a run, ``python benchmarks/results.py adopt $OUT`` files it under ``benchmarks/results/``
and regenerates the README's measured tables and ``inception_kernels/_measured.py``.

This file is a tool outside the library: it imports the package only inside its subcommands
(each run in a shard), and the driver itself needs only the standard library.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------ the plan

#: The whole run must end within this (the machine allows 10 minutes per command).
TOTAL_BUDGET_S = 480
#: Kept back at the end for rendering the CSV/PNG, summary.json and the logs tarball.
RESERVE_S = 15

#: What comes back from ``$OUT``: at most 8 files, no folders, names of letters, digits, '.',
#: '_' and '-'. ``ncu.csv`` only when a profile was taken.
OUTPUT_FILES = ("summary.json", "bench.csv", "speedup.png", "ncu.csv", "logs.tar.gz")
MAX_OUTPUT_FILES = 8
MAX_OUTPUT_DEPTH = 2
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
#: Per file limit of what comes back (16 MiB); logs are trimmed to stay well below it.
MAX_OUTPUT_BYTES = 16 * 2**20
MAX_LOG_BYTES = 2 * 2**20

LAYERS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
#: The timed configuration (the issue's: batch 256, bf16, channels_last inputs for every impl
#: but ``eager``), with do_bench capped: 10 ms warm-up, 40 ms of repetitions per case.
BENCH = dict(dtype="bf16", batch=256, warmup_ms=10, rep_ms=40)
LAYER_IMPLS = ("fused", "fused_two_launch", "fused_cuda", "eager", "eager_cl")
NET_IMPLS = ("fused", "fused_cuda", "eager", "eager_cl")
TRAIN_BATCH = 256
VERIFY_DTYPES = ("fp32", "fp16", "bf16")
VERIFY_GROUPS = (("3a", "3b", "4a"), ("4b", "4c", "4d"), ("4e", "5a", "5b"))
TEST_MARKERS = "gpu or cuda_ext"
TEST_SHARDS = 8
WARMUP_WORKERS = 12
PROFILE_LAYER = "4d"
#: Nsight Compute: sections for tensor-pipe utilization and stall reasons, plus DRAM/L2 bytes.
NCU_SECTIONS = ("SpeedOfLight", "ComputeWorkloadAnalysis", "MemoryWorkloadAnalysis", "WarpStateStats")
NCU_METRICS = ("gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_bytes.sum")


@dataclass(frozen=True)
class Step:
    """One step of the plan.

    Args:
        name: the step's name (also its key in summary.json).
        stage: steps of the same stage run at the same time; stages run in order.
        budget_s: the step's timeout in seconds (plus any slack earlier stages left); the
            steps of a stage share the largest budget among them.
        what: one line for the plan table.
    """

    name: str
    stage: int
    budget_s: int
    what: str


PLAN = (
    Step("info", 0, 10, "device, driver, versions: inception-kernels info, nvidia-smi, nvcc, ncu"),
    Step("build", 1, 130, "build the CUDA extension against the installed torch (MAX_JOBS=16, no downloads)"),
    Step("warmup", 1, 130, f"JIT-compile the timed steps' Triton kernels and torch.compile graphs "
                           f"({WARMUP_WORKERS} processes)"),
    Step("verify", 2, 125, "inception-kernels verify, every backend, fp32/fp16/bf16, 9 layers + models "
                           f"({len(VERIFY_DTYPES) * len(VERIFY_GROUPS) + 1} processes)"),
    Step("tests", 2, 125, f"pytest -m '{TEST_MARKERS}' ({TEST_SHARDS} processes)"),
    Step("bench_layers", 3, 55, "9 layers, b256 bf16, fwd + fwdbwd: fused, two-launch, cuda, eager, eager_cl"),
    Step("train_step", 4, 35, f"GoogLeNet training step, b{TRAIN_BATCH} bf16 autocast: fused, cuda, eager, eager_cl"),
    Step("infer_graph", 5, 25, "GoogLeNet batch-1 bf16 inference, eager and CUDA-graph replay"),
    Step("bench_compile", 6, 50, "9 layers, b256 bf16, fwd + fwdbwd: torch.compile (default mode)"),
    Step("ncu", 7, 35, f"Nsight Compute: fused forward + backward of {PROFILE_LAYER} (when ncu exists)"),
)


def stages(plan: Sequence[Step] = PLAN) -> list[list[Step]]:
    """The plan's steps grouped by stage, in order."""
    out: dict[int, list[Step]] = {}
    for step in plan:
        out.setdefault(step.stage, []).append(step)
    return [out[k] for k in sorted(out)]


def stage_budgets(plan: Sequence[Step] = PLAN) -> list[int]:
    """Each stage's budget: the largest budget among its (concurrent) steps."""
    return [max(s.budget_s for s in group) for group in stages(plan)]


def check_plan(plan: Sequence[Step] = PLAN, outputs: Sequence[str] = OUTPUT_FILES) -> list[str]:
    """Every rule the plan must keep; returns the broken ones (empty: the plan is sound)."""
    errors = []
    names = [s.name for s in plan]
    if len(set(names)) != len(names):
        errors.append(f"step names repeat: {names}")
    for s in plan:
        if not (isinstance(s.budget_s, int) and s.budget_s > 0):
            errors.append(f"step {s.name} has no positive timeout ({s.budget_s!r})")
        if s.name not in SHARDS:
            errors.append(f"step {s.name} has no shard builder")
    total = sum(stage_budgets(plan)) + RESERVE_S
    if total > TOTAL_BUDGET_S:
        errors.append(f"stage budgets {stage_budgets(plan)} + reserve {RESERVE_S} s = {total} s > {TOTAL_BUDGET_S} s")
    if len(outputs) > MAX_OUTPUT_FILES:
        errors.append(f"{len(outputs)} output files > {MAX_OUTPUT_FILES}")
    for name in outputs:
        parts = name.split("/")
        if len(parts) - 1 > MAX_OUTPUT_DEPTH:
            errors.append(f"output {name} is more than {MAX_OUTPUT_DEPTH} folders deep")
        if not all(OUTPUT_NAME.match(p) for p in parts):
            errors.append(f"output {name!r} has characters other than letters, digits, '.', '_', '-'")
    return errors


# ------------------------------------------------------------------------------------- shards


@dataclass
class Shard:
    """One subprocess of a step.

    Args:
        name: unique within the run; its log is ``<logs>/<name>.log``.
        argv: the command.
        env: extra environment variables.
        stdout: file (in the log dir) for stdout when it carries data (e.g. JSON); else the log.
    """

    name: str
    argv: list
    env: dict = field(default_factory=dict)
    stdout: Optional[str] = None


@dataclass
class Context:
    """What the shard builders need to know about this run."""

    python: str
    logs: Path
    commit: str = "unknown"


def _me(ctx: Context, *args) -> list:
    return [ctx.python, str(Path(__file__).resolve()), *map(str, args)]


def _bench_argv(ctx: Context, jsonl: str, suite: str, impls, modes, batch: int) -> list:
    argv = _me(ctx, "_bench", "--jsonl", ctx.logs / jsonl, "--suite", suite, "--impls", ",".join(impls),
               "--modes", ",".join(modes), "--batch", batch, "--dtype", BENCH["dtype"],
               "--warmup-ms", BENCH["warmup_ms"], "--rep-ms", BENCH["rep_ms"])
    return argv + (["--layers", ",".join(LAYERS)] if suite == "layers" else [])


def _shards_info(ctx):
    return [Shard("info", ["bash", "-c", "nvidia-smi; nvidia-smi -q | head -120; nvcc --version; "
                                         "ncu --version; true"]),
            Shard("info-json", [ctx.python, "-m", "inception_kernels", "info", "--json"], stdout="info.json")]


def _shards_build(ctx):
    env = {"MAX_JOBS": "16", "NVCC_APPEND_FLAGS": "--threads 2", "INCEPTION_KERNELS_PTXAS_VERBOSE": "0"}
    return [Shard("build", _me(ctx, "_build", "--json", ctx.logs / "build.json"), env=env)]


#: Inductor compiles in-process in the warm-up workers and in the timed compile step alike
#: (the same configuration, so the timed step hits the FX-graph cache the warm-up filled).
INDUCTOR_ENV = {"TORCHINDUCTOR_COMPILE_THREADS": "1"}


def _shards_warmup(ctx):
    return [Shard(f"warmup-{i}", _me(ctx, "_warmup", "--worker", i, "--workers", WARMUP_WORKERS,
                                     "--jsonl", ctx.logs / f"warmup-{i}.jsonl"), env=INDUCTOR_ENV)
            for i in range(WARMUP_WORKERS)]


def _shards_verify(ctx):
    out = []
    for dtype in VERIFY_DTYPES:
        for group in VERIFY_GROUPS:
            name = f"verify-{dtype}-{group[0]}"
            out.append(Shard(name, [ctx.python, "-m", "inception_kernels", "verify", "--layers", ",".join(group),
                                    "--dtype", dtype, "--json"], stdout=f"{name}.json"))
    out.append(Shard("verify-models", [ctx.python, "-m", "inception_kernels", "verify", "--models", "--dtype", "fp32",
                                       "--json"], stdout="verify-models.json"))
    return out


def _shards_tests(ctx):
    return [Shard(f"tests-{i}", _me(ctx, "_pytest_shard", "--index", i, "--of", TEST_SHARDS,
                                    "--jsonl", ctx.logs / f"tests-{i}.jsonl"))
            for i in range(TEST_SHARDS)]


def _shards_bench_layers(ctx):
    return [Shard("bench_layers", _bench_argv(ctx, "bench_layers.jsonl", "layers", LAYER_IMPLS, ("fwd", "fwdbwd"),
                                              BENCH["batch"]))]


def _shards_train_step(ctx):
    return [Shard("train_step", _bench_argv(ctx, "train_step.jsonl", "googlenet", NET_IMPLS, ("train",),
                                            TRAIN_BATCH))]


def _shards_infer_graph(ctx):
    return [Shard("infer_graph", _bench_argv(ctx, "infer_graph.jsonl", "googlenet", NET_IMPLS,
                                             ("infer", "infer_graph"), 1))]


def _shards_bench_compile(ctx):
    return [Shard("bench_compile", _bench_argv(ctx, "bench_compile.jsonl", "layers", ("compile",), ("fwd", "fwdbwd"),
                                               BENCH["batch"]), env=INDUCTOR_ENV)]


def ncu_argv(ctx: Context) -> list:
    """The Nsight Compute command: only the profiled range (``_profile`` opens it around one
    forward + backward after warming up), raw metrics as CSV in base units."""
    argv = ["ncu", "--profile-from-start", "off", "--csv", "--page", "raw", "--print-units", "base",
            "--log-file", str(ctx.logs / "ncu_raw.csv")]
    for s in NCU_SECTIONS:
        argv += ["--section", s]
    argv += ["--metrics", ",".join(NCU_METRICS)]
    return argv + _me(ctx, "_profile", "--layer", PROFILE_LAYER)


def _shards_ncu(ctx):
    if shutil.which("ncu") is None:
        return "ncu (Nsight Compute) is not on the PATH"
    return [Shard("ncu", ncu_argv(ctx))]


#: step name -> builder of its shards (a string instead: the step is skipped for that reason).
SHARDS: dict[str, Callable[[Context], object]] = {
    "info": _shards_info, "build": _shards_build, "warmup": _shards_warmup, "verify": _shards_verify,
    "tests": _shards_tests, "bench_layers": _shards_bench_layers, "train_step": _shards_train_step,
    "infer_graph": _shards_infer_graph, "bench_compile": _shards_bench_compile, "ncu": _shards_ncu,
}


# ----------------------------------------------------------------------------------- executor


@dataclass
class ShardResult:
    name: str
    rc: Optional[int]
    seconds: float
    timed_out: bool


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the shard's process group, SIGKILL what is left after 3 s."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_shards(shards: Sequence[Shard], timeout_s: float, logs: Path, cwd: Path = ROOT,
               poll_s: float = 0.1) -> list[ShardResult]:
    """Run shards concurrently, each in its own process group, and kill every one still running
    after ``timeout_s`` (its children too).

    Args:
        shards: the commands.
        timeout_s: wall-clock limit for all of them.
        logs: folder of the logs (``<name>.log``; stdout to ``shard.stdout`` where set).
        cwd: working directory (the repository root).
        poll_s: how often to look.

    Returns:
        One :class:`ShardResult` per shard, in order (``rc`` None when it could not start).
    """
    env0 = dict(os.environ, PYTHONUNBUFFERED="1")
    env0["PYTHONPATH"] = os.pathsep.join([str(cwd)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env0.pop("TRITON_INTERPRET", None)
    running = []
    t0 = time.monotonic()
    for sh in shards:
        log = open(logs / f"{sh.name}.log", "ab")
        out = open(logs / sh.stdout, "wb") if sh.stdout else log
        log.write(f"$ {' '.join(map(str, sh.argv))}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen([str(a) for a in sh.argv], cwd=cwd, env=dict(env0, **sh.env), stdout=out,
                                    stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log.write(f"could not start: {e}\n".encode())
            running.append((sh, None, log, out, time.monotonic()))
            continue
        running.append((sh, proc, log, out, time.monotonic()))
    results = {}
    while len(results) < len(running):
        now = time.monotonic()
        for sh, proc, log, out, start in running:
            if sh.name in results:
                continue
            if proc is None:
                results[sh.name] = ShardResult(sh.name, None, 0.0, False)
            elif proc.poll() is not None:
                results[sh.name] = ShardResult(sh.name, proc.returncode, round(now - start, 1), False)
                try:  # what the shard left running in its process group (compile workers...)
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            elif now - t0 > timeout_s:
                _kill_group(proc)
                log.write(f"\n[gpu_check] timed out after {timeout_s:.0f} s: killed\n".encode())
                results[sh.name] = ShardResult(sh.name, proc.returncode, round(time.monotonic() - start, 1), True)
        if len(results) < len(running):
            time.sleep(poll_s)
    for _sh, _proc, log, out, _start in running:
        log.close()
        if out is not log:
            out.close()
    return [results[sh.name] for sh, *_ in running]


def step_status(results: Sequence[ShardResult]) -> str:
    """``ok`` (every shard exited 0), ``timeout`` (one was killed), or ``failed``."""
    if any(r.timed_out for r in results):
        return "timeout"
    return "ok" if results and all(r.rc == 0 for r in results) else "failed"


# -------------------------------------------------------------------------------- key numbers


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a truncated last line (a killed writer) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def summarize_tests(reports: Sequence[dict], collected: Optional[int] = None) -> dict:
    """Counts of test outcomes from the shards' per-test records (``nodeid``, ``outcome``)."""
    counts: dict[str, int] = {}
    for r in reports:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    failed = [r["nodeid"] for r in reports if r["outcome"] in ("failed", "error")]
    out = dict(counts=counts, failed=failed[:100], reported=len(reports))
    if collected is not None:
        out["collected"] = collected
        out["not_run"] = max(collected - len(reports), 0)
    return out


def summarize_verify(docs: Sequence[dict]) -> dict:
    """Per backend and dtype: checks passed and failed; the failing rows; the skips."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    failing, skipped, rows = [], [], []
    for doc in docs:
        for c in doc.get("checks", []):
            cell = table.setdefault(c["backend"], {}).setdefault(c["dtype"], {"passed": 0, "failed": 0})
            cell["passed" if c["passed"] else "failed"] += 1
            rows.append({k: c.get(k) for k in ("layer", "backend", "dtype", "passed", "err_out", "tol_out",
                                               "err_grad", "tol_grad", "worst_grad", "error")})
            if not c["passed"]:
                failing.append(f"{c['layer']} {c['backend']} {c['dtype']}: {c.get('error') or 'over tolerance'}")
        skipped += [f"{s['backend']}: {s['reason']}" for s in doc.get("skipped", [])]
    return dict(table=table, failing=failing, skipped=sorted(set(skipped)), rows=rows)


def geomean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def summarize_bench(records: Sequence[dict]) -> dict:
    """Cases measured and failed; per (suite, mode, impl) the median ms (single case) or the
    geometric mean of the speedups over eager NCHW and eager channels_last (several layers)."""
    out: dict = {"measured": sum("ms" in r for r in records), "errors": [], "by_impl": {}}
    for r in records:
        if "error" in r:
            out["errors"].append(f"{r['name']} {r['mode']} {r['impl']}: {r['error']}")
    groups: dict[str, list[dict]] = {}
    for r in records:
        if "ms" in r:
            groups.setdefault(f"{r['suite']} {r['mode']} {r['impl']}", []).append(r)
    for key, recs in groups.items():
        out["by_impl"][key] = dict(cases=len(recs), ms=recs[0]["ms"] if len(recs) == 1 else None,
                                   speedup_vs_eager_geomean=geomean([r.get("speedup_vs_eager") for r in recs]),
                                   speedup_vs_eager_cl_geomean=geomean([r.get("speedup_vs_eager_cl") for r in recs]))
    return out


# Nsight Compute's raw page as CSV: a header row ("ID", ..., "Kernel Name", ..., metric names),
# a units row, then one row per profiled kernel.
_NCU_KEEP = re.compile(r"^(gpu__time_duration\.sum|dram__bytes_(read|write)\.sum|lts__t_bytes\.sum|"
                       r".*pipe_tensor.*pct_of_peak.*|sm__throughput\.avg\.pct_of_peak.*|"
                       r"smsp__average_warp(s|_latency)_issue_stalled_.*)$")
_NCU_STALL = re.compile(r"issue_stalled_(\w+?)(_per_issue_active\.ratio|\.ratio|_per_warp_active\.pct)?$")


def parse_ncu_csv(text: str) -> list[dict]:
    """Per profiled kernel: name, duration, DRAM and L2 bytes, tensor-pipe utilization and the
    five largest stall reasons, from ``ncu --csv --page raw --print-units base`` output.

    Args:
        text: the CSV (ncu's own lines before the header, starting with '==', are skipped).

    Returns:
        One dict per kernel: ``kernel``, ``metrics`` (the kept raw metrics as floats),
        ``dram_bytes``, ``l2_bytes``, ``duration_ns``, ``tensor_pct`` (the largest tensor-pipe
        percentage of peak), ``top_stalls`` ([(reason, value)], largest first).
    """
    import csv
    import io

    lines = [ln for ln in text.splitlines() if not ln.startswith("==")]
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID"')), None)
    if start is None:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines[start:]))))
    header, body = rows[0], rows[1:]
    if body and body[0] and body[0][0] == "":  # the units row
        body = body[1:]
    out = []
    for row in body:
        if len(row) != len(header):
            continue
        rec = dict(zip(header, row))
        metrics = {}
        for k, v in rec.items():
            if _NCU_KEEP.match(k):
                try:
                    metrics[k] = float(v.replace(",", ""))
                except ValueError:
                    pass
        stalls = sorted(((_NCU_STALL.search(k).group(1), v) for k, v in metrics.items() if "issue_stalled" in k),
                        key=lambda kv: -kv[1])
        tensor = [v for k, v in metrics.items() if "pipe_tensor" in k]

        def _sum(*keys):
            vals = [metrics[k] for k in keys if k in metrics]
            return sum(vals) if vals else None

        out.append(dict(kernel=rec.get("Kernel Name", ""), metrics=metrics,
                        duration_ns=metrics.get("gpu__time_duration.sum"),
                        dram_bytes=_sum("dram__bytes_read.sum", "dram__bytes_write.sum"),
                        l2_bytes=metrics.get("lts__t_bytes.sum"), tensor_pct=max(tensor) if tensor else None,
                        top_stalls=stalls[:5]))
    return out


def key_numbers(step: str, logs: Path) -> dict:
    """The numbers summary.json keeps for a finished (or killed) step, read from its files."""
    if step == "info":
        info = _read_json(logs / "info.json") or {}
        text = (logs / "info.log").read_text(errors="replace") if (logs / "info.log").exists() else ""
        nvcc = re.search(r"Cuda compilation tools, release ([\d.]+)", text)
        ncu = re.search(r"NVIDIA \(R\) Nsight Compute Command Line Profiler.*?Version ([\w.()-]+)", text, re.S)
        return dict(gpus=info.get("gpus"), backends={k: v.get("available") for k, v in
                                                    (info.get("backends") or {}).items()},
                    nvcc=nvcc.group(1) if nvcc else None, ncu=ncu.group(1) if ncu else None)
    if step == "build":
        return _read_json(logs / "build.json") or {}
    if step == "warmup":
        recs = [r for i in range(WARMUP_WORKERS) for r in read_jsonl(logs / f"warmup-{i}.jsonl")]
        return dict(tasks=len(recs), failed=[f"{r['task']}: {r['error']}" for r in recs if r.get("error")],
                    seconds_per_task=round(sum(r.get("seconds", 0) for r in recs) / max(len(recs), 1), 2))
    if step == "verify":
        docs = [d for d in (_read_json(p) for p in sorted(logs.glob("verify-*.json"))) if isinstance(d, dict)]
        return summarize_verify(docs)
    if step == "tests":
        reports = [r for i in range(TEST_SHARDS) for r in read_jsonl(logs / f"tests-{i}.jsonl")]
        collected = [r["collected"] for r in reports if "collected" in r]
        return summarize_tests([r for r in reports if "outcome" in r], collected[0] if collected else None)
    if step in ("bench_layers", "train_step", "infer_graph", "bench_compile"):
        return summarize_bench(read_jsonl(logs / f"{step}.jsonl"))
    if step == "ncu":
        path = logs / "ncu_raw.csv"
        return dict(kernels=parse_ncu_csv(path.read_text(errors="replace")) if path.exists() else [])
    return {}


# ------------------------------------------------------------------------------------- driver


def _git(*args) -> Optional[str]:
    try:
        res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def tree_hash() -> str:
    """SHA-256 (16 hex digits) of the package, csrc/ and benchmarks/ sources: ties a run to
    its code when the checkout has no git metadata."""
    h = hashlib.sha256()
    for top in ("inception_kernels", "csrc", "benchmarks", "setup.py", "pyproject.toml"):
        p = ROOT / top
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and "__pycache__" not in q.parts
                                                and q.suffix not in (".so", ".pyc") and q.name != "_build_info.py")
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_identity(commit: Optional[str] = None) -> dict:
    """Commit (``--commit``, ``$GIT_COMMIT``, or git), tree hash, dirty flag, date, host."""
    commit = commit or os.environ.get("GIT_COMMIT") or _git("rev-parse", "--short=12", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return dict(commit=commit, tree_hash=tree_hash(), dirty=None if status is None else bool(status),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                python=sys.version.split()[0])


def _versions(info: dict) -> dict:
    drv = info.get("driver") or {}
    return dict(python=info.get("python"), torch=info.get("torch"), triton=info.get("triton"),
                cuda=info.get("torch_cuda"), driver=drv.get("driver_version"),
                cuda_driver_api=drv.get("cuda_driver_api"), inception_kernels=info.get("inception_kernels"))


def _trim_logs(logs: Path) -> None:
    """Keep the last MAX_LOG_BYTES of every file in the log folder."""
    for p in logs.iterdir():
        if p.is_file() and p.stat().st_size > MAX_LOG_BYTES:
            data = p.read_bytes()[-MAX_LOG_BYTES:]
            p.write_bytes(b"[gpu_check: trimmed to the last 2 MiB]\n" + data)


def finalize(out: Path, logs: Path, summary: dict, python: str, timeout_s: float) -> None:
    """Write bench.csv / speedup.png (rendered in a subprocess by inception_kernels.tools.bench),
    ncu.csv, summary.json and logs.tar.gz into ``out``; nothing else stays there."""
    records = [r for s in ("bench_layers", "train_step", "infer_graph", "bench_compile")
               for r in read_jsonl(logs / f"{s}.jsonl")]
    env = summary.get("environment") or dict(device=(summary.get("device") or {}).get("name"), date=summary.get("date"))
    (logs / "records.json").write_text(json.dumps(dict(environment=env, records=records)))
    render_dir = logs / "render"
    render_dir.mkdir(exist_ok=True)
    if records:
        res = run_shards([Shard("render", [python, str(Path(__file__).resolve()), "_render", logs / "records.json",
                                           render_dir])], max(timeout_s, 5), logs)
        rendered = _read_json(render_dir / "bench.json")
        summary["render"] = dict(status=step_status(res), seconds=res[0].seconds)
        if rendered:
            records = rendered["records"]
    for name in ("bench.csv", "speedup_layers.png"):
        if (render_dir / name).exists():
            shutil.copyfile(render_dir / name, out / ("speedup.png" if name.endswith(".png") else name))
    if records and not (out / "bench.csv").exists():  # the render failed: the records, unformatted
        import csv

        fields = list(dict.fromkeys(k for r in records for k in r))
        with open(out / "bench.csv", "w", newline="") as f:
            csv.DictWriter(f, fieldnames=fields).writeheader()
            csv.DictWriter(f, fieldnames=fields).writerows(records)
    if (logs / "ncu_raw.csv").exists():
        shutil.copyfile(logs / "ncu_raw.csv", out / "ncu.csv")
    summary["records"] = records
    for step in ("bench_layers", "train_step", "infer_graph", "bench_compile"):
        if step in summary["steps"]:
            summary["steps"][step]["key"] = summarize_bench([r for r in records if r.get("step") == step])
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    shutil.copyfile(out / "summary.json", logs / "summary.json")
    _trim_logs(logs)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        print(f"[gpu_check] warning: {out} holds files this run did not write: {foreign}", flush=True)


def run_check(out: Path, logs: Path, plan: Sequence[Step] = PLAN, only: Optional[Sequence[str]] = None,
              commit: Optional[str] = None, python: str = sys.executable, total_s: float = TOTAL_BUDGET_S,
              reserve_s: float = RESERVE_S, shard_builders: Optional[dict] = None) -> dict:
    """Run the plan; write ``out`` (summary.json after every stage, the rest at the end).

    Args:
        out: the output folder (created; must hold nothing but this run's outputs).
        logs: the folder for logs and intermediate files (not ``out``).
        plan: the steps.
        only: run only these steps (the others are recorded as skipped).
        commit: the commit to record (else ``$GIT_COMMIT`` or git).
        python: the interpreter of the shards.
        total_s, reserve_s: the run's wall-clock budget and the part kept for the end.
        shard_builders: step name -> shard builder (default :data:`SHARDS`; tests replace them).

    Returns:
        The summary dict.
    """
    builders = shard_builders or SHARDS
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # a previous run's outputs (OUT holds nothing else: see main)
        if (out / name).is_file():
            (out / name).unlink()
    t0 = time.monotonic()
    deadline = t0 + total_s - reserve_s
    ctx = Context(python=python, logs=logs)
    summary: dict = dict(schema=1, **run_identity(commit), budget_s=total_s,
                         plan=[dataclasses.asdict(s) for s in plan], steps={})
    groups = stages(plan)
    budgets = stage_budgets(plan)
    for i, group in enumerate(groups):
        later = sum(budgets[i + 1:])
        stage_timeout = deadline - time.monotonic() - later  # own budget + slack of earlier stages
        todo = []
        for step in group:
            if only and step.name not in only:
                summary["steps"][step.name] = dict(status="skipped", reason="not in --only", seconds=0.0)
                continue
            shards = builders[step.name](ctx)
            if isinstance(shards, str):
                summary["steps"][step.name] = dict(status="skipped", reason=shards, seconds=0.0)
                continue
            todo.append((step, shards))
        print(f"[gpu_check] stage {i}: {', '.join(s.name for s, _ in todo) or '-'} "
              f"(timeout {stage_timeout:.0f} s)", flush=True)
        if todo:
            flat = [sh for _, shards in todo for sh in shards]
            results = {r.name: r for r in run_shards(flat, max(stage_timeout, 1.0), logs)}
            for step, shards in todo:
                res = [results[sh.name] for sh in shards]
                rec = dict(status=step_status(res), seconds=round(max(r.seconds for r in res), 1),
                           timeout_s=round(stage_timeout), budget_s=step.budget_s,
                           shards=[dataclasses.asdict(r) for r in res])
                try:
                    rec["key"] = key_numbers(step.name, logs)
                except Exception as e:  # noqa: BLE001 -- a parser bug must not end the run
                    rec["key_error"] = f"{type(e).__name__}: {e}"
                summary["steps"][step.name] = rec
                print(f"[gpu_check] {step.name}: {rec['status']} in {rec['seconds']} s", flush=True)
        info = _read_json(logs / "info.json")
        if info:
            gpus = info.get("gpus") or [{}]
            summary["device"] = dict(name=gpus[0].get("name"), capability=gpus[0].get("capability"),
                                     sm_count=gpus[0].get("sm_count"), memory_gib=gpus[0].get("memory_gib"))
            summary["versions"] = _versions(info)
            tools = (summary["steps"].get("info") or {}).get("key") or {}
            summary["versions"].update(nvcc=tools.get("nvcc"), ncu=tools.get("ncu"))
            summary["environment"] = dict(device=summary["device"]["name"], date=summary["date"], **summary["versions"])
        summary["elapsed_s"] = round(time.monotonic() - t0, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    remaining = t0 + total_s - time.monotonic()
    finalize(out, logs, summary, python, timeout_s=remaining - 5)
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


# ------------------------------------------------------------------------------------ dry run

#: Constants of the dry run's time estimates. Measured ones say where; the others are
#: assumptions until a GPU run's step seconds replace them.
ESTIMATE = dict(
    # measured: 1.7-7.3 s per kernel compiling 3a's bf16 forward kernels for sm_90 with triton
    # 3.8 on the 2-core development CPU (inception-kernels report --layers 3a --arch sm_90)
    triton_compile_s=5.0,
    # assumption: Inductor, default mode, one graph of conv + ReLU + cat (no GPU here to time it)
    inductor_compile_s=15.0,
    # assumption: per timed case, around do_bench: building inputs, first call, Python overhead
    case_overhead_s=0.3,
    # assumption: importing torch and initializing CUDA in a fresh process
    process_start_s=6.0,
)


def count_triton_kernels(configs) -> dict:
    """Distinct Triton kernel specializations the launchers pick for ``configs``, counted by
    running the real launchers on 'meta' tensors with launches recorded instead of run (the
    way the AOT report compiles them).

    Args:
        configs: iterable of ``(layer, torch dtype name, batch, size, channels_last, passes)``
            with ``passes`` among ``"fwd"`` (no saved reduce), ``"fwd_save"``, ``"two_launch"``,
            ``"bwd"``.

    Returns:
        ``{"kernels": n}`` or ``{"error": why}`` (e.g. a launcher whose signature changed).
    """
    try:
        import torch

        from inception_kernels import GOOGLENET_INCEPTIONS
        from inception_kernels.testing import record_launches, triton_backward, triton_forward
        from inception_kernels.tools import aot

        keys = set()
        for layer, tdt, batch, size, cl, passes in configs:
            spec = GOOGLENET_INCEPTIONS[layer]
            dt = getattr(torch, tdt)
            fmt = torch.channels_last if cl else torch.contiguous_format

            def act(c, spec=spec, dt=dt, fmt=fmt, batch=batch, size=size):
                return torch.empty(batch, c, size, size, device="meta", dtype=dt, memory_format=fmt)

            ws = [torch.empty(s, device="meta", dtype=dt, memory_format=fmt) for s in spec.weight_shapes]
            bs = [torch.empty(s[0], device="meta", dtype=dt) for s in spec.weight_shapes]
            with record_launches() as launches:
                for p in passes:
                    if p == "bwd":
                        triton_backward(act(spec.out_channels), act(spec.in_channels), act(spec.out_channels),
                                        act(spec.ch3x3red), act(spec.ch5x5red), ws, bs, spec.kernel_sizes,
                                        spec.activation)
                    else:
                        triton_forward(act(spec.in_channels), ws, bs, spec.kernel_sizes, spec.activation,
                                       schedule="two_launch" if p == "two_launch" else "one_launch",
                                       save_reduce=p == "fwd_save")
            keys |= {aot.specialization_key(launch) for launch in launches}
        return {"kernels": len(keys)}
    except Exception as e:  # noqa: BLE001 -- reported, not fatal: the counts feed estimates only
        return {"error": f"{type(e).__name__}: {e}"}


def count_work() -> dict:
    """What each step has to do, counted (cases, checks, kernels to compile, graphs)."""
    n_layers = len(LAYERS)
    bench_cfg = [(l, "bfloat16", BENCH["batch"], None, True, ("fwd", "fwd_save", "two_launch", "bwd")) for l in LAYERS]
    from inception_kernels import GOOGLENET_INCEPTIONS

    bench_cfg = [(l, t, b, GOOGLENET_INCEPTIONS[l].spatial, cl, p) for (l, t, b, _, cl, p) in bench_cfg]
    verify_cfg = [(l, t, 2, 7, False, ("fwd_save", "bwd")) for l in LAYERS for t in ("float32", "float16", "bfloat16")]
    return dict(
        bench_layers_cases=n_layers * (2 * len(LAYER_IMPLS) - 1),  # two-launch is forward-only
        bench_compile_cases=n_layers * 2,
        compile_graphs=n_layers * 3,  # fwd: one graph; fwdbwd: forward + backward graphs
        train_cases=len(NET_IMPLS),
        infer_cases=len(NET_IMPLS) * 2,
        verify_checks=len(LAYERS) * len(VERIFY_DTYPES) * 3 + 2 * 3,  # 3 backends; 2 models each
        triton_kernels_bench=count_triton_kernels(bench_cfg),
        triton_kernels_verify=count_triton_kernels(verify_cfg),
    )


def estimates(work: dict) -> dict:
    """Seconds per step from the counted work and :data:`ESTIMATE` (an estimate, not a
    measurement; the first GPU run's step seconds replace it)."""
    e = ESTIMATE
    kb = work["triton_kernels_bench"].get("kernels")
    kv = work["triton_kernels_verify"].get("kernels")
    bench_case_s = e["case_overhead_s"] + (BENCH["warmup_ms"] + BENCH["rep_ms"]) / 1000
    out = {}
    if kb is not None:
        compile_cpu = kb * e["triton_compile_s"] + work["compile_graphs"] * e["inductor_compile_s"]
        out["warmup"] = e["process_start_s"] + compile_cpu / WARMUP_WORKERS
    if kv is not None:
        shards = len(VERIFY_DTYPES) * len(VERIFY_GROUPS)
        out["verify"] = e["process_start_s"] + kv * e["triton_compile_s"] / shards
    out["bench_layers"] = e["process_start_s"] + work["bench_layers_cases"] * bench_case_s
    out["bench_compile"] = e["process_start_s"] + work["bench_compile_cases"] * (bench_case_s + 2.0)
    return {k: round(v, 1) for k, v in out.items()}


def _collect_tests(python: str) -> dict:
    res = subprocess.run([python, "-m", "pytest", "--collect-only", "-q", "-m", TEST_MARKERS, "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    m = re.search(r"(\d+)/\d+ tests collected|(\d+) tests? collected", res.stdout)
    n = int(m.group(1) or m.group(2)) if m else None
    return dict(collected=n, rc=res.returncode, tail=res.stdout.strip().splitlines()[-1:] if res.stdout else [])


def _check_cases() -> list[str]:
    """Build every timed case without running it: layers on 'meta' at the real batch, the
    GoogLeNet cases (each mode once) on the CPU at batch 1 and an 80x80 image.

    Returns:
        The failures, one line each.
    """
    from inception_kernels.tools import bench

    bad = []
    for layer in LAYERS:
        for mode in ("fwd", "fwdbwd"):
            for impl in LAYER_IMPLS + ("compile",):
                try:
                    case = bench.layer_case(layer, BENCH["batch"], BENCH["dtype"], mode, impl, device="meta")
                    if case.fn is None and impl not in ("fused_cuda", "fused_two_launch"):
                        bad.append(f"layers {layer} {mode} {impl}: {case.unavailable}")
                except Exception as e:  # noqa: BLE001
                    bad.append(f"layers {layer} {mode} {impl}: {type(e).__name__}: {e}")
    # each mode's own code once, the fused model (fuse) once, the CUDA backend's reason where
    # it cannot run: the CPU forward/backward of GoogLeNet takes seconds here
    for mode, impl in (("train", "eager"), ("infer", "fused"), ("infer_graph", "eager_cl"), ("infer", "fused_cuda")):
        try:
            # fp32: the CPU has no bf16 avg_pool3d (the paper variant's LRN); 80x80: the smallest
            # image the aux heads take
            case = bench.googlenet_case("paper", 1, "fp32", mode, impl, device="cpu", image_size=80)
            if case.fn is None and impl != "fused_cuda":
                bad.append(f"googlenet {mode} {impl}: {case.unavailable}")
            if case.cuda_graph != (mode == "infer_graph"):
                bad.append(f"googlenet {mode} {impl}: cuda_graph={case.cuda_graph}")
        except Exception as e:  # noqa: BLE001
            bad.append(f"googlenet {mode} {impl}: {type(e).__name__}: {e}")
    return bad


def dry_run(python: str, out: Path) -> int:
    """Print the plan, its budgets and the counted work; check what can be checked without a
    GPU. Returns the exit status (1 when a check fails). Writes nothing."""
    os.environ.pop("TRITON_INTERPRET", None)  # count with compilable kernels, as on the GPU
    sys.path.insert(0, str(ROOT))
    ok = True
    print(f"gpu_check plan (dry run): budget {TOTAL_BUDGET_S} s, outputs to {out}/")
    print(f"{'stage':>5}  {'step':<14} {'timeout s':>9}  what")
    for step in PLAN:
        print(f"{step.stage:>5}  {step.name:<14} {step.budget_s:>9}  {step.what}")
    budgets = stage_budgets()
    print(f"stage budgets {budgets} + reserve {RESERVE_S} s = {sum(budgets) + RESERVE_S} s "
          f"(limit {TOTAL_BUDGET_S} s)")
    print(f"outputs: {', '.join(OUTPUT_FILES)}")
    for err in check_plan():
        print(f"FAIL plan: {err}")
        ok = False
    ctx = Context(python=python, logs=Path("<logs>"))
    print("\ncommands:")
    for step in PLAN:
        shards = SHARDS[step.name](ctx)
        if isinstance(shards, str):
            print(f"  {step.name}: skipped here: {shards}")
            if step.name == "ncu":
                print(f"  {step.name}: on a machine with ncu: {' '.join(map(str, ncu_argv(ctx)))}")
            continue
        print(f"  {step.name}: {len(shards)} process(es); e.g. {' '.join(map(str, shards[0].argv))}")

    print("\ncounted work:")
    work = count_work()
    for k, v in work.items():
        print(f"  {k:<24} {v}")
    for k in ("triton_kernels_bench", "triton_kernels_verify"):
        if "error" in work[k]:
            print(f"FAIL counting Triton kernels ({k}): {work[k]['error']}")
            ok = False
    est = estimates(work)
    print(f"\nestimated seconds (an estimate: {ESTIMATE}):")
    by_name = {s.name: s for s in PLAN}
    for k, v in est.items():
        flag = "" if v <= by_name[k].budget_s else "  WARN: over its budget"
        print(f"  {k:<14} {v:>7} / {by_name[k].budget_s} s{flag}")

    print("\nchecks without a GPU:")
    ident = run_identity()
    print(f"  commit {ident['commit']} (dirty: {ident['dirty']}), tree {ident['tree_hash']}, python {ident['python']}")
    import torch
    import triton

    print(f"  torch {torch.__version__}, triton {triton.__version__}, CUDA device: {torch.cuda.is_available()}")
    for tool in ("nvcc", "ncu", "nvidia-smi", "ninja"):
        print(f"  {tool}: {shutil.which(tool) or 'not on the PATH'}")
    tests = _collect_tests(python)
    print(f"  tests marked {TEST_MARKERS!r}: {tests['collected']} collected")
    if not tests["collected"]:
        print(f"FAIL test collection: {tests}")
        ok = False
    bad = _check_cases()
    print(f"  timed cases built without running: {'all' if not bad else f'{len(bad)} failed'}")
    for b in bad:
        print(f"FAIL case {b}")
        ok = False
    print("\ndry run: " + ("all checks passed" if ok else "FAILED"))
    return 0 if ok else 1


# ------------------------------------------------------------------------------- subcommands
# Each runs inside one shard (a fresh process); they import torch and the package.


def _cmd_build(args) -> int:
    """Build the extension in place, then record whether it loads (``build.json``)."""
    t0 = time.monotonic()
    rc = subprocess.call([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT)
    code = ("import json; from inception_kernels.testing import extension_status; s = extension_status(); "
            "print(json.dumps(dict(state=s.state, reason=s.reason, loaded=s.loaded)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    status = json.loads(res.stdout) if res.returncode == 0 and res.stdout.strip() else dict(error=res.stderr[-2000:])
    doc = dict(build_rc=rc, build_seconds=round(time.monotonic() - t0, 1), ninja=shutil.which("ninja") is not None,
               **status)
    Path(args.json).write_text(json.dumps(doc))
    print(json.dumps(doc))
    return 0 if rc == 0 and status.get("loaded") else 1


def warmup_tasks() -> list[tuple]:
    """What the warm-up compiles: every timed Triton case and torch.compile case, the
    heaviest first (``(suite, name, batch, mode, impl)``)."""
    tasks = [("googlenet", "paper", TRAIN_BATCH, "train", "fused"), ("googlenet", "paper", 1, "infer_graph", "fused")]
    tasks += [("layers", l, BENCH["batch"], m, "compile") for l in LAYERS for m in ("fwdbwd", "fwd")]
    tasks += [("layers", l, BENCH["batch"], m, i) for l in LAYERS for m, i in
              (("fwdbwd", "fused"), ("fwd", "fused"), ("fwd", "fused_two_launch"))]
    return tasks


def _cmd_warmup(args) -> int:
    import torch

    from inception_kernels.tools import bench

    failures = 0
    mine = [t for k, t in enumerate(warmup_tasks()) if k % args.workers == args.worker]
    with open(args.jsonl, "a") as f:
        for suite, name, batch, mode, impl in mine:
            t0 = time.monotonic()
            rec = dict(task=f"{suite} {name} b{batch} {mode} {impl}")
            try:
                if suite == "layers":
                    case = bench.layer_case(name, batch, BENCH["dtype"], mode, impl)
                else:
                    case = bench.googlenet_case(name, batch, BENCH["dtype"], mode, impl)
                if case.fn is not None:
                    case.fn()
                    torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001 -- the timed step will report it too
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                failures += 1
            rec["seconds"] = round(time.monotonic() - t0, 2)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            torch.cuda.empty_cache()
    return 1 if failures else 0


def _cmd_bench(args) -> int:
    """Time cases (inception_kernels.tools.bench), one JSON line per finished case, layer by layer."""
    import torch

    from inception_kernels.tools import bench

    step = Path(args.jsonl).stem
    impls, modes = args.impls.split(","), args.modes.split(",")
    failures = 0
    with open(args.jsonl, "a") as f:
        names = args.layers.split(",") if args.suite == "layers" else ["paper"]
        for name in names:
            for mode in modes:
                for impl in impls:
                    if impl == "fused_two_launch" and mode != "fwd":
                        continue
                    try:
                        if args.suite == "layers":
                            case = bench.layer_case(name, args.batch, args.dtype, mode, impl)
                        else:
                            case = bench.googlenet_case(name, args.batch, args.dtype, mode, impl)
                        rec = bench.measure(case, args.warmup_ms, args.rep_ms)
                    except Exception as e:  # noqa: BLE001 -- building a case can OOM or fail to compile
                        rec = dict(suite=args.suite, name=name, batch=args.batch, dtype=args.dtype, mode=mode,
                                   impl=impl, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                    rec["step"] = step
                    failures += "error" in rec and not rec["error"].startswith("unavailable")
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    print(bench._format_record(rec), flush=True)
                    torch.cuda.empty_cache()
    return 1 if failures else 0


class _ShardPlugin:
    """pytest plugin: keep every ``of``-th collected test from ``index``; write one JSON line
    per finished test (so a killed shard keeps its results)."""

    def __init__(self, index: int, of: int, jsonl: str):
        self.index, self.of, self.file = index, of, open(jsonl, "a")

    def pytest_collection_modifyitems(self, config, items):
        keep = [it for k, it in enumerate(items) if k % self.of == self.index]
        drop = [it for k, it in enumerate(items) if k % self.of != self.index]
        self.file.write(json.dumps(dict(collected=len(items), mine=len(keep))) + "\n")
        self.file.flush()
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_runtest_logreport(self, report):
        failed = report.outcome == "failed"
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or \
                (report.when == "teardown" and failed):
            outcome = "error" if failed and report.when != "call" else report.outcome
            rec = dict(nodeid=report.nodeid, outcome=outcome, when=report.when, seconds=round(report.duration, 2))
            if failed:
                rec["message"] = str(report.longrepr)[-1500:]
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()


def _cmd_pytest_shard(args) -> int:
    import pytest

    plugin = _ShardPlugin(args.index, args.of, args.jsonl)
    return pytest.main(["-q", "-rfE", "-p", "no:cacheprovider", "-m", TEST_MARKERS, str(ROOT / "tests")],
                       plugins=[plugin])


def _cmd_profile(args) -> int:
    """One fused forward + backward of a layer inside cudaProfilerStart/Stop, after warming up."""
    import torch

    from inception_kernels.tools import bench

    case = bench.layer_case(args.layer, BENCH["batch"], BENCH["dtype"], "fwdbwd", "fused")
    for _ in range(2):
        case.fn()
        for t in case.grad_to_none:
            t.grad = None
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    case.fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    return 0


def _cmd_render(args) -> int:
    """Speedups, bench.json, bench.csv and the speedup PNG (inception_kernels.tools.bench)."""
    from inception_kernels.tools import bench

    results = json.loads(Path(args.records).read_text())
    bench._add_speedups(results["records"])
    for p in bench.write_results(results, args.out):
        print(f"wrote {p}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "bench-results", help="output folder ($OUT)")
    p.add_argument("--logs", default=None, help="folder for logs (default: a new temporary folder)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and check what can be checked here")
    p.add_argument("--only", default="", help="comma-separated steps to run (default all)")
    p.add_argument("--commit", default=None, help="commit to record (default $GIT_COMMIT, else git)")
    sub = p.add_subparsers(dest="sub")
    b = sub.add_parser("_build")
    b.add_argument("--json", required=True)
    w = sub.add_parser("_warmup")
    w.add_argument("--worker", type=int, required=True)
    w.add_argument("--workers", type=int, required=True)
    w.add_argument("--jsonl", required=True)
    be = sub.add_parser("_bench")
    for opt in ("--jsonl", "--suite", "--impls", "--modes", "--dtype"):
        be.add_argument(opt, required=True)
    be.add_argument("--layers", default=",".join(LAYERS))
    be.add_argument("--batch", type=int, required=True)
    be.add_argument("--warmup-ms", type=int, required=True)
    be.add_argument("--rep-ms", type=int, required=True)
    ps = sub.add_parser("_pytest_shard")
    ps.add_argument("--index", type=int, required=True)
    ps.add_argument("--of", type=int, required=True)
    ps.add_argument("--jsonl", required=True)
    pr = sub.add_parser("_profile")
    pr.add_argument("--layer", default=PROFILE_LAYER)
    rd = sub.add_parser("_render")
    rd.add_argument("records")
    rd.add_argument("out")
    args = p.parse_args(argv)
    if args.sub:
        sys.path.insert(0, str(ROOT))
        return {"_build": _cmd_build, "_warmup": _cmd_warmup, "_bench": _cmd_bench, "_pytest_shard": _cmd_pytest_shard,
                "_profile": _cmd_profile, "_render": _cmd_render}[args.sub](args)
    out = Path(args.out)
    if args.dry_run:
        return dry_run(sys.executable, out)
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="gpu_check_logs_"))
    if out.resolve() == logs.resolve() or logs.resolve().is_relative_to(out.resolve()):
        print(f"gpu_check: --logs must be outside --out ({out})", file=sys.stderr)
        return 2
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES) if out.is_dir() else []
    if foreign:
        print(f"gpu_check: {out} must be empty or hold only a previous run's outputs {OUTPUT_FILES}; "
              f"it holds {foreign[:5]}", file=sys.stderr)
        return 2
    only = [s for s in args.only.split(",") if s] or None
    unknown = [s for s in only or () if s not in {st.name for st in PLAN}]
    if unknown:
        print(f"gpu_check: unknown steps {unknown}; steps are {[s.name for s in PLAN]}", file=sys.stderr)
        return 2
    summary = run_check(out, logs, only=only, commit=args.commit)
    print(f"[gpu_check] done in {summary['elapsed_s']} s; outputs in {out}/: "
          f"{', '.join(sorted(p.name for p in out.iterdir()))}; logs in {logs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
