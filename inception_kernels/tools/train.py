"""``inception-kernels train``: train GoogLeNet, fused, on one process or many (torchrun).

The defaults follow the paper's recipe ("Going deeper with convolutions", Szegedy et al. 2014,
§6) and, where the paper gives no number, the BVLC Caffe replication of it
(``models/bvlc_googlenet/solver.prototxt`` and ``train_val.prototxt`` in BVLC/caffe):

=====================  ==========  ============================================================
flag                   default     source
=====================  ==========  ============================================================
``--momentum``         0.9         paper §6: "asynchronous SGD with 0.9 momentum"
``--lr-step-epochs``,  8, 0.96     paper §6: "decreasing the learning rate by 4% every 8
``--lr-gamma``                     epochs" (``StepLR(step_size=8, gamma=0.96)``, per epoch)
``--aux-weight``       0.3         paper §5: the aux losses "weighted by 0.3"
``--dropout``          0.4         paper §5 (0.2 for ``--variant torchvision``, torchvision's)
``--dropout-aux``      0.7         paper §5: "a dropout layer with 70% ratio of dropped outputs"
``--ema``              0.9999      paper §6 uses Polyak averaging for the final model but gives
                                   no constant; 0.9999 per step is the moving-average decay of
                                   TensorFlow's Inception training (tensorflow/models,
                                   research/inception, ``MOVING_AVERAGE_DECAY``)
``--lr``               0.01        BVLC solver.prototxt ``base_lr``
``--weight-decay``     2e-4        BVLC solver.prototxt ``weight_decay`` (on every parameter;
                                   the BVLC nets' per-layer bias multipliers are not copied)
``--batch-size``       32          BVLC train_val.prototxt ``batch_size``, per process
``--epochs``           250         BVLC solver.prototxt: ``max_iter`` 10,000,000 x batch 32 over
                                   ImageNet's 1.28M images (``stepsize`` 320,000 = 8 epochs)
``--image-size``       224         paper Table 1 (224x224 RGB input)
augmentation           --          paper §6: crops of 8%-100% of the area, aspect ratio in
                                   [3/4, 4/3], and mirroring (``RandomResizedCrop`` + flip)
``--amp``              none        the paper trained in fp32 (``bf16``, or ``fp16`` with a GradScaler, autocast)
=====================  ==========  ============================================================

Processes: under ``torchrun`` every process trains a DDP replica (gloo on CPU, NCCL on GPU,
one GPU per process) on its ``DistributedSampler`` share of each epoch; ``--batch-size`` is per
process, so the global batch is ``batch_size x processes``. Rank 0 alone prints and writes
files. Each sample's augmentation is seeded by (seed, epoch, index) and dropout by (seed,
epoch, rank), so N processes step exactly like one process with the same global batch
(up to the order of floating-point sums), and a resumed run like an uninterrupted one.

Outputs in ``--out`` (rank 0, after every epoch, each written to a temporary file and renamed):
``checkpoint.pt`` (see :mod:`inception_kernels.tools.checkpoint`), ``metrics.csv`` (one row per
epoch: :data:`METRICS`) and ``curves.png`` (loss and accuracy against epoch).

An epoch cut short by ``--max-steps`` counts as done (its validation runs, the LR schedule
steps, the checkpoint is written). Images that fail to decode stop the run (see
:mod:`inception_kernels.tools.data`).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..models import VARIANTS, googlenet, googlenet_loss
from ..modules import fuse
from ..ops import BACKEND_CHOICES
from . import checkpoint, data
from ._common import AMP_METAVAR, DEVICE_CHOICES, Processes, atomic_write, autocast, average_probabilities, \
    amp_type, check_backend, count_correct, plain

#: metrics.csv's columns: epoch (completed), step (optimizer steps so far), loss (mean training
#: loss of the epoch, aux losses included), top1/top5 (validation accuracy in %, one center
#: crop), lr (the epoch's learning rate), images_per_s (training images per second, all
#: processes), seconds (the epoch's wall time, validation included), ema_top1/ema_top5 (the
#: Polyak/EMA model's validation accuracy; empty without --ema or a val/ folder).
METRICS = ("epoch", "step", "loss", "top1", "top5", "lr", "images_per_s", "seconds", "ema_top1", "ema_top5")

DEFAULT_DROPOUT = {"paper": 0.4, "torchvision": 0.2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to an argparse parser."""
    d = p.add_argument_group("data")
    d.add_argument("--data", default="synthetic",
                   help="'synthetic' (generated images, no files) or an ImageFolder root DIR with DIR/train/<class>/* "
                        "and DIR/val/<class>/* (default synthetic)")
    d.add_argument("--num-classes", type=int, default=None,
                   help="classes of --data synthetic (default 10); with a DIR they come from train/'s folders")
    d.add_argument("--synthetic-images", type=int, default=512,
                   help="training images of --data synthetic (a quarter as many for validation; default 512)")
    d.add_argument("--image-size", type=int, default=224, help="training crop side (default 224, the paper's)")
    d.add_argument("--workers", type=int, default=4, help="data-loading processes per training process (default 4)")
    m = p.add_argument_group("model")
    m.add_argument("--variant", choices=VARIANTS, default="paper", help="GoogLeNet variant (default paper)")
    m.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="the fused Inception blocks' backend (default auto: Triton on a GPU)")
    m.add_argument("--no-fuse", action="store_true", help="train the plain (unfused) model, as a baseline")
    m.add_argument("--aux", action=argparse.BooleanOptionalAction, default=True,
                   help="the auxiliary classifiers on 4a and 4d (default on, as in the paper)")
    m.add_argument("--aux-weight", type=float, default=0.3, help="weight of each aux loss (default 0.3, paper §5)")
    m.add_argument("--dropout", type=float, default=None,
                   help="dropout before the classifier (default: 0.4 paper, 0.2 torchvision)")
    m.add_argument("--dropout-aux", type=float, default=0.7, help="dropout in the aux heads (default 0.7, paper §5)")
    m.add_argument("--init-from-torchvision", metavar="PATH", default=None,
                   help="start from a torchvision GoogLeNet state_dict file (--variant torchvision); classifier "
                        "layers of another class count are re-initialized; the model then re-normalizes its "
                        "input as torchvision's pretrained GoogLeNet does (transform_input)")
    m.add_argument("--sync-bn", action="store_true",
                   help="SyncBatchNorm across processes (--variant torchvision with --no-fuse, CUDA)")
    o = p.add_argument_group("optimization")
    o.add_argument("--epochs", type=int, default=250, help="epochs in all, resumed ones included (default 250)")
    o.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in all, resumed ones included (default: no limit)")
    o.add_argument("--batch-size", type=int, default=32, help="images per process per step (default 32)")
    o.add_argument("--lr", type=float, default=0.01, help="initial learning rate (default 0.01)")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9, paper §6)")
    o.add_argument("--weight-decay", type=float, default=2e-4, help="SGD weight decay (default 2e-4)")
    o.add_argument("--lr-step-epochs", type=int, default=8, help="multiply the LR by --lr-gamma every this many "
                                                                "epochs (default 8, paper §6)")
    o.add_argument("--lr-gamma", type=float, default=0.96, help="LR factor per step of the schedule (default 0.96)")
    o.add_argument("--ema", type=float, default=0.9999,
                   help="Polyak/EMA decay per step of the averaged model; 0 turns it off (default 0.9999)")
    o.add_argument("--amp", type=amp_type, default="none", metavar=AMP_METAVAR,
                   help="mixed precision: none, bfloat16, or float16 with a GradScaler (bf16, fp16 also accepted; "
                        "default none)")
    o.add_argument("--channels-last", action="store_true", help="channels_last model and inputs")
    o.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    o.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto (default): the GPU of this process's LOCAL_RANK when there is one, else the CPU")
    o.add_argument("--seed", type=int, default=0, help="seed of the init, the data order, augmentation and dropout")
    r = p.add_argument_group("output")
    r.add_argument("--out", default="train-results",
                   help="folder for checkpoint.pt, metrics.csv and curves.png (default train-results)")
    r.add_argument("--resume", metavar="PATH", default=None,
                   help="continue from a checkpoint.pt: its model, optimizer (learning rate, momentum, weight "
                        "decay), LR schedule, scaler, EMA, epoch and step counts")


def parse_args(argv) -> argparse.Namespace:
    """``train``'s arguments from a list of strings (as after ``inception-kernels train``)."""
    p = argparse.ArgumentParser(prog="inception-kernels train")
    add_arguments(p)
    return p.parse_args(list(argv))


@dataclass
class TrainResult:
    """What :func:`train` returns (on every process).

    Attributes:
        model: the trained model (fused unless ``--no-fuse``; not DDP-wrapped or compiled).
        ema: the Polyak/EMA averaged copy, or None.
        epoch, step: completed epochs and optimizer steps.
        history: the metrics rows (dicts with :data:`METRICS`).
        out: the output folder.
    """

    model: nn.Module
    ema: Optional[nn.Module]
    epoch: int
    step: int
    history: list = field(default_factory=list)
    out: Optional[Path] = None


def _check_args(a: argparse.Namespace) -> None:
    """Ranges of the numeric flags, and flag combinations (ValueError naming the flag)."""
    rules = [
        ("--epochs", a.epochs, a.epochs >= 1, ">= 1"),
        ("--max-steps", a.max_steps, a.max_steps is None or a.max_steps >= 1, ">= 1"),
        ("--batch-size", a.batch_size, a.batch_size >= 1, ">= 1"),
        ("--image-size", a.image_size, a.image_size >= 1, ">= 1"),
        ("--lr", a.lr, a.lr >= 0, ">= 0"),
        ("--momentum", a.momentum, 0 <= a.momentum < 1, "in [0, 1)"),
        ("--weight-decay", a.weight_decay, a.weight_decay >= 0, ">= 0"),
        ("--lr-step-epochs", a.lr_step_epochs, a.lr_step_epochs >= 1, ">= 1"),
        ("--lr-gamma", a.lr_gamma, 0 < a.lr_gamma <= 1, "in (0, 1]"),
        ("--ema", a.ema, 0 <= a.ema < 1, "in [0, 1) (0 turns it off)"),
        ("--aux-weight", a.aux_weight, a.aux_weight >= 0, ">= 0"),
        ("--dropout", a.dropout, a.dropout is None or 0 <= a.dropout < 1, "in [0, 1)"),
        ("--dropout-aux", a.dropout_aux, 0 <= a.dropout_aux < 1, "in [0, 1)"),
        ("--workers", a.workers, a.workers >= 0, ">= 0"),
        ("--synthetic-images", a.synthetic_images, a.synthetic_images >= 1, ">= 1"),
        ("--num-classes", a.num_classes, a.num_classes is None or a.num_classes >= 1, ">= 1"),
    ]
    for flag, value, ok, rule in rules:
        if not ok:
            raise ValueError(f"{flag} must be {rule}, got {value}")
    if a.init_from_torchvision and a.variant != "torchvision":
        raise ValueError(f"--init-from-torchvision loads torchvision's GoogLeNet: it needs --variant torchvision, "
                         f"got --variant {a.variant}")
    if a.sync_bn and a.variant != "torchvision":
        raise ValueError("--sync-bn: the paper variant has no BatchNorm (use it with --variant torchvision)")
    if a.sync_bn and not a.no_fuse:
        raise ValueError("--sync-bn needs --no-fuse: fused Inception blocks compute their BatchNorm statistics "
                         "per process")


def _open_data(a: argparse.Namespace):
    """``(train_set, val_set_or_None, classes, where)`` for ``--data``."""
    if a.data == "synthetic":
        n = a.num_classes or 10
        train_set = data.synthetic(n, a.synthetic_images, a.image_size, offset=0)
        val_set = data.synthetic(n, max(1, a.synthetic_images // 4), a.image_size, offset=10**7)
        return train_set, val_set, data.class_names(None, n), "synthetic"
    root = Path(a.data)
    train_set = data.image_folder(root, "train")
    classes = data.class_names(train_set, len(train_set.classes))
    if a.num_classes is not None and a.num_classes != len(classes):
        raise ValueError(f"--num-classes {a.num_classes}, but {root}/train has {len(classes)} class folders")
    val_set = data.image_folder(root, "val", required=False)
    if val_set is not None:
        data.check_same_classes(classes, val_set.classes, f"{root}/train", f"{root}/val")
    return train_set, val_set, classes, str(root)


def _check_out(out: Path, resume: Optional[str]) -> None:
    """Create ``out``; refuse to overwrite another run's checkpoint."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: not a folder")
    existing = out / "checkpoint.pt"
    if existing.exists() and (resume is None or Path(resume).resolve() != existing.resolve()):
        raise ValueError(f"--out {out} already holds checkpoint.pt; continue it with --resume {existing}, "
                         "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _notes_on_resume(ck: dict, a: argparse.Namespace) -> list[str]:
    """Flags whose new values the checkpoint's optimizer and schedule override."""
    notes = []
    for flag, key in (("--lr", "lr"), ("--momentum", "momentum"), ("--weight-decay", "weight_decay"),
                      ("--lr-step-epochs", "lr_step_epochs"), ("--lr-gamma", "lr_gamma")):
        old = ck["args"].get(key)
        if old is not None and old != getattr(a, key):
            notes.append(f"{flag} {getattr(a, key)} is ignored: the checkpoint's optimizer and schedule continue "
                         f"({flag} {old})")
    return notes


def _validate(model: nn.Module, val_loader, procs: Processes, a: argparse.Namespace, fmt) -> tuple:
    """Top-1 and top-5 accuracy in % over the whole val set (every process's share), one center crop."""
    if val_loader is None:
        return None, None
    model.eval()
    counts = [0, 0, 0]
    dev = procs.device

    def prepare(x):
        return data.normalize(x.to(dev, non_blocking=True)).contiguous(memory_format=fmt)

    with torch.no_grad(), autocast(dev, a.amp):
        for batch in val_loader:
            crops, target = data.check_batch(batch)
            probs = average_probabilities([model], crops, chunk=crops.shape[0], prepare=prepare)
            c1, c5 = count_correct(probs, target.to(dev))
            counts = [counts[0] + c1, counts[1] + c5, counts[2] + target.numel()]
    c1, c5, n = procs.sum(counts)
    return 100.0 * c1 / n, 100.0 * c5 / n


def _write_metrics(history: list, path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRICS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRICS})
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _plot(history: list, path: Path) -> None:
    """curves.png: training loss, and validation top-1/top-5 (and the EMA model's), against epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in history]
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(epochs, [r["loss"] for r in history], marker="o")
    ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    for key, label, style in (("top1", "top-1", "-"), ("top5", "top-5", "-"),
                              ("ema_top1", "EMA top-1", "--"), ("ema_top5", "EMA top-5", "--")):
        pts = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), style, marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def _fmt(v, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def train(args: argparse.Namespace) -> TrainResult:
    """Train as ``inception-kernels train`` does (see the module docstring).

    Under torchrun (``WORLD_SIZE`` > 1) it joins the process group and leaves it at the end.

    Args:
        args: from :func:`parse_args` (or the ``train`` subcommand's parser).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad input (flags, data, checkpoints, a backend that cannot run here), with
            a message that names it.
    """
    _check_args(args)
    procs = Processes.start(args.device)
    try:
        return _train(args, procs)
    finally:
        procs.close()


def _train(a: argparse.Namespace, procs: Processes) -> TrainResult:
    from tqdm.auto import tqdm

    dev = procs.device
    say = print if procs.main else (lambda *args, **kw: None)
    train_set, val_set, classes, where = _open_data(a)
    if not a.no_fuse:
        check_backend(a.backend, dev, a.amp)
    if a.sync_bn and procs.distributed and dev.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")
    out = Path(a.out)
    procs.check_on_main(lambda: _check_out(out, a.resume))
    ck = checkpoint.load(a.resume, "--resume") if a.resume else None
    if ck is not None:
        checkpoint.check_matches(ck, "--resume", a.resume, variant=a.variant, classes=classes, aux_logits=a.aux)
        done_epochs, done_steps = int(ck["epoch"]), int(ck["step"])
        if done_epochs >= a.epochs or (a.max_steps is not None and done_steps >= a.max_steps):
            raise ValueError(f"--resume {a.resume} is at epoch {done_epochs}, step {done_steps}: nothing left to do "
                             f"with --epochs {a.epochs}" + (f" --max-steps {a.max_steps}" if a.max_steps else "")
                             + " (raise them to train on)")

    # The model: built the same on every process (DDP also broadcasts rank 0's at wrap time).
    torch.manual_seed(a.seed)
    transform_input = ck["transform_input"] if ck is not None else bool(a.init_from_torchvision)
    dropout = DEFAULT_DROPOUT[a.variant] if a.dropout is None else a.dropout
    model = googlenet(a.variant, num_classes=len(classes), aux_logits=a.aux, transform_input=transform_input,
                      dropout=dropout, dropout_aux=a.dropout_aux)
    if a.image_size < model.min_input_size:
        heads = "with" if a.aux else "without"
        raise ValueError(f"--image-size {a.image_size} is below {model.min_input_size}, the smallest input of the "
                         f"{a.variant} GoogLeNet {heads} aux heads" + (" (try --no-aux)" if a.aux else ""))
    notes = []
    if ck is not None:
        model.load_state_dict(ck["model"])
        notes += _notes_on_resume(ck, a)
        if a.init_from_torchvision:
            notes.append("--init-from-torchvision is ignored: the model continues from --resume")
    elif a.init_from_torchvision:
        notes += checkpoint.load_torchvision(model, a.init_from_torchvision)
    plain_keys = set(model.state_dict())
    if not a.no_fuse:
        try:
            fuse(model, backend=a.backend)
        except ValueError as e:
            raise ValueError(f"cannot fuse the {a.variant} GoogLeNet for training: {e}; --no-fuse trains the "
                             "plain model") from e
        if set(model.state_dict()) != plain_keys:  # the checkpoint contract (torchvision loads it)
            raise RuntimeError("fuse() changed the model's state_dict keys; checkpoints would not load into the "
                               "unfused model")
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model.to(device=dev, memory_format=fmt)
    if a.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    forward = net
    if procs.distributed:
        device_ids = [procs.local_rank] if dev.type == "cuda" else None
        forward = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    if a.compile:
        forward = torch.compile(forward)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # Optimizer over the parameters sorted by name: the same order fused or not, so that the
    # optimizer state of a checkpoint maps to the right parameters either way.
    named = dict(net.named_parameters())
    param_names = sorted(named)
    optimizer = torch.optim.SGD([named[n] for n in param_names], lr=a.lr, momentum=a.momentum,
                                weight_decay=a.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=a.lr_step_epochs, gamma=a.lr_gamma)
    scaler = torch.amp.GradScaler(dev.type, enabled=a.amp == "fp16")
    ema = None
    if a.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(a.ema), use_buffers=True)
    epoch, step, history = 0, 0, []
    if ck is not None:
        if list(ck["param_names"]) != param_names:
            raise ValueError(f"--resume {a.resume}: its optimizer state is for other parameters than this model's")
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if scaler.is_enabled() and ck["scaler"]:
            scaler.load_state_dict(ck["scaler"])
        if ema is not None and ck["ema"] is not None:
            ema.module.load_state_dict(ck["ema"])
            ema.n_averaged.fill_(int(ck["ema_n_averaged"]))
        elif ema is not None:
            notes.append("the checkpoint has no EMA model: the average starts now")
        elif ck["ema"] is not None:
            notes.append("--ema 0: the checkpoint's EMA model is not carried on")
        epoch, step, history = int(ck["epoch"]), int(ck["step"]), list(ck["history"])

    # Data: each process its DistributedSampler share; the augmentation seeded per sample.
    train_samples = data.Samples(train_set, data.train_transform(a.image_size), seed=a.seed)
    sampler = torch.utils.data.DistributedSampler(train_samples, num_replicas=procs.world_size, rank=procs.rank,
                                                  shuffle=True, seed=a.seed, drop_last=True)
    pin = dev.type == "cuda"
    train_loader = data.loader(train_samples, a.batch_size, workers=a.workers, sampler=sampler, drop_last=True,
                                pin_memory=pin)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"--data {where}: {len(train_set)} training images are fewer than one batch "
                         f"(--batch-size {a.batch_size} x {procs.world_size} processes)")
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_samples = data.Samples(val_set, functools.partial(data.eval_crops, image_size=a.image_size, crops=1))
        share = torch.utils.data.Subset(val_samples, range(procs.rank, len(val_samples), procs.world_size))
        val_loader = data.loader(share, a.batch_size, workers=a.workers, pin_memory=pin)

    fused = "plain (--no-fuse)" if a.no_fuse else f"fused Inception blocks (backend {a.backend})"
    say(f"train: {a.variant} GoogLeNet {'with' if a.aux else 'without'} aux heads, {len(classes)} classes, {fused}; "
        f"{procs.world_size} process(es) on {dev.type}, batch {a.batch_size} per process; amp {a.amp}; "
        f"data {where}: {len(train_set)} train / {len(val_set) if val_set is not None else 0} val images, "
        f"{steps_per_epoch} steps per epoch" + (f"; resumed at epoch {epoch}, step {step}" if ck is not None else ""))
    for n in notes:
        say(f"note: {n}")
    if val_loader is None:
        say(f"note: --data {where} has no val/ folder: top1/top5 are not measured")

    while epoch < a.epochs and (a.max_steps is None or step < a.max_steps):
        t_epoch = time.perf_counter()
        sampler.set_epoch(epoch)
        train_samples.set_epoch(epoch)
        torch.manual_seed(data.seed_of(a.seed, epoch, procs.rank))  # dropout: per process, per epoch
        lr = optimizer.param_groups[0]["lr"]
        n_steps = steps_per_epoch if a.max_steps is None else min(steps_per_epoch, a.max_steps - step)
        net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        images = 0
        batches = iter(train_loader)
        with tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{a.epochs}", unit="step", disable=not procs.main,
                  leave=False, dynamic_ncols=True) as bar:
            t0 = time.perf_counter()
            for i in range(n_steps):
                x, y = data.check_batch(next(batches))
                x = x.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                y = y.to(dev, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with autocast(dev, a.amp):
                    loss = googlenet_loss(forward(x), y, aux_weight=a.aux_weight)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(net)
                step += 1
                loss_sum += loss.detach().double() * x.shape[0]
                images += x.shape[0]
                bar.update(1)
                if procs.main and (i % 10 == 0 or i == n_steps - 1):
                    rate = images * procs.world_size / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}", refresh=False)
            del batches
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_seconds = time.perf_counter() - t0
        scheduler.step()
        epoch += 1
        loss_total, images_total = procs.sum([loss_sum.item(), images])
        top1, top5 = _validate(net, val_loader, procs, a, fmt)
        ema_top1 = ema_top5 = None
        if ema is not None:
            ema_top1, ema_top5 = _validate(ema.module, val_loader, procs, a, fmt)
        row = {"epoch": epoch, "step": step, "loss": loss_total / images_total, "top1": top1, "top5": top5, "lr": lr,
               "images_per_s": images_total / train_seconds, "seconds": time.perf_counter() - t_epoch,
               "ema_top1": ema_top1, "ema_top5": ema_top5}
        history.append(row)
        if procs.main:
            ema_txt = f"  ema top1 {_fmt(ema_top1, '.2f', '%')} top5 {_fmt(ema_top5, '.2f', '%')}" if ema else ""
            print(f"epoch {epoch}/{a.epochs}  step {step}  loss {row['loss']:.4f}  top1 {_fmt(top1, '.2f', '%')}  "
                  f"top5 {_fmt(top5, '.2f', '%')}{ema_txt}  lr {lr:.6g}  {row['images_per_s']:.1f} img/s  "
                  f"{row['seconds']:.1f} s", flush=True)
            checkpoint.save({
                "format": checkpoint.FORMAT, "version": checkpoint.VERSION,
                "variant": a.variant, "num_classes": len(classes), "aux_logits": bool(a.aux),
                "transform_input": transform_input, "image_size": a.image_size, "classes": list(classes),
                "model": net.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None,
                "ema_n_averaged": int(ema.n_averaged) if ema is not None else 0,
                "param_names": param_names,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "epoch": epoch, "step": step, "history": plain(history), "args": plain(vars(a)),
            }, out / "checkpoint.pt")
            _write_metrics(history, out / "metrics.csv")
            _plot(history, out / "curves.png")
    say(f"wrote {out / 'checkpoint.pt'}, {out / 'metrics.csv'}, {out / 'curves.png'}")
    return TrainResult(net, ema.module if ema is not None else None, epoch, step, history, out)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``inception-kernels train`` with parsed ``args``.

    Returns:
        0 when training finished; 2 for bad input (the message goes to stderr, no traceback).
    """
    try:
        train(args)
    except ValueError as e:
        several = os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1")
        rank = f"[rank {os.environ.get('RANK', '?')}] " if several else ""
        print(f"inception-kernels train: error: {rank}{e}", file=sys.stderr)
        return 2
    return 0
