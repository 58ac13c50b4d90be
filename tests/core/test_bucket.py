"""Length bucketing: BucketBatchSampler and the recipe's data.bucket_by_length."""

from __future__ import annotations

import random

import pytest
import torch

import torchrig
from torchrig import BucketBatchSampler


def lengths_for(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 300) for _ in range(n)]


def padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_every_sample_once_per_epoch_with_far_less_padding():
    lengths = lengths_for(1000)
    sampler = BucketBatchSampler(lengths, 16, pool=20, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63 and sorted(i for b in batches for i in b) == list(range(1000))
    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).split(16)
    assert padding(batches, lengths) < 0.1 * padding([b.tolist() for b in shuffled], lengths)


def test_order_is_seeded_and_changes_every_epoch():
    lengths = lengths_for(300)
    a = BucketBatchSampler(lengths, 8, generator=torch.Generator().manual_seed(3))
    b = BucketBatchSampler(lengths, 8, generator=torch.Generator().manual_seed(3))
    first = list(a)
    assert first == list(b) and list(a) != first  # same seed, same epoch; next epoch differs
    assert [len(x) for x in BucketBatchSampler(lengths, 8, drop_last=True)] == [8] * 37
    # without shuffling (evaluation): pools of 8 * 5 samples in index order, each sorted by length
    fixed = [i for batch in BucketBatchSampler(lengths, 8, shuffle=False, pool=5) for i in batch]
    for start in range(0, 300, 40):
        pool = fixed[start:start + 40]
        assert sorted(pool) == list(range(start, min(start + 40, 300)))
        sizes = torch.as_tensor(lengths)[pool]
        assert (sizes[1:] >= sizes[:-1]).all()


def test_bad_arguments():
    with pytest.raises(torchrig.TorchrigError, match="batch_size and pool must be >= 1"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(torchrig.TorchrigError, match="non-empty list"):
        BucketBatchSampler([], 4)
