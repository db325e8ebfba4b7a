"""Unpaired training folders (real/ + sim/ or trainA/ + trainB/); the paired format is translate.pairs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from translate.imageio import DataFolderError, list_images

__all__ = [
    "UNPAIRED_LAYOUTS",
    "resolve_unpaired_folders",
]

log = logging.getLogger(__name__)

#: (real, sim) folder names accepted under an unpaired training root, in order of preference.
UNPAIRED_LAYOUTS: tuple[tuple[str, str], ...] = (("real", "sim"), ("trainA", "trainB"))


def resolve_unpaired_folders(
    root: str | os.PathLike[str] | None = None,
    *,
    real_dir: str | os.PathLike[str] | None = None,
    sim_dir: str | os.PathLike[str] | None = None,
    split: Literal["train", "test"] = "train",
) -> tuple[Path, Path]:
    """Find the real and sim image folders of an unpaired dataset.

    Accepts ``ROOT/real`` + ``ROOT/sim`` or the CycleGAN convention ``ROOT/trainA`` (real) +
    ``ROOT/trainB`` (sim) (``testA``/``testB`` for ``split="test"``), or explicit folders.

    Args:
        root: dataset root, or None when both folders are given.
        real_dir, sim_dir: explicit folders (override the root's layout).
        split: which CycleGAN split to look for.

    Returns:
        ``(real_dir, sim_dir)``; both exist and hold images.

    Raises:
        DataFolderError: names the folder that is missing or empty and the layouts accepted.
    """
    if real_dir is None or sim_dir is None:
        if root is None:
            raise DataFolderError("give a dataset root or both real_dir and sim_dir")
        r = Path(root)
        if not r.is_dir():
            raise DataFolderError(f"dataset root {r} does not exist")
        layouts = UNPAIRED_LAYOUTS if split == "train" else (("real", "sim"), ("testA", "testB"))
        found = None
        for a, b in layouts:
            if (r / a).is_dir() or (r / b).is_dir():
                found = (r / a, r / b)
                break
        if found is None:
            names = " or ".join(f"{a}/ + {b}/" for a, b in layouts)
            raise DataFolderError(f"dataset root {r} has neither {names}")
        real_dir = real_dir if real_dir is not None else found[0]
        sim_dir = sim_dir if sim_dir is not None else found[1]
    real_p, sim_p = Path(real_dir), Path(sim_dir)
    list_images(real_p, what="real image folder")
    list_images(sim_p, what="sim image folder")
    return real_p, sim_p
