"""Tests for translate.torch_policy: the differentiable frozen policy equals the onnxruntime one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx
from translate.policy import PolicySpec, load_policy
from translate.torch_policy import UnsupportedOnnxOpError, load_torch_policy


@pytest.fixture(scope="module")
def rl_games_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = RlGamesJetbotNet(image_size=48)
    path = tmp_path_factory.mktemp("pol") / "policy.onnx"
    export_rl_games_onnx(net, path, height=48, width=48)
    return path


def _to_model_images(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_onnx_interpreter_matches_onnxruntime(rl_games_onnx: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    ref = load_policy(rl_games_onnx).run(frames, features=True)
    tp = load_torch_policy(rl_games_onnx)
    out = tp(_to_model_images(frames))
    np.testing.assert_allclose(out.action.numpy(), ref.action, atol=1e-4)
    np.testing.assert_allclose(out.mu.numpy(), ref.mu, atol=1e-4)
    assert out.features is not None and ref.features is not None
    np.testing.assert_allclose(out.features.numpy(), ref.features, atol=1e-4)


@pytest.mark.parametrize("overrides", [
    {"channel_order": "BGR"},
    {"scale": "0-1"},
    {"normalize": "mean_std", "mean": (120.0, 110.0, 100.0), "std": (60.0, 50.0, 40.0)},
    {"normalize": "per_image_mean"},
    {"clip": (10.0, 200.0)},
])
def test_preprocessing_matches_numpy(rl_games_onnx: Path, overrides: dict) -> None:
    spec = PolicySpec.preset("rl_games", **overrides)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    ref = load_policy(rl_games_onnx, spec).act(frames)
    got = load_torch_policy(rl_games_onnx, spec)(_to_model_images(frames)).action
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)


def test_resize_to_policy_size(rl_games_onnx: Path) -> None:
    spec = PolicySpec.preset("rl_games", height=48, width=48)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ref = load_policy(rl_games_onnx, spec).act(frames)
    got = load_torch_policy(rl_games_onnx, spec)(_to_model_images(frames)).action
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-3)


def test_gradient_reaches_input_not_policy(rl_games_onnx: Path) -> None:
    tp = load_torch_policy(rl_games_onnx)
    x = torch.zeros(2, 3, 48, 48, requires_grad=True)
    tp(x).mu.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in tp.parameters())
    assert all(not b.requires_grad for b in tp.buffers())


def test_torchscript_policy(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

        @torch.jit.export
        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(dim=(2, 3))

    path = tmp_path / "p.pt"
    torch.jit.script(Net()).save(str(path))
    spec = PolicySpec.preset("isaaclab_jit", height=16, width=16)
    frames = np.random.default_rng(3).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ref = load_policy(path, spec).act(frames)
    out = load_torch_policy(path, spec)(_to_model_images(frames))
    np.testing.assert_allclose(out.action.detach().numpy(), ref, atol=1e-5)
    assert out.features is not None and out.features.shape == (2, 4)


def test_unsupported_op_named(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Erf", ["obs"], ["mu"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, [1, 4, 4, 3])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnsupportedOnnxOpError, match="Erf"):
        load_torch_policy(path, PolicySpec.preset("rl_games", feature_output=None, clamp=None))


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        load_torch_policy(tmp_path / "nope.onnx", "rl_games")


def test_a_preset_without_a_size_takes_the_models_and_resizes(rl_games_onnx: Path) -> None:
    """policy.spec=rl_games (no height/width) in training on crops smaller than the policy's input:
    the torch policy resizes them as the onnxruntime one does (it fed them as they were and failed
    in the policy's first Linear layer)."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    tp = load_torch_policy(rl_games_onnx, "rl_games")
    assert (tp.spec.height, tp.spec.width) == (48, 48)
    ref = load_policy(rl_games_onnx, "rl_games").act(frames)
    np.testing.assert_allclose(tp(_to_model_images(frames)).action.numpy(), ref, atol=2e-3)
