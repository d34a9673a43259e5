"""Build of inception-kernels: the Python package plus the optional CUDA extension
``inception_kernels._C`` (the kernels of csrc/, for sm_80 and sm_90a in one fat binary).

The extension is built when a CUDA toolkit and a CUDA build of torch are present, and skipped
with a printed reason otherwise; importing the package works either way, and
``inception-kernels info`` tells which. Package metadata lives in pyproject.toml.

Environment switches:
    INCEPTION_KERNELS_NO_CUDA=1       skip the extension on purpose.
    CUDA_HOME / CUDA_PATH             the CUDA toolkit (the folder with lib64/libcudart.so).
    INCEPTION_KERNELS_PTXAS_VERBOSE=1 print registers and spills per kernel (-Xptxas -v).
    MAX_JOBS                          parallel compile jobs (ninja), as in torch.

Every build writes inception_kernels/_build_info.py (git-ignored): whether the extension was
built, why not, and the torch it was built against, which the loader checks at import.
"""

import glob
import os
import shutil
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
ARCHS = ("80", "90a")  # sm_90a: Hopper's warpgroup MMA (wgmma) is arch-specific
SOURCES = ("csrc/module.cpp", "csrc/ops.cpp", "csrc/maxpool3x3.cu", "csrc/inception_fused_fwd.cu",
           "csrc/inception_fused_bwd.cu")
BUILD_INFO = ROOT / "inception_kernels" / "_build_info.py"


def _has_cudart(home: str) -> bool:
    pats = ("lib64/libcudart.so*", "lib/libcudart.so*", "targets/*/lib/libcudart.so*")
    return any(glob.glob(os.path.join(home, p)) for p in pats)


def _find_cuda_home():
    """The toolkit folder holding libcudart, or None.

    torch.utils.cpp_extension guesses it from nvcc's folder, which is wrong when nvcc on the
    PATH is a wrapper script (e.g. /usr/local/bin/nvcc): linking then misses libcudart. So
    look, in order, at CUDA_HOME / CUDA_PATH, /usr/local/cuda and /usr/local/cuda-*, and the
    real location of nvcc.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")) and _has_cudart(home):
            return home
    return None


def _plan_extension():
    """Return (ext_modules, cmdclass, build_info) for this build."""
    info = {"built": False, "reason": "", "torch_version": None, "torch_cuda": None,
            "cuda_home": None, "archs": []}
    if os.environ.get("INCEPTION_KERNELS_NO_CUDA", "") not in ("", "0"):
        info["reason"] = "skipped by INCEPTION_KERNELS_NO_CUDA=1"
        return [], {}, info
    cuda_home = _find_cuda_home()
    if cuda_home is None:
        info["reason"] = ("no CUDA toolkit found (looked at CUDA_HOME, CUDA_PATH, "
                          "/usr/local/cuda*, nvcc on the PATH)")
        return [], {}, info
    # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
    os.environ["CUDA_HOME"] = cuda_home
    info["cuda_home"] = cuda_home
    try:
        import torch
    except ImportError as e:
        info["reason"] = f"torch is not importable in the build environment ({e})"
        return [], {}, info
    info["torch_version"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    if torch.version.cuda is None:
        info["reason"] = f"torch {torch.__version__} is not a CUDA build"
        return [], {}, info

    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    nvcc_flags = ["-O3", "-lineinfo", *gencode]
    if os.environ.get("INCEPTION_KERNELS_PTXAS_VERBOSE", "") not in ("", "0"):
        nvcc_flags.append("-Xptxas=-v")
    ext = CUDAExtension(
        name="inception_kernels._C",
        sources=list(SOURCES),
        extra_compile_args={"cxx": ["-O3"], "nvcc": nvcc_flags},
    )
    info["built"] = True
    info["archs"] = [f"sm_{a}" for a in ARCHS]
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}, info


def _write_build_info(info: dict) -> None:
    lines = ['"""Written by setup.py at build time (git-ignored). Read by inception_kernels._ext."""', ""]
    lines += [f"{k.upper()} = {v!r}" for k, v in info.items()]
    BUILD_INFO.write_text("\n".join(lines) + "\n")


ext_modules, cmdclass, build_info = _plan_extension()
_write_build_info(build_info)
if build_info["built"]:
    print(f"inception-kernels: building the CUDA extension for {', '.join(build_info['archs'])} "
          f"(CUDA_HOME={build_info['cuda_home']}, torch {build_info['torch_version']})")
else:
    print(f"inception-kernels: CUDA extension not built: {build_info['reason']}")

setup(ext_modules=ext_modules, cmdclass=cmdclass)
