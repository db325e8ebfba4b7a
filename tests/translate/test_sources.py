"""Tests for translate.sources: camera pipelines, BGR→RGB with fake captures, files, reconnects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from translate.imageio import write_image
from translate.recording import RecordingSession, SessionWriter
from translate.sources import (
    CameraLostError,
    CameraOpenError,
    CameraReadError,
    CsiCameraSource,
    FrameSource,
    ImageFolderSource,
    RecordingSource,
    UsbCameraSource,
    VideoFileSource,
    available_sources,
    bgr_to_rgb,
    gstreamer_csi_pipeline,
    make_source,
    parse_source_spec,
    read_with_reconnect,
    register_source,
)


class FakeCapture:
    """cv2.VideoCapture stand-in: yields the given BGR frames, then fails (read -> False)."""

    def __init__(self, frames: list[np.ndarray], opened: bool = True) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self) -> None:
        self.released = True


def _bgr(h: int, w: int, b: int, g: int, r: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = b, g, r
    return img


def test_csi_pipeline_string_is_the_jetbots() -> None:
    p = gstreamer_csi_pipeline()
    assert p.startswith("nvarguscamerasrc sensor-id=0 sensor-mode=3 ! ")
    assert ("video/x-raw(memory:NVMM), width=(int)816, height=(int)616, format=(string)NV12, "
            "framerate=(fraction)30/1") in p
    assert "nvvidconv flip-method=0 ! video/x-raw, width=(int)224, height=(int)224, " \
           "format=(string)BGRx" in p
    assert "videoconvert ! video/x-raw, format=(string)BGR ! appsink" in p
    assert "drop=true max-buffers=1" in p
    q = gstreamer_csi_pipeline(sensor_id=1, sensor_mode=None, capture_width=1640,
                               capture_height=1232, fps=21, width=128, height=96, flip_method=2)
    assert "sensor-mode" not in q and "sensor-id=1" in q and "framerate=(fraction)21/1" in q
    assert "width=(int)128, height=(int)96" in q and "flip-method=2" in q
    with pytest.raises(ValueError, match="fps"):
        gstreamer_csi_pipeline(fps=-1)


def test_csi_source_converts_bgr_to_rgb() -> None:
    cap = FakeCapture([_bgr(24, 32, 10, 20, 30)] * 2)
    src = CsiCameraSource(32, 24, capture_factory=lambda: cap)
    assert src.channel_order == "BGR" and src.live and src.nominal_fps == 30
    assert "width=(int)32, height=(int)24" in src.pipeline
    assert src.info()["gstreamer_pipeline"] == src.pipeline
    with src:
        f = src.read()
        assert f is not None and f.image.shape == (24, 32, 3) and f.index == 0
        assert f.image[0, 0].tolist() == [30, 20, 10]
        assert f.image.flags["C_CONTIGUOUS"]
        assert src.read() is not None
        with pytest.raises(CameraReadError, match="csi:0"):
            src.read()  # a live camera that stops delivering is an error, not an end
    assert cap.released


def test_csi_open_failure_names_pipeline() -> None:
    src = CsiCameraSource(capture_factory=lambda: FakeCapture([], opened=False))
    with pytest.raises(CameraOpenError, match="nvarguscamerasrc"):
        src.open()


def test_usb_source_resizes_and_parses_device() -> None:
    cap = FakeCapture([_bgr(48, 64, 200, 0, 0)])
    src = UsbCameraSource("2", width=32, height=24, capture_factory=lambda: cap)
    assert src.device == 2 and src.describe() == "usb:2"
    f = src.read()
    assert f is not None and f.image.shape == (24, 32, 3)
    assert f.image[5, 5].tolist() == [0, 0, 200]  # blue stays blue after BGR -> RGB
    assert UsbCameraSource("/dev/video1").device == "/dev/video1"


def test_bgr_to_rgb_variants() -> None:
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert bgr_to_rgb(grey).shape == (2, 3, 3)
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 9
    assert bgr_to_rgb(bgra)[0, 0].tolist() == [0, 0, 9]
    with pytest.raises(ValueError, match="uint8"):
        bgr_to_rgb(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        bgr_to_rgb(np.zeros((2, 2, 5), np.uint8))


def _write_video(path: Path, colours: list[tuple[int, int, int]], size: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert vw.isOpened()
    for r, g, b in colours:
        vw.write(_bgr(h, w, b, g, r))
    vw.release()


def test_video_file_source(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    colours = [(220, 20, 20), (20, 220, 20), (20, 20, 220), (220, 220, 20)]
    _write_video(path, colours, (40, 32))
    src = VideoFileSource(path, width=20, height=16)
    frames = list(src)
    assert len(frames) == 4 and src.nominal_fps == pytest.approx(10.0)
    for f, (r, g, b) in zip(frames, colours, strict=True):
        assert f.image.shape == (16, 20, 3)
        np.testing.assert_allclose(f.image.reshape(-1, 3).mean(0), [r, g, b], atol=12)
    ts = [f.t_source for f in frames]
    assert ts[0] == pytest.approx(0.0, abs=1e-6) and ts[1] == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        VideoFileSource(tmp_path / "missing.avi")


def test_image_folder_source_sorted_skips_bad_and_loops(tmp_path: Path) -> None:
    for name, v in (("b.png", 20), ("a.png", 10), ("c.jpg", 30)):
        write_image(tmp_path / name, np.full((8, 12, 3), v, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    src = ImageFolderSource(tmp_path, width=6, height=4)
    frames = list(src)
    assert [(f.state or {})["source_file"] for f in frames] == ["a.png", "b.png", "c.jpg"]
    assert all(f.image.shape == (4, 6, 3) for f in frames)
    assert [int(f.image.mean()) for f in frames] == [10, 20, 30]
    looped = ImageFolderSource(tmp_path, loop=True)
    assert [looped.read().index for _ in range(7)][-1] == 6  # type: ignore[union-attr]
    with pytest.raises(Exception, match="bad.png"):
        list(ImageFolderSource(tmp_path, on_error="raise"))


def test_recording_source_replays_actions(tmp_path: Path) -> None:
    with SessionWriter(tmp_path / "s", source="t", width=8, height=6, fmt="png") as w:
        for i in range(3):
            w.write(np.full((6, 8, 3), i, np.uint8), action=(i, -i), t_mono=10.0 + i)
    src = make_source(f"session:{tmp_path / 's'}")
    frames = list(src)
    assert isinstance(src, RecordingSource) and len(frames) == 3
    assert frames[2].action == (2.0, -2.0) and frames[2].t_source == pytest.approx(2.0)
    assert len(RecordingSession(tmp_path / "s")) == 3


class Flaky(FrameSource):
    """A live source that fails on the reads listed in ``fail`` (by read attempt number)."""

    kind = "flaky"
    live = True

    def __init__(self, fail: set[int], n: int = 100, reopen_fails: int = 0) -> None:
        super().__init__()
        self.fail, self.n, self.attempt, self.reconnects = fail, n, 0, 0
        self.reopen_fails = reopen_fails

    def _read(self) -> Any:
        self.attempt += 1
        if self.attempt in self.fail:
            raise CameraReadError("flaky: no frame")
        if self.attempt > self.n:
            return None
        return np.zeros((4, 4, 3), np.uint8), None, None, None

    def _open(self) -> None:
        if self.reconnects and self.reopen_fails:
            self.reopen_fails -= 1
            raise CameraOpenError("flaky: cannot reopen")

    def reconnect(self) -> None:
        self.reconnects += 1
        super().reconnect()


def test_read_with_reconnect_recovers_with_backoff() -> None:
    src = Flaky(fail={2, 3})
    waits: list[float] = []
    assert read_with_reconnect(src, sleep=waits.append) is not None
    frame = read_with_reconnect(src, backoff_s=0.5, sleep=waits.append)
    assert frame is not None and frame.index == 1
    assert waits == [0.5, 1.0] and src.reconnects == 2


def test_read_with_reconnect_gives_up_and_can_be_stopped() -> None:
    src = Flaky(fail=set(range(1, 100)), reopen_fails=2)
    waits: list[float] = []
    retries: list[int] = []
    with pytest.raises(CameraLostError, match="after 4 reconnect tries"):
        read_with_reconnect(src, tries=4, backoff_s=1.0, max_backoff_s=2.5, sleep=waits.append,
                            on_retry=lambda a, t, w, e: retries.append(a))
    assert waits == [1.0, 2.0, 2.5, 2.5] and retries == [1, 2, 3, 4]
    stopper = Flaky(fail=set(range(1, 100)))
    with pytest.raises(CameraLostError):
        read_with_reconnect(stopper, tries=10, sleep=lambda s: None, should_stop=lambda: True)
    assert stopper.reconnects == 0


def test_specs_and_registry(tmp_path: Path) -> None:
    assert parse_source_spec("csi") == ("csi", {})
    assert parse_source_spec("csi:1") == ("csi", {"sensor_id": 1})
    assert parse_source_spec("usb:/dev/video2") == ("usb", {"device": "/dev/video2"})
    assert parse_source_spec("video:a.mp4") == ("video", {"path": "a.mp4"})
    assert parse_source_spec(str(tmp_path)) == ("folder", {"path": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown frame source 'nope'"):
        parse_source_spec("nope:1")
    if "synth" not in available_sources():  # registered by importing datasets.jetbot_synth.source
        with pytest.raises(ValueError, match="--plugin datasets.jetbot_synth.source"):
            parse_source_spec("synth")
    register_source("flaky_test", lambda **kw: Flaky(set(), n=2), arg="n", replace=True)
    assert "flaky_test" in available_sources()
    assert len(list(make_source("flaky_test"))) == 2
    with pytest.raises(ValueError, match="already registered"):
        register_source("flaky_test", lambda **kw: Flaky(set()))
    with pytest.raises(ValueError, match="width and height"):
        ImageFolderSource(tmp_path, width=4)
