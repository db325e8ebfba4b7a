"""Tests for workflows.training: train(cfg) for each model, seeds, crash/resume exactness, NaN stops, disk full, logs and validation figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_train_overrides

from models.base import NonFiniteLossError
from models.checkpointing import load_checkpoint


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

    original = CUTModule.nce_losses

    def poisoned(self: CUTModule, *args: Any) -> list[torch.Tensor]:
        losses = original(self, *args)
        return [loss * float("nan") for loss in losses] if self.global_step >= 4 else losses

    monkeypatch.setattr(CUTModule, "nce_losses", poisoned)
    cfg = compose_cfg("train", tiny_train_overrides("cut", tiny_unpaired, tmp_path, steps=8) + ["export.enabled=false"])
    with pytest.raises(NonFiniteLossError, match=r"loss loss_NCE became nan at step 4.*last good checkpoint"):
        train(cfg)
    ckpt = load_checkpoint(tmp_path / "cut_folders_cpu_demo" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


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


@pytest.mark.parametrize("model,workers,at,extra", [
    ("cyclegan", 0, 7, []), ("cut", 0, 7, []), ("cyclegan", 2, 7, []), ("cut", 0, 10, []),
    ("cyclegan", 0, 7, ["model.ema_decay=0.9"]),
])
def test_resume_mid_epoch_is_exact(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, model: str, workers: int, at: int,
                                   extra: list[str]) -> None:
    """Killed at step 7 of 5-step epochs (or at 10, on an epoch's last batch) and resumed to 12:
    the weights (the generator's weight average too), Adam states and pools equal an
    uninterrupted 12-step run (CPU)."""
    from models.base import TranslatorModule
    from workflows.training import train

    def overrides(run: str) -> list[str]:
        return [*tiny_train_overrides(model, tiny_unpaired, tmp_path / run, steps=12), "export.enabled=false",
                "data.steps_per_epoch=5", "model.n_epochs=2", "model.n_epochs_decay=2",
                f"callbacks.last_checkpoint.every_n_train_steps={at}", f"data.num_workers={workers}",
                # the checkpoint a kill leaves on an epoch's last batch: taken at batch end
                "callbacks.last_checkpoint.save_on_train_epoch_end=false", *extra]

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
    assert any(k.startswith("netG_A_ema.") for k in end["state_dict"]) == bool(extra)
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


def test_stall_extension_trains_the_longer_schedule_exactly_and_resumes(
        compose_cfg: Any, own_folder: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A run that stalls at constant LR (2 + 1 epochs of 2 iterations, stall at its first check)
    switches to model.stall_extension (3 + 2): it trains 10 iterations whose weights and LRs equal
    a run configured 3 + 2 from the start, and killed after the switch it resumes to the same end."""
    import logging

    import models.base as base
    from models.base import TranslatorModule
    from workflows.training import train

    root, policy = own_folder

    def overrides(run: str, schedule: tuple[int, int], extension: bool) -> list[str]:
        ov = [o for o in _own_folder_overrides(root, tmp_path / run, "cpu_demo", policy, val=True)
              if not o.startswith(("trainer.max_steps", "model.n_epochs"))]
        ov += [f"model.n_epochs={schedule[0]}", f"model.n_epochs_decay={schedule[1]}", "export.enabled=false",
               "evaluate.enabled=false", "callbacks.last_checkpoint.every_n_train_steps=1",
               "callbacks.last_checkpoint.save_on_train_epoch_end=false"]
        if extension:
            ov += ["+model.stall_extension={n_epochs: 3, n_epochs_decay: 2}"]
        return ov

    calls = {"n": 0}

    def stalled_at_once(history: Any, done: float, **kw: Any) -> str:
        calls["n"] += 1
        return "translator health: val/gap_closed has stayed below 15 % (test)"

    monkeypatch.setattr(base, "translator_stall", stalled_at_once)
    caplog.set_level(logging.WARNING, logger="models.base")
    extended = train(compose_cfg("train", overrides("a", (2, 1), True)))
    assert extended["global_step"] == 10 and calls["n"] >= 1
    said = [r.getMessage() for r in caplog.records if "model.stall_extension" in r.getMessage()]
    assert len(said) == 1 and "from 2 + 1 to 3 + 2 epochs (10 iterations)" in said[0], said
    longer = train(compose_cfg("train", overrides("b", (3, 2), False)))
    assert longer["global_step"] == 10
    a = load_checkpoint(Path(extended["run_dir"]) / "checkpoints" / "last.ckpt")
    b = load_checkpoint(Path(longer["run_dir"]) / "checkpoints" / "last.ckpt")
    for k, v in b["state_dict"].items():
        assert torch.equal(v, a["state_dict"][k]), k
    assert a["translator_state"]["extra"]["stall_extended"] == [3, 2]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = []
    for f in sorted((Path(extended["run_dir"]) / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        if "val/schedule_iterations" in ea.Tags()["scalars"]:
            logged += [e.value for e in ea.Scalars("val/schedule_iterations")]
    assert logged and logged[-1] == 10  # TensorBoard shows the switched schedule
    for sa, sb in zip(a["lr_schedulers"], b["lr_schedulers"], strict=True):
        assert sa["_last_lr"] == pytest.approx(sb["_last_lr"])

    original = TranslatorModule.training_step

    def crash(self: TranslatorModule, batch: Any, batch_idx: int) -> None:
        if self.global_step == 7:  # after the switch at step 2, past the 2 + 1 schedule's end
            raise RuntimeError("simulated crash")
        original(self, batch, batch_idx)

    monkeypatch.setattr(TranslatorModule, "training_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_cfg("train", overrides("c", (2, 1), True)))
    monkeypatch.setattr(TranslatorModule, "training_step", original)
    resumed = train(compose_cfg("train", [*overrides("c", (2, 1), True), "ckpt_path=last"]))
    assert resumed["global_step"] == 10
    c = load_checkpoint(Path(resumed["run_dir"]) / "checkpoints" / "last.ckpt")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, c["state_dict"][k]), k


def test_stall_extension_config_errors_name_the_key() -> None:
    from models.base import stall_extension_schedule

    assert stall_extension_schedule(None, 5, 5) is None and stall_extension_schedule({}, 5, 5) is None
    assert stall_extension_schedule({"n_epochs": 14, "n_epochs_decay": 6}, 5, 5) == (14, 6)
    with pytest.raises(ValueError, match=r"model\.stall_extension\.epochs is not a key; valid: n_epochs"):
        stall_extension_schedule({"epochs": 20}, 5, 5)
    with pytest.raises(ValueError, match=r"n_epochs=4 must be at least model\.n_epochs=5"):
        stall_extension_schedule({"n_epochs": 4, "n_epochs_decay": 10}, 5, 5)
    with pytest.raises(ValueError, match="must be longer"):
        stall_extension_schedule({"n_epochs": 5, "n_epochs_decay": 5}, 5, 5)
