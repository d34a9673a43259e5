"""The whole GoogLeNet at 224x224: inference, and a training step (aux losses, backward, SGD),
fused against eager (cuDNN, NCHW and channels_last) and torch.compile.

The cases are :func:`inception_kernels.tools.bench.googlenet_case` -- the same as
``inception-kernels bench --suites googlenet``. Axes: see ``benchmarks/conftest.py``.
"""

import pytest

from inception_kernels.tools import bench


def test_googlenet(benchmark, variant, batch, dtype, mode, impl):
    benchmark.group = f"googlenet-{variant} b{batch} {dtype} {mode}"
    case = bench.googlenet_case(variant, batch, dtype, mode, impl)
    if case.unavailable:
        pytest.skip(case.unavailable)
    bench.run_pytest_benchmark(benchmark, case, rounds=10, warmup_rounds=3)
