"""One Inception module (the nine of GoogLeNet at 224x224 sizes): fused Triton against eager
(cuDNN, NCHW and channels_last) and torch.compile, forward and forward + backward.

The cases are :func:`inception_kernels.tools.bench.layer_case` -- the same as ``inception-kernels
bench --suites layers``. Axes: see ``benchmarks/conftest.py``.
"""

import pytest

from inception_kernels.tools import bench


def test_inception_layer(benchmark, layer, batch, dtype, mode, impl):
    benchmark.group = f"{layer} b{batch} {dtype} {mode}"
    case = bench.layer_case(layer, batch, dtype, mode, impl)
    if case.unavailable:
        pytest.skip(case.unavailable)
    bench.run_pytest_benchmark(benchmark, case)
