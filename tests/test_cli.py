"""``inception-kernels info`` and ``verify``: they run, report, and fail when a check fails."""

import json
import subprocess
import sys

import pytest
import torch

from inception_kernels import reference
from inception_kernels.tools import cli, verify
from inception_kernels.tools.ui import short_kernel

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
    assert short_kernel(name) == "k<float, true>"
    assert short_kernel("_kernel") == "_kernel"


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
    triton_runs = verify._candidate_backends("cuda" if torch.cuda.is_available() else "cpu")[1].fn is not None
    assert any("triton" in r for r in rows) == triton_runs, out
    assert all("PASS" in r for r in rows) and "0 failed" in out


def test_every_available_backend_is_checked():
    """A backend that can run here has a callable in verify's list (regression: after verify
    moved into inception_kernels.tools, it looked for inception_kernels.tools.ops and skipped
    the Triton backend without failing)."""
    from inception_kernels.testing import backend_statuses

    status = backend_statuses()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for cand in verify._candidate_backends(device)[1:]:
        name = "triton-interpreter" if cand.name == "triton" and device == "cpu" else cand.name
        assert (cand.fn is not None) == status[name].available, (cand.name, cand.skip_reason)


def test_verify_knows_the_cuda_backend(capsys):
    """verify checks backend 'cuda' where it can run, and otherwise names it with the reason."""
    from inception_kernels.testing import cuda_status

    status = cuda_status()
    cands = {c.name: c for c in verify._candidate_backends("cuda" if torch.cuda.is_available() else "cpu")}
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
    monkeypatch.setattr(verify, "_candidate_backends", lambda device: [
        verify._Candidate("reference", reference.inception), verify._Candidate("broken", fn)])
    assert cli.main(["verify", "--layers", "3a", "--dtype", "float64", "--size", "4"]) == 1
    out = capsys.readouterr().out
    broken = [line for line in out.splitlines() if line.startswith("3a ") and "broken" in line]
    assert broken and all("FAIL" in line for line in broken), out
    assert expect in out
    assert "1 passed, 1 failed" in out


def test_verify_bad_arguments(capsys):
    assert cli.main(["verify", "--layers", "9z"]) == 2
    assert "unknown layer '9z'" in capsys.readouterr().err


# ------------------------------------------------------------------ fp16 / bf16: three-way

def test_three_way_tolerance_is_twice_pytorch_plus_half_an_ulp():
    assert verify.three_way_tolerance(0.0, 1.0, torch.float16) == 2.0 ** -11
    assert verify.three_way_tolerance(0.0, 4.0, torch.bfloat16) == 4 * 2.0 ** -8
    assert verify.three_way_tolerance(1e-3, 1.0, torch.float16) == 2e-3 + 2.0 ** -11
    # a non-finite PyTorch error earns no credit
    assert verify.three_way_tolerance(float("inf"), 1.0, torch.float16) == 2.0 ** -11


def _only_reference(monkeypatch, extra=()):
    monkeypatch.setattr(verify, "_candidate_backends", lambda device: [
        verify._Candidate("reference", reference.inception), *extra])


def test_verify_accepts_both_dtype_spellings(monkeypatch):
    _only_reference(monkeypatch)
    rows, skipped, _ = verify.run(["3a"], ["fp64", "float64", "bf16", "float16", "fp32"], batch=1, size=2,
                                   device="cpu")
    assert [r.dtype for r in rows] == ["float64", "bfloat16", "float16", "float32"]
    assert all(r.passed for r in rows) and not skipped
    with pytest.raises(ValueError, match=r"unknown dtype 'fp99'.*bfloat16.*bf16"):
        verify.run(["3a"], ["fp99"], device="cpu")


def test_verify_cli_dtype_aliases_and_bad_dtype(monkeypatch, capsys):
    _only_reference(monkeypatch)
    assert cli.main(["verify", "--layers", "3a", "--dtype", "bf16,fp16", "--batch", "1", "--size", "2"]) == 0
    out = capsys.readouterr().out
    assert "3a     reference  bfloat16" in out and "3a     reference  float16" in out, out
    assert cli.main(["verify", "--layers", "3a", "--dtype", "half8"]) == 2
    assert "unknown dtype 'half8'" in capsys.readouterr().err


def _rounded_from_fp32(x, weights, biases, *, kernel_sizes, activation):
    """A correct low-precision backend: fp32 math on the same inputs, rounded once at the end."""
    y = reference.inception(x.float(), [w.float() for w in weights], [b.float() for b in biases],
                            kernel_sizes=kernel_sizes, activation=activation)
    return y.to(x.dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("fn, passes", [
    (_rounded_from_fp32, True),
    (_off_by(5e-2, "output"), False),
    (_off_by(5e-2, "grads"), False),
])
def test_verify_low_precision_three_way(monkeypatch, dtype, fn, passes):
    """The three-way rule passes a backend that is as accurate as PyTorch (here: better, fp32
    math rounded once) and fails one that is 5% off in its output or its gradients."""
    _only_reference(monkeypatch, [verify._Candidate("candidate", fn)])
    rows, _, _ = verify.run(["4a"], [dtype], batch=1, size=3, device="cpu")
    ref, cand = rows
    assert ref.passed, ref
    assert cand.passed == passes, cand
    if not passes:
        assert max(cand.err_out / cand.tol_out, cand.err_grad / cand.tol_grad) > 1


def test_verify_skips_bf16_on_the_interpreter_with_the_reason():
    """On the CPU the Triton interpreter runs fp16 but not bf16: verify says so, the reference
    still checks bf16."""
    if torch.cuda.is_available():
        pytest.skip("the interpreter runs only without a CUDA device")
    rows, skipped, device = verify.run(["3a"], ["bf16"], batch=1, size=2)
    assert device == "cpu"
    assert [(r.backend, r.dtype, r.passed) for r in rows] == [("reference", "bfloat16", True)]
    if verify._candidate_backends("cpu")[1].fn is not None:  # the interpreter is on (tests/conftest.py)
        assert ("triton", f"bfloat16: {verify.INTERPRETER_BF16}") in skipped


def test_verify_models_only(monkeypatch, capsys):
    _only_reference(monkeypatch)
    assert cli.main(["verify", "--models", "--size", "4"]) == 0
    out = capsys.readouterr().out
    assert "GoogLeNet-paper" in out and "GoogLeNet-torchvision" in out
    assert not any(line.startswith(("3a ", "5b ")) for line in out.splitlines()), out
