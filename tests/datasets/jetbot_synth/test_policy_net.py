"""Tests for datasets.jetbot_synth.policy_net: the reference rl_games network and its seed-style ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx
from translate.policy import PolicySpec, load_policy

SIZE = 64  # smallest comfortable size for the rl_games conv stack; the seed uses 224


def _frames(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def net() -> RlGamesJetbotNet:
    torch.manual_seed(0)
    net = RlGamesJetbotNet(SIZE).eval()
    with torch.no_grad():
        net.sigma.fill_(-0.5)
        net.mu.bias.copy_(torch.tensor([1.1, -1.1]))  # some mu outside [-1, 1]: clamp exercised
    return net


@pytest.fixture(scope="module")
def exported(net: RlGamesJetbotNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.onnx"
    return export_rl_games_onnx(net, path, height=SIZE, width=SIZE)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [36, 64, 128])
def test_net_shapes(size: int, batch: int) -> None:
    net = RlGamesJetbotNet(size)
    obs = torch.rand(batch, size, size, 3) * 255
    mu, log_std, value = net(obs)
    assert mu.shape == log_std.shape == (batch, 2)
    assert value.shape == (batch, 1)
    assert net.features(obs).shape == (batch, 512)
    # Fixed sigma: log_std is the parameter broadcast over the batch, as rl_games returns it.
    assert torch.equal(log_std, net.sigma.expand(batch, 2))


def test_net_architecture_matches_seed_at_224() -> None:
    net = RlGamesJetbotNet(224)
    convs = [m for m in net.actor_cnn if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 8, 4), (64, 4, 2), (64, 3, 1),
    ]
    assert net.actor_mlp[0].in_features == 64 * 24 * 24
    assert isinstance(net.actor_mlp[1], torch.nn.ELU)
    assert set(dict(net.named_parameters())) >= {"sigma", "mu.weight", "value.weight"}


def test_net_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="image_size must be >= 36"):
        RlGamesJetbotNet(32)
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\); got \(1, 3, 64, 64\)"):
        RlGamesJetbotNet(64)(torch.zeros(1, 3, 64, 64))


def test_export_matches_seed_io(exported: Path) -> None:
    model = onnx.load(str(exported))
    (inp,) = model.graph.input
    assert inp.name == "obs"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", SIZE, SIZE, 3]  # NHWC, dynamic batch
    assert [o.name for o in model.graph.output] == ["mu", "log_std", "value"]
    assert model.opset_import[0].version == 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["policy_preset"] == "rl_games" and meta["input_layout"] == "NHWC"
    spec = PolicySpec.from_yaml(exported.parent / "policy_spec.yaml")
    assert spec == PolicySpec.preset("rl_games", height=SIZE, width=SIZE)


def test_export_parity_and_load_policy(net: RlGamesJetbotNet, exported: Path) -> None:
    frames = _frames(5)
    policy = load_policy(exported)  # reads the policy_spec.yaml written next to it
    out = policy.run(frames)
    with torch.no_grad():
        mu, log_std, value = net(torch.from_numpy(frames).float())
    np.testing.assert_allclose(out.mu, mu.numpy(), atol=1e-4)
    np.testing.assert_allclose(out.outputs["log_std"], log_std.numpy(), atol=1e-4)
    np.testing.assert_allclose(out.outputs["value"], value.numpy(), atol=1e-4)
    np.testing.assert_allclose(out.action, np.clip(mu.numpy(), -1, 1), atol=1e-4)
    assert np.abs(mu.numpy()).max() > 1  # the clamp did something
    assert policy.input_size == (SIZE, SIZE) and policy.action_names == ("left", "right")


def test_export_features_auto_detected(net: RlGamesJetbotNet, exported: Path) -> None:
    policy = load_policy(exported, features=True)
    frames = _frames(3, seed=1)
    out = policy.run(frames, features=True)
    with torch.no_grad():
        want = net.features(torch.from_numpy(frames).float()).numpy()
    assert out.features is not None and out.features.shape == (3, 512)
    np.testing.assert_allclose(out.features, want, atol=1e-4)


def test_export_fixed_batch_like_the_seed(net: RlGamesJetbotNet, tmp_path: Path) -> None:
    path = export_rl_games_onnx(net, tmp_path / "seed.onnx", height=SIZE, width=SIZE,
                                dynamic_batch=False)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, SIZE, SIZE, 3]
    frames = _frames(3, seed=2)
    with torch.no_grad():
        mu = net(torch.from_numpy(frames).float())[0].numpy()
    np.testing.assert_allclose(load_policy(path).run(frames).mu, mu, atol=1e-4)


def test_export_rejects_wrong_size(net: RlGamesJetbotNet, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size 64"):
        export_rl_games_onnx(net, tmp_path / "p.onnx", height=128, width=128)
    assert not list(tmp_path.iterdir())
