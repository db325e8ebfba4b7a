"""eval_closed_loop.py: the command line through Hydra (workflows.closed_loop has its own tests in tests/workflows/test_closed_loop.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cli_runs_through_hydra(tiny_synth: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "eval_closed_loop.py", "policy=custom", f"policy.path={tiny_synth}/policy/policy.onnx",
           f"out_dir={tmp_path}/out", "closed_loop.episodes=2", "closed_loop.drive.max_steps=3",
           "closed_loop.stages=[expert,raw]", "progress=false", "bootstrap.n=0", "threads=1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "raw real" in done.stdout and (tmp_path / "out" / "metrics.json").is_file()
