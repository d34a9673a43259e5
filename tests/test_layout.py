"""The contracts of inception_kernels._layout, the one source both backends read (issue 15):
the flat gradient layout, y's memory format and the weight-gradient pixel split."""

import itertools
import re
from pathlib import Path

import pytest
import torch

from inception_kernels import GOOGLENET_INCEPTIONS, InceptionSpec
from inception_kernels import testing  # the layout contracts (defined in inception_kernels/_layout.py)

ROOT = Path(__file__).resolve().parents[1]
ODD = InceptionSpec(7, 3, 5, 9, 1, 3, 2, kernel_sizes=(5, 3))


@pytest.mark.parametrize("layer", [*GOOGLENET_INCEPTIONS, "odd"])
def test_grad_layout_tiles_the_buffer(layer):
    """Every computed gradient has its own slot, the slots tile [0, numel) exactly (dW of the
    computed branches in weight order, then their db), and the views have the weights' shapes
    and memory formats."""
    spec = ODD if layer == "odd" else GOOGLENET_INCEPTIONS[layer]
    gen = torch.Generator().manual_seed(0)
    for channels_last, bias in itertools.product((False, True), (False, True)):
        ws = [torch.empty(s, device="meta") for s in spec.weight_shapes]
        if channels_last:
            ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
        bs = [torch.empty(s[0], device="meta") if bias else None for s in spec.weight_shapes]
        for _ in range(4):
            needs = [bool(v) for v in torch.randint(0, 2, (13,), generator=gen)]
            layout = testing.grad_layout(ws, bs, needs)
            spans = []
            for i, w in enumerate(ws):
                computed = needs[1 + i] or (needs[7 + i] and bias)
                assert layout.computed[i] == computed
                assert (layout.dw_offsets[i] is None) == (layout.db_offsets[i] is None) == (not computed)
                if computed:
                    spans += [(layout.dw_offsets[i], w.numel()), (layout.db_offsets[i], w.shape[0])]
            spans.sort()
            assert [s for s, _ in spans] == list(itertools.accumulate([0] + [n for _, n in spans[:-1]]))
            assert layout.numel == sum(n for _, n in spans)
            flat = torch.empty(layout.numel, device="meta")
            for i, g in enumerate(layout.views(flat, ws)):
                returned = needs[1 + i] if i < 6 else needs[1 + i] and bias
                assert (g is not None) == returned, i
                if g is not None:
                    w = ws[i % 6]
                    assert g.shape == (w.shape if i < 6 else w.shape[:1])
                    if i < 6:
                        assert g.stride() == testing.dense_strides(w)


def test_output_memory_format():
    x = torch.empty(2, 3, 4, 5)
    assert testing.output_memory_format(x) == torch.contiguous_format
    assert testing.output_memory_format(x.contiguous(memory_format=torch.channels_last)) == torch.channels_last
    one = torch.empty(2, 1, 4, 5).contiguous(memory_format=torch.channels_last)  # both formats at once
    assert testing.output_memory_format(one) == torch.contiguous_format
    assert testing.output_memory_format(x[:, :, ::2]) == torch.contiguous_format


def test_one_definition_of_each_contract():
    """No second copy of the contracts in the package or the C++ sources: y's format rule, the
    layout (the old ops._grad_layout / backward._grad_layout / C++ branch_needed) and the pixel
    split's numbers are _layout's alone."""
    rule = re.compile(r"is_contiguous\((memory_format=torch\.channels_last|at::MemoryFormat::ChannelsLast)\) and not")
    copies = []
    for path in [*(ROOT / "inception_kernels").rglob("*.py"), *(ROOT / "csrc").iterdir()]:
        text = path.read_text()
        if path.name != "_layout.py" and (rule.search(text) or "def _grad_layout" in text or "branch_needed" in text
                                          or "_MIN_PIXELS_PER_SPLIT = 512" in text or "kTargetWeightJobs" in text):
            copies.append(path.relative_to(ROOT))
    assert copies == []


def test_pixel_split_rule():
    """The rule's bounds (tests/test_cuda_tiling.py checks C++ gives the same numbers)."""
    rule = testing.WGRAD_SPLIT
    assert testing.pixel_split(0, 10, 64) == (0, 64)
    for pixels, tiles in itertools.product([1, 100, 511, 513, 4096, 256 * 28 * 28], [0, 1, 7, 300, 5000]):
        splits, chunk = testing.pixel_split(pixels, tiles, 64)
        assert chunk % 64 == 0 and 1 <= splits <= rule.max_splits
        assert (splits - 1) * chunk < pixels <= splits * chunk
        assert splits == 1 or splits <= -(-pixels // rule.min_pixels)
        if tiles:
            assert splits <= max(1, -(-rule.target_jobs // tiles))
