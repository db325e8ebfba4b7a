"""Tests for models.checkpointing: generators rebuilt from the config stored in a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from models.checkpointing import generator_record, load_lightning_generator
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

G = {"ngf": 8, "n_blocks": 2}


def _ckpt(module: Any, with_record: bool, with_hparams: bool) -> dict[str, Any]:
    ckpt: dict[str, Any] = {"state_dict": module.state_dict()}
    if with_hparams:
        ckpt["hyper_parameters"] = dict(module.hparams)
    if with_record:
        module.on_save_checkpoint(ckpt)
    return ckpt


@pytest.mark.parametrize("make,gen", [
    (lambda: CUTModule(name="fastcut", generator=G, discriminator={"ndf": 8}), "netG"),
    (lambda: CycleGANModule(generator=G, discriminator={"ndf": 8}), "netG_A"),
])
@pytest.mark.parametrize("form", ["record only", "hyper_parameters only"])
def test_generator_rebuilt_from_the_checkpoint_alone(tmp_path: Path, make: Any, gen: str, form: str) -> None:
    torch.manual_seed(0)
    m = make()
    ckpt = _ckpt(m, with_record=form == "record only", with_hparams=form != "record only")
    if form == "record only":
        assert ckpt["translator_generator"]["kwargs"]["ngf"] == 8
    path = tmp_path / "x.ckpt"
    torch.save(ckpt, path)
    loaded, name, _ = load_lightning_generator(path)
    assert name == m.name
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), getattr(m, gen).eval()(x))


def test_loading_a_generator_needs_no_policy(tmp_path: Path) -> None:
    """A policy-aware checkpoint loads as a translator even where its policy file is gone."""
    torch.manual_seed(0)
    m = CycleGANModule(generator=G, discriminator={"ndf": 8})
    ckpt = _ckpt(m, with_record=True, with_hparams=True)
    ckpt["hyper_parameters"]["policy"] = {"path": "/nonexistent/policy.onnx"}
    ckpt["hyper_parameters"]["policy_losses"] = {"cycle": 5.0}
    torch.save(ckpt, tmp_path / "p.ckpt")
    loaded, _, _ = load_lightning_generator(tmp_path / "p.ckpt")
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in m.netG_A.parameters())


def test_weights_that_do_not_fit_name_the_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = CUTModule(generator=G, discriminator={"ndf": 8})
    ckpt = _ckpt(m, with_record=True, with_hparams=True)
    ckpt["translator_generator"]["kwargs"]["ngf"] = 16
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"bad\.ckpt: the netG\.\* weights do not fit"):
        load_lightning_generator(tmp_path / "bad.ckpt")
    assert generator_record(ckpt)["prefix"] == "netG."


def test_a_corrupted_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    from models.checkpointing import AtomicCheckpointIO, load_checkpoint

    torch.manual_seed(0)
    m = CUTModule(generator=G, discriminator={"ndf": 8})
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(m, with_record=True, with_hparams=True), path)
    assert load_checkpoint(path)["state_dict"].keys() == m.state_dict().keys()
    data = bytearray(path.read_bytes())
    mid = len(data) // 2  # inside the tensor payload
    data[mid:mid + 4096] = bytes(b ^ 0xFF for b in data[mid:mid + 4096])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"last\.ckpt is corrupted"):
        load_checkpoint(path)
