"""Evaluation sets: paired folders, recording sessions or unlabelled real frames (paths, reference actions, camera.yaml)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translate.camera import CameraCorrection, resolve_camera_setting
from translate.eval_translators import Translator
from translate.imageio import DataFolderError, list_images
from translate.pairs import find_paired_samples

__all__ = [
    "EvalDataError",
    "EvalSet",
    "eval_set_from_folder",
    "eval_set_from_pairs",
    "eval_set_from_session",
    "load_eval_set",
    "resolve_camera",
]


class EvalDataError(ValueError):
    """The evaluation set is unusable (empty, unlabelled without sim frames, mixed frame sizes)."""


@dataclass
class EvalSet:
    """The frames an evaluation runs on (paths only; decoding happens in chunks).

    Attributes:
        kind: ``paired`` (real + sim partners), ``session`` (a recording session) or
            ``unlabelled`` (a folder of real frames).
        root: the data folder.
        stems: a frame id per real frame.
        real_paths: the real frames.
        sim_paths: the paired sim frames (same order), or None.
        sim_ref_paths: an unpaired set of sim frames (distribution metrics), or None.
        actions: reference actions per real frame (manifest / teleop), or None.
        action_source: where ``actions`` came from (``manifest``, ``session``), or None.
        camera_yaml: a camera.yaml found with the data, or None.
        problems: pairs or frames left out while listing (missing partners, missing actions).
        n_listed: frames listed before ``max_frames``.
    """

    kind: str
    root: Path
    stems: list[str]
    real_paths: list[Path]
    sim_paths: list[Path] | None = None
    sim_ref_paths: list[Path] | None = None
    actions: np.ndarray | None = None
    action_source: str | None = None
    camera_yaml: Path | None = None
    problems: list[str] = field(default_factory=list)
    n_listed: int = 0

    def __len__(self) -> int:
        return len(self.real_paths)



def _truncate(es: EvalSet, max_frames: int | None) -> EvalSet:
    es.n_listed = len(es.real_paths)
    if max_frames is None:
        return es
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or null; got {max_frames}")
    es.stems = es.stems[:max_frames]
    es.real_paths = es.real_paths[:max_frames]
    if es.sim_paths is not None:
        es.sim_paths = es.sim_paths[:max_frames]
    if es.actions is not None:
        es.actions = es.actions[:max_frames]
    return es


def _actions_of(items: Sequence[Sequence[float] | None], where: str
                ) -> tuple[np.ndarray | None, list[str]]:
    have = [a is not None for a in items]
    if items and all(have):
        lengths = {len(a) for a in items if a is not None}
        if len(lengths) != 1:
            raise EvalDataError(f"{where}: reference actions have different lengths "
                                f"{sorted(lengths)}")
        return np.asarray(items, dtype=np.float64), []
    if any(have):
        k = len(have) - sum(have)
        return None, [f"{k} of {len(items)} frames have no reference action in {where}: action "
                      "metrics against the references are skipped"]
    return None, []


def _camera_near(folder: Path) -> Path | None:
    return resolve_camera_setting("auto", [folder / "camera.yaml", folder.parent / "camera.yaml"])


def eval_set_from_pairs(
    root: str | os.PathLike[str],
    samples: Sequence[Any],
    problems: Sequence[str] = (),
    *,
    max_frames: int | None = None,
) -> EvalSet:
    """An evaluation set from listed pairs (e.g. :func:`translate.pairs.find_paired_samples`).

    Args:
        root: the paired folder.
        samples: objects with ``stem``, ``real``, ``sim`` (Path or None) and ``action``.
        problems: pairing problems already found (reported as they are).
        max_frames: keep the first N.

    Returns:
        A ``paired`` set when every sample has a sim partner; samples without one are left out
        (and reported) unless none has one, which gives a labelled ``unlabelled`` set.

    Raises:
        EvalDataError: no samples.
    """
    r = Path(root)
    probs = list(problems)
    if not samples:
        raise EvalDataError(f"the evaluation set is empty: {r} lists no frames")
    with_sim = [s for s in samples if s.sim is not None]
    if with_sim and len(with_sim) < len(samples):
        probs += [f"{s.stem}: no sim partner (left out)" for s in samples if s.sim is None]
        samples = with_sim
    actions, notes = _actions_of([s.action for s in samples], f"{r}/manifest.jsonl")
    es = EvalSet(
        kind="paired" if with_sim else "unlabelled",
        root=r,
        stems=[str(s.stem) for s in samples],
        real_paths=[Path(s.real) for s in samples],
        sim_paths=[Path(s.sim) for s in samples] if with_sim else None,
        actions=actions,
        action_source="manifest" if actions is not None else None,
        camera_yaml=_camera_near(r),
        problems=probs + notes,
    )
    return _truncate(es, max_frames)


def eval_set_from_session(
    root: str | os.PathLike[str], *, max_frames: int | None = None
) -> EvalSet:
    """An evaluation set from a recording session (reference actions from its manifest).

    Raises:
        EvalDataError: the session lists no frames.
    """
    from translate.recording import RecordingSession

    session = RecordingSession(root)
    if len(session) == 0:
        raise EvalDataError(
            f"the evaluation set is empty: recording session {session.root} lists no frames"
        )
    actions, notes = _actions_of([f.action for f in session],
                                 str(session.root / "manifest.jsonl"))
    es = EvalSet(
        kind="session",
        root=session.root,
        stems=[Path(f.file).stem for f in session],
        real_paths=[f.path for f in session],
        actions=actions,
        action_source="session" if actions is not None else None,
        camera_yaml=session.camera_yaml or _camera_near(session.root),
        problems=notes,
    )
    return _truncate(es, max_frames)


def eval_set_from_folder(
    folder: str | os.PathLike[str], *, max_frames: int | None = None
) -> EvalSet:
    """An unlabelled evaluation set: the images of a folder (sorted by name).

    Raises:
        DataFolderError: the folder is missing or holds no images.
    """
    f = Path(folder)
    real = list_images(f, what="unlabelled real frames folder")
    es = EvalSet(kind="unlabelled", root=f, stems=[p.stem for p in real], real_paths=real,
                 camera_yaml=_camera_near(f))
    return _truncate(es, max_frames)


def load_eval_set(
    data: str | os.PathLike[str],
    *,
    sim_data: str | os.PathLike[str] | None = None,
    max_frames: int | None = None,
) -> EvalSet:
    """List an evaluation set: a paired folder, a recording session or unlabelled real frames.

    - session: ``DATA/session.json`` or a ``manifest.jsonl`` with ``file`` entries;
    - paired: ``DATA/manifest.jsonl`` with ``real`` (+ ``sim``, ``action``) entries, or
      ``DATA/real`` + ``DATA/sim`` with matching stems (:func:`translate.pairs.find_paired_samples`;
      real frames without a sim partner are reported, not fatal);
    - unlabelled: ``DATA/real`` alone or a plain folder of frames; needs ``sim_data``.

    Args:
        data: the data folder.
        sim_data: a folder of sim frames (or one holding ``sim/``): the reference distribution
            for sets without paired sim frames.
        max_frames: keep the first N frames.

    Returns:
        The set.

    Raises:
        DataFolderError: a folder is missing or empty (named).
        EvalDataError: an empty set, or one without any sim frames to compare with.
    """
    root = Path(data)
    if not root.exists():
        raise DataFolderError(f"evaluation data {root} does not exist")
    if not root.is_dir():
        raise DataFolderError(f"evaluation data {root} is not a folder")
    manifest = root / "manifest.jsonl"
    first: dict[str, Any] | None = None
    if manifest.is_file():
        with open(manifest, encoding="utf-8") as fh:
            line = next((ln for ln in fh if ln.strip()), None)
        if line is None:
            raise EvalDataError(f"the evaluation set is empty: {manifest} lists no frames")
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(line)
            first = obj if isinstance(obj, dict) else None
    if (root / "session.json").is_file() or (first is not None and "file" in first):
        es = eval_set_from_session(root, max_frames=max_frames)
    elif manifest.is_file() or ((root / "real").is_dir() and (root / "sim").is_dir()):
        samples, problems = find_paired_samples(root, on_missing="skip", require_sim=False)
        es = eval_set_from_pairs(root, samples, problems, max_frames=max_frames)
    else:
        folder = root / "real" if (root / "real").is_dir() else root
        es = eval_set_from_folder(folder, max_frames=max_frames)
    if sim_data is not None:
        if es.sim_paths is not None:
            es.problems.append(f"sim_data {sim_data} ignored: {root} has paired sim frames")
        else:
            ref = _sim_folder(sim_data)
            es.sim_ref_paths = ref[:max_frames] if max_frames else ref
    if es.sim_paths is None and es.sim_ref_paths is None and es.actions is None:
        raise EvalDataError(
            f"{root} holds unlabelled real frames (no sim partners, no reference actions): give "
            "sim_data=<folder of sim frames> to compare distributions"
        )
    return es


def _sim_folder(sim_data: str | os.PathLike[str]) -> list[Path]:
    p = Path(sim_data)
    if p.is_dir() and (p / "sim").is_dir():
        p = p / "sim"
    return list_images(p, what="sim_data folder")


def resolve_camera(
    camera: str | os.PathLike[str] | CameraCorrection | None,
    eval_set: EvalSet,
    translators: Sequence[Translator] = (),
) -> tuple[CameraCorrection | None, str | None]:
    """The lens correction to apply before the translators.

    Args:
        camera: ``"auto"`` (the data's camera.yaml — in the data folder or its parent — else
            the first translator's exported correction), ``"none"``/None (no correction), a
            camera.yaml path, or a correction.
        eval_set: the set (for ``auto``).
        translators: the translators (for ``auto``).

    Returns:
        ``(correction or None, where it came from)``.
    """
    if isinstance(camera, CameraCorrection):
        return camera, "given"
    path = resolve_camera_setting(camera, [eval_set.camera_yaml])
    if path is not None:
        return CameraCorrection.from_yaml(path), str(path)
    if str(camera).strip().lower() == "auto":
        for t in translators:
            meta = getattr(t, "camera_correction", None)
            if meta:
                return CameraCorrection.from_dict(meta, where=f"translator {t.name} metadata"), (
                    f"translator {t.name} metadata"
                )
    return None, None
