"""Checkpoints of ``inception-kernels train``, and torchvision GoogLeNet weights.

A checkpoint is one ``torch.save`` of a dict of plain types and tensors, so
``torch.load(path, weights_only=True)`` reads it::

    format, version       FORMAT, VERSION
    variant, num_classes, aux_logits, transform_input, image_size, classes
    model                 the model's state_dict, plain keys (fused blocks keep the unfused
                          names), so a torchvision-variant checkpoint's ``model`` loads into
                          ``torchvision.models.googlenet(aux_logits=..., num_classes=...,
                          init_weights=False)`` with ``strict=True``
    ema, ema_n_averaged   the Polyak/EMA average (same keys) and its update count; None and 0 without
    param_names           the parameters in the optimizer's order (sorted names)
    optimizer, scheduler, scaler   their state_dicts
    epoch, step           completed epochs and optimizer steps
    history               metrics.csv's rows so far
    args                  the command line's arguments, as plain values

It is written to a temporary file and renamed over the previous one (``_common.atomic_write``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..models import googlenet
from ._common import atomic_write

FORMAT = "inception-kernels train checkpoint"
VERSION = 1

#: The keys every checkpoint has.
KEYS = ("format", "version", "variant", "num_classes", "aux_logits", "transform_input", "image_size", "classes",
        "model", "ema", "ema_n_averaged", "param_names", "optimizer", "scheduler", "scaler", "epoch", "step",
        "history", "args")

#: Classifier layers that depend on the number of classes (re-initialized when a torchvision
#: state_dict has another class count).
HEAD_PREFIXES = ("fc.", "aux1.fc2.", "aux2.fc2.")


def save(checkpoint: dict, path: Path) -> None:
    """Write ``checkpoint`` atomically (a temporary file renamed over ``path``)."""
    missing = [k for k in KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks {missing}")
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def _torch_load(path: Path, flag: str):
    if not path.exists():
        raise ValueError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise ValueError(f"{flag} {path}: not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means "not a checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{flag} {path}: cannot be read as a PyTorch file ({type(e).__name__}: {first})") from None


def load(path, flag: str = "--resume") -> dict:
    """Read and check a checkpoint written by ``inception-kernels train``.

    Args:
        path: the file.
        flag: the option that named it, for error messages.

    Returns:
        The checkpoint dict (tensors on the CPU).

    Raises:
        ValueError: a missing file, a file that ``torch.load(weights_only=True)`` cannot read,
            or a dict that is not such a checkpoint (e.g. a bare state_dict).
    """
    path = Path(path)
    ck = _torch_load(path, flag)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        hint = ""
        if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
            hint = " (it looks like a bare state_dict; start from torchvision weights with --init-from-torchvision)"
        raise ValueError(f"{flag} {path}: not a checkpoint written by inception-kernels train{hint}")
    if ck.get("version") != VERSION:
        raise ValueError(f"{flag} {path}: checkpoint version {ck.get('version')!r}, this inception-kernels reads "
                         f"{VERSION}")
    missing = [k for k in KEYS if k not in ck]
    if missing:
        raise ValueError(f"{flag} {path}: incomplete checkpoint, no {', '.join(missing)}")
    return ck


def check_matches(ck: dict, flag: str, path, *, variant: str, classes: list[str],
                  aux_logits: Optional[bool] = None) -> None:
    """Raise a ValueError when a checkpoint's model differs from the run's.

    Args:
        ck: a checkpoint from :func:`load`.
        flag, path: where it came from, for the message.
        variant: the run's ``--variant``.
        classes: the run's class names (from the data).
        aux_logits: the run's aux heads (None: not checked).
    """
    if ck["variant"] != variant:
        raise ValueError(f"{flag} {path} holds a {ck['variant']} GoogLeNet, but --variant is {variant}")
    if ck["num_classes"] != len(classes):
        raise ValueError(f"{flag} {path} has {ck['num_classes']} classes, but the data has {len(classes)}")
    if list(ck["classes"]) != list(classes):
        from .data import check_same_classes

        check_same_classes(ck["classes"], classes, f"{flag} {path}", "the data")
    if aux_logits is not None and bool(ck["aux_logits"]) != bool(aux_logits):
        have = "has" if ck["aux_logits"] else "has no"
        raise ValueError(f"{flag} {path} {have} aux heads; pass {'--aux' if ck['aux_logits'] else '--no-aux'}")


def weights(ck: dict, which: str = "model", *, aux_logits: bool = True) -> tuple[dict, str]:
    """A state_dict of a checkpoint (plain keys).

    Args:
        ck: a checkpoint from :func:`load`.
        which: ``"ema"`` (the Polyak average; the model's weights when the run kept none) or
            ``"model"``.
        aux_logits: keep the aux heads' entries.

    Returns:
        ``(state_dict, which)``, ``which`` being what was actually taken.
    """
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    if which == "ema" and ck["ema"] is None:
        which = "model"
    state = ck[which]
    if not aux_logits:
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    return state, which


def build(ck: dict, which: str = "model", *, aux_logits: bool = False):
    """The checkpoint's model, unfused, with its weights, in eval mode on the CPU.

    Returns:
        ``(model, which)`` (see :func:`weights`).
    """
    model = googlenet(ck["variant"], num_classes=ck["num_classes"], aux_logits=aux_logits,
                      transform_input=ck["transform_input"], init_weights=False)
    state, which = weights(ck, which, aux_logits=aux_logits)
    model.load_state_dict(state)
    return model.eval(), which


def load_torchvision(model: torch.nn.Module, path) -> list[str]:
    """Load a torchvision GoogLeNet state_dict file into ``model`` (our torchvision variant).

    Classifier layers (``fc``, ``aux1.fc2``, ``aux2.fc2``) whose shapes differ (another number
    of classes) keep ``model``'s fresh initialization; aux-head entries are ignored when
    ``model`` has no aux heads, and ``model``'s aux heads stay fresh when the file has none
    (torchvision's ``googlenet(weights=...)`` does the same).

    Args:
        model: a :class:`~inception_kernels.GoogLeNet` of the torchvision variant.
        path: a file holding the state_dict (``torch.save(tv_model.state_dict(), path)``).

    Returns:
        Notes on what was not loaded, one line each.

    Raises:
        ValueError: the file cannot be read, or is not a torchvision GoogLeNet state_dict.
    """
    flag = "--init-from-torchvision"
    path = Path(path)
    state = _torch_load(path, flag)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise ValueError(f"{flag} {path} is an inception-kernels train checkpoint; continue it with --resume")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{flag} {path}: not a state_dict (a dict of tensors)")
    aux = ("aux1.", "aux2.")
    own = model.state_dict()
    has_aux = any(k.startswith(aux) for k in own)
    file_aux = any(k.startswith(aux) for k in state)
    notes, take, fresh = [], {}, set()
    for k, v in state.items():
        if k.startswith(aux) and not has_aux:
            continue
        if k in own and own[k].shape != v.shape and k.startswith(HEAD_PREFIXES):
            notes.append(f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} here (another class count); "
                         "freshly initialized")
            fresh.add(k)
            continue
        take[k] = v
    unexpected = sorted(k for k in take if k not in own)
    mismatched = sorted(k for k in take if k in own and own[k].shape != take[k].shape)
    missing = sorted(k for k in own if k not in take and k not in fresh and not (k.startswith(aux) and not file_aux))
    if unexpected or mismatched or missing:
        parts = []
        for name, keys in (("unexpected", unexpected), ("wrong shape", mismatched), ("missing", missing)):
            if keys:
                parts.append(f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})")
        raise ValueError(f"{flag} {path} is not a torchvision GoogLeNet state_dict ({'; '.join(parts)})")
    if has_aux and not file_aux:
        notes.append("the file has no aux heads; aux1 and aux2 are freshly initialized")
    model.load_state_dict(take, strict=False)
    return notes
