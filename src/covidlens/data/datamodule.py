"""Torch datasets and the Lightning data module that feed training and evaluation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from covidlens.data.datasets import Sample, SampleTable
from covidlens.data.io import MAX_PIXELS
from covidlens.errors import CovidlensError


class ImageDataset(Dataset):
    """Samples read once (:meth:`Sample.image`) and kept in memory as small grey images.

    The sets covidlens trains on hold hundreds to a few thousand slices of at most 512 px, so
    caching decoded images costs little memory and saves decoding every epoch.
    """

    def __init__(self, samples: list[Sample], transform: Callable, cache: dict | None = None):
        self.samples = samples
        self.transform = transform
        self.cache = cache if cache is not None else {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        key = (sample.path, sample.slice_index)
        image = self.cache.get(key)
        if image is None:
            image = self.cache[key] = sample.image()
        return self.transform(image), torch.tensor(sample.label)


def limit_per_class(samples: list[Sample], limit: int | None) -> list[Sample]:
    """The first ``limit`` samples of each class, in table order (for quick runs and tests)."""
    if limit is None:
        return samples
    kept, seen = [], {}
    for sample in samples:
        if seen.get(sample.label, 0) < limit:
            kept.append(sample)
            seen[sample.label] = seen.get(sample.label, 0) + 1
    return kept


def make_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int = 0, collate_fn=None) -> DataLoader:
    """The loader of every task: shuffled training batches, and evaluation that scores each image once.

    Lightning's default evaluation sampler under DDP pads the shards with repeated images; the
    unrepeated sampler keeps the validation metric of N processes equal to that of one.
    """
    sampler = None
    if not train and torch.distributed.is_available() and torch.distributed.is_initialized():
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        sampler=sampler,
        # A last batch of one image would break BatchNorm's batch statistics.
        drop_last=train and len(dataset) > batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


class ClassificationDataModule(L.LightningDataModule):
    def __init__(
        self,
        table: SampleTable,
        train_transform: Callable,
        eval_transform: Callable,
        batch_size: int = 16,
        num_workers: int = 0,
        limit: int | None = None,
        train_collate: Callable | None = None,
    ):
        super().__init__()
        self.train_collate = train_collate
        self.table = table
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.limit = limit
        self._cache: dict = {}

    def dataset(self, split: str, train: bool = False) -> ImageDataset:
        # Images without a label (label -1) can neither be learned from nor scored.
        samples = [s for s in self.table.split(split) if s.label >= 0]
        if train:
            samples = limit_per_class(samples, self.limit)
        transform = self.train_transform if train else self.eval_transform
        return ImageDataset(samples, transform, self._cache)

    def _loader(self, split: str, train: bool) -> DataLoader:
        return make_loader(self.dataset(split, train), self.batch_size, train, self.num_workers,
                           self.train_collate if train else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def read_mask(sample: Sample, num_classes: int) -> np.ndarray:
    """The sample's mask as an ``H x W`` int64 array of class indices, turned by ``rot90`` like its image.

    A grey mask of a binary set (``num_classes == 2``) stored 0/255 is thresholded at 127 (MedSeg's
    hold only 0 and 255, but a resaved mask may hold grey edges); a palette PNG gives its palette
    indices, never its RGB colours; any other grey PNG is read as indices. Values that are not classes of the set are
    refused rather than clipped.
    """
    from PIL import Image

    if sample.mask is None:
        raise CovidlensError(f"{sample.path} has no mask; a segmentation set needs one mask per image.")
    path = Path(sample.mask)
    if path.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff", ".gif"):
        raise CovidlensError(f"mask {path} is not a 2-D image file; covidlens trains on PNG class-index masks.")
    try:
        with Image.open(path) as handle:
            if handle.width * handle.height > MAX_PIXELS:
                raise CovidlensError(f"mask {path} has {handle.width}x{handle.height} pixels, more than covidlens accepts.")
            palette = handle.mode == "P"
            if not palette and handle.mode not in ("L", "1", "I", "I;16"):
                handle = handle.convert("L")
            values = np.asarray(handle).astype(np.int64)
    except OSError as exc:
        raise CovidlensError(f"mask {path} cannot be read as an image ({exc}).") from exc
    if num_classes == 2 and not palette and values.max(initial=0) > 1:
        values = (values > 127).astype(np.int64)
    if values.min(initial=0) < 0 or values.max(initial=0) >= num_classes:
        raise CovidlensError(
            f"mask {path} holds the value {int(values.max())}, but the set has {num_classes} mask classes (0..{num_classes - 1})."
        )
    if sample.rot90 % 4:
        values = np.ascontiguousarray(np.rot90(values, sample.rot90))
    return values


def read_image_and_mask(sample: Sample, num_classes: int):
    """The sample's image and mask in the usual view, refused when their sizes differ."""
    image = sample.image()
    mask = read_mask(sample, num_classes)
    if mask.shape != (image.height, image.width):
        raise CovidlensError(
            f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image {sample.path} is "
            f"{image.width}x{image.height}; a mask must have its image's size."
        )
    return image, mask


class SegmentationDataset(Dataset):
    """(image, mask) pairs through a joint transform; decoded slices and masks are cached in memory
    (the MedSeg set is 98 slices of about 350 px)."""

    def __init__(self, samples: list[Sample], transform: Callable, num_classes: int, cache: dict | None = None):
        self.samples = samples
        self.transform = transform
        self.num_classes = num_classes
        self.cache = cache if cache is not None else {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        key = (sample.path, sample.slice_index, sample.mask)
        pair = self.cache.get(key)
        if pair is None:
            pair = self.cache[key] = read_image_and_mask(sample, self.num_classes)
        return self.transform(*pair)


def carve_validation(samples: list[Sample], count: int, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split training samples into (train, val) for a set without a validation split.

    Whole groups move to validation, taken in the order of SHA-256 of ``seed`` and the group name
    (the same on every run and machine, unlike Python's salted ``hash``) until at least ``count``
    samples are held out; the test split is never touched, so it stays for the final report only.
    """
    if count < 1:
        raise CovidlensError("data.val_slices must be at least 1: the best epoch is chosen on validation slices.")
    groups = sorted({s.group for s in samples}, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest())
    held: set[str] = set()
    taken = 0
    for group in groups:
        if taken >= count:
            break
        held.add(group)
        taken += sum(1 for s in samples if s.group == group)
    train = [s for s in samples if s.group not in held]
    if not train:
        raise CovidlensError(f"data.val_slices={count} leaves no training slices; hold out fewer.")
    return train, [s for s in samples if s.group in held]


class SegmentationDataModule(L.LightningDataModule):
    """Training and validation slices with masks.

    The validation slices are the set's own ``val`` split when it has one; otherwise ``val_slices``
    slices carved from ``train`` by :func:`carve_validation`. ``limit`` keeps the first that many
    training slices (quick runs and tests), after validation has been set aside.
    """

    def __init__(
        self,
        table: SampleTable,
        num_classes: int,
        train_transform: Callable,
        eval_transform: Callable,
        batch_size: int = 8,
        num_workers: int = 0,
        limit: int | None = None,
        val_slices: int = 10,
        seed: int = 0,
    ):
        super().__init__()
        self.table = table
        self.num_classes = num_classes
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._cache: dict = {}
        train = [s for s in table.samples if s.split == "train" and s.mask is not None]
        val = [s for s in table.samples if s.split == "val" and s.mask is not None]
        if not train:
            raise CovidlensError(f"data set {table.name!r} has no training slices with masks.")
        if not val:
            train, val = carve_validation(train, val_slices, seed)
        self.splits = {"train": train[:limit] if limit else train, "val": val}

    def dataset(self, split: str, train: bool = False) -> SegmentationDataset:
        if split not in self.splits:
            raise CovidlensError(f"the segmentation data module serves train and val, not {split!r}.")
        transform = self.train_transform if train else self.eval_transform
        return SegmentationDataset(self.splits[split], transform, self.num_classes, self._cache)

    def _loader(self, split: str, train: bool) -> DataLoader:
        return make_loader(self.dataset(split, train), self.batch_size, train, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)
