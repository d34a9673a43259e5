"""Pieces shared by ``train`` and ``evaluate``: processes and devices, mixed precision, the
backend check, crop-averaged predictions and top-k counts, and atomic file writes."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

#: ``--amp`` values and the autocast dtype of each (None: no autocast).
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}



def amp_type(text: str) -> str:
    """argparse ``type=`` of ``--amp``: ``none`` or a 16-bit dtype in either spelling
    (``bfloat16`` / ``bf16``, ``float16`` / ``fp16``); returns the key of :data:`AMP_DTYPES`.

    Raises:
        argparse.ArgumentTypeError: any other value.
    """
    import argparse

    from .ui import dtype_name, short_dtype

    if text.strip().lower() == "none":
        return "none"
    try:
        return short_dtype(dtype_name(text, ("bfloat16", "float16"), "--amp"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{str(e).removeprefix('--amp: ')}, or none") from None


#: ``--amp`` as ``--help`` shows it (canonical dtype names; the short ones are accepted too).
AMP_METAVAR = "{none,bfloat16,float16}"

#: ``--device`` values.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(choice: str, index: int = 0) -> torch.device:
    """The device ``--device`` names: ``auto`` is CUDA device ``index`` when there is one, else the CPU.

    Raises:
        ValueError: ``cuda`` without a CUDA device, or no CUDA device ``index``.
    """
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {DEVICE_CHOICES}, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if index >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {index} has no CUDA device: {torch.cuda.device_count()} visible "
                         "(use torchrun --nproc_per_node at most the number of GPUs, or --device cpu)")
    return torch.device("cuda", index)


# ---------------------------------------------------------------------------------- processes


@dataclass
class Processes:
    """This process's place among the processes ``torchrun`` started (or a single process).

    Attributes:
        rank, world_size, local_rank: from torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
            (0, 1, 0 without torchrun).
        device: ``cuda:LOCAL_RANK`` or the CPU (:func:`pick_device`).
        started: whether this object initialized the default process group (and so destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def start(cls, device: str = "auto") -> "Processes":
        """Join torchrun's process group when there is more than one process: NCCL on CUDA
        devices (one per local rank), gloo on the CPU.

        Args:
            device: ``--device`` (see :func:`pick_device`).

        Raises:
            ValueError: torchrun's environment variables are not integers; see :func:`pick_device`.
        """
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError as e:
            raise ValueError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them): {e}") from None
        dev = pick_device(device, local)
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.set_device(dev)
        started = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            started = True
        return cls(rank, world, local, dev, started)

    def close(self) -> None:
        """Leave the process group if :meth:`start` joined it."""
        if self.started and dist.is_initialized():
            dist.destroy_process_group()
            self.started = False

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over all processes (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        if self.distributed:
            dist.all_reduce(t)
        return t.tolist()

    def check_on_main(self, check: Callable[[], None]) -> None:
        """Run ``check`` on rank 0 only (e.g. a look at rank 0's output folder); if it raises a
        ValueError, every process raises it, so that none waits for the others forever."""
        error = None
        if self.main:
            try:
                check()
            except ValueError as e:
                error = str(e)
        if self.distributed:
            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise ValueError(error)


# --------------------------------------------------------------------------- backends and AMP


def check_backend(backend: str, device: torch.device, amp: str) -> None:
    """Raise a ValueError naming ``--backend`` when the fused op cannot run it on ``device``.

    ``auto`` always runs (Triton on CUDA or under ``TRITON_INTERPRET=1``, else the reference).
    """
    from .. import _backends

    status = None
    if backend == "cuda":
        status = _backends.cuda_status()
        if status.available and device.type != "cuda":
            raise ValueError(f"--backend cuda needs a CUDA device; this process runs on {device}")
    elif backend == "triton":
        status = _backends.triton_status() if device.type == "cuda" else _backends.triton_interpreter_status()
        if status.available and device.type == "cpu" and amp == "bf16":
            raise ValueError(
                "--backend triton with --amp bf16 cannot run in Triton's CPU interpreter (its bfloat16 "
                "tl.dot is wrong); use --amp fp16 or none, or --backend reference"
            )
    if status is not None and not status.available:
        raise ValueError(f"--backend {backend} cannot run here: {status.reason}")


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``--amp`` (a no-op context for ``none``)."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ------------------------------------------------------------------------------- predictions


def average_probabilities(
    models: Sequence[torch.nn.Module],
    crops: torch.Tensor,
    *,
    chunk: int,
    prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Class probabilities of each image: the softmax averaged over its crops, then over models.

    Args:
        models: classifiers in eval mode, each returning logits ``[n, K]``.
        crops: ``[B, n_crops, 3, H, W]``, the crops of B images.
        chunk: crops per forward pass (batches run across images, so the fused kernels see
            full batches whatever the number of crops per image).
        prepare: applied to each chunk before the models (e.g. uint8 -> normalized float on the
            device).

    Returns:
        ``[B, K]`` float32 probabilities (each row sums to 1).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    b, n = crops.shape[:2]
    flat = crops.flatten(0, 1)
    total = None
    for model in models:
        probs = []
        for i in range(0, flat.shape[0], chunk):
            x = flat[i:i + chunk]
            x = prepare(x) if prepare is not None else x
            probs.append(F.softmax(model(x).float(), dim=1))
        p = torch.cat(probs).view(b, n, -1).mean(dim=1)
        total = p if total is None else total + p
    return total / len(models)


def count_correct(scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have their target among the top-k scores, for each k (k capped at the
    number of classes).

    Args:
        scores: ``[B, K]`` logits or probabilities.
        target: ``[B]`` class indices.
        ks: the k's.

    Returns:
        One count per k.
    """
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == target.view(-1, 1)
    return [int(hit[:, :min(k, kmax)].any(dim=1).sum()) for k in ks]


# ------------------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it over ``path``.

    A crash or an error while writing leaves the previous ``path`` as it was (``os.replace`` is
    atomic on POSIX and Windows) and removes the temporary file.

    Args:
        path: the file to write.
        write: called with the open binary file object.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def plain(value):
    """``value`` as plain types that ``torch.load(weights_only=True)`` and JSON read back:
    paths become strings, tuples lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as a plain value")
