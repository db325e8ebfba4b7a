"""Tests for models.cyclegan.module: CycleGANModule's forward, batched generators, noise and the phases."""

from __future__ import annotations

import pytest
import torch

from models.cyclegan.module import CycleGANModule

TINY_G = {"ngf": 8, "n_blocks": 2}
TINY_D = {"ndf": 8}


def _module(**kw: object) -> CycleGANModule:
    torch.manual_seed(0)
    return CycleGANModule(generator=TINY_G, discriminator=TINY_D, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_keeps_the_shape_in_range(batch: int) -> None:
    m = _module().eval()
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        y = m(x)
    assert y.shape == (batch, 3, 32, 32)
    assert y.min() >= -1 and y.max() <= 1


def test_batched_generators_match_the_sequential_passes() -> None:
    m = _module().eval()
    real_A, real_B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        batched = m.generator_forward(real_A, real_B)
        m.batched_generators = False
        seq = m.generator_forward(real_A, real_B)
    for name in ("fake_B", "rec_A", "fake_A", "rec_B", "idt_A", "idt_B"):
        torch.testing.assert_close(getattr(batched, name), getattr(seq, name), atol=1e-5, rtol=1e-4)
    assert batched.fake_B.shape == real_A.shape


def test_no_identity_outputs_without_identity_loss() -> None:
    m = _module(lambda_identity=0.0)
    out = m.generator_forward(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    assert out.idt_A is None and out.idt_B is None
    assert not any(k.startswith("loss_idt") for k in m.generator_losses(
        torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), out))


def test_negative_cycle_noise_is_refused() -> None:
    with pytest.raises(ValueError, match="model.cycle_noise must be >= 0"):
        _module(cycle_noise=-0.1)


def test_cycle_noise_draw_and_placeholder() -> None:
    m = _module(cycle_noise=0.1)
    ctx: dict = {"real": torch.zeros(2, 3, 32, 32)}
    m.prepare_iteration(ctx)
    assert ctx["cycle_noise"].shape == (4, 3, 32, 32) and ctx["cycle_noise"].abs().sum() > 0
    m.prepare_iteration(ctx, live=False)
    assert not ctx["cycle_noise"].any()


def test_phases_give_finite_losses() -> None:
    m = _module(pool_size=0).train()
    ctx = {"real": torch.rand(2, 3, 32, 32) * 2 - 1, "sim": torch.rand(2, 3, 32, 32) * 2 - 1}
    assert [p.name for p in m.iteration_phases()] == ["G", "D"]
    g, g_total = m.generator_step(ctx)
    assert {"loss_G_A", "loss_G_B", "loss_cycle_A", "loss_cycle_B", "loss_G"} <= g.keys()
    m.query_pools(ctx)
    d, d_total = m.discriminator_step(ctx)
    assert {"loss_D_A", "loss_D_B", "loss_D"} <= d.keys()
    assert torch.isfinite(g_total) and torch.isfinite(d_total)
