"""Tests for train_translate.py: every config composes, the command line (kill and resume, DDP), the default experiment (workflows.training has its own tests in tests/workflows/test_training.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
from conftest import REPO, tiny_train_overrides
from omegaconf import OmegaConf

from models.checkpointing import load_checkpoint
from workflows.training import instantiate_model

CONFIGS = REPO / "configs"


def _group(name: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / name).glob("*.yaml"))


def _targets(obj: Any) -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "_target_":
                out.append(v)
            else:
                out += _targets(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _targets(v)
    return out


def _tb_scalars(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vals: list[float] = []
    for f in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if tag in ea.Tags()["scalars"]:
            vals += [e.value for e in ea.Scalars(tag)]
    return vals


@pytest.mark.parametrize("model", _group("model"))
def test_every_model_config_instantiates(compose_cfg: Any, model: str) -> None:
    cfg = compose_cfg("train", [f"model={model}", "model.generator.ngf=8", "model.generator.n_blocks=2",
                                "model.discriminator.ndf=8"])
    module = instantiate_model(OmegaConf.to_container(cfg.model, resolve=True))
    y = module(torch.zeros(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("data", _group("data"))
def test_every_data_config_instantiates(compose_cfg: Any, data: str, tiny_unpaired: Path) -> None:
    cfg = compose_cfg("train", [f"data={data}", f"data.root={tiny_unpaired}"])
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert dm.name == data


@pytest.mark.parametrize("group", ["trainer", "callbacks", "logger", "policy", "generator", "experiment", "paths"])
def test_every_other_config_composes(compose_cfg: Any, group: str, tiny_unpaired: Path) -> None:
    for choice in _group(group):
        cfg = compose_cfg("train", [f"{group}={choice}", f"data.root={tiny_unpaired}"])
        OmegaConf.resolve(cfg)  # every interpolation resolves
        for node in _targets(OmegaConf.to_container(cfg)):
            hydra.utils.get_class(node) if node[0].isupper() or "." in node else None


def test_unknown_config_choice_names_valid_ones(compose_cfg: Any) -> None:
    with pytest.raises(Exception, match=r"(?s)cycle_gan.*Available options.*cyclegan"):
        compose_cfg("train", ["model=cycle_gan"])


@pytest.mark.slow
def test_sigkill_and_resume_reaches_same_step_count(tiny_unpaired: Path, tmp_path: Path) -> None:
    args = [sys.executable, str(REPO / "train_translate.py"),
            *tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=40), "export.enabled=false",
            "data.steps_per_epoch=10", "model.n_epochs=2", "model.n_epochs_decay=2"]
    ckpt = tmp_path / "cut_folders_cpu_demo" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt)["global_step"] >= 10):
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["global_step"]
    assert 10 <= killed_at < 40
    subprocess.run([*args, "ckpt_path=last"], cwd=REPO, check=True, capture_output=True, timeout=600)
    assert load_checkpoint(ckpt)["global_step"] == 40


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cut", "cyclegan"])
def test_ddp_gloo_two_processes_match_single_process(tiny_unpaired: Path, tmp_path: Path, model: str) -> None:
    """2 CPU processes (gloo) × batch 2 train like 1 process × batch 4 (same global batch)."""
    steps = 60
    base = [sys.executable, str(REPO / "train_translate.py"),
            *tiny_train_overrides(model, tiny_unpaired, tmp_path, steps=steps),
            "export.enabled=false", "data.steps_per_epoch=30", "trainer.log_every_n_steps=1"]
    ddp = subprocess.run(
        [*base, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.batch_size=2",
         "run_name=ddp"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([*base, "data.batch_size=4", "run_name=single"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")["global_step"] == steps
    a = _tb_scalars(tmp_path / "ddp", "train/loss_G")[-20:]
    b = _tb_scalars(tmp_path / "single", "train/loss_G")[-20:]
    assert len(a) == len(b) == 20
    mean_a, mean_b = sum(a) / 20, sum(b) / 20
    assert abs(mean_a - mean_b) / mean_b < 0.3, (mean_a, mean_b)


def test_default_experiment_goes_first_so_hydra_flags_work_anywhere() -> None:
    from train_translate import default_experiment

    out = default_experiment(["model=cut", "--cfg", "job"])
    assert out[0].startswith("experiment=") and out[1:] == ["model=cut", "--cfg", "job"]
    assert default_experiment(["experiment=full", "-m"]) == ["experiment=full", "-m"]
    assert default_experiment(["experiment=null", "model=cut"]) == ["model=cut"]  # no recipe


@pytest.mark.slow
def test_ddp_resume_mid_epoch_is_exact(tiny_unpaired: Path, tmp_path: Path) -> None:
    """2 gloo ranks: stopped at step 7 of 5-step epochs and resumed to 12 = an uninterrupted 12."""
    def run(name: str, steps: int, *extra: str) -> None:
        cmd = [sys.executable, str(REPO / "train_translate.py"),
               *tiny_train_overrides("cyclegan", tiny_unpaired, tmp_path, steps=steps),
               "export.enabled=false", "data.steps_per_epoch=5", "model.n_epochs=2", "model.n_epochs_decay=2",
               "callbacks.last_checkpoint.every_n_train_steps=100", "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.devices=2", f"run_name={name}", *extra]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]

    run("whole", 12)
    run("resumed", 7)
    run("resumed", 12, "ckpt_path=last")
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_ddp_step_fast_trains_like_ddp_step_eager(tiny_unpaired: Path, tmp_path: Path, model: str) -> None:
    """2 gloo ranks on the CPU: step=fast (its own gradient all-reduce) ends with the weights of
    step=eager (DDP's reducer through Lightning's manual_backward)."""
    def run(name: str, step: str) -> dict[str, Any]:
        cmd = [sys.executable, str(REPO / "train_translate.py"),
               *tiny_train_overrides(model, tiny_unpaired, tmp_path, steps=6), "export.enabled=false",
               "data.steps_per_epoch=3", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
               f"step={step}", "step.channels_last=false", f"run_name={name}"]
        cmd = [c for c in cmd if not (step == "eager" and c == "step.channels_last=false")]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        return load_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt")

    eager, fast = run("eager", "eager"), run("fast", "fast")
    assert eager["global_step"] == fast["global_step"] == 6
    for k, v in eager["state_dict"].items():
        torch.testing.assert_close(fast["state_dict"][k], v, msg=k)


def test_a_generator_class_from_the_command_line_builds(compose_cfg: Any) -> None:
    cfg = compose_cfg("train", ["model=cut", "~model.generator",
                                "+model.generator={_target_:models.networks.ResnetGenerator,input_nc:3,"
                                "output_nc:3,ngf:8,n_blocks:1}", "model.discriminator.ndf=8",
                                "model.optimizer._target_=torch.optim.AdamW"])
    module = instantiate_model(OmegaConf.to_container(cfg.model, resolve=True))
    assert module.netG.model[1].out_channels == 8
    assert type(module.configure_optimizers()[0][0]) is torch.optim.AdamW


def test_diffaug_from_the_command_line(compose_cfg: Any) -> None:
    """`model.diffaug=[translation,cutout]` (a list: Hydra reads a bare comma as a sweep) and the
    quoted string form both build; a wrong name fails naming the key and the choices."""
    for override in ("model.diffaug=[translation,cutout]", "model.diffaug='translation,cutout'"):
        cfg = compose_cfg("train", ["model.generator.ngf=8", "model.generator.n_blocks=1",
                                    "model.discriminator.ndf=8", override])
        module = instantiate_model(OmegaConf.to_container(cfg.model, resolve=True))
        assert module.diffaug_ops == ("translation", "cutout"), override
    cfg = compose_cfg("train", ["model.diffaug=[blur]"])
    with pytest.raises(Exception, match=r"model.diffaug: unknown augmentation 'blur'; choose from color"):
        instantiate_model(OmegaConf.to_container(cfg.model, resolve=True))
