"""Evaluation core: stages turn each chunk of frames into what the frozen policy sees, accumulators score them.

The stages (:mod:`translate.eval_stages`): raw → lens-corrected → translated:<name> → sim. The
accumulators (:mod:`translate.eval_accumulators`): actions, paired images, distributions, input
contract, strips, worst frames. ``metrics.json``'s layout is :mod:`translate.eval_schema`; the
translators and evaluation sets are :mod:`translate.eval_translators` and
:mod:`translate.eval_sets`. A new metric is one accumulator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translate.camera import CameraCorrection
from translate.eval_accumulators import (
    ActionsAccumulator,
    DistributionsAccumulator,
    InputContractAccumulator,
    PairedImagesAccumulator,
    StripsAccumulator,
    WorstFramesAccumulator,
)
from translate.eval_schema import metrics_document, stage_entry
from translate.eval_sets import EvalDataError, EvalSet
from translate.eval_stages import Chunk, PolicyRunner, SimStage, Stage, build_stages
from translate.eval_translators import Translator
from translate.imageio import OnError, read_images
from translate.metrics import Lpips
from translate.policy import Policy

__all__ = ["EvalResult", "EvalSettings", "evaluate_translators"]


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

    Frames are decoded in chunks (worker threads); each stage turns a chunk into its frames
    (lens correction, every translator) and the policy acts on them (batched); the accumulators
    take each chunk: paired-image metrics against the sim partner, distribution metrics
    (Fréchet distance and KID in the policy's penultimate-feature space, energy distance and
    sliced Wasserstein between action sets) against the sim frames, action agreement with the
    reference actions (manifest actions, else the policy's action on the paired sim frame) with
    bootstrap CIs and gap closed, the input-contract check, the report's strips and worst frames.

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
    _check_unique_names(translators)
    t_start, timing = time.perf_counter(), dict[str, float]()
    paired = eval_set.sim_paths is not None
    stages = build_stages(translators, camera, paired)
    run_policy = PolicyRunner(policy, s.batch_size, timing)
    decode = _Decoder(s)
    total = len(eval_set) + len(eval_set.sim_ref_paths or [])
    with _Progress(s.progress, total) as bar, ThreadPoolExecutor(1) as pool:
        accs = _accumulators(stages, policy, eval_set, s, pool, timing)
        frames = _EvalFrames(eval_set, decode, s.chunk_size, bar, timing)
        for chunk in frames:
            for st in stages:
                run_policy(st, st.frames(chunk, timing), chunk)
            chunk.reference = (eval_set.actions[chunk.index] if eval_set.actions is not None
                               else chunk.actions.get("sim"))
            for acc in accs.values():
                acc.update(chunk)
        if not frames.kept:
            first = decode.skipped[0] if decode.skipped else {"path": "?", "reason": "?"}
            raise EvalDataError(
                f"no readable frames in {eval_set.root}: all {len(eval_set)} listed frames "
                f"were skipped (first: {first['path']}: {first['reason']})"
            )
        sim_ref = SimStage("sim (reference set)")
        for chunk in frames.reference_set():
            run_policy(sim_ref, chunk.sim, chunk)  # type: ignore[arg-type]
            for acc in accs.values():
                acc.update(chunk)
        if sim_ref.size is not None:
            stages.append(sim_ref)
        elif eval_set.sim_ref_paths:
            eval_set.problems.append("sim_data: no readable sim frames")
    with _timed(timing, "metrics"):
        results = {name: acc.result() for name, acc in accs.items()}
        results["policy_contract"] = _policy_contract_check(policy, eval_set, s.dead_zone)
    metrics = _document(stages, results, translators, policy, eval_set, s, camera,
                        camera_source, decode, frames, time.perf_counter() - t_start, timing)
    acts = results["actions"]
    return EvalResult(metrics=metrics, stems=[eval_set.stems[i] for i in frames.kept],
                      actions=acts["actions"], reference=acts["reference"],
                      errors=acts["errors"], samples=results["strips"], worst=results["worst"])


def _check_unique_names(translators: Sequence[Translator]) -> None:
    names = [t.name for t in translators]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"translator names must be unique; repeated: {', '.join(dupes)}")


def _accumulators(stages: list[Stage], policy: Policy, eval_set: EvalSet, s: EvalSettings,
                  pool: ThreadPoolExecutor, timing: dict[str, float]) -> dict[str, Any]:
    """One accumulator per metric family, in the order their results are read."""
    paired = eval_set.sim_paths is not None
    lpips_metric: Lpips | None = None
    lpips_reason = "lpips=off"
    if paired and s.lpips == "auto":
        with _timed(timing, "lpips_setup"):
            lpips_metric = Lpips(s.lpips_cache)
        if not lpips_metric.available:
            lpips_reason, lpips_metric = lpips_metric.reason, None
    return {
        "paired": PairedImagesAccumulator(stages, paired=paired, pool=pool,
                                          lpips_metric=lpips_metric, lpips_reason=lpips_reason,
                                          timing=timing),
        "distributions": DistributionsAccumulator(
            stages, features_reason=getattr(policy, "features_unavailable", "") or "",
            kid_subset_size=s.kid_subset_size, kid_subsets=s.kid_subsets,
            swd_projections=s.swd_projections, seed=s.seed),
        "actions": ActionsAccumulator(stages, paired=paired, action_names=policy.action_names,
                                      dead_zone=s.dead_zone, tolerance=s.tolerance,
                                      bootstrap=s.bootstrap, seed=s.seed, ci_level=s.ci_level),
        "contract": InputContractAccumulator(stages, policy.spec, s.contract_frames),
        "strips": StripsAccumulator(stages, eval_set.stems, s.n_strips),
        "worst": WorstFramesAccumulator(stages, eval_set.stems, s.n_worst),
    }


class _EvalFrames:
    """The set's frames in decoded chunks (unreadable frames and their partners left out)."""

    def __init__(self, eval_set: EvalSet, decode: _Decoder, chunk_size: int, bar: _Progress,
                 timing: dict[str, float]) -> None:
        self.eval_set, self.decode, self.chunk_size = eval_set, decode, chunk_size
        self.bar, self.timing = bar, timing
        self.kept: list[int] = []
        self.sim_size: tuple[int, int] | None = None
        self.sim_ref_size: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Chunk]:
        es, n = self.eval_set, len(self.eval_set)
        for start in range(0, n, self.chunk_size):
            idx = list(range(start, min(start + self.chunk_size, n)))
            with _timed(self.timing, "decode"):
                reals = self.decode([es.real_paths[i] for i in idx], "real")
                sims = self.decode([es.sim_paths[i] for i in idx], "sim") if es.sim_paths else None
            self.bar.advance(len(idx))
            ok = [j for j in range(len(idx))
                  if reals[j] is not None and (sims is None or sims[j] is not None)]
            if not ok:
                continue
            self.kept += [idx[j] for j in ok]
            sim = np.stack([sims[j] for j in ok]) if sims is not None else None  # type: ignore[misc]
            if sim is not None:
                self.sim_size = (sim.shape[1], sim.shape[2])
            yield Chunk(index=[idx[j] for j in ok], raw=np.stack([reals[j] for j in ok]),  # type: ignore[misc]
                        sim=sim)

    def reference_set(self) -> Iterator[Chunk]:
        """Chunks of the unpaired sim reference set (``sim_data``), as ``Chunk.sim``."""
        paths = self.eval_set.sim_ref_paths or []
        for start in range(0, len(paths), self.chunk_size):
            part = paths[start : start + self.chunk_size]
            with _timed(self.timing, "decode"):
                imgs = [im for im in self.decode(part, "sim reference") if im is not None]
            self.bar.advance(len(part))
            if imgs:
                self.sim_ref_size = (imgs[0].shape[0], imgs[0].shape[1])
                yield Chunk(index=[], sim=np.stack(imgs), reference_set=True)


def _document(stages: Sequence[Stage], results: dict[str, Any], translators: Sequence[Translator],
              policy: Policy, eval_set: EvalSet, s: EvalSettings,
              camera: CameraCorrection | None, camera_source: str | None, decode: _Decoder,
              frames: _EvalFrames, seconds: float, timing: dict[str, float]) -> dict[str, Any]:
    """``metrics.json`` from the accumulators' results (:mod:`translate.eval_schema`)."""
    acts = results["actions"]
    paired = eval_set.sim_paths is not None
    ref_source = (eval_set.action_source if eval_set.actions is not None
                  else "policy_on_sim" if paired else None)
    stats, warnings = results["contract"]
    stage_json = []
    for st in stages:
        entry = stage_entry(
            name=st.name, kind=st.kind, label=st.label,
            translator=st.translator.name if st.translator is not None else None,
            n_frames=len(acts["actions"][st.name]), frame_size=st.size,
            reference_actions=ref_source, notes=st.notes,
            metrics={**results["paired"][st.name], **results["distributions"][st.name],
                     **acts["metrics"][st.name]})
        if st.name in stats:
            entry["input_stats"] = stats[st.name].to_dict()
        stage_json.append(entry)
    contract = results["policy_contract"]
    if contract is not None:
        warnings += [{"stage": "sim", "kind": "policy_spec", "message": w}
                     for w in contract["warnings"]]
    warnings += _camera_warnings(translators, camera, camera_source)
    sim_ref = not paired and any(st.kind == "sim" for st in stages)
    size = frames.sim_size or frames.sim_ref_size
    n = len(frames.kept)
    return metrics_document(
        data={
            "kind": eval_set.kind,
            "path": str(eval_set.root),
            "n_listed": eval_set.n_listed or len(eval_set),
            "n_frames": n,
            "n_sim_reference": len(acts["actions"]["sim"]) if sim_ref else None,
            "real_size": list(decode.sizes["real"][0]) if "real" in decode.sizes else None,
            "sim_size": list(size) if size else None,
            "reference_actions": ref_source,
            "skipped": decode.skipped,
            "problems": list(eval_set.problems),
            "camera": None if camera is None else {
                "source": camera_source, "identity": camera.is_identity,
                "in_size": list(camera.in_size), "out_size": list(camera.out_size),
            },
        },
        policy={
            "path": str(policy.path),
            "input_size": list(policy.input_size) if policy.input_size else None,
            "action_names": acts["action_names"],
            "spec": policy.spec.to_dict(),
            "features": getattr(policy, "features_unavailable", "") or "penultimate activations",
        },
        translators=[{"name": t.name, **dict(getattr(t, "info", {}) or {})} for t in translators],
        settings={k: getattr(s, k) for k in s.__dataclass_fields__},
        stages=stage_json,
        warnings=warnings,
        policy_contract=contract,
        timing={
            "seconds": seconds,
            "frames_per_second": n / seconds if seconds > 0 else None,
            "parts": {k: round(v, 4) for k, v in sorted(timing.items())},
            "translators": {st.name: round(st.seconds, 4) for st in stages if st.translator},
        },
    )


def _camera_warnings(translators: Sequence[Translator], camera: CameraCorrection | None,
                     camera_source: str | None) -> list[dict[str, str]]:
    """Translators exported with another lens correction than the one applied, or with one
    while none is applied."""
    out = []
    for t in translators:
        meta = getattr(t, "camera_correction", None)
        if meta and camera is not None and meta != camera.to_dict():
            out.append({"stage": f"translated:{t.name}", "kind": "camera", "message": (
                f"translator {t.name} was exported with a different camera correction than "
                f"the one applied here ({camera_source})"
            )})
        if meta and camera is None and not getattr(t, "takes_raw", False):
            out.append({"stage": f"translated:{t.name}", "kind": "camera", "message": (
                f"translator {t.name} expects lens-corrected frames (its export names a "
                "correction) but camera=none: it gets raw frames"
            )})
    return out
