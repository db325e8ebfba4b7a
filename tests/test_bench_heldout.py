"""bench/heldout.py's tables: the per-run rows and the worst seed of each look."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import heldout  # noqa: E402


def _run(look: str, seed: int, gap: float | None) -> dict[str, Any]:
    stages: dict[str, Any] = {
        "raw": {"metrics": {"turn_agreement": {"value": 0.6}}},
        "sim": {"metrics": {"turn_agreement": {"value": 0.95}}},
    }
    if gap is not None:
        stages["translated"] = {"metrics": {"gap_closed": {"value": gap, "ci": [gap - 0.05, gap + 0.05]},
                                            "turn_agreement": {"value": 0.8, "ci": [0.75, 0.85]}}}
    return {"recipe": "gpu", "look": look, "seed": seed, "wall_s": 60.0, "stages": stages,
            "val_curve": [[999, 0.1, 0.7]]}


def test_worst_table_takes_each_looks_worst_seed_and_counts_a_failure_as_worst() -> None:
    """Two looks: the worst of 3 seeds per look, with its interval; a failed run is the worst."""
    results = [_run("a", 0, 0.6), _run("a", 1, 0.2), _run("a", 2, 0.5),
               _run("b", 0, 0.7), _run("b", 1, None)]
    rows = heldout.worst_table(results).splitlines()[2:]
    assert rows == ["| gpu | a | 3 | 20.0 [15.0, 25.0] | 1 |", "| gpu | b | 2 | failed | 1 |"]
    per_run = heldout.table(results).splitlines()[2:]
    assert len(per_run) == 5 and "failed" in per_run[4] and "60.0 [55.0, 65.0]" in per_run[0]
