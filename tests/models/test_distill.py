"""Tests for knowledge distillation from a trained translator (``model.distill``, edge generators)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_train_overrides

from models.checkpointing import load_checkpoint, load_lightning_generator
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

TINY_G = {"ngf": 8, "n_blocks": 2}
TINY_D = {"ndf": 8}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_unpaired: Path) -> Path:
    """A 3-step tiny CycleGAN checkpoint (the teacher)."""
    import subprocess
    import sys

    from conftest import REPO

    runs = tmp_path_factory.mktemp("teacher")
    ov = [*tiny_train_overrides("cyclegan", tiny_unpaired, runs, steps=3), "export.enabled=false",
          "run_name=teacher"]
    subprocess.run([sys.executable, str(REPO / "train_translate.py"), *ov], cwd=REPO, check=True,
                   capture_output=True, timeout=600)
    return runs / "teacher" / "checkpoints" / "last.ckpt"


def _real(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_distill_loss_is_l1_to_the_teachers_output(teacher_ckpt: Path) -> None:
    torch.manual_seed(0)
    student = CUTModule(generator={"ngf": 8, "n_blocks": 1, "separable": True,
                                   "antialias": False, "antialias_up": False},
                        discriminator=TINY_D, num_patches=16,
                        distill={"teacher": str(teacher_ckpt), "pixel": 7.0})
    x = _real()
    fake = student(x)
    losses = student.distill_losses(x, fake)
    assert set(losses) == {"loss_distill"}
    teacher, name, _ = load_lightning_generator(teacher_ckpt)
    assert name == "cyclegan"
    with torch.no_grad():
        expected = 7.0 * F.l1_loss(fake, teacher(x))
    assert float(losses["loss_distill"].detach()) == pytest.approx(float(expected), rel=1e-5)
    # the gradient reaches the student only; the teacher is frozen and not part of its state
    losses["loss_distill"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.netG.parameters())
    assert student.teacher is not None
    assert all(p.grad is None and not p.requires_grad for p in student.teacher.parameters())
    assert not any(k.startswith("_teacher") for k in student.state_dict())


def test_distillation_pulls_the_student_to_the_teacher(teacher_ckpt: Path) -> None:
    """Minimising the distillation term alone brings the student's output to the teacher's."""
    torch.manual_seed(0)
    # a student initialised far from the (near-constant) 3-step teacher
    m = CycleGANModule(generator={**TINY_G, "init_gain": 0.3}, discriminator=TINY_D,
                       distill={"teacher": str(teacher_ckpt), "pixel": 1.0})
    opt = torch.optim.Adam(m.netG_A.parameters(), lr=2e-3)
    x = _real(4)
    losses = []
    for _ in range(100):
        loss = m.distill_losses(x, m.netG_A(x))["loss_distill"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.75 * losses[0], (losses[0], losses[-1])


def test_distill_off_costs_nothing_and_bad_teacher_is_named(tmp_path: Path, tiny_synth: Path) -> None:
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D)
    x = _real()
    assert m.distill_losses(x, x) == {} and m.teacher is None
    missing = tmp_path / "nope.ckpt"
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, distill={"teacher": str(missing)})
    with pytest.raises(FileNotFoundError, match=r"model\.distill\.teacher.*nope\.ckpt"):
        m.distill_losses(x, x)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, distill={"teacher": str(bad)})
    with pytest.raises(ValueError, match=r"model\.distill\.teacher.*bad\.ckpt"):
        m.distill_losses(x, x)
    with pytest.raises(ValueError, match="distill.policy"):
        CycleGANModule(generator=TINY_G, discriminator=TINY_D,
                       distill={"teacher": str(missing), "policy": 1.0})


def test_distill_policy_term(teacher_ckpt: Path, tiny_synth: Path) -> None:
    pol: dict[str, Any] = {"path": str(tiny_synth / "policy" / "policy.onnx"), "spec": None}
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy=pol,
                       distill={"teacher": str(teacher_ckpt), "pixel": 0.0, "policy": 3.0})
    x = _real(2, 48)
    losses = m.distill_losses(x, m.netG_A(x))
    assert set(losses) == {"loss_policy_distill"}
    assert float(losses["loss_policy_distill"]) > 0


@pytest.mark.parametrize("model", ["cyclegan", "fastcut"])
def test_train_with_a_teacher_end_to_end(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path,
                                         teacher_ckpt: Path, model: str) -> None:
    """An edge student distilled from the teacher trains, logs loss_distill, exports and reloads."""
    from workflows.training import train

    ov = [*tiny_train_overrides(model, tiny_unpaired, tmp_path, steps=3), "generator=edge",
          "model.generator.ngf=8", "model.generator.n_blocks=2", f"model.distill.teacher={teacher_ckpt}",
          "trainer.log_every_n_steps=1", "export.enabled=true"]
    out = train(compose_cfg("train", ov))
    assert out["global_step"] == 3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(Path(out["run_dir"]) / "tb"))
    ea.Reload()
    assert len(ea.Scalars("train/loss_distill")) == 3
    assert Path(out["export"]["onnx"]).exists()
    # the student's checkpoint is a translator without its teacher (the teacher may be gone)
    ck = load_checkpoint(out["checkpoint"])
    assert ck["hyper_parameters"]["distill"]["teacher"] == str(teacher_ckpt)
    gen, _, _ = load_lightning_generator(out["checkpoint"])
    assert gen.separable
