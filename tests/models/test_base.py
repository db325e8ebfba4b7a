"""Tests for models.base: the deployable network for the export, the generator's weight average."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpointing import load_lightning_generator
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule


def test_deployable_generator_is_what_forward_runs() -> None:
    tiny = {"ngf": 8, "n_blocks": 1}
    cut = CUTModule(generator=tiny, discriminator={"ndf": 8}, num_patches=16).eval()
    cyc = CycleGANModule(generator=tiny, discriminator={"ndf": 8}).eval()
    assert cut.deployable_generator() is cut.netG
    assert cyc.deployable_generator() is cyc.netG_A
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        for m in (cut, cyc):
            assert torch.equal(m.deployable_generator()(x), m(x))


def _ema_module(kind: str, decay: float = 0.9) -> CUTModule | CycleGANModule:
    tiny = {"ngf": 8, "n_blocks": 1}
    torch.manual_seed(0)
    if kind == "cut":
        return CUTModule(generator=tiny, discriminator={"ndf": 8}, num_patches=16, ema_decay=decay)
    return CycleGANModule(generator=tiny, discriminator={"ndf": 8}, ema_decay=decay)


@pytest.mark.parametrize("kind,live", [("cut", "netG"), ("cyclegan", "netG_A")])
def test_ema_is_a_frozen_copy_that_forward_and_the_export_use(tmp_path: Path, kind: str, live: str) -> None:
    m = _ema_module(kind)
    ema = getattr(m, f"{live}_ema")
    assert m.deployable_generator() is ema
    assert not any(p.requires_grad for p in ema.parameters())
    trained = {id(p) for opt in m.configure_optimizers()[0] for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in ema.parameters())
    with torch.no_grad():  # make the live net differ, then the checkpoint must carry the average
        for p in getattr(m, live).parameters():
            p.add_(0.5)
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "m.ckpt")
    loaded, _, _ = load_lightning_generator(tmp_path / "m.ckpt")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ema.eval()(x))
        torch.testing.assert_close(m.eval()(x), ema(x))
        assert not torch.allclose(loaded(x), getattr(m, live).eval()(x))


def test_ema_update_is_the_warmed_up_lerp() -> None:
    m = _ema_module("cyclegan", decay=0.99)
    ema0 = [p.detach().clone() for p in m.netG_A_ema.parameters()]
    with torch.no_grad():
        for p in m.netG_A.parameters():
            p.add_(1.0)
    m.update_ema(0)  # step 0: the warm-up decay (1 + 0) / (10 + 0) = 0.1, not 0.99
    for e0, e, live in zip(ema0, m.netG_A_ema.parameters(), m.netG_A.parameters(), strict=True):
        torch.testing.assert_close(e, e0 + 0.9 * (live - e0))


def test_no_ema_by_default_and_bad_decay_is_refused() -> None:
    m = CycleGANModule(generator={"ngf": 8, "n_blocks": 1}, discriminator={"ndf": 8})
    assert not hasattr(m, "netG_A_ema") and not any(k.startswith("netG_A_ema") for k in m.state_dict())
    m.update_ema(5)  # no-op
    with pytest.raises(ValueError, match="model.ema_decay"):
        _ema_module("cyclegan", decay=1.0)


def test_optimizers_come_from_model_optimizer() -> None:
    tiny = {"ngf": 8, "n_blocks": 1}
    m = CycleGANModule(generator=tiny, discriminator={"ndf": 8}, lr=1e-3,
                       optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9})
    opts = m.configure_optimizers()[0]
    assert all(type(o) is torch.optim.SGD for o in opts)
    assert opts[0].param_groups[0]["lr"] == 1e-3 and opts[0].param_groups[0]["momentum"] == 0.9
    default = CycleGANModule(generator=tiny, discriminator={"ndf": 8}, fused_adam=False).configure_optimizers()[0]
    assert type(default[0]) is torch.optim.Adam and default[0].param_groups[0]["betas"] == (0.5, 0.999)
    with pytest.raises(ValueError, match=r"model.optimizer._target_='torch.nn.Linear' is not a torch.optim"):
        CycleGANModule(generator=tiny, discriminator={"ndf": 8}, optimizer={"_target_": "torch.nn.Linear"})


def test_a_custom_generator_class_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    gen = {"_target_": "models.networks.ResnetGenerator", "input_nc": 3, "output_nc": 3, "ngf": 8,
           "n_blocks": 1}
    torch.manual_seed(0)
    m = CycleGANModule(generator=gen, discriminator={"ndf": 8})
    ckpt = {"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}
    m.on_save_checkpoint(ckpt)
    assert ckpt["translator_generator"]["kwargs"]["_target_"] == "models.networks.ResnetGenerator"
    torch.save(ckpt, tmp_path / "c.ckpt")
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["hyper_parameters"]["generator"] == gen
    loaded, _, _ = load_lightning_generator(tmp_path / "c.ckpt")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m.netG_A.eval()(x))
    ckpt["translator_generator"]["kwargs"] = {"_target_": "os.system", "command": "true"}
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="is not a torch.nn.Module class"):
        load_lightning_generator(tmp_path / "bad.ckpt")


@pytest.mark.parametrize("kind", ["cut", "cyclegan"])
def test_colour_match_is_fitted_from_the_training_frames_once_and_exported(tiny_unpaired: Path, tmp_path: Path,
                                                                           kind: str) -> None:
    """model.colour_match: the real→sim generator (and its weight average) gets a gain fitted from
    the data module's channel means before training; CycleGAN's sim→real generator gets none; a
    fitted layer (a resumed run) is not refitted; the checkpoint's generator rebuilds with it."""
    from datasets.datamodule import TranslationDataModule
    from models.networks import ChannelGain

    tiny = {"ngf": 8, "n_blocks": 1}
    torch.manual_seed(0)
    m: CUTModule | CycleGANModule
    if kind == "cut":
        m = CUTModule(generator=tiny, discriminator={"ndf": 8}, num_patches=16, colour_match=True, ema_decay=0.9)
    else:
        m = CycleGANModule(generator=tiny, discriminator={"ndf": 8}, colour_match=True, ema_decay=0.9)
        assert m.netG_B.colour is None
    layers = [mod for mod in m.modules() if isinstance(mod, ChannelGain)]
    assert len(layers) == 2  # live and averaged real→sim generator
    dm = TranslationDataModule(str(tiny_unpaired), camera_yaml=None, crop_size=16, batch_size=1, num_workers=0)
    means = dm.colour_means()
    m.fit_colour_match(dm)
    want = (means["sim"] + 1) / (means["real"] + 1)
    for layer in layers:
        torch.testing.assert_close(layer.gain, want.float())
    m.fit_colour_match(None)  # already fitted: no data module needed
    ckpt = {"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}
    m.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "m.ckpt")
    loaded, _, _ = load_lightning_generator(tmp_path / "m.ckpt")
    torch.testing.assert_close(loaded.colour.gain, want.float())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m.eval()(x))


def test_colour_match_needs_the_data_module_and_the_project_generator() -> None:
    tiny = {"ngf": 8, "n_blocks": 1}
    m = CycleGANModule(generator=tiny, discriminator={"ndf": 8}, colour_match=True)
    with pytest.raises(ValueError, match="colour_match=true needs the training data module"):
        m.fit_colour_match(object())
    gen = {"_target_": "models.networks.ResnetGenerator", "ngf": 8, "n_blocks": 1}
    with pytest.raises(ValueError, match="model.colour_match=false"):
        CycleGANModule(generator=gen, discriminator={"ndf": 8}, colour_match=True)
