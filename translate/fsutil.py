"""Atomic file writes and path-containment checks shared by every writer in the project."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "OutputFolderError",
    "PathEscapeError",
    "WritableOutputCheck",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_path",
    "check_writable_dir",
    "safe_join",
    "swap_folder_into_place",
]


class OutputFolderError(OSError):
    """An output folder cannot be created or written; the message names it and why."""


def check_writable_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) and prove a file can be written in it.

    Args:
        path: the folder.
        what: its name in the message, e.g. ``"run folder"``.

    Returns:
        The folder.

    Raises:
        OutputFolderError: it cannot be created or written (read-only, no permission, a file in
            the way); the message names the folder and the reason.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputFolderError(f"cannot write the {what} {p}: {exc.strerror or exc}") from exc
    return p


class WritableOutputCheck:
    """Hydra callback (``hydra.callbacks``): an output folder that cannot be written is refused in
    one line, naming it and the setting to change, before Hydra creates it (Hydra's own failure
    there is a traceback). Exits with code 1.

    Args:
        prog: the program's name for the message, e.g. ``"train_translate.py"``.
        hint: what to change, e.g. ``"set paths.runs_dir= or run_dir= to a writable folder"``.
    """

    def __init__(self, prog: str, hint: str) -> None:
        self.prog, self.hint = prog, hint

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        """Check ``hydra.run.dir`` (the program's output folder)."""
        try:
            check_writable_dir(str(config.hydra.run.dir))
        except OutputFolderError as exc:
            print(f"{self.prog}: error: {exc} ({self.hint})", file=sys.stderr)
            raise SystemExit(1) from None

    def __getattr__(self, name: str) -> Callable[..., None]:
        # Hydra calls every on_* hook; the others have nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class PathEscapeError(ValueError):
    """A relative path read from a manifest or config points outside the folder it belongs to."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic on POSIX:
    a reader sees either the old file or the complete new one, never a half-written file. If the
    block raises, the temporary file is removed and ``path`` is untouched.

    Example:
        >>> with atomic_path("model.onnx") as tmp:  # doctest: +SKIP
        ...     torch.onnx.export(model, x, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; outputs are meant to be copied and shared
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename). Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically. Returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def safe_join(root: str | os.PathLike[str], rel: str | os.PathLike[str], *, what: str = "path") -> Path:
    """Join ``rel`` onto ``root`` and check that the result stays inside ``root``.

    Absolute paths, ``..`` components that climb out and symlinks that resolve outside ``root``
    are rejected with :class:`PathEscapeError` naming the offending value.

    Args:
        root: the folder the path belongs to (a session, a dataset).
        rel: the relative path as read from a manifest or config.
        what: a word for the error message ("frame", "manifest entry").

    Returns:
        The resolved absolute path.
    """
    root_p = Path(root).resolve()
    rel_p = Path(rel)
    if rel_p.is_absolute():
        raise PathEscapeError(f"{what} {str(rel)!r} is absolute; it must be relative to {root_p}")
    full = (root_p / rel_p).resolve()
    if full != root_p and root_p not in full.parents:
        raise PathEscapeError(f"{what} {str(rel)!r} points outside its folder {root_p}")
    return full


def swap_folder_into_place(tmp: str | os.PathLike[str], out: str | os.PathLike[str],
                           keep_existing: Callable[[Path], bool]) -> None:
    """Rename a finished folder ``tmp`` onto ``out``; an old ``out`` is moved aside, then deleted.

    If ``keep_existing(out)`` says an ``out`` there is already complete (another process finished
    the same build meanwhile), ``tmp`` is deleted and ``out`` kept.

    Args:
        tmp: the finished build, next to ``out``.
        out: its final path.
        keep_existing: ``(out) -> bool``.
    """
    tmp_p, out_p = Path(tmp), Path(out)
    if out_p.exists():
        if keep_existing(out_p):
            shutil.rmtree(tmp_p, ignore_errors=True)
            return
        old = out_p.parent / f".{out_p.name}.partial-{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
        os.replace(out_p, old)
        os.replace(tmp_p, out_p)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_p, out_p)
