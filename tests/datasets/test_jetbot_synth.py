"""Tests for datasets.jetbot_synth: world sampling, expert, renderer, dataset writer and CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
from datasets.jetbot_synth.render import Renderer, jpeg_roundtrip
from datasets.jetbot_synth.world import (
    SceneState,
    WorldConfig,
    expert_action,
    expert_actions,
    kong_in_view,
    make_rig,
    sample_states,
    turn_direction,
)
from translate.camera import CameraCorrection, load_camera_yaml
from translate.imageio import read_image, write_image

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(size=32, seed=3, n_real=3, n_sim=2, n_val=2, n_test=3, progress=False)


@pytest.fixture(scope="module")
def cfg32() -> WorldConfig:
    return WorldConfig(size=32)


@pytest.fixture(scope="module")
def renderer32(cfg32: WorldConfig) -> Renderer:
    return Renderer(cfg32)


# ---------------------------------------------------------------------------- world


def test_sample_states_deterministic_prefix_and_json(cfg32: WorldConfig) -> None:
    a = sample_states(20, 7, cfg32)
    assert a == sample_states(20, 7, cfg32)
    assert a[:5] == sample_states(5, 7, cfg32)
    assert a != sample_states(20, 8, cfg32)
    for s in a:
        assert SceneState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert WorldConfig.from_dict(json.loads(json.dumps(cfg32.to_dict()))) == cfg32
    with pytest.raises(ValueError, match="unknown key"):
        WorldConfig.from_dict({**cfg32.to_dict(), "bogus": 1})


def test_states_cover_in_and_out_of_view_and_keep_line_of_sight() -> None:
    cfg = WorldConfig()
    states = sample_states(400, 0, cfg)
    in_view = np.array([kong_in_view(s, cfg) for s in states])
    assert 0.15 < 1 - in_view.mean() < 0.35
    d = np.array([s.kong_distance for s in states])
    assert d.min() >= 0.2 and d.max() <= 2.5
    half = cfg.sim_hfov_deg / 2
    bearings = np.array([s.kong_bearing_deg for s in states])
    assert np.all(np.abs(bearings[in_view]) < half)
    assert np.all(np.abs(bearings[~in_view]) > half)
    for s in states:
        kx, ky = s.kong_xy
        for o in s.distractors:
            # distance from the distractor to the camera->Kong segment in the floor plane
            t = np.clip((o.x * kx + o.y * ky) / (kx * kx + ky * ky), 0.0, 1.0)
            assert math.hypot(o.x - t * kx, o.y - t * ky) > o.radius


# ---------------------------------------------------------------------------- expert


def _state_at(bearing: float, distance: float, cfg: WorldConfig) -> SceneState:
    base = sample_states(1, 0, cfg)[0]
    return dataclasses.replace(base, kong_bearing_deg=bearing, kong_distance=distance)


def test_expert_turns_towards_the_kong_and_searches_out_of_view() -> None:
    cfg = WorldConfig()
    left = expert_action(_state_at(20.0, 1.0, cfg), cfg)
    right = expert_action(_state_at(-20.0, 1.0, cfg), cfg)
    assert left.dtype == np.float32 and left.shape == (2,)
    assert left[1] > left[0]  # Kong to the left: right wheel faster
    assert right[0] > right[1]
    assert turn_direction(left) == -1 and turn_direction(right) == 1
    straight = expert_action(_state_at(0.0, 2.0, cfg), cfg)
    assert turn_direction(straight) == 0 and straight[0] > 0.3
    close = expert_action(_state_at(0.0, 0.22, cfg), cfg)
    np.testing.assert_allclose(close, 0.0, atol=1e-6)  # arrived: stop
    for b in (60.0, -60.0, 170.0, -120.0):
        s = _state_at(b, 1.0, cfg)
        assert not kong_in_view(s, cfg)
        np.testing.assert_array_equal(expert_action(s, cfg),
                                      np.asarray(cfg.search_action, np.float32))
    acts = expert_actions(sample_states(300, 1, cfg), cfg)
    assert acts.shape == (300, 2) and acts.min() >= -1 and acts.max() <= 1
    np.testing.assert_array_equal(turn_direction(np.array([[0.5, 0.49], [0.0, 1.0]])), [0, -1])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        turn_direction(np.zeros(3))


# ---------------------------------------------------------------------------- renderer


def test_render_shapes_and_determinism(renderer32: Renderer, cfg32: WorldConfig) -> None:
    states = sample_states(5, 2, cfg32)
    sim = renderer32.render(states, "sim")
    assert sim.shape == (5, 32, 32, 3) and sim.dtype == np.uint8
    np.testing.assert_array_equal(sim, renderer32.render(states, "sim", seed=99))
    real = renderer32.render(states, "real", seed=1)
    np.testing.assert_array_equal(real, renderer32.render(states, "real", seed=1))
    assert not np.array_equal(real, renderer32.render(states, "real", seed=2))
    # Rendering in pieces equals rendering at once (noise follows the global index).
    parts = np.concatenate([renderer32.render(states[:2], "real", seed=1),
                            renderer32.render(states[2:], "real", seed=1, index_offset=2)])
    np.testing.assert_array_equal(parts, real)
    assert not np.array_equal(sim, real)
    with pytest.raises(ValueError, match="domain"):
        renderer32.render(states, "rgb")


def test_render_odd_size() -> None:
    cfg = WorldConfig(size=20)
    states = sample_states(2, 0, cfg)
    r = Renderer(cfg)
    for d in ("sim", "real"):
        assert r.render(states, d).shape == (2, 20, 20, 3)


def test_jpeg_flag_matches_saved_frames(renderer32: Renderer, cfg32: WorldConfig,
                                        tmp_path: Path) -> None:
    states = sample_states(2, 4, cfg32)
    raw = renderer32.render(states, "real", seed=5)
    mem = renderer32.render(states, "real", seed=5, jpeg=True)
    np.testing.assert_array_equal(mem, jpeg_roundtrip(raw, cfg32.real.jpeg_quality))
    write_image(tmp_path / "a.jpg", raw[0], quality=cfg32.real.jpeg_quality)
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg"), mem[0])


def _kong_centroid(frame: np.ndarray) -> tuple[float, float] | None:
    f = frame.astype(np.int32)
    mask = (f[..., 0] > 60) & (f[..., 0] > 2 * f[..., 1]) & (f[..., 0] > 2 * f[..., 2])
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def test_kong_lines_up_in_sim_and_corrected_real() -> None:
    # Neutral colours and no distractors, so a colour threshold finds exactly the Kong.
    neutral = dataclasses.replace(WorldConfig().real, wb_gains=(1.0, 1.0, 1.0), saturation=1.0,
                                  shot_noise=0.0, read_noise=0.0, blur_sigma=0.0,
                                  texture_strength=0.0, floor_types=("carpet",))
    cfg = WorldConfig(size=64, n_distractors_range=(0, 0), out_of_view_fraction=0.0, real=neutral)
    states = [s for s in sample_states(40, 5, cfg) if 0.35 < s.kong_distance < 1.0][:4]
    assert states
    r = Renderer(cfg)
    sim = r.render(states, "sim")
    corrected = CameraCorrection(r.rig.real, r.rig.sim).apply(r.render(states, "real"))
    for a, b in zip(sim, corrected, strict=True):
        ca, cb = _kong_centroid(a), _kong_centroid(b)
        assert ca is not None and cb is not None
        assert math.dist(ca, cb) < 1.5, (ca, cb)


LENS_ONLY: dict[str, Any] = dict(material_mix=0.0, light_mix=0.0, texture_strength=0.0, specular=0.0,
                 ambient_occlusion=0.0, shadow_softness=0.0, auto_exposure=False,
                 wb_gains=(1.0, 1.0, 1.0), saturation=1.0, vignetting=0.0, blur_sigma=0.0,
                 shot_noise=0.0, read_noise=0.0, black_level=0.0)


def test_lens_only_real_is_the_sim_scene_through_the_fisheye() -> None:
    # With every RealStyle knob off, the corrected real frame must equal the sim frame up to
    # resampling: the gap is then the lens alone, and the geometry pairs exactly.
    cfg = WorldConfig(size=64, real=dataclasses.replace(WorldConfig().real, **LENS_ONLY))
    states = sample_states(4, 0, cfg)
    r = Renderer(cfg)
    sim = r.render(states, "sim").astype(np.float32)
    corr = CameraCorrection(r.rig.real, r.rig.sim)
    real = r.render(states, "real")
    diff = np.abs(sim - corr.apply(real).astype(np.float32))[:, corr.valid]
    assert diff.mean() < 3.0 and np.median(diff) <= 1.0
    # ... while the raw fisheye frame does not line up with the sim frame.
    assert np.abs(sim - real.astype(np.float32)).mean() > 4 * diff.mean()


def test_out_of_view_kong_absent_from_sim() -> None:
    cfg = WorldConfig(size=48, n_distractors_range=(0, 0), out_of_view_fraction=1.0)
    states = sample_states(4, 6, cfg)
    for frame in Renderer(cfg).render(states, "sim"):
        assert _kong_centroid(frame) is None


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


# ---------------------------------------------------------------------------- dataset writer


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


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


def test_cli_writes_and_reuses(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "datasets.jetbot_synth", "--out", str(out), "--size", "32",
           "--n-real", "2", "--n-sim", "2", "--n-val", "1", "--n-test", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout
    assert json.loads((out / "dataset.json").read_text())["counts"]["test"] == 2
    bad = subprocess.run([*cmd[:5], "--n-real", "-1"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "n_real" in bad.stderr


def test_frame_ids_key_the_sensor_noise_per_frame() -> None:
    cfg = WorldConfig(size=32)
    r = Renderer(cfg)
    states = sample_states(3, 0, cfg)
    whole = r.render(states, "real", 5, index_offset=10)
    # frame i of a batch with frame_ids [.., 10 + i, ..] is the same frame, whatever its batch
    picked = r.render([states[2], states[0]], "real", 5, frame_ids=[12, 10])
    assert np.array_equal(picked[0], whole[2]) and np.array_equal(picked[1], whole[0])
    other = r.render([states[0]], "real", 5, frame_ids=[11])
    assert not np.array_equal(other[0], whole[0])  # same scene, other noise
    with pytest.raises(ValueError, match="frame_ids has 1 entries for 3 states"):
        r.render(states, "real", 5, frame_ids=[0])
