"""Tests for models.augment (DiffAugment on the discriminators' inputs) and its use by the models."""

from __future__ import annotations

import pytest
import torch

from models.augment import diff_augment, draw_diffaug_params, parse_diffaug
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

G = {"ngf": 8, "n_blocks": 2}
D = {"ndf": 8}
ALL = ("color", "translation", "cutout")


def _img(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_parse_names_the_bad_op_and_the_choices() -> None:
    assert parse_diffaug("cutout, color") == ("color", "cutout")  # applied in the official order
    assert parse_diffaug(["translation"]) == ("translation",)
    assert parse_diffaug("") == () and parse_diffaug(None) == ()
    with pytest.raises(ValueError, match=r"model.diffaug: unknown augmentation 'flip'; choose from "
                                         r"color, translation, cutout"):
        parse_diffaug("color,flip")


def test_capture_parameters_are_the_identity_and_live_ones_lie_in_range() -> None:
    x = _img()
    ident = draw_diffaug_params(2, 3, 16, 16, torch.Generator(), live=False)
    assert ident.shape == (2, 3, 7)
    torch.testing.assert_close(diff_augment(x, ident[0], ALL), x)
    p = draw_diffaug_params(500, 3, 16, 16, torch.Generator().manual_seed(1))
    assert p[..., 0].min() >= -0.5 and p[..., 0].max() < 0.5
    assert p[..., 1].min() >= 0 and p[..., 1].max() < 2 and p[..., 2].min() >= 0.5 and p[..., 2].max() < 1.5
    assert p[..., 3:5].abs().max() == 2  # 16 px × 0.125, both signs drawn
    assert p[..., 5:].min() >= 0 and p[..., 5:].max() <= 16


def test_each_op_does_what_it_says() -> None:
    x = _img(2)
    p = draw_diffaug_params(1, 2, 16, 16, torch.Generator(), live=False)[0]
    t = p.clone()
    t[:, 3], t[:, 4] = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 3.0])  # (dy, dx) per image
    out = diff_augment(x, t, ("translation",))
    # image 0 moved down 2 rows (the top 2 rows are the zero fill), image 1 up 1 and right 3
    torch.testing.assert_close(out[0, :, 2:], x[0, :, :-2])
    assert out[0, :, :2].abs().max() == 0
    torch.testing.assert_close(out[1, :, :-1, 3:], x[1, :, 1:, :-3])
    c = p.clone()
    c[:, 5], c[:, 6] = 8.0, 0.0  # centre row 8, column 0: an 8×8 box clipped to 8×4
    out = diff_augment(x, c, ("cutout",))
    zero = out == 0
    assert zero[:, :, 4:12, :4].all() and int(zero.sum()) == 2 * 3 * 8 * 4
    b = p.clone()
    b[:, 0] = 0.25
    torch.testing.assert_close(diff_augment(x, b, ("color",)), x + 0.25)


def test_the_augmentation_is_differentiable() -> None:
    x = _img().requires_grad_(True)
    p = draw_diffaug_params(1, 3, 16, 16, torch.Generator().manual_seed(2))[0]
    diff_augment(x, p, ALL).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [CycleGANModule, CUTModule])
def test_models_augment_every_discriminator_input_and_off_is_the_plain_loss(cls: type) -> None:
    """Off: the losses of the plain model. On: the D phase sees other inputs (its losses change)
    and G's GAN gradient still reaches the generator through the augmentation."""
    kw = {"num_patches": 16} if cls is CUTModule else {}
    batch = {"real": _img(2, 32), "sim": _img(2, 32).flip(-1)}

    def losses(diffaug: str) -> tuple[dict[str, float], torch.nn.Module]:
        torch.manual_seed(0)
        m = cls(generator=G, discriminator=D, diffaug=diffaug, **kw)
        ctx = dict(batch)
        m.prepare_iteration(ctx)
        assert ("diffaug" in ctx) == bool(diffaug)
        out: dict[str, float] = {}
        for phase in m.iteration_phases():
            if phase.before is not None:
                phase.before(ctx, True)
            named, total = phase.losses(ctx)
            out.update({k: float(v.detach()) for k, v in named.items()})
            if phase.name == "G":
                total.backward()
        return out, m

    plain, _ = losses("")
    on, m = losses("color,translation,cutout")
    assert on.keys() == plain.keys()
    # its own random stream: the terms without a discriminator are the plain model's exactly
    same = ["loss_cycle_A", "loss_cycle_B", "loss_idt_A"] if cls is CycleGANModule else ["loss_NCE"]
    for k in same:
        assert on[k] == plain[k], k
    gan = "loss_G_A" if cls is CycleGANModule else "loss_G_GAN"
    assert on[gan] != plain[gan] and on["loss_D"] != plain["loss_D"]  # D saw other inputs
    gen = m.netG_A if cls is CycleGANModule else m.netG
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())


def test_the_draws_resume_exactly() -> None:
    """The DiffAugment stream is saved in checkpoints and restored."""
    m = CycleGANModule(generator=G, discriminator=D, diffaug="translation,cutout")
    ctx = {"real": _img(2, 32)}
    m.prepare_iteration(ctx)
    ckpt: dict = {}
    m.on_save_checkpoint(ckpt)
    m.prepare_iteration(ctx)
    expected = ctx["diffaug"].clone()
    n = CycleGANModule(generator=G, discriminator=D, diffaug="translation,cutout")
    n.on_load_checkpoint(ckpt)
    ctx2 = {"real": _img(2, 32)}
    n.prepare_iteration(ctx2)
    torch.testing.assert_close(ctx2["diffaug"], expected)
