"""Test support for inception-kernels: random inputs, BatchNorm statistics, tolerances, the
three-way check.

Like :mod:`torch.testing`, this module ships with the library so that its test suite, the
``verify`` tool and users checking their own build share one definition of "random Inception
inputs" and of "close enough". It imports only torch and the library's :mod:`.spec`.

- :func:`make_inception_inputs`: ``x``, the six weights, the six biases (and an output
  gradient) of one Inception module, drawn in float64 from a seeded generator and cast.
- :func:`randomize_batchnorm`: non-trivial running statistics and affine parameters of every
  ``nn.BatchNorm2d`` of a model, so that eval-mode BatchNorm and its folding are really tested.
- :data:`TOLERANCES` / :func:`tolerance`: the one table of ``(atol, rtol)`` per check and dtype.
- :func:`three_way_errors` / :func:`assert_three_way` / :func:`three_way_tolerance`: the
  low-precision rule (docs/design.md §6.1): the kernel's error against a float64 answer may be
  at most twice PyTorch's own error in the same dtype, plus a small floor.

The library's internals that tests and tools need, behind names that stay put when the
private modules move (issue 15: tests reach private helpers only through here):

- :func:`count_launches` / :class:`LaunchCount` / :func:`record_launches`: count (or record
  instead of running) the package's kernel launches.
- :func:`backend_statuses`, :func:`cuda_status`, :func:`triton_interpreter_status`,
  :func:`interpreter_enabled`, :class:`BackendStatus`: which backends can run here, and why not;
  :func:`measured_key` / :func:`find_measured`: how ``backend="auto"`` looks a call up in the
  measured table; :func:`measured_table` / :func:`override_measured`: that table, and another
  one for the duration of a block.
- :func:`extension_status`, :func:`extension_library_path`, :func:`extension_ops_registered`:
  the CUDA extension's build/load state.
- :data:`OP_SCHEDULES`: the schedules each backend's op accepts; :func:`cuda_two_launch`: whether
  the CUDA forward runs as two launches.
- :func:`grad_layout`, :class:`GradLayout`, :func:`split_grads`, :func:`output_memory_format`,
  :func:`dense_strides`, :data:`WGRAD_SPLIT`, :class:`PixelSplitRule`, :func:`pixel_split`: the
  layout contracts both backends share.
- :func:`triton_forward` / :func:`triton_backward`: the Triton launchers themselves, below the
  op (imported on first call: the kernel modules import Triton); :func:`triton_target` and
  :func:`triton_forward_plan`: the GPU they tile for and the forward's plan.
- :func:`override_wgrad_split`: run the backward with another weight-gradient split rule.
- :func:`googlenet_min_input_size`: the smallest input of a GoogLeNet variant.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Union

import torch
import torch.nn as nn

from ._backends import BackendStatus, cuda_status, find_measured, interpreter_enabled, measured_key, triton_interpreter_status
from ._backends import available_backends as backend_statuses
from ._checks import OP_SCHEDULES, cuda_two_launch
from ._layout import WGRAD_SPLIT, GradLayout, PixelSplitRule, dense_strides, grad_layout, output_memory_format, pixel_split
from .spec import InceptionSpec
from .triton._launches import LaunchCount, count_launches

__all__ = [
    "InceptionInputs", "make_inception_inputs", "WEIGHT_INITS", "randomize_batchnorm",
    "Tolerance", "TOLERANCES", "tolerance", "THREE_WAY_ATOL",
    "three_way_errors", "assert_three_way", "three_way_tolerance",
    "count_launches", "LaunchCount", "record_launches",
    "BackendStatus", "backend_statuses", "cuda_status", "triton_interpreter_status", "interpreter_enabled",
    "extension_status", "extension_library_path", "extension_ops_registered", "OP_SCHEDULES",
    "cuda_two_launch",
    "GradLayout", "grad_layout", "split_grads", "output_memory_format", "dense_strides", "WGRAD_SPLIT",
    "PixelSplitRule", "pixel_split", "measured_key", "find_measured",
    "triton_forward", "triton_backward", "triton_target", "triton_forward_plan",
    "googlenet_min_input_size", "override_wgrad_split", "measured_table", "override_measured",
]

# ---------------------------------------------------------------------------------------- inputs

#: Weight scalings of :func:`make_inception_inputs`, by name: the standard deviation of a weight
#: of fan-in ``fan_in = Cin * K * K``.
#:
#: - ``"lecun"``: ``1 / sqrt(fan_in)``: unit-scale pre-activations, the default.
#: - ``"he"``: ``sqrt(2 / fan_in)``: Kaiming's ReLU gain; keeps ReLU outputs O(1) through the
#:   reduce -> spatial chain, used by the backward suites.
#: - ``"unit"``: 1 (no scaling): for tests where only shapes or exact algebra matter.
WEIGHT_INITS = ("lecun", "he", "unit")


def _scaled_weight(t: torch.Tensor, init: str) -> torch.Tensor:
    fan_in = t.shape[1] * t.shape[2] * t.shape[3]
    if init == "lecun":
        return t / fan_in ** 0.5
    if init == "he":
        return t * (2.0 / fan_in) ** 0.5
    return t


@dataclass
class InceptionInputs:
    """The tensors of one call of the fused op.

    Unpacks as ``x, weights, biases = inputs`` (the op's first three arguments); the output
    gradient, when drawn, is ``inputs.grad_out``.

    Attributes:
        x: ``[N, Cin, H, W]`` input.
        weights: the six conv weights ``(w1, w3r, w3, w5r, w5, wp)``.
        biases: the six biases (None entries for absent ones), or None for no biases at all.
        grad_out: ``[N, Cout, H, W]`` output gradient, or None when not requested.
    """

    x: torch.Tensor
    weights: list
    biases: Optional[list]
    grad_out: Optional[torch.Tensor] = None

    def __iter__(self) -> Iterator:
        return iter((self.x, self.weights, self.biases))

    def biases_or_nones(self) -> list:
        """The six biases, with None for each absent one (also when there are none at all)."""
        return list(self.biases) if self.biases is not None else [None] * 6


def make_inception_inputs(
    spec: InceptionSpec,
    n: int,
    h: int,
    w: int,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    *,
    seed: int = 0,
    weight_init: str = "lecun",
    bias_scale: float = 1.0,
    bias: Union[bool, str] = "all",
    channels_last: bool = False,
    grad_out: bool = False,
    x: Optional[torch.Tensor] = None,
) -> InceptionInputs:
    """Random inputs of one Inception module, reproducible from ``seed``.

    Every tensor is drawn in float64 from one ``torch.Generator`` seeded with ``seed``, in the
    order ``x``, the six weights, the six biases, ``grad_out``, and then cast to ``dtype`` and
    moved to ``device`` (so the values do not depend on the device, and a low-precision tensor
    is the rounding of the float64 one).

    Args:
        spec: the module's shape; its ``kernel_sizes`` give the KxK weights' sizes.
        n, h, w: batch and spatial size of ``x``.
        dtype: dtype of every returned tensor.
        device: device of every returned tensor (``"meta"`` works too).
        seed: seed of the generator.
        weight_init: one of :data:`WEIGHT_INITS` (``"lecun"``: std ``1/sqrt(fan_in)``).
        bias_scale: standard deviation of the biases.
        bias: ``"all"`` / True (six biases), ``"none"`` / False (``biases`` is None) or
            ``"mixed"`` (biases 0, 2, 4 present, 1, 3, 5 None). All six are drawn in every case,
            so the other tensors do not depend on this choice.
        channels_last: return ``x`` in ``torch.channels_last`` memory format.
        grad_out: also draw an output gradient ``[n, spec.out_channels, h, w]`` (unit normal).
        x: use this input instead of drawing one (it is cast like the others; nothing is drawn
            for it, so the weights are the generator's first draws).

    Returns:
        An :class:`InceptionInputs`.

    Raises:
        ValueError: an unknown ``weight_init`` or ``bias`` choice, or a negative size.
    """
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    bias_choice = {True: "all", False: "none"}.get(bias, bias) if isinstance(bias, bool) else bias
    if bias_choice not in ("all", "none", "mixed"):
        raise ValueError(f"bias must be 'all', 'none', 'mixed' or a bool, got {bias!r}")
    if min(n, h, w) < 0:
        raise ValueError(f"n, h, w must be >= 0, got n={n}, h={h}, w={w}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    if x is None:
        x = torch.randn(n, spec.in_channels, h, w, generator=g, dtype=f64)
    ws = [_scaled_weight(torch.randn(s, generator=g, dtype=f64), weight_init) for s in spec.weight_shapes]
    bs = [torch.randn(s[0], generator=g, dtype=f64) * bias_scale for s in spec.weight_shapes]
    gy = torch.randn(n, spec.out_channels, h, w, generator=g, dtype=f64) if grad_out else None

    def cast(t):
        return t.to(device=device, dtype=dtype)

    x = cast(x)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    biases: Optional[list] = [cast(b) for b in bs]
    if bias_choice == "none":
        biases = None
    elif bias_choice == "mixed":
        biases = [b if i % 2 == 0 else None for i, b in enumerate(biases)]
    return InceptionInputs(x, [cast(t) for t in ws], biases, None if gy is None else cast(gy))


# ------------------------------------------------------------------------------------ BatchNorm


def randomize_batchnorm(model: nn.Module, seed: Union[int, torch.Generator] = 0, *, affine: bool = True) -> nn.Module:
    """Non-trivial statistics (and affine parameters) for every ``nn.BatchNorm2d`` of ``model``,
    in place: running mean ``0.2 * N(0, 1)``, running variance ``0.5 + U(0, 1)``, weight
    ``1 + 0.3 * N(0, 1)``, bias ``0.1 * N(0, 1)``, drawn in that order, layer by layer.

    Args:
        model: any module; layers without running statistics or without affine parameters keep
            what they lack.
        seed: seed of a new generator, or a generator to draw from (then the caller's later
            draws continue its stream).
        affine: also set weight and bias; False draws the running statistics alone.

    Returns:
        ``model``.
    """
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                if affine and m.weight is not None:
                    m.weight.copy_(1 + 0.3 * torch.randn(c, generator=g))
                    m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


# ----------------------------------------------------------------------------------- tolerances


class Tolerance(NamedTuple):
    """``(atol, rtol)`` of one check in one dtype; how they combine is the check's (see
    :data:`TOLERANCES`)."""

    atol: float
    rtol: float


#: The tolerances of every comparison against the reference, by check and dtype. Each check
#: says how ``atol`` and ``rtol`` combine:
#:
#: - ``"forward"``: fused forward vs ``reference.inception`` in the same dtype,
#:   ``torch.testing.assert_close(y, want, atol, rtol)`` on unit-scale data.
#: - ``"backward"``: every gradient vs autograd of the reference in the same dtype,
#:   ``assert_close(g, want, atol=atol * max|want|, rtol)``: atol relative to the largest gradient.
#: - ``"verify"``: ``inception-kernels verify``, and whole-model checks: a tensor passes when
#:   ``max|got - want| <= atol + rtol * max|want|``.
#: - ``"fuzz"``: the property-based suite (awkward strides, random flags),
#:   ``assert_close(got, want_f64, atol, rtol)`` against the float64 oracle.
#: - ``"emulator"``: the CUDA algorithm run as plain C++ on the CPU,
#:   ``max|got - want| <= atol * max(max|want|, 1)`` against float64 (rtol unused); fp16: the
#:   outputs' and the on-chip reduce outputs' rounding to fp16 (2^-11 relative), accumulated
#:   over the GEMMs (fp32 accumulation).
#: - ``"reference"``: ``reference.inception`` vs an ``nn`` composition (both PyTorch's own convs),
#:   ``assert_close(atol, rtol)``.
#: - ``"transforms"``: torch.func transforms of the fused op vs of the reference, in float64.
#: - ``"reordered"``: two kernels on the same operands with the same accumulation and rounding,
#:   in a different order (the forward's two schedules), ``assert_close(atol, rtol)``.
#: - ``"cuda"``: the CUDA backend's GPU tests (streams, strided biases, 64-bit offsets) against
#:   the float32/float64 reference, ``assert_close(atol, rtol)`` (gradients: ``atol * max(1, max|want|)``).
#:
#: fp32 entries assume TF32 off (the tests' ``ieee_fp32`` fixture; verify switches it off).
#: float16 / bfloat16 are checked three-way instead (:data:`THREE_WAY_ATOL`), except where a
#: check lists them.
TOLERANCES: dict[str, dict[torch.dtype, Tolerance]] = {
    "forward": {torch.float64: Tolerance(1e-10, 0.0), torch.float32: Tolerance(1e-4, 1e-4)},
    "backward": {torch.float64: Tolerance(1e-11, 1e-10), torch.float32: Tolerance(2e-5, 1e-4)},
    "verify": {torch.float64: Tolerance(1e-12, 1e-10), torch.float32: Tolerance(1e-5, 1e-4)},
    "fuzz": {torch.float64: Tolerance(1e-9, 1e-7), torch.float32: Tolerance(2e-5, 2e-4)},
    "emulator": {torch.float64: Tolerance(1e-10, 0.0), torch.float32: Tolerance(2e-5, 0.0),
                 torch.float16: Tolerance(1e-2, 0.0)},
    "reference": {torch.float64: Tolerance(1e-12, 1e-12), torch.float32: Tolerance(1e-5, 1e-5)},
    "transforms": {torch.float64: Tolerance(1e-9, 1e-7)},
    "cuda": {torch.float16: Tolerance(2e-2, 2e-2), torch.float32: Tolerance(1e-4, 1e-4)},
    "reordered": {torch.float16: Tolerance(2e-3, 2e-3)},
}

#: The floor ``atol`` of the three-way rule (:func:`assert_three_way`), by check and dtype:
#: - ``"forward"``: absolute, on unit-scale outputs (float32: a GPU's fp32 forward against
#:   PyTorch's, TF32 off; ``"forward_tf32"``: with TF32 on).
#: - ``"backward"``: on errors relative to the largest float64 gradient (``"backward_tf32"``:
#:   fp32 gradients with TF32 on, on a GPU).
#: - ``"batchnorm"``: times ``max(1, max|float64 answer|)``.
#: - ``"fuzz"``: times ``max(1, max|float64 answer|)`` (2^-10 for fp16, 2^-7 for bf16).
THREE_WAY_ATOL: dict[str, dict[torch.dtype, float]] = {
    "forward": {torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float32: 1e-4},
    "forward_tf32": {torch.float32: 1e-2},
    "backward": {torch.float16: 5e-4, torch.bfloat16: 5e-4},
    "backward_tf32": {torch.float32: 1e-4},
    "batchnorm": {torch.float16: 2e-3, torch.float32: 1e-5},
    "fuzz": {torch.float16: 2 ** -10, torch.bfloat16: 2 ** -7},
}


def tolerance(check: str, dtype: torch.dtype) -> Tolerance:
    """The ``(atol, rtol)`` of ``check`` in ``dtype`` from :data:`TOLERANCES`.

    Raises:
        KeyError: a check or dtype the table has no entry for (the message lists the entries).
    """
    try:
        return TOLERANCES[check][dtype]
    except KeyError:
        have = {c: [str(d).removeprefix("torch.") for d in t] for c, t in TOLERANCES.items()}
        raise KeyError(f"no tolerance for check {check!r} in {dtype}; the table has {have}") from None


# ------------------------------------------------------------------------------ three-way check


def _max_abs(t: torch.Tensor) -> float:
    return t.double().abs().max().item() if t.numel() else 0.0


def three_way_errors(got: torch.Tensor, same_dtype: torch.Tensor, exact: torch.Tensor, *,
                     relative: bool = False) -> tuple[float, float]:
    """``(kernel error, PyTorch error)``: max abs differences of ``got`` and of ``same_dtype``
    (PyTorch's own result in the low-precision dtype) from ``exact`` (the float64 answer from the
    same low-precision inputs); divided by ``max|exact|`` when ``relative``."""
    exact = exact.double()
    k = _max_abs(got.double() - exact)
    t = _max_abs(same_dtype.double() - exact)
    if relative:
        scale = max(_max_abs(exact), 1e-30)
        k, t = k / scale, t / scale
    return k, t


def assert_three_way(got: torch.Tensor, same_dtype: torch.Tensor, exact: torch.Tensor, *, atol: float,
                     relative: bool = False, what: str = "") -> None:
    """The low-precision rule: the kernel's error against the float64 answer at most twice
    PyTorch's own error in the same dtype, plus ``atol``. This absorbs PyTorch's (cuDNN's) choice
    of algorithm and rounding, which a fixed tolerance cannot.

    Args:
        got: the kernel's result, in the low-precision dtype.
        same_dtype: PyTorch's result from the same inputs in the same dtype.
        exact: the float64 result from the same (low-precision) inputs.
        atol: the floor (see :data:`THREE_WAY_ATOL`); scale it before the call if the check's
            floor is relative.
        relative: compare errors relative to ``max|exact|`` (see :func:`three_way_errors`).
        what: the tensor's name, for the message.

    Raises:
        AssertionError: the shapes differ, or the kernel's error exceeds the bound (the message
            gives both errors and the bound).
    """
    assert got.shape == exact.shape == same_dtype.shape, f"{what}: shapes {got.shape}, {same_dtype.shape}, {exact.shape}"
    k, t = three_way_errors(got, same_dtype, exact, relative=relative)
    bound = 2 * t + atol
    assert k <= bound, f"{what}: kernel error {k:.3g} > 2 x PyTorch's {t:.3g} + {atol:.3g} = {bound:.3g}"


def three_way_tolerance(torch_err: float, exact_max: float, dtype: torch.dtype) -> float:
    """The three-way bound of ``verify``: twice PyTorch's own error in ``dtype`` plus half an ulp
    of ``dtype`` at the largest exact value (``finfo.eps / 2`` relative: 2^-11 for fp16, 2^-8
    for bf16).

    Args:
        torch_err: max abs error of PyTorch (in ``dtype``) against float64.
        exact_max: max abs value of the float64 answer.
        dtype: torch.float16 or torch.bfloat16.

    Returns:
        The largest max abs error the kernel may have against the float64 answer. A non-finite
        PyTorch error gives no credit (half an ulp alone).
    """
    half_ulp = torch.finfo(dtype).eps / 2 * exact_max
    if not math.isfinite(torch_err):
        return half_ulp
    return 2 * torch_err + half_ulp


# ------------------------------------------------------------------ the library's internals
# For tests and tools only: thin, documented doors onto private modules, so that a test names
# what it checks, not where the library keeps it. The re-exported names above
# (count_launches, LaunchCount, BackendStatus, backend_statuses, cuda_status,
# triton_interpreter_status, interpreter_enabled, measured_key, find_measured, OP_SCHEDULES,
# GradLayout, grad_layout, output_memory_format, dense_strides, WGRAD_SPLIT, PixelSplitRule,
# pixel_split) are the library's own objects.


def record_launches():
    """Context manager: record, instead of running, every Triton launch of the package inside
    the block (for ahead-of-time compiles of exactly what a launcher would launch, e.g. on
    'meta' tensors). For tests and tools.

    Returns:
        A context manager yielding a list that receives ``(kernel, grid, args, kwargs)`` per launch.
    """
    from .triton._launches import _record_launches

    return _record_launches()


def extension_status():
    """The CUDA extension's state (built, loaded, or why not): ``.loaded``, ``.reason`` and the
    build record. Cached; for tests and tools."""
    from . import _ext

    return _ext.status()


def extension_library_path() -> Optional[str]:
    """Path of the built extension library, or None when it is not built. For tests and tools."""
    from . import _ext

    return _ext.library_path()


def extension_ops_registered() -> bool:
    """Whether the extension's fused ops are registered with ``torch.ops.inception_kernels``.
    For tests and tools."""
    from . import _ext

    return _ext.fused_kernels_registered()


def split_grads(flat: torch.Tensor, weights, biases, needs) -> tuple:
    """The 12 gradients ``(dw1, ..., dwp, db1, ..., dbp)`` of the backward op's flat buffer,
    as the op splits them (views of ``flat``; None where ``needs`` is False or a bias is
    absent). For tests and tools.

    Args:
        flat: the flat gradient buffer the backward op returns.
        weights: the six weights; biases: the six biases (None entries for absent ones).
        needs: the 13 ``needs_input_grad`` flags ``(x, w1..wp, b1..bp)``.
    """
    from .ops import _split_grads

    return _split_grads(flat, weights, biases, needs)


def triton_target(device: torch.device):
    """The GPU the Triton launchers tile for when their tensors live on ``device``: a
    ``Target`` with ``arch`` (e.g. 90) and ``sms``; CPU tensors (the interpreter) tile as
    sm_90, meta tensors as the newest ahead-of-time target. For tests and tools that check a
    launcher's choice."""
    from .triton._config import target_of

    return target_of(device)


def triton_forward(x, weights, biases, kernel_sizes, activation, **kwargs):
    """The Triton forward launcher itself (no op, no autograd): ``(y, r3, r5)``; keyword
    arguments ``schedule`` and ``save_reduce`` as the op's. Imports the kernel modules on first
    call (set ``TRITON_INTERPRET`` before). For tests and tools.

    Raises:
        ValueError: what the launcher refuses (bad arguments, unknown schedule, sizes past its
            index range).
    """
    from .triton.inception_fwd import _inception_forward

    return _inception_forward(x, weights, biases, kernel_sizes, activation, **kwargs)


def triton_backward(grad_y, x, y, r3, r5, weights, biases, kernel_sizes=(3, 5), activation="relu", **kwargs):
    """The Triton backward launcher itself: ``(dx, dws, dbs)`` (None where not needed);
    keyword argument ``needs_input_grad`` as the op's. Imports the kernel modules on first call.
    For tests and tools.

    Raises:
        ValueError: what the launcher refuses (bad arguments or saved tensors).
    """
    from .triton.backward import _inception_backward

    return _inception_backward(grad_y, x, y, r3, r5, weights, biases, kernel_sizes, activation, **kwargs)


def triton_forward_plan(channels, kernel_sizes, n: int, h: int, w: int, dtype: torch.dtype, *, arch: int,
                        sms: Optional[int], schedule: str = "auto"):
    """The Triton forward's plan (schedule, tiles, grid) for one call, as its launcher makes it,
    for a GPU of compute capability ``arch`` (e.g. 90) with ``sms`` multiprocessors (None: the
    interpreter). Needs no GPU. For tests and tools that check a plan or model its cost.

    Args:
        channels: ``(in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj)``.
        kernel_sizes: the two spatial kernel sizes, e.g. ``(3, 5)``.
        n, h, w: batch and image size.
        dtype: the input dtype.
        arch, sms: the target GPU.
        schedule: ``"auto"``, ``"one_launch"`` or ``"two_launch"``.

    Returns:
        The launcher's ``ForwardPlan``.

    Raises:
        ValueError: what the planner refuses (e.g. an unknown schedule).
    """
    from .triton._config import Target
    from .triton.inception_fwd import _plan

    return _plan(channels, kernel_sizes, n, h, w, dtype, Target(arch, sms), schedule)


def googlenet_min_input_size(variant: str, aux_heads: bool, last_map: int = 1) -> int:
    """The smallest H (or W) at which every layer of a GoogLeNet ``variant`` (``"paper"`` or
    ``"torchvision"``) has a non-empty output (:attr:`GoogLeNet.min_input_size` for a built
    model); with ``last_map`` > 1, the smallest at which the last Inception maps (5a/5b) are at
    least ``last_map`` x ``last_map``. For tests that want the smallest real-size input."""
    from .models.googlenet import _min_input_size

    return _min_input_size(variant, aux_heads, last_map)


@contextlib.contextmanager
def override_wgrad_split(rule: PixelSplitRule) -> Iterator[None]:
    """Inside the block, both backends' backward split the weight gradients' reduction over
    pixels by ``rule`` instead of :data:`WGRAD_SPLIT` (e.g. ``dataclasses.replace(WGRAD_SPLIT,
    min_pixels=1)`` to get several partial sums from a small problem). :data:`WGRAD_SPLIT` here
    keeps naming the shipped rule. For tests only; not thread-safe.

    Raises:
        TypeError: ``rule`` is not a :class:`PixelSplitRule`.
    """
    from . import _layout

    if not isinstance(rule, PixelSplitRule):
        raise TypeError(f"override_wgrad_split: rule must be a PixelSplitRule, got {type(rule).__name__}")
    shipped = _layout.WGRAD_SPLIT
    _layout.WGRAD_SPLIT = rule
    try:
        yield
    finally:
        _layout.WGRAD_SPLIT = shipped


def measured_table() -> tuple:
    """The table ``backend="auto"`` reads now: the CUDA kernels' entries verified and measured
    faster than Triton (inception_kernels/_measured.py; see :func:`measured_key`), or the
    override of :func:`override_measured`. For tests and tools."""
    from . import _measured

    return _measured.CUDA_FASTER


@contextlib.contextmanager
def override_measured(table) -> Iterator[None]:
    """Inside the block, ``backend="auto"`` reads ``table`` (a sequence of entry dicts, each with
    the :func:`measured_key` fields) instead of the committed measured table; the committed one
    is back after the block. For tests only; not thread-safe.

    Raises:
        TypeError: ``table`` is not a list or tuple of dicts.
    """
    from . import _measured

    if not isinstance(table, (list, tuple)) or not all(isinstance(e, dict) for e in table):
        raise TypeError(f"override_measured: table must be a list or tuple of dicts, got {table!r:.80}")
    committed = _measured.CUDA_FASTER
    _measured.CUDA_FASTER = tuple(table)
    try:
        yield
    finally:
        _measured.CUDA_FASTER = committed
