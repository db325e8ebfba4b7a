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


def test_check_writable_dir_names_the_folder(tmp_path: Path) -> None:
    import os

    from translate.fsutil import OutputFolderError, check_writable_dir

    assert check_writable_dir(tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match=r"cannot write the output folder .*file/run: Not a directory"):
        check_writable_dir(tmp_path / "file" / "run")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputFolderError, match="Permission denied"):
            check_writable_dir(ro / "run")


def test_writable_output_callback_exits_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from translate.fsutil import WritableOutputCheck

    cb = WritableOutputCheck("prog.py", "set out= to a writable folder")
    cb.on_job_start(config=None, task_function=None)  # every other Hydra hook is a no-op
    cb.on_run_start(SimpleNamespace(hydra=SimpleNamespace(run=SimpleNamespace(dir=str(tmp_path / "ok")))))
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as exc:
        cb.on_run_start(SimpleNamespace(hydra=SimpleNamespace(run=SimpleNamespace(dir=str(tmp_path / "f" / "x")))))
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prog.py: error: cannot write the output folder") and err.endswith("(set out= to a writable folder)")
