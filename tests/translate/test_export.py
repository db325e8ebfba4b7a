"""Tests for translate/export.py: ONNX core and robot graphs, metadata, parity, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models.networks import ResnetGenerator
from translate.camera import CameraCorrection, CameraModel, CameraRig
from translate.export import (
    ExportParityError,
    export_from_module,
    export_generator,
    robot_module,
)
from translate.export_format import CORE_FILE, ROBOT_FILE, SUMMARY_FILE, read_export_metadata


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny graphs on a shared 2-core machine: extra threads only add contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(antialias: bool = True, seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)  # PyTorch's default init: outputs span [-1, 1], unlike gain 0.02
    return ResnetGenerator(ngf=8, n_blocks=2, antialias=antialias, antialias_up=antialias).eval()


@pytest.fixture(scope="module")
def fisheye() -> CameraCorrection:
    """Real fisheye 48x48 → sim pinhole 32x32; the sim corners fall outside the real image."""
    rig = CameraRig(
        real=CameraModel.from_fov(48, 48, 120.0, model="fisheye", dist=(0.05, -0.01, 0.002, 0.0)),
        sim=CameraModel.from_fov(32, 32, 130.0),
    )
    corr = CameraCorrection.from_rig(rig)
    assert 0.5 < corr.valid.mean() < 1.0
    return corr


@pytest.fixture(scope="module")
def gen() -> ResnetGenerator:
    return _generator()


@pytest.fixture(scope="module")
def plain_export(gen: ResnetGenerator, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("plain")
    return export_generator(gen, out, image_size=32, model_name="cut", config_hash="0123abcd",
                            checkpoint="runs/x/checkpoints/last.ckpt")


@pytest.fixture(scope="module")
def fisheye_export(
    gen: ResnetGenerator, fisheye: CameraCorrection, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    out = tmp_path_factory.mktemp("fisheye")
    return export_generator(gen, out, camera=fisheye, model_name="cut")


def _run(path: str, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _frames(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (3, 3, 32, 32), (2, 3, 40, 48)])
def test_core_parity(plain_export: dict, gen: ResnetGenerator, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        want = gen(x).numpy()
    got = _run(plain_export["onnx"], x.numpy())
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4
    assert plain_export["parity"]["core_max_abs_diff"] <= 1e-4


def test_core_graph_io(plain_export: dict) -> None:
    model = onnx.load(plain_export["onnx"])
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["real"]
    assert [o.name for o in model.graph.output] == ["sim"]
    assert _dims(model.graph.input[0]) == ["N", 3, "H", "W"]
    assert _dims(model.graph.output[0]) == ["N", 3, "H", "W"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_metadata_round_trip(plain_export: dict) -> None:
    meta = read_export_metadata(plain_export["onnx"])
    assert meta["sim2real.format_version"] == 1
    assert meta["variant"] == "core"
    assert meta["direction"] == "real->sim"
    assert meta["input_size"] == [32, 32] and meta["output_size"] == [32, 32]
    assert meta["value_range"] == [-1, 1]
    assert meta["layout"] == "NCHW" and meta["channel_order"] == "RGB"
    assert meta["model_name"] == "cut" and meta["config_hash"] == "0123abcd"
    assert meta["checkpoint"] == "runs/x/checkpoints/last.ckpt"
    assert meta["camera_correction"] is None
    assert meta["dynamic_size"] is True
    assert meta == plain_export["metadata"]
    # every raw value is a string, structured ones JSON
    raw = {p.key: p.value for p in onnx.load(plain_export["onnx"]).metadata_props}
    assert raw["input_size"] == "[32, 32]" and raw["camera_correction"] == "null"
    summary = json.loads(Path(plain_export["summary"]).read_text())
    assert summary["onnx"] == CORE_FILE and summary["robot_onnx"] == ROBOT_FILE
    assert summary["metadata"] == meta
    assert summary["parity"] == plain_export["parity"]
    _no_temp_files(Path(plain_export["onnx"]).parent)


def test_camera_metadata_rebuilds_the_correction(
    fisheye_export: dict, fisheye: CameraCorrection
) -> None:
    for path in (fisheye_export["onnx"], fisheye_export["robot_onnx"]):
        meta = read_export_metadata(path)
        back = CameraCorrection.from_dict(meta["camera_correction"])
        assert back.to_dict() == fisheye.to_dict()
        np.testing.assert_array_equal(back.grid(), fisheye.grid())
    robot = read_export_metadata(fisheye_export["robot_onnx"])
    assert robot["variant"] == "robot" and robot["correction_in_graph"] is True
    assert robot["input_size"] == [48, 48] and robot["output_size"] == [32, 32]
    assert robot["input_dtype"] == "uint8" and robot["input_layout"] == "NHWC"
    assert robot["input_channel_order"] == "RGB"
    assert read_export_metadata(fisheye_export["onnx"])["input_size"] == [32, 32]


def test_robot_graph_without_correction(plain_export: dict, gen: ResnetGenerator) -> None:
    model = onnx.load(plain_export["robot_onnx"])
    assert _dims(model.graph.input[0]) == ["N", "H", "W", 3]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert "GridSample" not in {n.op_type for n in model.graph.node}
    assert read_export_metadata(plain_export["robot_onnx"])["correction_in_graph"] is False
    frames = _frames(3, 32, 32)
    with torch.no_grad():
        want = _to_uint8(gen(frames.permute(0, 3, 1, 2).float() / 127.5 - 1))
    got = _run(plain_export["robot_onnx"], frames.numpy())
    assert got.dtype == np.uint8 and got.shape == (3, 32, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert plain_export["parity"]["robot_max_abs_diff"] <= 1


def test_robot_graph_with_fisheye(
    fisheye_export: dict, gen: ResnetGenerator, fisheye: CameraCorrection
) -> None:
    model = onnx.load(fisheye_export["robot_onnx"])
    assert "GridSample" in {n.op_type for n in model.graph.node}
    assert _dims(model.graph.input[0]) == ["N", 48, 48, 3]
    assert _dims(model.graph.output[0]) == ["N", 32, 32, 3]
    frames = _frames(3, 48, 48)
    with torch.no_grad():
        corrected = fisheye.apply_torch(frames.permute(0, 3, 1, 2).float())  # [0, 255]
        want = _to_uint8(gen(corrected / 127.5 - 1))
    got = _run(fisheye_export["robot_onnx"], frames.numpy())
    assert got.shape == (3, 32, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_embedded_correction_matches_training_path(
    fisheye: CameraCorrection, tmp_path: Path
) -> None:
    # with an identity translator the robot graph is the lens correction alone: it must give
    # what training saw (CameraCorrection.apply on uint8 frames, black where the lens sees nothing)
    info = export_generator(nn.Identity(), tmp_path, camera=fisheye, input_channel_order="BGR")
    frames = _frames(2, 48, 48, seed=3).numpy()
    got = _run(info["robot_onnx"], np.ascontiguousarray(frames[..., ::-1]))
    want = fisheye.apply(frames)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got[:, ~fisheye.valid] == 0).all()


def test_bgr_input(gen: ResnetGenerator, plain_export: dict, tmp_path: Path) -> None:
    info = export_generator(gen, tmp_path, image_size=32, input_channel_order="BGR")
    assert read_export_metadata(info["robot_onnx"])["input_channel_order"] == "BGR"
    frames = _frames(2, 32, 32, seed=4).numpy()
    rgb_out = _run(plain_export["robot_onnx"], frames)
    bgr_out = _run(info["robot_onnx"], np.ascontiguousarray(frames[..., ::-1]))
    assert np.abs(rgb_out.astype(int) - bgr_out.astype(int)).max() <= 1  # output is RGB


def test_robot_module_matches_reference(gen: ResnetGenerator, fisheye: CameraCorrection) -> None:
    frames = _frames(2, 48, 48, seed=6)
    with torch.no_grad():
        got = robot_module(gen, camera=fisheye)(frames).numpy()
        corrected = fisheye.apply_torch(frames.permute(0, 3, 1, 2).float())
        want = _to_uint8(gen(corrected / 127.5 - 1))
    np.testing.assert_array_equal(got, want)


class _Trainee(nn.Module):
    """A stand-in for CUTModule: netG is the translator, netD must not be exported."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "cut"
        self.netG = _generator(antialias=False, seed=2).train()
        self.netD = nn.Conv2d(3, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.netG(x)

    def deployable_generator(self) -> nn.Module:
        return self.netG


def test_export_from_module_leaves_the_module_alone(tmp_path: Path) -> None:
    module = _Trainee().train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    info = export_from_module(module, tmp_path, image_size=32, robot=False)
    assert module.training and module.netG.training
    assert all(p.requires_grad for p in module.parameters())
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])
    assert info["robot_onnx"] is None and info["parity"]["robot_max_abs_diff"] is None
    assert info["metadata"]["model_name"] == "cut"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = module.netG.eval()(x).numpy()
    assert np.abs(_run(info["onnx"], x.numpy()) - want).max() <= 1e-4


def test_no_robot_removes_a_stale_robot_graph(gen: ResnetGenerator, tmp_path: Path) -> None:
    (tmp_path / ROBOT_FILE).write_bytes(b"old model")
    export_generator(gen, tmp_path, image_size=32, robot=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SUMMARY_FILE, CORE_FILE]


class _BakesItsSize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (int(x.shape[-1]) / 64)  # a Python int: the trace freezes it


def test_size_dependent_trace_falls_back_to_a_fixed_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.warns(torch.jit.TracerWarning):
        info = export_generator(_BakesItsSize(), tmp_path, image_size=32)
    assert "exporting at a fixed 32x32" in caplog.text
    assert info["metadata"]["dynamic_size"] is False
    assert _dims(onnx.load(info["onnx"]).graph.input[0]) == ["N", 3, 32, 32]
    assert _dims(onnx.load(info["robot_onnx"]).graph.input[0]) == ["N", 32, 32, 3]


class _LiesWhenExported(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if torch.onnx.is_in_onnx_export() else x


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(ExportParityError, match="differs from torch"):
        export_generator(_LiesWhenExported(), out, image_size=16)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 30}, "multiples of 4"),
        ({"image_size": (32, 4)}, "multiples of 4"),
        ({"image_size": "32"}, "int or"),
        ({}, "image_size is required"),
        ({"image_size": 32, "opset": 16}, "opset must be an int >= 17"),
        ({"image_size": 32, "input_channel_order": "BRG"}, "input_channel_order"),
        ({"image_size": 32, "extra_metadata": {"direction": "x"}}, "overwrite"),
    ],
)
def test_bad_arguments(
    gen: ResnetGenerator, tmp_path: Path, kwargs: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        export_generator(gen, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / CORE_FILE).exists()


def test_camera_size_mismatch(gen: ResnetGenerator, fisheye: CameraCorrection, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"differs from the camera correction's sim camera 32x32"):
        export_generator(gen, tmp_path, image_size=64, camera=fisheye)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_export_from_a_cuda_module(tmp_path: Path) -> None:
    module = _Trainee().cuda().train()
    info = export_from_module(module, tmp_path, image_size=32)
    assert next(module.parameters()).device.type == "cuda" and module.training
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = module.netG.eval()(x.cuda()).cpu().numpy()
    assert np.abs(_run(info["onnx"], x.numpy()) - want).max() <= 1e-4


def test_export_refuses_a_generator_with_non_finite_weights(tmp_path: Path) -> None:
    g = _generator()
    with torch.no_grad():
        next(g.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ExportParityError, match=r"non-finite weights \(.*nothing was written"):
        export_generator(g, tmp_path / "nan", image_size=32)
    assert not (tmp_path / "nan" / CORE_FILE).exists()


def test_colour_match_gain_travels_in_the_onnx(tmp_path: Path) -> None:
    """A generator with a fitted white-balance gain (model.colour_match) exports it: onnxruntime
    matches torch, and the graph starts with the gain's Add / Mul."""
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=1, colour_match=True).eval()
    assert g.colour is not None
    g.colour.fit(torch.tensor([0.2, -0.1, -0.3]), torch.tensor([0.1, 0.1, 0.1]))
    info = export_generator(g, tmp_path, image_size=32, model_name="cyclegan")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        want = g(x).numpy()
    assert np.abs(_run(info["onnx"], x.numpy()) - want).max() <= 1e-4
    ops = [n.op_type for n in onnx.load(info["onnx"]).graph.node][:3]
    assert {"Add", "Mul"} <= set(ops), ops
