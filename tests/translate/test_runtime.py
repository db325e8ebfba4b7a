"""Tests for translate.runtime: onnxruntime vs torch, providers, import without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.networks import ResnetGenerator
from translate.camera import CameraCorrection
from translate.export import export_generator, robot_module
from translate.policy import PolicySpec, preprocess
from translate.runtime import Translator, default_providers

REPO = Path(__file__).resolve().parents[2]


def _torch_translate(gen: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(rgb).float().permute(0, 3, 1, 2) / 127.5 - 1.0
        y = ((gen(x) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).numpy()


def test_core_graph_equals_torch_on_corrected_frames(
    exported: dict[str, Any], gen: torch.nn.Module, corr: CameraCorrection, frames: np.ndarray
) -> None:
    t = Translator.from_onnx(exported["onnx"], input_channel_order="BGR")
    assert t.variant == "core" and t.input_size == (20, 24) and t.output_size == (16, 16)
    got = t.translate(frames)
    want = _torch_translate(gen, corr.apply(np.ascontiguousarray(frames[..., ::-1])))
    assert got.shape == (3, 16, 16, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1
    single = t.translate(frames[0])
    assert single.shape == (16, 16, 3) and np.array_equal(single, got[0])


def test_robot_graph_equals_torch_robot_module(
    exported: dict[str, Any], gen: torch.nn.Module, corr: CameraCorrection, frames: np.ndarray
) -> None:
    t = Translator.from_onnx(exported["robot_onnx"], input_channel_order="BGR")
    assert t.variant == "robot" and t.correction_in_graph and t.correction is None
    got = t.translate(frames)
    with torch.no_grad():
        want = robot_module(gen, camera=corr, input_channel_order="BGR")(
            torch.from_numpy(frames)).numpy()
    assert np.abs(got.astype(int) - want).max() <= 1
    # declaring RGB frames gives the same result on the reversed frames
    t_rgb = Translator.from_onnx(exported["robot_onnx"], input_channel_order="RGB")
    assert np.array_equal(t_rgb.translate(np.ascontiguousarray(frames[..., ::-1])), got)


def test_to_policy_and_errors(exported: dict[str, Any], frames: np.ndarray) -> None:
    t = Translator.from_onnx(exported["onnx"], input_channel_order="BGR")
    spec = PolicySpec.preset("rsl_rl", height=16, width=16)
    x = t.to_policy(frames, spec)
    assert x.shape == (3, 3, 16, 16)
    np.testing.assert_array_equal(x, preprocess(t.translate(frames), spec))
    with pytest.raises(ValueError, match=r"frames are 16x16 \(WxH\) but the graph expects 24x20"):
        t.translate(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        t.translate(np.zeros((20, 24, 3), np.float32))
    with pytest.raises(ValueError, match="input_channel_order"):
        Translator.from_onnx(exported["onnx"], input_channel_order="RGBA")
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        Translator.from_onnx("nope.onnx")


def test_plain_dynamic_export_any_size(tmp_path: Path, gen: torch.nn.Module) -> None:
    info = export_generator(gen, tmp_path, image_size=16)
    t = Translator.from_onnx(info["robot_onnx"])
    assert t.input_size is None and t.correction is None
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = t.translate(img)
    assert out.shape == (24, 32, 3)
    assert np.abs(out.astype(int) - _torch_translate(gen, img[None])[0]).max() <= 1
    core = Translator.from_onnx(info["onnx"])
    assert np.abs(core.translate(img).astype(int) - out).max() <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        t.translate(np.zeros((18, 16, 3), np.uint8))


def test_providers(exported: dict[str, Any], tmp_path: Path) -> None:
    have = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    provs = default_providers(available=have, fp16=True, trt_cache_dir=tmp_path)
    assert [p if isinstance(p, str) else p[0] for p in provs] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = provs[0]
    assert isinstance(trt, tuple) and trt[1]["trt_fp16_enable"] is True
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path)
    assert default_providers(available=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    t = Translator.from_onnx(exported["onnx"])
    assert t.provider == "CPUExecutionProvider" and t.providers[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="NoSuchExecutionProvider.*not available"):
        Translator.from_onnx(exported["onnx"], providers=["NoSuchExecutionProvider"])


def test_runtime_imports_and_runs_without_torch(exported: dict[str, Any], tmp_path: Path) -> None:
    from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx

    torch.manual_seed(0)
    policy = export_rl_games_onnx(RlGamesJetbotNet(40), tmp_path / "policy.onnx", height=40,
                                  width=40)
    code = textwrap.dedent(f"""
        import sys
        class Block:
            BLOCKED = ("torch", "onnx", "models", "datasets", "lightning", "cv2")
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in self.BLOCKED:
                    raise ImportError(f"blocked: {{name}}")
                return None
        sys.meta_path.insert(0, Block())
        import numpy as np
        import translate.runtime, translate.pipeline, translate.sources, translate.teleop
        from translate.runtime import Translator
        from translate.policy import load_policy
        t = Translator.from_onnx({exported['robot_onnx']!r}, input_channel_order="BGR")
        out = t.translate(np.zeros((20, 24, 3), np.uint8))
        p = load_policy({str(policy)!r})
        a = p.act(np.zeros((40, 40, 3), np.uint8))
        bad = [m for m in ("torch", "onnx", "cv2") if m in sys.modules]
        print("OK", out.shape, a.shape, t.provider, bad)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "OK (16, 16, 3) (1, 2) CPUExecutionProvider []" in res.stdout



def test_non_finite_translation_is_an_error_not_black_frames() -> None:
    from translate.runtime import NonFiniteTranslationError, unit_to_uint8

    y = np.zeros((2, 3, 4, 4), np.float32)
    assert unit_to_uint8(y).shape == (2, 4, 4, 3) and int(unit_to_uint8(y)[0, 0, 0, 0]) == 128
    y[1, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteTranslationError, match=r"translator x\.onnx returned 1 non-finite values in 2 frame"):
        unit_to_uint8(y, what="translator x.onnx")


def test_torch_translator_with_nan_weights_stops_the_evaluation() -> None:
    import torch

    from translate.eval_translators import TorchModuleTranslator
    from translate.runtime import NonFiniteTranslationError

    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    t = TorchModuleTranslator(net, "nan-translator")
    with pytest.raises(NonFiniteTranslationError, match="nan-translator"):
        t(np.zeros((1, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("dtype,rank", [(torch.float64, 4), (torch.int32, 4), (torch.float32, 3)])
def test_a_translator_onnx_with_a_wrong_input_is_refused_naming_the_file(tmp_path: Path, dtype: torch.dtype,
                                                                        rank: int) -> None:
    from translate.runtime import Translator

    class Ident(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1

    import onnx

    shape = (1, 3, 8, 8) if rank == 4 else (3, 8, 8)
    path = tmp_path / "odd.onnx"
    torch.onnx.export(Ident(), (torch.zeros(shape, dtype=dtype),), str(path), input_names=["real"],
                      output_names=["sim"], opset_version=17, dynamo=False)
    torch.manual_seed(0)  # a real export's metadata on the odd graph: only its input is wrong
    info = export_generator(ResnetGenerator(ngf=8, n_blocks=1), tmp_path / "real", image_size=8, robot=False)
    props = {p.key: p.value for p in onnx.load(info["onnx"]).metadata_props}
    odd = onnx.load(path)
    onnx.helper.set_model_props(odd, props)
    onnx.save(odd, path)
    with pytest.raises(ValueError, match=r"odd\.onnx: its input 'real' is tensor\(.*\) of rank \d; a translator takes"):
        Translator(path)
