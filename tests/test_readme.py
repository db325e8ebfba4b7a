"""README's shell commands, run as a user runs them (tiny overrides appended), so README cannot drift from what works."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: commands this test does not run, by how they start, with the reason
NOT_RUN = {
    "pip install": "installs packages; tests/test_install.py checks the install split",
    "ruff check": "a CI step (.ci/run), not a product command",
    "mypy": "a CI step (.ci/run), not a product command",
    "python -m pytest": "the test suite itself",
    "torchrun": "needs 4 GPUs (the DDP path is tested on CPUs: tests/test_ddp_gradients.py, -m slow -k ddp)",
    "srun": "needs SLURM and 2 nodes of 4 GPUs",
    "python train_translate.py trainer=ddp trainer.devices=4": "needs 4 GPUs",
}

#: appended to every command of a program: seconds-long runs on the tiny data of the workspace
_TRAIN_TINY = [
    "experiment=cpu_demo", "trainer.max_steps=2", "data.steps_per_epoch=2", "data.crop_size=32",
    "data.num_workers=0", "data.val_size=4", "model.generator.ngf=8", "model.generator.n_blocks=2",
    "model.discriminator.ndf=8", "model.n_epochs=1", "model.n_epochs_decay=1",
    "model.log_images_every_n_steps=1", "callbacks.last_checkpoint.every_n_train_steps=2",
    "trainer.enable_progress_bar=false", "evaluate.max_frames=8",
]
_SYNTH_TINY = ["data.synth.size=48", "data.synth.n_real=8", "data.synth.n_sim=8", "data.synth.n_val=8",
               "data.synth.n_test=8"]
_EVAL_TINY = ["bootstrap.n=20", "num_workers=0", "progress=false", "lpips=off", "report.strips=2",
              "report.worst=2", "kid.subset_size=4"]
#: a 48 px policy stands in for the 128 px default one that eval_policy_on_translated.py would build
_EVAL_POLICY = ["policy=custom", "policy.path=data/jetbot_synth_48px_seed0/policy/policy.onnx"]

#: README's placeholders → what the workspace holds
_PLACES = {
    "runs/RUN": "runs/cyclegan_folders_cpu_demo",
    # the closed-loop command comes before README trains anything here: its form runs on identity
    "runs/cyclegan_jetbot_synth_cpu_demo/export/translator.onnx": "identity",
    "b/checkpoints/last.ckpt": "runs/cyclegan_folders_cpu_demo/checkpoints/last.ckpt",
    "a.onnx": "runs/cyclegan_folders_cpu_demo/export/translator.onnx",
    "x.onnx": "runs/cyclegan_folders_cpu_demo/export/translator.onnx",
    "SESSION_DIR": "session",
}
#: exit codes that are the command's documented outcome besides 0 (2: a gate or a check that failed,
#: as it must on an untrained policy / translator)
_ALSO_OK = {"python -m translate.policy check": {2}, "+fail_under.turn_agreement": {2}}


@dataclass(frozen=True)
class Command:
    """One shell command of README (continuations joined, ``&&`` chains split)."""

    text: str
    line: int

    def skip_reason(self) -> str | None:
        """Why this command is not run here, or None."""
        for start, why in NOT_RUN.items():
            if self.text.startswith(start):
                return why
        return None


def readme_commands(path: Path = README) -> list[Command]:
    """Every command of README's ```bash blocks, in order."""
    out: list[Command] = []
    in_block, buf, start = False, "", 0
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if not in_block:
            continue
        start = start if buf else i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        words, buf = shlex.split(buf + line, comments=True), ""
        cur: list[str] = []
        for w in [*words, "&&"]:
            if w != "&&":
                cur.append(w)
            elif cur:
                out.append(Command(shlex.join(cur), start))
                cur = []
    return out


def _argv(cmd: Command) -> tuple[list[str], set[int]]:
    """The argv to run (placeholders replaced, tiny overrides appended) and the accepted exit codes."""
    words = shlex.split(cmd.text)
    words = [_place(w) for w in words]
    assert words[0] == "python", cmd
    argv = [sys.executable, *words[1:]]
    if words[1].endswith(".py"):
        argv[1] = str(REPO / words[1])
    ok = {0} | next((codes for k, codes in _ALSO_OK.items() if k in cmd.text), set())
    if words[1] == "train_translate.py":
        argv += _TRAIN_TINY + ([] if "data=folders" in words else _SYNTH_TINY)
        if "model=cut" in words:
            argv.append("model.num_patches=16")
    elif words[1] == "eval_policy_on_translated.py":
        argv += [*_EVAL_TINY, *([] if "policy=custom" in words else _EVAL_POLICY)]
    elif words[1] == "eval_closed_loop.py":
        argv += [*_EVAL_TINY, *_EVAL_POLICY, "closed_loop.episodes=2", "closed_loop.drive.max_steps=4",
                 "closed_loop.gif_episode=null"]
    elif words[1:3] == ["-m", "datasets.jetbot_synth"]:
        argv += ["--size", "32", "--n-real", "4", "--n-sim", "4", "--n-val", "4", "--n-test", "4",
                 "--no-contact-sheet", "--no-progress"]
    elif words[1] == "export_translator.py" and "--official" in words:
        argv += ["--size", "32"]
    return argv, ok


def _place(word: str) -> str:
    for key, value in _PLACES.items():
        word = word.replace(key, value)
    return word


def _run(cmd: Command, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv, ok = _argv(cmd)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode in ok, f"README line {cmd.line}: {cmd.text}\nexit {proc.returncode}\n{tail}"
    assert "Traceback" not in proc.stderr and "error: error:" not in proc.stderr, tail
    return proc


@pytest.fixture(scope="module")
def workspace(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's working folder: data/ (the tiny jetbot_synth world), my_data/ (own folders: real/
    sim/ val/ test/ camera.yaml, no policy), my_policy.onnx, latest_net_G_A.pth, a session,
    calib/ (checkerboard photos), ost.yaml and calibration.yml (calibrations to import)."""
    from models.networks import ResnetGenerator

    w = tmp_path_factory.mktemp("readme")
    shutil.copytree(tiny_synth, w / "data" / tiny_synth.name)
    shutil.copytree(tiny_synth, w / "my_data", ignore=shutil.ignore_patterns("policy"))
    shutil.copy(tiny_synth / "policy" / "policy.onnx", w / "my_policy.onnx")
    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=8, n_blocks=2).state_dict(), w / "latest_net_G_A.pth")
    from hydra import compose, initialize_config_dir

    import record_real

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="record", overrides=[
            "live=false", "source=synth", "frames=8", "width=48", "height=48", "fps=null", f"out={w / 'session'}"])
    assert record_real.record(cfg)["exit_code"] == 0
    # photos of a 9x6 board by a fisheye camera of known optics; the calibration files README imports
    from translate.calibrate import _rodrigues, render_board
    from translate.camera import CameraModel
    from translate.imageio import write_image

    cam = CameraModel(480, 360, 150.0, 150.0, 240.5, 179.5, "fisheye", (0.02, -0.01, 0.003, -0.001))
    rng = np.random.default_rng(0)
    centre = np.array([8 * 0.025 / 2, 5 * 0.025 / 2, 0.0])
    for i in range(8):
        rvec = rng.uniform(-0.6, 0.6, 3)
        z = rng.uniform(0.2, 0.35)
        off = rng.uniform(-0.6, 0.6, 2) * z
        tvec = np.array([off[0], off[1], z]) - _rodrigues(rvec) @ centre
        write_image(w / "calib" / f"{i:02d}.png", np.repeat(render_board(cam, rvec, tvec, (9, 6), 0.025)[..., None], 3, -1))
    fixtures = REPO / "tests" / "fixtures" / "calibration"
    shutil.copy(fixtures / "ros_camera_info.yaml", w / "ost.yaml")
    shutil.copy(fixtures / "opencv_calibration.yaml", w / "calibration.yml")
    return w


def test_every_readme_command_is_run_here_or_skipped_with_a_reason() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 12
    for cmd in cmds:
        if cmd.skip_reason():
            continue
        argv, _ = _argv(cmd)  # a command this test cannot run fails here, naming its README line
        assert Path(argv[1]).is_file() or argv[1] == "-m", f"README line {cmd.line}: {cmd.text}"
    quick = [c for c in cmds if c.text == "python train_translate.py"]
    assert quick, "README's Quickstart command is python train_translate.py"


def test_readme_quickstart_trains_exports_and_evaluates(workspace: Path) -> None:
    """The main job of the Quickstart, as typed, on the tiny world: train → export → evaluate."""
    cmd = next(c for c in readme_commands() if c.text == "python train_translate.py")
    proc = _run(cmd, workspace)
    run = workspace / "runs" / "cyclegan_jetbot_synth_cpu_demo"
    assert (run / "export" / "translator_robot.onnx").is_file()
    assert (run / "eval" / "metrics.json").is_file() and (run / "eval" / "report.html").is_file()
    assert "gap closed" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_readme_command_runs(workspace: Path) -> None:
    """Every other README command in README's order (later ones use the runs of earlier ones)."""
    ran = 0
    for cmd in readme_commands():
        if cmd.skip_reason() or cmd.text == "python train_translate.py":
            continue
        _run(cmd, workspace)
        ran += 1
    assert ran >= 9
    assert (workspace / "data" / "my_synth" / "camera.yaml").is_file()
    assert (workspace / "exports" / "official" / "translator.onnx").is_file()
    assert (workspace / "camera.yaml").is_file()
