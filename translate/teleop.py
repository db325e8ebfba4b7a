"""Action sources recorded with each frame: none, keyboard teleop in a terminal, an action file."""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import logging
import os
import select
import sys
import time
from bisect import bisect_right
from pathlib import Path
from typing import IO, Any

from translate.sources import Frame

__all__ = [
    "ActionFile",
    "ActionFileError",
    "ActionSource",
    "FrameActions",
    "KEY_HELP",
    "KeyboardTeleop",
    "decode_keys",
]

log = logging.getLogger(__name__)


class ActionFileError(ValueError):
    """An action file is malformed; the message names the file and line."""


class ActionSource:
    """What is recorded as a frame's action. Subclasses override :meth:`action_for`.

    This base (``actions=none``) records the action the frame source itself provides (the
    synthetic world's expert action, a replayed session's action) and nothing for cameras.
    """

    kind = "none"

    def open(self) -> ActionSource:
        """Acquire resources (the terminal). Returns self."""
        return self

    def close(self) -> None:
        """Release them (restore the terminal)."""

    def action_for(self, frame: Frame) -> tuple[float, ...] | None:
        """The action to record with ``frame``, or None."""
        return frame.action

    def describe(self) -> str:
        """A short description for session.json."""
        return self.kind

    def status(self) -> str:
        """A few characters for the live line (e.g. the current teleop command)."""
        return ""

    def __enter__(self) -> ActionSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The frame source's own action (alias of the base class, for configs).
FrameActions = ActionSource


# --------------------------------------------------------------------------------------------------
# Keyboard teleop
# --------------------------------------------------------------------------------------------------

KEY_HELP = ("teleop: w/↑ forward  s/↓ back  a/← rotate left  d/→ rotate right  q/e arc left/right  "
            "space/x stop  +/- speed  (Ctrl-C ends the recording)")

_ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}
_KEYS = {"w": "up", "s": "down", "a": "left", "d": "right", "q": "arc_left", "e": "arc_right",
         " ": "stop", "x": "stop", "+": "faster", "=": "faster", "-": "slower"}


def decode_keys(data: str) -> tuple[list[str], str]:
    """Turn terminal input into key names; returns (keys, undecoded tail to prepend next time).

    Arrow keys arrive as ``ESC [ A`` (or ``ESC O A`` in application mode); a sequence cut at the
    end of ``data`` is returned as the tail. Unknown bytes are ignored.

    Example:
        >>> decode_keys("w\\x1b[Dx\\x1b[")
        (['up', 'left', 'stop'], '\\x1b[')
    """
    keys: list[str] = []
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            if i + 1 >= len(data) or (data[i + 1] in "[O" and i + 2 >= len(data)):
                return keys, data[i:]
            if data[i + 1] in "[O":
                name = _ARROWS.get(data[i + 2])
                if name:
                    keys.append(name)
                i += 3
                continue
            i += 1
            continue
        name = _KEYS.get(ch.lower())
        if name:
            keys.append(name)
        i += 1
    return keys, ""


class KeyboardTeleop(ActionSource):
    """Wheel commands ``(left, right)`` in [-1, 1] from the keyboard, read without blocking.

    The terminal is put in cbreak mode (keys arrive at once, unechoed; Ctrl-C still raises
    SIGINT) and restored on :meth:`close`, at exit and on SIGINT / SIGTERM through the recorder's
    clean shutdown. After a SIGKILL run ``stty sane`` (or ``reset``).

    Terminals send no key-release events, so commands latch: ``w`` drives forward until another
    key (space stops). With ``hold_s`` set, the command falls back to stop when no key arrived for
    that long (a dead-man switch; hold the key to keep going — keep it above the terminal's
    auto-repeat delay, ~0.5 s).

    Args:
        speed: forward / backward wheel command.
        turn: wheel command magnitude when rotating in place.
        hold_s: dead-man timeout (s), or None to latch.
        stream: the terminal to read (default ``sys.stdin``).
        print_help: print :data:`KEY_HELP` on open.
    """

    kind = "keyboard"

    def __init__(self, speed: float = 0.5, turn: float = 0.4, hold_s: float | None = None,
                 stream: IO[str] | None = None, print_help: bool = True) -> None:
        for name, v in (("speed", speed), ("turn", turn)):
            if not 0.0 < float(v) <= 1.0:
                raise ValueError(f"KeyboardTeleop: {name} must be in (0, 1], got {v}")
        self.speed = float(speed)
        self.turn = float(turn)
        self.hold_s = hold_s
        self._stream = stream
        self._fd: int | None = None
        self._saved: Any = None
        self._pending = ""
        self._command = (0.0, 0.0)
        self._mode = "stop"
        self._last_key = time.monotonic()
        self._print_help = print_help

    def describe(self) -> str:
        return f"keyboard(speed={self.speed}, turn={self.turn}, hold_s={self.hold_s})"

    def open(self) -> KeyboardTeleop:
        if self._fd is not None:
            return self
        stream = self._stream if self._stream is not None else sys.stdin
        self._fd = stream.fileno()
        if os.isatty(self._fd):
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            atexit.register(self.close)
            tty.setcbreak(self._fd)
        else:
            log.warning("keyboard teleop: stdin is not a terminal; reading keys from it anyway")
        if self._print_help:
            print(KEY_HELP, file=sys.stderr, flush=True)
        return self

    def close(self) -> None:
        """Restore the terminal (idempotent)."""
        if self._fd is not None and self._saved is not None:
            import termios

            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None
            atexit.unregister(self.close)
        self._fd = None

    def poll(self) -> tuple[float, float]:
        """Read the keys pressed since the last call (never blocks); returns the command."""
        if self._fd is None:
            self.open()
        assert self._fd is not None
        data = b""
        while select.select([self._fd], [], [], 0)[0]:
            chunk = os.read(self._fd, 1024)
            if not chunk:
                break
            data += chunk
        if data:
            keys, self._pending = decode_keys(self._pending + data.decode("utf-8", "replace"))
            for key in keys:
                self._apply(key)
        if (self.hold_s is not None and self._mode != "stop"
                and time.monotonic() - self._last_key > self.hold_s):
            self._set("stop")
        return self._command

    def _apply(self, key: str) -> None:
        self._last_key = time.monotonic()
        if key in ("faster", "slower"):
            step = 0.1 if key == "faster" else -0.1
            self.speed = min(1.0, max(0.1, round(self.speed + step, 2)))
            self.turn = min(1.0, max(0.1, round(self.turn + step, 2)))
            self._set(self._mode)
        else:
            self._set(key)

    def _set(self, mode: str) -> None:
        v, t = self.speed, self.turn
        commands = {
            "up": (v, v), "down": (-v, -v), "left": (-t, t), "right": (t, -t),
            "arc_left": (0.5 * v, v), "arc_right": (v, 0.5 * v), "stop": (0.0, 0.0),
        }
        self._mode = mode
        self._command = commands[mode]

    def action_for(self, frame: Frame) -> tuple[float, float]:
        return self.poll()

    def status(self) -> str:
        return f"{self._mode} ({self._command[0]:+.2f}, {self._command[1]:+.2f})"


# --------------------------------------------------------------------------------------------------
# Action file
# --------------------------------------------------------------------------------------------------

_TIME_KEYS = ("t", "time", "t_source", "timestamp", "t_wall", "t_mono")


def _floats(values: Any, where: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ActionFileError(f"{where}: action {values!r} is not a list of numbers") from exc
    if not out:
        raise ActionFileError(f"{where}: empty action")
    return out


class ActionFile(ActionSource):
    """Actions read from a JSONL or CSV file, aligned with frames by index or by time.

    JSONL: one object a line with ``action`` (a list) or the ``columns`` as keys, plus a time
    key when aligning by time; or a bare list a line. CSV: a header row naming the columns; the
    action is ``columns`` (default: every column but the time column). Without a header every
    column is numeric: the first is the time when aligning by time.

    Alignment: ``index`` gives frame *i* (counting every frame the source delivered) the *i*-th
    action; ``time`` gives each frame the last action at or before its time (zero-order hold,
    as a controller holds its command): with ``time_base="relative"`` the file's times count
    from its first line and the frame's from the source's start (a video's own timestamps), plus
    ``offset_s``; with ``time_base="wall"`` both are UNIX times. Frames before the first action
    or past the last (index) get none.

    Args:
        path: the ``.jsonl`` / ``.json`` / ``.csv`` file.
        align: ``index`` or ``time``.
        time_key: the time column / key (default: the first of t, time, t_source, timestamp,
            t_wall, t_mono that is present).
        columns: the action columns / keys, e.g. ``["left", "right"]``.
        time_base: ``relative`` or ``wall``.
        offset_s: added to the frame's time before the look-up.
    """

    kind = "file"

    def __init__(self, path: str | os.PathLike[str], align: str = "index",
                 time_key: str | None = None, columns: list[str] | None = None,
                 time_base: str = "relative", offset_s: float = 0.0) -> None:
        if align not in ("index", "time"):
            raise ValueError(f"ActionFile: align must be 'index' or 'time', got {align!r}")
        if time_base not in ("relative", "wall"):
            raise ValueError(
                f"ActionFile: time_base must be 'relative' or 'wall', got {time_base!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"action file not found: {self.path}")
        self.align = align
        self.time_base = time_base
        self.offset_s = float(offset_s)
        self._columns = list(columns) if columns else None
        self._time_key = time_key
        if self.path.suffix.lower() == ".csv":
            times, actions = self._read_csv()
        else:
            times, actions = self._read_jsonl()
        if not actions:
            raise ActionFileError(f"{self.path}: no actions")
        self.actions = actions
        self.times: list[float] = []
        if align == "time":
            if any(t is None for t in times):
                raise ActionFileError(
                    f"{self.path}: align=time needs a time on every line (key {self._time_key!r})")
            pairs = sorted(((float(t), a) for t, a in zip(times, actions, strict=True)
                            if t is not None), key=lambda p: p[0])
            t0 = pairs[0][0] if time_base == "relative" else 0.0
            self.times = [t - t0 for t, _ in pairs]
            self.actions = [a for _, a in pairs]
        self._warned = False

    def describe(self) -> str:
        return f"file:{self.path} (align={self.align})"

    def _pick_time_key(self, keys: list[str]) -> str | None:
        if self._time_key is not None:
            return self._time_key if self._time_key in keys else None
        return next((k for k in _TIME_KEYS if k in keys), None)

    def _read_jsonl(self) -> tuple[list[float | None], list[tuple[float, ...]]]:
        times: list[float | None] = []
        actions: list[tuple[float, ...]] = []
        text = self.path.read_text(encoding="utf-8")
        if self.path.suffix.lower() == ".json":
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ActionFileError(f"{self.path}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rows, list):
                raise ActionFileError(f"{self.path}: a .json action file must hold a list")
            items = [(i + 1, r) for i, r in enumerate(rows)]
        else:
            items = []
            for lineno, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ActionFileError(f"{self.path}: line {lineno} is not valid JSON "
                                          f"({exc.msg})") from exc
        for lineno, obj in items:
            where = f"{self.path}: line {lineno}"
            if isinstance(obj, list):
                times.append(None)
                actions.append(_floats(obj, where))
                continue
            if not isinstance(obj, dict):
                raise ActionFileError(f"{where}: expected an object or a list, got {obj!r}")
            if self._columns:
                missing = [c for c in self._columns if c not in obj]
                if missing:
                    raise ActionFileError(f"{where}: missing key(s) {missing}")
                actions.append(_floats([obj[c] for c in self._columns], where))
            elif "action" in obj:
                actions.append(_floats(obj["action"], where))
            elif "left" in obj and "right" in obj:
                actions.append(_floats([obj["left"], obj["right"]], where))
            else:
                raise ActionFileError(
                    f"{where}: no 'action' key (or 'left'/'right', or set columns=...)")
            key = self._pick_time_key(list(obj))
            if key is not None:
                self._time_key = key
            times.append(float(obj[key]) if key is not None else None)
        return times, actions

    def _read_csv(self) -> tuple[list[float | None], list[tuple[float, ...]]]:
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        if not rows:
            return [], []
        try:
            [float(c) for c in rows[0]]
            header = None
        except ValueError:
            header = [c.strip() for c in rows[0]]
            rows = rows[1:]
        times: list[float | None] = []
        actions: list[tuple[float, ...]] = []
        if header is None:
            for lineno, row in enumerate(rows, start=1):
                vals = _floats(row, f"{self.path}: row {lineno}")
                if self.align == "time":
                    times.append(vals[0])
                    actions.append(vals[1:])
                else:
                    times.append(None)
                    actions.append(vals)
            return times, actions
        tkey = self._pick_time_key(header)
        self._time_key = tkey
        cols = self._columns or [c for c in header if c != tkey]
        missing = [c for c in cols if c not in header]
        if missing:
            raise ActionFileError(f"{self.path}: column(s) {missing} not in the header {header}")
        idx = [header.index(c) for c in cols]
        tidx = header.index(tkey) if tkey is not None else None
        for lineno, row in enumerate(rows, start=2):
            where = f"{self.path}: line {lineno}"
            if len(row) < len(header):
                raise ActionFileError(f"{where}: {len(row)} columns, the header has {len(header)}")
            actions.append(_floats([row[i] for i in idx], where))
            times.append(_floats([row[tidx]], where)[0] if tidx is not None else None)
        return times, actions

    def action_for(self, frame: Frame) -> tuple[float, ...] | None:
        if self.align == "index":
            if frame.index < len(self.actions):
                return self.actions[frame.index]
            if not self._warned:
                log.warning("%s has %d actions; frames from %d on are recorded without one",
                            self.path, len(self.actions), frame.index)
                self._warned = True
            return None
        t = frame.t_wall if self.time_base == "wall" else frame.t_source
        if t is None:
            return None
        i = bisect_right(self.times, t + self.offset_s) - 1
        return self.actions[i] if i >= 0 else None
