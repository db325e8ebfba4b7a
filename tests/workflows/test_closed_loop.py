"""Tests for workflows.closed_loop: evaluate_closed_loop(cfg) end to end on a tiny world, the config, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eval_closed_loop as ecl
from workflows import closed_loop


def _cfg(root: Path, out: Path, **overrides):
    base = {
        "policy.path": str(root / "policy" / "policy.onnx"),
        "out_dir": str(out),
        "progress": False,
        "print_table": False,
        "bootstrap.n": 50,
        "policy.build_if_missing": False,
        "threads": 1,
        "closed_loop.episodes": 3,
        "closed_loop.drive.max_steps": 8,
        "closed_loop.gif_episode": 0,
    }
    base.update(overrides)
    return closed_loop.default_config(base)


def test_closed_loop_end_to_end(tiny_synth: Path, onnx_translator: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_synth, tmp_path / "cl", translator=["identity", str(onnx_translator)])
    m = closed_loop.evaluate_closed_loop(cfg)
    names = [s["name"] for s in m["stages"]]
    assert names[:3] == ["expert", "raw", "corrected"] and names[-1] == "sim"
    assert names[3].startswith("translated:") and len(names) == 5  # identity adds no row
    for s in m["stages"]:
        assert s["success"]["n"] == 3 and s["steps"] <= 3 * 8
    saved = json.loads((tmp_path / "cl" / "metrics.json").read_text())
    assert saved["config"]["closed_loop"]["episodes"] == 3
    assert saved["config"]["drive_resolved"]["max_steps"] == 8
    assert (tmp_path / "cl" / "report.html").is_file()
    assert len(list((tmp_path / "cl" / "figures").glob("episode_*.gif"))) == 4


def test_config_composes_eval_yaml() -> None:
    cfg = closed_loop.default_config()
    assert cfg.policy.path.endswith("jetbot_synth_128px_seed0/policy/policy.onnx")
    assert cfg.camera == "auto" and cfg.translator is None
    assert list(cfg.closed_loop.stages) == ["expert", "raw", "corrected", "translated", "sim"]


def test_bad_inputs_name_the_file_or_key(tiny_synth: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"closed_loop.world: .*nope.*dataset.json"):
        closed_loop.evaluate_closed_loop(_cfg(tiny_synth, tmp_path, **{"closed_loop.world": str(
            tmp_path / "nope")}))
    with pytest.raises(ValueError, match=r"closed_loop.drive: unknown key\(s\) \['speed'\]"):
        closed_loop.evaluate_closed_loop(_cfg(tiny_synth, tmp_path, **{"closed_loop.drive.speed": 1}))
    with pytest.raises(FileNotFoundError, match="translator not found"):
        closed_loop.evaluate_closed_loop(_cfg(tiny_synth, tmp_path, translator=str(tmp_path / "x.onnx")))
    assert ecl.run(_cfg(tiny_synth, tmp_path, **{"closed_loop.stages": ["oracle"]})) == 1
