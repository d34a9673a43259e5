"""The fused op under torch.func transforms and higher-order autograd (issue 16).

- ``torch.func.grad`` / ``vjp`` / ``vmap(grad)`` over the public API and over the raw op give
  the reference's gradients (before issue 16: the autograd.Function "setup_context" error).
- Double backward (``create_graph=True``, and ``grad(grad(...))``) gives the reference's
  second-order gradients (before: PyTorch's "no autograd formula registered for
  fused_inception_backward").
- Forward mode (``torch.func.jvp``, ``torch.autograd.forward_ad``) is refused with a message
  that says what is supported (before: the tangent was dropped silently).

Small shapes in float64 (the Triton interpreter on the CPU); every gradient is compared with the
plain-PyTorch reference's, on every fused backend (conftest's ``backend`` fixture).
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from inception_kernels import InceptionSpec, fused_inception, reference
from inception_kernels.testing import make_inception_inputs, tolerance

FWD = torch.ops.inception_kernels.fused_inception
SPEC = InceptionSpec(3, 2, 3, 2, 2, 3, 2)
TOL = tolerance("transforms", torch.float64)._asdict()


def _module(device, spec=SPEC, n=2, h=3, w=4, bias=True, seed=0):
    """float64 x, weights and biases (None entries without biases), unscaled: exact algebra only."""
    inp = make_inception_inputs(spec, n, h, w, torch.float64, device, seed=seed, weight_init="unit", bias=bias)
    return inp.x, inp.weights, inp.biases_or_nones()


def _loss(fn):
    """A scalar loss with a non-trivial output gradient (y * y weighs each element differently)."""
    def loss(x, ws, bs):
        y = fn(x, ws, bs)
        return (y * y).sum()
    return loss


def _fused(backend, activation="relu"):
    return lambda x, ws, bs: fused_inception(x, ws, bs, activation=activation, backend=backend)


def _ref(activation="relu"):
    return lambda x, ws, bs: reference.inception(x, ws, bs, activation=activation)


def _assert_trees_close(got, want):
    got_leaves, want_leaves = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        torch.testing.assert_close(g, w, **TOL)


# ------------------------------------------------------------------ torch.func, first order

@pytest.mark.parametrize("activation", ["relu", None])
def test_func_grad_matches_reference(activation, device, backend):
    x, ws, bs = _module(device)
    got = torch.func.grad(_loss(_fused(backend, activation)), argnums=(0, 1, 2))(x, ws, bs)
    want = torch.func.grad(_loss(_ref(activation)), argnums=(0, 1, 2))(x, ws, bs)
    _assert_trees_close(got, want)


def test_func_vjp_over_the_raw_op(device, backend):
    """torch.func.vjp straight over torch.ops.inception_kernels.fused_inception (no biases)."""
    x, ws, _ = _module(device, bias=False)

    def op(x, w3):
        args = (x, [ws[0], ws[1], w3, *ws[3:]], [None] * 6, 3, 5, "relu", "one_launch", True, backend)
        return FWD(*args)[0]

    def ref(x, w3):
        return reference.inception(x, [ws[0], ws[1], w3, *ws[3:]])

    y, vjp = torch.func.vjp(op, x, ws[2])
    y_ref, vjp_ref = torch.func.vjp(ref, x, ws[2])
    torch.testing.assert_close(y, y_ref, **TOL)
    cot = torch.randn_like(y)
    _assert_trees_close(vjp(cot), vjp_ref(cot))


def test_vmap_of_grad_gives_per_sample_gradients(device, backend):
    x, ws, bs = _module(device, n=2)

    def per_sample(xi, ws):
        return torch.func.grad(lambda ws: _loss(_fused(backend))(xi[None], ws, bs), argnums=0)(ws)

    def per_sample_ref(xi, ws):
        return torch.func.grad(lambda ws: _loss(_ref())(xi[None], ws, bs), argnums=0)(ws)

    got = torch.func.vmap(per_sample, in_dims=(0, None))(x, ws)
    want = torch.func.vmap(per_sample_ref, in_dims=(0, None))(x, ws)
    _assert_trees_close(got, want)


# ------------------------------------------------------------------ second order

def test_double_backward_matches_reference(device, backend):
    """create_graph=True through the fused backward: a gradient penalty's gradients."""
    x, ws, bs = _module(device)

    def penalty_grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (x, *ws, *bs)]
        lx, lws, lbs = leaves[0], leaves[1:7], leaves[7:]
        first = torch.autograd.grad(_loss(fn)(lx, lws, lbs), [lx, *lws], create_graph=True)
        penalty = sum((g * g).sum() for g in first)
        return torch.autograd.grad(penalty, leaves)

    _assert_trees_close(penalty_grads(_fused(backend)), penalty_grads(_ref()))


def test_func_grad_of_grad_matches_reference(device, backend):
    x, ws, bs = _module(device, n=1)

    def hessian_vector_sum(fn):
        inner = torch.func.grad(lambda x: _loss(fn)(x, ws, bs))
        return torch.func.grad(lambda x: (inner(x) * x).sum())(x)

    _assert_trees_close(hessian_vector_sum(_fused(backend)), hessian_vector_sum(_ref()))


# ------------------------------------------------------------------ forward mode: refused, clearly

FORWARD_AD = r"has no forward-mode derivative .*reverse mode works .*use backend='reference'"


def test_forward_mode_is_refused_not_dropped(device, backend):
    """Before issue 16, jvp returned a zero tangent and forward_ad dropped it (a dual input does
    not require grad, so the autograd formula never ran): a silent wrong derivative."""
    x, ws, bs = _module(device)
    with pytest.raises(RuntimeError, match=FORWARD_AD):
        torch.func.jvp(lambda x: fused_inception(x, ws, bs, backend=backend), (x,), (torch.ones_like(x),))
    with fwAD.dual_level():
        dual = fwAD.make_dual(ws[2], torch.ones_like(ws[2]))
        with pytest.raises(RuntimeError, match=FORWARD_AD):
            fused_inception(x, [*ws[:2], dual, *ws[3:]], bs, backend=backend)
    # the suggested alternative works
    _, tangent = torch.func.jvp(lambda x: fused_inception(x, ws, bs, backend="reference"), (x,), (torch.ones_like(x),))
    assert tangent.abs().sum() > 0
