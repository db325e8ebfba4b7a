"""Tests for datasets.jetbot_synth.render: the renderer's shapes, determinism, lens and noise."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datasets.jetbot_synth.render import Renderer, jpeg_roundtrip
from datasets.jetbot_synth.world import (
    WorldConfig,
    sample_states,
)
from translate.camera import CameraCorrection
from translate.imageio import read_image, write_image


@pytest.fixture(scope="module")
def cfg32() -> WorldConfig:
    return WorldConfig(size=32)


@pytest.fixture(scope="module")
def renderer32(cfg32: WorldConfig) -> Renderer:
    return Renderer(cfg32)


def _kong_centroid(frame: np.ndarray) -> tuple[float, float] | None:
    f = frame.astype(np.int32)
    mask = (f[..., 0] > 60) & (f[..., 0] > 2 * f[..., 1]) & (f[..., 0] > 2 * f[..., 2])
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


LENS_ONLY: dict[str, Any] = dict(material_mix=0.0, light_mix=0.0, texture_strength=0.0, specular=0.0,
                 ambient_occlusion=0.0, shadow_softness=0.0, auto_exposure=False,
                 wb_gains=(1.0, 1.0, 1.0), saturation=1.0, vignetting=0.0, blur_sigma=0.0,
                 shot_noise=0.0, read_noise=0.0, black_level=0.0)


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
