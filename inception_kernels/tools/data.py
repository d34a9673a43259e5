"""Images for ``train`` and ``evaluate``: ImageFolder roots checked up front, synthetic images,
the paper's training augmentation, the test crops (1, 10 or the paper's 144), and images that
fail to decode.

An image that fails to decode **stops** the run with an error naming the file (it is not
skipped): a skipped image would change one process's batch and not the others', and the
count of images a run trained or scored on would silently differ from the folder's. Fix or
remove the file and run again (``--resume`` continues a training run).

torchvision is imported inside the functions that need it, with an error that says how to
install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import torch

#: ImageNet's per-channel mean and std (torchvision's pretrained models expect inputs normalized so).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Test crops per image that ``evaluate --crops`` offers.
CROP_CHOICES = (1, 10, 144)

#: The paper's four test scales: the shorter side resized to 256, 288, 320, 352 for 224 crops
#: ("Going deeper with convolutions", §7), scaled with the crop size.
PAPER_SCALES = (256, 288, 320, 352)


def torchvision():
    """The torchvision module, or a ValueError that says how to install it."""
    try:
        import torchvision as tv
    except ImportError as e:  # pragma: no cover - torchvision is in the train and test extras
        raise ValueError(
            f"the train and evaluate commands need torchvision ({e}); install it with "
            "pip install 'inception-kernels[train]'"
        ) from None
    return tv


def resize_size(image_size: int) -> int:
    """Shorter side before a center crop of ``image_size``: 256 for 224 (BVLC / torchvision)."""
    return round(image_size * 256 / 224)


def paper_scales(image_size: int) -> list[int]:
    """The shorter sides of the paper's four test scales for crops of ``image_size``."""
    return [round(image_size * s / 224) for s in PAPER_SCALES]


# ------------------------------------------------------------------------------- the folders


def check_root(root: Path) -> None:
    """Raise a ValueError unless ``root`` is an existing, non-empty folder."""
    if not root.exists():
        raise ValueError(f"--data {root}: no such folder")
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a folder (expected an ImageFolder root with train/ and val/)")
    if not any(root.iterdir()):
        raise ValueError(f"--data {root}: the folder is empty (expected train/ and val/ with one folder per class)")


def image_folder(root: Path, split: str, *, required: bool = True):
    """``torchvision.datasets.ImageFolder`` over ``root/split``, checked.

    Args:
        root: the dataset root (checked by :func:`check_root`).
        split: the subfolder, e.g. ``"train"`` or ``"val"``.
        required: when False, a missing ``root/split`` returns None instead of raising.

    Returns:
        The dataset (no transform: :class:`Samples` applies it), or None.

    Raises:
        ValueError: ``root/split`` is missing (when required), has no class folders, or a class
            folder without images.
    """
    check_root(root)
    folder = root / split
    if not folder.is_dir():
        if not required:
            return None
        found = sorted(p.name for p in root.iterdir())[:8]
        raise ValueError(
            f"--data {root}: no {split}/ folder (found {', '.join(found)}); expected the ImageFolder layout "
            f"{root}/{split}/<class>/<image>"
        )
    tv = torchvision()
    try:
        return tv.datasets.ImageFolder(str(folder))
    except FileNotFoundError as e:  # no class folders, or a class folder without images
        raise ValueError(f"--data {root}: {e}") from None


def synthetic(num_classes: int, images: int, image_size: int, offset: int):
    """``torchvision.datasets.FakeData``: ``images`` random images of ``resize_size(image_size)``
    pixels square with random labels, the same for the same ``offset`` and index."""
    tv = torchvision()
    side = resize_size(image_size)
    return tv.datasets.FakeData(size=images, image_size=(3, side, side), num_classes=num_classes,
                                random_offset=offset)


# ---------------------------------------------------------------------------------- samples


class DecodeFailure(NamedTuple):
    """What a sample is replaced by when its image fails to decode."""

    index: int
    path: str
    reason: str


class FailedImages(list):
    """A batch that held images that failed to decode: a list of :class:`DecodeFailure`."""


def seed_of(*parts: int) -> int:
    """One 63-bit seed from integers (seed, epoch, rank or index), the same on every machine."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 % 2**64
        h ^= h >> 29
    return h % 2**63


class Samples(torch.utils.data.Dataset):
    """``(transform(image), label)`` of a torchvision image dataset.

    With ``seed``, each sample's random augmentation is drawn from a generator seeded by
    (seed, epoch, index): the same image gets the same crop whatever the process, the worker
    and the order, so a run on N processes sees exactly the samples of a one-process run of
    the same global batch, and a resumed run those of an uninterrupted one.

    An image that fails to decode comes back as a :class:`DecodeFailure` (see the module
    docstring); :func:`collate` and :func:`check_batch` turn it into an error in the main process.
    """

    def __init__(self, dataset, transform: Callable, seed: Optional[int] = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of ``epoch`` (call before the loader's iterator is created)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _path(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)
        return samples[index][0] if samples is not None else f"sample {index}"

    def __getitem__(self, index: int):
        try:
            image, label = self.dataset[index]
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated files
            return DecodeFailure(index, self._path(index), f"{type(e).__name__}: {e}")
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of(self.seed, self.epoch, index))
            return self.transform(image), label


def collate(batch: list):
    """``default_collate``, except that a batch with undecodable images becomes :class:`FailedImages`."""
    failed = [s for s in batch if isinstance(s, DecodeFailure)]
    if failed:
        return FailedImages(failed)
    return torch.utils.data.default_collate(batch)


def check_batch(batch):
    """``batch``, or a ValueError naming the images of it that failed to decode."""
    if isinstance(batch, FailedImages):
        names = "; ".join(f"{f.path} ({f.reason})" for f in batch[:3])
        more = f" and {len(batch) - 3} more in the same batch" if len(batch) > 3 else ""
        raise ValueError(
            f"cannot decode {names}{more}. An image that fails to decode stops the run (it is not "
            "skipped): fix or remove the file and run again"
        )
    return batch


# ------------------------------------------------------------------------------- transforms


def train_transform(image_size: int):
    """The paper's augmentation (§6): a crop of 8%-100% of the image area with aspect ratio in
    [3/4, 4/3] (``RandomResizedCrop``'s defaults come from there), resized to ``image_size``,
    and a random horizontal mirror; then ImageNet normalization."""
    t = torchvision().transforms
    return t.Compose([
        t.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        t.RandomHorizontalFlip(),
        t.ToTensor(),
        t.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _five(t: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and center ``size`` crops of ``t`` (torchvision's order)."""
    h, w = t.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # torchvision's center_crop
    return [t[..., :size, :size], t[..., :size, w - size:], t[..., h - size:, :size],
            t[..., h - size:, w - size:], t[..., top:top + size, left:left + size]]


def _squares(t: torch.Tensor) -> list[torch.Tensor]:
    """Left, center and right squares of a landscape image (top, center, bottom of a portrait one)."""
    h, w = t.shape[-2:]
    s = min(h, w)
    if w >= h:
        return [t[..., :, o:o + s] for o in (0, int(round((w - s) / 2.0)), w - s)]
    return [t[..., o:o + s, :] for o in (0, int(round((h - s) / 2.0)), h - s)]


def eval_crops(image, image_size: int, crops: int) -> torch.Tensor:
    """The test crops of one image, uint8 ``[crops, 3, image_size, image_size]``.

    - 1: the shorter side resized to :func:`resize_size`, the center crop;
    - 10: the same resize, the four corner crops and the center crop, then the same five crops
      of the mirrored image (exactly torchvision's ``TenCrop``);
    - 144: the paper's scheme (§7): the shorter side resized to each of the four
      :func:`paper_scales`; of each resized image the left, center and right squares (top,
      center, bottom for portrait images); of each square the four corner crops, the center
      crop and the whole square resized to ``image_size``; each of these and its mirror image.
      Order: scale, square, crop (corners, center, whole square), mirror — index
      ``((scale * 3 + square) * 6 + crop) * 2 + mirror``.

    Args:
        image: a PIL image (RGB).
        image_size: the crop side.
        crops: 1, 10 or 144.

    Returns:
        The crops, uint8.
    """
    tv = torchvision()
    F = tv.transforms.functional
    if crops not in CROP_CHOICES:
        raise ValueError(f"--crops must be one of {CROP_CHOICES}, got {crops}")
    if crops in (1, 10):
        t = F.pil_to_tensor(F.resize(image, resize_size(image_size)))
        views = _five(t, image_size)
        views = [views[4]] if crops == 1 else views + _five(t.flip(-1), image_size)
        return torch.stack(views)
    views = []
    for side in paper_scales(image_size):
        t = F.pil_to_tensor(F.resize(image, side))
        for square in _squares(t):
            whole = F.resize(square, [image_size, image_size], antialias=True)
            for v in _five(square, image_size) + [whole]:
                views += [v, v.flip(-1)]
    return torch.stack(views)


def normalize(crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops ``[..., 3, H, W]`` -> float32 with ImageNet normalization (on crops' device)."""
    mean = torch.tensor(IMAGENET_MEAN, device=crops.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=crops.device).view(3, 1, 1)
    return (crops.float() / 255 - mean) / std


def loader(samples: Samples, batch_size: int, *, workers: int, sampler=None, drop_last: bool = False,
           pin_memory: bool = False):
    """A ``DataLoader`` over ``samples`` with :func:`collate`."""
    return torch.utils.data.DataLoader(
        samples, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        drop_last=drop_last, pin_memory=pin_memory, persistent_workers=False,
    )


def class_names(dataset, num_classes: int) -> list[str]:
    """The class names of an ImageFolder, or "0".."K-1" for synthetic data."""
    classes = getattr(dataset, "classes", None)
    return list(classes) if classes is not None else [str(i) for i in range(num_classes)]


def check_same_classes(expected: Sequence[str], found: Sequence[str], what: str, where: str) -> None:
    """Raise a ValueError unless two class lists are equal (same names, same order)."""
    if list(expected) == list(found):
        return
    if len(expected) != len(found):
        raise ValueError(f"{what} has {len(expected)} classes, but {where} has {len(found)}")
    diff = [(a, b) for a, b in zip(expected, found) if a != b][:3]
    raise ValueError(
        f"{what} and {where} name their classes differently (e.g. "
        + ", ".join(f"{a!r} vs {b!r}" for a, b in diff) + "); labels would be mixed up"
    )
