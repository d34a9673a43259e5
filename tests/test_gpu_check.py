"""The prepared GPU check (benchmarks/gpu_check.sh, benchmarks/gpu_check.py), without a GPU: its
dry run, the plan's budget rules, the step executor (timeouts, failures, process groups), the
outputs it leaves in $OUT, and the parsers of its steps' results.

Records here are synthetic and live in tmp folders; nothing here is a measurement.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


gc = _load("gpu_check")


def test_dry_run_prints_the_plan_and_passes(tmp_path):
    """`bash benchmarks/gpu_check.sh --dry-run`: every step with its timeout, the total within
    8 minutes, the counted work, and its checks pass; it writes nothing to OUT."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OUT"] = str(out)
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout
    for step in gc.PLAN:
        assert f"  {step.name:<14} {step.budget_s:>9}  " in text, step
    total = sum(gc.stage_budgets()) + gc.RESERVE_S
    assert f"= {total} s (limit {gc.TOTAL_BUDGET_S} s)" in text and total <= 480
    assert "triton_kernels_bench" in text and "{'kernels': " in text
    assert "dry run: all checks passed" in text
    assert not out.exists()


def test_plan_keeps_its_rules():
    assert gc.check_plan() == []
    assert sum(gc.stage_budgets()) + gc.RESERVE_S <= gc.TOTAL_BUDGET_S <= 8 * 60
    assert all(s.budget_s > 0 for s in gc.PLAN)
    assert len(gc.OUTPUT_FILES) <= 8 and all(gc.OUTPUT_NAME.match(n) for n in gc.OUTPUT_FILES)
    # the order of value: build and verify before the timed steps, the profile last
    order = [s.name for s in sorted(gc.PLAN, key=lambda s: s.stage)]
    assert order.index("build") < order.index("verify") < order.index("bench_layers") < order.index("ncu")


def test_plan_rules_catch_a_broken_plan():
    bad = gc.PLAN + (gc.Step("extra", 99, 30, "one step too many"),)
    errs = gc.check_plan(bad)
    assert any("> 480 s" in e for e in errs) and any("no shard builder" in e for e in errs), errs
    assert any("no positive timeout" in e for e in gc.check_plan((gc.Step("info", 0, 0, "x"),)))
    errs = gc.check_plan(outputs=[f"f{i}.txt" for i in range(9)] + ["a/b/c/d.txt", "bad name.txt"])
    assert "11 output files > 8" in errs
    assert any("folders deep" in e for e in errs) and any("bad name.txt" in e for e in errs)


def _py(code: str) -> list:
    return [sys.executable, "-c", code]


def test_a_failing_or_hanging_step_does_not_stop_the_next(tmp_path):
    """Synthetic steps through the real executor: one hangs (and its child too) past its
    timeout, one fails, one works; each gets its status, the hung group is killed, the run
    ends on time and leaves only the declared outputs."""
    pidfile = tmp_path / "child.pid"
    plan = (gc.Step("hang", 0, 2, "sleeps"), gc.Step("fail", 1, 5, "exits 3"), gc.Step("work", 2, 5, "writes"))
    builders = {
        "hang": lambda ctx: [gc.Shard("hang", ["bash", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])],
        "fail": lambda ctx: [gc.Shard("fail", _py("import sys; print('failing'); sys.exit(3)"))],
        "work": lambda ctx: [gc.Shard("work", _py("print('fine')"), stdout="work.txt")],
    }
    out, logs = tmp_path / "out", tmp_path / "logs"
    t0 = time.monotonic()
    summary = gc.run_check(out, logs, plan=plan, commit="abc123", total_s=30, reserve_s=5,
                           shard_builders=builders)
    assert time.monotonic() - t0 < 25
    steps = summary["steps"]
    assert steps["hang"]["status"] == "timeout" and steps["hang"]["shards"][0]["timed_out"]
    assert steps["fail"]["status"] == "failed" and steps["fail"]["shards"][0]["rc"] == 3
    assert steps["work"]["status"] == "ok"
    assert (logs / "work.txt").read_text() == "fine\n"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], \
        "the hung step's child survived"
    # outputs: summary.json and the logs, nothing else (no bench records: no CSV or PNG)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.json"]
    disk = json.loads((out / "summary.json").read_text())
    assert disk["commit"] == "abc123" and disk["steps"]["work"]["status"] == "ok"
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "logs/fail.log" in names and "logs/summary.json" in names


def test_slack_rolls_over_but_later_steps_keep_their_budgets(tmp_path):
    plan = (gc.Step("a", 0, 10, "quick"), gc.Step("b", 1, 10, "quick"))
    seen = {}

    def builder(name):
        def build(ctx):
            seen[name] = time.monotonic()
            return [gc.Shard(name, _py("pass"))]
        return build

    summary = gc.run_check(tmp_path / "out", tmp_path / "logs", plan=plan, total_s=60, reserve_s=10,
                           shard_builders={"a": builder("a"), "b": builder("b")})
    # a may use everything but b's 10 s and the reserve; b inherits what a left
    assert 35 <= summary["steps"]["a"]["timeout_s"] <= 40
    assert summary["steps"]["b"]["timeout_s"] >= 40


def test_outputs_from_synthetic_bench_records(tmp_path):
    """A step that writes bench records: the run renders bench.csv and speedup.png through
    inception_kernels.tools.bench, and summary.json holds the speedups (synthetic numbers)."""
    recs = []
    for layer, fused_ms in (("3a", 0.5), ("3b", 2.0)):
        for impl, ms in (("eager", 1.0), ("eager_cl", 0.8), ("fused", fused_ms)):
            recs.append(dict(suite="layers", name=layer, batch=256, dtype="bf16", mode="fwd", impl=impl, ms=ms,
                             ms_p10=ms, ms_p90=ms, tflops=1.0, gbps=None, flops=1, bytes_min=None,
                             step="bench_layers"))
    src = tmp_path / "synthetic.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    plan = (gc.Step("bench_layers", 0, 20, "synthetic records"),)
    code = f"import shutil; shutil.copy({str(src)!r}, {str(tmp_path / 'logs' / 'bench_layers.jsonl')!r})"
    out = tmp_path / "out"
    summary = gc.run_check(out, tmp_path / "logs", plan=plan, total_s=120, reserve_s=60,
                           shard_builders={"bench_layers": lambda ctx: [gc.Shard("bench_layers", _py(code))]})
    assert summary["render"]["status"] == "ok", (tmp_path / "logs" / "render.log").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "logs.tar.gz", "speedup.png", "summary.json"]
    key = summary["steps"]["bench_layers"]["key"]["by_impl"]["layers fwd fused"]
    assert key["cases"] == 2 and key["speedup_vs_eager_geomean"] == pytest.approx(1.0)  # sqrt(2 * 0.5)
    assert key["speedup_vs_eager_cl_geomean"] == pytest.approx(0.8)
    csv_lines = (out / "bench.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("suite,name,batch")


def test_warmup_covers_every_compiled_case_of_the_timed_steps():
    tasks = set(gc.warmup_tasks())
    for layer in gc.LAYERS:
        for mode in ("fwd", "fwdbwd"):
            assert ("layers", layer, gc.BENCH["batch"], mode, "fused") in tasks
            assert ("layers", layer, gc.BENCH["batch"], mode, "compile") in tasks
        assert ("layers", layer, gc.BENCH["batch"], "fwd", "fused_two_launch") in tasks
    assert ("googlenet", "paper", gc.TRAIN_BATCH, "train", "fused") in tasks
    assert ("googlenet", "paper", 1, "infer_graph", "fused") in tasks


def test_read_jsonl_drops_a_truncated_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert gc.read_jsonl(p) == [{"a": 1}, {"b": 2}]
    assert gc.read_jsonl(tmp_path / "missing.jsonl") == []


def test_shard_plugin_splits_and_records_outcomes(tmp_path):
    """Two shards of one synthetic test file: every test runs in exactly one, and each outcome
    is recorded as the test finishes."""
    (tmp_path / "test_syn.py").write_text(
        "import pytest\n"
        "def test_a(): pass\n"
        "def test_b(): assert 0\n"
        "def test_c(): pytest.skip('why')\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError('setup')\n"
        "def test_d(broken): pass\n"
        "def test_e(): pass\n")
    reports = []
    for index in (0, 1):
        jsonl = tmp_path / f"s{index}.jsonl"
        code = (f"import sys, pytest; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import gpu_check as g; "
                f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(tmp_path / 'test_syn.py')!r}], "
                f"plugins=[g._ShardPlugin({index}, 2, {str(jsonl)!r})]))")
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=120)
        reports += gc.read_jsonl(jsonl)
    outcomes = {r["nodeid"].split("::")[1]: r["outcome"] for r in reports if "outcome" in r}
    assert outcomes == {"test_a": "passed", "test_b": "failed", "test_c": "skipped", "test_d": "error",
                        "test_e": "passed"}
    summary = gc.summarize_tests([r for r in reports if "outcome" in r], collected=5)
    assert summary["counts"] == {"passed": 2, "failed": 1, "skipped": 1, "error": 1}
    assert summary["not_run"] == 0 and len(summary["failed"]) == 2
    assert [r["mine"] for r in reports if "mine" in r] == [3, 2]


def test_summarize_verify():
    docs = [{"checks": [dict(layer="3a", backend="triton", dtype="bfloat16", passed=True),
                        dict(layer="3b", backend="cuda", dtype="bfloat16", passed=False, error="boom")],
             "skipped": [{"backend": "cuda", "reason": "no device"}]},
            {"checks": [dict(layer="4a", backend="triton", dtype="bfloat16", passed=True)], "skipped": []}]
    s = gc.summarize_verify(docs)
    assert s["table"] == {"triton": {"bfloat16": {"passed": 2, "failed": 0}},
                          "cuda": {"bfloat16": {"passed": 0, "failed": 1}}}
    assert s["failing"] == ["3b cuda bfloat16: boom"] and s["skipped"] == ["cuda: no device"]


NCU_SAMPLE = '''==PROF== Connected to process 123
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum","lts__t_bytes.sum","sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active","smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio","smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio","smsp__average_warps_issue_stalled_wait_per_issue_active.ratio","launch__registers_per_thread"
"","","","","","","","","","","","byte","byte","nsecond","byte","%","ratio","ratio","ratio","register/thread"
"0","123","python","h","_inception_fwd_kernel","1","7","(256, 1, 1)","(3072, 1, 1)","0","9.0","1,000,000","500000","250000","9000000","41.5","0.5","2.25","0.75","168"
"1","123","python","h","_grads_kernel","1","7","(256, 1, 1)","(96, 1, 1)","0","9.0","2000","1000","125000","30000","12","3","1","0.1","200"
'''


def test_parse_ncu_csv():
    kernels = gc.parse_ncu_csv(NCU_SAMPLE)
    assert [k["kernel"] for k in kernels] == ["_inception_fwd_kernel", "_grads_kernel"]
    fwd = kernels[0]
    assert fwd["dram_bytes"] == 1_500_000 and fwd["l2_bytes"] == 9_000_000 and fwd["duration_ns"] == 250_000
    assert fwd["tensor_pct"] == 41.5
    assert fwd["top_stalls"] == [("long_scoreboard", 2.25), ("wait", 0.75), ("barrier", 0.5)]
    assert "launch__registers_per_thread" not in fwd["metrics"]
    assert kernels[1]["top_stalls"][0] == ("barrier", 3.0)
    assert gc.parse_ncu_csv("==PROF== no kernels were profiled") == []


def test_info_key_numbers(tmp_path):
    (tmp_path / "info.json").write_text(json.dumps(dict(
        gpus=[dict(name="NVIDIA H200", capability="9.0")], backends={"cuda": {"available": True}})))
    (tmp_path / "info.log").write_text(
        "Cuda compilation tools, release 13.0, V13.0.88\n"
        "NVIDIA (R) Nsight Compute Command Line Profiler\nCopyright (c) 2018-2025 NVIDIA Corporation\n"
        "Version 2025.3.1.0 (build 36398880) (public-release)\n")
    key = gc.key_numbers("info", tmp_path)
    assert key == dict(gpus=[dict(name="NVIDIA H200", capability="9.0")], backends={"cuda": True}, nvcc="13.0",
                       ncu="2025.3.1.0")


def test_refuses_an_out_folder_with_other_files(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")
    assert gc.main(["--out", str(out), "--logs", str(tmp_path / "logs")]) == 2
    assert "must be empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "not ours" and not (tmp_path / "logs").exists()


def test_a_failed_render_still_leaves_the_records_as_csv(tmp_path):
    rec = dict(suite="layers", name="3a", batch=256, dtype="bf16", mode="fwd", impl="fused", ms=0.5,
               step="bench_layers")
    src = tmp_path / "synthetic.jsonl"
    src.write_text(json.dumps(rec) + "\n")
    code = f"import shutil; shutil.copy({str(src)!r}, {str(tmp_path / 'logs' / 'bench_layers.jsonl')!r})"
    out = tmp_path / "out"
    summary = gc.run_check(out, tmp_path / "logs", plan=(gc.Step("bench_layers", 0, 20, "synthetic"),),
                           python="/bin/false", total_s=60, reserve_s=30,
                           shard_builders={"bench_layers": lambda ctx: [gc.Shard("bench_layers", _py(code))]})
    assert summary["render"]["status"] == "failed"
    lines = (out / "bench.csv").read_text().splitlines()
    assert lines == ["suite,name,batch,dtype,mode,impl,ms,step", "layers,3a,256,bf16,fwd,fused,0.5,bench_layers"]
    assert not (out / "speedup.png").exists()


def test_a_finished_step_leaves_nothing_running(tmp_path):
    """A shard that exits while its child still runs: the child is ended with it."""
    pidfile = tmp_path / "child.pid"
    res = gc.run_shards([gc.Shard("quick", ["bash", "-c", f"sleep 60 & echo $! > {pidfile}"])], 30, tmp_path)
    assert res[0].rc == 0 and not res[0].timed_out
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
