"""Tests for datasets.datamodule: data settings are checked up front, naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from datasets.datamodule import TranslationDataModule


@pytest.mark.parametrize("settings,message", [
    ({"batch_size": "abc"}, r"data\.batch_size must be a whole number, got 'abc'"),
    ({"batch_size": 0}, r"data\.batch_size must be >= 1, got 0"),
    ({"crop_size": -32}, r"data\.crop_size must be >= 1, got -32"),
    ({"load_size": 286, "crop_size": 512}, r"data\.crop_size=512 is larger than data\.load_size=286"),
    ({"load_size": 286, "crop_size": None}, r"data\.load_size=286 is not a multiple of 4.*data\.load_size=null"),
    ({"crop_size": 30}, r"data\.crop_size=30 is not a multiple of 4"),
    ({"num_workers": -1}, r"data\.num_workers must be >= 0"),
    ({"steps_per_epoch": 0}, r"data\.steps_per_epoch must be >= 1"),
])
def test_bad_data_settings_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TranslationDataModule("unused", **settings)


def test_good_settings_pass() -> None:
    TranslationDataModule("unused", load_size=286, crop_size=256, batch_size=4, num_workers=0)
    TranslationDataModule("unused", load_size=None, crop_size=None)


def test_mixed_frame_sizes_without_resize_or_crop_name_the_files(tmp_path: Any) -> None:
    import numpy as np

    from translate.imageio import write_image

    for i, size in enumerate([32, 32, 48]):
        write_image(tmp_path / "real" / f"{i:03d}.png", np.zeros((size, size, 3), np.uint8))
        write_image(tmp_path / "sim" / f"{i:03d}.png", np.zeros((32, 32, 3), np.uint8))
    for cache in (True, False):
        dm = TranslationDataModule(str(tmp_path), load_size=None, crop_size=None, camera_yaml=None,
                                   val_dir=None, cache=cache)
        with pytest.raises(ValueError, match=r"real frames differ in size \(000\.png 32x32, 002\.png 48x48\)"):
            dm.setup("fit")
    TranslationDataModule(str(tmp_path), load_size=64, crop_size=32, camera_yaml=None).setup("fit")


def test_train_loader_pins_memory_only_for_a_cuda_trainer() -> None:
    """Page-locked batches (asynchronous copies to the GPU) when the trainer trains on CUDA; a
    CPU trainer or none gets ordinary memory."""
    from types import SimpleNamespace

    import torch

    from datasets.datamodule import _on_cuda

    def trainer(kind: str) -> SimpleNamespace:
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(kind)))

    assert _on_cuda(trainer("cuda")) is True
    assert _on_cuda(trainer("cpu")) is False
    assert _on_cuda(None) is False
