"""Tests for translate.pipeline: the robot loop on the synthetic world, sinks, signals, latency."""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from datasets.jetbot_synth import WorldConfig, make_rig
from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx
from datasets.jetbot_synth.source import SynthSource
from models.networks import ResnetGenerator
from translate.camera import CameraCorrection
from translate.export import export_generator
from translate.fusion import fuse_translator_and_policy
from translate.pipeline import (
    JetbotSink,
    JsonlSink,
    LatencyStats,
    NullSink,
    main,
    make_sink,
    run_loop,
)
from translate.policy import load_policy
from translate.runtime import FusedPolicy, Translator
from translate.sources import CameraReadError, FrameSource

SIZE = 40  # the rl_games network needs >= 36


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny translator with the synthetic world's fisheye correction, and a tiny policy."""
    root = tmp_path_factory.mktemp("loop_models")
    torch.manual_seed(0)
    corr = CameraCorrection.from_rig(make_rig(WorldConfig(size=SIZE)))
    info = export_generator(ResnetGenerator(ngf=8, n_blocks=2).eval(), root / "export",
                            camera=corr)
    policy = export_rl_games_onnx(RlGamesJetbotNet(SIZE), root / "policy" / "policy.onnx",
                                  height=SIZE, width=SIZE)
    return {"robot": Path(info["robot_onnx"]), "core": Path(info["onnx"]), "policy": policy}


def test_loop_on_synth_prints_latency_table(models: dict[str, Path], tmp_path: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "actions.jsonl"
    res = run_loop(
        SynthSource(SIZE, SIZE, seed=2, frames=6, chunk=3),
        translator=Translator.from_onnx(models["robot"]),
        policy=load_policy(models["policy"]),
        sink=JsonlSink(log), stats_every=3, out=lines.append, keep_actions=True,
    )
    assert res.frames == 6 and res.status == "complete" and len(res.actions) == 6
    text = "\n".join(lines)
    assert "latency after 3 frames" in text and "latency over 6 frames (complete" in text
    for stage in ("capture", "correct", "translate", "policy", "sink", "total", "p50 ms", "p95 ms",
                  "mean ms"):
        assert stage in lines[-1]
    summary = res.stats.summary()
    assert summary["total"]["n"] == 6 and summary["total"]["p95_ms"] >= summary["total"]["p50_ms"]
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(records) == 6 and records[5]["index"] == 5
    assert len(records[0]["reference_action"]) == 2 and len(records[0]["mu"]) == 2
    assert set(records[0]["latency_ms"]) >= {"capture", "translate", "policy", "total"}
    np.testing.assert_allclose(records[3]["action"], res.actions[3], atol=1e-6)


def test_cli_on_synth(models: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a.jsonl"
    code = main(["--plugin", "datasets.jetbot_synth.source", "--source", "synth:3",
                 "--translator", str(models["core"]), "--policy", str(models["policy"]),
                 "--frames", "4", "--sink", f"jsonl:{log}", "--sink", "print",
                 "--print-every", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "latency over 4 frames" in out and "translate" in out
    assert "frame      2  action" in out and "(reference" in out
    assert len(log.read_text().splitlines()) == 4
    assert main(["--source", "synth", "--frames", "1"]) == 2  # no policy
    # the baseline: policy on raw frames, no translator
    assert main(["--plugin", "datasets.jetbot_synth.source", "--source", "synth",
                 "--translator", "none", "--policy", str(models["policy"]), "--frames", "2",
                 "--sink", "none"]) == 0
    assert "translate" not in capsys.readouterr().out.split("latency over")[-1]


def test_fused_loop_gives_the_same_actions(models: dict[str, Path], tmp_path: Path) -> None:
    fused_path = fuse_translator_and_policy(models["robot"], models["policy"], None,
                                            tmp_path / "fused.onnx")
    a = run_loop(SynthSource(SIZE, SIZE, seed=4, frames=3), fused=FusedPolicy.from_onnx(fused_path),
                 keep_actions=True, out=lambda s: None)
    b = run_loop(SynthSource(SIZE, SIZE, seed=4, frames=3),
                 translator=Translator.from_onnx(models["robot"]),
                 policy=load_policy(models["policy"]), keep_actions=True, out=lambda s: None)
    np.testing.assert_allclose(np.stack(a.actions), np.stack(b.actions), atol=1e-4)
    assert "fused" in a.stats.summary() and "translate" not in a.stats.summary()


class FakeRobot:
    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []
        self.stopped = 0

    def set_motors(self, left: float, right: float) -> None:
        self.calls.append((left, right))

    def stop(self) -> None:
        self.stopped += 1


class Scripted(FrameSource):
    """Frames of the synthetic world, with a hook per read (index)."""

    kind = "scripted"
    live = True

    def __init__(self, n: int, hook: Any = None) -> None:
        super().__init__(SIZE, SIZE)
        self.inner = SynthSource(SIZE, SIZE, frames=n)
        self.hook = hook
        self.reads = 0

    def _read(self) -> Any:
        self.reads += 1
        if self.hook is not None:
            self.hook(self.reads)
        f = self.inner.read()
        return None if f is None else (f.image, None, f.action, None)


def test_jetbot_sink_scales_and_always_stops(models: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    robot = FakeRobot()
    fake = types.ModuleType("jetbot")
    fake.Robot = lambda: robot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jetbot", fake)
    sink = make_sink("jetbot", max_speed=0.3)
    assert isinstance(sink, JetbotSink) and sink.robot is robot
    assert sink.motor_values(np.array([1.5, -0.5])) == pytest.approx((0.3, -0.15))

    def boom(i: int) -> None:
        if i == 3:
            raise RuntimeError("driver crashed")

    with pytest.raises(RuntimeError, match="driver crashed"):
        run_loop(Scripted(5, boom), translator=Translator.from_onnx(models["robot"]),
                 policy=load_policy(models["policy"]), sink=sink, out=lambda s: None)
    assert len(robot.calls) == 2 and robot.stopped == 1
    assert all(abs(v) <= 0.3 for call in robot.calls for v in call)


def test_sigusr1_prints_the_table_and_camera_lost_stops(models: dict[str, Path]) -> None:
    lines: list[str] = []
    robot = FakeRobot()

    def hook(i: int) -> None:
        if i == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        if i >= 4:
            raise CameraReadError("unplugged")

    res = run_loop(Scripted(10, hook), translator=Translator.from_onnx(models["robot"]),
                   policy=load_policy(models["policy"]), sink=JetbotSink(robot=robot),
                   out=lines.append, reconnect_tries=2, reconnect_backoff_s=0.01)
    assert any(line.startswith("latency after 2 frames") for line in lines)
    assert res.status == "camera_lost" and res.frames == 3
    assert any("camera lost" in line for line in lines) and robot.stopped >= 1
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGUSR1))


def test_latency_stats_and_sinks(tmp_path: Path) -> None:
    s = LatencyStats()
    for ms in range(1, 101):
        s.add("capture", ms / 1000)
        s.add("total", 2 * ms / 1000)
    summ = s.summary()
    assert summ["capture"]["p50_ms"] == pytest.approx(50.5)
    assert summ["total"]["p95_ms"] == pytest.approx(190.1)
    assert list(summ) == ["capture", "total"]
    assert "frames/s at the p50 total" in s.table()
    assert isinstance(make_sink("none"), NullSink)
    with pytest.raises(ValueError, match="jsonl:"):
        make_sink("jsonl")
    with pytest.raises(ValueError, match="unknown action sink"):
        make_sink("ros")
    with pytest.raises(ValueError, match="needs a policy"):
        run_loop(SynthSource(SIZE, SIZE, frames=1))


def test_cli_unknown_source_and_wrong_frame_size_are_one_line(models: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pol = ["--policy", str(models["policy"]), "--frames", "1", "--sink", "none"]
    assert main(["--source", "bogus:1", "--translator", "none", *pol]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m translate.pipeline: error: unknown frame source 'bogus' in 'bogus:1'; "
                          "known: csi, folder, session") and len(err.splitlines()) == 1
    cam = make_rig(WorldConfig(size=SIZE)).save(tmp_path / "camera.yaml")
    assert main(["--plugin", "datasets.jetbot_synth.source", "--source", "synth", "--translator", "none",
                 "--camera", str(cam), "--width", str(SIZE + 8), "--height", str(SIZE + 8), *pol]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"is {SIZE}x{SIZE}" in err and "--width" in err
    assert "error: error" not in err
