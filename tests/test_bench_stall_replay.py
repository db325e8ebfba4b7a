"""bench/stall_replay.py: the stall rule replayed on saved curves, both results layouts, the summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import stall_replay  # noqa: E402


def test_replay_warns_at_the_first_check_past_40_percent_of_a_stalled_run() -> None:
    stalled = [(999 + 1000 * i, v) for i, v in enumerate([-0.16, -0.08, -0.14, 0.01, 0.11, 0.08])]
    assert stalled[3][0] == 3999 and stall_replay.replay(stalled, 10000) == 3999
    learnt = [(999 + 1000 * i, v) for i, v in enumerate([0.53, 0.62, 0.65, 0.67, 0.63])]
    assert stall_replay.replay(learnt, 10000) is None


def test_main_reads_both_layouts_and_skips_runs_cut_short(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    stalled = [[999 + 1000 * i, v, 0.7] for i, v in enumerate([-0.1, 0.0, 0.02, 0.01, 0.03])]
    (tmp_path / "heldout_gpu_x.json").write_text(json.dumps({"results": [
        {"look": "cool_led", "seed": 1, "val_curve": stalled,
         "stages": {"translated": {"metrics": {"gap_closed": {"value": 0.063}}}}},
        {"look": "cool_led", "seed": 2, "val_curve": stalled[:2]},  # stopped at 2,000 of 10,000
    ]}))
    (tmp_path / "efficacy_gpu_y.json").write_text(json.dumps({"runs": [
        {"name": "a", "seed": 0, "val_curve_ema": [{"step": 999 + 1000 * i, "gap_closed": v}
                                                   for i, v in enumerate([0.5, 0.6, 0.7, 0.7, 0.7])],
         "stages": [{"name": "translated", "gap_closed": 0.77}]},
    ]}))
    assert stall_replay.main([str(tmp_path / "heldout_gpu_x.json"), str(tmp_path / "efficacy_gpu_y.json")]) == 0
    out = capsys.readouterr().out
    assert "| heldout_gpu_x.json | cool_led | 1 | 4000 | 6.3 |" in out
    assert "not judged (stopped at 2000)" in out
    assert "| efficacy_gpu_y.json | a | 0 | - | 77.0 |" in out
    assert "warned on 1 of 2 judged runs" in out


def test_a_run_the_stall_extension_lengthened_is_judged_on_its_first_schedule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curve = [[999 + 1000 * i, 0.01] for i in range(20)]  # 20,000 iterations after the switch
    run = {"look": "cool_led", "seed": 0, "val_curve": curve}
    (tmp_path / "heldout_gpu_ext.json").write_text(json.dumps({"results": [
        {**run, "schedule_iterations": 10000}, {**run, "seed": 1}]}))
    assert stall_replay.main([str(tmp_path / "heldout_gpu_ext.json")]) == 0
    out = capsys.readouterr().out
    assert "| heldout_gpu_ext.json | cool_led | 0 | 4000 |" in out  # 40 % of the 10,000 it started with
    assert "| heldout_gpu_ext.json | cool_led | 1 | 8000 |" in out  # without the record: 40 % of 20,000
