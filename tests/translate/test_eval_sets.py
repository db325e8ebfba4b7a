"""Tests for translate.eval_sets: listing paired, unlabelled and bad evaluation sets; the camera choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from translate.camera import CameraCorrection
from translate.eval_sets import EvalDataError, eval_set_from_pairs, load_eval_set, resolve_camera
from translate.eval_translators import IdentityTranslator
from translate.imageio import DataFolderError


def test_paired_split_lists_partners_in_order(tiny_synth: Path) -> None:
    es = load_eval_set(tiny_synth / "test")
    assert es.kind == "paired" and len(es) == 8 and es.n_listed == 8 and not es.problems
    assert es.sim_paths is not None and [p.stem for p in es.sim_paths] == es.stems
    assert [p.stem for p in es.real_paths] == es.stems == sorted(es.stems)
    short = load_eval_set(tiny_synth / "test", max_frames=3)
    assert len(short) == 3 and short.stems == es.stems[:3] and short.n_listed == 8


def test_unlabelled_folder_with_sim_reference(tiny_synth: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    shutil.copytree(tiny_synth / "test" / "real", folder)
    es = load_eval_set(folder, sim_data=tiny_synth / "test")  # a folder holding sim/ is accepted
    assert es.kind == "unlabelled" and len(es) == 8 and es.sim_paths is None
    assert es.sim_ref_paths is not None and len(es.sim_ref_paths) == 8


def test_empty_and_missing_sets(tmp_path: Path) -> None:
    with pytest.raises(DataFolderError, match="does not exist"):
        load_eval_set(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.jsonl").write_text("\n")
    with pytest.raises(EvalDataError, match="empty"):
        load_eval_set(tmp_path / "empty")
    (tmp_path / "noimg").mkdir()
    with pytest.raises(DataFolderError, match="holds no images"):
        load_eval_set(tmp_path / "noimg")


def test_no_samples_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="lists no frames"):
        eval_set_from_pairs(tmp_path, [])


def test_resolve_camera_given_none_and_auto(tiny_synth: Path) -> None:
    es = load_eval_set(tiny_synth / "test", max_frames=1)
    corr = CameraCorrection.from_yaml(tiny_synth / "camera.yaml")
    assert resolve_camera(corr, es) == (corr, "given")
    assert resolve_camera("none", es) == (None, None)
    assert resolve_camera(None, es, [IdentityTranslator()]) == (None, None)
    found, where = resolve_camera("auto", es)
    assert found is not None and where is not None and where.endswith("camera.yaml")
