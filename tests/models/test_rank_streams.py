"""Tests for the per-rank random streams of the translator modules under DDP (pools, patches, data)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

TINY = {"generator": {"ngf": 8, "n_blocks": 1}, "discriminator": {"ndf": 8}}


def _draws(m: CycleGANModule | CUTModule) -> list[int]:
    """One draw from each of the module's generators and from torch's global generator."""
    gens = m.rank_generators()
    return [int(torch.randint(2**31, (1,), generator=g)) for g in gens] + [int(torch.randint(2**31, (1,)))]


def _as_rank(m: CycleGANModule | CUTModule, rank: int) -> None:
    m._trainer = SimpleNamespace(global_rank=rank)  # type: ignore[assignment]


def test_ranks_draw_apart_and_rank_zero_is_unchanged() -> None:
    draws = []
    for rank in (0, 0, 1, 2):
        torch.manual_seed(0)
        m = CycleGANModule(**TINY)
        _as_rank(m, rank)
        m.setup("fit")
        draws.append(_draws(m))
    assert draws[0] == draws[1]  # rank 0 (and a 1-process run) keeps its streams
    for a, b in ((0, 2), (0, 3), (2, 3)):
        assert all(x != y for x, y in zip(draws[a], draws[b], strict=True)), (a, b)


def test_resume_restores_then_offsets_per_rank() -> None:
    """A checkpoint holds rank 0's states; after loading it, rank 1 again draws apart from rank 0."""
    torch.manual_seed(0)
    saver = CUTModule(**TINY)
    _as_rank(saver, 0)
    ckpt: dict = {}
    saver.on_save_checkpoint(ckpt)
    expected = _draws(saver)  # what rank 0 draws next, from the saved states

    resumed = []
    for rank in (0, 1):
        torch.manual_seed(123)  # whatever the process had before the restore
        m = CUTModule(**TINY)
        _as_rank(m, rank)
        m.setup("fit")
        m.on_load_checkpoint(ckpt)
        resumed.append(_draws(m))
    assert resumed[0] == expected
    assert all(x != y for x, y in zip(resumed[0], resumed[1], strict=True))
