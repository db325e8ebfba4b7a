"""The recording-session format: a crash-safe writer (used by record_real.py) and a validating reader."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translate import __version__
from translate.fsutil import atomic_write_json, safe_join
from translate.imageio import encode_image, read_image

__all__ = [
    "FORMAT_VERSION",
    "FrameRecord",
    "RecordingDiskFullError",
    "RecordingFormatError",
    "RecordingSession",
    "SessionWriter",
    "last_source_index",
]

FORMAT_VERSION = 1
_FRAMES = "frames"
_MANIFEST = "manifest.jsonl"
_SESSION = "session.json"


class RecordingFormatError(ValueError):
    """A session folder or one of its manifest lines is malformed. The message names file and line."""


class RecordingDiskFullError(OSError):
    """The disk filled up while writing a frame; every frame listed before it is intact."""


@dataclass(frozen=True)
class FrameRecord:
    """One manifest line of a recording session.

    Attributes:
        index: the frame's position in the manifest (0-based).
        file: the frame's path relative to the session folder, e.g. ``frames/000012.jpg``.
        path: the absolute, containment-checked path.
        t_mono: monotonic clock at capture (s), or None.
        t_wall: wall clock (UNIX time, s), or None.
        action: the reference action (e.g. teleop wheel commands), or None.
        state: free-form per-frame state (e.g. the synthetic world's scene state), or None.
    """

    index: int
    file: str
    path: Path
    t_mono: float | None = None
    t_wall: float | None = None
    action: tuple[float, ...] | None = None
    state: dict[str, Any] | None = None


def _read_manifest_lines(manifest: Path) -> tuple[list[dict[str, Any]], int]:
    """Parse complete manifest lines; returns (records, byte length of the complete part).

    A trailing line without a newline is what a kill in the middle of an append leaves: it is not
    part of the session and is dropped (the writer truncates it on resume).
    """
    data = manifest.read_bytes() if manifest.exists() else b""
    end = data.rfind(b"\n") + 1
    records: list[dict[str, Any]] = []
    for lineno, raw in enumerate(data[:end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RecordingFormatError(f"{manifest}: line {lineno} is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or "file" not in obj:
            raise RecordingFormatError(f"{manifest}: line {lineno} has no 'file' key")
        records.append(obj)
    return records, end


class RecordingSession:
    """Read a recording session folder (``frames/``, ``manifest.jsonl``, ``session.json``).

    Only frames listed in the manifest belong to the session; every path is checked to stay inside
    the session folder.

    Example:
        >>> s = RecordingSession("runs/kitchen_01")  # doctest: +SKIP
        >>> len(s), s.info["channel_order"], s.load_frame(0).shape  # doctest: +SKIP
        (1800, 'RGB', (224, 224, 3))
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"recording session folder {self.root} does not exist")
        manifest = self.root / _MANIFEST
        if not manifest.exists():
            raise RecordingFormatError(f"{self.root} is not a recording session: {_MANIFEST} is missing")
        session_json = self.root / _SESSION
        self.info: dict[str, Any] = {}
        if session_json.exists():
            try:
                self.info = json.loads(session_json.read_text())
            except json.JSONDecodeError as exc:
                raise RecordingFormatError(f"{session_json} is not valid JSON ({exc.msg})") from exc
        raw, _ = _read_manifest_lines(manifest)
        self.frames: list[FrameRecord] = []
        for i, obj in enumerate(raw):
            path = safe_join(self.root, obj["file"], what=f"{manifest.name} line {i + 1}: frame")
            action = obj.get("action")
            self.frames.append(
                FrameRecord(
                    index=i,
                    file=str(obj["file"]),
                    path=path,
                    t_mono=obj.get("t_mono"),
                    t_wall=obj.get("t_wall"),
                    action=tuple(float(a) for a in action) if action is not None else None,
                    state=obj.get("state"),
                )
            )
        # the manifest is the truth (session.json's count is written at start and close only)
        self.info["frames"] = len(self.frames)
        camera = self.root / "camera.yaml"
        self.camera_yaml: Path | None = camera if camera.exists() else None

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[FrameRecord]:
        return iter(self.frames)

    @property
    def has_actions(self) -> bool:
        """True when every listed frame carries a reference action."""
        return bool(self.frames) and all(f.action is not None for f in self.frames)

    def load_frame(self, i: int) -> np.ndarray:
        """Decode frame ``i`` as RGB uint8 (H, W, 3).

        Frames are stored in RGB whatever the camera delivered (``session.json`` records the
        source's native order under ``source_channel_order``).
        """
        return read_image(self.frames[i].path)

    def actions(self) -> np.ndarray:
        """All reference actions as an (N, A) float32 array; raises if some frame has none."""
        missing = [f.index for f in self.frames if f.action is None]
        if missing:
            raise RecordingFormatError(
                f"{self.root / _MANIFEST}: {len(missing)} frame(s) have no action (first: line {missing[0] + 1})"
            )
        return np.asarray([f.action for f in self.frames], dtype=np.float32)


def last_source_index(root: str | os.PathLike[str]) -> int | None:
    """The source position (``source_index``) of the last complete frame a session lists.

    A resumed file, folder or synth recording continues after it. None: no session there, or a
    session whose frames carry no positions (camera recordings, older sessions).
    """
    manifest = Path(root) / _MANIFEST
    if not manifest.is_file():
        return None
    records, _ = _read_manifest_lines(manifest)
    indices = [r["source_index"] for r in records if r.get("source_index") is not None]
    return int(indices[-1]) if indices else None


def _read_session_json(path: Path) -> dict[str, Any]:
    """``session.json`` as a dict, or {} when it is missing or unreadable."""
    if not path.exists():
        return {}
    with contextlib.suppress(json.JSONDecodeError, OSError):
        out = json.loads(path.read_text())
        return out if isinstance(out, dict) else {}
    return {}


@dataclass
class SessionWriter:
    """Crash-safe writer of a recording session.

    Each frame is encoded, written to a temporary name in ``frames/``, fsynced and renamed, and only
    then is its manifest line appended and flushed (and fsynced when ``durable``). A session killed
    at any moment (SIGINT, SIGTERM, SIGKILL, power loss with ``durable``) therefore lists only
    complete frames. ``resume=True`` reopens an existing session, drops a half-written trailing
    manifest line and temporary files, and appends after the last listed frame.

    Args:
        root: the session folder (created if missing).
        source: a description of the frame source (``"csi"``, ``"usb:0"``, ``"video:run.mp4"``).
        width, height: frame size as stored.
        source_channel_order: the order the source delivered (``"BGR"`` for OpenCV captures); frames
            are always stored as RGB.
        fps: nominal frame rate, if known.
        fmt: ``"jpg"`` or ``"png"``.
        quality: JPEG quality.
        resume: append to an existing session instead of refusing to overwrite it.
        durable: fsync the manifest after every line (safe against power loss, slower).
        extra: more fields for ``session.json``.
    """

    root: str | os.PathLike[str]
    source: str
    width: int
    height: int
    source_channel_order: str = "RGB"
    fps: float | None = None
    fmt: str = "jpg"
    quality: int = 90
    resume: bool = False
    durable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.root)
        self.fmt = self.fmt.lower().lstrip(".").replace("jpeg", "jpg")
        if self.fmt not in ("jpg", "png"):
            raise ValueError(f"fmt must be 'jpg' or 'png', got {self.fmt!r}")
        if self.source_channel_order not in ("RGB", "BGR"):
            raise ValueError(f"source_channel_order must be 'RGB' or 'BGR', got {self.source_channel_order!r}")
        self._frames_dir = self.path / _FRAMES
        self._manifest_path = self.path / _MANIFEST
        exists = self._manifest_path.exists()
        if exists and not self.resume:
            raise FileExistsError(
                f"recording session {self.path} already exists: resume=true appends to it "
                "(python record_real.py ... resume=true; SessionWriter(..., resume=True)), or choose another out="
            )
        self._frames_dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        if exists:
            prev_info = _read_session_json(self.path / _SESSION)
            pw, ph = prev_info.get("width"), prev_info.get("height")
            if pw is not None and ph is not None and (int(pw), int(ph)) != (self.width, self.height):
                raise ValueError(
                    f"recording session {self.path} holds {pw}x{ph} frames; resuming it with "
                    f"{self.width}x{self.height} would mix sizes: set width={pw} height={ph} "
                    "or record into a new session")
            records, good_len = _read_manifest_lines(self._manifest_path)
            with open(self._manifest_path, "rb+") as fh:
                fh.truncate(good_len)
            self.count = len(records)
            listed = {Path(r["file"]).name for r in records}
            for p in self._frames_dir.iterdir():
                # temp files and frames renamed but never listed: not part of the session
                if p.name.startswith(".") or p.name not in listed:
                    with contextlib.suppress(OSError):
                        p.unlink()
        self._manifest = open(self._manifest_path, "ab")  # noqa: SIM115 - closed in close()
        self._t0 = time.monotonic()
        self._write_session_json(status="recording")

    # -- public API -------------------------------------------------------------------------
    def write(
        self,
        frame: np.ndarray,
        *,
        action: Sequence[float] | None = None,
        state: dict[str, Any] | None = None,
        t_mono: float | None = None,
        t_wall: float | None = None,
        source_index: int | None = None,
    ) -> FrameRecord:
        """Append one RGB uint8 (H, W, 3) frame; returns its record once it is safely listed.

        ``source_index``: the frame's position in the source's stream (file, folder and synth
        sources), listed so a resumed recording continues after it (:func:`last_source_index`).

        Raises:
            RecordingDiskFullError: no space left; the frame is not listed, earlier ones are intact.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
        index = self.count
        name = f"{index:06d}.{self.fmt}"
        final = self._frames_dir / name
        tmp = self._frames_dir / f".{name}.tmp"
        t_mono = time.monotonic() if t_mono is None else t_mono
        t_wall = time.time() if t_wall is None else t_wall
        line: dict[str, Any] = {"file": f"{_FRAMES}/{name}", "t_mono": t_mono, "t_wall": t_wall}
        if action is not None:
            line["action"] = [float(a) for a in action]
        if state is not None:
            line["state"] = state
        if source_index is not None:
            line["source_index"] = int(source_index)
        payload = (json.dumps(line) + "\n").encode()
        try:
            data = encode_image(frame, fmt=self.fmt, quality=self.quality)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            self._manifest.write(payload)
            self._manifest.flush()
            if self.durable:
                os.fsync(self._manifest.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # the line may be partly in the buffer: drop it so the manifest stays whole
                self._recover_manifest()
                raise RecordingDiskFullError(
                    exc.errno, f"disk full while writing {final}; {self.count} frame(s) kept in {self.path}"
                ) from exc
            raise
        self.count += 1
        return FrameRecord(index, line["file"], final, t_mono, t_wall,
                           tuple(line["action"]) if "action" in line else None, state)

    def close(self, status: str = "complete", message: str | None = None) -> None:
        """Flush and close the manifest; record the frame count, the ending (``status``: complete,
        interrupted, camera_lost, disk_full, error) and its ``message`` in ``session.json``."""
        if message is not None:
            self.extra["end_message"] = message
        if self._manifest.closed:
            return
        with contextlib.suppress(OSError):
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
        self._manifest.close()
        with contextlib.suppress(OSError):
            self._write_session_json(status=status)

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close(status="complete")
        else:
            self.close(status="error", message=f"{getattr(exc_type, '__name__', exc_type)}: {exc}")

    # -- internals ---------------------------------------------------------------------------
    def _recover_manifest(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._manifest.close()
        _, good_len = _read_manifest_lines(self._manifest_path)
        with contextlib.suppress(OSError), open(self._manifest_path, "rb+") as fh:
            fh.truncate(good_len)
        self._manifest = open(self._manifest_path, "ab")  # noqa: SIM115

    def _write_session_json(self, *, status: str) -> None:
        path = self.path / _SESSION
        prev = _read_session_json(path)
        info = {
            "format_version": FORMAT_VERSION,
            "tool": "sim2real-translate",
            "tool_version": __version__,
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "channel_order": "RGB",
            "source_channel_order": self.source_channel_order,
            "fps": self.fps,
            "frame_format": self.fmt,
            "created": prev.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "host": platform.node(),
            "status": status,
            "frames": self.count,
            **self.extra,
        }
        atomic_write_json(path, info)
