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
