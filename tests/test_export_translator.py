"""Tests for export_translator.py: Lightning and official checkpoints to ONNX, and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export_translator import main
from models.checkpointing import checkpoint_kind
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule
from models.networks import ResnetGenerator
from translate.camera import CameraModel, CameraRig
from translate.export_format import ROBOT_FILE, read_export_metadata

TINY_G = {"ngf": 8, "n_blocks": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _core_out(path: Path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"real": x.numpy()})[0]


def _x(h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _randomize(net: torch.nn.Module) -> None:
    # the modules' GAN init (gain 0.02) makes near-constant outputs; parity needs real signal
    torch.manual_seed(7)
    for p in net.parameters():
        p.data.uniform_(-0.3, 0.3)


def _lightning_ckpt(module: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def _cyclegan_ckpt(path: Path, **extra: object) -> tuple[CycleGANModule, Path]:
    m = CycleGANModule(generator=TINY_G, discriminator={"ndf": 8}, name="cyclegan")
    _randomize(m.netG_A)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), **extra}, path)
    return m, path


_RIG = CameraRig(CameraModel.from_fov(48, 40, 150.0, model="fisheye"), CameraModel.from_fov(32, 32, 100.0))


def test_official_cyclegan_with_module_prefix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator(**TINY_G).eval()
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save({f"module.{k}": v for k, v in g.state_dict().items()}, pth)
    out = tmp_path / "export"
    assert main(["--official", str(pth), "--model", "cyclegan", "--out", str(out),
                 "--size", "32"]) == 0
    assert "translator.onnx" in capsys.readouterr().out
    with torch.no_grad():
        want = g(_x()).numpy()
    assert np.abs(_core_out(out / "translator.onnx", _x()) - want).max() <= 1e-4
    meta = read_export_metadata(out / "translator.onnx")
    assert meta["model_name"] == "cyclegan" and meta["checkpoint"] == str(pth)
    assert len(meta["checkpoint_sha256"]) == 64
    assert (out / ROBOT_FILE).is_file()
    _no_temp_files(out)


def test_official_cut_antialiased_bgr_no_robot_option(tmp_path: Path) -> None:
    torch.manual_seed(1)
    g = ResnetGenerator(**TINY_G, antialias=True, antialias_up=True).eval()
    assert any(k.endswith(".filt") for k in g.state_dict())
    pth = tmp_path / "latest_net_G.pth"
    torch.save(g.state_dict(), pth)
    out = tmp_path / "export"
    assert main(["--official", str(pth), "--model", "cut", "--out", str(out), "--size", "32",
                 "40", "--bgr", "--ngf", "8", "--n-blocks", "2"]) == 0
    with torch.no_grad():
        want = g(_x(32, 40)).numpy()
    assert np.abs(_core_out(out / "translator.onnx", _x(32, 40)) - want).max() <= 1e-4
    meta = read_export_metadata(out / ROBOT_FILE)
    assert meta["input_channel_order"] == "BGR" and meta["input_size"] == [32, 40]
    assert main(["--official", str(pth), "--model", "cut", "--out", str(out), "--size", "32",
                 "--no-robot"]) == 0
    assert not (out / ROBOT_FILE).exists()


def test_lightning_cut_checkpoint(tmp_path: Path) -> None:
    m = CUTModule(generator=TINY_G, discriminator={"ndf": 8}, num_patches=16)
    _randomize(m.netG)
    ckpt = _lightning_ckpt(m, tmp_path / "last.ckpt")
    assert checkpoint_kind(torch.load(ckpt, weights_only=True)) == "cut"
    out = tmp_path / "export"
    assert main(["--ckpt", str(ckpt), "--out", str(out), "--size", "32",
                 "--config-hash", "0123abcd"]) == 0
    with torch.no_grad():
        want = m.eval()(_x()).numpy()
    assert np.abs(_core_out(out / "translator.onnx", _x()) - want).max() <= 1e-4
    meta = read_export_metadata(out / "translator.onnx")
    assert meta["model_name"] == "cut" and meta["config_hash"] == "0123abcd"
    _no_temp_files(out)


def test_lightning_cyclegan_exports_g_a_with_camera(tmp_path: Path) -> None:
    m = CycleGANModule(generator=TINY_G, discriminator={"ndf": 8}, name="cyclegan")
    _randomize(m.netG_A)
    _randomize(m.netG_B)
    hp = dict(m.hparams)
    hp["_target_"] = "models.cyclegan.CycleGANModule"  # as if instantiated from the config
    ckpt = tmp_path / "cyclegan.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": hp}, ckpt)
    rig = CameraRig(CameraModel.from_fov(48, 40, 150.0, model="fisheye"),
                    CameraModel.from_fov(32, 32, 100.0))
    cam = rig.save(tmp_path / "camera.yaml")
    out = tmp_path / "export"
    assert main(["--ckpt", str(ckpt), "--out", str(out), "--camera", str(cam)]) == 0  # size: sim
    with torch.no_grad():
        want = m.netG_A.eval()(_x()).numpy()
    assert np.abs(_core_out(out / "translator.onnx", _x()) - want).max() <= 1e-4
    robot = read_export_metadata(out / ROBOT_FILE)
    assert robot["correction_in_graph"] is True and robot["input_size"] == [40, 48]
    assert robot["camera_correction"] == {"real": rig.real.to_dict(), "sim": rig.sim.to_dict()}


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope.ckpt"
    assert main(["--ckpt", str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and str(missing) in err


def test_unknown_checkpoint_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}, "hyper_parameters": {}}, ckpt)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "unknown checkpoint kind" in err and "['encoder']" in err and str(ckpt) in err


def test_official_file_given_as_lightning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(ResnetGenerator(**TINY_G).state_dict(), pth)
    assert main(["--ckpt", str(pth), "--out", str(tmp_path / "out")]) == 1
    assert "use --official PATH --model cyclegan|cut" in capsys.readouterr().err


def test_size_not_multiple_of_4(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(ResnetGenerator(**TINY_G).state_dict(), pth)
    out = tmp_path / "out"
    assert main(["--official", str(pth), "--model", "cyclegan", "--out", str(out),
                 "--size", "30"]) == 1
    assert "multiples of 4" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_official_needs_model_and_options_match(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(ResnetGenerator(**TINY_G).state_dict(), pth)
    out = str(tmp_path / "out")
    assert main(["--official", str(pth), "--out", out]) == 1
    assert "--model cyclegan or cut" in capsys.readouterr().err
    assert main(["--official", str(pth), "--model", "cyclegan", "--ngf", "16", "--out", out]) == 1
    assert "use ngf=8" in capsys.readouterr().err


def test_export_keeps_the_correction_the_run_trained_with(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from translate.camera import CameraCorrection

    _, ckpt = _cyclegan_ckpt(tmp_path / "a.ckpt", camera_correction=CameraCorrection(_RIG.real, _RIG.sim).to_dict())
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert "lens correction: the one the run trained with" in out.out and "warning" not in out.err
    robot = read_export_metadata(tmp_path / "a" / ROBOT_FILE)
    assert robot["camera_correction"] == {"real": _RIG.real.to_dict(), "sim": _RIG.sim.to_dict()}
    assert robot["input_size"] == [40, 48]
    # a --camera that differs from the trained one wins, with a one-line warning
    other = CameraRig(CameraModel.from_fov(48, 40, 140.0, model="fisheye"), _RIG.sim).save(tmp_path / "other.yaml")
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "b"), "--camera", str(other)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from the lens correction the run trained with" in err[0]


def test_export_of_a_run_without_correction_or_an_old_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, ckpt = _cyclegan_ckpt(tmp_path / "none.ckpt", camera_correction=None)
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "n"), "--size", "32"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert read_export_metadata(tmp_path / "n" / ROBOT_FILE)["camera_correction"] is None
    _, old = _cyclegan_ckpt(tmp_path / "old.ckpt")  # written before checkpoints kept it
    assert main(["--ckpt", str(old), "--out", str(tmp_path / "o"), "--size", "32"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export_translator.py: warning:") and "--camera" in err[0]
    assert "error: error" not in err[0]


def test_export_of_an_old_checkpoint_reads_the_run_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "my_data"
    data.mkdir()
    _RIG.save(data / "camera.yaml")
    run = tmp_path / "runs" / "r"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(f"data:\n  root: {data}\n  camera_yaml: auto\n")
    _, ckpt = _cyclegan_ckpt(run / "checkpoints" / "last.ckpt")
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "e")]) == 0
    assert "from " + str(run / ".hydra" / "config.yaml") in capsys.readouterr().out
    assert read_export_metadata(tmp_path / "e" / ROBOT_FILE)["camera_correction"]["real"] == _RIG.real.to_dict()


def test_checkpoints_record_the_training_correction(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from translate.camera import CameraCorrection

    m = CycleGANModule(generator=TINY_G, discriminator={"ndf": 8}, name="cyclegan")
    ck: dict = {}
    m.on_save_checkpoint(ck)
    assert "camera_correction" not in ck  # no trainer: nothing to say
    corr = CameraCorrection(_RIG.real, _RIG.sim)
    for dm_corr, want in ((corr, corr.to_dict()), (None, None)):
        object.__setattr__(m, "_trainer", SimpleNamespace(datamodule=SimpleNamespace(correction=dm_corr)))
        ck = {}
        m.on_save_checkpoint(ck)
        assert ck["camera_correction"] == want
