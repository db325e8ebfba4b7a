"""Tests for the policy-aware translation terms and validation by action agreement (issue 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_train_overrides

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

TINY_G = {"ngf": 8, "n_blocks": 2}
TINY_D = {"ndf": 8}


def _batch(n: int = 2, size: int = 48) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"real": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "sim": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def _policy(tiny_synth: Path) -> dict[str, Any]:
    return {"path": str(tiny_synth / "policy" / "policy.onnx"), "spec": None}


def test_policy_gradient_reaches_generators_not_policy(tiny_synth: Path) -> None:
    torch.manual_seed(0)
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy=_policy(tiny_synth),
                       policy_losses={"cycle": 1.0, "sim_identity": 1.0, "features": 0.1})
    b = _batch()
    out = m.generator_forward(b["real"], b["sim"])
    losses = m.policy_losses(b, out)
    assert set(losses) == {"loss_policy_cycle", "loss_policy_sim_identity"}
    sum(losses.values()).backward()  # type: ignore[union-attr]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.netG_A.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.netG_B.parameters())
    assert all(p.grad is None for p in m.netD_A.parameters())
    pol = m.frozen_policy
    assert pol is not None
    assert all(not t.requires_grad for t in pol.buffers())
    # the policy is not part of the translator's state (not trained, not checkpointed)
    assert not any(k.startswith("_frozen_policy") for k in m.state_dict())


def test_cut_sim_identity_policy_loss(tiny_synth: Path) -> None:
    torch.manual_seed(0)
    m = CUTModule(generator=TINY_G, discriminator=TINY_D, num_patches=16, nce_idt=False,
                  policy=_policy(tiny_synth), policy_losses={"sim_identity": 2.0})
    b = _batch()
    losses = m.policy_losses(b, None, False)
    losses["loss_policy_sim_identity"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.netG.parameters())
    with pytest.warns(UserWarning, match="no effect on CUT"):
        CUTModule(generator=TINY_G, discriminator=TINY_D, policy=_policy(tiny_synth),
                  policy_losses={"cycle": 1.0})


def test_policy_weights_need_a_policy() -> None:
    with pytest.raises(ValueError, match=r"no frozen policy is configured.*model.policy_losses.cycle=0"):
        CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy_losses={"cycle": 1.0})
    # the message names only the terms that need the policy (not paired_pixel, not the warm-up)
    with pytest.raises(ValueError) as info:
        CycleGANModule(generator=TINY_G, discriminator=TINY_D,
                       policy_losses={"paired": 5.0, "paired_pixel": 10.0, "real_student_warmup": 500})
    msg = str(info.value)
    assert "{'paired': 5.0}" in msg and "model.policy_losses.paired=0" in msg
    assert "paired_pixel" not in msg and "warmup" not in msg


@pytest.mark.parametrize("cls", [CycleGANModule, CUTModule])
def test_zero_weights_identical_to_plain_model(tiny_synth: Path, cls: type) -> None:
    kw: dict[str, Any] = {"generator": TINY_G, "discriminator": TINY_D}
    if cls is CUTModule:
        kw["num_patches"] = 16
    torch.manual_seed(0)
    plain = cls(**kw)
    torch.manual_seed(0)
    aware = cls(**kw, policy=_policy(tiny_synth), policy_losses={"cycle": 0.0, "sim_identity": 0.0})
    b = _batch()
    if cls is CycleGANModule:
        lp = plain.generator_losses(b["real"], b["sim"], plain.generator_forward(b["real"], b["sim"]))
        out = aware.generator_forward(b["real"], b["sim"])
        la = {**aware.generator_losses(b["real"], b["sim"], out), **aware.policy_losses(b, out)}
    else:
        fb, ib, fl = plain.generator_forward(b["real"], b["sim"])
        lp = plain.generator_losses(b["real"], b["sim"], fb, ib, fl)
        fb2, ib2, fl2 = aware.generator_forward(b["real"], b["sim"])
        la = {**aware.generator_losses(b["real"], b["sim"], fb2, ib2, fl2), **aware.policy_losses(b, ib2, fl2)}
    assert set(la) == set(lp)
    for k in lp:
        assert torch.equal(lp[k], la[k]), k


def test_best_checkpoint_selected_by_validation_and_exported(
    compose_cfg: Any, tiny_synth: Path, tmp_path: Path
) -> None:
    from models.checkpointing import load_checkpoint
    from workflows.training import train

    ov = tiny_train_overrides("cyclegan", tiny_synth, tmp_path, steps=8)
    ov = [o for o in ov if o != "policy=none"] + [
        "policy=custom", f"policy.path={tiny_synth / 'policy' / 'policy.onnx'}",
        f"data.val_dir={tiny_synth / 'val'}", "data.steps_per_epoch=2", "model.n_epochs=2",
        "model.n_epochs_decay=2", "select_by=val/turn_agreement", "export.enabled=true",
        "model.policy_losses.cycle=1.0",
    ]
    out = train(compose_cfg("train", ov))
    best = Path(out["best_checkpoint"])
    assert best.name == "best.ckpt" and best.exists()
    ck = load_checkpoint(best)
    cb = [v for k, v in ck["callbacks"].items() if "val/turn_agreement" in k]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(Path(out["run_dir"]) / "tb"))
    ea.Reload()
    logged = [e.value for e in ea.Scalars("val/turn_agreement")]
    assert len(logged) == 4  # one validation per epoch
    assert {"val/gap_closed", "val/action_mae"} <= set(ea.Tags()["scalars"])
    assert cb and float(cb[0]["best_model_score"]) == pytest.approx(max(logged))
    assert out["export"]["metadata"]["checkpoint"].endswith("best.ckpt")
    last = load_checkpoint(Path(out["run_dir"]) / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 8
    # a policy-aware checkpoint is a translator without its policy (eval / export of the .ckpt)
    from models.checkpointing import load_lightning_generator

    generator, name, _ = load_lightning_generator(best)
    assert name == "cyclegan"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert generator(x).shape == x.shape


def test_paired_policy_term_trains(compose_cfg: Any, tiny_synth: Path, tmp_path: Path) -> None:
    from workflows.training import train

    ov = tiny_train_overrides("cut", tiny_synth, tmp_path, steps=2)
    ov = [o for o in ov if o != "policy=none"] + [
        "policy=custom", f"policy.path={tiny_synth / 'policy' / 'policy.onnx'}",
        f"data.paired_dir={tiny_synth / 'val'}", "model.policy_losses.paired=1.0",
        "model.policy_losses.sim_identity=1.0", "trainer.log_every_n_steps=1",
    ]
    out = train(compose_cfg("train", ov))
    assert out["global_step"] == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(Path(out["run_dir"]) / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss_policy_paired", "train/loss_policy_sim_identity"} <= tags


@pytest.mark.parametrize("cls", [CycleGANModule, CUTModule])
def test_paired_pixel_term_needs_no_policy_and_trains_the_generator(cls: type) -> None:
    kw: dict[str, Any] = {"generator": TINY_G, "discriminator": TINY_D}
    if cls is CUTModule:
        kw["num_patches"] = 16
    torch.manual_seed(0)
    m = cls(**kw, policy_losses={"paired_pixel": 10.0})  # no policy configured: allowed
    b = _batch()
    b["paired_real"], b["paired_sim"] = b["real"].flip(0), b["sim"].flip(0)
    G = m.netG_A if cls is CycleGANModule else m.netG
    losses = m.paired_losses(b, G)
    assert set(losses) == {"loss_paired_pixel"}
    expected = 10.0 * torch.nn.functional.l1_loss(G(b["paired_real"]), b["paired_sim"])
    torch.testing.assert_close(losses["loss_paired_pixel"], expected)
    losses["loss_paired_pixel"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    # counted in the generator's total; without pairs in the batch, or at weight 0, nothing
    assert m.extra_generator_loss(losses, b["real"]) == losses["loss_paired_pixel"]
    assert m.paired_losses({"real": b["real"], "sim": b["sim"]}, G) == {}
    assert cls(**kw).paired_losses(b, G) == {}


def test_k_pairs_per_item_are_one_batch_of_pairs() -> None:
    torch.manual_seed(0)
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy_losses={"paired_pixel": 10.0})
    b = _batch()
    flat = {"paired_real": b["real"], "paired_sim": b["sim"]}  # (2, 3, H, W): 2 pairs
    stacked = {"paired_real": b["real"][None], "paired_sim": b["sim"][None]}  # (1, 2, 3, H, W)
    a = m.paired_losses(flat, m.netG_A)["loss_paired_pixel"]
    torch.testing.assert_close(m.paired_losses(stacked, m.netG_A)["loss_paired_pixel"], a)


def test_cycle_noise_zero_is_the_plain_cycle_and_noise_reaches_the_return_pass() -> None:
    b = _batch()
    torch.manual_seed(0)
    plain = CycleGANModule(generator=TINY_G, discriminator=TINY_D)
    torch.manual_seed(0)
    noisy = CycleGANModule(generator=TINY_G, discriminator=TINY_D, cycle_noise=0.2)
    ctx_plain, ctx_noisy = dict(b), dict(b)
    plain.prepare_iteration(ctx_plain)
    noisy.prepare_iteration(ctx_noisy)
    assert "cycle_noise" not in ctx_plain
    noise = ctx_noisy["cycle_noise"]
    assert noise.shape == (4, 3, 48, 48) and 0.15 < float(noise.std()) < 0.25
    p = plain.generator_forward(b["real"], b["sim"], ctx_plain.get("cycle_noise"))
    n = noisy.generator_forward(b["real"], b["sim"], noise)
    torch.testing.assert_close(n.fake_B, p.fake_B)  # the first pass sees no noise
    assert not torch.allclose(n.rec_A, p.rec_A)
    torch.testing.assert_close(n.rec_A, noisy.netG_B(n.fake_B + noise[:2]))
    torch.testing.assert_close(n.rec_B, noisy.netG_A(n.fake_A + noise[2:]))
    # a graph capture's placeholder is zeros and draws nothing; the draw stream is checkpointed
    state = noisy.noise_gen.get_state()
    cap = dict(b)
    noisy.prepare_iteration(cap, live=False)
    assert not cap["cycle_noise"].any() and torch.equal(noisy.noise_gen.get_state(), state)
    saved = noisy.extra_state()
    again = dict(b)
    noisy.prepare_iteration(again)
    noisy.load_extra_state(saved)
    replay = dict(b)
    noisy.prepare_iteration(replay)
    torch.testing.assert_close(replay["cycle_noise"], again["cycle_noise"])
    with pytest.raises(ValueError, match="model.cycle_noise"):
        CycleGANModule(generator=TINY_G, discriminator=TINY_D, cycle_noise=-1.0)


def test_real_student_term_trains_g_a_and_the_student_learns_only_in_its_phase(tiny_synth: Path) -> None:
    torch.manual_seed(0)
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy=_policy(tiny_synth),
                       policy_losses={"real_student": 2.0, "real_student_warmup": 10})
    student = m.real_student
    assert student is not None and any(k.startswith("netP_real.") for k in m.state_dict())
    assert len(m.configure_optimizers()[0]) == 3 and [p.name for p in m.iteration_phases()] == ["G", "D", "P"]
    b = _batch()
    ctx = dict(b)
    m.prepare_iteration(ctx)  # step 0 < warm-up: the term is there, at weight 0
    assert float(m.get_buffer("student_scale")) == 0.0
    m.get_buffer("student_scale").fill_(1.0)
    g = next(ph for ph in m.iteration_phases() if ph.name == "G")
    m.enter_phase(g)
    named, total = g.losses(ctx)
    assert named["loss_policy_real_student"] > 0
    named["loss_policy_real_student"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.netG_A.parameters())
    assert all(p.grad is None for p in (*m.netG_B.parameters(), *student.parameters()))
    frozen = m.frozen_policy
    assert frozen is not None and all(not t.requires_grad for t in frozen.buffers())
    m.zero_grad(set_to_none=True)
    p_phase = next(ph for ph in m.iteration_phases() if ph.name == "P")
    m.enter_phase(p_phase)
    named, total = p_phase.losses(ctx)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in (*m.netG_A.parameters(), *m.netG_B.parameters()))


def test_real_student_off_is_the_plain_loss_and_cut_refuses_it(tiny_synth: Path) -> None:
    from models.base import PolicyLossWeights

    torch.manual_seed(0)
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, policy=_policy(tiny_synth),
                       policy_losses={"cycle": 1.0})
    assert m.real_student is None and [p.name for p in m.iteration_phases()] == ["G", "D"]
    out = m.generator_forward(_batch()["real"], _batch()["sim"])
    assert "loss_policy_real_student" not in m.policy_losses(_batch(), out)
    ramp = PolicyLossWeights(real_student=1.0, real_student_warmup=100).student_ramp
    assert (ramp(50), ramp(100), ramp(150), ramp(300)) == (0.0, 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="real_student needs CycleGAN"):
        CUTModule(generator=TINY_G, discriminator=TINY_D, policy=_policy(tiny_synth),
                  policy_losses={"real_student": 1.0})


def test_injected_frozen_nets_are_used_as_given_and_stay_out_of_checkpoints(tiny_synth: Path) -> None:
    """A frozen policy and teacher passed in (as train() does) are the very objects the losses
    use; no policy.path or teacher file is needed; they get no gradient and are not saved."""
    from models.base import load_teacher_generator
    from models.networks import build_generator
    from translate.torch_policy import load_torch_policy

    pol = load_torch_policy(_policy(tiny_synth)["path"])
    teacher = build_generator(**TINY_G)
    torch.manual_seed(0)
    m = CycleGANModule(generator=TINY_G, discriminator=TINY_D, frozen_policy=pol,
                       teacher_generator=teacher, policy_losses={"cycle": 1.0, "real_student": 1.0},
                       distill={"pixel": 2.0})
    assert m.frozen_policy is pol and m.teacher is teacher and m.has_validation and m.distill_on
    assert m.netP_real is not pol  # the student is a trainable copy of the injected policy
    b = _batch()
    out = m.generator_forward(b["real"], b["sim"])
    losses = {**m.policy_losses(b, out), **m.distill_losses(b["real"], out.fake_B)}
    assert {"loss_policy_cycle", "loss_distill"} <= set(losses)
    sum(v for k, v in losses.items() if k != "loss_policy_real_student").backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not t.requires_grad for t in (*pol.parameters(), *pol.buffers()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.netG_A.parameters())
    assert "frozen_policy" not in m.hparams and "teacher_generator" not in m.hparams
    assert not any(k.startswith(("_frozen_policy", "_teacher")) for k in m.state_dict())
    with pytest.raises(TypeError, match="frozen_policy must be a translate.torch_policy.TorchPolicy"):
        CycleGANModule(generator=TINY_G, discriminator=TINY_D, frozen_policy=teacher)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="model.distill.teacher"):
        load_teacher_generator(str(tiny_synth / "missing.ckpt"))


def test_train_injects_the_frozen_nets_it_loads_once(tiny_synth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """workflows.training.frozen_nets loads the configured policy once; instantiate_model passes
    it through to the module as the object itself (not through the config)."""
    from workflows import training

    kwargs = {"_target_": "models.cyclegan.module.CycleGANModule", "generator": TINY_G,
              "discriminator": TINY_D, "policy": _policy(tiny_synth),
              "policy_losses": {"sim_identity": 1.0}}
    nets = training.frozen_nets(kwargs)
    assert set(nets) == {"frozen_policy"}
    m = training.instantiate_model(kwargs, **nets)
    assert m.frozen_policy is nets["frozen_policy"]
    assert training.frozen_nets({"policy": None, "distill": {"teacher": None}}) == {}
