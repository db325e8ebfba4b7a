"""eval_policy_on_translated.py: exit codes and the command line (workflows.evaluation has its own tests in tests/workflows/test_evaluation.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_eval_cfg

import eval_policy_on_translated as ept

REPO = Path(__file__).resolve().parents[1]


def test_run_exit_codes(tiny_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fail = tiny_eval_cfg(tiny_synth, tmp_path / "a", max_frames=4, **{"fail_under.turn_agreement": 1.01})
    assert ept.run(fail) == 2
    err = capsys.readouterr().err
    assert "threshold(s) violated" in err and "turn_agreement" in err and "< 1.01" in err
    ok = tiny_eval_cfg(tiny_synth, tmp_path / "b", max_frames=4, **{"fail_over.action_mae": 10.0})
    assert ept.run(ok) == 0
    bad = tiny_eval_cfg(tiny_synth, tmp_path / "c", **{"fail_under.turn_agreemnt": 0.8})
    assert ept.run(bad) == 1
    assert "unknown metric; valid names" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before any work


def test_command_line_takes_data_as_a_path_and_policy_as_in_training(tmp_path: Path) -> None:
    # data is a config group of train.yaml in the same configs/ folder; the eval app must still
    # read it as a plain key, while policy is the group training uses
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval_policy_on_translated.py"), f"data={tmp_path}/d",
         "policy=custom", f"policy.path={tmp_path}/p.onnx", "policy.spec=rl_games",
         "translator=[identity,x.onnx]", "+fail_under.ssim=0.5",
         f"out_dir={tmp_path}/out", "--cfg", "job"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"data: {tmp_path}/d" in proc.stdout and f"path: {tmp_path}/p.onnx" in proc.stdout
    assert "spec: rl_games" in proc.stdout and "ssim: 0.5" in proc.stdout


def test_command_line_names_the_old_policy_form(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval_policy_on_translated.py"), f"policy={tmp_path}/p.onnx"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 1
    assert "policy=custom policy.path=PATH policy.spec=SPEC" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_command_line_end_to_end(tiny_synth: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval_policy_on_translated.py"), f"data={tiny_synth}/test",
         "policy=custom", f"policy.path={tiny_synth}/policy/policy.onnx", f"out_dir={tmp_path}/out",
         "+fail_under.turn_agreement=1.01", "bootstrap.n=50"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Policy actions vs reference" in proc.stdout and "FAIL" in proc.stdout
    assert (tmp_path / "out" / "report.html").is_file()
