"""Fuzzing the fused op with hypothesis: a correct result or a clear error, never silence.

Random Inception modules -- small channel counts (1 included), kernel sizes, activations,
biases present or not per conv -- on random inputs: shapes with 0 and 1, dtypes (fp64 / fp32 /
fp16 in Triton's interpreter; bf16 only where a GPU runs it), memory formats and strides
(contiguous, channels_last, sliced, transposed views, for x and for the weights). Each example
goes through one entry point -- the public ``fused_inception``, the raw custom ops
``inception_kernels::fused_inception`` / ``fused_inception_backward`` (with a random subset of
gradients), or ``FusedInception`` -- forward, and often backward, and is compared with the
plain-PyTorch reference in float64. A second test corrupts one argument of a valid call and
requires a ``TypeError`` / ``ValueError`` / ``RuntimeError`` raised by this package's own checks
(not from inside Triton or PyTorch).

Budget: ``INCEPTION_KERNELS_FUZZ_SECONDS`` (default 60, the CI budget) for the valid-input test
and a third of it for the invalid-input test, per backend: hypothesis runs in chunks of a few
examples with seeds ``INCEPTION_KERNELS_FUZZ_SEED`` (default 0), +1, ... until the time is spent,
so a run is reproducible from its seeds (a failure prints its seed and a reproduce blob) and a
longer budget or another seed explores further. Hypothesis' example database is off (nothing
is written to the repository).
"""

import os
import time

import hypothesis
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

from conftest import FUSED_BACKENDS, HAS_CUDA
from inception_kernels import FusedInception, InceptionSpec, fused_inception, reference
from inception_kernels.testing import OP_SCHEDULES, split_grads
from inception_kernels.testing import THREE_WAY_ATOL, assert_three_way, tolerance

FWD = torch.ops.inception_kernels.fused_inception
BWD = torch.ops.inception_kernels.fused_inception_backward
PKG_DIR = os.path.dirname(os.path.abspath(__import__("inception_kernels").__file__))

FUZZ_SECONDS = float(os.environ.get("INCEPTION_KERNELS_FUZZ_SECONDS", "60"))
FUZZ_SEED = int(os.environ.get("INCEPTION_KERNELS_FUZZ_SEED", "0"))
FUZZ = settings(
    deadline=None,
    database=None,  # no .hypothesis/ example database in the repository
    derandomize=False,  # the seeds below make every run reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    print_blob=True,
)


def _fuzz(make_test, seconds: float, chunk: int) -> str:
    """Run hypothesis tests in chunks of ``chunk`` examples, seeds ``FUZZ_SEED``, +1, ... until
    ``seconds`` have passed (at least one chunk). A chunk is a whole hypothesis run: a failure
    in it is shrunk and reported with its seed before the time check.

    Args:
        make_test: ``make_test(counter) -> fn(**drawn)`` that increments ``counter[0]`` per example.

    Returns:
        A summary for the log: examples, chunks, seconds.
    """
    counter, start, i = [0], time.monotonic(), 0
    while i == 0 or time.monotonic() - start < seconds:
        test = hypothesis.seed(FUZZ_SEED + i)(settings(FUZZ, max_examples=chunk)(
            given(module=modules(), data=st.data())(make_test(counter))))
        test()
        i += 1
    return f"{counter[0]} examples, seeds {FUZZ_SEED}..{FUZZ_SEED + i - 1}, {time.monotonic() - start:.0f} s " \
           f"(budget {seconds:.0f} s)"


# ---------------------------------------------------------------------------- strategies

DTYPES = [torch.float64, torch.float32, torch.float16] + ([torch.bfloat16] if HAS_CUDA else [])
LAYOUTS = ["contiguous", "channels_last", "sliced", "transposed"]


@st.composite
def modules(draw):
    """``(spec, bias flags)``: a random Inception module."""
    ch = st.integers(1, 6)
    spec = InceptionSpec(
        draw(ch), draw(ch), draw(ch), draw(ch), draw(ch), draw(ch), draw(ch),
        kernel_sizes=(draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5, 7]))),
        activation=draw(st.sampled_from(["relu", None])),
    )
    bias = draw(st.sampled_from(["all", "none", "some"]))
    flags = [True] * 6 if bias == "all" else [False] * 6 if bias == "none" else draw(
        st.lists(st.booleans(), min_size=6, max_size=6))
    return spec, flags


def _strided(t: torch.Tensor, layout: str, gen: torch.Generator) -> torch.Tensor:
    """``t``'s values in a tensor of the given memory layout (a view where the layout is one)."""
    if layout == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # every other element of a bigger buffer along the last dim, offset 1
        big = torch.randn(*t.shape[:-1], 2 * t.shape[-1] + 1, generator=gen, dtype=torch.float64).to(t.dtype)
        big = big.to(t.device)
        big[..., 1::2] = t
        return big[..., 1::2]
    if layout == "transposed" and t.dim() == 4:  # last two dims stored swapped
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    return t.contiguous()


def _tensors(spec, flags, n, h, w, dtype, device, x_layout, w_layout, seed):
    """x, weights and biases (scaled so fp16 stays in range), each in its layout."""
    g = torch.Generator().manual_seed(seed)

    def rnd(shape, scale=1.0):
        return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).to(device)

    x = _strided(rnd((n, spec.in_channels, h, w)), x_layout, g)
    ws = [_strided(rnd(s, (s[1] * s[2] * s[3]) ** -0.5), w_layout, g) for s in spec.weight_shapes]
    bs = [_strided(rnd((s[0],), 0.3), w_layout, g) if f else None for s, f in zip(spec.weight_shapes, flags)]
    return x, ws, bs


GRAD_NAMES = ["dx", "dw1", "dw3r", "dw3", "dw5r", "dw5", "dwp", "db1", "db3r", "db3", "db5r", "db5", "dbp"]


def _reference(spec, x, ws, bs, grad_y, dtype=None):
    """Output and every gradient (13, None for absent biases; None without ``grad_y``) of the
    reference, computed in ``dtype`` (float64 for the oracle; x's dtype for PyTorch's own)."""
    cast = (lambda t: t.detach().to(dtype)) if dtype is not None else (lambda t: t.detach())
    leaves = [cast(t).requires_grad_(grad_y is not None) if t is not None else None for t in (x, *ws, *bs)]
    y = reference.inception(leaves[0], leaves[1:7], leaves[7:], kernel_sizes=spec.kernel_sizes,
                            activation=spec.activation)
    if grad_y is None:
        return y.detach(), None
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, present, cast(grad_y)))
    return y.detach(), [next(grads) if t is not None else None for t in leaves]


def _reference_grads(spec, x, ws, bs, grad_y):
    """The oracle: the reference in float64."""
    return _reference(spec, x, ws, bs, grad_y, torch.float64)


def _assert_close(name, got, want, dtype, low_precision_ref=None):
    """fp64 / fp32: tight tolerances. fp16 / bf16: the kernel's error against the fp64 oracle at
    most 2x PyTorch's own in that dtype, plus a floor of 2^-10 (fp16) of the largest value."""
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert got.dtype == dtype, (name, got.dtype, dtype)
    if got.numel() == 0:
        return
    assert torch.isfinite(got).all() or not torch.isfinite(want).all(), (name, "non-finite result")
    if dtype in (torch.float64, torch.float32):
        atol, rtol = tolerance("fuzz", dtype)
        torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")
        return
    atol = THREE_WAY_ATOL["fuzz"][dtype] * max(want.abs().max().item(), 1.0)
    assert_three_way(got, low_precision_ref, want, atol=atol, what=name)


# ---------------------------------------------------------------------------- valid inputs

def _run(entry, backend, spec, flags, x, ws, bs, grad_y, needs, schedule="one_launch"):
    """``(y, grads)`` of one entry point; ``grads`` has 13 entries (None where not computed)."""
    call = dict(kernel_sizes=spec.kernel_sizes, activation=spec.activation)
    if entry == "op":
        k3, k5 = spec.kernel_sizes
        y, r3, r5 = FWD(x, ws, bs, k3, k5, spec.activation or "none", schedule, True, backend)
        if grad_y is None:
            return y, None
        dx, flat = BWD(grad_y, x, y, r3, r5, ws, bs, k3, k5, spec.activation or "none", needs, backend)
        return y, [dx if needs[0] else None, *split_grads(flat, ws, bs, needs)]
    leaves = [t.detach().requires_grad_(grad_y is not None and need) if t is not None else None
              for t, need in zip((x, *ws, *bs), needs)]
    if entry == "module":
        block = FusedInception.from_spec(spec, bias=any(flags), backend=backend).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            for conv, w, b in zip(block.convs(), ws, bs):
                conv.weight.copy_(w)  # (keeps the module's own layout: parameters are dense)
                if conv.bias is not None:
                    conv.bias.copy_(b if b is not None else torch.zeros_like(conv.bias))
        for p in block.parameters():
            p.requires_grad_(grad_y is not None)
        y = block(leaves[0].requires_grad_(grad_y is not None))
        if grad_y is None:
            return y.detach(), None
        params = [c.weight for c in block.convs()] + [c.bias for c in block.convs()]
        inputs = [leaves[0]] + [p for p in params if p is not None]
        grads = iter(torch.autograd.grad(y, inputs, grad_y))
        return y.detach(), [next(grads) if t is not None else None for t in [leaves[0], *params]]
    y = fused_inception(leaves[0], leaves[1:7], leaves[7:], backend=backend, **call)
    if grad_y is None:
        return y, None
    inputs = [t for t in leaves if t is not None and t.requires_grad]
    grads = iter(torch.autograd.grad(y, inputs, grad_y) if inputs else ())
    return y.detach(), [next(grads) if t is not None and t.requires_grad else None for t in leaves]


def _valid_test(backend):
    def make_test(counter):
        def check(module, data):
            counter[0] += 1
            _check_valid(backend, module, data)
        return check
    return make_test


def _check_valid(backend, module, data):
    spec, flags = module
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    n = data.draw(st.integers(0, 2), label="N")
    h = data.draw(st.integers(1, 5), label="H")  # (H = 0 / W = 0 are refused: see the next test)
    w = data.draw(st.integers(1, 5), label="W")
    x_layout = data.draw(st.sampled_from(LAYOUTS), label="x layout")
    w_layout = data.draw(st.sampled_from(LAYOUTS), label="weight layout")
    entry = data.draw(st.sampled_from(["api", "op", "module"]), label="entry point")
    backward = data.draw(st.booleans(), label="backward")
    needs = data.draw(st.lists(st.booleans(), min_size=13, max_size=13), label="needs_input_grad") \
        if backward and entry != "module" else [True] * 13
    if entry == "module":
        flags = [any(flags)] * 6  # a module's convs have biases all or none
    schedule = data.draw(st.sampled_from(OP_SCHEDULES[backend]), label="schedule") if entry == "op" else "one_launch"
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    device = "cuda" if HAS_CUDA else "cpu"
    x, ws, bs = _tensors(spec, flags, n, h, w, dtype, device, x_layout, w_layout, seed)
    grad_y = (torch.randn(n, spec.out_channels, h, w, generator=torch.Generator().manual_seed(seed + 1),
                          dtype=torch.float64).to(dtype).to(device) if backward else None)
    event(f"{entry}, {dtype}, {'fwd+bwd' if backward else 'fwd'}")
    note(f"x {tuple(x.shape)} strides {x.stride()}, weights {w_layout}, needs {needs}, schedule {schedule}")
    y, grads = _run(entry, backend, spec, flags, x, ws, bs, grad_y, needs, schedule)  # (a valid call must not raise)
    y_ref, grads_ref = _reference_grads(spec, x, ws, bs, grad_y)
    low = dtype in (torch.float16, torch.bfloat16)
    low_y, low_grads = _low_precision_reference(spec, x, ws, bs, grad_y) if low else (None, [None] * 13)
    _assert_close("y", y, y_ref, dtype, low_y)
    if grads is None:
        return
    for i, (name, g, r) in enumerate(zip(GRAD_NAMES, grads, grads_ref)):
        expected = r is not None and (entry == "module" or needs[i])
        assert (g is not None) == expected, (name, "returned" if g is not None else "missing")
        if g is not None:
            _assert_close(name, g, r, dtype, low_grads[i])


def _low_precision_reference(spec, x, ws, bs, grad_y):
    """PyTorch's own result in x's dtype (the yardstick for fp16 / bf16 error)."""
    y, grads = _reference(spec, x, ws, bs, grad_y)
    return y, grads if grads is not None else [None] * 13


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fuzz_valid_inputs_match_reference(backend):
    """Valid random inputs: every output and gradient matches the reference (see the module
    docstring for the tolerances and the budget)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        summary = _fuzz(_valid_test(backend), FUZZ_SECONDS, chunk=4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
    print(f"fuzz, valid inputs, {backend}: {summary}")


# ---------------------------------------------------------------------------- invalid inputs

#: Errors of the dispatcher's own schema check on the raw ops (wrong Python type for an argument):
#: PyTorch's message, which names the argument.
_SCHEMA_ERROR = "for argument"


def _is_ours(err: BaseException) -> bool:
    """Raised by this package's checks (innermost frame in inception_kernels/, or a TORCH_CHECK of
    our C++ ops), or by the dispatcher's schema check naming the argument -- not from inside
    Triton or an aten kernel."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return where.startswith(PKG_DIR) or str(err).startswith("cuda_fused_inception") or _SCHEMA_ERROR in str(err)


def _replace(seq, i, value):
    return [value if j == i else v for j, v in enumerate(seq)]


@st.composite
def corruptions(draw, spec, x, ws, bs):
    """``(what, x, ws, bs, kernel_sizes, activation, schedule, backend)`` with one thing wrong."""
    k3, k5 = spec.kernel_sizes
    args = dict(x=x, ws=list(ws), bs=list(bs), k=(k3, k5), activation=spec.activation or "none",
                schedule="one_launch", backend=None)
    i = draw(st.integers(0, 5), label="which conv")
    kind = draw(st.sampled_from([
        "kernel size mismatch", "kernel size invalid", "activation", "schedule", "backend", "weight Cin",
        "weight Cout 0", "weight dtype", "weight rank", "weight not a tensor", "bias length", "bias for no bias",
        "x rank", "x dtype", "x empty spatial", "x layout", "weight layout", "device mismatch",
    ]), label="corruption")
    w = ws[i]
    if kind == "kernel size mismatch":
        j = draw(st.integers(0, 1))
        bad = draw(st.sampled_from([k for k in (1, 3, 5, 7) if k != args["k"][j]]))
        args["k"] = _replace(args["k"], j, bad)
    elif kind == "kernel size invalid":
        j = draw(st.integers(0, 1))
        args["k"] = _replace(args["k"], j, draw(st.sampled_from([0, -1, 2, 4, -3, True, 2 ** 40])))
    elif kind == "activation":
        args["activation"] = draw(st.text(max_size=6).filter(lambda a: a not in ("relu", "none")))
    elif kind == "schedule":
        args["schedule"] = draw(st.text(max_size=10).filter(lambda a: a not in ("one_launch", "two_launch")))
    elif kind == "backend":
        args["backend"] = draw(st.text(max_size=8).filter(lambda a: a not in ("auto", "triton", "cuda", "reference")))
    elif kind == "weight Cin":
        extra = draw(st.integers(1, 3))
        args["ws"][i] = torch.cat([w] * (1 + extra), dim=1) if draw(st.booleans()) or w.shape[1] == 1 else w[:, :-1]
    elif kind == "weight Cout 0":
        args["ws"][i] = w[:0]
        args["bs"][i] = None if bs[i] is None else bs[i][:0]
    elif kind == "weight dtype":
        args["ws"][i] = w.to(draw(st.sampled_from([d for d in (torch.float64, torch.float32, torch.float16, torch.int32)
                                                   if d != w.dtype])))
    elif kind == "weight rank":
        args["ws"][i] = w.flatten(0, 1) if draw(st.booleans()) else w[None]
    elif kind == "weight not a tensor":
        args["ws"][i] = draw(st.sampled_from([None, 1.0, w.tolist()]))
    elif kind == "bias length":
        b = bs[i] if bs[i] is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        args["bs"][i] = torch.cat([b, b[:1]]) if draw(st.booleans()) or b.numel() == 1 else b[:-1]
    elif kind == "bias for no bias":
        args["bs"][i] = torch.zeros(w.shape[0] + 1, dtype=w.dtype, device=w.device)
    elif kind == "x rank":
        args["x"] = x.flatten(0, 1) if draw(st.booleans()) else x[None]
    elif kind == "x dtype":
        args["x"] = x.to(draw(st.sampled_from([torch.int64, torch.bool, torch.complex64, torch.uint8])))
    elif kind == "x empty spatial":
        args["x"] = x[:, :, :0] if draw(st.booleans()) else x[..., :0]
    elif kind == "x layout":
        args["x"] = x.to_sparse() if draw(st.sampled_from(["coo", "mkldnn"])) == "coo" else x.float().to_mkldnn()
    elif kind == "weight layout":
        args["ws"][i] = w.to_sparse()
    elif kind == "device mismatch":
        args["ws"][i] = torch.empty(w.shape, dtype=w.dtype, device="meta")
    return kind, args


def _as_list(params):
    """The op's list argument from a fuzzed weights / biases value (None: no biases)."""
    return [None] * 6 if params is None else list(params)


def _call_invalid(entry, backend, args):
    k3, k5 = args["k"]
    act = args["activation"]
    if entry == "api":
        return fused_inception(args["x"], args["ws"], args["bs"], kernel_sizes=args["k"],
                               activation=None if act == "none" else act,
                               backend=backend if args["backend"] is None else args["backend"])
    fwd_args = (args["x"], _as_list(args["ws"]), _as_list(args["bs"]), k3, k5, act, args["schedule"], True,
                backend if args["backend"] is None else args["backend"])
    if entry == "op":
        return FWD(*fwd_args)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:  # the fake impl (what torch.compile sees)
        def to_fake(a):
            if isinstance(a, list):
                return [to_fake(t) for t in a]
            return mode.from_tensor(a) if isinstance(a, torch.Tensor) and a.layout == torch.strided else a

        fake = [to_fake(a) for a in fwd_args]
        return FWD(*fake)


def _invalid_test(backend):
    def make_test(counter):
        def check(module, data):
            counter[0] += 1
            _check_invalid(backend, module, data)
        return check
    return make_test


def _check_invalid(backend, module, data):
    spec, flags = module
    dtype = data.draw(st.sampled_from([torch.float64, torch.float32, torch.float16]), label="dtype")
    n, h, w = (data.draw(st.integers(lo, 3), label=d) for lo, d in ((0, "N"), (1, "H"), (1, "W")))
    x, ws, bs = _tensors(spec, flags, n, h, w, dtype, "cuda" if HAS_CUDA else "cpu", "contiguous", "contiguous", 0)
    kind, args = data.draw(corruptions(spec, x, ws, bs), label="corruption")
    entry = data.draw(st.sampled_from(["api", "op", "fake"]), label="entry point")
    if entry == "api" and kind == "schedule":
        entry = "op"  # (the public API has no schedule)
    # (the dispatcher passes True as the int 1 to the raw ops, a valid kernel size there)
    assume(not (entry != "api" and any(k is True for k in args["k"])))
    if entry == "fake" and kind in ("x layout", "weight layout"):
        entry = "op"  # (fake tensors of sparse/mkldnn tensors are not made)
    event(f"{kind} via {entry}")
    try:
        out = _call_invalid(entry, backend, args)
    except (TypeError, ValueError, RuntimeError) as err:
        if not _is_ours(err):
            raise AssertionError(f"{kind}: an error from outside the package's checks: "
                                 f"{type(err).__name__}: {err}") from err
        return
    raise AssertionError(f"{kind} via {entry}: no error; got {type(out).__name__}")


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fuzz_invalid_inputs_raise_clear_errors(backend):
    """One thing wrong in a valid call: always a TypeError / ValueError / RuntimeError from the
    package's own checks (or the dispatcher's schema check naming the argument), never a result
    and never an error from inside Triton."""
    print(f"fuzz, invalid inputs, {backend}: {_fuzz(_invalid_test(backend), FUZZ_SECONDS / 3, chunk=10)}")
