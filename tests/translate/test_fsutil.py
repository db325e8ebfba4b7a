"""Tests for translate.fsutil: atomic writes and path containment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from translate.fsutil import (
    PathEscapeError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    safe_join,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]


def test_atomic_path_failure_keeps_old_file(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text().strip().startswith("{")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]


def test_safe_join_rejects_escapes(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "frames/000001.jpg") == (tmp_path / "frames/000001.jpg").resolve()
    for bad in ("../x.jpg", "frames/../../x.jpg", "/etc/passwd"):
        with pytest.raises(PathEscapeError, match="frame"):
            safe_join(tmp_path, bad, what="frame")


def test_safe_join_rejects_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathEscapeError):
        safe_join(root, "link/x.png")
