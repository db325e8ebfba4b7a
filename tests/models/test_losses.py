"""Tests for models/losses.py: GAN objectives on hand-computed inputs, PatchNCE vs the official."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.losses import GANLoss, PatchNCELoss

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference_nets_ngf16.pt"


@pytest.fixture(scope="module")
def ref() -> dict:
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def test_lsgan_hand_computed():
    pred = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]])
    loss = GANLoss("lsgan")
    assert loss(pred, True).item() == pytest.approx((0.25 + 4 + 1 + 1) / 4)
    assert loss(pred, False).item() == pytest.approx((0.25 + 1 + 4 + 0) / 4)
    assert GANLoss("lsgan", target_real_label=0.5)(pred, True).item() == pytest.approx(
        (0 + 2.25 + 2.25 + 0.25) / 4
    )


def test_vanilla_hand_computed():
    pred = torch.tensor([[[[0.0, math.log(3.0)]]]])
    loss = GANLoss("vanilla")
    # real: mean(log(1 + e^-p)) = (log 2 + log 4/3) / 2; fake: mean(log(1 + e^p)) = (log 2 + log 4) / 2
    assert loss(pred, True).item() == pytest.approx(math.log(8 / 3) / 2)
    assert loss(pred, False).item() == pytest.approx(1.5 * math.log(2))


def test_nonsaturating_matches_cut_semantics():
    pred = torch.tensor([[[[0.0, math.log(3.0)]]], [[[-1.0, 2.0]]]])  # (2, 1, 1, 2)
    loss = GANLoss("nonsaturating")
    # CUT: softplus(-D).view(bs, -1).mean(1) per image, then .mean() in the model
    cut_real = F.softplus(-pred).view(2, -1).mean(dim=1).mean()
    cut_fake = F.softplus(pred).view(2, -1).mean(dim=1).mean()
    assert torch.allclose(loss(pred, True), cut_real)
    assert torch.allclose(loss(pred, False), cut_fake)
    assert loss(torch.zeros(1, 1, 3, 3), True).item() == pytest.approx(math.log(2))


def test_gan_loss_gradient_and_dtype():
    pred = torch.zeros(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    for mode in ("lsgan", "vanilla", "nonsaturating"):
        loss = GANLoss(mode)(pred, True)
        assert loss.ndim == 0 and loss.dtype == torch.float64
        (grad,) = torch.autograd.grad(loss, pred)
        assert (grad < 0).all()  # pushing D up lowers the "real" loss


def test_gan_loss_errors_and_state():
    with pytest.raises(ValueError, match="mode must be one of"):
        GANLoss("wgan")
    with pytest.raises(ValueError, match="prediction"):
        GANLoss()(torch.zeros(0), True)
    assert GANLoss().state_dict() == {}  # labels are config, not checkpoint state


@pytest.mark.parametrize(
    ("key", "batch_size", "all_negatives"),
    [
        ("patchnce_loss_vec_bs1", 1, False),
        ("patchnce_loss_vec_bs2", 2, False),
        ("patchnce_loss_vec_bs2_all_negatives", 2, True),
    ],
)
def test_patchnce_matches_official(ref, key, batch_size, all_negatives):
    loss = PatchNCELoss(0.07, batch_size, all_negatives)
    out = loss(ref["patchnce_feat_q"], ref["patchnce_feat_k"])
    assert out.shape == (128,)
    assert torch.allclose(out, ref[key], atol=1e-5)


def test_patchnce_hand_computed():
    # two patches, one image: q0 = k0 = e0, q1 = k1 = e1
    q = torch.eye(2)
    out = PatchNCELoss(nce_T=1.0)(q, q.clone())
    # logits row i: [pos 1, self -10, other 0] -> CE = -log(e / (e + e^-10 + 1))
    expected = -math.log(math.e / (math.e + math.exp(-10) + 1))
    assert torch.allclose(out, torch.full((2,), expected))


def test_patchnce_detaches_keys_and_batch_override(ref):
    q = ref["patchnce_feat_q"].clone().requires_grad_()
    k = ref["patchnce_feat_k"].clone().requires_grad_()
    loss = PatchNCELoss(batch_size=4)
    out = loss(q, k, batch_size=2)
    assert torch.allclose(out, ref["patchnce_loss_vec_bs2"], atol=1e-5)
    out.mean().backward()
    assert q.grad is not None and k.grad is None


def test_patchnce_errors():
    loss = PatchNCELoss(batch_size=3)
    with pytest.raises(ValueError, match="batch_size=3"):
        loss(torch.zeros(128, 4), torch.zeros(128, 4))
    with pytest.raises(ValueError, match=r"\(B \* P, D\)"):
        loss(torch.zeros(12, 4), torch.zeros(12, 5))
    with pytest.raises(ValueError, match="nce_T"):
        PatchNCELoss(nce_T=0)


# ---------------------------------------------------------------------------- temporal (shift) loss


def test_shift_consistency_is_zero_for_a_shift_equivariant_generator() -> None:
    from models.losses import shift_consistency_loss

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    pointwise = torch.nn.Conv2d(3, 3, 1)  # no spatial context: exactly shift-equivariant
    assert shift_consistency_loss(pointwise, x, pointwise(x)).item() == pytest.approx(0.0, abs=1e-7)

    class Positional(torch.nn.Module):  # adds a fixed pattern: not equivariant
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            ramp = torch.linspace(-1, 1, t.shape[-1])
            return t + ramp.view(1, 1, 1, -1)

    g = Positional()
    assert shift_consistency_loss(g, x, g(x)).item() > 0.01
    with pytest.raises(ValueError, match="shift must be in"):
        shift_consistency_loss(g, x, g(x), shift=5)
    with pytest.raises(ValueError, match="too small"):
        shift_consistency_loss(g, x[..., :16, :16], g(x[..., :16, :16]))


def _tiny_module(kind: str, **kwargs):
    """A tiny CycleGAN or CUT module with ``kwargs`` (seeded)."""
    from models.cut.module import CUTModule
    from models.cyclegan.module import CycleGANModule

    torch.manual_seed(0)
    tiny = {"generator": {"ngf": 4, "n_blocks": 1}, "discriminator": {"ndf": 4}}
    if kind == "cyclegan":
        return CycleGANModule(**tiny, **kwargs)
    return CUTModule(**tiny, num_patches=8, **kwargs)


def _temporal_module(kind: str, weight: float):
    return _tiny_module(kind, lambda_temporal=weight)


def _generator_step(m, kind: str) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ctx = {"real": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
           "sim": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
    if kind == "cut":
        m.prepare_iteration(ctx)
        m.discriminator_step(ctx)
    return m.generator_step(ctx)


@pytest.mark.parametrize("kind", ["cyclegan", "cut"])
def test_temporal_gradient_reaches_the_generator_not_frozen_nets(kind: str) -> None:
    m = _temporal_module(kind, 2.0)
    losses, _ = _generator_step(m, kind)
    m.zero_grad(set_to_none=True)
    losses["loss_temporal"].backward()
    gen = m.netG_A if kind == "cyclegan" else m.netG
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())
    discs = [m.netD_A, m.netD_B] if kind == "cyclegan" else [m.netD]
    assert all(p.grad is None for d in discs for p in d.parameters())
    if kind == "cyclegan":  # the term is on the deployed translator G_A only
        assert all(p.grad is None for p in m.netG_B.parameters())


@pytest.mark.parametrize("kind", ["cyclegan", "cut"])
def test_zero_temporal_weight_is_exactly_the_plain_loss(kind: str) -> None:
    plain_losses, plain = _generator_step(_temporal_module(kind, 0.0), kind)
    losses, total = _generator_step(_temporal_module(kind, 0.5), kind)
    assert "loss_temporal" not in plain_losses and "loss_temporal" in losses
    assert torch.equal(plain_losses["loss_G"], losses["loss_G"])
    torch.testing.assert_close(total - losses["loss_temporal"], plain)


# --- R1 penalty (model.r1_gamma) ------------------------------------------------------------


def test_r1_penalty_is_the_squared_input_gradient_and_trains_the_discriminator() -> None:
    from models.losses import discriminate_with_r1
    from models.networks import NLayerDiscriminator

    torch.manual_seed(0)
    d = NLayerDiscriminator(ndf=4, n_layers=2)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out, pen = discriminate_with_r1(d, x)
    torch.testing.assert_close(out, d(x))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(xr).flatten(1).mean(1).sum(), xr)  # per-image score: the patch mean
    torch.testing.assert_close(pen, grad.pow(2).flatten(1).sum(1).mean())
    pen.backward()  # create_graph: the penalty has a gradient for D's weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert not x.requires_grad


def _r1_module(kind: str, gamma: float):
    return _tiny_module(kind, r1_gamma=gamma)


def _discriminator_losses(m, kind: str) -> dict:
    g = torch.Generator().manual_seed(1)
    real, sim = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    fake_B, fake_A = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    if kind == "cyclegan":
        return m.discriminator_losses(real, sim, fake_A, fake_B)
    return m.discriminator_losses(sim, fake_B)


@pytest.mark.parametrize("kind", ["cyclegan", "cut"])
def test_r1_adds_gamma_half_the_penalty_and_zero_is_the_plain_loss(kind: str) -> None:
    plain = _discriminator_losses(_r1_module(kind, 0.0), kind)
    m = _r1_module(kind, 4.0)
    with_r1 = _discriminator_losses(m, kind)
    names = ["loss_D_A_r1", "loss_D_B_r1"] if kind == "cyclegan" else ["loss_D_r1"]
    assert not any(n in plain for n in names) and all(n in with_r1 for n in names)
    assert all(with_r1[n].item() > 0 for n in names)
    torch.testing.assert_close(with_r1["loss_D"], plain["loss_D"] + 2.0 * sum(with_r1[n] for n in names))
    with_r1["loss_D"].backward()  # the real inputs were detached: only the discriminators learn
    gens = [m.netG_A, m.netG_B] if kind == "cyclegan" else [m.netG]
    assert all(p.grad is None for g in gens for p in g.parameters())


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_r1_gamma_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="model.r1_gamma must be a finite number >= 0"):
        _r1_module("cyclegan", bad)
