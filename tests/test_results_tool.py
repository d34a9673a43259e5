"""benchmarks/results.py: filing a GPU run, the README's measured tables and the table from which
backend "auto" picks the CUDA kernels -- on synthetic runs in temporary folders (never under
benchmarks/results/), and the repository's own files against its committed runs.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from inception_kernels import GOOGLENET_INCEPTIONS
from inception_kernels.testing import find_measured, measured_key

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


rt = _load("results")


def test_readme_and_measured_table_match_the_committed_runs():
    """README.md's block and inception_kernels/_measured.py are what the tool writes from
    benchmarks/results/ (today: no run, so the block says so and the table is empty)."""
    assert rt.main(["readme", "--check"]) == 0
    assert rt.main(["measured", "--check"]) == 0
    if not rt.latest_runs():
        readme = (ROOT / "README.md").read_text()
        assert "**No GPU run has produced results yet**" in readme


def _rec(name, mode, impl, ms, suite="layers", batch=256, dtype="bf16"):
    return dict(suite=suite, name=name, batch=batch, dtype=dtype, mode=mode, impl=impl, ms=ms, ms_p10=ms, ms_p90=ms)


def synthetic_summary(**changes):
    """A run as gpu_check.py writes it, with made-up numbers: the CUDA kernels are faster than
    Triton on 3a in both modes, on 3b forward only, on 4a in both but 4a fails verify."""
    records = []
    for layer, cuda in (("3a", (0.4, 1.2)), ("3b", (0.5, 3.0)), ("4a", (0.1, 0.2))):
        for mode, c in zip(("fwd", "fwdbwd"), cuda):
            for impl, ms in (("fused", 1.0 if mode == "fwd" else 2.0), ("fused_cuda", c), ("eager", 1.5),
                             ("eager_cl", 1.25), ("compile", 1.1)):
                records.append(_rec(layer, mode, impl, ms))
        records.append(_rec(layer, "fwd", "fused_two_launch", 0.9))
    for mode, batch in (("train", 256), ("infer", 1), ("infer_graph", 1)):
        for impl, ms in (("fused", 100.0), ("fused_cuda", 90.0), ("eager", 120.0), ("eager_cl", 110.0)):
            records.append(_rec("paper", mode, impl, ms / (50 if batch == 1 else 1), suite="googlenet", batch=batch))
    rows = [dict(layer=l, backend=b, dtype=d, passed=not (l == "4a" and b == "cuda"))
            for l in ("3a", "3b", "4a") for b in ("reference", "triton", "cuda") for d in ("float32", "bfloat16")]
    summary = dict(
        schema=1, commit="0123456789abcdef", tree_hash="feedbeef", date="2030-01-02T03:04:05+00:00",
        device=dict(name="NVIDIA H200", capability="9.0", sm_count=132, memory_gib=139.8),
        versions=dict(python="3.12.3", torch="2.11.0+cu130", triton="3.6.0", cuda="13.0", driver="580.00"),
        steps=dict(build=dict(status="ok", seconds=50.0, key=dict(loaded=True)),
                   verify=dict(status="failed", seconds=80.0, key=dict(rows=rows, table={"cuda": {"bfloat16": {
                       "passed": 2, "failed": 1}}})),
                   tests=dict(status="ok", seconds=100.0, key=dict(counts={"passed": 200, "skipped": 3},
                                                                   failed=[], reported=203, collected=203,
                                                                   not_run=0)),
                   ncu=dict(status="ok", seconds=20.0, key=dict(kernels=[dict(
                       kernel="_inception_fwd_kernel", duration_ns=250000.0, dram_bytes=1.5e6, l2_bytes=9e6,
                       tensor_pct=41.5, top_stalls=[["long_scoreboard", 2.25], ["wait", 0.75]])]))),
        records=records)
    summary.update(changes)
    return summary


def _write_run(tmp_path, summary, name="out"):
    out = tmp_path / name
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "bench.csv").write_text("suite,name\n")
    (out / "speedup.png").write_bytes(b"\x89PNG synthetic")
    (out / "logs.tar.gz").write_bytes(b"not really a tarball")
    return out


def test_adopt_files_the_run_and_fills_readme_and_table(tmp_path):
    root = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{rt.BEGIN}\nold\n{rt.END}\n\nafter\n")
    measured = tmp_path / "_measured.py"
    out = _write_run(tmp_path, synthetic_summary())
    assert rt.main(["--root", str(root), "--readme", str(readme), "--measured", str(measured), "adopt", str(out)]) == 0
    run = root / "NVIDIA_H200" / "2030-01-02-0123456789ab"
    assert sorted(p.name for p in run.iterdir()) == ["bench.csv", "logs.tar.gz", "speedup.png", "summary.json"]

    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "\nold\n" not in text
    assert "#### Measured on NVIDIA H200 (capability 9.0, 132 SMs), 2030-01-02, commit 0123456789abcdef" in text
    assert "measured, not estimated" in text and "torch 2.11.0+cu130, triton 3.6.0" in text
    # 3a fwd: fused 1.0, two-launch 0.9, cuda 0.4, eager 1.5, eager CL 1.25, compile 1.1; fused vs CL 1.25x
    assert "| 3a | fwd | 1.000 | 0.900 | 0.400 | 1.500 | 1.250 | 1.100 | 1.25x |" in text
    assert "| 3a | fwdbwd | 2.000 | - | 1.200 | 1.500 | 1.250 | 1.100 | 0.62x |" in text
    assert "| training step (autocast), batch 256, bf16 | 100.000 | 90.000 | 120.000 | 110.000 |" in text
    assert "| inference, CUDA graph, batch 1, bf16 | 2.000 | 1.800 | 2.400 | 2.200 |" in text
    assert "cuda bfloat16: 2/3" in text and "200 passed" in text
    assert "- `_inception_fwd_kernel`: 250.0 us, DRAM 1.5 MB, L2 9.0 MB, tensor 41.5 %; stalls: long_scoreboard 2.25" \
        in text
    assert f"![speedup over eager NCHW, measured]({run / 'speedup.png'})" in text
    assert 'picks `"cuda"` (inception_kernels/_measured.py) for: 3a bfloat16.' in text

    ns = {}
    exec(measured.read_text(), ns)
    (entry,) = ns["CUDA_FASTER"]
    assert (entry["layer"], entry["dtype"], entry["height"], entry["channels_last"]) == ("3a", "bfloat16", 28, True)
    assert entry["ms"] == {"fwd": {"triton": 1.0, "cuda": 0.4}, "fwdbwd": {"triton": 2.0, "cuda": 1.2}}
    # the entry is what backend "auto" matches: a bf16 channels_last 3a input at 28x28 on that device
    with FakeTensorMode():
        x = torch.empty(8, 192, 28, 28, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
    key = measured_key(x, GOOGLENET_INCEPTIONS["3a"], "NVIDIA H200", "9.0")
    assert find_measured(ns["CUDA_FASTER"], key) is entry
    assert find_measured(ns["CUDA_FASTER"], dict(key, height=14)) is None

    # both files are now what the tool writes; an edit by hand is caught
    args = ["--root", str(root), "--readme", str(readme), "--measured", str(measured)]
    assert rt.main(args + ["readme", "--check"]) == 0 and rt.main(args + ["measured", "--check"]) == 0
    measured.write_text(measured.read_text().replace("0.4", "0.3"))
    assert rt.main(args + ["measured", "--check"]) == 1


@pytest.mark.parametrize("change", [
    dict(failed=["tests/test_fused_forward.py::test_googlenet_layers_bf16_three_way[3a-cuda]"]),
    dict(not_run=5),
    dict(reported=0),
])
def test_no_cuda_entry_without_every_cuda_test_passing(change):
    summary = synthetic_summary()
    summary["steps"]["tests"]["key"].update(change)
    assert rt.cuda_faster_entries(dict(summary, path=Path("x"))) == []


def test_no_cuda_entry_without_a_loaded_extension_or_a_device():
    summary = synthetic_summary()
    summary["steps"]["build"]["key"]["loaded"] = False
    assert rt.cuda_faster_entries(dict(summary, path=Path("x"))) == []
    assert rt.cuda_faster_entries(dict(synthetic_summary(device={}), path=Path("x"))) == []
    assert [e["layer"] for e in rt.cuda_faster_entries(dict(synthetic_summary(), path=Path("x")))] == ["3a"]


def test_latest_run_per_device(tmp_path):
    for device, run in (("A", "2030-01-01-aaa"), ("A", "2030-02-01-bbb"), ("B", "2029-12-31-ccc")):
        (tmp_path / device / run).mkdir(parents=True)
        (tmp_path / device / run / "summary.json").write_text("{}")
    (tmp_path / "README.md").write_text("not a device")
    assert [p.relative_to(tmp_path).as_posix() for p in rt.latest_runs(tmp_path)] == ["A/2030-02-01-bbb",
                                                                                        "B/2029-12-31-ccc"]


def test_adopt_refuses_what_is_not_a_gpu_run(tmp_path, capsys):
    assert rt.main(["--root", str(tmp_path / "r"), "adopt", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    out = _write_run(tmp_path, synthetic_summary(device={"name": None}))
    assert rt.main(["--root", str(tmp_path / "r"), "adopt", str(out)]) == 2
    assert "names no device" in capsys.readouterr().err


def test_readme_without_markers_is_refused(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    assert rt.main(["--root", str(tmp_path), "--readme", str(readme), "readme"]) == 2
    assert "has no block" in capsys.readouterr().err
