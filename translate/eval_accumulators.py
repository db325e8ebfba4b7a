"""Evaluation accumulators: each owns one metric family's state, ``update(chunk)`` per chunk and ``result()`` at the end."""

from __future__ import annotations

import functools
import heapq
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from translate.eval_schema import metric_entry
from translate.eval_sets import EvalDataError
from translate.eval_stages import Chunk, Stage, fit
from translate.metrics import (
    ChannelStats,
    Lpips,
    action_metrics,
    bootstrap_ci,
    channel_stats,
    check_input_contract,
    energy_distance,
    frechet_distance,
    gap_closed,
    kid,
    per_frame_abs_error,
    psnr,
    sliced_wasserstein,
    ssim,
    turn_agreement,
)
from translate.policy import PolicySpec, preprocess

__all__ = [
    "ACTION_KEYS",
    "DISTRIBUTION_KEYS",
    "PAIRED_KEYS",
    "Accumulator",
    "ActionsAccumulator",
    "DistributionsAccumulator",
    "InputContractAccumulator",
    "PairedImagesAccumulator",
    "StripsAccumulator",
    "WorstFramesAccumulator",
]

#: Metric keys each family writes into a stage's ``metrics``.
PAIRED_KEYS = ("psnr", "ssim", "lpips")
DISTRIBUTION_KEYS = ("frechet_distance", "kid", "action_energy_distance",
                     "action_sliced_wasserstein")
ACTION_KEYS = ("action_mae", "action_rmse", "action_cosine", "turn_agreement",
               "within_tolerance", "gap_closed")


class Accumulator(Protocol):
    """Streaming state of one metric family (the torchmetrics convention)."""

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk of every stage's frames, actions and features."""

    def result(self) -> Any:
        """The family's results, after the last chunk."""


def _unavailable(keys: Sequence[str], reason: str) -> dict[str, Any]:
    return {k: metric_entry(reason=reason) for k in keys}


class ActionsAccumulator:
    """Policy actions per stage and the reference actions; action agreement with bootstrap CIs.

    Args:
        stages: the rows (the list the evaluation appends the sim reference set to).
        paired: the set has paired sim frames.
        action_names: the policy's names of its action dimensions, or None.
        dead_zone, tolerance, bootstrap, seed, ci_level: as :class:`translate.evaluate.EvalSettings`.
    """

    def __init__(self, stages: Sequence[Stage], *, paired: bool,
                 action_names: Sequence[str] | None, dead_zone: float, tolerance: float,
                 bootstrap: int, seed: int, ci_level: float) -> None:
        self.stages = stages
        self.paired = paired
        self.policy_names = list(action_names) if action_names else None
        self.dead_zone, self.tolerance = dead_zone, tolerance
        self.bootstrap, self.seed, self.ci_level = bootstrap, seed, ci_level
        self._actions: dict[str, list[np.ndarray]] = {}
        self._reference: list[np.ndarray] = []

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        for name, a in chunk.actions.items():
            self._actions.setdefault(name, []).append(a)
        if chunk.reference is not None and not chunk.reference_set:
            self._reference.append(chunk.reference)

    def actions(self) -> dict[str, np.ndarray]:
        """Stage name → its actions, (N, A) (the unpaired sim reference set: (M, A))."""
        return {st.name: np.concatenate(self._actions[st.name]) for st in self.stages}

    def result(self) -> dict[str, Any]:
        """``{"actions", "reference", "errors", "action_names", "metrics": {stage: {...}}}``."""
        actions = self.actions()
        dim = actions[self.stages[0].name].shape[1]
        names = self.policy_names if self.policy_names and len(self.policy_names) == dim else [
            f"a{i}" for i in range(dim)]
        reference = np.concatenate(self._reference) if self._reference else None
        errors: dict[str, np.ndarray] = {}
        if reference is not None:
            if reference.shape[1] != dim:
                raise EvalDataError(
                    f"reference actions have {reference.shape[1]} dimensions but the policy "
                    f"outputs {dim}"
                )
            for st in self.stages:
                if st.name == "sim" and not self.paired:
                    continue
                errors[st.name] = per_frame_abs_error(actions[st.name], reference)
        metrics = {st.name: self._stage(st, actions, errors, reference, names)
                   for st in self.stages}
        return {"actions": actions, "reference": reference, "errors": errors,
                "action_names": names, "metrics": metrics}

    def _stage(self, st: Stage, actions: dict[str, np.ndarray], errors: dict[str, np.ndarray],
               reference: np.ndarray | None, names: Sequence[str]) -> dict[str, Any]:
        if st.name not in errors or reference is None:
            why = ("sim reference frames are not paired with the real frames"
                   if st.kind == "sim" and not self.paired
                   else "no reference actions (no manifest actions, no paired sim frames)")
            return _unavailable(ACTION_KEYS, why)
        pred, e = actions[st.name], errors[st.name]
        m: dict[str, Any] = {}
        am = action_metrics(pred, reference, dead_zone=self.dead_zone, tolerance=self.tolerance,
                            names=names)
        boot = functools.partial(bootstrap_ci, n_resamples=self.bootstrap, seed=self.seed,
                                 level=self.ci_level)
        ci_mae = boot(lambda idx: e[idx].mean(1), len(e)) if self.bootstrap else None
        for k, v in am.items():
            m[k] = metric_entry(v, ci=ci_mae if k == "action_mae" else None)
        if "turn_agreement" in am:
            agree = turn_agreement(pred, reference, self.dead_zone).astype(np.float64)
            ci_ta = boot(lambda idx: agree[idx].mean(1), len(agree)) if self.bootstrap else None
            m["turn_agreement"] = metric_entry(am["turn_agreement"], ci=ci_ta)
        else:
            m["turn_agreement"] = metric_entry(reason="turn direction needs two wheel commands")
        if "raw" in errors and "sim" in errors and self.paired:
            m["gap_closed"] = self._gap_closed(errors["raw"], e, errors["sim"], boot)
        else:
            m["gap_closed"] = metric_entry(reason="needs the raw stage and paired sim frames")
        return m

    def _gap_closed(self, e_raw: np.ndarray, e: np.ndarray, e_sim: np.ndarray,
                    boot: Any) -> dict[str, Any]:
        value, reason = gap_closed(float(e_raw.mean()), float(e.mean()), float(e_sim.mean()))
        ci = None
        if value is not None and self.bootstrap:
            def stat(idx: np.ndarray) -> np.ndarray:
                r, x, q = e_raw[idx].mean(1), e[idx].mean(1), e_sim[idx].mean(1)
                den = r - q
                tiny = np.abs(den) <= 1e-6 + 1e-3 * np.maximum(np.abs(r), np.abs(q))
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.where(tiny, np.nan, (r - x) / den)

            ci = boot(stat, len(e))
        return metric_entry(value, reason=reason, ci=ci)


class DistributionsAccumulator:
    """Feature and action distributions per stage against the sim frames (paired or the
    reference set): Fréchet distance and KID of the policy's penultimate features, energy
    distance and sliced Wasserstein of the actions.

    Args:
        stages: the rows (the list the evaluation appends the sim reference set to).
        features_reason: why the policy gives no features ("" when it does).
        kid_subset_size, kid_subsets, swd_projections, seed: as
            :class:`translate.evaluate.EvalSettings`.
    """

    def __init__(self, stages: Sequence[Stage], *, features_reason: str, kid_subset_size: int,
                 kid_subsets: int, swd_projections: int, seed: int) -> None:
        self.stages = stages
        self.features_reason = features_reason
        self.kid_subset_size, self.kid_subsets = kid_subset_size, kid_subsets
        self.swd_projections, self.seed = swd_projections, seed
        self._actions: dict[str, list[np.ndarray]] = {}
        self._features: dict[str, list[np.ndarray]] = {}

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        for name, a in chunk.actions.items():
            self._actions.setdefault(name, []).append(a)
        for name, f in chunk.features.items():
            self._features.setdefault(name, []).append(f)

    def result(self) -> dict[str, dict[str, Any]]:
        """Stage name → its distribution metrics."""
        sim = next((st for st in self.stages if st.kind == "sim"), None)
        return {st.name: self._stage(st, sim) for st in self.stages}

    def _stage(self, st: Stage, sim: Stage | None) -> dict[str, Any]:
        if sim is None:
            return _unavailable(DISTRIBUTION_KEYS,
                                "no sim frames to compare with (give sim_data=...)")
        if st.kind == "sim":
            return _unavailable(DISTRIBUTION_KEYS, "reference stage")
        a_st, a_sim = (np.concatenate(self._actions[n]) for n in (st.name, sim.name))
        if min(len(a_st), len(a_sim)) < 2:
            return _unavailable(DISTRIBUTION_KEYS, "needs at least 2 frames in each set")
        m: dict[str, Any] = {}
        if self._features.get(st.name) and self._features.get(sim.name):
            f_st = np.concatenate(self._features[st.name])
            f_sim = np.concatenate(self._features[sim.name])
            m["frechet_distance"] = metric_entry(frechet_distance(f_st, f_sim))
            k_val, k_std = kid(f_st, f_sim, subset_size=self.kid_subset_size,
                               n_subsets=self.kid_subsets, seed=self.seed)
            m["kid"] = metric_entry(k_val, std=k_std)
        else:
            why = f"no policy features: {self.features_reason or 'unavailable'}"
            m["frechet_distance"] = metric_entry(reason=why)
            m["kid"] = metric_entry(reason=why)
        m["action_energy_distance"] = metric_entry(energy_distance(a_st, a_sim))
        m["action_sliced_wasserstein"] = metric_entry(
            sliced_wasserstein(a_st, a_sim, n_projections=self.swd_projections, seed=self.seed))
        return m


class PairedImagesAccumulator:
    """PSNR, SSIM and LPIPS of every non-sim stage against the paired sim frames.

    The metrics (torch, GIL released) run in ``pool``, overlapping the next chunk's translation
    and policy passes (onnxruntime, GIL released too).

    Args:
        stages: the rows.
        pool: the worker the metrics run in.
        lpips_metric: the LPIPS metric, or None (then ``lpips_reason`` says why).
        lpips_reason: why LPIPS is unavailable.
        timing: accumulates the metrics' seconds (``image_metrics``), from the worker.
    """

    def __init__(self, stages: Sequence[Stage], *, paired: bool, pool: ThreadPoolExecutor,
                 lpips_metric: Lpips | None, lpips_reason: str, timing: dict[str, float]) -> None:
        self.stages = stages
        self.paired = paired
        self.pool = pool
        self.lpips_metric = lpips_metric
        self.lpips_reason = lpips_reason
        self.timing = timing
        self._lock = threading.Lock()
        self._jobs: dict[str, list[Future[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]] = {}

    def _score(self, frames: np.ndarray, sim: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        t0 = time.perf_counter()
        out = (psnr(frames, sim), ssim(frames, sim),
               None if self.lpips_metric is None else self.lpips_metric(frames, sim))
        with self._lock:
            self.timing["image_metrics"] = (self.timing.get("image_metrics", 0.0)
                                            + time.perf_counter() - t0)
        return out

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        if chunk.sim is None or chunk.reference_set:
            return
        sim = chunk.sim
        for st in self.stages:
            if st.kind == "sim" or st.name not in chunk.frames:
                continue
            frames = fit(st, chunk.frames[st.name], (sim.shape[1], sim.shape[2]),
                         "the paired-image metrics")
            self._jobs.setdefault(st.name, []).append(self.pool.submit(self._score, frames, sim))

    def result(self) -> dict[str, dict[str, Any]]:
        """Stage name → its paired-image metrics (waits for the worker)."""
        out: dict[str, dict[str, Any]] = {}
        for st in self.stages:
            if not self.paired:
                out[st.name] = _unavailable(PAIRED_KEYS, "no paired sim frames")
                continue
            if st.kind == "sim":
                out[st.name] = _unavailable(PAIRED_KEYS, "reference stage")
                continue
            scores = [job.result() for job in self._jobs.get(st.name, [])]
            lp = [s[2] for s in scores if s[2] is not None]
            out[st.name] = {
                "psnr": metric_entry(float(np.concatenate([s[0] for s in scores]).mean())),
                "ssim": metric_entry(float(np.concatenate([s[1] for s in scores]).mean())),
                "lpips": (metric_entry(float(np.concatenate(lp).mean())) if lp
                          else metric_entry(reason=self.lpips_reason)),
            }
        return out


class InputContractAccumulator:
    """Channel statistics of what each stage feeds the policy (its first ``n_frames`` frames,
    preprocessed) and the warnings where a stage departs from the sim stage's input.

    Args:
        stages: the rows (the list the evaluation appends the sim reference set to).
        spec: the policy's input contract.
        n_frames: frames per stage that feed the statistics.
    """

    def __init__(self, stages: Sequence[Stage], spec: PolicySpec, n_frames: int) -> None:
        self.stages = stages
        self.spec = spec
        self.n_frames = n_frames
        self._inputs: dict[str, list[np.ndarray]] = {}
        self._count: dict[str, int] = {}

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        for name, x in chunk.policy_frames.items():
            have = self._count.get(name, 0)
            if have < self.n_frames:
                take = x[: self.n_frames - have]
                self._inputs.setdefault(name, []).append(preprocess(take, self.spec))
                self._count[name] = have + len(take)

    def result(self) -> tuple[dict[str, ChannelStats], list[dict[str, str]]]:
        """``(stage name → ChannelStats, warnings)``."""
        stats = {st.name: channel_stats(np.concatenate(self._inputs[st.name]), self.spec.layout)
                 for st in self.stages if self._inputs.get(st.name)}
        warnings: list[dict[str, str]] = []
        if any(st.name == "sim" for st in self.stages):
            warnings = [w.to_dict() for w in check_input_contract(
                stats, "sim", channel_order=self.spec.channel_order)]
        return stats, warnings


class StripsAccumulator:
    """The frames shown through every stage in the report: ``n`` evenly spaced positions.

    Args:
        stages: the rows.
        stems: the set's frame ids.
        n: how many frames.
    """

    def __init__(self, stages: Sequence[Stage], stems: Sequence[str], n: int) -> None:
        self.stages = stages
        self.stems = stems
        total = len(stems)
        self.positions = set(np.linspace(0, total - 1, min(n, total)).round().astype(int)
                             .tolist()) if n > 0 and total else set()
        self._stems: list[str] = []
        self._frames: dict[str, list[np.ndarray]] = {}
        self._actions: dict[str, list[np.ndarray]] = {}
        self._reference: list[np.ndarray] = []

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        if chunk.reference_set:
            return
        for j, g in enumerate(chunk.index):
            if g not in self.positions:
                continue
            self._stems.append(self.stems[g])
            for name, f in chunk.frames.items():  # copies: views would pin whole chunks
                self._frames.setdefault(name, []).append(f[j].copy())
                self._actions.setdefault(name, []).append(chunk.actions[name][j])
            if chunk.reference is not None:
                self._reference.append(chunk.reference[j])

    def result(self) -> dict[str, Any]:
        """``{"stems", "frames": {stage: (K, H, W, 3)}, "actions": {stage: (K, A)},
        "reference": (K, A) or None, "stages"}``."""
        return {
            "stems": self._stems,
            "frames": {k: np.stack(v) for k, v in self._frames.items()},
            "actions": {k: np.stack(v) for k, v in self._actions.items()},
            "reference": np.stack(self._reference) if self._reference else None,
            "stages": [st.name for st in self.stages if st.name in self._frames],
        }


class WorstFramesAccumulator:
    """Per translated stage, the ``n`` frames whose actions are furthest from the reference.

    Args:
        stages: the rows.
        stems: the set's frame ids.
        n: frames kept per stage.
    """

    def __init__(self, stages: Sequence[Stage], stems: Sequence[str], n: int) -> None:
        self.stems = stems
        self.n = n
        self._heaps: dict[str, list[tuple[float, int, dict[str, Any]]]] = {
            st.name: [] for st in stages if st.kind == "translated"}

    def update(self, chunk: Chunk) -> None:
        """Take in one chunk (:class:`Accumulator`)."""
        ref = chunk.reference
        if ref is None or chunk.reference_set:
            return
        for name, heap in self._heaps.items():
            pred = chunk.actions[name]
            err = np.abs(pred - ref).mean(axis=1)
            for j in np.argsort(-err)[: self.n]:
                item = (float(err[j]), chunk.index[j], {
                    "input": chunk.inputs[name][j].copy(), "output": chunk.frames[name][j].copy(),
                    "sim": None if chunk.sim is None else chunk.sim[j].copy(),
                    "pred": pred[j], "ref": ref[j],
                    "sim_pred": chunk.actions["sim"][j] if "sim" in chunk.actions else None,
                })
                if len(heap) < self.n:
                    heapq.heappush(heap, item)
                elif item[0] > heap[0][0]:
                    heapq.heapreplace(heap, item)

    def result(self) -> dict[str, dict[str, Any]]:
        """Stage name → ``{"stems", "errors", "input", "output", "sim", "pred", "ref",
        "sim_pred"}``, worst first (``sim`` / ``sim_pred`` None without paired sim frames)."""
        return {name: self._worst(heap) for name, heap in self._heaps.items() if heap}

    def _worst(self, heap: list[tuple[float, int, dict[str, Any]]]) -> dict[str, Any]:
        items = sorted(heap, key=lambda it: -it[0])
        sims = [it[2]["sim"] for it in items]
        sim_preds = [it[2]["sim_pred"] for it in items]
        return {
            "stems": [self.stems[it[1]] for it in items],
            "errors": np.array([it[0] for it in items]),
            "input": np.stack([it[2]["input"] for it in items]),
            "output": np.stack([it[2]["output"] for it in items]),
            "sim": None if any(x is None for x in sims) else np.stack(sims),
            "pred": np.stack([it[2]["pred"] for it in items]),
            "ref": np.stack([it[2]["ref"] for it in items]),
            "sim_pred": None if any(x is None for x in sim_preds) else np.stack(sim_preds),
        }
