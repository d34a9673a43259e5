"""A package people can ship: the sdist holds everything the build needs, the wheel's metadata
names the license, the package is typed, and the CLI reports its version."""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import inception_kernels

ROOT = Path(__file__).resolve().parent.parent


def _git_files(path: str, *extra: str) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", *extra, path], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout: {e}")
    return out.stdout.split()


def test_sdist_holds_everything_the_build_needs(tmp_path):
    """Every tracked file under csrc/ (sources and headers), the CMake build, the license, the
    design document the code cites and py.typed are in the sdist."""
    csrc = _git_files("csrc")
    assert any(f.endswith((".h", ".cuh")) for f in csrc) and any(f.endswith(".cu") for f in csrc)
    # build from a copy of the checkout's files: an egg-info left by an editable install would
    # otherwise supply its old file list
    src = tmp_path / "src"
    for f in _git_files(".", "--cached", "--others", "--exclude-standard"):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)], cwd=src,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = set(csrc) | {"CMakeLists.txt", "LICENSE", "CHANGELOG.md", "docs/design.md", "setup.py", "pyproject.toml",
                        "inception_kernels/py.typed", "inception_kernels/__init__.py"}
    missing = sorted(want - names)
    assert not missing, f"missing from the sdist: {missing}"


def test_license_and_typed_marker():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'license = {text = "MIT"}' in text and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (Path(inception_kernels.__file__).parent / "py.typed").is_file()


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "inception_kernels", "--version"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"inception-kernels {inception_kernels.__version__}"
