"""Record robot camera frames (+ optional teleop actions) into a crash-safe recording session."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from translate.fsutil import atomic_write_bytes
from translate.recording import RecordingDiskFullError, SessionWriter, last_source_index
from translate.sources import (
    CameraLostError,
    CameraOpenError,
    Frame,
    FrameSource,
    read_with_reconnect,
)
from translate.teleop import ActionSource

__all__ = ["EXIT_CODES", "main", "record"]

log = logging.getLogger("record_real")

#: Process exit code per final status (``interrupted`` is how a camera recording normally ends).
EXIT_CODES = {"complete": 0, "interrupted": 0, "error": 1, "disk_full": 2, "camera_lost": 3}


class _StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current frame; a second SIGINT leaves now."""

    def __init__(self) -> None:
        self.stop = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum: int, _frame: Any) -> None:
            if self.stop and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop = True
            self.signal_name = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Pacer:
    """The fps cap: live sources skip early frames, files and renderers are slowed down."""

    def __init__(self, fps: float | None, live: bool, camera_fps: float | None) -> None:
        self.period = 1.0 / fps if fps else None
        self.live = live
        cam_period = 1.0 / camera_fps if camera_fps else (self.period or 0.0) / 4
        # a frame up to half a camera period early still counts as on time (capture jitter)
        self.tolerance = 0.5 * min(self.period or 0.0, cam_period)
        self.next_due: float | None = None

    def admit(self, t: float) -> bool:
        """True if the frame that arrived at ``t`` should be recorded (live sources)."""
        if self.period is None:
            return True
        if self.next_due is not None and t < self.next_due - self.tolerance:
            return False
        if self.next_due is None or t > self.next_due + self.period:
            self.next_due = t + self.period  # first frame, or fell behind: no burst to catch up
        else:
            self.next_due += self.period
        return True

    def wait(self) -> None:
        """Sleep until the next frame is due (non-live sources)."""
        if self.period is None:
            return
        now = time.monotonic()
        if self.next_due is not None and now < self.next_due:
            time.sleep(self.next_due - now)
            now = self.next_due
        if self.next_due is None or now > self.next_due + self.period:
            self.next_due = now + self.period
        else:
            self.next_due += self.period


class _LiveLine:
    """A carriage-return status line on stderr: frames written, fps, dropped and skipped frames."""

    def __init__(self, enabled: bool, interval: float = 0.25) -> None:
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0
        self._shown = False
        self._times: list[float] = []

    def update(self, written: int, dropped: int, skipped: int, extra: str = "",
               force: bool = False) -> None:
        now = time.monotonic()
        self._times.append(now)
        self._times = self._times[-30:]
        if not self.enabled or (not force and now - self._last < self.interval):
            return
        self._last = now
        span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
        fps = (len(self._times) - 1) / span if span > 0 else 0.0
        text = (f"\rrecording: {written} frames  {fps:5.1f} fps  dropped {dropped}  "
                f"skipped {skipped}" + (f"  {extra}" if extra else ""))
        sys.stderr.write(text + "\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _write_camera_yaml(cfg: DictConfig, source: FrameSource, out: Path, resume: bool) -> None:
    target = out / "camera.yaml"
    if resume and target.exists():
        return
    if cfg.get("camera_yaml"):
        src = Path(str(cfg.camera_yaml))
        if not src.is_file():
            raise FileNotFoundError(f"camera_yaml {src} does not exist")
        atomic_write_bytes(target, src.read_bytes())
    elif getattr(source, "camera_rig", None) is not None:
        source.camera_rig.save(target)


def record(cfg: DictConfig) -> dict[str, Any]:
    """Record frames (and actions) from ``cfg.source`` into the session folder ``cfg.out``.

    Stops at the end of the stream, after ``cfg.frames`` frames or ``cfg.duration`` seconds, on
    SIGINT / SIGTERM (after the current frame: status ``interrupted``), when the camera stays lost
    through the reconnect tries (``camera_lost``) or the disk fills (``disk_full``). Every frame
    the manifest lists is complete whatever happens (SessionWriter writes, fsyncs and renames each
    frame before listing it), so even a SIGKILL leaves a readable session; ``resume=true``
    appends to it.

    Args:
        cfg: the composed ``configs/record.yaml``.

    Returns:
        ``{"session", "status", "exit_code", "message", "written", "total", "dropped",
        "skipped", "seconds"}``; ``exit_code`` per :data:`EXIT_CODES`.
    """
    out = Path(str(cfg.out))
    every_cfg = cfg.get("every_nth")
    every = 1 if every_cfg is None else int(every_cfg)
    if every < 1:
        raise ValueError(f"every_nth must be >= 1, got {every}")
    source: FrameSource = hydra.utils.instantiate(cfg.source, _convert_="all")
    actions: ActionSource = hydra.utils.instantiate(cfg.actions, _convert_="all")
    motors = None
    if cfg.get("drive"):
        from translate.pipeline import JetbotSink

        motors = JetbotSink(max_speed=float(cfg.max_speed))
    rc = cfg.reconnect
    live_opt = str(cfg.get("live", "auto")).lower()
    live = _LiveLine(live_opt == "true" or (live_opt == "auto" and sys.stderr.isatty()))
    writer: SessionWriter | None = None
    status, message = "complete", "end of stream"
    written = dropped = skipped = delivered = 0
    resume_after = last_source_index(out) if cfg.resume else None
    last_t: float | None = None
    t_start = time.monotonic()

    def on_retry(attempt: int, tries: int, wait: float, exc: Exception) -> None:
        live.finish()
        log.warning("%s — reconnecting in %.1f s (try %d/%d)", exc, wait, attempt, tries)

    try:
        with _StopSignals() as sig, contextlib.ExitStack() as stack:
            try:
                stack.enter_context(source)
            except CameraOpenError as exc:
                return _result(out, "error", str(exc), 0, None, 0, 0, t_start)
            stack.enter_context(actions)
            pacer = _Pacer(cfg.get("fps"), source.live, source.nominal_fps)
            while True:
                if sig.stop:
                    status, message = "interrupted", f"stopped by {sig.signal_name}"
                    break
                if cfg.get("frames") is not None and written >= int(cfg.frames):
                    message = f"{written} frames recorded"
                    break
                elapsed = time.monotonic() - t_start
                if cfg.get("duration") is not None and elapsed >= float(cfg.duration):
                    message = f"{cfg.duration} s recorded"
                    break
                if not source.live and cfg.get("pace_files"):
                    pacer.wait()
                try:
                    frame: Frame | None = read_with_reconnect(
                        source, tries=int(rc.tries), backoff_s=float(rc.backoff_s),
                        max_backoff_s=float(rc.max_backoff_s), on_retry=on_retry,
                        should_stop=lambda: sig.stop)
                except CameraLostError as exc:
                    status, message = "camera_lost", str(exc)
                    break
                if frame is None:
                    break
                delivered += 1
                src_index = delivered - 1
                if not source.live and resume_after is not None and src_index <= resume_after:
                    continue  # recorded before the interruption: continue after it
                if source.live and source.nominal_fps and last_t is not None:
                    dropped += max(0, round((frame.t_mono - last_t) * source.nominal_fps) - 1)
                last_t = frame.t_mono
                if (delivered - 1) % every or (source.live and not pacer.admit(frame.t_mono)):
                    skipped += 1
                    continue
                action = actions.action_for(frame)
                if motors is not None and action is not None:
                    motors.robot.set_motors(*motors.motor_values(action))
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = SessionWriter(
                        out, source=source.describe(), width=w, height=h,
                        source_channel_order=source.channel_order,
                        fps=float(cfg.fps) if cfg.get("fps") else source.nominal_fps,
                        fmt=str(cfg.format), quality=int(cfg.quality), resume=bool(cfg.resume),
                        durable=bool(cfg.durable),
                        extra={"source_info": source.info(), "action_source": actions.describe(),
                               "every_nth": every, "dropped_frames": 0, "skipped_frames": 0})
                    _write_camera_yaml(cfg, source, out, bool(cfg.resume))
                writer.write(frame.image, action=action, state=frame.state,
                             t_mono=frame.t_mono, t_wall=frame.t_wall,
                             source_index=None if source.live else src_index)
                written += 1
                live.update(written, dropped, skipped, actions.status())
    except RecordingDiskFullError as exc:
        status = "disk_full"
        message = f"{exc} — free some space, then continue with resume=true"
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by a second SIGINT"
    except BaseException as exc:  # recorded as the session's ending, then raised
        status, message = "error", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        live.finish()
        if motors is not None:
            with contextlib.suppress(Exception):
                motors.stop()
        if writer is not None:
            writer.extra.update(dropped_frames=dropped, skipped_frames=skipped)
            writer.close(status=status, message=message)
    return _result(out, status, message, written, writer, dropped, skipped, t_start)


def _result(out: Path, status: str, message: str, written: int, writer: SessionWriter | None,
            dropped: int, skipped: int, t_start: float) -> dict[str, Any]:
    seconds = time.monotonic() - t_start
    total = writer.count if writer is not None else 0
    code = EXIT_CODES[status]
    line = (f"{status}: {message}; {written} frame(s) written this run, {total} in {out} "
            f"({dropped} dropped, {skipped} skipped, {seconds:.1f} s)")
    if code:
        # the program's name, not "error: " again ("error: error: ..." when the status is error);
        # the console gets it once (session.json records the ending)
        log.debug(line)
        print(f"record_real.py: {line}", file=sys.stderr, flush=True)
    else:
        print(line, flush=True)
    return {"session": str(out), "status": status, "exit_code": code, "message": message,
            "written": written, "total": total, "dropped": dropped, "skipped": skipped,
            "seconds": seconds}


@hydra.main(version_base="1.3", config_path="configs", config_name="record")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: ``python record_real.py source=usb out=data/recordings/run1``."""
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    try:
        result = record(cfg)
    except (ValueError, OSError) as exc:  # OSError: also an unwritable frame or manifest
        print(f"record_real.py: error: {exc}", file=sys.stderr)
        sys.exit(1)
    if result["exit_code"]:
        sys.exit(result["exit_code"])


def check_source_choice(argv: list[str], configs: Path | None = None) -> str | None:
    """The one-line error for ``source=NAME`` naming no config in ``configs/source/`` (Hydra's own
    is a dozen lines), or None when the choice is known or not given."""
    folder = configs or Path(__file__).resolve().parent / "configs" / "source"
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    for arg in argv:
        if arg.startswith("source="):
            name = arg.split("=", 1)[1]
            if name not in known:
                return (f"record_real.py: error: unknown frame source {name!r}; choose one of "
                        f"{', '.join(known)} (a file or folder: source=video|folder source.path=PATH)")
    return None


if __name__ == "__main__":
    bad = check_source_choice(sys.argv[1:])
    if bad:
        print(bad, file=sys.stderr)
        sys.exit(1)
    main()
