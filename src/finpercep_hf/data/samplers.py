"""`EpochShuffleSampler`: a shuffling sampler whose order is a pure function of ``(seed, epoch)``.

The trainers resume mid-epoch by skipping the batches already seen, so the order of an epoch must not depend on
RNG state consumed before the checkpoint. Each epoch's permutation comes from a fresh ``torch.Generator`` seeded
with ``seed + epoch``; every process draws the same one (the distributed wrapper then shards it). With
``with_seeds``, each index comes paired with a per-sample seed for the dataset's own random choices (see
`SeededDataset`), so augmentations too are a function of ``(seed, epoch, position)`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

SEED_STRIDE = 1_000_003  # a prime larger than any epoch length we meet, so (epoch, position) -> seed is injective


class EpochShuffleSampler(Sampler):
    """Yields a permutation of ``range(num_samples)`` drawn from ``seed + epoch`` (call `set_epoch` each epoch).

    With ``with_seeds`` it yields ``(index, sample_seed)`` pairs instead, for a `SeededDataset`.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True, with_seeds: bool = False):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        self.num_samples, self.seed, self.shuffle, self.with_seeds = num_samples, seed, shuffle, with_seeds
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator:
        rng = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=rng) if self.shuffle else torch.arange(self.num_samples)
        for position, index in enumerate(order.tolist()):
            if self.with_seeds:
                yield index, self.seed * SEED_STRIDE**2 + self.epoch * SEED_STRIDE + position
            else:
                yield index


class SeededDataset(Dataset):
    """Wraps rows (dicts) so that ``dataset[(index, seed)]`` is row ``index`` plus ``{"sample_seed": seed}``.

    The collator then seeds its random choices for that row from ``sample_seed`` (see `FinPercepTripletCollator`).
    Plain integer keys give the row unchanged.
    """

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            return {**self.rows[index], "sample_seed": seed}
        return self.rows[key]


__all__ = ["EpochShuffleSampler", "SeededDataset"]
