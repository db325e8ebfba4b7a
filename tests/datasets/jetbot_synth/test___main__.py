"""Tests for datasets.jetbot_synth.__main__: the dataset CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_cli_writes_and_reuses(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "datasets.jetbot_synth", "--out", str(out), "--size", "32",
           "--n-real", "2", "--n-sim", "2", "--n-val", "1", "--n-test", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout
    assert json.loads((out / "dataset.json").read_text())["counts"]["test"] == 2
    bad = subprocess.run([*cmd[:5], "--n-real", "-1"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "n_real" in bad.stderr
