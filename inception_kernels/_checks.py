"""Validation of the fused-op arguments, shared by the reference and every backend.

One source for the op's contract: :func:`check_inception_args` checks what the public API
takes (``fused_inception``, ``reference.inception``, the Triton launchers);
:func:`check_op_args` / :func:`check_backward_op_args` check the custom ops' argument forms
(``activation`` spelled ``"relu"`` / ``"none"``, ``schedule``, ``save_reduce``, ``backend``,
``needs_input_grad``, the saved tensors) and then call :func:`check_inception_args`, so the
op, its fake impl and the public wrapper refuse the same inputs with the same messages.

Every user-facing error names the argument, what was expected and what was given.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .spec import InceptionSpec, _check_activation, _check_kernel_sizes

WEIGHT_NAMES = ("w1", "w3r", "w3", "w5r", "w5", "wp")
BIAS_NAMES = ("b1", "b3r", "b3", "b5r", "b5", "bp")

#: Floating dtypes the op accepts (fp64 is for gradcheck and the reference).
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: The custom ops' ``activation`` strings and the public API's spelling of each.
OP_ACTIVATIONS = {"relu": "relu", "none": None}
#: The custom ops' ``backend`` values (the fused backends; "reference" never reaches an op).
OP_BACKENDS = ("triton", "cuda")
#: The forward op's ``schedule`` values per backend: ``"auto"`` (the launcher chooses; the
#: default) and the two schedules both backends have (:func:`cuda_two_launch` says what "auto"
#: means for the CUDA kernels). tests/test_bad_input.py checks Triton's against
#: ``triton.inception_fwd.SCHEDULES``.
OP_SCHEDULES = {"triton": ("auto", "one_launch", "two_launch"), "cuda": ("auto", "one_launch", "two_launch")}


def cuda_two_launch(schedule: str, save_reduce: bool) -> bool:
    """Whether the CUDA forward runs as two launches (docs/design.md §4.2): stage 1 runs every
    1x1 conv on x over the tile's own pixels (the horizontal 1x1 GEMM) and the pool branch, stage
    2 the KxK branches from the saved reduce outputs. ``"auto"`` takes two launches where the
    reduce outputs are saved anyway (training): every reduce output is then computed once
    instead of again in each neighbouring tile's halo; without them one launch, which recomputes
    the halos rather than writing and reading the reduce outputs (which costs less is a GPU
    measurement's call; none is on record)."""
    return schedule == "two_launch" or (schedule == "auto" and save_reduce)
#: ``needs_input_grad`` of the backward op: one flag each for x, w1..wp, b1..bp.
GRAD_INPUT_NAMES = ("x", *WEIGHT_NAMES, *BIAS_NAMES)


def check_inception_args(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]],
    kernel_sizes=(3, 5),
    activation: Optional[str] = "relu",
) -> tuple[InceptionSpec, tuple[torch.Tensor, ...], tuple[Optional[torch.Tensor], ...]]:
    """Check the op's arguments; return the spec they describe and the normalized tuples.

    Raises:
        TypeError: a non-tensor argument, a tensor that is not strided (sparse, mkldnn,
            nested), a non-floating or unsupported dtype, or a dtype that differs between
            ``x`` and a weight or bias.
        ValueError: a wrong rank, inconsistent channel counts or kernel shapes, an empty
            spatial size (H or W = 0), a device that differs from ``x``'s, or a bad
            ``kernel_sizes`` / ``activation``.
    """
    k3, k5 = _check_kernel_sizes(kernel_sizes)
    _check_activation(activation)

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    check_dense("x", x)
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D [N, Cin, H, W], got {x.dim()}-D with shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; supported dtypes are {', '.join(str(d) for d in SUPPORTED_DTYPES)}"
        )

    if isinstance(weights, torch.Tensor) or not isinstance(weights, Sequence) or len(weights) != 6:
        raise TypeError(
            "weights must be a sequence of 6 tensors (w1, w3r, w3, w5r, w5, wp), got "
            + (f"{len(weights)} items" if isinstance(weights, Sequence) and not isinstance(weights, torch.Tensor)
               else type(weights).__name__)
        )
    if biases is None:
        biases = (None,) * 6
    if isinstance(biases, torch.Tensor) or not isinstance(biases, Sequence) or len(biases) != 6:
        raise TypeError(
            "biases must be None or a sequence of 6 tensors-or-None (b1, b3r, b3, b5r, b5, bp), got "
            + (f"{len(biases)} items" if isinstance(biases, Sequence) and not isinstance(biases, torch.Tensor)
               else type(biases).__name__)
        )

    for name, w in zip(WEIGHT_NAMES, weights):
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"weight {name} must be a torch.Tensor, got {type(w).__name__}")
        check_dense(name, w)
        if w.dim() != 4:
            raise ValueError(f"weight {name} must be 4-D [Cout, Cin, k, k], got shape {tuple(w.shape)}")
        _check_same(name, w, x)
    for name, b in zip(BIAS_NAMES, biases):
        if b is None:
            continue
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"bias {name} must be a torch.Tensor or None, got {type(b).__name__}")
        check_dense(name, b)
        _check_same(name, b, x)

    w1, w3r, w3, w5r, w5, wp = weights
    cin = x.shape[1]
    expected = {
        "w1": (None, cin, 1, 1),
        "w3r": (None, cin, 1, 1),
        "w3": (None, w3r.shape[0], k3, k3),
        "w5r": (None, cin, 1, 1),
        "w5": (None, w5r.shape[0], k5, k5),
        "wp": (None, cin, 1, 1),
    }
    why = {
        "w1": "x's channels",
        "w3r": "x's channels",
        "w3": f"w3r's output channels and kernel_sizes[0]={k3}",
        "w5r": "x's channels",
        "w5": f"w5r's output channels and kernel_sizes[1]={k5}",
        "wp": "x's channels",
    }
    for name, w in zip(WEIGHT_NAMES, weights):
        exp = expected[name]
        if tuple(w.shape[1:]) != exp[1:]:
            shown = "[Cout, " + ", ".join(str(v) for v in exp[1:]) + "]"
            raise ValueError(
                f"weight {name} has shape {tuple(w.shape)}, expected {shown} from {why[name]}"
            )
        if w.shape[0] == 0:
            raise ValueError(f"weight {name} has 0 output channels; every branch needs at least one")
    for name, b, w in zip(BIAS_NAMES, biases, weights):
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ValueError(
                f"bias {name} has shape {tuple(b.shape)}, expected ({w.shape[0]},) to match weight "
                f"{WEIGHT_NAMES[BIAS_NAMES.index(name)]}"
            )
    if cin == 0:
        raise ValueError(f"x has 0 channels (shape {tuple(x.shape)}); Cin must be positive")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(
            f"x has an empty spatial size (shape {tuple(x.shape)}); H and W must be positive, as for "
            "torch.nn.functional.conv2d (an empty batch, N = 0, is fine)"
        )

    spec = InceptionSpec(
        in_channels=int(cin),
        ch1x1=int(w1.shape[0]),
        ch3x3red=int(w3r.shape[0]),
        ch3x3=int(w3.shape[0]),
        ch5x5red=int(w5r.shape[0]),
        ch5x5=int(w5.shape[0]),
        pool_proj=int(wp.shape[0]),
        kernel_sizes=(k3, k5),
        activation=activation,
    )
    return spec, tuple(weights), tuple(biases)


def check_op_args(x, weights, biases, k3, k5, activation, schedule, save_reduce, backend) -> InceptionSpec:
    """Check the arguments of the forward op ``inception_kernels::fused_inception``.

    What :func:`check_inception_args` checks, plus the op's own argument forms. Called by the
    op and by its fake impl (so ``torch.compile`` and meta tensors refuse the same inputs).

    Returns:
        The module's :class:`InceptionSpec`.

    Raises:
        TypeError, ValueError: as :func:`check_inception_args`; an ``activation`` other than
            ``"relu"`` / ``"none"``, an unknown ``backend`` or ``schedule`` (for that
            backend), or a ``save_reduce`` that is not a bool.
    """
    activation = _op_activation(activation)
    _check_op_backend(backend, schedule)
    if not isinstance(save_reduce, bool):
        raise TypeError(f"save_reduce must be a bool, got {type(save_reduce).__name__} {save_reduce!r}")
    spec, _, _ = check_inception_args(x, weights, biases, (k3, k5), activation)
    _check_int_ranges(spec, x)
    return spec


#: The fused kernels keep channel counts, reduction lengths and pixel indices in 32-bit ints.
_INT_LIMIT = 2**31 - 1


def _check_int_ranges(spec: InceptionSpec, x: torch.Tensor) -> None:
    """The fused ops' integer ranges: every channel count, y's channel count, the reduce
    channels' sum and every conv's reduction length ``Cin * K * K`` at most ``2^31 - 1``, and
    ``N * H * W`` (so ``H * W`` too) below ``2^31`` pixels.

    Raises:
        ValueError: naming the count and its value.
    """
    n, _, h, w = (int(v) for v in x.shape)
    if n * h * w > _INT_LIMIT or h * w > _INT_LIMIT:
        raise ValueError(f"x has shape {tuple(x.shape)}; the fused ops need N * H * W below 2^31 pixels "
                         f"(H * W too), got N={n} H={h} W={w}")
    k3, k5 = spec.kernel_sizes
    cins = (spec.in_channels, spec.in_channels, spec.ch3x3red, spec.in_channels, spec.ch5x5red, spec.in_channels)
    ks = (1, 1, k3, 1, k5, 1)
    couts = (spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5, spec.pool_proj)
    for name, cin, k, cout in zip(WEIGHT_NAMES, cins, ks, couts):
        if cout > _INT_LIMIT:
            raise ValueError(f"weight {name} has {cout} output channels; the fused ops take at most 2^31 - 1")
        if cin * k * k > _INT_LIMIT:
            raise ValueError(f"weight {name}'s reduction length Cin * K * K = {cin} * {k} * {k} must be at most "
                             "2^31 - 1")
    if spec.out_channels > _INT_LIMIT:
        raise ValueError("y's channel count (the output channels of w1, w3, w5 and wp) must be at most 2^31 - 1, "
                         f"got {spec.out_channels}")
    if spec.ch3x3red + spec.ch5x5red > _INT_LIMIT:
        raise ValueError("the reduce channels of w3r and w5r must sum to at most 2^31 - 1, got "
                         f"{spec.ch3x3red + spec.ch5x5red}")


def check_backward_op_args(grad_y, x, y, r3, r5, weights, biases, k3, k5, activation, needs_input_grad,
                           backend) -> InceptionSpec:
    """Check the arguments of the backward op ``inception_kernels::fused_inception_backward``.

    The module's arguments as :func:`check_op_args` checks them, ``needs_input_grad`` (13
    bools), and the saved tensors: ``grad_y`` and ``y`` ``[N, Ctot, H, W]``, ``r3`` / ``r5``
    ``[N, c3r|c5r, H, W]``, each strided, in x's dtype and on x's device.

    Returns:
        The module's :class:`InceptionSpec`.

    Raises:
        TypeError, ValueError: as :func:`check_op_args`; a malformed ``needs_input_grad``; a
            saved tensor of the wrong type, layout, shape, dtype or device.
    """
    activation = _op_activation(activation)
    _check_op_backend(backend)
    check_needs_input_grad(needs_input_grad)
    spec, _, _ = check_inception_args(x, weights, biases, (k3, k5), activation)
    _check_int_ranges(spec, x)
    check_saved_tensors(spec, x, grad_y, y, r3, r5)
    return spec


def check_needs_input_grad(needs_input_grad) -> None:
    """Refuse a ``needs_input_grad`` that is not 13 bools (x, w1..wp, b1..bp).

    Raises:
        TypeError: not a sequence of bools. ValueError: another length.
    """
    rule = f"needs_input_grad must be {len(GRAD_INPUT_NAMES)} bools (for {', '.join(GRAD_INPUT_NAMES)})"
    if (isinstance(needs_input_grad, (str, bytes)) or not isinstance(needs_input_grad, Sequence)
            or not all(isinstance(v, bool) for v in needs_input_grad)):
        raise TypeError(f"{rule}, got {needs_input_grad!r}")
    if len(needs_input_grad) != len(GRAD_INPUT_NAMES):
        raise ValueError(f"{rule}, got {len(needs_input_grad)}: {list(needs_input_grad)}")


def check_saved_tensors(spec: InceptionSpec, x: torch.Tensor, grad_y, y, r3, r5) -> None:
    """Check what a backward takes besides the module: ``grad_y`` and ``y`` ``[N, Ctot, H, W]``,
    ``r3`` / ``r5`` ``[N, c3r|c5r, H, W]``, each a strided tensor in x's dtype on x's device.

    Raises:
        TypeError: a non-tensor, a non-strided tensor or another dtype. ValueError: another
            shape or device.
    """
    n, _, h, w = x.shape
    saved = (("grad_y", grad_y, spec.out_channels), ("y", y, spec.out_channels),
             ("r3", r3, spec.ch3x3red), ("r5", r5, spec.ch5x5red))
    for name, t, channels in saved:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        check_dense(name, t)
        if tuple(t.shape) != (n, channels, h, w):
            hint = " (the forward must run with save_reduce=True)" if name in ("r3", "r5") else ""
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {(n, channels, h, w)}{hint}")
        _check_same(name, t, x)


def _op_activation(activation) -> Optional[str]:
    """The public spelling ("relu" / None) of an op's ``activation`` string."""
    if not isinstance(activation, str) or activation not in OP_ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {tuple(OP_ACTIVATIONS)} (the ops' spelling; fused_inception "
            f"takes 'relu' or None), got {activation!r}"
        )
    return OP_ACTIVATIONS[activation]


def _check_op_backend(backend, schedule=None) -> None:
    """Raise ValueError for a ``backend`` (and a forward ``schedule``) the custom ops do not have."""
    if backend not in OP_BACKENDS:
        raise ValueError(f"backend must be one of {OP_BACKENDS}, got {backend!r}")
    if schedule is not None and schedule not in OP_SCHEDULES[backend]:
        raise ValueError(f"schedule must be one of {OP_SCHEDULES[backend]} on backend {backend!r}, got {schedule!r}")


def check_dense(name: str, t: torch.Tensor) -> None:
    """Refuse a sparse, mkldnn or nested tensor ``t`` (argument ``name``) up front: the kernels
    index strided memory.

    Raises:
        TypeError: naming the argument and its layout.
    """
    if t.is_nested or t.layout != torch.strided:
        layout = "nested (torch.nested)" if t.is_nested else str(t.layout)
        raise TypeError(
            f"{_label(name)} has layout {layout}; the fused op takes strided (dense) tensors only "
            "(convert it first, e.g. with .to_dense())"
        )


def _label(name: str) -> str:
    """How messages name an argument: "weight w3", "bias b5", or the name itself."""
    return f"weight {name}" if name in WEIGHT_NAMES else f"bias {name}" if name in BIAS_NAMES else name


def _check_same(name: str, t: torch.Tensor, x: torch.Tensor) -> None:
    if t.device != x.device:
        raise ValueError(f"{_label(name)} is on {t.device}, but x is on {x.device}; put them on one device")
    if t.dtype != x.dtype:
        raise TypeError(f"{_label(name)} has dtype {t.dtype}, but x has dtype {x.dtype}; they must match")
