"""Tests for translate.teleop: key decoding, the terminal teleop on a pty, action files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from translate.sources import Frame
from translate.teleop import ActionFile, ActionFileError, ActionSource, KeyboardTeleop, decode_keys


def _frame(index: int = 0, t_source: float | None = None, action: tuple[float, ...] | None = None
           ) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), index, 0.0, 0.0, t_source, action)


def test_decode_keys() -> None:
    assert decode_keys("wasd") == (["up", "left", "down", "right"], "")
    assert decode_keys("\x1b[A\x1b[B\x1bOC\x1b[D") == (["up", "down", "right", "left"], "")
    assert decode_keys(" xW+-z") == (["stop", "stop", "up", "faster", "slower"], "")
    assert decode_keys("d\x1b") == (["right"], "\x1b")
    assert decode_keys("\x1b[") == ([], "\x1b[")


def test_frame_actions_pass_through() -> None:
    assert ActionSource().action_for(_frame(action=(0.1, 0.2))) == (0.1, 0.2)
    assert ActionSource().action_for(_frame()) is None


def test_keyboard_teleop_on_a_pty_restores_the_terminal() -> None:
    import pty
    import termios

    master, slave = pty.openpty()
    stream = os.fdopen(slave, "r")
    try:
        before = termios.tcgetattr(slave)
        tele = KeyboardTeleop(speed=0.5, turn=0.4, stream=stream, print_help=False).open()
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: keys come at once
        assert termios.tcgetattr(slave)[3] & termios.ISIG  # Ctrl-C still signals
        assert tele.poll() == (0.0, 0.0)
        os.write(master, b"w")
        time.sleep(0.05)
        assert tele.action_for(_frame()) == (0.5, 0.5)
        os.write(master, b"\x1b[D")
        time.sleep(0.05)
        assert tele.poll() == (-0.4, 0.4)
        os.write(master, b"+")
        time.sleep(0.05)
        assert tele.poll() == (-0.5, 0.5)
        os.write(master, b"\x1b")  # an arrow split across two reads
        time.sleep(0.05)
        tele.poll()
        os.write(master, b"[C")
        time.sleep(0.05)
        assert tele.poll() == (0.5, -0.5)
        os.write(master, b" ")
        time.sleep(0.05)
        assert tele.poll() == (0.0, 0.0) and "stop" in tele.status()
        tele.close()
        assert termios.tcgetattr(slave) == before
    finally:
        stream.close()
        os.close(master)


def test_keyboard_dead_man_switch() -> None:
    r, w = os.pipe()
    stream = os.fdopen(r, "r")
    try:
        tele = KeyboardTeleop(stream=stream, hold_s=0.05, print_help=False).open()
        os.write(w, b"w")
        assert tele.poll() == (0.5, 0.5)
        time.sleep(0.1)
        assert tele.poll() == (0.0, 0.0)
        tele.close()
    finally:
        stream.close()
        os.close(w)
    with pytest.raises(ValueError, match="speed"):
        KeyboardTeleop(speed=2.0)


def test_action_file_jsonl_by_index(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"action": [0.1, 0.2]}\n[0.3, 0.4]\n\n{"left": 0.5, "right": 0.6}\n')
    src = ActionFile(p)
    assert [src.action_for(_frame(i)) for i in range(4)] == [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6),
                                                              None]
    p.write_text('{"action": [0.1]}\n{"act": 1}\n')
    with pytest.raises(ActionFileError, match="line 2"):
        ActionFile(p)


def test_action_file_csv_by_time(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("time,left,right\n100.0,0.1,0.1\n100.5,0.2,-0.2\n101.0,0.3,0.3\n")
    src = ActionFile(p, align="time")
    got = [src.action_for(_frame(0, t)) for t in (-0.1, 0.0, 0.49, 0.5, 0.9, 5.0)]
    assert got == [None, (0.1, 0.1), (0.1, 0.1), (0.2, -0.2), (0.2, -0.2), (0.3, 0.3)]
    shifted = ActionFile(p, align="time", offset_s=0.5)
    assert shifted.action_for(_frame(0, 0.0)) == (0.2, -0.2)
    wall = ActionFile(p, align="time", time_base="wall")
    f = Frame(np.zeros((2, 2, 3), np.uint8), 0, 0.0, 100.7)
    assert wall.action_for(f) == (0.2, -0.2)
    headerless = tmp_path / "b.csv"
    headerless.write_text("0.0,1,2\n1.0,3,4\n")
    assert ActionFile(headerless, align="time").action_for(_frame(0, 1.2)) == (3.0, 4.0)
    assert ActionFile(headerless).action_for(_frame(1)) == (1.0, 3.0, 4.0)
    bad = tmp_path / "c.csv"
    bad.write_text("t,left,right\n0,1\n")
    with pytest.raises(ActionFileError, match="line 2"):
        ActionFile(bad)
    with pytest.raises(ActionFileError, match="needs a time"):
        (tmp_path / "d.jsonl").write_text("[1, 2]\n")
        ActionFile(tmp_path / "d.jsonl", align="time")
