"""The memory contracts of the fused ops, one source for both backends (docs/design.md §5).

- :func:`output_memory_format`: the memory format of ``y`` (and of the fused BatchNorm
  variant's output), chosen from ``x``'s.
- :func:`grad_layout` / :class:`GradLayout`: where the backward op's one flat gradient buffer
  keeps each weight and bias gradient. The Triton backward writes by it, the ops view it
  (:meth:`GradLayout.views`), and the CUDA backward receives it as an argument
  (:meth:`GradLayout.as_ints`; ``csrc/ops.cpp`` only checks that it stays inside the buffer).
- :data:`WGRAD_SPLIT` / :func:`pixel_split`: how the weight gradients' reduction over the
  ``N*H*W`` pixels is split into jobs. The Triton backward calls :func:`pixel_split`; the CUDA
  backward receives :data:`WGRAD_SPLIT` as an argument (:meth:`PixelSplitRule.as_ints`) and runs
  the same formula (``tiling::make_pixel_split``; tests/test_cuda_tiling.py checks that the two
  agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

__all__: list[str] = []

#: Weights and biases of one Inception module (w1, w3r, w3, w5r, w5, wp).
NUM_CONVS = 6


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format of the fused ops' output for input ``x``: channels_last when x is
    channels_last and not also NCHW-contiguous (e.g. ``C = 1`` or ``H = W = 1``), else
    contiguous NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def dense_strides(w: torch.Tensor) -> tuple[int, int, int, int]:
    """Strides of a dense gradient of ``w``'s shape in ``w``'s memory format: channels_last when
    ``w`` is channels_last and not also contiguous, else contiguous."""
    _, ci, kh, kw = (int(v) for v in w.shape)
    if not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        return (ci * kh * kw, 1, kw * ci, ci)
    return (ci * kh * kw, kh * kw, kw, 1)


@dataclass(frozen=True)
class GradLayout:
    """The flat parameter-gradient buffer of the fused backward.

    The dW of every *computed* branch (its weight's gradient or its bias's gradient is
    needed: one job computes both), in weight order, then their db. A computed branch has both
    slots even when only one of its gradients is returned.

    Attributes:
        computed: 6 flags, conv i's gradients are computed.
        returned: 12 flags for ``(dw1, ..., dwp, db1, ..., dbp)``: returned to the caller.
        dw_offsets, db_offsets: 6 element offsets each into the buffer; None where not computed.
        dw_strides: the 6 dW strides (each weight's memory format, :func:`dense_strides`).
        numel: the buffer's length.
    """

    computed: tuple[bool, ...]
    returned: tuple[bool, ...]
    dw_offsets: tuple[Optional[int], ...]
    db_offsets: tuple[Optional[int], ...]
    dw_strides: tuple[tuple[int, int, int, int], ...]
    numel: int

    def views(self, flat: torch.Tensor, weights: Sequence[torch.Tensor]) -> tuple[Optional[torch.Tensor], ...]:
        """The 12 gradients ``(dw1, ..., dwp, db1, ..., dbp)`` as views of ``flat``; None where
        not returned."""
        dws = [flat.as_strided(w.shape, st, off) if self.returned[i] else None
               for i, (w, st, off) in enumerate(zip(weights, self.dw_strides, self.dw_offsets))]
        dbs = [flat.as_strided((w.shape[0],), (1,), off) if self.returned[NUM_CONVS + i] else None
               for i, (w, off) in enumerate(zip(weights, self.db_offsets))]
        return (*dws, *dbs)

    def as_ints(self) -> list[int]:
        """The layout as the CUDA backward op's ``grad_layout`` argument: ``[numel, dW offsets (6),
        db offsets (6), dW strides (6 x 4)]``, -1 for the offsets of a branch not computed."""
        offsets = [-1 if o is None else o for o in (*self.dw_offsets, *self.db_offsets)]
        return [self.numel, *offsets, *(v for st in self.dw_strides for v in st)]


def grad_layout(weights: Sequence[torch.Tensor], biases: Sequence[Optional[torch.Tensor]],
                needs_input_grad: Sequence[bool]) -> GradLayout:
    """The flat gradient buffer's layout for these parameters and needed gradients.

    Args:
        weights: the 6 weights ``[Cout, Cin, k, k]``.
        biases: the 6 biases (tensor or None).
        needs_input_grad: 13 flags for ``(x, w1, ..., wp, b1, ..., bp)``.

    Returns:
        A :class:`GradLayout`.
    """
    need_dw = [bool(needs_input_grad[1 + i]) for i in range(NUM_CONVS)]
    need_db = [bool(needs_input_grad[1 + NUM_CONVS + i]) and biases[i] is not None for i in range(NUM_CONVS)]
    computed = tuple(a or b for a, b in zip(need_dw, need_db))
    dw_off: list[Optional[int]] = [None] * NUM_CONVS
    db_off: list[Optional[int]] = [None] * NUM_CONVS
    total = 0
    for i, w in enumerate(weights):
        if computed[i]:
            dw_off[i], total = total, total + w.numel()
    for i, w in enumerate(weights):
        if computed[i]:
            db_off[i], total = total, total + int(w.shape[0])
    return GradLayout(computed=computed, returned=(*need_dw, *need_db), dw_offsets=tuple(dw_off),
                      db_offsets=tuple(db_off), dw_strides=tuple(dense_strides(w) for w in weights), numel=total)


@dataclass(frozen=True)
class PixelSplitRule:
    """How the weight gradients' reduction over the ``N*H*W`` pixels is split into jobs.

    Attributes:
        target_jobs: weight-gradient jobs the split aims at in all (enough to fill a GPU
            several times; a backend counts its own tiles).
        min_pixels: at most ``cdiv(pixels, min_pixels)`` splits, so that a split reduces about
            this many pixels or more: bounds the partial-sum traffic (``S * params * 4`` bytes)
            well below the activation traffic.
        max_splits: most splits: bounds the ``[S, P]`` partial-sum buffer.
    """

    target_jobs: int
    min_pixels: int
    max_splits: int

    def as_ints(self) -> list[int]:
        """The rule as the CUDA backward op's ``wgrad_split`` argument."""
        return [self.target_jobs, self.min_pixels, self.max_splits]


#: The one weight-gradient split rule of both backends.
WGRAD_SPLIT = PixelSplitRule(target_jobs=1024, min_pixels=512, max_splits=64)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pixel_split(pixels: int, weight_tiles: int, step: int, rule: Optional[PixelSplitRule] = None) -> tuple[int, int]:
    """Split ``pixels`` into slices for ``weight_tiles`` weight-gradient tiles.

    Enough splits for about ``rule.target_jobs`` jobs (``weight_tiles`` x splits), at most
    ``cdiv(pixels, rule.min_pixels)`` and ``rule.max_splits``, at least 1; the pixels per split
    rounded up to ``step`` (the backend's reduction step).

    Args:
        pixels: ``N * H * W`` (>= 0).
        weight_tiles: the backend's weight- and bias-gradient tiles of one split (>= 0).
        step: the granule of a split (> 0).
        rule: None for :data:`WGRAD_SPLIT`.

    Returns:
        ``(splits, pixels_per_split)``; ``splits = 0`` when ``pixels = 0``. The same numbers as
        ``tiling::make_pixel_split`` (csrc/inception_tiling.h) for the same rule.
    """
    rule = WGRAD_SPLIT if rule is None else rule
    s = _cdiv(rule.target_jobs, weight_tiles) if weight_tiles > 0 else 1
    s = max(1, min(s, _cdiv(pixels, rule.min_pixels), rule.max_splits))
    chunk = max(step, _cdiv(_cdiv(pixels, s), step) * step)
    return _cdiv(pixels, chunk), chunk
