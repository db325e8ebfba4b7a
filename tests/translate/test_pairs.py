"""Tests for translate.pairs: paired folders (matching stems or a manifest), with their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from translate.fsutil import PathEscapeError
from translate.imageio import DataFolderError, write_image
from translate.pairs import PairingError, find_paired_samples


def _img(path: Path, v: int = 0) -> Path:
    return write_image(path, np.full((8, 8, 3), v, np.uint8))


def test_paired_by_stem_reports_missing_partners(tmp_path: Path) -> None:
    for s in ("000", "001", "002"):
        _img(tmp_path / "real" / f"{s}.jpg")
    for s in ("000", "002", "003"):
        _img(tmp_path / "sim" / f"{s}.png")
    samples, problems = find_paired_samples(tmp_path)
    assert [s.stem for s in samples] == ["000", "002"]
    assert problems == ["003: missing real partner", "001: missing sim partner"]
    with pytest.raises(PairingError, match="001"):
        find_paired_samples(tmp_path, on_missing="raise")
    real_only, _ = find_paired_samples(tmp_path, require_sim=False)
    assert [s.sim is None for s in real_only] == [False, True, False]


def test_paired_manifest_with_actions(tmp_path: Path) -> None:
    _img(tmp_path / "real" / "a.jpg")
    _img(tmp_path / "sim" / "a.png")
    lines = [{"stem": "a", "real": "real/a.jpg", "sim": "sim/a.png", "action": [0.5, -0.5]},
             {"stem": "b", "real": "real/b.jpg", "sim": "sim/b.png", "action": [0, 0]}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    samples, problems = find_paired_samples(tmp_path)
    assert len(samples) == 1 and samples[0].action == (0.5, -0.5)
    assert "b: missing real" in problems[0]


def test_paired_manifest_escape_and_bad_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"real": "../x.jpg"}) + "\n")
    with pytest.raises(PathEscapeError, match="line 1"):
        find_paired_samples(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("{oops\n")
    with pytest.raises(PairingError, match="line 1 is not valid JSON"):
        find_paired_samples(tmp_path)


def test_paired_empty_is_error(tmp_path: Path) -> None:
    _img(tmp_path / "real" / "a.jpg")
    _img(tmp_path / "sim" / "b.png")
    with pytest.raises(PairingError, match="no complete pairs"):
        find_paired_samples(tmp_path)
    with pytest.raises(DataFolderError, match="does not exist"):
        find_paired_samples(tmp_path / "nope")
