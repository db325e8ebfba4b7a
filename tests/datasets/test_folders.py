"""Tests for datasets.folders: unpaired layouts, with their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.folders import resolve_unpaired_folders
from translate.imageio import DataFolderError, write_image


def _img(path: Path, v: int = 0) -> Path:
    return write_image(path, np.full((8, 8, 3), v, np.uint8))


def test_unpaired_real_sim_and_cyclegan_layouts(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "real" / "1.png")
    _img(tmp_path / "a" / "sim" / "1.png")
    assert resolve_unpaired_folders(tmp_path / "a") == (tmp_path / "a/real", tmp_path / "a/sim")
    _img(tmp_path / "b" / "trainA" / "1.png")
    _img(tmp_path / "b" / "trainB" / "1.png")
    assert resolve_unpaired_folders(tmp_path / "b") == (tmp_path / "b/trainA", tmp_path / "b/trainB")


def test_unpaired_errors_name_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFolderError, match="does not exist"):
        resolve_unpaired_folders(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataFolderError, match=r"neither real/ \+ sim/ or trainA/ \+ trainB/"):
        resolve_unpaired_folders(tmp_path / "x")
    _img(tmp_path / "y" / "real" / "1.png")
    (tmp_path / "y" / "sim").mkdir()
    with pytest.raises(DataFolderError, match=r"sim image folder .*y/sim holds no images"):
        resolve_unpaired_folders(tmp_path / "y")
    _img(tmp_path / "z" / "real" / "1.png")
    with pytest.raises(DataFolderError, match=r"sim image folder .*z/sim does not exist"):
        resolve_unpaired_folders(tmp_path / "z")
