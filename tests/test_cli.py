"""``inception-kernels info`` and ``verify``: they run, report, and fail when a check fails."""

import json
import subprocess
import sys

import pytest
import torch

from inception_kernels import _verify, cli, reference

BACKENDS = ("reference", "triton", "triton-interpreter", "cuda")


def test_info_lists_versions_and_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    for name in BACKENDS:
        assert f"\n  {name} " in out, out
    assert "CUDA extension:" in out


def test_short_kernel_names():
    name = "void inception_kernels::(anonymous namespace)::k<float, true>(float const*, float*, long)"
    assert cli._short_kernel(name) == "k<float, true>"
    assert cli._short_kernel("_kernel") == "_kernel"


def test_info_json():
    info = json.loads(json.dumps(cli.collect_info()))  # JSON-ready
    assert list(info["backends"]) == list(BACKENDS)
    assert info["backends"]["reference"]["available"] is True
    assert info["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert info["gpus"] == [] and info["backends"]["cuda"]["available"] is False


def test_python_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "inception_kernels", "info", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["backends"]["reference"]["available"] is True


def test_verify_passes_and_prints_table(capsys):
    """The real backend list: reference, plus triton wherever it can run (the interpreter here)."""
    assert cli.main(["verify", "--layers", "3a", "--dtype", "float64", "--batch", "1", "--size", "4"]) == 0
    out = capsys.readouterr().out
    assert "layer  backend" in out
    rows = [line for line in out.splitlines() if line.startswith("3a ")]
    assert any("reference" in r and "PASS" in r for r in rows), out
    triton_runs = _verify._candidate_backends("cuda" if torch.cuda.is_available() else "cpu")[1].fn is not None
    assert any("triton" in r for r in rows) == triton_runs, out
    assert all("PASS" in r for r in rows) and "0 failed" in out


def test_verify_knows_the_cuda_backend(capsys):
    """verify checks backend 'cuda' where it can run, and otherwise names it with the reason."""
    from inception_kernels import _backends

    status = _backends.cuda_status()
    cands = {c.name: c for c in _verify._candidate_backends("cuda" if torch.cuda.is_available() else "cpu")}
    assert (cands["cuda"].fn is not None) == status.available
    if not status.available:
        assert cands["cuda"].skip_reason == status.reason
        assert cli.main(["verify", "--layers", "3a", "--dtype", "float64", "--batch", "1", "--size", "2"]) == 0
        assert f"skipped backend cuda: {status.reason}" in capsys.readouterr().out


def test_verify_json(capsys):
    assert cli.main(["verify", "--layers", "3a", "--dtype", "float32", "--batch", "1", "--size", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["passed"] is True and res["device"] in ("cpu", "cuda")
    assert {"layer": "3a", "backend": "reference", "dtype": "float32"}.items() <= res["checks"][0].items()


def _off_by(fraction, where):
    """A backend equal to the reference except for a relative error in its output or its gradients."""

    def fn(x, weights, biases, *, kernel_sizes, activation):
        y = reference.inception(x, weights, biases, kernel_sizes=kernel_sizes, activation=activation)
        if where == "output":
            return y * (1 + fraction)
        y = y * 1.0  # a non-leaf to hook
        y.register_hook(lambda g: g * (1 + fraction))
        return y

    return fn


def _raises(x, weights, biases, *, kernel_sizes, activation):
    raise RuntimeError("kernel exploded")


@pytest.mark.parametrize("fn, expect", [
    (_off_by(1e-3, "output"), "FAIL"),
    (_off_by(1e-3, "grads"), "FAIL"),
    (_raises, "kernel exploded"),
])
def test_verify_fails_on_broken_backend(monkeypatch, capsys, fn, expect):
    monkeypatch.setattr(_verify, "_candidate_backends", lambda device: [
        _verify._Candidate("reference", reference.inception), _verify._Candidate("broken", fn)])
    assert cli.main(["verify", "--layers", "3a", "--dtype", "float64", "--size", "4"]) == 1
    out = capsys.readouterr().out
    broken = [line for line in out.splitlines() if line.startswith("3a ") and "broken" in line]
    assert broken and all("FAIL" in line for line in broken), out
    assert expect in out
    assert "1 passed, 1 failed" in out


def test_verify_bad_arguments(capsys):
    assert cli.main(["verify", "--layers", "9z"]) == 2
    assert "unknown layer '9z'" in capsys.readouterr().err
