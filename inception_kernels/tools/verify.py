"""``inception-kernels verify``: every available backend against an independent composition.

For each Inception layer of :data:`GOOGLENET_INCEPTIONS` (real channel counts, small spatial
size), each dtype and each backend, the check runs the backend's forward and backward and
compares the output and the gradients of ``x``, all six weights and all six biases with an
independent composition of ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.ReLU`` modules and
``torch.cat`` that holds the same parameters. Errors are max absolute differences.

- float64 / float32: the composition runs in the same dtype; a tensor passes when
  ``err <= atol + rtol * max|expected|`` with the dtype's ``(atol, rtol)`` (:data:`TOLERANCES`).
- float16 / bfloat16: three-way. The composition runs twice on the same low-precision inputs:
  in float64 (the exact answer) and in the dtype itself (PyTorch's own error). The backend's
  error against the exact answer may be at most twice PyTorch's, plus half an ulp of the
  dtype at the tensor's largest exact value (:func:`three_way_tolerance`). This is the rule
  of the fp16/bf16 tests in tests/test_fused_forward.py and tests/test_fused_backward.py, and
  absorbs cuDNN's choice of algorithm.

Then, unless layers are chosen, a whole GoogLeNet of each variant (eval mode, random weights
and BatchNorm statistics, batch 1 at the variant's minimum input size or ``size`` if larger)
is fused with :func:`~inception_kernels.fuse` on each backend and its logits are compared
with the unfused model's (rows ``GoogLeNet-paper`` / ``GoogLeNet-torchvision``).

Backends plug in through :func:`_candidate_backends`: a name and a callable with the
signature of the fused op, or the reason it cannot run here.
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from .. import _backends, reference
from .._checks import BIAS_NAMES, WEIGHT_NAMES
from ..ops import BACKEND_CHOICES
from ..spec import GOOGLENET_INCEPTIONS, InceptionSpec
from ..testing import TOLERANCES as _TOLERANCE_TABLE
from ..testing import make_inception_inputs, randomize_batchnorm, three_way_tolerance
from .ui import dtype_name, progress as _progress

#: ``(atol, rtol)`` per dtype; the tolerance of a tensor is ``atol + rtol * max|expected|``.
#: fp32 leaves room for a different accumulation order (and TF32 off: verify disables it).
#: The "verify" entry of the one table, inception_kernels.testing.TOLERANCES.
TOLERANCES = _TOLERANCE_TABLE["verify"]

#: The dtypes verify checks, by canonical name.
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}

#: Dtypes checked three-way (see the module docstring).
LOW_PRECISION = (torch.float16, torch.bfloat16)


#: A backend under test: ``fn(x, weights, biases, *, kernel_sizes, activation) -> y``.
BackendFn = Callable[..., torch.Tensor]


@dataclass
class CheckResult:
    """One row of the verify table.

    Args:
        layer: GoogLeNet layer name ("3a" ... "5b").
        backend: backend name.
        dtype: dtype name.
        device: device the check ran on.
        err_out: max abs error of the output.
        tol_out: tolerance of the output.
        err_grad: max abs error of the worst gradient (largest err / tol).
        tol_grad: tolerance of that gradient.
        worst_grad: name of that gradient ("x", "w3", "b5r", ...).
        passed: every checked tensor within its tolerance (and nothing non-finite).
        grads_checked: False when the backend has no backward yet (forward checked alone).
        error: the exception text when the backend raised, or why gradients were not checked.
    """

    layer: str
    backend: str
    dtype: str
    device: str
    err_out: float = math.nan
    tol_out: float = math.nan
    err_grad: float = math.nan
    tol_grad: float = math.nan
    worst_grad: str = ""
    passed: bool = False
    grads_checked: bool = True
    error: Optional[str] = None


class _Composition(nn.Module):
    """The Inception module as separate nn layers: the independent oracle of verify."""

    def __init__(self, spec: InceptionSpec, weights, biases):
        super().__init__()
        k3, k5 = spec.kernel_sizes
        act = nn.ReLU if spec.activation == "relu" else nn.Identity

        def conv(w, b, pad):
            c = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=pad, bias=b is not None)
            c.weight = nn.Parameter(w.detach().clone())
            if b is not None:
                c.bias = nn.Parameter(b.detach().clone())
            return c

        w1, w3r, w3, w5r, w5, wp = weights
        b1, b3r, b3, b5r, b5, bp = biases
        self.branch1 = nn.Sequential(conv(w1, b1, 0), act())
        self.branch3 = nn.Sequential(conv(w3r, b3r, 0), act(), conv(w3, b3, k3 // 2), act())
        self.branch5 = nn.Sequential(conv(w5r, b5r, 0), act(), conv(w5, b5, k5 // 2), act())
        self.branchp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(wp, bp, 0), act())
        # Parameter order of the fused op: (w1, w3r, w3, w5r, w5, wp), (b1, ..., bp).
        convs = [self.branch1[0], self.branch3[0], self.branch3[2], self.branch5[0], self.branch5[2], self.branchp[1]]
        self.op_weights = [c.weight for c in convs]
        self.op_biases = [c.bias for c in convs]

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branchp(x)], dim=1)


def _random_case(spec: InceptionSpec, batch: int, size: int, dtype, device, seed: int):
    inp = make_inception_inputs(spec, batch, size, size, dtype, device, seed=seed, bias_scale=0.1, grad_out=True)
    return inp.x, inp.weights, inp.biases, inp.grad_out


def _fused_backend(name: str) -> Callable[[], tuple[Optional[BackendFn], str]]:
    """The fused op with ``backend=name``, if inception_kernels.ops provides it."""

    def resolve():
        try:
            ops = importlib.import_module("..ops", __package__)  # inception_kernels.ops
        except ImportError as e:
            return None, f"inception_kernels.ops is not importable ({e})"
        fused = getattr(ops, "fused_inception", None)
        if fused is None:
            return None, "inception_kernels.ops has no fused_inception yet"

        def fn(x, weights, biases, *, kernel_sizes, activation):
            return fused(x, weights, biases, kernel_sizes=kernel_sizes, activation=activation, backend=name)

        return fn, ""

    return resolve


@dataclass
class _Candidate:
    """A backend verify knows: its fused op, or why it cannot run here.

    ``slow`` marks the Triton interpreter (one program at a time on the CPU): without explicit
    ``layers`` / ``dtypes`` it checks :data:`INTERPRETER_LAYERS` in fp32 only.
    ``dtype_skips`` maps a dtype name the backend cannot run here to the reason.
    """

    name: str
    fn: Optional[BackendFn]
    skip_reason: str = ""
    slow: bool = False
    dtype_skips: dict = field(default_factory=dict)


#: Why the Triton interpreter does not run bfloat16 (ops._resolve_backend refuses it).
INTERPRETER_BF16 = ("Triton's interpreter multiplies the raw bits of bfloat16 operands in tl.dot "
                    "(docs/design.md §6); bfloat16 runs on a CUDA device")


#: Layers the interpreter checks by default: all nine (its cost grows with channels, hardly
#: with spatial size, so verify keeps the batch and size small there).
INTERPRETER_LAYERS = tuple(GOOGLENET_INCEPTIONS)

#: Whole models verify fuses and compares with their unfused selves.
MODEL_VARIANTS = ("paper", "torchvision")


def _candidate_backends(device: str) -> list[_Candidate]:
    """Every backend verify knows, in report order; add new backends here."""
    status = _backends.available_backends()
    out = [_Candidate("reference", reference.inception)]
    triton = status["triton"] if device == "cuda" else status["triton-interpreter"]
    for name, st in (("triton", triton), ("cuda", status["cuda"])):
        fn, why = _fused_backend(name)() if st.available else (None, st.reason)
        slow = st.name == "triton-interpreter"
        out.append(_Candidate(name, fn, why, slow=slow, dtype_skips={"bfloat16": INTERPRETER_BF16} if slow else {}))
    return out


def _max_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max abs difference; NaN (a non-finite element) counts as infinite."""
    if got.numel() == 0:
        return 0.0
    err = (got.double() - want.double()).abs().max().item()
    return math.inf if math.isnan(err) else err


def _err_tol(got: Optional[torch.Tensor], want: Optional[torch.Tensor], dtype,
             exact: Optional[torch.Tensor] = None) -> tuple[float, float]:
    """``(error, tolerance)`` of ``got``. float64/float32: against ``want`` (the composition in
    ``dtype``) with :data:`TOLERANCES`. float16/bfloat16: against ``exact`` (the composition in
    float64), with :func:`three_way_tolerance` from ``want``'s own error."""
    if dtype in LOW_PRECISION:
        if exact is None:
            return (0.0 if got is None else math.inf), 0.0
        if got is None or got.shape != exact.shape:
            return math.inf, 0.0
        exact_max = exact.abs().max().item() if exact.numel() else 0.0
        return _max_err(got, exact), three_way_tolerance(_max_err(want, exact), exact_max, dtype)
    atol, rtol = TOLERANCES[dtype]
    if want is None:
        return (0.0 if got is None else math.inf), atol
    if got is None or got.shape != want.shape:
        return math.inf, atol
    return _max_err(got, want), atol + rtol * want.double().abs().max().item()


def _composition_grads(spec: InceptionSpec, x, weights, biases, grad_out, device):
    """The composition's output and the gradients of x, the weights and the biases."""
    model = _Composition(spec, weights, biases).to(device)
    x = x.clone().requires_grad_(True)
    y = model(x)
    grads = torch.autograd.grad(y, [x, *model.op_weights, *model.op_biases], grad_out)
    return y.detach(), grads


def check_layer(name: str, spec: InceptionSpec, backend: str, fn: BackendFn, *, batch: int, size: int,
                dtype, device: str, seed: int = 0) -> CheckResult:
    """Compare one backend with the nn composition on one layer, forward and backward.

    Args:
        name: layer name, for the report.
        spec: the layer's shape.
        backend: backend name, for the report.
        fn: the fused op of that backend.
        batch, size: input ``[batch, in_channels, size, size]``.
        dtype: a value of :data:`DTYPES`; float16 / bfloat16 are checked three-way.
        device: "cpu" or "cuda".
        seed: seed of the random input, parameters and output gradient.

    Returns:
        The :class:`CheckResult` row.
    """
    res = CheckResult(name, backend, str(dtype).removeprefix("torch."), device)
    x, weights, biases, grad_out = _random_case(spec, batch, size, dtype, device, seed)
    y_ref, want = _composition_grads(spec, x, weights, biases, grad_out, device)
    y_exact, exact = None, [None] * len(want)
    if dtype in LOW_PRECISION:  # the same low-precision values, computed in float64
        y_exact, exact = _composition_grads(spec, x.double(), [w.double() for w in weights],
                                            [b.double() for b in biases], grad_out.double(), device)

    xs = x.clone().requires_grad_(True)
    ws = [w.clone().requires_grad_(True) for w in weights]
    bs = [b.clone().requires_grad_(True) for b in biases]
    call = dict(kernel_sizes=spec.kernel_sizes, activation=spec.activation)
    try:
        try:
            y = fn(xs, ws, bs, **call)
            got = torch.autograd.grad(y, [xs, *ws, *bs], grad_out, allow_unused=True)
        except NotImplementedError as e:  # no backward yet: check the forward alone
            with torch.no_grad():
                y = fn(x, weights, biases, **call)
            res.grads_checked, res.error = False, f"gradients not checked: {e}"
            got = None
    except Exception as e:  # a backend that raises fails its row, with the message
        res.error = f"{type(e).__name__}: {e}"
        return res
    res.err_out, res.tol_out = _err_tol(y.detach(), y_ref, dtype, y_exact)
    if got is None:
        res.passed = res.err_out <= res.tol_out
        return res
    worst = -1.0
    for gname, g, w, e in zip(("x", *WEIGHT_NAMES, *BIAS_NAMES), got, want, exact):
        err, tol = _err_tol(g, w, dtype, e)
        ratio = err / tol if tol > 0 else (0.0 if err == 0 else math.inf)
        if ratio > worst:
            worst = ratio
            res.err_grad, res.tol_grad, res.worst_grad = err, tol, gname
    res.passed = res.err_out <= res.tol_out and worst <= 1.0
    return res


def check_model(variant: str, backend: str, *, size: int, device: str, seed: int = 0) -> CheckResult:
    """Fuse a whole GoogLeNet (eval mode) with ``backend`` and compare its logits with the unfused model's.

    Args:
        variant: "paper" or "torchvision" (BatchNorm, folded by ``fuse(..., fold_batch_norm=True)``).
        backend: a ``fused_inception`` backend name.
        size: input size; raised to the variant's minimum when smaller.
        device: "cpu" or "cuda".
        seed: seed of the weights, BatchNorm statistics and input.

    Returns:
        The :class:`CheckResult` row (float32, batch 1; gradients are not part of this check).
    """
    import copy

    from ..models import googlenet
    from ..modules import fuse

    res = CheckResult(f"GoogLeNet-{variant}", backend, "float32", device, grads_checked=False)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = googlenet(variant, aux_logits=False, num_classes=10)
    randomize_batchnorm(model, g, affine=False)  # non-trivial statistics, so folding is checked
    model = model.eval().to(device)
    size = max(size, model.min_input_size)
    x = torch.randn(1, 3, size, size, generator=g).to(device)
    try:
        fused = fuse(copy.deepcopy(model), backend=backend, fold_batch_norm=True)  # eval mode: inference
        with torch.no_grad():
            want, got = model(x), fused(x)
    except Exception as e:  # a backend that raises fails its row, with the message
        res.error = f"{type(e).__name__}: {e}"
        return res
    res.err_out, res.tol_out = _err_tol(got, want, torch.float32)
    res.passed = res.err_out <= res.tol_out
    return res


#: Default dtypes: on the CPU float64 and float32 (the Triton interpreter: float32 alone, it is
#: slow); on a CUDA device every dtype of :data:`DTYPES`.
DEFAULT_DTYPES = {"cpu": ("float64", "float32"), "cuda": tuple(DTYPES)}


def run(layers: Optional[Sequence[str]] = None, dtypes: Optional[Sequence[str]] = None, *, batch: int = 2,
        size: int = 7, device: Optional[str] = None, models: Optional[bool] = None,
        progress: bool = False) -> tuple[list[CheckResult], list[tuple[str, str]], str]:
    """Run every check.

    Args:
        layers: layer names of GOOGLENET_INCEPTIONS; default all nine (an empty sequence: none).
        dtypes: dtype names, either spelling (``"float32"`` or ``"fp32"``,
            :func:`~inception_kernels.tools.ui.dtype_name`); default
            :data:`DEFAULT_DTYPES` of the device (the interpreter: float32).
        batch, size: input batch and spatial size (the interpreter: batch 1).
        device: "cuda" or "cpu"; default: CUDA when available.
        models: also check the whole models of :data:`MODEL_VARIANTS` (float32); default: only
            when ``layers`` is None.
        progress: a progress bar on stderr, one step per check (shown on a terminal only;
            the checks take minutes in the Triton interpreter).

    Returns:
        ``(rows, skipped, device)``: the check rows, and ``(backend, reason)`` of the backends
        (or ``"dtype: reason"`` of a backend's dtypes) that could not run, and the device used.

    Raises:
        ValueError: an unknown layer or dtype, or a non-positive batch or size.
    """
    for lname in layers or ():
        if lname not in GOOGLENET_INCEPTIONS:
            raise ValueError(f"layers: unknown layer {lname!r}; expected some of {list(GOOGLENET_INCEPTIONS)}")
    dtypes = None if dtypes is None else list(dict.fromkeys(dtype_name(d, tuple(DTYPES), "dtype") for d in dtypes))
    if batch < 1 or size < 1:
        raise ValueError(f"batch and size must be >= 1, got batch={batch}, size={size}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = layers is None if models is None else models
    rows, skipped, checks = [], [], []  # checks: (label, the check to run), in the order of the rows
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # exact fp32 oracle
    try:
        for cand in _candidate_backends(device):
            if cand.fn is None:
                skipped.append((cand.name, cand.skip_reason))
                continue
            b_layers = (INTERPRETER_LAYERS if cand.slow else list(GOOGLENET_INCEPTIONS)) if layers is None else layers
            b_dtypes = dtypes or (("float32",) if cand.slow else DEFAULT_DTYPES.get(device, ("float32",)))
            for d in b_dtypes:
                if d in cand.dtype_skips:
                    skipped.append((cand.name, f"{d}: {cand.dtype_skips[d]}"))
            b_dtypes = [d for d in b_dtypes if d not in cand.dtype_skips]
            for lname in b_layers:
                for d in b_dtypes:
                    checks.append((f"{cand.name} {lname} {d}", functools.partial(
                        check_layer, lname, GOOGLENET_INCEPTIONS[lname], cand.name, cand.fn,
                        batch=1 if cand.slow else batch, size=size, dtype=DTYPES[d], device=device)))
            if models and cand.name in BACKEND_CHOICES:
                for variant in MODEL_VARIANTS:
                    checks.append((f"{cand.name} GoogLeNet-{variant}",
                                   functools.partial(check_model, variant, cand.name, size=size, device=device)))
        bar = _progress(checks, len(checks), "verify", unit="check", enabled=progress)
        for label, check in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(label)
            rows.append(check())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = allow_tf32
    return rows, skipped, device


def format_table(rows: Sequence[CheckResult]) -> str:
    """The rows as a fixed-width text table; errors and notes as numbered footnotes below it."""
    head = ("layer", "backend", "dtype", "err out", "tol out", "err grad (worst)", "tol grad", "result")
    lines, notes = [], []
    for r in rows:
        grad = f"{r.err_grad:.2e} ({r.worst_grad})" if r.worst_grad else "not checked"
        result = "PASS" if r.passed else "FAIL"
        if not r.grads_checked and r.passed:
            result += " (forward only)"
        if r.error:
            if r.error not in notes:
                notes.append(r.error)
            result += f" [{notes.index(r.error) + 1}]"
        tol_grad = f"{r.tol_grad:.2e}" if r.worst_grad else "-"
        lines.append((r.layer, r.backend, r.dtype, f"{r.err_out:.2e}", f"{r.tol_out:.2e}", grad, tol_grad, result))
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in lines]
    out += [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    return "\n".join(out)


def as_json(rows: Sequence[CheckResult], skipped, device: str, batch: int, size: int) -> dict:
    """The verify result as a JSON-ready dict."""
    return {"device": device, "batch": batch, "size": size, "passed": all(r.passed for r in rows) and bool(rows),
            "checks": [asdict(r) for r in rows], "skipped": [{"backend": b, "reason": w} for b, w in skipped]}
