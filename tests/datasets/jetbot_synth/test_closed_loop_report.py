"""Tests for datasets.jetbot_synth.closed_loop_report: the closed-loop report files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from datasets.jetbot_synth.closed_loop import (
    ClosedLoopSettings,
    StageRun,
    summarise,
)
from datasets.jetbot_synth.closed_loop_report import format_rate, write_closed_loop_report
from datasets.jetbot_synth.drive import start_states
from datasets.jetbot_synth.world import WorldConfig

REPO = Path(__file__).resolve().parents[3]
QUIET = ClosedLoopSettings(progress=False, bootstrap_n=100)


def test_report_files(tmp_path: Path, fake_run: Callable[..., StageRun]) -> None:
    starts = start_states(10, 0, WorldConfig(size=32))
    runs = [fake_run("raw", "raw", 2), fake_run("sim", "sim", 8)]
    runs[0].gif = [(np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 9, np.uint8))] * 3
    from datasets.jetbot_synth.closed_loop import ClosedLoopResult

    res = ClosedLoopResult(starts, runs, summarise(runs, starts, QUIET))
    files = write_closed_loop_report(res, tmp_path, config={"x": 1})
    for name in ("metrics.json", "episodes.csv", "report.md", "report.html",
                 "figures/trajectories_raw.png", "figures/episode_raw.gif",
                 "figures/strip_raw.png"):
        assert (tmp_path / name).is_file(), name
    assert json.loads(Path(files["metrics"]).read_text())["config"] == {"x": 1}
    assert "20.0 %" in (tmp_path / "report.md").read_text()


def test_format_rate() -> None:
    assert format_rate({"value": 0.41666, "ci": [0.193, 0.68]}) == "41.7 % [19.3, 68.0]"
    assert format_rate({"value": 0.5}) == "50.0 %"
    assert format_rate(None) == format_rate({"value": None}) == "—"
