"""Tests for datasets.jetbot_synth.looks: held-out looks and the held-out dataset builder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.jetbot_synth.looks import (
    LOOKS,
    LookSpec,
    apply_look,
    build_heldout_dataset,
    get_look,
    main,
)
from translate.imageio import list_images, read_image, read_images
from translate.pairs import find_paired_samples


@pytest.fixture(scope="module")
def sim_frames(tiny_synth: Path) -> np.ndarray:
    """The 8 paired test sim frames of the tiny 48 px dataset."""
    imgs, _, _ = read_images(sorted((tiny_synth / "test" / "sim").glob("*.png")))
    return np.stack(imgs)


@pytest.fixture(scope="module")
def heldout(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_heldout_dataset(tiny_synth, tmp_path_factory.mktemp("heldout") / "cool",
                                 "cool_led", seed=3)


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_at_least_three_distinct_looks() -> None:
    assert {"cool_led", "sodium_dusk", "overcast_phone"} <= set(LOOKS)
    params = [spec.to_dict() for spec in LOOKS.values()]
    for key in ("wb_gains", "texture"):
        assert len({json.dumps(p[key]) for p in params}) == len(params), key
    assert get_look("cool_led") is LOOKS["cool_led"]
    with pytest.raises(KeyError, match="known looks"):
        get_look("nope")


@pytest.mark.parametrize("name", sorted(LOOKS))
def test_look_changes_image_keeps_shape_and_is_deterministic(
        name: str, sim_frames: np.ndarray) -> None:
    out = apply_look(sim_frames, name, seed=0)
    assert out.shape == sim_frames.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - sim_frames.astype(np.int16)).mean(axis=(1, 2, 3))
    assert (diff > 8).all(), diff
    np.testing.assert_array_equal(out, apply_look(sim_frames, name, seed=0))
    # per-frame streams: a frame gets the same result alone (given its index) as in the batch
    np.testing.assert_array_equal(out[5:6], apply_look(sim_frames[5:6], name, 0, index_offset=5))
    assert not np.array_equal(out, apply_look(sim_frames, name, seed=1))
    # a frame's randomness depends on its index: the same image at two indices differs
    twice = apply_look(np.stack([sim_frames[0], sim_frames[0]]), name, seed=0)
    assert not np.array_equal(twice[0], twice[1])


def test_looks_differ_from_each_other_and_work_at_any_size(sim_frames: np.ndarray) -> None:
    outs = {n: apply_look(sim_frames, n, seed=0).astype(np.int16) for n in LOOKS}
    names = sorted(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(outs[a] - outs[b]).mean() > 8, (a, b)
    for shape in ((1, 128, 128, 3), (1, 224, 224, 3), (2, 30, 40, 3)):
        x = np.full(shape, 150, np.uint8)
        for n in LOOKS:
            assert apply_look(x, n, 0).shape == shape
    with pytest.raises(ValueError, match="uint8"):
        apply_look(sim_frames.astype(np.float32), "cool_led", 0)
    custom = LookSpec(name="plain_blue", wb_gains=(0.5, 1.0, 1.5))
    assert apply_look(sim_frames[:1], custom, 0)[0, ..., 2].mean() > sim_frames[0, ..., 2].mean()


def test_build_layout_stems_and_actions(heldout: Path, tiny_synth: Path) -> None:
    assert {p.name for p in heldout.iterdir()} == {"look.json", "real", "sim", "val", "test"}
    assert not (heldout / "camera.yaml").exists()
    meta = json.loads((heldout / "look.json").read_text())
    assert meta["look"] == "cool_led" and meta["seed"] == 3
    assert meta["params"] == LOOKS["cool_led"].to_dict()
    for split in ("val", "test"):
        src = {s.stem: s for s in find_paired_samples(tiny_synth / split)[0]}
        out, problems = find_paired_samples(heldout / split, on_missing="raise")
        assert not problems and [s.stem for s in out] == sorted(src)
        for s in out:
            assert s.real.parent == (heldout / split / "real").resolve()
            assert s.sim is not None and s.sim.parent == (heldout / split / "sim").resolve()
            assert s.action == src[s.stem].action
            src_sim = src[s.stem].sim
            assert src_sim is not None
            assert s.sim.read_bytes() == src_sim.read_bytes()
            assert not np.array_equal(read_image(s.real), read_image(s.sim))
        src_lines = _manifest(tiny_synth / split / "manifest.jsonl")
        out_lines = _manifest(heldout / split / "manifest.jsonl")
        assert [r.keys() for r in out_lines] == [r.keys() for r in src_lines]
        assert [r["action"] for r in out_lines] == [r["action"] for r in src_lines]


def test_build_train_frames_are_disjoint(heldout: Path, tiny_synth: Path) -> None:
    src = [p.name for p in list_images(tiny_synth / "sim")]
    half = len(src) // 2
    real = _manifest(heldout / "real" / "manifest.jsonl")
    sim = _manifest(heldout / "sim" / "manifest.jsonl")
    assert [r["source"] for r in real] == [f"sim/{n}" for n in src[:half]]
    assert [r["source"] for r in sim] == [f"sim/{n}" for n in src[half:]]
    real_stems = {p.stem for p in list_images(heldout / "real")}
    sim_stems = {p.stem for p in list_images(heldout / "sim")}
    assert len(real_stems) == half and len(sim_stems) == len(src) - half
    assert not real_stems & sim_stems
    for n in src[half:]:
        assert (heldout / "sim" / n).read_bytes() == (tiny_synth / "sim" / n).read_bytes()
    # the real training frames are exactly the look applied with their source index
    first = read_image(tiny_synth / "sim" / src[0])[None]
    np.testing.assert_array_equal(read_image(heldout / "real" / f"{Path(src[0]).stem}.png"),
                                  apply_look(first, "cool_led", 3)[0])


def test_second_build_is_reused_and_changed_look_rebuilds(
        heldout: Path, tiny_synth: Path, tmp_path: Path) -> None:
    marker = heldout / "test" / "manifest.jsonl"
    before = (marker.stat().st_mtime_ns, (heldout / "look.json").stat().st_mtime_ns)
    assert build_heldout_dataset(tiny_synth, heldout, "cool_led", seed=3) == heldout
    assert (marker.stat().st_mtime_ns, (heldout / "look.json").stat().st_mtime_ns) == before

    out = tmp_path / "h"
    build_heldout_dataset(tiny_synth, out, "overcast_phone", n_train_real=2)
    assert len(list_images(out / "real")) == 2
    build_heldout_dataset(tiny_synth, out, "sodium_dusk", n_train_real=2)
    assert json.loads((out / "look.json").read_text())["look"] == "sodium_dusk"
    assert not list(tmp_path.glob(".h.partial-*"))
    with pytest.raises(ValueError, match="n_train_real"):
        build_heldout_dataset(tiny_synth, tmp_path / "x", "cool_led", n_train_real=99)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        build_heldout_dataset(tiny_synth, tmp_path / "other", "cool_led")


def test_cli_build_and_contact_sheet(tiny_synth: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "sheet.png"
    rc = main(["--src", str(tiny_synth), "--out", str(tmp_path / "o"), "--look", "sodium_dusk",
               "--seed", "1", "--contact-sheet", str(sheet)])
    assert rc == 0
    assert (tmp_path / "o" / "look.json").is_file()
    img = read_image(sheet)
    assert img.shape[1] > (2 + len(LOOKS)) * 48  # sim | src real | every look
    assert main(["--src", str(tiny_synth)]) == 2
    assert main(["--src", str(tiny_synth), "--out", str(tmp_path / "p")]) == 2
    assert "needs --look" in capsys.readouterr().err
