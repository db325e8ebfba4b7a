"""Replay the training-time stall warning (models.base.translator_stall) on saved validation curves.

Every run in ``bench/results/*.json`` that kept its validation curve is replayed check by check:
does the rule warn, and at which iteration? The runs' test gap closed is printed beside it, so the
table shows whether the warning picks the runs that failed. No training; the rule and the curves
are the product's own (``val/gap_closed`` of the exported weights, every 1,000 iterations on the
GPU recipe, 250 on the CPU demo).

    python bench/stall_replay.py                       # every results file
    python bench/stall_replay.py bench/results/heldout_gpu_h200_half.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.base import translator_stall  # noqa: E402


def _curve(run: dict[str, Any]) -> list[tuple[int, float]]:
    """(step, val/gap_closed) of a saved run, either layout (lists or dicts)."""
    raw = run.get("val_curve") or run.get("val_curve_ema") or []
    return [(int(p["step"]), float(p["gap_closed"])) if isinstance(p, dict) else (int(p[0]), float(p[1]))
            for p in raw]


def _test_gap(run: dict[str, Any]) -> float | None:
    """The run's test-split gap closed (fraction), where the file kept it."""
    stage = run.get("stage")
    stages = run.get("stages")
    if stage is None and isinstance(stages, dict):
        stage = stages.get("translated")
    elif stage is None and isinstance(stages, list):
        stage = next((s for s in stages if isinstance(s, dict)
                      and (s.get("kind") == "translated" or s.get("name") == "translated")), None)
    if stage is not None and isinstance(stage.get("gap_closed"), (int, float)):
        return float(stage["gap_closed"])  # the flat layout of some results files
    node = ((stage or {}).get("metrics") or {}).get("gap_closed")
    return node.get("value") if isinstance(node, dict) else None


def replay(curve: list[tuple[int, float]], total: int) -> int | None:
    """The step at which the rule first warns on ``curve`` (a run of ``total`` iterations), or None."""
    history: list[float] = []
    for step, value in curve:
        history.append(value)
        if translator_stall(history, min(1.0, (step + 1) / total)) is not None:
            return step
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    files = args.files or sorted((REPO / "bench" / "results").glob("*.json"))
    print(f"# stall warning replayed on saved curves; machine: {platform.node()} (no training)")
    print("| file | run | seed | warns at iteration | test gap closed % | val curve % |")
    print("|---|---|---|---|---|---|")
    warned: list[float | None] = []
    quiet: list[float | None] = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        runs = data.get("results") or data.get("runs") if isinstance(data, dict) else None
        for run in runs if isinstance(runs, list) else []:
            if not isinstance(run, dict) or not _curve(run):
                continue
            curve = _curve(run)
            # the schedule's length: the CPU demo's 2,500 iterations, the GPU recipe's 10,000, or longer;
            # a run that model.stall_extension lengthened is judged on the schedule it started with
            total = int(run.get("schedule_iterations") or max(curve[-1][0] + 1, 2500 if "cpu" in f.name else 10000))
            gap = _test_gap(run)
            name = run.get("look") or run.get("config") or run.get("name") or "?"
            if (curve[-1][0] + 1) / total < 0.4:
                at_text = f"not judged (stopped at {curve[-1][0] + 1})"
            else:
                at = replay(curve, total)
                at_text = "-" if at is None else str(at + 1)
                (warned if at is not None else quiet).append(gap)
            print(f"| {f.name} | {name} | {run.get('seed', '?')} | {at_text} | "
                  f"{'?' if gap is None else f'{100 * gap:.1f}'} | "
                  f"{', '.join(f'{100 * v:.0f}' for _, v in curve)} |")
    w = sorted(100 * g for g in warned if g is not None)
    q = sorted(100 * g for g in quiet if g is not None)
    print(f"\nwarned on {len(warned)} of {len(warned) + len(quiet)} judged runs"
          + (f"; their test gap closed {w[0]:.1f} to {w[-1]:.1f} %, {sum(v < 35 for v in w)} below 35 %"
             if w else "")
          + (f"; the others' {q[0]:.1f} to {q[-1]:.1f} %, {sum(v < 35 for v in q)} below 35 %" if q else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
