"""Tests for datasets.jetbot_synth.closed_loop_report: the closed-loop report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.jetbot_synth.closed_loop import (
    ClosedLoopSettings,
    StageRun,
    StageSpec,
    summarise,
)
from datasets.jetbot_synth.closed_loop_report import format_rate, write_closed_loop_report
from datasets.jetbot_synth.drive import EpisodeLog, start_states
from datasets.jetbot_synth.world import WorldConfig

REPO = Path(__file__).resolve().parents[3]
QUIET = ClosedLoopSettings(progress=False, bootstrap_n=100)


def _fake_run(name: str, kind: str, successes: int, n: int = 10) -> StageRun:
    steps = np.full(n, 5)
    outcome = ["success"] * successes + ["timeout"] * (n - successes)
    actions = np.tile(np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.4], [0.2, 0.4], [0.2, 0.4]]),
                      (n, 1, 1))
    log = EpisodeLog(np.zeros((n, 6, 3)), actions, steps, outcome, np.ones(n), np.ones(n),
                     info={"dt": 0.1})
    return StageRun(StageSpec(name, kind, name), log, out_change=8.0, in_change=4.0, n_changes=4)


def test_report_files(tmp_path: Path) -> None:
    starts = start_states(10, 0, WorldConfig(size=32))
    runs = [_fake_run("raw", "raw", 2), _fake_run("sim", "sim", 8)]
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
