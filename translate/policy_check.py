"""The policy's input contract checks itself: sim frames through the spec and its plausible alternatives."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translate.metrics import action_collapse, action_metrics
from translate.policy import PolicySpec, PolicySpecError, load_policy

__all__ = ["ContractCheck", "check_policy_contract", "main", "read_sim_frames", "spec_alternatives"]

#: ImageNet statistics on 0–1 RGB: the mean/std normalisation a policy trained on a pretrained
#: backbone most often expects.
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def spec_alternatives(spec: PolicySpec) -> list[tuple[str, PolicySpec]]:
    """Plausible wrong-by-one-setting variants of ``spec``: the mistakes users make.

    Value scale (0–255 ↔ 0–1), channel order (RGB ↔ BGR), layout (NHWC ↔ NCHW) and
    normalisation (none ↔ per-image mean ↔ ImageNet mean/std).

    Returns:
        ``[(the override that makes it, e.g. "scale: 0-1", spec)]``.
    """
    out: list[tuple[str, PolicySpec]] = []
    out.append((f"scale: {'0-1' if spec.scale == '0-255' else '0-255'}",
                spec.replace(scale="0-1" if spec.scale == "0-255" else "0-255")))
    out.append((f"channel_order: {'BGR' if spec.channel_order == 'RGB' else 'RGB'}",
                spec.replace(channel_order="BGR" if spec.channel_order == "RGB" else "RGB")))
    out.append((f"layout: {'NCHW' if spec.layout == 'NHWC' else 'NHWC'}",
                spec.replace(layout="NCHW" if spec.layout == "NHWC" else "NHWC")))
    for norm in ("none", "per_image_mean"):
        if spec.normalize != norm:
            out.append((f"normalize: {norm}", spec.replace(normalize=norm, mean=None, std=None)))
    if spec.normalize != "mean_std":
        mean, std = _IMAGENET
        k = 255.0 if spec.scale == "0-255" else 1.0
        order = (lambda v: v) if spec.channel_order == "RGB" else (lambda v: tuple(reversed(v)))
        out.append(("normalize: mean_std (ImageNet)",
                    spec.replace(normalize="mean_std", mean=order(tuple(m * k for m in mean)),
                                 std=order(tuple(s * k for s in std)))))
    return out


@dataclass
class ContractCheck:
    """The result of :func:`check_policy_contract`.

    Attributes:
        rows: one per spec tried: ``{"spec", "action_mae", "turn_agreement", "action_spread",
            "turn_mode_share"}`` (the first row is the spec as configured; None where not
            measurable, e.g. no expert actions).
        warnings: loud, one-line findings naming the spec change to make.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"rows": self.rows, "warnings": self.warnings}

    def table(self) -> str:
        """A small text table (fits 100 columns)."""
        lines = [f"{'spec':34s} {'action MAE':>10s} {'turn agr.':>9s} {'spread':>7s} {'one turn':>8s}"]
        for r in self.rows:
            if "error" in r:
                lines.append(f"{r['spec'][:34]:34s} refused: {r['error'][:56]}")
                continue

            def f(k: str, fmt: str, pct: bool = False, r: dict[str, Any] = r) -> str:
                v = r.get(k)
                return "–" if v is None else format(100 * v if pct else v, fmt)
            lines.append(f"{r['spec'][:34]:34s} {f('action_mae', '10.3f')} {f('turn_agreement', '8.1f', True)}% "
                         f"{f('action_spread', '7.3f')} {f('turn_mode_share', '7.0f', True)}%")
        return "\n".join(lines)


def _score(actions: np.ndarray, expert: np.ndarray | None, dead_zone: float) -> dict[str, Any]:
    spread, mode = action_collapse(actions, dead_zone)
    row: dict[str, Any] = {"action_spread": spread, "turn_mode_share": mode,
                           "action_mae": None, "turn_agreement": None}
    if expert is not None:
        am = action_metrics(actions, expert, dead_zone=dead_zone)
        row["action_mae"] = am["action_mae"]
        row["turn_agreement"] = am.get("turn_agreement")
    return row


def check_policy_contract(
    model: str | Path,
    spec: PolicySpec,
    sim_frames: np.ndarray,
    expert_actions: np.ndarray | None = None,
    *,
    dead_zone: float = 0.05,
    better: float = 0.7,
    degenerate_spread: float = 0.02,
) -> ContractCheck:
    """Run the policy on its own domain's frames under ``spec`` and each alternative; judge.

    Needs no second stage: on sim frames a correct spec gives varied actions (and, with expert
    actions, agrees with the expert). Warns when the configured spec's actions are degenerate
    (spread under ``degenerate_spread`` or one turn direction on > 95 % of frames) or when an
    alternative fits clearly better (action MAE under ``better`` × the configured one, and at
    least 0.05 lower; without expert actions: a degenerate configured spec whose alternative is
    not degenerate).

    Args:
        model: the policy file (ONNX or TorchScript).
        spec: its spec as configured.
        sim_frames: (N, H, W, 3) uint8 RGB sim frames (N ≥ 8 recommended).
        expert_actions: (N, A) the expert's actions on them, or None.
        dead_zone: turn-direction dead zone.
        better: the MAE ratio that counts as clearly better.
        degenerate_spread: the action spread under which actions are degenerate.

    Returns:
        A :class:`ContractCheck`.
    """
    frames = np.asarray(sim_frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"sim_frames must be (N, H, W, 3) uint8 with N >= 1, got {frames.shape}")
    expert = None if expert_actions is None else np.asarray(expert_actions, np.float64)[: len(frames)]
    out = ContractCheck()
    for label, s in [("as configured", spec), *spec_alternatives(spec)]:
        try:
            acts = np.asarray(load_policy(model, s).act(frames), np.float64)
        except (PolicySpecError, ValueError, RuntimeError) as exc:
            if label == "as configured":
                raise
            out.rows.append({"spec": label, "error": str(exc).splitlines()[0][:120]})
            continue
        out.rows.append({"spec": label, **_score(acts, expert, dead_zone)})
    base = out.rows[0]
    degenerate = base["action_spread"] < degenerate_spread or base["turn_mode_share"] > 0.95
    if degenerate:
        out.warnings.append(
            f"policy input contract: on sim frames the policy's actions are degenerate under the "
            f"configured spec (spread {base['action_spread']:.3f}, one turn direction on "
            f"{100 * base['turn_mode_share']:.0f} % of frames): the spec is probably wrong")
    for r in out.rows[1:]:
        if "error" in r:
            continue
        if base["action_mae"] is not None and r["action_mae"] is not None:
            if r["action_mae"] < better * base["action_mae"] and base["action_mae"] - r["action_mae"] >= 0.05:
                out.warnings.append(
                    f"policy input contract: the spec with '{r['spec']}' fits the expert on sim frames "
                    f"much better (action MAE {r['action_mae']:.3f} vs {base['action_mae']:.3f} as "
                    f"configured): set {r['spec'].split(' (')[0]} in the policy spec")
        elif degenerate and r["action_spread"] >= degenerate_spread and r["turn_mode_share"] <= 0.95:
            out.warnings.append(
                f"policy input contract: with '{r['spec']}' the policy's actions on sim frames are "
                f"not degenerate (spread {r['action_spread']:.3f}): try {r['spec'].split(' (')[0]}")
    return out


def read_sim_frames(sim: Path, manifest: Path | None, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``limit`` sim frames (N, H, W, 3) uint8 and, when a manifest lists them, the expert's
    actions (N, A); paths in the manifest must stay inside its folder."""
    from translate.fsutil import safe_join
    from translate.imageio import list_images, read_image

    if manifest is not None:
        root = manifest.parent
        items = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        items = [i for i in items if i.get("sim") and i.get("action") is not None][:limit]
        if not items:
            raise ValueError(f"{manifest}: no entries with both 'sim' and 'action'")
        paths = [safe_join(root, i["sim"], what=f"{manifest.name}: sim frame") for i in items]
        return np.stack([read_image(p) for p in paths]), np.asarray([i["action"] for i in items], np.float64)
    paths = list_images(sim, what="sim frame folder")[:limit]
    return np.stack([read_image(p) for p in paths]), None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.policy check policy.onnx --sim DIR [--manifest FILE] [--spec SPEC]``."""
    ap = argparse.ArgumentParser(prog="python -m translate.policy check",
                                 description="Check a frozen policy's input contract on sim frames.")
    ap.add_argument("model", type=Path)
    ap.add_argument("--sim", type=Path, required=True, help="a folder of sim frames")
    ap.add_argument("--manifest", type=Path, default=None,
                    help="a manifest.jsonl listing sim frames with expert actions")
    ap.add_argument("--spec", default=None, help="a preset name or spec YAML (default: policy_spec.yaml next to the model)")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        spec = load_policy(args.model, args.spec).spec
        frames, actions = read_sim_frames(args.sim, args.manifest, args.frames)
        result = check_policy_contract(args.model, spec, frames, actions)
    except (FileNotFoundError, ValueError, PolicySpecError) as exc:
        print(f"python -m translate.policy check: error: {exc}", file=sys.stderr)
        return 1
    print(result.table())
    for w in result.warnings:
        print(f"WARNING: {w}")
    if not result.warnings:
        print("the configured spec fits best of the alternatives tried")
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=1))
    return 2 if result.warnings else 0
