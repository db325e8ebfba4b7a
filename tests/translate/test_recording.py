"""Tests for translate.recording: crash-safe session writer and validating reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from translate.fsutil import PathEscapeError
from translate.recording import (
    RecordingDiskFullError,
    RecordingFormatError,
    RecordingSession,
    SessionWriter,
)


def _frame(v: int) -> np.ndarray:
    return np.full((8, 10, 3), v, dtype=np.uint8)


def test_write_and_read_back(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with SessionWriter(root, source="test", width=10, height=8, fmt="png") as w:
        for i in range(3):
            w.write(_frame(i * 10), action=(0.1 * i, -0.1 * i), state={"i": i})
    s = RecordingSession(root)
    assert len(s) == 3 and s.has_actions
    assert s.info["frames"] == 3 and s.info["status"] == "complete" and s.info["channel_order"] == "RGB"
    assert (s.load_frame(2) == 20).all()
    np.testing.assert_allclose(s.actions()[1], [0.1, -0.1])
    assert s.frames[0].state == {"i": 0}


def test_refuses_to_overwrite_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with SessionWriter(root, source="t", width=10, height=8) as w:
        w.write(_frame(1))
    with pytest.raises(FileExistsError, match="resume"):
        SessionWriter(root, source="t", width=10, height=8)
    with SessionWriter(root, source="t", width=10, height=8, resume=True) as w:
        rec = w.write(_frame(2))
    assert rec.file == "frames/000001.jpg"
    assert len(RecordingSession(root)) == 2


def test_resume_drops_half_line_and_orphans(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with SessionWriter(root, source="t", width=10, height=8) as w:
        w.write(_frame(1))
        w.write(_frame(2))
    # a kill between the rename and the manifest append leaves an unlisted frame and half a line
    (root / "frames" / "000002.jpg").write_bytes(b"partial")
    (root / "frames" / ".000003.jpg.tmp").write_bytes(b"x")
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write('{"file": "frames/000002.jp')
    assert len(RecordingSession(root)) == 2  # the reader ignores the half line
    with SessionWriter(root, source="t", width=10, height=8, resume=True) as w:
        w.write(_frame(3))
    s = RecordingSession(root)
    assert [f.file for f in s] == ["frames/000000.jpg", "frames/000001.jpg", "frames/000002.jpg"]
    assert s.load_frame(2).mean() == pytest.approx(3, abs=2)
    assert not list((root / "frames").glob(".*"))


def test_manifest_paths_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "s"
    (root / "frames").mkdir(parents=True)
    (root / "manifest.jsonl").write_text(json.dumps({"file": "../../etc/passwd"}) + "\n")
    with pytest.raises(PathEscapeError, match="manifest.jsonl line 1"):
        RecordingSession(root)


def test_bad_manifest_line_named(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "manifest.jsonl").write_text('{"file": "frames/a.jpg"}\nnot json\n')
    with pytest.raises(RecordingFormatError, match="line 2"):
        RecordingSession(root)
    (root / "manifest.jsonl").write_text('{"nofile": 1}\n')
    with pytest.raises(RecordingFormatError, match="no 'file'"):
        RecordingSession(root)
    with pytest.raises(RecordingFormatError, match="manifest.jsonl is missing"):
        RecordingSession(tmp_path)


def test_disk_full_keeps_listed_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "s"
    w = SessionWriter(root, source="t", width=10, height=8)
    w.write(_frame(1))
    real_replace = os.replace

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(RecordingDiskFullError, match="1 frame"):
        w.write(_frame(2))
    monkeypatch.setattr(os, "replace", real_replace)
    w.close(status="disk_full")
    s = RecordingSession(root)
    assert len(s) == 1 and s.info["status"] == "disk_full"
    assert not list((root / "frames").glob(".*"))


_KILL_SCRIPT = """
import sys, numpy as np
from translate.recording import SessionWriter
w = SessionWriter(sys.argv[1], source="t", width=64, height=48, durable=False)
rng = np.random.default_rng(0)
i = 0
while True:
    w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), action=(0.0, float(i)))
    i += 1
    if i == 5:
        print("ready", flush=True)
"""


def test_sigkill_mid_run_lists_only_complete_frames(tmp_path: Path) -> None:
    root = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(root)],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = RecordingSession(root)
    assert len(s) >= 5
    for f in s:
        assert s.load_frame(f.index).shape == (48, 64, 3)
    assert s.actions()[-1, 1] == len(s) - 1
