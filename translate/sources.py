"""Frame sources for recording and the robot loop: CSI/USB cameras, video files, image folders."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translate.imageio import ImageDecodeError, list_images, read_image

__all__ = [
    "CameraLostError",
    "CameraOpenError",
    "CameraReadError",
    "CsiCameraSource",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "RecordingSource",
    "UsbCameraSource",
    "VideoFileSource",
    "available_sources",
    "bgr_to_rgb",
    "gstreamer_csi_pipeline",
    "import_cv2",
    "load_plugin",
    "make_source",
    "parse_source_spec",
    "read_with_reconnect",
    "register_source",
    "resize_rgb",
]

log = logging.getLogger(__name__)


class CameraOpenError(RuntimeError):
    """A camera or video could not be opened; the message names it and says what to check."""


class CameraReadError(RuntimeError):
    """A live camera failed to deliver a frame (unplugged, pipeline died, driver error)."""


class CameraLostError(CameraReadError):
    """A live camera stayed unreadable through every reconnect try."""


@dataclass
class Frame:
    """One frame from a :class:`FrameSource`.

    Args:
        image: RGB uint8, whatever order the device delivered (see ``FrameSource.channel_order``).
        index: position in the source's stream (0-based, every frame read counts).
        t_mono: ``time.monotonic()`` when the frame was read.
        t_wall: ``time.time()`` when the frame was read.
        t_source: the source's own clock in seconds from its start (a video's timestamp, a
            camera's seconds since it was opened), used to align action files by time.
        action: a reference action that comes with the frame (the synthetic world's expert, a
            recorded session's teleop), or None.
        state: free-form per-frame state (e.g. the synthetic scene), or None.

    Shape:
        - image: :math:`(H, W, 3)` uint8.
    """

    image: np.ndarray
    index: int
    t_mono: float
    t_wall: float
    t_source: float | None = None
    action: tuple[float, ...] | None = None
    state: dict[str, Any] | None = None


def import_cv2(what: str = "this frame source") -> Any:
    """Import OpenCV lazily, with an error that says how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            f"{what} needs OpenCV (cv2): pip install opencv-python-headless, or on a Jetson use "
            "the system build with GStreamer (sudo apt install python3-opencv)"
        ) from exc
    return cv2


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Convert an OpenCV frame (BGR, BGRA or grey; uint8) to a contiguous RGB uint8 array.

    Args:
        frame: what ``cv2.VideoCapture.read`` returned.

    Returns:
        RGB uint8, contiguous.

    Shape:
        - frame: :math:`(H, W, 3)`, :math:`(H, W, 4)` or :math:`(H, W)`.
        - output: :math:`(H, W, 3)`.

    Example:
        >>> bgr_to_rgb(np.array([[[1, 2, 3]]], np.uint8)).tolist()
        [[[3, 2, 1]]]
    """
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise ValueError(f"camera frame must be uint8, got {a.dtype} {a.shape}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"camera frame must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    return np.ascontiguousarray(a[..., 2::-1])


def resize_rgb(image: np.ndarray, width: int | None, height: int | None) -> np.ndarray:
    """Resize an RGB uint8 frame to ``width`` x ``height`` (no-op when None or already there).

    Uses OpenCV when it is installed (area averaging when shrinking, bilinear when growing),
    else Pillow's bilinear filter (antialiased when shrinking).

    Shape:
        - image: :math:`(H, W, 3)`; output: :math:`(height, width, 3)`.
    """
    if width is None or height is None or image.shape[:2] == (height, width):
        return image
    try:
        import cv2
    except ImportError:
        from PIL import Image

        pil = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(pil, dtype=np.uint8)
    shrink = width < image.shape[1] and height < image.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interp))


def _check_size(width: int | None, height: int | None, where: str) -> None:
    if (width is None) != (height is None):
        raise ValueError(f"{where}: give both width and height, or neither (got {width}, {height})")
    for name, v in (("width", width), ("height", height)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{where}: {name} must be a positive int or None, got {v!r}")


class FrameSource:
    """Base class of frame sources: ``open``, then ``read`` until it returns None, then ``close``.

    Sources are context managers and iterables of :class:`Frame`. ``read`` returns RGB frames at
    ``width`` x ``height`` (when set), None at the end of a finite stream, and raises
    :class:`CameraReadError` when a live camera fails (see :func:`read_with_reconnect`).

    Attributes:
        kind: registry name (``csi``, ``usb``, ``video``, ``folder``, ``session``, ``synth``).
        live: frames arrive in real time and are lost when not read in time (cameras).
        channel_order: the order the device delivers before the conversion to RGB (``BGR`` for
            OpenCV captures); recorded as ``source_channel_order`` in session.json.
        nominal_fps: the rate the device is set to, or None.
        camera_rig: an object with ``save(path)`` that writes the source's camera.yaml, or None.
    """

    kind = "source"
    live = False
    channel_order = "RGB"

    def __init__(self, width: int | None = None, height: int | None = None) -> None:
        _check_size(width, height, type(self).__name__)
        self.width = width
        self.height = height
        self.nominal_fps: float | None = None
        self.camera_rig: Any = None
        self._index = 0
        self._t_open = time.monotonic()
        self._opened = False

    # -- to implement ---------------------------------------------------------------------------
    def _open(self) -> None:
        """Acquire the device or file."""

    def _read(self) -> tuple[np.ndarray, float | None, tuple[float, ...] | None,
                             dict[str, Any] | None] | None:
        """Return (RGB image, t_source, action, state), or None at the end of the stream."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device or file."""

    def describe(self) -> str:
        """A short description for session.json and messages, e.g. ``usb:/dev/video0``."""
        return self.kind

    def info(self) -> dict[str, Any]:
        """JSON-ready settings of the source (recorded in session.json)."""
        return {"kind": self.kind, "description": self.describe(), "live": self.live,
                "channel_order": self.channel_order, "nominal_fps": self.nominal_fps,
                "width": self.width, "height": self.height}

    # -- public API -----------------------------------------------------------------------------
    def open(self) -> FrameSource:
        """Open the source (idempotent). Returns self."""
        if not self._opened:
            self._open()
            self._opened = True
            self._t_open = time.monotonic()
        return self

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream.

        Raises:
            CameraReadError: a live camera did not deliver a frame.
        """
        self.open()
        got = self._read()
        if got is None:
            return None
        image, t_source, action, state = got
        t_mono, t_wall = time.monotonic(), time.time()
        if (self.width is not None and self.height is not None and not self.__dict__.get("_warned_upscale")
                and (image.shape[1] < self.width or image.shape[0] < self.height)):
            self.__dict__["_warned_upscale"] = True
            log.warning("%s source delivers %dx%d frames: storing them at %dx%d upscales them "
                        "(width=null height=null keeps the source's size)", self.kind,
                        image.shape[1], image.shape[0], self.width, self.height)
        image = resize_rgb(image, self.width, self.height)
        frame = Frame(image=image, index=self._index, t_mono=t_mono, t_wall=t_wall,
                      t_source=t_mono - self._t_open if t_source is None else t_source,
                      action=action, state=state)
        self._index += 1
        return frame

    def reconnect(self) -> None:
        """Close and reopen the device (the stream index keeps counting).

        Raises:
            CameraOpenError: it could not be reopened.
        """
        self.close()
        self._open()
        self._opened = True

    def close(self) -> None:
        """Release the source (idempotent)."""
        if self._opened:
            self._opened = False
            self._close()

    def __enter__(self) -> FrameSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


# --------------------------------------------------------------------------------------------------
# OpenCV captures: CSI (GStreamer), USB (V4L2), video files
# --------------------------------------------------------------------------------------------------


def gstreamer_csi_pipeline(
    *,
    sensor_id: int = 0,
    sensor_mode: int | None = 3,
    capture_width: int = 816,
    capture_height: int = 616,
    fps: int = 30,
    width: int = 224,
    height: int = 224,
    flip_method: int = 0,
) -> str:
    """The GStreamer pipeline that opens a Jetson CSI camera (IMX219) in OpenCV, as the Jetbot does.

    ``nvarguscamerasrc`` reads the sensor in ``sensor_mode`` and its ISP scales to
    ``capture_width`` x ``capture_height`` NV12 at ``fps``; ``nvvidconv`` flips and scales to
    ``width`` x ``height`` BGRx in hardware; ``videoconvert`` gives the BGR that OpenCV wants;
    ``appsink drop=true max-buffers=1`` keeps only the newest frame so a slow consumer reads fresh
    frames instead of a growing backlog (the dropped ones show up as dropped frames).

    IMX219 sensor modes on a Jetson Nano (``sensor-mode``): 0 = 3264x2464 @ 21 fps, 1 = 3264x1848
    @ 28, 2 = 1920x1080 @ 30, 3 = 1640x1232 @ 30 (2x2 binned, full field of view: the Jetbot's
    choice), 4 = 1280x720 @ 60, 5 = 1280x720 @ 120. Modes 1, 2, 4 and 5 crop the field of view, so
    a camera.yaml calibrated in mode 3 does not hold for them. The Jetbot's 816x616 is mode 3
    halved; 224x224 squeezes 4:3 into 1:1 (calibrate the camera at the size you record).

    Args:
        sensor_id: CSI port (0 or 1).
        sensor_mode: sensor mode, or None to let Argus choose from the caps.
        capture_width: ISP output width.
        capture_height: ISP output height.
        fps: frame rate.
        width: width of the frames OpenCV receives.
        height: height of the frames OpenCV receives.
        flip_method: ``nvvidconv`` flip (0 none, 2 rotate 180°: a camera mounted upside down).

    Returns:
        The pipeline string for ``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)``.
    """
    for name, v in (("sensor_id", sensor_id), ("capture_width", capture_width),
                    ("capture_height", capture_height), ("fps", fps), ("width", width),
                    ("height", height), ("flip_method", flip_method)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"gstreamer_csi_pipeline: {name} must be an int >= 0, got {v!r}")
    mode = "" if sensor_mode is None else f" sensor-mode={int(sensor_mode)}"
    return (
        f"nvarguscamerasrc sensor-id={sensor_id}{mode} ! "
        f"video/x-raw(memory:NVMM), width=(int){capture_width}, height=(int){capture_height}, "
        f"format=(string)NV12, framerate=(fraction){fps}/1 ! "
        f"nvvidconv flip-method={flip_method} ! "
        f"video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class _OpenCVSource(FrameSource):
    """A ``cv2.VideoCapture``-like object that delivers BGR frames; converted to RGB here.

    ``capture_factory`` replaces the OpenCV capture (tests pass fakes with ``isOpened``, ``read``,
    ``release`` and optionally ``get``).
    """

    channel_order = "BGR"

    def __init__(self, width: int | None, height: int | None,
                 capture_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(width, height)
        self._factory = capture_factory
        self._cap: Any = None

    def _make_capture(self) -> Any:
        raise NotImplementedError

    def _open_hint(self) -> str:
        return ""

    def _open(self) -> None:
        cap = self._factory() if self._factory is not None else self._make_capture()
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise CameraOpenError(f"cannot open {self.describe()}{self._open_hint()}")
        self._cap = cap

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _grab(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        return bgr if ok and bgr is not None else None

    def _read(self) -> tuple[np.ndarray, float | None, None, None] | None:
        bgr = self._grab()
        if bgr is None:
            if self.live:
                raise CameraReadError(f"{self.describe()}: no frame (camera unplugged or stalled?)")
            return None
        return bgr_to_rgb(bgr), self._timestamp(), None, None

    def _timestamp(self) -> float | None:
        return None


class CsiCameraSource(_OpenCVSource):
    """The Jetson CSI camera (IMX219) through GStreamer in OpenCV, as the Jetbot opens it.

    The frames arrive in BGR at ``width`` x ``height`` (scaled in hardware by ``nvvidconv``) and
    are returned in RGB. See :func:`gstreamer_csi_pipeline` for the sensor modes.

    Args:
        width: frame width (the pipeline scales to it).
        height: frame height.
        fps: frame rate asked of the sensor.
        sensor_id: CSI port.
        sensor_mode: IMX219 sensor mode (3 = 1640x1232 @ 30 fps, full field of view).
        capture_width: ISP output width before the scaling (816: the Jetbot's).
        capture_height: ISP output height (616).
        flip_method: ``nvvidconv`` flip-method.
        capture_factory: replaces ``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)`` (tests).

    Example:
        >>> cam = CsiCameraSource(224, 224)  # doctest: +SKIP
        >>> with cam: frame = cam.read()  # doctest: +SKIP
    """

    kind = "csi"
    live = True

    def __init__(
        self,
        width: int = 224,
        height: int = 224,
        *,
        fps: int = 30,
        sensor_id: int = 0,
        sensor_mode: int | None = 3,
        capture_width: int = 816,
        capture_height: int = 616,
        flip_method: int = 0,
        capture_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(width, height, capture_factory)
        self.pipeline = gstreamer_csi_pipeline(
            sensor_id=sensor_id, sensor_mode=sensor_mode, capture_width=capture_width,
            capture_height=capture_height, fps=int(fps), width=width, height=height,
            flip_method=flip_method,
        )
        self.sensor_id = sensor_id
        self.nominal_fps = float(fps)

    def describe(self) -> str:
        return f"csi:{self.sensor_id}"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "gstreamer_pipeline": self.pipeline}

    def _make_capture(self) -> Any:
        cv2 = import_cv2("the CSI camera")
        return cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)

    def _open_hint(self) -> str:
        hint = (f" with the GStreamer pipeline {self.pipeline!r}. Check that the camera is "
                "connected (ls /dev/video*), that nvargus-daemon runs "
                "(sudo systemctl restart nvargus-daemon) and that no other process holds it")
        try:
            import cv2

            if "GStreamer:                   YES" not in cv2.getBuildInformation():
                hint += ("; this OpenCV was built WITHOUT GStreamer (pip wheels are): use the "
                         "Jetson's system OpenCV (sudo apt install python3-opencv)")
        except ImportError:
            pass
        return hint


class UsbCameraSource(_OpenCVSource):
    """A USB (UVC / V4L2) camera through ``cv2.VideoCapture``; BGR frames returned as RGB.

    Args:
        device: camera index (0) or device path (``/dev/video1``).
        width: output frame width (resized in software when the camera gives another size).
        height: output frame height.
        fps: frame rate asked of the camera.
        capture_width: the mode asked of the camera (most UVC cameras offer 640x480).
        capture_height: likewise.
        fourcc: pixel format asked of the camera, e.g. ``MJPG`` (higher rates over USB 2), or None.
        capture_factory: replaces the OpenCV capture (tests).
    """

    kind = "usb"
    live = True

    def __init__(
        self,
        device: int | str = 0,
        width: int | None = 224,
        height: int | None = 224,
        *,
        fps: float | None = 30,
        capture_width: int | None = 640,
        capture_height: int | None = 480,
        fourcc: str | None = None,
        capture_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(width, height, capture_factory)
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.capture_size = (capture_width, capture_height)
        self.fourcc = fourcc
        self.nominal_fps = float(fps) if fps else None

    def describe(self) -> str:
        return f"usb:{self.device}"

    def _make_capture(self) -> Any:
        cv2 = import_cv2("the USB camera")
        api = cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if cap.isOpened():
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cw, ch = self.capture_size
            if cw and ch:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, cw)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, ch)
            if self.nominal_fps:
                cap.set(cv2.CAP_PROP_FPS, self.nominal_fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog (not every driver)
        return cap

    def _open_hint(self) -> str:
        return (" (check the device with v4l2-ctl --list-devices and that no other process "
                "holds it)")


class VideoFileSource(_OpenCVSource):
    """A video file read with OpenCV (FFmpeg); frames returned as RGB, None at the end.

    ``t_source`` is the frame's timestamp in the video (``CAP_PROP_POS_MSEC``), so an action
    file can be aligned to it by time.

    Args:
        path: the video file.
        width: output frame width, or None for the video's own.
        height: output frame height, or None.
        capture_factory: replaces ``cv2.VideoCapture(path)`` (tests).
    """

    kind = "video"

    def __init__(self, path: str | os.PathLike[str], width: int | None = None,
                 height: int | None = None, *,
                 capture_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(width, height, capture_factory)
        self.path = Path(path)
        if capture_factory is None and not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")

    def describe(self) -> str:
        return f"video:{self.path}"

    def _make_capture(self) -> Any:
        cv2 = import_cv2("the video source")
        cap = cv2.VideoCapture(str(self.path))
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0
        self.nominal_fps = float(fps) if fps and fps > 0 else None
        return cap

    def _open_hint(self) -> str:
        return " (not a video OpenCV's FFmpeg can decode?)"

    def _timestamp(self) -> float | None:
        get = getattr(self._cap, "get", None)
        if get is None:
            return None
        try:
            import cv2

            ms = float(get(cv2.CAP_PROP_POS_MSEC))
        except (ImportError, TypeError, ValueError):
            return None
        return ms / 1000.0 if ms >= 0 else None


# --------------------------------------------------------------------------------------------------
# Files: image folders and recorded sessions (no OpenCV needed)
# --------------------------------------------------------------------------------------------------


class ImageFolderSource(FrameSource):
    """The images of a folder in sorted name order (any format translate.imageio decodes).

    Args:
        path: the folder.
        width: output frame width, or None to keep each image's size.
        height: output frame height, or None.
        recursive: also read sub-folders.
        on_error: ``skip`` (log and skip undecodable files) or ``raise``.
        loop: start again at the first image after the last (demos).
    """

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str], width: int | None = None,
                 height: int | None = None, *, recursive: bool = False, on_error: str = "skip",
                 loop: bool = False) -> None:
        super().__init__(width, height)
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.path = Path(path)
        self.files = list_images(self.path, recursive=recursive, what="image folder source")
        self.on_error = on_error
        self.loop = loop
        self._pos = 0

    def describe(self) -> str:
        return f"folder:{self.path}"

    def _read(self) -> tuple[np.ndarray, float | None, None, dict[str, Any]] | None:
        misses = 0
        while True:
            if self._pos >= len(self.files):
                if not self.loop or misses >= len(self.files):
                    return None
                self._pos = 0
            p = self.files[self._pos]
            self._pos += 1
            try:
                return read_image(p), None, None, {"source_file": p.name}
            except ImageDecodeError as exc:
                if self.on_error == "raise":
                    raise
                misses += 1
                log.warning("skipping %s", exc)


class RecordingSource(FrameSource):
    """Replay a recording session (frames in manifest order, with their recorded actions).

    Args:
        path: the session folder.
        width: output frame width, or None for the recorded size.
        height: output frame height, or None.
    """

    kind = "session"

    def __init__(self, path: str | os.PathLike[str], width: int | None = None,
                 height: int | None = None) -> None:
        from translate.recording import RecordingSession

        super().__init__(width, height)
        self.session = RecordingSession(path)
        self.nominal_fps = self.session.info.get("fps")
        self._pos = 0

    def describe(self) -> str:
        return f"session:{self.session.root}"

    def _read(self) -> tuple[np.ndarray, float | None, tuple[float, ...] | None,
                             dict[str, Any] | None] | None:
        if self._pos >= len(self.session):
            return None
        rec = self.session.frames[self._pos]
        image = self.session.load_frame(self._pos)
        self._pos += 1
        t0 = self.session.frames[0].t_mono
        t_src = rec.t_mono - t0 if rec.t_mono is not None and t0 is not None else None
        return image, t_src, rec.action, rec.state


# --------------------------------------------------------------------------------------------------
# Reconnecting
# --------------------------------------------------------------------------------------------------


def read_with_reconnect(
    source: FrameSource,
    *,
    tries: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 4.0,
    on_retry: Callable[[int, int, float, Exception], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Frame | None:
    """Read a frame; when a live camera fails, reopen it up to ``tries`` times with backoff.

    The waits double from ``backoff_s`` up to ``max_backoff_s`` (0.5, 1, 2, 4, 4 s by default:
    about 11 s before giving up — long enough for a loose connector or a USB re-enumeration).

    Args:
        source: the source.
        tries: reconnect attempts before giving up.
        backoff_s: first wait (s).
        max_backoff_s: longest wait (s).
        on_retry: called as ``on_retry(attempt, tries, wait_s, error)`` before each wait.
        should_stop: polled between attempts; True gives up at once (e.g. Ctrl-C was pressed).
        sleep: the sleep function (tests).

    Returns:
        The frame, or None at the end of a finite stream.

    Raises:
        CameraLostError: every attempt failed; the message names the source and the last error.
    """
    try:
        return source.read()
    except CameraReadError as exc:
        last: Exception = exc
    delay = backoff_s
    for attempt in range(1, tries + 1):
        if should_stop is not None and should_stop():
            break
        if on_retry is not None:
            on_retry(attempt, tries, delay, last)
        else:
            log.warning("%s; reconnecting in %.1f s (try %d/%d)", last, delay, attempt, tries)
        sleep(delay)
        try:
            source.reconnect()
            return source.read()
        except (CameraReadError, CameraOpenError) as exc:
            last = exc
        delay = min(delay * 2, max_backoff_s)
    raise CameraLostError(
        f"{source.describe()}: camera lost, still failing after {tries} reconnect tries "
        f"(last error: {last})"
    ) from last


# --------------------------------------------------------------------------------------------------
# Registry (the synthetic world registers itself from datasets/, which translate never imports)
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., FrameSource]] = {
    "csi": CsiCameraSource,
    "usb": UsbCameraSource,
    "video": VideoFileSource,
    "folder": ImageFolderSource,
    "session": RecordingSource,
}
# what the argument after "kind:" in a source spec means
_SPEC_ARG = {"csi": "sensor_id", "usb": "device", "video": "path", "folder": "path",
             "session": "path"}


def register_source(kind: str, factory: Callable[..., FrameSource], *, arg: str | None = None,
                    replace: bool = False) -> None:
    """Make a frame source available by name to :func:`make_source` and the robot loop's CLI.

    Args:
        kind: the name (``synth``).
        factory: a callable returning a :class:`FrameSource`; called with ``width``, ``height``
            and the spec's keyword arguments.
        arg: the keyword that the part after ``kind:`` in a spec string fills (``seed``).
        replace: allow replacing an existing registration.
    """
    if kind in _REGISTRY and not replace and _REGISTRY[kind] is not factory:
        raise ValueError(f"frame source {kind!r} is already registered")
    _REGISTRY[kind] = factory
    if arg is not None:
        _SPEC_ARG[kind] = arg


def available_sources() -> list[str]:
    """The registered source names."""
    return sorted(_REGISTRY)


def load_plugin(module: str) -> None:
    """Import a module that registers frame sources (e.g. ``datasets.jetbot_synth.source``)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"cannot import source plugin {module!r} ({exc}); run from the project checkout for "
            "datasets.* plugins"
        ) from exc


def parse_source_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a source spec string into (kind, keyword arguments).

    Forms: ``csi``, ``csi:1`` (sensor id), ``usb:0``, ``usb:/dev/video1``, ``video:run.mp4``,
    ``folder:frames/``, ``session:runs/rec01``, ``synth``, ``synth:7`` (seed). A bare existing
    path is a folder (if a directory) or a video file.

    Example:
        >>> parse_source_spec("usb:/dev/video1")
        ('usb', {'device': '/dev/video1'})
    """
    kind, sep, arg = spec.partition(":")
    if not sep and kind not in _REGISTRY and os.path.exists(spec):
        return ("folder" if os.path.isdir(spec) else "video"), {"path": spec}
    if kind not in _REGISTRY:
        hint = (" (the synthetic world: add --plugin datasets.jetbot_synth.source, from the "
                "project checkout)") if kind == "synth" else ""
        raise ValueError(
            f"unknown frame source {kind!r} in {spec!r}; known: {', '.join(available_sources())}"
            f"{hint}"
        )
    kwargs: dict[str, Any] = {}
    if arg:
        key = _SPEC_ARG.get(kind)
        if key is None:
            raise ValueError(f"frame source {kind!r} takes no argument, got {spec!r}")
        value: Any = int(arg) if arg.isdigit() else arg
        kwargs[key] = value
    return kind, kwargs


def make_source(spec: str, **kwargs: Any) -> FrameSource:
    """Build a registered frame source from a spec string (see :func:`parse_source_spec`).

    Args:
        spec: e.g. ``csi``, ``usb:0``, ``video:run.mp4``, ``folder:frames``, ``synth``.
        **kwargs: more constructor arguments (``width``, ``height``, ``fps``, ...).

    Returns:
        The (unopened) source.
    """
    kind, spec_kwargs = parse_source_spec(spec)
    return _REGISTRY[kind](**spec_kwargs, **kwargs)
