"""Tests for models.fast_step: the fast iteration computes exactly what the Lightning step computes."""

from __future__ import annotations

import pytest
import torch

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule
from models.fast_step import FastStepConfig, TrainStep

G = {"ngf": 8, "n_blocks": 2}
D = {"ndf": 8}


def _optimizers(m: CycleGANModule | CUTModule) -> list[torch.optim.Adam]:
    if isinstance(m, CycleGANModule):
        return [torch.optim.Adam(list(m.netG_A.parameters()) + list(m.netG_B.parameters()), lr=m.lr, betas=m.betas),
                torch.optim.Adam(list(m.netD_A.parameters()) + list(m.netD_B.parameters()), lr=m.lr, betas=m.betas)]
    return [torch.optim.Adam(n.parameters(), lr=m.lr, betas=m.betas) for n in (m.netG, m.netD, m.netF)]


def _reference_iteration(
    m: CycleGANModule | CUTModule, opts: list[torch.optim.Adam], real_A: torch.Tensor, real_B: torch.Tensor
) -> None:
    """The LightningModule's training_step maths, with plain Adam, outside Lightning."""
    for o in opts:
        o.zero_grad(set_to_none=True)
    if isinstance(m, CycleGANModule):
        opt_G, opt_D = opts
        m.set_requires_grad([m.netD_A, m.netD_B], False)
        out = m.generator_forward(real_A, real_B)
        m.generator_losses(real_A, real_B, out)["loss_G"].backward()
        opt_G.step()
        m.set_requires_grad([m.netD_A, m.netD_B], True)
        fb, fa = m.fake_B_pool.query(out.fake_B.detach()), m.fake_A_pool.query(out.fake_A.detach())
        m.discriminator_losses(real_A, real_B, fa, fb)["loss_D"].backward()
        opt_D.step()
        return
    fake_B, idt_B, flipped = m.generator_forward(real_A, real_B)
    m.set_requires_grad([m.netD], True)
    m.discriminator_losses(real_B, fake_B)["loss_D"].backward()
    opts[1].step()
    m.set_requires_grad([m.netD], False)
    m.generator_losses(real_A, real_B, fake_B, idt_B, flipped)["loss_G"].backward()
    opts[0].step()
    opts[2].step()


@pytest.mark.parametrize("make", [
    lambda: CycleGANModule(generator=G, discriminator=D, batched_generators=False),
    lambda: CUTModule(generator=G, discriminator=D, num_patches=16),
    lambda: CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=False, lambda_NCE=10.0,
                      flip_equivariance=True),
], ids=["cyclegan", "cut", "fastcut"])
def test_plain_fast_step_equals_module_step(make: object) -> None:
    torch.manual_seed(0)
    a = make()  # type: ignore[operator]
    torch.manual_seed(0)
    b = make()  # type: ignore[operator]
    g = torch.Generator().manual_seed(1)
    real_A = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    real_B = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    step = TrainStep(a, batch_size=2, image_size=32, config=FastStepConfig.plain(), device="cpu", warmup=0)
    opts = _optimizers(b)
    for _ in range(3):
        step(real_A, real_B)
        _reference_iteration(b, opts, real_A, real_B)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_batched_generators_same_maths() -> None:
    torch.manual_seed(0)
    m = CycleGANModule(generator=G, discriminator=D)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    m.batched_generators = True
    o1 = m.generator_forward(x, y)
    m.batched_generators = False
    o2 = m.generator_forward(x, y)
    for f in ("fake_B", "rec_A", "fake_A", "rec_B", "idt_A", "idt_B"):
        torch.testing.assert_close(getattr(o1, f), getattr(o2, f), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cyclegan", "cut", "fastcut"])
def test_cuda_graph_step_runs_and_learns(model: str) -> None:
    torch.manual_seed(0)
    if model == "cyclegan":
        m = CycleGANModule(generator=G, discriminator=D)
    else:
        m = CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=model == "cut",
                      flip_equivariance=model == "fastcut")
    step = TrainStep(m, batch_size=2, image_size=32, config=FastStepConfig(), device="cuda")
    x = torch.rand(2, 3, 32, 32, device="cuda") * 2 - 1
    before = [p.detach().clone() for p in m.parameters()]
    for _ in range(3):
        out = step(x, x)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert any(not torch.equal(p0, p) for p0, p in zip(before, m.parameters(), strict=True))
