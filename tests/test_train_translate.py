"""Tests for train_translate.py: every config composes, each model trains/resumes, NaN stops the run."""

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

from models.base import NonFiniteLossError
from models.checkpointing import load_checkpoint

CONFIGS = REPO / "configs"


def _group(name: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / name).glob("*.yaml"))


@pytest.mark.parametrize("model", _group("model"))
def test_every_model_config_instantiates(compose_cfg: Any, model: str) -> None:
    cfg = compose_cfg("train", [f"model={model}", "model.generator.ngf=8", "model.generator.n_blocks=2",
                                "model.discriminator.ndf=8"])
    module = hydra.utils.instantiate(OmegaConf.to_container(cfg.model, resolve=True), _convert_="all")
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


def test_unknown_config_choice_names_valid_ones(compose_cfg: Any) -> None:
    with pytest.raises(Exception, match=r"(?s)cycle_gan.*Available options.*cyclegan"):
        compose_cfg("train", ["model=cycle_gan"])


@pytest.mark.parametrize("model", ["cut", "fastcut", "cyclegan"])
def test_fast_dev_run_each_model(compose_cfg: Any, model: str, tiny_unpaired: Path, tmp_path: Path) -> None:
    from workflows.training import train

    cfg = compose_cfg("train", tiny_train_overrides(model, tiny_unpaired, tmp_path, steps=3) + ["export.enabled=false"])
    out = train(cfg)
    assert out["global_step"] == 3
    run = Path(out["run_dir"])
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert list((run / "tb").glob("events.out.tfevents.*")), "TensorBoard logs written"


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_same_seed_same_weights_on_cpu(compose_cfg: Any, model: str, tiny_unpaired: Path, tmp_path: Path) -> None:
    """CPU training is deterministic by seed (crops, flips, pools, PatchNCE positions, init)."""
    from workflows.training import train

    states = []
    for run in ("a", "b", "c"):
        seed = 1 if run == "c" else 0
        ov = tiny_train_overrides(model, tiny_unpaired, tmp_path / run, steps=3)
        out = train(compose_cfg("train", [*ov, "export.enabled=false", f"seed={seed}"]))
        states.append(load_checkpoint(Path(out["run_dir"]) / "checkpoints" / "last.ckpt")["state_dict"])
    a, b, c = states
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("step", ["eager", "fast"])
def test_crash_and_resume_restores_schedule_pool_and_step(
    compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    from models.cyclegan.module import CycleGANModule
    from workflows.training import train

    base = tiny_train_overrides("cyclegan", tiny_unpaired, tmp_path / "a", steps=7) + [
        "export.enabled=false", f"step={step}"]
    ref = train(compose_cfg("train", base))
    ref_ckpt = load_checkpoint(Path(ref["run_dir"]) / "checkpoints" / "last.ckpt")
    assert ref["global_step"] == 7

    crashed = tiny_train_overrides("cyclegan", tiny_unpaired, tmp_path / "b", steps=7) + [
        "export.enabled=false", f"step={step}"]
    original = CycleGANModule.training_step

    def crash_at_5(self: CycleGANModule, batch: Any, batch_idx: int) -> None:
        if self.global_step == 5:
            raise RuntimeError("simulated crash")
        original(self, batch, batch_idx)

    monkeypatch.setattr(CycleGANModule, "training_step", crash_at_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_cfg("train", crashed))
    monkeypatch.setattr(CycleGANModule, "training_step", original)
    last = tmp_path / "b" / "cyclegan_folders_cpu_demo" / "checkpoints" / "last.ckpt"
    mid = load_checkpoint(last)
    assert mid["global_step"] == 4
    assert len(mid["translator_state"]["extra"]["fake_B_pool"]["images"]) == 4  # pool restored too
    out = train(compose_cfg("train", [*crashed, "ckpt_path=last"]))
    assert out["global_step"] == 7
    end = load_checkpoint(last)
    assert end["epoch"] == ref_ckpt["epoch"]
    assert end["lr_schedulers"][0]["last_epoch"] == ref_ckpt["lr_schedulers"][0]["last_epoch"]
    assert end["optimizer_states"][0]["state"][0]["step"] == ref_ckpt["optimizer_states"][0]["state"][0]["step"]


def test_ckpt_path_last_without_checkpoint_is_clear(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path) -> None:
    from workflows.training import train

    cfg = compose_cfg("train", tiny_train_overrides("cut", tiny_unpaired, tmp_path) + ["ckpt_path=last"])
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no checkpoint at .*last.ckpt"):
        train(cfg)


def test_nan_loss_stops_with_named_loss_and_keeps_checkpoint(
    compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.cut.module import CUTModule
    from workflows.training import train

    original = CUTModule.nce_loss

    def poisoned(self: CUTModule, src: torch.Tensor, tgt: torch.Tensor, *args: Any) -> torch.Tensor:
        loss = original(self, src, tgt, *args)
        return loss * float("nan") if self.global_step >= 4 else loss

    monkeypatch.setattr(CUTModule, "nce_loss", poisoned)
    cfg = compose_cfg("train", tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=8) + ["export.enabled=false"])
    with pytest.raises(NonFiniteLossError, match=r"loss loss_NCE became nan at step 4.*last good checkpoint"):
        train(cfg)
    ckpt = load_checkpoint(tmp_path / "cut_folders_cpu_demo" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


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


def _tb_scalars(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vals: list[float] = []
    for f in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if tag in ea.Tags()["scalars"]:
            vals += [e.value for e in ea.Scalars(tag)]
    return vals


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


def test_logger_none_trains_and_names_learning_rates(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path) -> None:
    from workflows.training import train

    ov = tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=2) + ["export.enabled=false", "logger=none"]
    assert train(compose_cfg("train", ov))["global_step"] == 2
    cfg = compose_cfg("train", tiny_train_overrides("cyclegan", tiny_unpaired, tmp_path / "tb", steps=2)
                      + ["export.enabled=false", "trainer.log_every_n_steps=1"])
    run = Path(train(cfg)["run_dir"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for f in (run / "tb").glob("events.out.tfevents.*"):
        ea = EventAccumulator(str(f))
        ea.Reload()
        tags |= set(ea.Tags()["scalars"])
    assert {"train/lr_G", "train/lr_D"} <= tags
    assert not any(t.startswith("lr-Adam") for t in tags)


@pytest.mark.parametrize("model,workers,at", [("cyclegan", 0, 7), ("cut", 0, 7), ("cyclegan", 2, 7),
                                              ("cut", 0, 10)])
def test_resume_mid_epoch_is_exact(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, model: str, workers: int, at: int) -> None:
    """Killed at step 7 of 5-step epochs (or at 10, on an epoch's last batch) and resumed to 12:
    the weights, Adam states and pools equal an uninterrupted 12-step run (CPU)."""
    from models.base import TranslatorModule
    from workflows.training import train

    def overrides(run: str) -> list[str]:
        return [*tiny_train_overrides(model, tiny_unpaired, tmp_path / run, steps=12), "export.enabled=false",
                "data.steps_per_epoch=5", "model.n_epochs=2", "model.n_epochs_decay=2",
                f"callbacks.last_checkpoint.every_n_train_steps={at}", f"data.num_workers={workers}",
                # the checkpoint a kill leaves on an epoch's last batch: taken at batch end
                "callbacks.last_checkpoint.save_on_train_epoch_end=false"]

    ref = train(compose_cfg("train", overrides("a")))
    ref_ckpt = load_checkpoint(Path(ref["run_dir"]) / "checkpoints" / "last.ckpt")
    original = TranslatorModule.training_step

    def crash(self: TranslatorModule, batch: Any, batch_idx: int) -> None:
        if self.global_step == at:
            raise RuntimeError("simulated crash")
        original(self, batch, batch_idx)

    monkeypatch.setattr(TranslatorModule, "training_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_cfg("train", overrides("b")))
    monkeypatch.setattr(TranslatorModule, "training_step", original)
    out = train(compose_cfg("train", [*overrides("b"), "ckpt_path=last"]))
    assert out["global_step"] == 12
    end = load_checkpoint(Path(out["run_dir"]) / "checkpoints" / "last.ckpt")
    for k, v in ref_ckpt["state_dict"].items():
        assert torch.equal(v, end["state_dict"][k]), k
    for a, b in zip(ref_ckpt["optimizer_states"], end["optimizer_states"], strict=True):
        for i, st in a["state"].items():
            for name, t in st.items():
                assert torch.equal(t, b["state"][i][name]), (i, name)
    assert end["lr_schedulers"][0]["last_epoch"] == ref_ckpt["lr_schedulers"][0]["last_epoch"]


def test_rerun_cleans_orphaned_temp_files_and_keeps_one_last_ckpt(compose_cfg: Any, tiny_unpaired: Path,
                                                                  tmp_path: Path) -> None:
    from workflows.training import train

    ov = tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=2) + ["export.enabled=false"]
    run = Path(train(compose_cfg("train", ov))["run_dir"])
    orphan = run / "checkpoints" / ".last.ckpt.abc123.tmp"
    orphan.write_bytes(b"x" * 100)  # what a SIGKILL during a checkpoint write leaves
    train(compose_cfg("train", ov))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert not orphan.exists()
    assert not any(n.startswith("last-v") for n in names), names


def test_own_folders_without_a_policy_train_on_the_first_try(compose_cfg: Any, tiny_unpaired: Path,
                                                              tmp_path: Path) -> None:
    """data=folders with the default recipe and policy: no policy there, so no policy terms (logged)."""
    from workflows.training import train

    ov = [o for o in tiny_train_overrides("cyclegan", tiny_unpaired, tmp_path, steps=2)
          if not o.startswith(("policy=", "model.policy_losses"))]
    out = train(compose_cfg("train", [*ov, "export.enabled=true"]))
    assert out["global_step"] == 2 and out["metrics"] is None
    assert Path(out["export"]["onnx"]).is_file()


def test_disk_full_during_training_names_the_intact_checkpoint(compose_cfg: Any, tiny_unpaired: Path,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from models.checkpointing import AtomicCheckpointIO
    from workflows.training import DiskFullError, train

    original = AtomicCheckpointIO.save_checkpoint
    saves = {"n": 0}

    def fill_up(self: AtomicCheckpointIO, checkpoint: Any, path: Any, storage_options: Any = None) -> None:
        saves["n"] += 1
        if saves["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", fill_up)
    ov = tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=6) + ["export.enabled=false"]
    with pytest.raises(DiskFullError, match=r"disk full while training .*last\.ckpt is intact .*ckpt_path=last"):
        train(compose_cfg("train", ov))
    assert load_checkpoint(tmp_path / "cut_folders_cpu_demo" / "checkpoints" / "last.ckpt")["global_step"] == 2


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


@pytest.mark.parametrize("stop", [10, 7])
def test_stopped_at_max_steps_and_continued_is_exact(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path,
                                                     stop: int) -> None:
    """A run stopped by max_steps (here at an epoch's end, or mid-epoch) and continued with
    ckpt_path=last equals an uninterrupted one (Lightning re-runs a finished epoch; the data must not)."""
    from workflows.training import train

    def overrides(run: str, steps: int) -> list[str]:
        return [*tiny_train_overrides("cut", tiny_unpaired, tmp_path / run, steps=steps), "export.enabled=false",
                "data.steps_per_epoch=5", "model.n_epochs=2", "model.n_epochs_decay=2"]

    ref = train(compose_cfg("train", overrides("a", 14)))
    train(compose_cfg("train", overrides("b", stop)))
    out = train(compose_cfg("train", [*overrides("b", 14), "ckpt_path=last"]))
    assert out["global_step"] == 14
    a = load_checkpoint(Path(ref["run_dir"]) / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(Path(out["run_dir"]) / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_the_run_log_gets_losses_and_validation_figures(compose_cfg: Any, tiny_synth: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from workflows.training import train

    ov = [o for o in tiny_train_overrides("cyclegan", tiny_synth, tmp_path, steps=4) if o != "policy=none"]
    ov += ["export.enabled=false", "log_losses_every_n_steps=2", "trainer.log_every_n_steps=1",
           "data.steps_per_epoch=2", "data.camera_yaml=null", f"data.val_dir={tiny_synth}/val",
           "policy=custom", f"policy.path={tiny_synth}/policy/policy.onnx"]
    with caplog.at_level(logging.INFO, logger="train_translate"):
        train(compose_cfg("train", ov))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "step 2: " in text and "loss_G=" in text
    assert "validation: " in text and "gap_closed=" in text


@pytest.fixture(scope="module")
def own_folder(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A user's own folder (real/ sim/ val/ test/ camera.yaml, no policy/) and their policy file."""
    import shutil

    root = tmp_path_factory.mktemp("own") / "my_data"
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("policy"))
    return root, tiny_synth / "policy" / "policy.onnx"


def _own_folder_overrides(root: Path, runs: Path, recipe: str, policy: Path | None, val: bool) -> list[str]:
    ov = [f"experiment={recipe}", "data=folders", f"data.root={root}", f"paths.runs_dir={runs}",
          "trainer.max_steps=2", "data.steps_per_epoch=2", "data.crop_size=32", "data.num_workers=0",
          "model.generator.ngf=8", "model.generator.n_blocks=2", "model.discriminator.ndf=8",
          "model.n_epochs=1", "model.n_epochs_decay=1", "trainer.enable_progress_bar=false",
          "evaluate.max_frames=8", "model.log_images_every_n_steps=1"]
    if recipe == "gpu" and not torch.cuda.is_available():
        ov += ["trainer=cpu", "step=eager", "data.num_workers=0", "trainer.max_time=null"]
    if policy is not None:
        ov += ["policy=custom", f"policy.path={policy}", "policy.spec=rl_games"]
    if val:
        ov.append(f"data.val_dir={root}/val")
    return ov


@pytest.mark.parametrize("recipe", ["cpu_demo", "gpu"])
@pytest.mark.parametrize("with_policy,with_val", [(False, False), (False, True), (True, False), (True, True)])
def test_own_folders_every_recipe_with_and_without_policy_and_val(
    compose_cfg: Any, own_folder: tuple[Path, Path], tmp_path: Path, recipe: str, with_policy: bool, with_val: bool,
) -> None:
    """Own folders are a first-class recipe: each recipe (the GPU one on the CPU trainer when there
    is no GPU), with and without a policy, with and without a paired val/, trains and exports;
    with a policy it validates (val/) and evaluates on test/."""
    from workflows.training import train

    root, policy = own_folder
    out = train(compose_cfg("train", _own_folder_overrides(root, tmp_path, recipe, policy if with_policy else None,
                                                           with_val)))
    assert out["global_step"] == 2 and Path(out["export"]["onnx"]).is_file()
    assert (out["metrics"] is not None) == with_policy  # evaluation needs the policy
    assert ("best_checkpoint" in out) == (with_policy and with_val)
    ck = load_checkpoint(out["checkpoint"])
    assert ck["camera_correction"] is not None  # root/camera.yaml was used and is kept for export
    assert not any(ck["hyper_parameters"]["policy_losses"].values()) or with_policy


def _tb_tags(run: Path, kind: str) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, list[int]] = {}
    for f in sorted((run / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"images": 0, "scalars": 0})
        ea.Reload()
        for t in ea.Tags()[kind]:
            events = ea.Images(t) if kind == "images" else ea.Scalars(t)
            tags.setdefault(t, []).extend(e.step for e in events)
    return tags


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_validation_strips_in_tensorboard_both_directions(compose_cfg: Any, tiny_synth: Path, tmp_path: Path,
                                                          model: str) -> None:
    """At each validation: full-frame real | translated | sim strips; CycleGAN also sim → real."""
    from workflows.training import train

    ov = tiny_train_overrides(model, tiny_synth, tmp_path, steps=4) + [
        "export.enabled=false", "data.steps_per_epoch=2", f"data.val_dir={tiny_synth}/val",
        "model.log_images_every_n_steps=0", "data.camera_yaml=null"]
    run = Path(train(compose_cfg("train", ov))["run_dir"])
    images = _tb_tags(run, "images")
    assert images["val/real|translated|sim"] == [2, 4]  # each validation, not the sanity check
    assert ("val/sim|translated_back|real" in images) == (model == "cyclegan")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    f = next((run / "tb").glob("events.out.tfevents.*"))
    ea = EventAccumulator(str(f), size_guidance={"images": 0})
    ea.Reload()
    img = ea.Images("val/real|translated|sim")[0]
    assert (img.width, img.height) == (3 * 48, 4 * 48)  # full 48 px frames, 3 columns, 4 rows


def test_a_fresh_run_does_not_append_to_an_old_runs_event_files(compose_cfg: Any, tiny_unpaired: Path,
                                                                  tmp_path: Path) -> None:
    from workflows.training import train

    ov = tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=2) + ["export.enabled=false",
                                                                          "trainer.log_every_n_steps=1"]
    run = Path(train(compose_cfg("train", ov))["run_dir"])
    first = set((run / "tb").glob("events.out.tfevents.*"))
    assert first
    train(compose_cfg("train", ov))  # fresh over it: the old events go
    second = set((run / "tb").glob("events.out.tfevents.*"))
    assert second and not (first & second)
    assert min(_tb_tags(run, "scalars")["train/loss_G"]) == 0  # one run's steps, once each
    assert sorted(_tb_tags(run, "scalars")["train/loss_G"]) == [0, 1]
    resumed = [o for o in ov if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=4", "ckpt_path=last"]
    train(compose_cfg("train", resumed))  # a resume continues its own
    third = set((run / "tb").glob("events.out.tfevents.*"))
    assert second < third
    scalars = _tb_tags(run, "scalars")
    assert sorted(scalars["train/loss_G"]) == [0, 1, 2, 3]
    # one learning rate per optimiser, named for it (CUT: G, D and the patch MLP F), nothing else
    assert sorted(t for t in scalars if "lr" in t.lower().split("/")[-1][:3]) == ["train/lr_D", "train/lr_F", "train/lr_G"]
