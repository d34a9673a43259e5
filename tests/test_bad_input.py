"""Bad input gives a clear error, never a silent wrong answer or a crash (issue 16).

- The custom ops ``inception_kernels::fused_inception`` / ``fused_inception_backward`` and
  their fake impls check what the public wrapper checks (one check: ``_checks``).
- Meta tensors work for shape inference on every backend; a device mismatch is reported as one.
- Sparse, mkldnn and nested tensors are refused up front, naming the layout.
- ``TRITON_INTERPRET=1`` set after the Triton kernels were defined: ``backend="auto"`` falls back
  to the reference with a warning; ``backend="triton"`` says what to do (in a subprocess).
- The CUDA extension's ops range-check every integer before any arithmetic (their Meta impls
  and the plan op run here, in a subprocess, so a crash is a failure and not the end of pytest).
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from inception_kernels import FusedInception, InceptionSpec, fused_inception, reference
from inception_kernels.testing import make_inception_inputs

FWD = torch.ops.inception_kernels.fused_inception
BWD = torch.ops.inception_kernels.fused_inception_backward
SPEC = InceptionSpec(5, 3, 4, 6, 2, 3, 4)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module(spec=SPEC, n=1, h=3, w=4, device="cpu", dtype=torch.float32, bias=True, seed=0):
    """x, weights and biases (None entries without biases); unscaled: only shapes matter here."""
    inp = make_inception_inputs(spec, n, h, w, dtype, device, seed=seed, weight_init="unit", bias=bias)
    return inp.x, inp.weights, inp.biases_or_nones()


def _fwd_args(x, ws, bs, k=(3, 5), activation="relu", schedule="one_launch", save_reduce=True, backend="triton"):
    return (x, list(ws), list(bs), *k, activation, schedule, save_reduce, backend)


# ------------------------------------------------------------------ 1. the ops check their arguments

def _replace(seq, i, value):
    return [value if j == i else v for j, v in enumerate(seq)]


# (name, change of the forward op's arguments, error type, message regex)
FWD_CASES = [
    ("unknown activation", dict(activation="gelu"), ValueError,
     r"activation must be one of \('relu', 'none'\).*got 'gelu'"),
    ("activation spelled None", dict(activation="None"), ValueError, r"activation must be one of"),
    ("k5 does not match w5", dict(k=(3, 3)), ValueError, r"weight w5 has shape \(3, 2, 5, 5\), expected \[Cout, 2, 3, 3\]"),
    ("k3 does not match w3", dict(k=(5, 5)), ValueError, r"weight w3 has shape \(6, 4, 3, 3\), expected \[Cout, 4, 5, 5\]"),
    ("even kernel size", dict(k=(3, 4)), ValueError, r"kernel_sizes must be odd and positive"),
    ("unknown schedule", dict(schedule="three_launch"), ValueError, r"schedule must be one of .* got 'three_launch'"),
    ("cuda schedule unknown", dict(schedule="three_launch", backend="cuda"), ValueError,
     r"schedule must be one of \('auto', 'one_launch', 'two_launch'\) on backend 'cuda'"),
    ("unknown backend", dict(backend="reference"), ValueError, r"backend must be one of \('triton', 'cuda'\)"),
    ("w1 reads another Cin", dict(ws=lambda ws: _replace(ws, 0, ws[0][:, :4])), ValueError,
     r"weight w1 has shape \(3, 4, 1, 1\), expected \[Cout, 5, 1, 1\]"),
    ("w3 reads another reduce", dict(ws=lambda ws: _replace(ws, 2, ws[2][:, :3])), ValueError,
     r"weight w3 has shape \(6, 3, 3, 3\), expected \[Cout, 4, 3, 3\] from w3r's output channels"),
    ("weight dtype", dict(ws=lambda ws: _replace(ws, 4, ws[4].double())), TypeError,
     r"weight w5 has dtype torch.float64, but x has dtype torch.float32"),
    ("weight device", dict(ws=lambda ws: _replace(ws, 5, ws[5].to("meta"))), ValueError,
     r"weight wp is on meta, but x is on cpu"),
    ("bias shape", dict(bs=lambda bs: _replace(bs, 1, bs[1][:-1])), ValueError,
     r"bias b3r has shape \(3,\), expected \(4,\)"),
    ("bias dtype", dict(bs=lambda bs: _replace(bs, 3, bs[3].half())), TypeError, r"bias b5r has dtype torch.float16"),
    ("x 3-D", dict(x=lambda x: x[0]), ValueError, r"x must be 4-D"),
    ("x integer", dict(x=lambda x: x.to(torch.int32)), TypeError, r"x has dtype torch.int32"),
    ("x sparse", dict(x=lambda x: x.to_sparse()), TypeError, r"x has layout torch.sparse_coo"),
    ("x empty spatial", dict(x=lambda x: x[:, :, :0]), ValueError, r"x has an empty spatial size \(shape \(1, 5, 0, 4\)\)"),
]


def _apply(case, x, ws, bs):
    kw = dict(case)
    x = kw.pop("x", lambda t: t)(x)
    ws = kw.pop("ws", lambda t: t)(ws)
    bs = kw.pop("bs", lambda t: t)(bs)
    return _fwd_args(x, ws, bs, **kw)


@pytest.mark.parametrize("name,change,error,message", FWD_CASES, ids=[c[0] for c in FWD_CASES])
def test_forward_op_and_fake_check_arguments(name, change, error, message):
    """The op (eager, CPU), its fake impl (torch.compile's view) and meta tensors refuse the
    same arguments with the same message. Before issue 16 the op ran an unknown activation as
    "none" and mismatched kernel sizes past the end of a weight (a silent wrong answer)."""
    x, ws, bs = _module()
    with pytest.raises(error, match=message):
        FWD(*_apply(change, x, ws, bs))
    with FakeTensorMode() as mode:
        fx, fws, fbs = mode.from_tensor(x), [mode.from_tensor(w) for w in ws], [mode.from_tensor(b) for b in bs]
        with pytest.raises(error, match=message):
            FWD(*_apply(change, fx, fws, fbs))
    if "device" not in name and "sparse" not in name:
        mx, mws, mbs = x.to("meta"), [w.to("meta") for w in ws], [b.to("meta") for b in bs]
        with pytest.raises(error, match=message):
            FWD(*_apply(change, mx, mws, mbs))


def test_op_schedules_are_the_launchers():
    """The checks' schedule list is the Triton launcher's, with "auto" (one contract)."""
    from inception_kernels.testing import OP_SCHEDULES
    from inception_kernels.triton.inception_fwd import SCHEDULES

    assert OP_SCHEDULES["triton"] == ("auto", *SCHEDULES)


def test_wrapper_and_op_share_the_checks():
    """The public wrapper raises the op's messages (one check function)."""
    x, ws, bs = _module()
    for backend in ("reference", "triton"):
        with pytest.raises(ValueError, match=r"weight w5 has shape \(3, 2, 5, 5\), expected \[Cout, 2, 3, 3\]"):
            fused_inception(x, ws, bs, kernel_sizes=(3, 3), backend=backend)
        with pytest.raises(ValueError, match=r"activation must be 'relu' or None, got 'gelu'"):
            fused_inception(x, ws, bs, activation="gelu", backend=backend)


def _backward_args(backend="triton", **change):
    x, ws, bs = _module()
    y, r3, r5 = FWD(*_fwd_args(x, ws, bs))
    args = dict(grad_y=torch.ones_like(y), x=x, y=y, r3=r3, r5=r5, ws=ws, bs=bs, k=(3, 5), activation="relu",
                needs=[True] * 13, backend=backend)
    for key, value in change.items():
        args[key] = value(args) if callable(value) else value
    a = args
    return (a["grad_y"], a["x"], a["y"], a["r3"], a["r5"], a["ws"], a["bs"], *a["k"], a["activation"], a["needs"],
            a["backend"])


BWD_CASES = [
    ("r3 not saved", dict(r3=lambda a: a["x"].new_empty(0)), ValueError,
     r"r3 has shape \(0,\), expected \(1, 4, 3, 4\) \(the forward must run with save_reduce=True\)"),
    ("r5 wrong channels", dict(r5=lambda a: a["r3"]), ValueError, r"r5 has shape \(1, 4, 3, 4\), expected \(1, 2, 3, 4\)"),
    ("grad_y wrong shape", dict(grad_y=lambda a: a["grad_y"][:, 1:]), ValueError, r"grad_y has shape \(1, 15, 3, 4\)"),
    ("y dtype", dict(y=lambda a: a["y"].double()), TypeError, r"^y has dtype torch.float64, but x has dtype torch.float32"),
    ("grad_y sparse", dict(grad_y=lambda a: a["grad_y"].to_sparse()), TypeError, r"grad_y has layout torch.sparse_coo"),
    ("needs 12 flags", dict(needs=[True] * 12), ValueError, r"needs_input_grad must be 13 bools"),
    ("unknown activation", dict(activation="tanh"), ValueError, r"activation must be one of \('relu', 'none'\)"),
    ("kernel sizes", dict(k=(3, 3)), ValueError, r"weight w5 has shape"),
    ("unknown backend", dict(backend="tpu"), ValueError, r"backend must be one of \('triton', 'cuda'\)"),
]


@pytest.mark.parametrize("name,change,error,message", BWD_CASES, ids=[c[0] for c in BWD_CASES])
def test_backward_op_and_fake_check_arguments(name, change, error, message):
    args = _backward_args(**change)
    with pytest.raises(error, match=message):
        BWD(*args)
    if "sparse" in name:
        return  # fake tensors of sparse tensors are not dense fakes; the real op refused it
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor)
                else [mode.from_tensor(t) for t in a] if isinstance(a, list) and a and isinstance(a[0], torch.Tensor)
                else a for a in args]
        with pytest.raises(error, match=message):
            BWD(*fake)


def test_raw_op_refuses_bf16_in_the_interpreter():
    """The interpreter's bf16 tl.dot is wrong (docs/design.md §6): the op refuses it, as the
    wrapper always did (before issue 16 the raw op returned wrong numbers)."""
    from inception_kernels.testing import interpreter_enabled

    if not interpreter_enabled():
        pytest.skip("needs Triton's interpreter (CPU)")
    x, ws, bs = _module(dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="cannot run bfloat16 in Triton's interpreter"):
        FWD(*_fwd_args(x, ws, bs))


def test_raw_op_refuses_a_device_it_cannot_run():
    """backend="cuda" on a CPU tensor: the wrapper's error, not a crash in the extension."""
    x, ws, bs = _module()
    with pytest.raises(RuntimeError, match="backend='cuda' needs"):
        FWD(*_fwd_args(x, ws, bs, backend="cuda"))


# ------------------------------------------------------------------ 2. meta tensors

@pytest.mark.parametrize("backend", ["auto", "reference", "triton", "cuda"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_meta_tensors_infer_shapes(backend, channels_last):
    """Shape inference on meta tensors through the Python API on every backend (before issue 16:
    "unknown device type for autocast"), forward and backward."""
    x, ws, bs = _module(n=2, h=5, w=7, device="meta")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    leaves = [t.requires_grad_(True) for t in (x, *ws, *bs)]
    y = fused_inception(x, ws, bs, backend=backend)
    assert y.device.type == "meta" and y.shape == (2, SPEC.out_channels, 5, 7)
    if backend in ("triton", "cuda"):  # the fake impl's layout (the reference's is PyTorch's meta conv's)
        assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    grads = torch.autograd.grad(y.sum(), leaves)
    assert [g.shape for g in grads] == [t.shape for t in leaves]
    block = FusedInception.from_spec(SPEC, backend=backend).to("meta")
    assert block(x).shape == y.shape


def test_meta_device_mismatch_is_reported_as_such():
    x, ws, bs = _module(device="meta")
    cpu_ws = [torch.empty(w.shape) if i == 2 else w for i, w in enumerate(ws)]
    with pytest.raises(ValueError, match=r"weight w3 is on cpu, but x is on meta"):
        fused_inception(x, cpu_ws, bs, backend="reference")
    with pytest.raises(ValueError, match=r"weight w1 is on meta, but x is on cpu"):
        fused_inception(torch.empty(x.shape), ws, bs)


# ------------------------------------------------------------------ 6. non-strided layouts

def _layouts():
    x, ws, bs = _module()
    yield "x sparse_coo", dict(x=x.to_sparse()), r"x has layout torch.sparse_coo"
    yield "x sparse_csr", dict(x=x[0, 0].to_sparse_csr()), r"x has layout torch.sparse_csr"
    yield "x mkldnn", dict(x=x.to_mkldnn()), r"x has layout torch._mkldnn"
    yield "x nested", dict(x=torch.nested.nested_tensor([x[0], x[0, :, :2]])), r"x has layout nested"
    yield "x jagged", dict(x=torch.nested.nested_tensor([x[0], x[0, :, :2]], layout=torch.jagged)), \
        r"x has layout nested"
    yield "w3 hybrid sparse_coo", dict(ws=_replace(ws, 2, ws[2].to_sparse(2))), r"weight w3 has layout torch.sparse_coo"
    yield "wp mkldnn", dict(ws=_replace(ws, 5, ws[5].to_mkldnn())), r"weight wp has layout torch._mkldnn"
    yield "b5 sparse", dict(bs=_replace(bs, 4, bs[4].to_sparse())), r"bias b5 has layout torch.sparse_coo"


LAYOUTS = list(_layouts())


@pytest.mark.parametrize("name,change,message", LAYOUTS, ids=[c[0] for c in LAYOUTS])
@pytest.mark.parametrize("backend", ["auto", "reference", "triton"])
def test_non_strided_inputs_are_refused_naming_the_layout(name, change, message, backend):
    """Before issue 16 these failed inside Triton or PyTorch internals ("Cannot access storage
    of SparseTensorImpl", "unsupported memory format option")."""
    x, ws, bs = _module()
    args = {**dict(x=x, ws=ws, bs=bs), **change}
    with pytest.raises(TypeError, match=message):
        fused_inception(args["x"], args["ws"], args["bs"], backend=backend)
    if backend == "triton":
        with pytest.raises(TypeError, match=message):
            FWD(*_fwd_args(args["x"], args["ws"], args["bs"]))
    if name.startswith("x"):
        with pytest.raises(TypeError, match=message):
            FusedInception.from_spec(SPEC, backend=backend)(args["x"])


# ------------------------------------------------------------------ 5. TRITON_INTERPRET set late

def _run_python(code: str, env_updates=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(env_updates or {})
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


LATE_INTERPRETER = """
    import os, warnings
    import torch
    import inception_kernels as ik
    import {module}  # its @triton.jit functions are defined now: compiled, not interpreted
    os.environ["TRITON_INTERPRET"] = "1"
    from inception_kernels import InceptionSpec, reference
    spec = InceptionSpec(3, 2, 2, 2, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, generator=g)
    ws = [torch.randn(s, generator=g) for s in spec.weight_shapes]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = ik.fused_inception(x, ws)
    assert torch.equal(y, reference.inception(x, ws)), "auto must run the reference"
    assert any(issubclass(w.category, RuntimeWarning) and "runs the plain-PyTorch reference" in str(w.message)
               and "TRITON_INTERPRET=1 was set after" in str(w.message) for w in caught), [str(w.message) for w in caught]
    for call in (lambda: ik.fused_inception(x, ws, backend="triton"),
                 lambda: torch.ops.inception_kernels.fused_inception(
                     x, ws, [None] * 6, 3, 5, "relu", "one_launch", False, "triton")):
        try:
            call()
        except RuntimeError as e:
            assert "set TRITON_INTERPRET=1 before anything imports triton" in str(e), str(e)
        else:
            raise AssertionError("backend='triton' ran compiled kernels on a CPU tensor")
    from inception_kernels.testing import triton_interpreter_status
    status = triton_interpreter_status()
    assert not status.available and "was set after" in status.reason, status
    print("OK")
"""


@pytest.mark.parametrize("module", ["triton.language", "inception_kernels.triton.inception_fwd"])
def test_interpreter_switched_on_after_the_kernels_were_defined(module):
    """auto falls back to the reference with a warning that says what to do; "triton" (the
    wrapper and the raw op) raises it. Before issue 16: Triton's "0 active drivers" (our kernels
    compiled) or "Cannot call @triton.jit'd outside of the scope of a kernel" (Triton's own)."""
    r = _run_python(LATE_INTERPRETER.replace("{module}", module))
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


def test_interpreter_switched_on_before_the_first_kernel_runs_them():
    """Setting TRITON_INTERPRET=1 after importing the package is enough while no Triton kernel
    is defined yet (the package imports Triton lazily): auto then runs the interpreted Triton
    kernels, one launch, right numbers."""
    r = _run_python("""
        import os, sys
        import torch
        import inception_kernels as ik
        from inception_kernels import InceptionSpec, reference
        from inception_kernels.testing import count_launches
        assert "triton" not in sys.modules, "importing the package must not import triton"
        os.environ["TRITON_INTERPRET"] = "1"
        spec = InceptionSpec(3, 2, 2, 2, 1, 2, 2)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, 4, 4, generator=g)  # (fp32: exact IEEE in the interpreter)
        ws = [torch.randn(s, generator=g) for s in spec.weight_shapes]
        with count_launches() as launches:
            y = ik.fused_inception(x, ws)
        assert len(launches.triton_kernels) == 1, launches.triton_kernels
        torch.testing.assert_close(y, reference.inception(x, ws))
        print("OK")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


# ------------------------------------------------------------------ 7. the CUDA extension's integers

#: (case, code) run one after the other in one subprocess; each prints a JSON line
#: {"case", "error"}; a crash (signal) ends the process and names the case it was in.
NATIVE_CASES = {
    # the plan op: integers straight from the caller
    "plan H*W overflows int64": ("plan(1, 2**32, 2**32, 16, 3, 16, 5, torch.float16, 232448)",
                                 r"N \* H \* W below 2\^31 pixels"),
    "plan N*H*W overflows int64": ("plan(2**40, 2**20, 2**20, 16, 3, 16, 5, torch.float16, 232448)",
                                   r"N \* H \* W below 2\^31 pixels"),
    "plan N*H*W >= 2^31": ("plan(2**16, 2**8, 2**8, 16, 3, 16, 5, torch.float16, 232448)",
                           r"N \* H \* W below 2\^31 pixels"),
    "plan negative N": ("plan(-1, 8, 8, 16, 3, 16, 5, torch.float16, 232448)", r"need N >= 0, H >= 1, W >= 1"),
    "plan H = 0": ("plan(1, 0, 8, 16, 3, 16, 5, torch.float16, 232448)", r"need N >= 0, H >= 1, W >= 1"),
    "plan c3r >= 2^31": ("plan(1, 8, 8, 2**32 + 16, 3, 16, 5, torch.float16, 232448)",
                         r"c3r must be between 1 and 2\^31 - 1, got 4294967312"),
    "plan c5r negative": ("plan(1, 8, 8, 16, 3, -16, 5, torch.float16, 232448)",
                          r"c5r must be between 1 and 2\^31 - 1, got -16"),
    "plan c3r + c5r >= 2^31": ("plan(1, 8, 8, 2**31 - 1, 3, 2**31 - 1, 5, torch.float16, 232448)",
                               r"c3r \+ c5r must sum to at most 2\^31 - 1"),
    "plan k3 = 2^32 + 3": ("plan(1, 8, 8, 16, 2**32 + 3, 16, 5, torch.float16, 232448)",
                           r"kernel sizes must be odd and between 1 and 63, got \(4294967299, 5\)"),
    "plan k5 = 65": ("plan(1, 8, 8, 16, 3, 16, 65, torch.float16, 232448)", r"odd and between 1 and 63"),
    "plan k3 even": ("plan(1, 8, 8, 16, 4, 16, 5, torch.float16, 232448)", r"odd and between 1 and 63"),
    "plan smem_limit < 0": ("plan(1, 8, 8, 16, 3, 16, 5, torch.float16, -1)", r"smem_limit must be a byte count >= 0"),
    "plan cc = 75": ("plan(1, 8, 8, 16, 3, 16, 5, torch.float16, 232448, 75)",
                     r"cc must be a compute capability 10 \* major \+ minor >= 80, got 75"),
    "plan dtype": ("plan(1, 8, 8, 16, 3, 16, 5, torch.int32, 232448)", r"dtype must be float16, bfloat16"),
    "valid plan": ("plan(1, 8, 8, 16, 3, 16, 5, torch.float16, 232448)", None),
}

NATIVE_SCRIPT = """
    import json, sys, torch
    from inception_kernels.testing import extension_status
    assert extension_status().loaded, extension_status().reason
    ops = torch.ops.inception_kernels
    plan = ops.cuda_fused_inception_plan

    for name, code in json.loads(sys.argv[1]).items():
        print(json.dumps({"case": name, "started": True}), flush=True)
        try:
            eval(code)
            error = None
        except RuntimeError as e:
            error = str(e).splitlines()[0]
        print(json.dumps({"case": name, "error": error}), flush=True)
"""


def _meta(*shape):
    return torch.empty(*shape, device="meta")


def _meta_module(x=None, w=None):
    shapes = [(3, 4, 1, 1), (3, 4, 1, 1), (3, 3, 3, 3), (2, 4, 1, 1), (3, 2, 5, 5), (3, 4, 1, 1)]
    ws = [(w or {}).get(i, _meta(*s)) for i, s in enumerate(shapes)]
    return (x if x is not None else _meta(2, 4, 5, 7)), ws


# (name, x, weights by index, kernel sizes, message): the fused ops' integer ranges (_checks), on
# meta tensors: the fake impls refuse what the kernels' ints could not hold, for both backends.
RANGE_CASES = [
    ("H*W >= 2^31 (N = 0)", _meta(0, 4, 2**16, 2**15 + 1), None, (3, 5), r"N \* H \* W below 2\^31 pixels"),
    ("N*H*W >= 2^31", _meta(2**16, 4, 2**8, 2**8), None, (3, 5), r"N \* H \* W below 2\^31 pixels"),
    ("y channels >= 2^31", None, {0: _meta(2**30, 4, 1, 1), 2: _meta(2**30, 3, 3, 3), 4: _meta(2**30, 2, 5, 5)},
     (3, 5), r"y's channel count .* must be at most 2\^31 - 1, got 3221225475"),
    ("Cout >= 2^31", None, {0: _meta(2**31, 4, 1, 1)}, (3, 5), r"weight w1 has 2147483648 output channels"),
    ("reduction >= 2^31", None, {1: _meta(2**28, 4, 1, 1), 2: _meta(3, 2**28, 3, 3)}, (3, 5),
     r"w3's reduction length Cin \* K \* K = 268435456 \* 3 \* 3 must be at most"),
    ("reduce sum >= 2^31", None, {1: _meta(2**30, 4, 1, 1), 2: _meta(3, 2**30, 1, 1), 3: _meta(2**30, 4, 1, 1),
                                  4: _meta(3, 2**30, 1, 1)}, (1, 1),
     r"reduce channels of w3r and w5r must sum to at most 2\^31 - 1"),
]


@pytest.mark.parametrize("name,x,w,k,message", RANGE_CASES, ids=[c[0] for c in RANGE_CASES])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_fused_ops_range_check_every_integer(name, x, w, k, message, backend):
    """Before issue 16 the CUDA ops' Meta impls let y's channel count overflow the kernels' int;
    since issue 15 the one check (_checks, run by the ops' fakes) refuses it for both backends."""
    x, ws = _meta_module(x, w)
    with pytest.raises(ValueError, match=message):
        FWD(*_fwd_args(x, ws, [None] * 6, k=k, backend=backend))
    n, _, h, wd = x.shape
    y = _meta(n, sum(ws[i].shape[0] for i in (0, 2, 4, 5)), h, wd)
    with pytest.raises(ValueError, match=message):
        BWD(y, x, y, _meta(n, ws[1].shape[0], h, wd), _meta(n, ws[3].shape[0], h, wd), ws, [None] * 6, *k, "relu",
            [True] * 13, backend)


@pytest.mark.cuda_ext
def test_native_ops_range_check_every_integer():
    """Before issue 16: the plan op died of SIGFPE on H*W overflowing 64 bits, truncated channel
    counts and kernel sizes >= 2^31 silently (c3r = 2^32 + 16 planned as 16), and the Meta
    impls let y's channel count overflow the kernels' int."""
    cases = {name: code for name, (code, _) in NATIVE_CASES.items()}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(NATIVE_SCRIPT), json.dumps(cases)], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    done = {d["case"]: d["error"] for d in lines if "error" in d}
    started = [d["case"] for d in lines if d.get("started")]
    assert r.returncode == 0, f"the process died (rc {r.returncode}) in case {started[-1] if started else None!r}: " \
                              f"{r.stderr[-2000:]}"
    for name, (_, message) in NATIVE_CASES.items():
        if message is None:
            assert done[name] is None, (name, done[name])
        else:
            assert done[name] is not None and re.search(message, done[name]), (name, done[name])
