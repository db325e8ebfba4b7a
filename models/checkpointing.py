"""Atomic, weights-only checkpoint I/O for Lightning, and resolution of ``ckpt_path=last``."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from translate.fsutil import atomic_write_bytes

__all__ = ["AtomicCheckpointIO", "SaveLastOnTrainEnd", "load_checkpoint", "resolve_ckpt_path"]


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    Raises:
        FileNotFoundError: naming the path.
        ValueError: the file is not a weights-only checkpoint (e.g. truncated or pickled objects).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / unsafe files
        raise ValueError(f"cannot load checkpoint {p}: {exc}") from exc


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file in the same folder, fsynced, then renamed; read weights-only.

    A run killed while saving keeps the previous complete ``last.ckpt``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(path, buf.getvalue())

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | os.PathLike[str]) -> str | None:
    """Resolve ``ckpt_path`` for ``trainer.fit``.

    Args:
        ckpt_path: None (fresh run), ``"last"`` (this run folder's ``checkpoints/last.ckpt``) or
            an explicit path.
        run_dir: the run folder.

    Returns:
        A path to an existing checkpoint, or None.

    Raises:
        FileNotFoundError: ``last`` was asked for but the run folder has no ``last.ckpt``, or an
            explicit path does not exist; the message names the path looked for.
    """
    if ckpt_path in (None, "", "null", "none"):
        return None
    if ckpt_path == "last":
        p = Path(run_dir) / "checkpoints" / "last.ckpt"
        if not p.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: no checkpoint at {p}; start a fresh run (drop ckpt_path) or "
                "set run_dir= to the folder of the run to resume"
            )
        return str(p)
    p = Path(ckpt_path)
    if not p.is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint {p} does not exist")
    return str(p)


class SaveLastOnTrainEnd(Callback):
    """Write ``last.ckpt`` when training ends normally (max_steps / max_epochs reached).

    ``ModelCheckpoint`` saves every N steps and at epoch ends; a run that stops mid-epoch would
    otherwise lose its final steps. Not called on exceptions, so a run stopped by a non-finite
    loss keeps the last good checkpoint.
    """

    def __init__(self, dirpath: str | os.PathLike[str]) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.save_checkpoint(str(self.path))
