"""inception_kernels.tools.bench without a GPU: the CUDA-graph inference mode picks Triton's CUDA-graph
timer, and inputs are made on the case's device (meta builds every case without memory)."""

import pytest
import torch

from inception_kernels.tools import bench


def test_infer_graph_case_is_timed_as_a_cuda_graph(monkeypatch):
    import triton.testing

    calls = []

    def fake(name):
        def timer(fn, *args, **kwargs):
            calls.append(name)
            return 1.0, 0.9, 1.1
        return timer

    monkeypatch.setattr(triton.testing, "do_bench", fake("do_bench"))
    monkeypatch.setattr(triton.testing, "do_bench_cudagraph", fake("do_bench_cudagraph"))
    graph = bench.googlenet_case("paper", 1, "fp32", "infer_graph", "eager_cl", device="cpu", image_size=96)
    plain = bench.googlenet_case("paper", 1, "fp32", "infer", "eager_cl", device="cpu", image_size=96)
    assert graph.cuda_graph and not plain.cuda_graph
    assert graph.flops == plain.flops > 0
    graph.fn()  # the same eval-mode, no-grad forward
    assert bench.measure(graph)["ms"] == 1.0 and bench.measure(plain)["ms"] == 1.0
    assert calls == ["do_bench_cudagraph", "do_bench"]


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_layer_cases_build_on_meta_at_batch_256(mode):
    case = bench.layer_case("3a", 256, "bf16", mode, "eager_cl", device="meta")
    assert case.fn is not None and case.unavailable is None
    y = case.fn() if mode == "fwd" else None
    if y is not None:
        assert y.device.type == "meta" and y.shape == (256, 256, 28, 28)
    assert case.flops == bench.GOOGLENET_INCEPTIONS["3a"].flops(256, 28, 28) * (3 if mode == "fwdbwd" else 1)


def test_layer_case_inputs_are_seeded_on_their_device():
    a = bench.layer_case("5b", 1, "fp32", "fwd", "eager", device="cpu").fn()
    b = bench.layer_case("5b", 1, "fp32", "fwd", "eager", device="cpu").fn()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
