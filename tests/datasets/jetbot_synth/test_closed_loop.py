"""Closed-loop evaluation core: stages, seeded repeatable runs, the oracle, the summary, sessions."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from datasets.jetbot_synth.closed_loop import (
    STAGE_KINDS,
    ClosedLoopSettings,
    StageRun,
    build_stages,
    run_closed_loop,
    session_temporal,
    summarise,
)
from datasets.jetbot_synth.drive import DriveConfig, start_states
from datasets.jetbot_synth.world import WorldConfig, make_rig
from translate.camera import CameraCorrection
from translate.policy import load_policy
from translate.recording import RecordingSession, SessionWriter

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO / "data" / "jetbot_synth_128px_seed0"
QUIET = ClosedLoopSettings(progress=False, bootstrap_n=100)


class _Identity:
    """A translator stub: returns its input (so its flicker equals its input's change)."""

    name = "stub"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return frames.copy()


def _tiny_world(root: Path) -> WorldConfig:
    return WorldConfig.from_dict(json.loads((root / "dataset.json").read_text())["world"])


def test_build_stages_orders_rows_and_rejects_unknown_kinds() -> None:
    cam = CameraCorrection.from_rig(make_rig(WorldConfig(size=32)))
    rows = build_stages(["sim", "translated", "raw", "corrected", "expert"], [_Identity()], cam)
    assert [r.name for r in rows] == ["expert", "raw", "corrected", "translated:stub", "sim"]
    assert [r.name for r in build_stages(STAGE_KINDS, [], None)] == ["expert", "raw", "sim"]
    with pytest.raises(ValueError, match=r"closed_loop.stages: unknown stage\(s\) \['oracle'\]"):
        build_stages(["oracle"], [], None)


def test_seeded_episodes_repeat_exactly(tiny_synth: Path) -> None:
    world = _tiny_world(tiny_synth)
    policy = load_policy(tiny_synth / "policy" / "policy.onnx")
    cam = CameraCorrection.from_rig(make_rig(world))
    drive = dataclasses.replace(DriveConfig(), max_steps=6)
    stages = build_stages(["raw", "corrected", "translated", "sim"], [_Identity()], cam)
    starts = start_states(3, 1, world, drive)
    settings = dataclasses.replace(QUIET, gif_episode=1)
    a = run_closed_loop(stages, policy, starts, world, drive, camera=cam, settings=settings)
    b = run_closed_loop(stages, policy, starts, world, drive, camera=cam, settings=settings)
    for ra, rb in zip(a.runs, b.runs, strict=True):
        assert np.array_equal(ra.log.poses, rb.log.poses, equal_nan=True)
        assert np.array_equal(ra.log.actions, rb.log.actions, equal_nan=True)
        assert ra.log.outcome == rb.log.outcome
        assert len(ra.gif) == ra.log.steps[1] and ra.gif[0][1].shape == (48, 48, 3)
    strip = lambda m: [{k: v for k, v in s.items() if k not in ("seconds", "timing")}  # noqa: E731
                       for s in m["stages"]]
    assert strip(a.metrics) == strip(b.metrics)
    by = {s["name"]: s for s in a.metrics["stages"]}
    # the identity translator sees lens-corrected frames and passes them on unchanged
    assert by["translated:stub"]["flicker"] == pytest.approx(1.0)
    assert by["translated:stub"]["frame_change"] == pytest.approx(by["corrected"]["frame_change"])
    assert by["raw"]["flicker"] is None and by["raw"]["action_jitter"] is not None


def test_chunks_on_parallel_workers_act_as_one_batch(tiny_synth: Path) -> None:
    world = _tiny_world(tiny_synth)
    policy = load_policy(tiny_synth / "policy" / "policy.onnx")
    drive = dataclasses.replace(DriveConfig(), max_steps=3)
    starts = start_states(5, 2, world, drive)
    acts = []
    for chunks, workers in ((1, 1), (3, 1), (3, 2)):
        s = dataclasses.replace(QUIET, pipeline_chunks=chunks, workers=workers)
        res = run_closed_loop(build_stages(["raw"], [], None), policy, starts, world, drive,
                              settings=s)
        acts.append(res.runs[0].log.actions)
        assert res.runs[0].timing["render"] > 0 and res.runs[0].timing["policy"] > 0
    np.testing.assert_allclose(acts[0], acts[1], atol=1e-5)
    np.testing.assert_allclose(acts[0], acts[2], atol=1e-5)


@pytest.mark.slow  # on a fresh clone it generates the 128 px dataset and trains its policy (~3 min)
def test_the_oracle_succeeds_where_the_expert_does() -> None:
    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.reference_policy import ensure_policy

    ensure_policy(ensure_dataset(REFERENCE, progress=False), progress=False)
    world = _tiny_world(REFERENCE)
    policy = load_policy(REFERENCE / "policy" / "policy.onnx")
    drive = DriveConfig()
    starts = start_states(6, 0, world, drive)  # one episode per start category
    res = run_closed_loop(build_stages(["expert", "sim"], [], None), policy, starts, world, drive,
                          settings=QUIET)
    expert, sim = (r.log.success for r in res.runs)
    assert expert.all()
    assert sim[expert].all(), [r.log.outcome for r in res.runs]


def test_summary_gap_closed_wilson_and_jitter(fake_run: Callable[..., StageRun]) -> None:
    world = WorldConfig(size=32)
    starts = start_states(10, 0, world)
    runs = [fake_run("raw", "raw", 2), fake_run("translated:x", "translated", 5),
            fake_run("sim", "sim", 8)]
    m = summarise(runs, starts, QUIET)
    raw, tr, sim = m["stages"]
    assert tr["gap_closed"]["value"] == pytest.approx(0.5)
    lo, hi = tr["gap_closed"]["ci"]
    assert lo < 0.5 < hi
    assert raw["success"]["value"] == 0.2 and 0 < raw["success"]["ci"][0] < 0.2
    assert tr["action_jitter"] == pytest.approx(0.075)  # (0.2 + 0.4) / (4 pairs × 2 wheels)
    assert tr["flicker"] == pytest.approx(2.0) and tr["frame_change"] == pytest.approx(2.0)
    assert tr["time_to_success_s"] == pytest.approx(0.5)
    assert sim["gap_closed"]["value"] is None and sum(m["categories"].values()) == 10
    assert set(tr["by_category"]) == {s.category for s in starts}


def test_session_temporal(tmp_path: Path, tiny_synth: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    with SessionWriter(tmp_path / "s", source="test", width=48, height=48, fmt="png") as w:
        for i in range(5):
            w.write(np.roll(base, i, axis=1))
    policy = load_policy(tiny_synth / "policy" / "policy.onnx")
    cam = CameraCorrection.from_rig(make_rig(_tiny_world(tiny_synth)))
    stages = build_stages(["raw", "corrected", "translated", "sim"], [_Identity()], cam)
    out = session_temporal(RecordingSession(tmp_path / "s"), stages, policy, cam)
    assert [o["name"] for o in out] == ["raw", "corrected", "translated:stub"]
    assert out[0]["flicker"] is None and out[2]["flicker"] == pytest.approx(1.0)
    assert all(o["frames"] == 5 and o["action_jitter"] >= 0 for o in out)
    with pytest.raises(ValueError, match=">= 2 frames"):
        session_temporal(RecordingSession(tmp_path / "s"), stages, policy, cam, max_frames=1)
