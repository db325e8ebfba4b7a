"""Tests for models/pool.py: official ImagePool semantics and an exactly resumable state."""

from __future__ import annotations

import io

import pytest
import torch

from models.pool import ImagePool


def _batch(step: int, n: int = 1) -> torch.Tensor:
    # every image is constant and unique: its value identifies it
    return torch.stack([torch.full((3, 4, 4), float(step * 10 + i)) for i in range(n)])


def _ids(images: torch.Tensor) -> list[float]:
    return [float(im[0, 0, 0]) for im in images]


def test_pool_size_zero_passes_through():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    pool = ImagePool(0)
    assert pool.query(x) is x
    assert len(pool) == 0


def test_fill_then_swap_semantics():
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    out = pool.query(_batch(0, 3))
    assert _ids(out) == [0.0, 1.0, 2.0] and len(pool) == 3
    out = pool.query(_batch(1, 2))  # fills the last slot, then the pool is full
    assert _ids(out)[0] == 10.0 and len(pool) == 4
    seen = set(_ids(out)[1:]) | {0.0, 1.0, 2.0, 10.0}
    stored = {0.0, 1.0, 2.0, 10.0, 11.0}
    from_pool = 0
    total = 0
    for step in range(2, 400):
        new = _ids(_batch(step))[0]
        (got,) = _ids(pool.query(_batch(step)))
        total += 1
        if got != new:
            assert got in stored  # an image that was stored earlier
            stored.discard(got)
            from_pool += 1
        stored.add(new)
        assert len(pool) == 4
    assert seen
    assert 0.4 < from_pool / total < 0.6  # 50 % swap


def test_returned_and_stored_images_are_detached_copies():
    pool = ImagePool(2, torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    out = pool.query(x * 1)
    assert not out.requires_grad
    out.zero_()
    assert pool.images[0].abs().sum() > 0


def test_deterministic_by_generator_seed():
    outs = []
    for _ in range(2):
        pool = ImagePool(3, torch.Generator().manual_seed(5))
        outs.append([_ids(pool.query(_batch(s, 2))) for s in range(30)])
    assert outs[0] == outs[1]


def test_default_generator_follows_global_seed():
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        pool = ImagePool(2)
        runs.append([_ids(pool.query(_batch(s))) for s in range(20)])
    assert runs[0] == runs[1]


def test_state_round_trip_resumes_identically():
    pool = ImagePool(5, torch.Generator().manual_seed(1))
    for step in range(8):
        pool.query(_batch(step, 2))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = ImagePool(5, torch.Generator().manual_seed(999))
    resumed.load_state_dict(state)
    assert len(resumed) == 5
    for step in range(8, 40):
        assert torch.equal(pool.query(_batch(step, 2)), resumed.query(_batch(step, 2)))


def test_load_state_dict_errors():
    pool = ImagePool(3)
    state = ImagePool(2).state_dict()
    with pytest.raises(ValueError, match="pool_size=2"):
        pool.load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        pool.load_state_dict({"pool_size": 3})
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pool.query(torch.zeros(3, 4, 4))
