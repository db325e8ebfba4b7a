"""Tests for datasets.jetbot_synth.generate: rendered arrays, contact sheet and the dataset writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.jetbot_synth import generate as gen
from datasets.jetbot_synth.generate import (
    DatasetExistsError,
    ensure_dataset,
    generate_dataset,
    make_contact_sheet,
    render_arrays,
)
from datasets.jetbot_synth.render import Renderer
from datasets.jetbot_synth.world import (
    SceneState,
    WorldConfig,
    expert_action,
    expert_actions,
    make_rig,
)
from translate.camera import load_camera_yaml
from translate.imageio import read_image

SMALL = dict(size=32, seed=3, n_real=3, n_sim=2, n_val=2, n_test=3, progress=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_render_arrays_pairs_and_actions() -> None:
    frames, actions, states = render_arrays(3, seed=1, domains=("sim", "real"), size=32)
    assert isinstance(frames, dict) and set(frames) == {"sim", "real"}
    assert frames["sim"].shape == frames["real"].shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(actions, expert_actions(states, WorldConfig(size=32)))
    sim_only, actions2, states2 = render_arrays(3, seed=1, domains="sim", size=32)
    assert isinstance(sim_only, np.ndarray)
    np.testing.assert_array_equal(sim_only, frames["sim"])
    assert states2 == states and np.array_equal(actions2, actions)
    with pytest.raises(ValueError, match="domains"):
        render_arrays(1, seed=0, domains="depth", size=32)


def test_contact_sheet(tmp_path: Path) -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    out = make_contact_sheet([(a, a), (a, a + 50)], tmp_path / "s.png", labels=["x", "y"],
                             min_cell=64)
    img = read_image(out)
    assert img.shape[1] == 2 * (64 + 4) + 4
    with pytest.raises(ValueError, match="uint8"):
        make_contact_sheet([(a, np.zeros((8, 8, 3), np.uint8))], tmp_path / "t.png")


def test_generate_dataset_layout(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", **SMALL)  # type: ignore[arg-type]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["name"] == "jetbot_synth" and meta["format_version"] == 1
    assert meta["counts"] == {"real": 3, "sim": 2, "val": 2, "test": 3}
    assert meta["size"] == 32 and meta["seed"] == 3 and meta["world"]["size"] == 32
    rig = load_camera_yaml(root / "camera.yaml")
    assert rig == make_rig(WorldConfig(size=32))
    assert rig.real.model == "fisheye" and rig.sim.model == "pinhole"
    real = _lines(root / "real" / "manifest.jsonl")
    sim = _lines(root / "sim" / "manifest.jsonl")
    assert [x["file"] for x in real] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert [x["file"] for x in sim] == ["000000.png", "000001.png"]
    assert sorted(p.name for p in (root / "real").glob("*.jpg")) == [x["file"] for x in real]
    assert read_image(root / "sim" / "000000.png").shape == (32, 32, 3)
    # Unpaired splits come from different state streams.
    assert real[0]["state"] != sim[0]["state"]
    cfg = WorldConfig(size=32)
    for split, n in (("val", 2), ("test", 3)):
        rows = _lines(root / split / "manifest.jsonl")
        assert len(rows) == n
        for row in rows:
            assert set(row) >= {"stem", "real", "sim", "action", "state"}
            assert (root / split / row["real"]).is_file() and (root / split / row["sim"]).is_file()
            st = SceneState.from_dict(row["state"])
            np.testing.assert_array_equal(np.float32(row["action"]), expert_action(st, cfg))
    # A paired test frame is exactly the renderer's output for its state.
    row = _lines(root / "test" / "manifest.jsonl")[0]
    st = SceneState.from_dict(row["state"])
    np.testing.assert_array_equal(read_image(root / "test" / row["sim"]),
                                  Renderer(cfg).render([st], "sim")[0])
    assert (root / "contact_sheet.png").is_file()
    assert not list(tmp_path.glob(".ds.partial-*"))


def test_killed_generation_never_looks_complete(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_write = gen._write_split

    def dying(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while writing the third split
        return real_write(*args, **kwargs)

    monkeypatch.setattr(gen, "_write_split", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "ds", **SMALL)  # type: ignore[arg-type]
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.glob(".ds.partial-*"))
    # A temporary folder left by a hard kill (its process gone) is cleaned on the next run.
    stale = tmp_path / ".ds.partial-999999999-deadbeef"
    (stale / "real").mkdir(parents=True)
    monkeypatch.setattr(gen, "_write_split", real_write)
    ensure_dataset(tmp_path / "ds", **SMALL)  # type: ignore[arg-type]
    assert not stale.exists() and (tmp_path / "ds" / "dataset.json").is_file()


def test_ensure_dataset_reuses_and_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    small = {**SMALL, "n_real": 1, "n_sim": 1, "n_val": 1, "n_test": 1}
    ensure_dataset(root, **small)  # type: ignore[arg-type]
    stamp = (root / "dataset.json").stat().st_mtime_ns
    marker = root / "real" / "000000.jpg"
    before = marker.read_bytes()
    ensure_dataset(root, **small)  # type: ignore[arg-type]
    assert (root / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    ensure_dataset(root, **{**small, "seed": 4})  # type: ignore[arg-type]
    assert json.loads((root / "dataset.json").read_text())["seed"] == 4
    assert marker.read_bytes() != before
    # A folder that is not ours is never overwritten.
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DatasetExistsError, match="refusing"):
        ensure_dataset(foreign, **small)  # type: ignore[arg-type]
    assert (foreign / "holiday.jpg").read_bytes() == b"x"
