"""Tests for bench/camera_gap.py: the policy on real and randomised frames against the sim frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import camera_gap  # noqa: E402


def test_agreement_uses_the_reports_definitions() -> None:
    sim = np.array([[0.5, 0.1], [0.1, 0.5], [0.3, 0.3]], np.float32)
    same = camera_gap.agreement(sim, sim)
    assert same == {"turn_agreement": 1.0, "action_mae": 0.0}
    swapped = camera_gap.agreement(sim[:, ::-1].copy(), sim)
    assert swapped["turn_agreement"] == pytest.approx(1 / 3)  # the straight frame still agrees
    assert swapped["action_mae"] == pytest.approx((0.4 + 0.4 + 0.0) / 3)


def test_randomized_is_seeded_per_draw_and_keeps_shape() -> None:
    rng = np.random.default_rng(0)
    sim = np.repeat(np.repeat(rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8), 4, 1), 4, 2)
    a = camera_gap.randomized(sim, surfaces=0.6, draw=0)
    np.testing.assert_array_equal(a, camera_gap.randomized(sim, surfaces=0.6, draw=0))
    assert a.shape == sim.shape and a.dtype == np.uint8
    assert not np.array_equal(a, camera_gap.randomized(sim, surfaces=0.6, draw=1))
    assert not np.array_equal(a, camera_gap.randomized(sim, surfaces=0.6, draw=0, objects=1.0))


def test_camera_gap_end_to_end_on_a_paired_folder(tmp_path: Path, tiny_synth: Path) -> None:
    out = tmp_path / "gap.json"
    assert camera_gap.main(["--data", str(tiny_synth / "val"), "--policy", str(tiny_synth / "policy" / "policy.onnx"),
                            "--surfaces", "0", "1", "--draws", "2", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["n_frames"] == 8
    inputs = [r["input"] for r in rec["rows"]]
    assert inputs[:2] == ["real (raw)", "real (lens-corrected)"] and len(inputs) == 4
    for r in rec["rows"]:
        assert 0.0 <= r["turn_agreement"] <= 1.0 and r["action_mae"] >= 0.0
    assert [len(r["draws"]) for r in rec["rows"][2:]] == [2, 2]


def test_camera_gap_refuses_an_objects_value_outside_0_1(tiny_synth: Path) -> None:
    with pytest.raises(SystemExit, match="--objects a probability"):
        camera_gap.main(["--data", str(tiny_synth / "val"), "--policy", str(tiny_synth / "policy" / "policy.onnx"),
                         "--objects", "2"])


def test_camera_gap_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--data .* does not exist"):
        camera_gap.main(["--data", str(tmp_path / "nope"), "--policy", str(tmp_path / "p.onnx")])
