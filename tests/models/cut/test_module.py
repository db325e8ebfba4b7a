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



def test_nce_keys_from_the_forward_pass_equal_a_second_encoding() -> None:
    """PatchNCE with the keys kept from G's forward pass = PatchNCE encoding the inputs again:
    the same losses and the same gradients into G and F (the keys are detached after F)."""
    torch.manual_seed(0)
    m = CUTModule(generator=TINY_G, discriminator=TINY_D, num_patches=16).train()
    g = torch.Generator().manual_seed(1)
    real_A, real_B = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    ids = [m.draw_patch_ids(32, 32, "cpu") for _ in range(2)]

    def run(reuse: bool) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        m.zero_grad(set_to_none=True)
        fake_B, idt_B, flip, keys = m.generator_pass(real_A, real_B)
        assert keys is not None and len(keys) == len(m.nce_layers) and keys[0].shape[0] == 4
        losses = m.generator_losses(real_A, real_B, fake_B, idt_B, flip, ids, keys=keys if reuse else None)
        losses["loss_G"].backward()
        return losses, [p.grad.clone() for p in [*m.netG.parameters(), *m.netF.parameters()] if p.grad is not None]

    kept, g_kept = run(True)
    again, g_again = run(False)
    for k in ("loss_NCE", "loss_NCE_Y", "loss_G"):
        assert torch.allclose(kept[k], again[k], atol=1e-6), k
    assert len(g_kept) == len(g_again) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_kept, g_again, strict=True))


def test_batched_nce_calls_equal_separate_calls() -> None:
    """One encoding pass for CUT's two PatchNCE calls gives each call's own loss."""
    torch.manual_seed(0)
    m = CUTModule(generator=TINY_G, discriminator=TINY_D, num_patches=16).train()
    g = torch.Generator().manual_seed(2)
    a, b, fa, fb = (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for _ in range(4))
    ids = [m.draw_patch_ids(32, 32, "cpu") for _ in range(2)]
    both = m.nce_losses([a, b], [fa, fb], False, ids)
    apart = [m.nce_loss(a, fa, False, ids[0]), m.nce_loss(b, fb, False, ids[1])]
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(both, apart, strict=True))
    with pytest.raises(ValueError, match="keys must hold"):
        m.nce_losses([a, b], [fa, fb], False, ids, keys=[torch.zeros(1, 3, 38, 38)])


def test_flip_equivariance_encodes_the_keys_apart() -> None:
    """FastCUT's pass sees the flipped frame, so its activations are not the keys."""
    m = CUTModule(generator=TINY_G, discriminator=TINY_D, num_patches=16, nce_idt=False,
                  flip_equivariance=True).train()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert m.generator_pass(x, x)[3] is None
    assert m.eval().generator_pass(x, x)[3] is None
