"""The paired-folder format: real frames with their sim partners (matching stems or a manifest.jsonl) and reference actions."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from translate.fsutil import safe_join
from translate.imageio import DataFolderError, list_images

__all__ = ["PairedSample", "PairingError", "find_paired_samples"]

log = logging.getLogger(__name__)


class PairingError(ValueError):
    """Paired data is inconsistent (partners missing, bad manifest line). The message names them."""


@dataclass(frozen=True)
class PairedSample:
    """A real frame, its sim partner (same scene state) and, when known, the reference action.

    Attributes:
        stem: the shared file stem (frame id).
        real: path of the real frame.
        sim: path of the sim frame, or None for unlabelled real-only sets.
        action: reference action (e.g. the expert's wheel commands), or None.
        state: free-form scene state, or None.
    """

    stem: str
    real: Path
    sim: Path | None
    action: tuple[float, ...] | None = None
    state: dict[str, Any] | None = None


def _from_manifest(root: Path, manifest: Path) -> list[PairedSample]:
    samples: list[PairedSample] = []
    for lineno, raw in enumerate(manifest.read_text().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PairingError(f"{manifest}: line {lineno} is not valid JSON ({exc.msg})") from exc
        if "real" not in obj:
            raise PairingError(f"{manifest}: line {lineno} has no 'real' entry")
        where = f"{manifest.name} line {lineno}"
        real = safe_join(root, obj["real"], what=f"{where}: real")
        sim = safe_join(root, obj["sim"], what=f"{where}: sim") if obj.get("sim") else None
        action = obj.get("action")
        samples.append(
            PairedSample(
                stem=str(obj.get("stem", Path(obj["real"]).stem)),
                real=real,
                sim=sim,
                action=tuple(float(a) for a in action) if action is not None else None,
                state=obj.get("state"),
            )
        )
    return samples


def find_paired_samples(
    root: str | os.PathLike[str],
    *,
    on_missing: Literal["skip", "raise"] = "skip",
    require_sim: bool = True,
) -> tuple[list[PairedSample], list[str]]:
    """List the pairs of a paired folder: ``ROOT/manifest.jsonl`` if present, else matching stems.

    The manifest lists one JSON object per line: ``{"stem", "real", "sim", "action", "state"}``
    with paths relative to ROOT (they must stay inside it). Without a manifest, ``ROOT/real/X.*``
    is paired with ``ROOT/sim/X.*``.

    Args:
        root: the paired folder.
        on_missing: what to do when a frame has no partner on disk: ``"skip"`` reports and drops
            it, ``"raise"`` stops with a :class:`PairingError` naming the stems.
        require_sim: when False, real frames without a sim partner are kept with ``sim=None``.

    Returns:
        ``(samples, problems)``: the usable samples sorted by stem, and one line per skipped item.

    Raises:
        DataFolderError: ROOT or its real/ folder is missing or empty.
        PairingError: with ``on_missing="raise"``, or when nothing usable remains.
    """
    r = Path(root)
    if not r.is_dir():
        raise DataFolderError(f"paired data folder {r} does not exist")
    manifest = r / "manifest.jsonl"
    if manifest.exists():
        candidates = _from_manifest(r, manifest)
        if not candidates:
            raise PairingError(f"{manifest} lists no frames")
    else:
        reals = {p.stem: p for p in list_images(r / "real", what="paired real folder")}
        sims: dict[str, Path] = {}
        if (r / "sim").is_dir():
            sims = {p.stem: p for p in list_images(r / "sim", what="paired sim folder")}
        elif require_sim:
            raise DataFolderError(f"paired data folder {r} has no sim/ folder")
        candidates = [PairedSample(s, reals[s], sims.get(s)) for s in sorted(reals)]
    problems: list[str] = []
    if not manifest.exists():
        problems += [f"{s}: missing real partner" for s in sorted(set(sims) - set(reals))]
    samples: list[PairedSample] = []
    for s in candidates:
        missing = []
        if not s.real.is_file():
            missing.append(f"real {s.real}")
        if s.sim is None:
            if require_sim:
                missing.append("sim partner")
        elif not s.sim.is_file():
            missing.append(f"sim {s.sim}")
        if missing:
            problems.append(f"{s.stem}: missing {' and '.join(missing)}")
        else:
            samples.append(s)
    if problems:
        msg = f"{len(problems)} pair(s) in {r} have missing partners: " + "; ".join(problems[:5])
        if on_missing == "raise":
            raise PairingError(msg)
        log.warning(msg + ("; ..." if len(problems) > 5 else ""))
    if not samples:
        raise PairingError(f"paired data folder {r} has no complete pairs")
    return samples, problems
