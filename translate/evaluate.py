"""Evaluation core: run raw → corrected → translated → sim frames through a frozen policy and score each stage."""

from __future__ import annotations

import contextlib
import datetime
import functools
import heapq
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from translate import __version__
from translate.camera import CameraCorrection, resolve_camera_setting
from translate.imageio import DataFolderError, OnError, list_images, read_images
from translate.metrics import (
    ChannelStats,
    Lpips,
    action_metrics,
    bootstrap_ci,
    channel_stats,
    check_input_contract,
    energy_distance,
    frechet_distance,
    kid,
    per_frame_abs_error,
    psnr,
    sliced_wasserstein,
    ssim,
    turn_agreement,
)
from translate.pairs import find_paired_samples
from translate.policy import Policy, preprocess

__all__ = [
    "METRIC_NAMES",
    "SCHEMA_VERSION",
    "EvalDataError",
    "EvalResult",
    "EvalSet",
    "EvalSettings",
    "FunctionTranslator",
    "IdentityTranslator",
    "OnnxTranslator",
    "TorchModuleTranslator",
    "Translator",
    "TranslatorOutputError",
    "check_thresholds",
    "evaluate_translators",
    "load_eval_set",
    "resize_frames",
    "resolve_camera",
]

log = logging.getLogger(__name__)

#: Version of the metrics.json layout (docs/metrics.md); bumped on incompatible changes.
SCHEMA_VERSION = 1

#: Metric keys of a stage (besides ``action_mae_<name>`` / ``action_rmse_<name>`` per action).
METRIC_NAMES: tuple[str, ...] = (
    "action_mae", "action_rmse", "action_cosine", "turn_agreement", "within_tolerance",
    "gap_closed", "psnr", "ssim", "lpips", "frechet_distance", "kid", "action_energy_distance",
    "action_sliced_wasserstein",
)


class EvalDataError(ValueError):
    """The evaluation set is unusable (empty, unlabelled without sim frames, mixed frame sizes)."""


class TranslatorOutputError(ValueError):
    """A translator returned something other than uint8 (N, H, W, 3) frames; the message says what."""


# --------------------------------------------------------------------------------------------------
# Translators
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class Translator(Protocol):
    """Anything that turns lens-corrected real frames into sim-looking frames.

    Required: ``name`` and ``__call__(frames) -> frames`` on RGB uint8 (N, H, W, 3) batches.
    Optional attributes the harness reads with ``getattr``: ``takes_raw`` (bool: feed RAW real
    frames, the lens correction is inside), ``input_size`` ((H, W) the translator needs, or
    None), ``camera_correction`` (the correction dict it was exported with) and ``info`` (a dict
    for the report).

    Shape:
        - frames: :math:`(N, H, W, 3)` uint8 RGB; output: :math:`(N, H', W', 3)` uint8 RGB.
    """

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


class IdentityTranslator:
    """The no-op translator: returns its input (a copy). The baseline row of an ablation."""

    def __init__(self, name: str = "identity") -> None:
        self.name = name
        self.info: dict[str, Any] = {"kind": "identity"}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return np.array(frames, copy=True)


class FunctionTranslator:
    """Wrap a function of uint8 NHWC frames as a translator (tests, quick experiments).

    Args:
        fn: maps (N, H, W, 3) uint8 to (N, H', W', 3) uint8.
        name: the row name.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str) -> None:
        self.fn = fn
        self.name = name
        self.info: dict[str, Any] = {"kind": "function"}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.fn(frames)


def _to_uint8(y: np.ndarray, what: str = "translator") -> np.ndarray:
    """[-1, 1] float NCHW → uint8 NHWC (:func:`translate.runtime.unit_to_uint8`; non-finite: error)."""
    from translate.runtime import unit_to_uint8

    return unit_to_uint8(y, what=what)


def _to_unit(frames: np.ndarray) -> np.ndarray:
    """uint8 NHWC → float32 NCHW in [-1, 1]."""
    return np.ascontiguousarray(
        (frames.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
    )


class OnnxTranslator:
    """An exported translator (core or robot graph) as a harness translator, on onnxruntime.

    Wraps :class:`translate.runtime.Translator` (which reads the metadata and the graph's input:
    float32 N×3×H×W in [-1, 1] = core, uint8 N×H×W×3 = robot) and feeds it the way the harness
    needs: frames the harness has already lens-corrected, except for a robot graph with
    ``correction_in_graph``, which sets ``takes_raw`` and gets RAW real frames. A robot graph
    taking BGR gets its input reordered here; callers always pass RGB. No torch.

    Args:
        path: ``translator.onnx`` / ``translator_robot.onnx``, or an export folder (its
            ``translator.onnx``).
        name: the row name (default: derived from the path).
        batch_size: frames per onnxruntime call.
        providers: onnxruntime providers (default: TensorRT → CUDA → CPU by availability).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    Example:
        >>> t = OnnxTranslator("runs/cut/export/translator.onnx")  # doctest: +SKIP
        >>> t(corrected_frames).shape == corrected_frames.shape  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        batch_size: int = 16,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
    ) -> None:
        from translate.export_format import CORE_FILE
        from translate.runtime import Translator as RuntimeTranslator

        p = Path(path)
        if p.is_dir():
            p = p / CORE_FILE
        if not p.is_file():
            raise FileNotFoundError(f"translator ONNX not found: {p}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.path = p
        self.batch_size = batch_size
        self.runtime = RuntimeTranslator(p, providers=providers, threads=threads)
        rt = self.runtime
        self.meta: dict[str, Any] = rt.meta
        self.variant = rt.variant  # "core" or "robot" (runtime.Translator refuses others)
        self.takes_raw = bool(rt.correction_in_graph)
        self.graph_channel_order = rt.graph_channel_order
        self.input_channel_order = self.graph_channel_order  # what the graph itself takes
        if self.takes_raw or not rt.dynamic_size:
            size = self.meta.get("input_size")
            self.input_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size \
                else None
        else:
            self.input_size = None
        self.camera_correction: dict[str, Any] | None = self.meta.get("camera_correction")
        self.name = name or _name_from_path(p)
        self.info = {
            "kind": f"onnx-{self.variant}",
            "path": str(p),
            "model_name": self.meta.get("model_name"),
            "takes_raw": self.takes_raw,
            "input_channel_order": self.graph_channel_order,
            "provider": rt.provider,
        }

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = np.asarray(frames)
        if self.input_size is None and (x.shape[1] % 4 or x.shape[2] % 4):
            raise ValueError(
                f"translator {self.name}: frame height and width must be multiples of 4, got "
                f"{x.shape[2]}x{x.shape[1]} (WxH)"
            )
        if self.graph_channel_order == "BGR":
            x = x[..., ::-1]
        outs = [self.runtime.run_corrected(np.ascontiguousarray(x[i : i + self.batch_size]))
                for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, *x.shape[1:]), np.uint8)


class TorchModuleTranslator:
    """A torch generator (NCHW float in [-1, 1] → same) as a translator; torch imported lazily.

    Args:
        module: the generator (put in eval mode; gradients off).
        name: the row name.
        batch_size: frames per forward pass.
        device: torch device.
        info: extra provenance for the report.
    """

    def __init__(
        self,
        module: Any,
        name: str,
        *,
        batch_size: int = 16,
        device: str = "cpu",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.name = name
        self.batch_size = batch_size
        self.info = {"kind": "torch", **dict(info or {})}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self._torch
        outs: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(_to_unit(frames[i : i + self.batch_size])).to(self.device)
                outs.append(_to_uint8(self.module(x).float().cpu().numpy(), f"translator {self.name!r}"))
        return np.concatenate(outs) if outs else np.zeros_like(frames)


def _name_from_path(p: Path) -> str:
    generic = {"translator", "translator_robot", "last", "best", "latest_net_G_A", "latest_net_G"}
    if p.stem not in generic:
        return p.stem
    parent = p.parent
    if parent.name in ("export", "checkpoints") and parent.parent.name:
        parent = parent.parent
    suffix = "" if p.stem in ("translator", "last") else f"-{p.stem}"
    return f"{parent.name or p.stem}{suffix}"


def _check_output(name: str, inp: np.ndarray, out: Any) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TranslatorOutputError(
            f"translator {name!r} returned {type(out).__name__}; expected a numpy uint8 array "
            "(N, H, W, 3)"
        )
    if out.ndim == 4 and out.shape[1] == 3 and out.shape[-1] != 3:
        raise TranslatorOutputError(
            f"translator {name!r} returned shape {out.shape}, which looks NCHW; translators "
            "return NHWC (N, H, W, 3) — transpose with .transpose(0, 2, 3, 1)"
        )
    if out.ndim != 4 or out.shape[-1] != 3 or out.shape[0] != inp.shape[0]:
        raise TranslatorOutputError(
            f"translator {name!r} returned shape {out.shape} for input {inp.shape}; expected "
            f"({inp.shape[0]}, H, W, 3)"
        )
    if out.dtype != np.uint8:
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        raise TranslatorOutputError(
            f"translator {name!r} returned {out.dtype} values in [{lo:.3g}, {hi:.3g}]; "
            "translators return uint8 RGB 0–255 frames"
        )
    return out


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB frames to (H, W) with PIL's antialiased bilinear filter.

    Args:
        frames: the frames.
        size: target (H, W).

    Returns:
        Resized frames (the input itself when the size already matches).

    Shape:
        - frames: :math:`(N, H, W, 3)`; output: :math:`(N, H', W', 3)`.
    """
    from PIL import Image

    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, frames.shape[-1]), np.uint8)
    for i, f in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BILINEAR))
    return out


# --------------------------------------------------------------------------------------------------
# Evaluation sets
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Settings and results
# --------------------------------------------------------------------------------------------------


@dataclass
class EvalSettings:
    """How to evaluate.

    Args:
        batch_size: frames per translator / policy call.
        chunk_size: frames decoded and pushed through all stages at a time.
        bootstrap: bootstrap resamples for the confidence intervals (0 = none).
        seed: bootstrap / KID / sliced-Wasserstein seed.
        ci_level: confidence level.
        dead_zone: turn-direction dead zone.
        tolerance: within-tolerance threshold (max |action error| per frame).
        lpips: ``auto`` (when its weights are cached locally) or ``off``.
        lpips_cache: torch hub folder to look for the AlexNet weights in (None: torch's).
        num_workers: image decoding threads.
        on_error: undecodable frames: ``skip`` (reported by path) or ``raise``.
        n_strips: frames shown through every stage in the report.
        n_worst: worst frames kept per translated stage.
        kid_subset_size: KID subset size.
        kid_subsets: KID subsets (when both sets are larger than a subset).
        swd_projections: sliced-Wasserstein directions.
        contract_frames: frames whose policy input feeds the contract statistics, per stage
            (64 frames of 128² are 1 M pixels a channel: plenty for means and quantiles).
        progress: show a progress bar.
    """

    batch_size: int = 32
    chunk_size: int = 256
    bootstrap: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    dead_zone: float = 0.05
    tolerance: float = 0.1
    lpips: str = "auto"
    lpips_cache: str | None = None
    num_workers: int = 2
    on_error: str = "skip"
    n_strips: int = 6
    n_worst: int = 6
    kid_subset_size: int = 1000
    kid_subsets: int = 50
    swd_projections: int = 128
    contract_frames: int = 64
    progress: bool = False

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap.n must be >= 0 (0 = no confidence intervals); got {self.bootstrap}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"bootstrap.level must be in (0, 1); got {self.ci_level}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1; got {self.batch_size}, "
                             f"{self.chunk_size}")
        if self.lpips not in ("auto", "off"):
            raise ValueError(f"lpips must be 'auto' or 'off'; got {self.lpips!r}")
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise'; got {self.on_error!r}")
        if self.dead_zone < 0 or self.tolerance < 0:
            raise ValueError("dead_zone and tolerance must be >= 0")


@dataclass
class EvalResult:
    """What :func:`evaluate_translators` returns.

    Attributes:
        metrics: the JSON-ready results (``metrics.json`` without ``config``); see
            docs/metrics.md.
        stems: the evaluated frames' ids.
        actions: each stage's policy actions, (N, A) (the unpaired sim reference: (M, A)).
        reference: the reference actions, (N, A), or None.
        errors: per-frame mean |action error| of each stage with references, (N,).
        samples: frames for the strips: ``{"stems", "frames": {stage: (K, H, W, 3)},
            "actions": {stage: (K, A)}, "reference": (K, A) or None}``.
        worst: per translated stage, its worst frames: ``{"stems", "errors", "input",
            "output", "sim", "pred", "ref", "sim_pred"}`` (``sim`` / ``sim_pred``: the paired sim
            frame and the policy's action on it, or None).
    """

    metrics: dict[str, Any]
    stems: list[str]
    actions: dict[str, np.ndarray]
    reference: np.ndarray | None
    errors: dict[str, np.ndarray]
    samples: dict[str, Any]
    worst: dict[str, dict[str, Any]]


@dataclass
class _Stage:
    name: str
    kind: str
    label: str
    translator: Translator | None = None
    notes: list[str] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    psnr: list[np.ndarray] = field(default_factory=list)
    ssim: list[np.ndarray] = field(default_factory=list)
    lpips: list[np.ndarray] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    image_jobs: list[Future[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = field(
        default_factory=list)
    n_inputs: int = 0
    size: tuple[int, int] | None = None
    seconds: float = 0.0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _metric(value: float | None = None, *, reason: str = "", ci: tuple[float, float] | None = None,
            **extra: Any) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return {"available": False, "value": None, "reason": reason or "not computed"}
    out: dict[str, Any] = {"available": True, "value": float(value)}
    if ci is not None:
        out["ci"] = [float(ci[0]), float(ci[1])]
    out.update(extra)
    return out


class _Progress:
    """A rich progress bar over frames, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("[bold]evaluating"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("frames"),
                                 TimeRemainingColumn())
            self._task = self._bar.add_task("eval", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)


@contextlib.contextmanager
def _timed(acc: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------


def _fit(stage: _Stage, frames: np.ndarray, size: tuple[int, int] | None, what: str
         ) -> np.ndarray:
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    h, w = frames.shape[1:3]
    stage.note(f"{w}×{h} frames resized to {size[1]}×{size[0]} for {what} (bilinear, "
               "antialiased)")
    return resize_frames(frames, size)


class _Decoder:
    """Decode chunks of frames in worker threads; track skipped files and the frame size."""

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.skipped: list[dict[str, str]] = []
        self.sizes: dict[str, tuple[tuple[int, int], Path]] = {}

    def __call__(self, paths: Sequence[Path], what: str) -> list[np.ndarray | None]:
        on_error: OnError = "raise" if self.settings.on_error == "raise" else "skip"
        imgs, kept, errors = read_images(paths, on_error=on_error,
                                         num_workers=self.settings.num_workers)
        self.skipped += [{"path": str(e.path), "reason": e.reason} for e in errors]
        by_path: dict[Path, np.ndarray] = dict(zip(kept, imgs, strict=True))
        out: list[np.ndarray | None] = []
        for p in paths:
            img = by_path.get(Path(p))
            if img is not None:
                size = (int(img.shape[0]), int(img.shape[1]))
                first = self.sizes.setdefault(what, (size, Path(p)))
                if first[0] != size:
                    raise EvalDataError(
                        f"{what} frames differ in size: {p} is {size[1]}×{size[0]} but "
                        f"{first[1]} is {first[0][1]}×{first[0][0]} (W×H); resize the set to "
                        "one size first"
                    )
            out.append(img)
        return out


def _policy_contract_check(policy: Policy, eval_set: EvalSet, dead_zone: float,
                           frames: int = 64) -> dict[str, Any] | None:
    """The spec self-check of :mod:`translate.policy_check` on the set's first sim frames (and
    manifest actions), or None without sim frames or for a policy not loaded from a file."""
    from translate.policy_check import check_policy_contract

    path = getattr(policy, "path", None)
    if not eval_set.sim_paths or path is None or not Path(path).is_file():
        return None
    paths = eval_set.sim_paths[:frames]
    imgs, kept, _ = read_images(paths, on_error="skip")
    if not kept:
        return None
    expert = None
    if eval_set.actions is not None and eval_set.action_source == "manifest":
        expert = np.asarray(eval_set.actions, np.float64)[[paths.index(k) for k in kept]]
    return check_policy_contract(path, policy.spec, np.stack(imgs), expert, dead_zone=dead_zone).to_dict()


def evaluate_translators(
    translators: Sequence[Translator],
    policy: Policy,
    eval_set: EvalSet,
    *,
    camera: CameraCorrection | None = None,
    camera_source: str | None = None,
    settings: EvalSettings | None = None,
) -> EvalResult:
    """Score every pipeline stage with the frozen policy: raw → corrected → translated → sim.

    Frames are decoded in chunks (worker threads), pushed through the lens correction, every
    translator and the policy (batched), and scored: paired-image metrics against the sim
    partner, distribution metrics (Fréchet distance and KID in the policy's penultimate-feature
    space, energy distance and sliced Wasserstein between action sets) against the sim frames,
    action agreement with the reference actions (manifest actions, else the policy's action on
    the paired sim frame) with bootstrap CIs, gap closed, and the input-contract check.

    Args:
        translators: one row each (their ``name`` must be unique).
        policy: the frozen policy.
        eval_set: the frames.
        camera: the lens correction (None: no corrected row; translators get raw frames).
        camera_source: where the correction came from, for the record.
        settings: the settings.

    Returns:
        An :class:`EvalResult`.

    Raises:
        EvalDataError: no frame could be decoded, or frame sizes differ within the set.
        TranslatorOutputError: a translator returned something other than uint8 NHWC frames.
    """
    s = settings or EvalSettings()
    names = [t.name for t in translators]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"translator names must be unique; repeated: {', '.join(dupes)}")
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    decode = _Decoder(s)
    sim_paths = eval_set.sim_paths
    paired = sim_paths is not None
    policy_size = policy.input_size

    stages: list[_Stage] = [_Stage("raw", "raw", "raw real")]
    if camera is not None:
        stages.append(_Stage("corrected", "corrected", "lens-corrected real"))
    for t in translators:
        stages.append(_Stage(f"translated:{t.name}", "translated", f"translated ({t.name})",
                             translator=t))
    if paired:
        stages.append(_Stage("sim", "sim", "sim (oracle)"))
    sim_ref = _Stage("sim", "sim", "sim (reference set)") if eval_set.sim_ref_paths else None
    by_name = {st.name: st for st in stages}

    lpips_metric: Lpips | None = None
    lpips_reason = "lpips=off"
    if paired and s.lpips == "auto":
        with _timed(timing, "lpips_setup"):
            lpips_metric = Lpips(s.lpips_cache)
        if not lpips_metric.available:
            lpips_reason = lpips_metric.reason
            lpips_metric = None

    n_total = len(eval_set)
    strip_pos = set(np.linspace(0, n_total - 1, min(s.n_strips, n_total)).round().astype(int)
                    .tolist()) if s.n_strips > 0 else set()
    samples: dict[str, Any] = {"stems": [], "index": [], "frames": {}, "actions": {}}
    kept_idx: list[int] = []
    ref_chunks: list[np.ndarray] = []
    worst_heaps: dict[str, list[tuple[float, int, dict[str, Any]]]] = {
        st.name: [] for st in stages if st.kind == "translated"
    }
    features_reason = getattr(policy, "features_unavailable", "") or ""
    sim_size: tuple[int, int] | None = None

    def run_policy(st: _Stage, frames: np.ndarray) -> np.ndarray:
        x = _fit(st, frames, policy_size, "the policy")
        if st.n_inputs < s.contract_frames:
            take = x[: s.contract_frames - st.n_inputs]
            st.inputs.append(preprocess(take, policy.spec))
            st.n_inputs += len(take)
        with _timed(timing, "policy"):
            out = policy.run(x, features=True, batch_size=s.batch_size)
        st.actions.append(out.action.astype(np.float64))
        if out.features is not None:
            st.features.append(out.features.astype(np.float64))
        return out.action.astype(np.float64)

    total_work = n_total + len(eval_set.sim_ref_paths or [])
    timing_lock = threading.Lock()

    def image_metrics(frames: np.ndarray, sim: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        t0 = time.perf_counter()
        out = (psnr(frames, sim), ssim(frames, sim),
               None if lpips_metric is None else lpips_metric(frames, sim))
        with timing_lock:
            timing["image_metrics"] = timing.get("image_metrics", 0.0) + time.perf_counter() - t0
        return out

    # Paired-image metrics (torch, GIL released) run in a worker thread, overlapping the next
    # chunk's translation and policy passes (onnxruntime, GIL released too).
    with _Progress(s.progress, total_work) as bar, ThreadPoolExecutor(1) as image_pool:
        for start in range(0, n_total, s.chunk_size):
            idx = list(range(start, min(start + s.chunk_size, n_total)))
            with _timed(timing, "decode"):
                reals = decode([eval_set.real_paths[i] for i in idx], "real")
                sims = decode([sim_paths[i] for i in idx], "sim") if sim_paths else None
            ok = [j for j in range(len(idx))
                  if reals[j] is not None and (sims is None or sims[j] is not None)]
            bar.advance(len(idx))
            if not ok:
                continue
            gidx = [idx[j] for j in ok]
            kept_idx += gidx
            raw = np.stack([reals[j] for j in ok])  # type: ignore[misc]
            sim = np.stack([sims[j] for j in ok]) if sims is not None else None  # type: ignore[misc]
            if sim is not None:
                sim_size = (sim.shape[1], sim.shape[2])
            frames: dict[str, np.ndarray] = {"raw": raw}
            base = raw
            if camera is not None:
                with _timed(timing, "correct"):
                    cin = _fit(by_name["corrected"], raw, camera.in_size, "the camera correction")
                    frames["corrected"] = base = camera.apply(cin)
            inputs: dict[str, np.ndarray] = {}
            for st in stages:
                if st.translator is None:
                    continue
                t = st.translator
                src = raw if getattr(t, "takes_raw", False) else base
                if getattr(t, "takes_raw", False):
                    st.note("fed raw real frames: the lens correction is inside the translator")
                src = _fit(st, src, getattr(t, "input_size", None), "the translator")
                t0 = time.perf_counter()
                out = _check_output(t.name, src, t(src))
                dt = time.perf_counter() - t0
                st.seconds += dt
                timing["translate"] = timing.get("translate", 0.0) + dt
                inputs[st.name] = src
                frames[st.name] = out
            if sim is not None:
                frames["sim"] = sim
            chunk_actions: dict[str, np.ndarray] = {}
            for st in stages:
                f = frames[st.name]
                st.size = (f.shape[1], f.shape[2])
                chunk_actions[st.name] = run_policy(st, f)
                if sim is not None and st.kind != "sim":
                    fs = _fit(st, f, sim_size, "the paired-image metrics")
                    st.image_jobs.append(image_pool.submit(image_metrics, fs, sim))
            if eval_set.actions is not None:
                ref_chunk = eval_set.actions[gidx]
            elif sim is not None:
                ref_chunk = chunk_actions["sim"]
            else:
                ref_chunk = None
            if ref_chunk is not None:
                ref_chunks.append(ref_chunk)
            for j, g in enumerate(gidx):
                if g in strip_pos:
                    samples["stems"].append(eval_set.stems[g])
                    samples["index"].append(g)
                    for name, f in frames.items():  # copies: views would pin whole chunks
                        samples["frames"].setdefault(name, []).append(f[j].copy())
                        samples["actions"].setdefault(name, []).append(chunk_actions[name][j])
                    if ref_chunk is not None:
                        samples.setdefault("reference", []).append(ref_chunk[j])
            if ref_chunk is not None:
                for name, heap in worst_heaps.items():
                    err = np.abs(chunk_actions[name] - ref_chunk).mean(axis=1)
                    for j in np.argsort(-err)[: s.n_worst]:
                        item = (float(err[j]), gidx[j], {
                            "input": inputs[name][j].copy(), "output": frames[name][j].copy(),
                            "sim": None if sim is None else sim[j].copy(),
                            "pred": chunk_actions[name][j], "ref": ref_chunk[j],
                            "sim_pred": chunk_actions["sim"][j] if "sim" in chunk_actions
                            else None,
                        })
                        if len(heap) < s.n_worst:
                            heapq.heappush(heap, item)
                        elif item[0] > heap[0][0]:
                            heapq.heapreplace(heap, item)
        if not kept_idx:
            first = decode.skipped[0] if decode.skipped else {"path": "?", "reason": "?"}
            raise EvalDataError(
                f"no readable frames in {eval_set.root}: all {n_total} listed frames were "
                f"skipped (first: {first['path']}: {first['reason']})"
            )
        if sim_ref is not None and eval_set.sim_ref_paths:
            for start in range(0, len(eval_set.sim_ref_paths), s.chunk_size):
                paths = eval_set.sim_ref_paths[start : start + s.chunk_size]
                with _timed(timing, "decode"):
                    imgs = [im for im in decode(paths, "sim reference") if im is not None]
                bar.advance(len(paths))
                if imgs:
                    sim_ref.size = (imgs[0].shape[0], imgs[0].shape[1])
                    run_policy(sim_ref, np.stack(imgs))
            if sim_ref.actions:
                stages.append(sim_ref)
            else:
                eval_set.problems.append("sim_data: no readable sim frames")

    for st in stages:
        for job in st.image_jobs:
            p_, s_, l_ = job.result()
            st.psnr.append(p_)
            st.ssim.append(s_)
            if l_ is not None:
                st.lpips.append(l_)
        st.image_jobs.clear()
    with _timed(timing, "metrics"):
        stems = [eval_set.stems[i] for i in kept_idx]
        reference = np.concatenate(ref_chunks) if ref_chunks else None
        ref_source = ("manifest" if eval_set.action_source == "manifest" else
                      eval_set.action_source) if eval_set.actions is not None else (
                          "policy_on_sim" if paired else None)
        action_names = list(policy.action_names or [f"a{i}" for i in
                                                    range(stages[0].actions[0].shape[1])])
        if len(action_names) != stages[0].actions[0].shape[1]:
            action_names = [f"a{i}" for i in range(stages[0].actions[0].shape[1])]
        actions = {st.name: np.concatenate(st.actions) for st in stages}
        errors: dict[str, np.ndarray] = {}
        if reference is not None:
            if reference.shape[1] != actions["raw"].shape[1]:
                raise EvalDataError(
                    f"reference actions have {reference.shape[1]} dimensions but the policy "
                    f"outputs {actions['raw'].shape[1]}"
                )
            for st in stages:
                if st.name == "sim" and not paired:
                    continue
                errors[st.name] = per_frame_abs_error(actions[st.name], reference)
        stage_json = [
            _stage_metrics(st, s, actions, errors, reference, stages, paired, lpips_reason,
                           features_reason, action_names, ref_source)
            for st in stages
        ]
        ref_name = "sim" if any(st.name == "sim" for st in stages) else None
        warnings: list[dict[str, str]] = []
        policy_contract: dict[str, Any] | None = None
        contract_stats: dict[str, ChannelStats] = {
            st.name: channel_stats(np.concatenate(st.inputs), policy.spec.layout)
            for st in stages if st.inputs
        }
        for sj in stage_json:
            if sj["name"] in contract_stats:
                sj["input_stats"] = contract_stats[sj["name"]].to_dict()
        if ref_name is not None:
            warnings = [w.to_dict() for w in check_input_contract(
                contract_stats, ref_name, channel_order=policy.spec.channel_order)]
        policy_contract = _policy_contract_check(policy, eval_set, s.dead_zone)
        if policy_contract is not None:
            warnings += [{"stage": "sim", "kind": "policy_spec", "message": w}
                         for w in policy_contract["warnings"]]
        for t in translators:
            meta = getattr(t, "camera_correction", None)
            if meta and camera is not None and meta != camera.to_dict():
                warnings.append({"stage": f"translated:{t.name}", "kind": "camera", "message": (
                    f"translator {t.name} was exported with a different camera correction than "
                    f"the one applied here ({camera_source})"
                )})
            if meta and camera is None and not getattr(t, "takes_raw", False):
                warnings.append({"stage": f"translated:{t.name}", "kind": "camera", "message": (
                    f"translator {t.name} expects lens-corrected frames (its export names a "
                    "correction) but camera=none: it gets raw frames"
                )})
    worst = {
        name: _worst_dict(heap, eval_set.stems) for name, heap in worst_heaps.items() if heap
    }
    seconds = time.perf_counter() - t_start
    metrics: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "sim2real-translate evaluation", "version": __version__},
        "data": {
            "kind": eval_set.kind,
            "path": str(eval_set.root),
            "n_listed": eval_set.n_listed or n_total,
            "n_frames": len(kept_idx),
            "n_sim_reference": len(actions["sim"]) if sim_ref is not None and "sim" in actions
            and not paired else None,
            "real_size": list(decode.sizes["real"][0]) if "real" in decode.sizes else None,
            "sim_size": list(sim_size) if sim_size else (
                list(sim_ref.size) if sim_ref is not None and sim_ref.size else None),
            "reference_actions": ref_source,
            "skipped": decode.skipped,
            "problems": list(eval_set.problems),
            "camera": None if camera is None else {
                "source": camera_source, "identity": camera.is_identity,
                "in_size": list(camera.in_size), "out_size": list(camera.out_size),
            },
        },
        "policy": {
            "path": str(policy.path),
            "input_size": list(policy_size) if policy_size else None,
            "action_names": action_names,
            "spec": policy.spec.to_dict(),
            "features": features_reason or "penultimate activations",
        },
        "translators": [{"name": t.name, **dict(getattr(t, "info", {}) or {})}
                        for t in translators],
        "settings": {k: getattr(s, k) for k in s.__dataclass_fields__},
        "stages": stage_json,
        "warnings": warnings,
        "policy_contract": policy_contract,
        "timing": {
            "seconds": seconds,
            "frames_per_second": len(kept_idx) / seconds if seconds > 0 else None,
            "parts": {k: round(v, 4) for k, v in sorted(timing.items())},
            "translators": {st.name: round(st.seconds, 4) for st in stages if st.translator},
        },
    }
    samples_out: dict[str, Any] = {
        "stems": samples["stems"],
        "frames": {k: np.stack(v) for k, v in samples["frames"].items()},
        "actions": {k: np.stack(v) for k, v in samples["actions"].items()},
        "reference": np.stack(samples["reference"]) if samples.get("reference") else None,
        "stages": [st.name for st in stages if st.name in samples["frames"]],
    }
    return EvalResult(metrics=metrics, stems=stems, actions=actions, reference=reference,
                      errors=errors, samples=samples_out, worst=worst)


def _worst_dict(heap: list[tuple[float, int, dict[str, Any]]], stems: Sequence[str]
                ) -> dict[str, Any]:
    items = sorted(heap, key=lambda it: -it[0])
    sims = [it[2]["sim"] for it in items]
    sim_preds = [it[2]["sim_pred"] for it in items]
    return {
        "stems": [stems[it[1]] for it in items],
        "errors": np.array([it[0] for it in items]),
        "input": np.stack([it[2]["input"] for it in items]),
        "output": np.stack([it[2]["output"] for it in items]),
        "sim": None if any(x is None for x in sims) else np.stack(sims),
        "pred": np.stack([it[2]["pred"] for it in items]),
        "ref": np.stack([it[2]["ref"] for it in items]),
        "sim_pred": None if any(x is None for x in sim_preds) else np.stack(sim_preds),
    }


def _stage_metrics(
    st: _Stage,
    s: EvalSettings,
    actions: Mapping[str, np.ndarray],
    errors: Mapping[str, np.ndarray],
    reference: np.ndarray | None,
    stages: Sequence[_Stage],
    paired: bool,
    lpips_reason: str,
    features_reason: str,
    action_names: Sequence[str],
    ref_source: str | None,
) -> dict[str, Any]:
    m: dict[str, Any] = {}
    is_ref = st.kind == "sim"
    # paired images
    if not paired:
        for k in ("psnr", "ssim", "lpips"):
            m[k] = _metric(reason="no paired sim frames")
    elif is_ref:
        for k in ("psnr", "ssim", "lpips"):
            m[k] = _metric(reason="reference stage")
    else:
        m["psnr"] = _metric(float(np.concatenate(st.psnr).mean()))
        m["ssim"] = _metric(float(np.concatenate(st.ssim).mean()))
        m["lpips"] = (_metric(float(np.concatenate(st.lpips).mean())) if st.lpips
                      else _metric(reason=lpips_reason))
    # distributions, against the sim frames (paired or the unpaired reference set)
    sim_st = next((x for x in stages if x.kind == "sim"), None)
    dist_keys = ("frechet_distance", "kid", "action_energy_distance", "action_sliced_wasserstein")
    if sim_st is None:
        for k in dist_keys:
            m[k] = _metric(reason="no sim frames to compare with (give sim_data=...)")
    elif is_ref:
        for k in dist_keys:
            m[k] = _metric(reason="reference stage")
    else:
        a_st, a_sim = actions[st.name], actions[sim_st.name]
        if min(len(a_st), len(a_sim)) < 2:
            for k in dist_keys:
                m[k] = _metric(reason="needs at least 2 frames in each set")
        else:
            if st.features and sim_st.features:
                f_st, f_sim = np.concatenate(st.features), np.concatenate(sim_st.features)
                m["frechet_distance"] = _metric(frechet_distance(f_st, f_sim))
                k_val, k_std = kid(f_st, f_sim, subset_size=s.kid_subset_size,
                                   n_subsets=s.kid_subsets, seed=s.seed)
                m["kid"] = _metric(k_val, std=k_std)
            else:
                why = f"no policy features: {features_reason or 'unavailable'}"
                m["frechet_distance"] = _metric(reason=why)
                m["kid"] = _metric(reason=why)
            m["action_energy_distance"] = _metric(energy_distance(a_st, a_sim))
            m["action_sliced_wasserstein"] = _metric(
                sliced_wasserstein(a_st, a_sim, n_projections=s.swd_projections, seed=s.seed))
    # actions against the references
    action_keys = ["action_mae", "action_rmse", "action_cosine", "turn_agreement",
                   "within_tolerance", "gap_closed"]
    if st.name not in errors or reference is None:
        why = ("sim reference frames are not paired with the real frames" if is_ref and
               not paired else "no reference actions (no manifest actions, no paired sim frames)")
        for k in action_keys:
            m[k] = _metric(reason=why)
        return _stage_json(st, m, ref_source)
    pred = actions[st.name]
    am = action_metrics(pred, reference, dead_zone=s.dead_zone, tolerance=s.tolerance,
                        names=action_names)
    e = errors[st.name]
    boot = functools.partial(bootstrap_ci, n_resamples=s.bootstrap, seed=s.seed, level=s.ci_level)
    ci_mae = boot(lambda idx: e[idx].mean(1), len(e)) if s.bootstrap else None
    for k, v in am.items():
        m[k] = _metric(v, ci=ci_mae if k == "action_mae" else None)
    if "turn_agreement" in am:
        agree = turn_agreement(pred, reference, s.dead_zone).astype(np.float64)
        ci_ta = boot(lambda idx: agree[idx].mean(1), len(agree)) if s.bootstrap else None
        m["turn_agreement"] = _metric(am["turn_agreement"], ci=ci_ta)
    else:
        m["turn_agreement"] = _metric(reason="turn direction needs two wheel commands")
    if "raw" in errors and "sim" in errors and paired:
        from translate.metrics import gap_closed

        e_raw, e_sim = errors["raw"], errors["sim"]
        value, reason = gap_closed(float(e_raw.mean()), float(e.mean()), float(e_sim.mean()))
        ci_gap = None
        if value is not None and s.bootstrap:
            def stat(idx: np.ndarray) -> np.ndarray:
                r, x, q = e_raw[idx].mean(1), e[idx].mean(1), e_sim[idx].mean(1)
                den = r - q
                tiny = np.abs(den) <= 1e-6 + 1e-3 * np.maximum(np.abs(r), np.abs(q))
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.where(tiny, np.nan, (r - x) / den)

            ci_gap = boot(stat, len(e))
        m["gap_closed"] = _metric(value, reason=reason, ci=ci_gap)
    else:
        m["gap_closed"] = _metric(reason="needs the raw stage and paired sim frames")
    return _stage_json(st, m, ref_source)


def _stage_json(st: _Stage, m: dict[str, Any], ref_source: str | None) -> dict[str, Any]:
    n = int(sum(len(a) for a in st.actions))
    return {
        "name": st.name,
        "kind": st.kind,
        "label": st.label,
        "translator": st.translator.name if st.translator is not None else None,
        "n_frames": n,
        "frame_size": list(st.size) if st.size else None,
        "reference_actions": ref_source,
        "notes": list(st.notes),
        "metrics": m,
    }


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------


def _known_metric(name: str, metrics_of_stage: Mapping[str, Any] | None) -> bool:
    if name in METRIC_NAMES:
        return True
    if metrics_of_stage is not None:
        return name in metrics_of_stage
    return name.startswith(("action_mae_", "action_rmse_"))


def check_thresholds(
    metrics: Mapping[str, Any],
    fail_under: Mapping[str, float] | None = None,
    fail_over: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Check metric thresholds on every translated stage (CI gates).

    ``fail_under``: a stage fails when the metric is below the threshold (for higher-is-better
    metrics: ``turn_agreement``, ``gap_closed``, ``ssim``, ...). ``fail_over``: fails when above
    (for errors: ``action_mae``, ``frechet_distance``, ...). An unavailable metric fails too,
    with its reason. Without translated stages the checks apply to the last real stage.

    Args:
        metrics: the results (``EvalResult.metrics``).
        fail_under: metric → lowest acceptable value.
        fail_over: metric → highest acceptable value.

    Returns:
        One dict per (stage, metric): ``stage``, ``metric``, ``rule`` (``under`` / ``over``),
        ``threshold``, ``value``, ``passed``, ``message``.

    Raises:
        ValueError: an unknown metric name (the message lists the valid ones).
    """
    stages = list(metrics.get("stages", []))
    targets = [st for st in stages if st["kind"] == "translated"]
    if not targets:
        real = [st for st in stages if st["kind"] != "sim"]
        targets = real[-1:]
    sample = targets[0]["metrics"] if targets else None
    out: list[dict[str, Any]] = []
    for rule, table in (("under", fail_under or {}), ("over", fail_over or {})):
        for name, threshold in table.items():
            if not _known_metric(name, sample):
                valid = ", ".join(sorted(sample) if sample else METRIC_NAMES)
                raise ValueError(f"fail_{rule}.{name}: unknown metric; valid names: {valid}")
            thr = float(threshold)
            for st in targets:
                entry = st["metrics"].get(name, {})
                value = entry.get("value") if entry.get("available") else None
                if value is None:
                    passed = False
                    msg = (f"{st['name']}: {name} is unavailable "
                           f"({entry.get('reason', 'not computed')}); fail_{rule} needs it")
                else:
                    passed = value >= thr if rule == "under" else value <= thr
                    sign = ("<" if rule == "under" else ">") if not passed else (
                        "≥" if rule == "under" else "≤")
                    msg = f"{st['name']}: {name} = {value:.4g} {sign} {thr:g}"
                out.append({"stage": st["name"], "metric": name, "rule": rule,
                            "threshold": thr, "value": value, "passed": passed,
                            "message": msg})
    return out
