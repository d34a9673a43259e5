"""pytest-benchmark suites of the fused Inception kernels (GPU only).

    pytest benchmarks/ --benchmark-group-by=param:name,param:batch,param:dtype,param:mode
    pytest benchmarks/bench_layers.py --bench-quick
    pytest benchmarks/ --bench-layers 3a,5b --bench-batch 256 --bench-dtype bf16 --bench-impls fused,eager_cl

The matrix comes from the ``--bench-*`` options (the same axes as ``inception-kernels bench``;
``--bench-quick`` is its ``--quick`` preset). Files are named ``bench_*.py`` so the test suite
(``pytest`` over ``tests/``) never collects them. Without a CUDA device every benchmark is
skipped with one clear reason; the device is queried during collection, never at import.
"""

import pytest
import torch

from inception_kernels.tools import bench


def pytest_addoption(parser):
    group = parser.getgroup("inception-kernels benchmarks")
    group.addoption("--bench-quick", action="store_true", help="the --quick preset of `inception-kernels bench`")
    for name, help_ in (("layers", "comma-separated layers"), ("batch", "comma-separated batch sizes"),
                        ("dtype", "fp16,bf16,fp32"), ("modes", "fwd,fwdbwd,infer,train"),
                        ("impls", ",".join(bench.IMPLS)), ("variant", "GoogLeNet variant (default paper)")):
        group.addoption(f"--bench-{name}", default=None, help=help_)


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` (pytest's default pattern is ``test_*.py``)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _axis(config, name, default, conv=str):
    value = config.getoption(f"--bench-{name}")
    return tuple(conv(v) for v in value.split(",") if v) if value else default


def pytest_generate_tests(metafunc):
    """Parametrize ``layer``/``variant``, ``batch``, ``dtype``, ``mode`` and ``impl`` from the options."""
    cfg = metafunc.config
    if cfg.getoption("--bench-quick"):
        base = dict(layers=bench.QUICK["layers"], batch=bench.QUICK["batches"], dtype=bench.QUICK["dtypes"],
                    modes=bench.QUICK["modes"], impls=bench.QUICK["impls"])
    else:
        base = dict(layers=tuple(bench.GOOGLENET_INCEPTIONS), batch=bench.BATCHES, dtype=tuple(bench.DTYPES),
                    modes=bench.LAYER_MODES + bench.NET_MODES, impls=bench.IMPLS)
    if "layer" in metafunc.fixturenames:
        metafunc.parametrize("layer", _axis(cfg, "layers", base["layers"]))
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", _axis(cfg, "variant", ("paper",)))
    metafunc.parametrize("batch", _axis(cfg, "batch", base["batch"], int))
    metafunc.parametrize("dtype", _axis(cfg, "dtype", base["dtype"]))
    own = bench.LAYER_MODES if "layer" in metafunc.fixturenames else bench.NET_MODES
    metafunc.parametrize("mode", [m for m in _axis(cfg, "modes", base["modes"]) if m in own])
    metafunc.parametrize("impl", _axis(cfg, "impls", base["impls"]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=bench.SKIP_MESSAGE)
    for item in items:
        item.add_marker(skip)
