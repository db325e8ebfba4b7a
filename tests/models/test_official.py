"""Tests for models/official.py: loading official CycleGAN / CUT checkpoints, helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.networks import NLayerDiscriminator, ResnetGenerator
from models.official import (
    CheckpointMismatchError,
    infer_discriminator_config,
    infer_generator_config,
    load_official_checkpoint,
)

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference_nets_ngf16.pt"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors on a shared 2-core machine: OpenMP threads only add contention (10x slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ref() -> dict:
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def _save(tmp_path: Path, state_dict: dict, name: str = "latest_net_G.pth") -> Path:
    path = tmp_path / name
    torch.save(state_dict, path)
    return path


@pytest.mark.parametrize(
    ("model", "which", "key"),
    [
        ("cyclegan", "G", "cyclegan_G"),
        ("cyclegan", "D", "cyclegan_D"),
        ("cut", "G", "cut_G"),
        ("cut", "D", "cut_D"),
    ],
)
@torch.no_grad()
def test_loads_official_checkpoints(ref, tmp_path, model, which, key):
    path = _save(tmp_path, ref[f"{key}_state_dict"])
    net = load_official_checkpoint(path, model=model, which=which, ngf=16, ndf=16)
    assert not net.training
    assert torch.allclose(net(ref["input"]), ref[f"{key}_output"], atol=1e-5)


@torch.no_grad()
def test_module_prefix_and_full_inference(ref, tmp_path):
    prefixed = {f"module.{k}": v for k, v in ref["cut_G_state_dict"].items()}
    path = _save(tmp_path, prefixed)
    net = load_official_checkpoint(path, model="cut", ngf=None, n_blocks=None)
    assert isinstance(net, ResnetGenerator)
    assert torch.allclose(net(ref["input"]), ref["cut_G_output"], atol=1e-5)


@torch.no_grad()
def test_missing_blur_buffers_are_filled_in(ref, tmp_path):
    sd = {k: v for k, v in ref["cut_G_state_dict"].items() if not k.endswith(".filt")}
    net = load_official_checkpoint(_save(tmp_path, sd), model="cut", ngf=16)
    assert torch.allclose(net(ref["input"]), ref["cut_G_output"], atol=1e-5)


def test_antialiased_generator_with_antialias_false(ref, tmp_path):
    path = _save(tmp_path, ref["cut_G_state_dict"])
    with pytest.raises(CheckpointMismatchError, match="antialiased CUT generator") as info:
        load_official_checkpoint(path, model="cut", ngf=16, antialias=False, antialias_up=False)
    message = str(info.value)
    assert "use antialias=True" in message and "model.7.filt" in message
    assert "use antialias_up=True" in message
    assert str(path) in message


def test_wrong_width_and_depth(tmp_path):
    sd = ResnetGenerator(ngf=32, n_blocks=6).state_dict()
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_official_checkpoint(path)  # defaults: ngf=64, n_blocks=9
    message = str(info.value)
    assert "model.1.weight has shape (32, 3, 7, 7): use ngf=32" in message
    assert "6 residual blocks: use n_blocks=6" in message
    net = load_official_checkpoint(path, ngf=32, n_blocks=6)
    assert isinstance(net, ResnetGenerator)


def test_discriminator_mismatch(ref, tmp_path):
    path = _save(tmp_path, ref["cut_D_state_dict"], "latest_net_D.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_official_checkpoint(path, model="cut", which="D", antialias=False)
    message = str(info.value)
    assert "use antialias=True" in message and "use ndf=16" in message
    path = _save(tmp_path, NLayerDiscriminator(ndf=8, n_layers=2).state_dict(), "d2.pth")
    with pytest.raises(CheckpointMismatchError, match="use n_layers=2"):
        load_official_checkpoint(path, which="D", ndf=8)


def test_wrong_kind_and_bad_files(ref, tmp_path):
    d_path = _save(tmp_path, ref["cyclegan_D_state_dict"], "d.pth")
    with pytest.raises(CheckpointMismatchError, match="not a ResNet generator"):
        load_official_checkpoint(d_path, which="G")
    g_path = _save(tmp_path, ref["cyclegan_G_state_dict"], "g.pth")
    with pytest.raises(CheckpointMismatchError, match="not a PatchGAN discriminator"):
        load_official_checkpoint(g_path, which="D")
    wrapped = _save(tmp_path, {"state_dict": ref["cyclegan_G_state_dict"], "epoch": 3}, "w.pth")
    with pytest.raises(CheckpointMismatchError, match="'state_dict' entry"):
        load_official_checkpoint(wrapped)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_official_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="model must be"):
        load_official_checkpoint(g_path, model="pix2pix")


@pytest.mark.parametrize(
    "config",
    [
        {"ngf": 8, "n_blocks": 9, "antialias": False, "antialias_up": False},
        {"ngf": 8, "n_blocks": 6, "antialias": True, "antialias_up": True},
        {"ngf": 8, "n_blocks": 3, "antialias": True, "antialias_up": False},
        {"ngf": 8, "n_blocks": 2, "antialias": False, "antialias_up": True, "use_dropout": True},
        {"ngf": 4, "n_blocks": 2, "padding_type": "zero", "use_dropout": True},
        {"ngf": 4, "n_blocks": 2, "padding_type": "zero"},
        {"ngf": 4, "n_blocks": 0, "input_nc": 1, "output_nc": 2},
        {"ngf": 32, "n_blocks": 9, "separable": True},
    ],
)
def test_infer_generator_config_round_trip(config):
    defaults = {
        "input_nc": 3,
        "output_nc": 3,
        "use_dropout": False,
        "antialias": False,
        "antialias_up": False,
        "padding_type": "reflect",
        "separable": False,
    }
    expected = {**defaults, **config}
    assert infer_generator_config(ResnetGenerator(**expected).state_dict()) == expected


@pytest.mark.parametrize(
    "config",
    [
        {"input_nc": 3, "ndf": 64, "n_layers": 3, "antialias": False},
        {"input_nc": 1, "ndf": 8, "n_layers": 5, "antialias": True},
        {"input_nc": 3, "ndf": 8, "n_layers": 1, "antialias": False},
    ],
)
def test_infer_discriminator_config_round_trip(config):
    with torch.device("meta"):
        d = NLayerDiscriminator(**config)
    assert infer_discriminator_config(d.state_dict()) == config


def test_a_truncated_or_pickled_official_file_is_one_clear_error(tmp_path) -> None:
    import os as _os

    import pytest
    import torch

    from models.official import CheckpointMismatchError, load_official_checkpoint

    good = tmp_path / "ok.pth"
    torch.save({"model.1.weight": torch.zeros(2)}, good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointMismatchError, match=r"trunc\.pth: not a loadable state_dict: it is truncated"):
        load_official_checkpoint(trunc, model="cyclegan")

    class Evil:
        def __reduce__(self):  # would run a shell command if it were unpickled
            return (_os.system, ("echo pwned",))

    pickled = tmp_path / "pickled.pth"
    torch.save({"x": Evil()}, pickled)
    with pytest.raises(CheckpointMismatchError, match=r"pickled\.pth: .*pickled Python objects"):
        load_official_checkpoint(pickled, model="cyclegan")
