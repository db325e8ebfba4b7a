"""Tests for record_real.py: synth/video/folder recordings, crash safety, disk full, camera lost."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import record_real
from translate.imageio import write_image
from translate.recording import RecordingSession
from translate.sources import CameraReadError, FrameSource

REPO = Path(__file__).resolve().parents[1]


def _cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="record", overrides=["live=false", *overrides])


def _check_session(root: Path) -> RecordingSession:
    """Every listed frame exists and decodes; no temporary file is listed."""
    s = RecordingSession(root)
    for i, rec in enumerate(s.frames):
        assert not Path(rec.file).name.startswith(".")
        assert s.load_frame(i).shape[2] == 3
    return s


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for i in range(6):
        write_image(root / f"{i:03d}.png", np.full((30, 40, 3), (40 * i, 10, 200), np.uint8))
    return root


@pytest.mark.parametrize("group", ["source", "actions"])
def test_every_record_config_composes(group: str, tmp_path: Path) -> None:
    import hydra

    for p in sorted((REPO / "configs" / group).glob("*.yaml")):
        cfg = _cfg([f"{group}={p.stem}", f"out={tmp_path}"])
        target = cfg[group]["_target_"]
        assert hydra.utils.get_class(target) if target[0].isupper() else hydra.utils.get_object(
            target)


def test_record_synth_with_expert_actions(tmp_path: Path) -> None:
    from datasets.jetbot_synth import render_arrays

    out = tmp_path / "s"
    res = record_real.record(_cfg(["source=synth", "source.seed=5", "frames=10", "width=32",
                                   "height=32", "fps=null", f"out={out}"]))
    assert res["status"] == "complete" and res["exit_code"] == 0 and res["written"] == 10
    s = _check_session(out)
    assert len(s) == 10 and s.has_actions and s.camera_yaml is not None
    assert s.info["status"] == "complete" and s.info["source"] == "synth:5"
    frames, actions, _ = render_arrays(10, 5, "real", size=32)
    assert isinstance(frames, np.ndarray)
    np.testing.assert_allclose(s.actions(), actions, atol=1e-6)
    assert np.abs(s.load_frame(3).astype(int) - frames[3]).mean() < 4  # stored as JPEG
    assert "kong_distance" in s.frames[0].state  # type: ignore[operator]
    # resume appends after the last listed frame
    res = record_real.record(_cfg(["source=synth", "source.seed=6", "frames=3", "width=32",
                                   "height=32", "fps=null", f"out={out}", "resume=true"]))
    assert res["total"] == 13 and len(_check_session(out)) == 13


def test_record_video_file(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(8):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 2] = 200  # red in OpenCV's BGR
        bgr[..., 1] = 20 * i
        vw.write(bgr)
    vw.release()
    actions = tmp_path / "a.csv"
    actions.write_text("t,left,right\n" + "".join(f"{i * 0.05:.2f},{i / 10},{-i / 10}\n"
                                                  for i in range(8)))
    out = tmp_path / "s"
    res = record_real.record(_cfg(["source=video", f"source.path={path}", "width=32",
                                   "height=24", "fps=null", f"out={out}", "format=png",
                                   "actions=file", f"actions.path={actions}",
                                   "actions.align=time"]))
    assert res["exit_code"] == 0 and res["written"] == 8
    s = _check_session(out)
    assert s.info["source_channel_order"] == "BGR" and s.info["channel_order"] == "RGB"
    img = s.load_frame(0)
    assert img.shape == (24, 32, 3) and img[..., 0].mean() > 180 and img[..., 2].mean() < 30
    np.testing.assert_allclose(s.actions()[:, 0], np.arange(8) / 10, atol=1e-6)


def test_record_folder_every_nth_with_action_file(tmp_path: Path, folder: Path) -> None:
    acts = tmp_path / "a.jsonl"
    acts.write_text("".join(json.dumps({"action": [i, -i]}) + "\n" for i in range(6)))
    out = tmp_path / "s"
    res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "width=null",
                                   "height=null", "fps=null", "every_nth=2", f"out={out}",
                                   "actions=file", f"actions.path={acts}"]))
    assert res["written"] == 3 and res["skipped"] == 3
    s = _check_session(out)
    assert s.info["width"] == 40 and s.info["height"] == 30 and s.info["skipped_frames"] == 3
    assert s.actions()[:, 0].tolist() == [0.0, 2.0, 4.0]


def test_fps_cap_paces_a_file_source_only_when_asked(tmp_path: Path, folder: Path) -> None:
    t = time.monotonic()
    res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "fps=20", "pace_files=true",
                                   "frames=5", f"out={tmp_path / 's'}"]))
    assert res["written"] == 5 and time.monotonic() - t >= 0.19
    t = time.monotonic()
    res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "fps=2", "frames=5",
                                   f"out={tmp_path / 'fast'}"]))
    assert res["written"] == 5 and time.monotonic() - t < 2.0  # a 2 fps cap would take >= 2 s


def test_upscaling_a_small_source_warns(tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING):
        record_real.record(_cfg(["source=folder", f"source.path={folder}", "width=224", "height=224",
                                 "frames=2", f"out={tmp_path / 's'}"]))
    assert any("delivers 40x30 frames: storing them at 224x224 upscales them" in r.getMessage()
               for r in caplog.records)


def test_disk_full_stops_cleanly(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import translate.recording as recording

    real_encode = recording.encode_image
    calls = {"n": 0}

    def encode(*args: Any, **kwargs: Any) -> bytes:
        calls["n"] += 1
        if calls["n"] >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(recording, "encode_image", encode)
    out = tmp_path / "s"
    res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "fps=null",
                                   f"out={out}"]))
    assert res["status"] == "disk_full" and res["exit_code"] == 2 and res["written"] == 3
    err = capsys.readouterr().err
    assert "disk full" in err and "resume=true" in err
    s = _check_session(out)
    assert len(s) == 3 and s.info["status"] == "disk_full"


class LosingCamera(FrameSource):
    """A live camera that delivers ``good`` frames, then fails until ``recover_after`` reopens."""

    kind = "losing"
    live = True
    channel_order = "BGR"

    def __init__(self, width: int = 8, height: int = 8, good: int = 3,
                 recover_after: int | None = None, total: int = 6) -> None:
        super().__init__(width, height)
        self.good, self.recover_after, self.total = good, recover_after, total
        self.reads = self.reopens = 0

    def _read(self) -> Any:
        self.reads += 1
        lost = self.reads > self.good and (self.recover_after is None
                                           or self.reopens < self.recover_after)
        if lost:
            raise CameraReadError("losing: VIDIOC_DQBUF failed")
        if self.reads > self.total + (self.recover_after or 0):
            return None
        return np.full((8, 8, 3), self.reads, np.uint8), None, None, None

    def reconnect(self) -> None:
        self.reopens += 1
        super().reconnect()


def _losing_cfg(out: Path, **source: Any) -> DictConfig:
    cfg = _cfg(["fps=null", f"out={out}", "reconnect.tries=3", "reconnect.backoff_s=0.01"])
    with open_dict(cfg):
        cfg.source = {"_target_": f"{__name__}.LosingCamera", **source}
    return cfg


def test_camera_lost_keeps_frames_and_reconnects(tmp_path: Path) -> None:
    out = tmp_path / "lost"
    res = record_real.record(_losing_cfg(out))
    assert res["status"] == "camera_lost" and res["exit_code"] == 3 and res["written"] == 3
    assert "after 3 reconnect tries" in res["message"]
    s = _check_session(out)
    assert len(s) == 3 and s.info["status"] == "camera_lost"
    assert s.info["source_channel_order"] == "BGR"
    res = record_real.record(_losing_cfg(tmp_path / "recovers", recover_after=2))
    assert res["status"] == "complete" and res["written"] == 6


def _spawn(folder: Path, out: Path, fps: str = "40") -> subprocess.Popen[str]:
    cmd = [sys.executable, str(REPO / "record_real.py"), "source=folder",
           f"source.path={folder}", "source.loop=true", f"fps={fps}", "durable=false",
           f"out={out}", "live=false", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_frames(out: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"recorder exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("recorder wrote no frames in time")


def test_sigterm_closes_cleanly(tmp_path: Path, folder: Path) -> None:
    out = tmp_path / "term"
    proc = _spawn(folder, out)
    _wait_for_frames(out, 5, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "interrupted: stopped by SIGTERM" in stdout
    s = _check_session(out)
    assert len(s) >= 5 and s.info["status"] == "interrupted" and s.info["frames"] == len(s)


def test_sigkill_leaves_only_complete_frames(tmp_path: Path, folder: Path) -> None:
    out = tmp_path / "kill"
    proc = _spawn(folder, out, fps="null")  # writing all the time: the kill lands mid-frame
    _wait_for_frames(out, 8, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    s = _check_session(out)
    n = len(s)
    assert n >= 8 and s.info["status"] == "recording"  # never closed
    res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "source.loop=true",
                                   "fps=null", "frames=2", f"out={out}", "resume=true"]))
    assert res["total"] == n + 2
    s = _check_session(out)
    assert len(s) == n + 2 and s.info["status"] == "complete"
    # the resumed frames continue the looped folder where the killed run stopped
    firsts = [int(s.load_frame(i)[0, 0, 0]) for i in range(len(s))]  # JPEG: within a few levels
    assert all(abs(f - 40 * (i % 6)) <= 4 for i, f in enumerate(firsts)), firsts
    assert not [p for p in (out / "frames").iterdir() if p.name.startswith(".")]


def test_keyboard_teleop_drives_the_jetbot(tmp_path: Path, folder: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float]] = []
    stops: list[int] = []
    robot = types.SimpleNamespace(set_motors=lambda left, right: calls.append((left, right)),
                                  stop=lambda: stops.append(1))
    fake = types.ModuleType("jetbot")
    fake.Robot = lambda: robot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jetbot", fake)
    r, w = os.pipe()
    os.write(w, b"w")
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "r"))
    try:
        res = record_real.record(_cfg(["source=folder", f"source.path={folder}", "fps=null",
                                       f"out={tmp_path / 's'}", "actions=keyboard", "drive=true",
                                       "max_speed=0.5"]))
    finally:
        sys.stdin.close()
        os.close(w)
    assert res["written"] == 6
    s = _check_session(tmp_path / "s")
    np.testing.assert_allclose(s.actions(), np.full((6, 2), 0.5))
    assert calls == [(0.25, 0.25)] * 6 and stops == [1]
    assert s.info["action_source"].startswith("keyboard")


def test_unopenable_source_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2")
    bogus = tmp_path / "clip.avi"
    bogus.write_bytes(b"not a video")
    res = record_real.record(_cfg(["source=video", f"source.path={bogus}", f"out={tmp_path / 's'}"]))
    assert res["status"] == "error" and res["exit_code"] == 1 and res["total"] == 0
    assert "cannot open video:" in capsys.readouterr().err
    assert not (tmp_path / "s" / "manifest.jsonl").exists()


@pytest.mark.parametrize("every", [0, -2])
def test_every_nth_below_one_is_refused_not_silently_one(tmp_path: Path, folder: Path, every: int) -> None:
    with pytest.raises(ValueError, match=f"every_nth must be >= 1, got {every}"):
        record_real.record(_cfg(["source=folder", f"source.path={folder}", f"every_nth={every}",
                                 f"out={tmp_path / 's'}"]))


def test_a_resumed_folder_recording_continues_after_the_last_frame(tmp_path: Path, folder: Path) -> None:
    out = tmp_path / "s"
    base = ["source=folder", f"source.path={folder}", "width=null", "height=null", "fps=null",
            "format=png", f"out={out}"]
    assert record_real.record(_cfg([*base, "frames=4"]))["written"] == 4  # stopped part-way
    res = record_real.record(_cfg([*base, "resume=true"]))
    assert res["written"] == 2 and res["total"] == 6  # not 6 + 4: nothing recorded twice
    s = _check_session(out)
    firsts = [int(s.load_frame(i)[0, 0, 0]) for i in range(len(s))]
    assert firsts == [40 * i for i in range(6)]
    assert s.info["frames"] == 6


def test_a_resumed_synth_recording_continues_its_stream(tmp_path: Path) -> None:
    out = tmp_path / "s"
    base = ["source=synth", "source.seed=5", "width=32", "height=32", "fps=null", "format=png", f"out={out}"]
    record_real.record(_cfg([*base, "frames=3"]))
    record_real.record(_cfg([*base, "frames=2", "resume=true"]))
    whole = tmp_path / "w"
    record_real.record(_cfg([*[b for b in base if not b.startswith("out=")], "frames=5", f"out={whole}"]))
    a, b = _check_session(out), _check_session(whole)
    assert len(a) == 5 and all((a.load_frame(i) == b.load_frame(i)).all() for i in range(5))


def test_resuming_with_another_frame_size_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    base = ["source=synth", "source.seed=5", "fps=null", f"out={out}", "frames=2"]
    record_real.record(_cfg([*base, "width=32", "height=32"]))
    with pytest.raises(ValueError, match=r"holds 32x32 frames; resuming it with 48x48 would mix sizes"):
        record_real.record(_cfg([*base, "width=48", "height=48", "resume=true"]))


def test_an_error_mid_recording_is_the_sessions_ending(tmp_path: Path, folder: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from translate.recording import SessionWriter

    calls = {"n": 0}
    original = SessionWriter.write

    def fail_third(self: SessionWriter, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("encoder crashed")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionWriter, "write", fail_third)
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match="encoder crashed"):
        record_real.record(_cfg(["source=folder", f"source.path={folder}", "width=null", "height=null",
                                 "fps=null", f"out={out}"]))
    info = json.loads((out / "session.json").read_text())
    assert info["status"] == "error" and "encoder crashed" in info["end_message"] and info["frames"] == 2


@pytest.mark.parametrize("program,args", [
    ("record_real.py", ["source=synth", "frames=1", "width=32", "height=32", "out={bad}"]),
    ("train_translate.py", ["run_dir={bad}"]),
    ("eval_policy_on_translated.py", ["out_dir={bad}"]),
])
def test_an_unwritable_output_folder_is_one_line(tmp_path: Path, program: str, args: list[str]) -> None:
    """Hydra makes the output folder before the program runs; its failure there was a traceback."""
    (tmp_path / "file").write_text("in the way")
    bad = tmp_path / "file" / "out"  # (a read-only folder fails the same way; root may write those)
    proc = subprocess.run([sys.executable, str(REPO / program), *(a.format(bad=bad) for a in args)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert err[0].startswith(f"{program}: error: cannot write the output folder {bad}: Not a directory")


def test_unknown_source_and_existing_session_are_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO / "record_real.py"), *args], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})

    proc = run("source=webcam")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "record_real.py: error: unknown frame source 'webcam'; choose one of csi, folder, session, synth, usb, "
        "video (a file or folder: source=video|folder source.path=PATH)"]
    base = ["source=synth", "frames=2", "width=32", "height=32", "fps=null", "live=false", f"out={tmp_path / 's'}"]
    assert run(*base).returncode == 0
    proc = run(*base)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and "already exists: resume=true appends to it" in err[0]
    assert "error: error" not in proc.stderr
    assert run(*base, "resume=true").returncode == 0

