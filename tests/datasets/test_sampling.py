"""Tests for datasets.sampling: keyed epochs, rank shards, resuming mid-epoch, per-item generators."""

from __future__ import annotations

import pytest
import torch

from datasets.sampling import KeyedRandomSampler, item_generator


def test_epochs_are_permutations_keyed_by_seed_and_epoch() -> None:
    s = KeyedRandomSampler(12, seed=3)
    e0, e1 = s.keys(0), s.keys(1)
    assert sorted(i for i, _ in e0) == list(range(12)) and e0 != e1
    assert KeyedRandomSampler(12, seed=3).keys(0) == e0 and KeyedRandomSampler(12, seed=4).keys(0) != e0


def test_ranks_shard_the_epoch_and_a_resume_skips_what_was_trained() -> None:
    full = KeyedRandomSampler(12, seed=0).keys(0)
    shards = [KeyedRandomSampler(12, seed=0, rank=r, world=3).keys(0) for r in range(3)]
    assert sorted(k for sh in shards for k in sh) == sorted(full)
    step = [0]
    s = KeyedRandomSampler(12, seed=0, batch_size=2, progress=lambda: step[0])
    step[0] = 8  # 6 batches an epoch: the run is 2 batches into epoch 1
    assert list(s) == s.keys(1)[4:]


def test_item_generator_draws_depend_only_on_the_key() -> None:
    (i, g), (j, h) = item_generator((5, 123)), item_generator([5, 123])
    assert i == j == 5 and torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=h))
    assert item_generator(7) == (7, None)
    with pytest.raises(ValueError, match="rank < world"):
        KeyedRandomSampler(4, seed=0, rank=2, world=2)
