"""Tests for models.cut.module: CUTModule's forward, flip, PatchNCE sizes and one iteration's losses."""

from __future__ import annotations

import pytest
import torch

from models.cut.module import CUTModule

TINY_G = {"ngf": 8, "n_blocks": 2}
TINY_D = {"ndf": 8}


@pytest.fixture(scope="module")
def cut() -> CUTModule:
    torch.manual_seed(0)
    return CUTModule(generator=TINY_G, discriminator=TINY_D, num_patches=16)


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_keeps_the_shape_in_range(cut: CUTModule, batch: int) -> None:
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        y = cut.eval()(x)
    assert y.shape == (batch, 3, 32, 32)
    assert y.min() >= -1 and y.max() <= 1


def test_flip_if() -> None:
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert CUTModule.flip_if(x, None) is x and CUTModule.flip_if(x, False) is x
    assert torch.equal(CUTModule.flip_if(x, True), torch.flip(x, [3]))
    assert torch.equal(CUTModule.flip_if(x, torch.tensor(True)), torch.flip(x, [3]))
    assert torch.equal(CUTModule.flip_if(x, torch.tensor(False)), x)


def test_nce_sizes_and_patch_ids(cut: CUTModule) -> None:
    sizes = cut.nce_feature_sizes(32, 32)
    assert len(sizes) == len(cut.nce_layers) and sizes[0] == (32 + 6) ** 2  # layer 0: the 3-px reflection pad
    assert cut.nce_feature_sizes(32, 32) is sizes  # cached per input size
    ids = cut.draw_patch_ids(32, 32, "cpu")
    assert [len(i) for i in ids] == [min(16, n) for n in sizes]
    fixed = cut.draw_patch_ids(32, 32, "cpu", live=False)
    assert all(torch.equal(f, torch.arange(len(f))) for f in fixed)


def test_one_iteration_losses_are_finite_and_nce_identity_follows_training(cut: CUTModule) -> None:
    real_A, real_B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    cut.train()
    fake_B, idt_B, flip = cut.generator_forward(real_A, real_B)
    assert fake_B.shape == real_A.shape and idt_B is not None and idt_B.shape == real_B.shape
    assert flip is None  # no flip-equivariance in plain CUT
    g = cut.generator_losses(real_A, real_B, fake_B, idt_B, flip)
    d = cut.discriminator_losses(real_B, fake_B)
    assert {"loss_G_GAN", "loss_G"} <= g.keys() and {"loss_D_real", "loss_D_fake", "loss_D"} <= d.keys()
    assert all(torch.isfinite(v) and v.ndim == 0 for v in (*g.values(), *d.values()))
    cut.eval()
    _, idt_eval, _ = cut.generator_forward(real_A, real_B)
    assert idt_eval is None

