"""``inception-kernels evaluate``: top-1 and top-5 accuracy of trained checkpoints.

Each image of an ImageFolder split is cut into 1, 10 or the paper's 144 test crops
(:func:`inception_kernels.tools.data.eval_crops`; "Going deeper with convolutions" §7); the
crops of several images go through each model in batches of ``--batch-size`` (so the fused
kernels see full batches), the softmax is averaged over an image's crops, then over the models
of the ensemble (``--checkpoint`` plus ``--ensemble``), and the top-1 / top-5 of the average
are counted. One process, on the GPU when there is one (``--device``).

By default each checkpoint's Polyak/EMA average is scored (the paper's final model is the
averaged one), or its plain weights when the run kept no average (``--weights model`` asks
for those).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

from ..modules import fuse
from ..ops import BACKEND_CHOICES
from . import checkpoint, data
from ._common import AMP_METAVAR, DEVICE_CHOICES, atomic_write, autocast, average_probabilities, check_backend, \
    amp_type, count_correct, pick_device

#: The keys of ``--json``'s object: accuracies in %, images scored, crops per image, models.
JSON_KEYS = ("top1", "top5", "images", "crops", "models", "seconds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to an argparse parser."""
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an ImageFolder root; its --split folder (default val/) holds one folder per class")
    p.add_argument("--split", default="val", help="the subfolder of --data to score (default val)")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint.pt written by train")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="PATH",
                   help="more checkpoints; the softmax is averaged over all the models")
    p.add_argument("--crops", type=int, choices=data.CROP_CHOICES, default=1,
                   help="test crops per image: 1 (center), 10 (corners + center, mirrored) or 144 (the paper's "
                        "4 scales x 3 squares x 6 crops x 2 mirrors); default 1")
    p.add_argument("--weights", choices=("ema", "model"), default="ema",
                   help="score each checkpoint's Polyak/EMA average (default; its model when it has none) or its "
                        "plain weights")
    p.add_argument("--image-size", type=int, default=None, help="crop side (default: the first checkpoint's)")
    p.add_argument("--batch-size", type=int, default=256, help="crops per forward pass (default 256)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="the fused blocks' backend")
    p.add_argument("--no-fuse", action="store_true", help="score the plain (unfused) models")
    p.add_argument("--amp", type=amp_type, default="none", metavar=AMP_METAVAR,
                   help="autocast dtype: none, bfloat16 or float16 (bf16, fp16 also accepted; default none)")
    p.add_argument("--channels-last", action="store_true", help="channels_last models and inputs")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto (default): the GPU when there is one, else the CPU")
    p.add_argument("--workers", type=int, default=4, help="data-loading processes (default 4)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help=f"also write {{{', '.join(JSON_KEYS)}}} as JSON to PATH")


def parse_args(argv) -> argparse.Namespace:
    """``evaluate``'s arguments from a list of strings (as after ``inception-kernels evaluate``)."""
    p = argparse.ArgumentParser(prog="inception-kernels evaluate")
    add_arguments(p)
    return p.parse_args(list(argv))


def evaluate(args: argparse.Namespace) -> dict:
    """Score the checkpoints as ``inception-kernels evaluate`` does (see the module docstring).

    Returns:
        ``{"top1", "top5", "images", "crops", "models", "seconds"}`` (accuracies in %).

    Raises:
        ValueError: bad input: flags, a missing or malformed folder, a file that is not a
            checkpoint, a checkpoint whose classes differ from the folder's, an image that fails
            to decode, a backend that cannot run here.
    """
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be >= 1, got {args.image_size}")
    dev = pick_device(args.device)
    if not args.no_fuse:
        check_backend(args.backend, dev, args.amp)
    root = Path(args.data)
    dataset = data.image_folder(root, args.split)
    where = f"{root}/{args.split}"
    sources = [("--checkpoint", args.checkpoint)] + [("--ensemble", p) for p in args.ensemble]
    checkpoints = []
    for flag, path in sources:
        ck = checkpoint.load(path, flag)
        checkpoint.check_matches(ck, flag, path, variant=ck["variant"], classes=dataset.classes)
        checkpoints.append((flag, path, ck))
    size = args.image_size or int(checkpoints[0][2]["image_size"])
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = []
    for flag, path, ck in checkpoints:
        model, which = checkpoint.build(ck, args.weights, aux_logits=False)
        if size < model.min_input_size:
            raise ValueError(f"--image-size {size} is below {model.min_input_size}, the smallest input of "
                             f"{flag} {path} ({ck['variant']} GoogLeNet)")
        if which != args.weights:
            print(f"note: {flag} {path} has no EMA model; scoring its plain weights")
        if not args.no_fuse:
            fuse(model, backend=args.backend)  # eval mode: BatchNorm folds into the convolutions
        models.append(model.to(device=dev, memory_format=fmt))

    samples = data.Samples(dataset, functools.partial(data.eval_crops, image_size=size, crops=args.crops))
    images_per_batch = max(1, args.batch_size // args.crops)
    batches = data.loader(samples, images_per_batch, workers=args.workers, pin_memory=dev.type == "cuda")

    def prepare(x):
        return data.normalize(x.to(dev, non_blocking=True)).contiguous(memory_format=fmt)

    print(f"evaluate: {len(models)} model(s), {args.crops} crop(s) per image, {len(dataset)} images of {where}, "
          f"{'plain' if args.no_fuse else 'fused (backend ' + args.backend + ')'} on {dev.type}")
    c1 = c5 = n = 0
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(dev, args.amp), \
            tqdm(batches, desc="evaluate", unit="batch", leave=False, dynamic_ncols=True) as bar:
        for batch in bar:
            crops, target = data.check_batch(batch)
            probs = average_probabilities(models, crops, chunk=args.batch_size, prepare=prepare)
            k1, k5 = count_correct(probs, target.to(dev))
            c1, c5, n = c1 + k1, c5 + k5, n + target.numel()
    seconds = time.perf_counter() - t0
    result = {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "images": n, "crops": args.crops,
              "models": len(models), "seconds": seconds}
    print(f"top1 {result['top1']:.2f}%  top5 {result['top5']:.2f}%  ({n} images x {args.crops} crops, "
          f"{len(models)} model(s), {seconds:.1f} s)")
    if args.json:
        atomic_write(Path(args.json), lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
        print(f"wrote {args.json}")
    return result


def run_cli(args: argparse.Namespace) -> int:
    """Run ``inception-kernels evaluate`` with parsed ``args``.

    Returns:
        0 after printing the accuracies; 2 for bad input (the message goes to stderr, no traceback).
    """
    try:
        evaluate(args)
    except ValueError as e:
        print(f"inception-kernels evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0
