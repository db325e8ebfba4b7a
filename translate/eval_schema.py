"""The metrics.json schema: its version, the metric names, a metric entry, a stage entry, the document, the threshold checks."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from translate import __version__

__all__ = [
    "METRIC_NAMES",
    "SCHEMA_VERSION",
    "check_thresholds",
    "metric_entry",
    "metrics_document",
    "stage_entry",
]


#: Version of the metrics.json layout (docs/metrics.md); bumped on incompatible changes.
SCHEMA_VERSION = 1

#: Metric keys of a stage (besides ``action_mae_<name>`` / ``action_rmse_<name>`` per action).
METRIC_NAMES: tuple[str, ...] = (
    "action_mae", "action_rmse", "action_cosine", "turn_agreement", "within_tolerance",
    "gap_closed", "psnr", "ssim", "lpips", "frechet_distance", "kid", "action_energy_distance",
    "action_sliced_wasserstein",
)


def metric_entry(value: float | None = None, *, reason: str = "",
                 ci: tuple[float, float] | None = None, **extra: Any) -> dict[str, Any]:
    """One metric of a stage: ``{"available", "value", ["ci"], ...}`` or why it is unavailable.

    Args:
        value: the value; None or non-finite = unavailable.
        reason: why it is unavailable.
        ci: the confidence interval ``(lo, hi)``.
        **extra: more fields (e.g. KID's ``std``).

    Returns:
        The JSON-ready entry.

    Example:
        >>> metric_entry(reason="no paired sim frames")
        {'available': False, 'value': None, 'reason': 'no paired sim frames'}
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return {"available": False, "value": None, "reason": reason or "not computed"}
    out: dict[str, Any] = {"available": True, "value": float(value)}
    if ci is not None:
        out["ci"] = [float(ci[0]), float(ci[1])]
    out.update(extra)
    return out


def stage_entry(*, name: str, kind: str, label: str, translator: str | None, n_frames: int,
                frame_size: Sequence[int] | None, reference_actions: str | None,
                notes: Sequence[str], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One stage of ``metrics.json["stages"]`` (docs/metrics.md).

    Args:
        name: ``raw``, ``corrected``, ``translated:<name>`` or ``sim``.
        kind: ``raw``, ``corrected``, ``translated`` or ``sim``.
        label: the row's label in tables.
        translator: the translator's name, for translated stages.
        n_frames: frames the policy saw at this stage.
        frame_size: (H, W) of the stage's frames.
        reference_actions: where the reference actions came from.
        notes: what happened to the frames on the way (resizes, raw feeds).
        metrics: metric name → :func:`metric_entry`.

    Returns:
        The JSON-ready entry.
    """
    return {
        "name": name,
        "kind": kind,
        "label": label,
        "translator": translator,
        "n_frames": int(n_frames),
        "frame_size": list(frame_size) if frame_size else None,
        "reference_actions": reference_actions,
        "notes": list(notes),
        "metrics": dict(metrics),
    }


def metrics_document(*, data: Mapping[str, Any], policy: Mapping[str, Any],
                     translators: Sequence[Mapping[str, Any]], settings: Mapping[str, Any],
                     stages: Sequence[Mapping[str, Any]], warnings: Sequence[Mapping[str, str]],
                     policy_contract: Mapping[str, Any] | None,
                     timing: Mapping[str, Any]) -> dict[str, Any]:
    """The whole ``metrics.json`` (without ``config``, which the report adds), in key order.

    Args:
        data: the evaluation set (kind, path, counts, sizes, skipped frames, camera).
        policy: the policy (path, input size, action names, spec, features).
        translators: one ``{"name", ...info}`` per translator.
        settings: the evaluation settings.
        stages: :func:`stage_entry` per stage, in pipeline order.
        warnings: ``{"stage", "kind", "message"}`` per warning.
        policy_contract: the spec self-check, or None.
        timing: seconds, frames per second and the parts.

    Returns:
        The JSON-ready document, ``schema_version`` = :data:`SCHEMA_VERSION`.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "sim2real-translate evaluation", "version": __version__},
        "data": dict(data),
        "policy": dict(policy),
        "translators": [dict(t) for t in translators],
        "settings": dict(settings),
        "stages": [dict(st) for st in stages],
        "warnings": [dict(w) for w in warnings],
        "policy_contract": policy_contract,
        "timing": dict(timing),
    }


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
