"""Torch datasets and the Lightning data module that feed training and evaluation."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from covidlens.data.datasets import Sample, SampleTable


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
        dataset = self.dataset(split, train)
        # Lightning's default evaluation sampler under DDP pads the shards with repeated images; scoring
        # each image exactly once keeps the validation AUC of N processes equal to that of one.
        sampler = None
        if not train and torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            sampler=sampler,
            # A last batch of one image would break BatchNorm's batch statistics.
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.train_collate if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
