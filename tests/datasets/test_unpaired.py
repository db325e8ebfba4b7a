"""Tests for datasets.unpaired: the unpaired real/sim training dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.unpaired import MIN_FRAME_SIZE, UnpairedImageDataset, build_transform
from translate.imageio import ImageDecodeError, write_image


def _folders(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for dom in ("real", "sim"):
        for i in range(4):
            write_image(tmp_path / dom / f"{i:03d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    write_image(tmp_path / "real" / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    return tmp_path


@pytest.mark.parametrize("cache", [True, False])
def test_frames_below_the_minimum_size_are_skipped_and_reported(tmp_path: Path, cache: bool) -> None:
    root = _folders(tmp_path)
    ds = UnpairedImageDataset(root / "real", root / "sim", cache=cache,
                              transform=build_transform(load_size=None, crop_size=32, flip=False, train=True))
    if cache:
        assert [p.name for p in ds.real_paths] == ["000.png", "001.png", "002.png", "003.png"]
        assert any("tiny.png" in str(e) and f"{MIN_FRAME_SIZE} px minimum" in str(e) for e in ds.skipped)
    for i in range(len(ds)):  # uncached: the tiny frame is skipped when met
        assert ds[i]["real"].shape == (3, 32, 32)
    with pytest.raises(ImageDecodeError, match=r"tiny\.png: 1x1 is below"):
        UnpairedImageDataset(root / "real", root / "sim", cache=True, on_error="raise")


def test_keyed_items_are_a_function_of_their_key(tmp_path: Path) -> None:
    root = _folders(tmp_path)
    ds = UnpairedImageDataset(root / "real", root / "sim", cache=True,
                              transform=build_transform(load_size=None, crop_size=16, flip=True, train=True))
    a, b, c = ds[(1, 123)], ds[(1, 123)], ds[(1, 124)]
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)


def test_the_sampler_resumes_and_shards() -> None:
    from datasets.sampling import KeyedRandomSampler

    full = list(KeyedRandomSampler(12, seed=3, batch_size=2))
    assert sorted(i for i, _ in full) == list(range(12))
    resumed = list(KeyedRandomSampler(12, seed=3, batch_size=2, progress=lambda: 2))  # 2 batches done
    assert resumed == full[4:]
    nxt = list(KeyedRandomSampler(12, seed=3, batch_size=2, progress=lambda: 6))  # epoch 1 from its start
    assert nxt != full and sorted(nxt) != sorted(full) and len(nxt) == 12
    ranks = [list(KeyedRandomSampler(12, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(full) and not set(ranks[0]) & set(ranks[1])


def test_a_crop_larger_than_the_frames_names_the_file_and_the_keys(tmp_path: Path) -> None:
    root = _folders(tmp_path)
    ds = UnpairedImageDataset(root / "real", root / "sim", cache=True,
                              transform=build_transform(load_size=None, crop_size=64, flip=False, train=True))
    with pytest.raises(ValueError, match=r"data\.crop_size is larger than real frame .*000\.png \(32x32\): set data\.load_size"):
        ds[(0, 1)]


def test_dataloader_worker_errors_become_their_original_line() -> None:
    from train_translate import _one_line

    wrapped = RuntimeError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                           "call last):\n  File \"x.py\", line 1\nValueError: data.crop_size is larger than ...")
    assert _one_line(wrapped) == "ValueError: data.crop_size is larger than ..."
    assert _one_line(ValueError("plain")) == "plain"
