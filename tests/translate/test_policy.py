"""Tests for translate.policy: PolicySpec, preprocessing, ONNX and TorchScript policies."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from translate.policy import (
    PRESETS,
    OnnxPolicy,
    PolicySpec,
    PolicySpecError,
    SpecMismatchError,
    TorchScriptPolicy,
    load_policy,
    preprocess,
)

S = 16  # model input size
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")

MEAN = (0.4, 0.5, 0.6)  # per channel, model (BGR) order, 0-1 scale
STD = (0.2, 0.25, 0.3)


# --------------------------------------------------------------------------- tiny policies


class TinyRlGames(nn.Module):
    """rl_games-like: NHWC 0-255 in, (mu, log_std, value) out, scaling inside the network."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.mlp = nn.Sequential(nn.Linear(4 * 7 * 7, 16), nn.ELU())
        self.mu = nn.Linear(16, 2)
        self.sigma = nn.Parameter(torch.full((2,), -0.3))
        self.value = nn.Linear(16, 1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.permute(0, 3, 1, 2) / 255.0
        return self.mlp(torch.relu(self.conv(x)).flatten(1))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(obs)
        mu = self.mu(h)
        return mu, mu * 0 + self.sigma, self.value(h)


class TinyNCHW(nn.Module):
    """rsl_rl / Isaac Lab-like: an already normalised NCHW tensor in, actions out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.mlp = nn.Sequential(nn.Linear(4 * 7 * 7, 16), nn.ELU())
        self.head = nn.Linear(16, 2)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.relu(self.conv(x)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.features(x))) * 1.5


class TinyUint8(TinyRlGames):
    """Takes the raw uint8 NHWC frame and casts inside the graph (a robot-style export)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return super().forward(obs.float())


def _export(net: nn.Module, path: Path, shape: tuple[int, ...], names: list[str], *,
            dynamic: bool = True, dtype: torch.dtype = torch.float32) -> Path:
    x = torch.zeros(shape, dtype=dtype)
    axes = {n: {0: "batch"} for n in ["obs", *names]} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), (x,), str(path), input_names=["obs"], output_names=names,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("policies")
    rl, nchw, u8 = TinyRlGames().eval(), TinyNCHW().eval(), TinyUint8().eval()
    with torch.no_grad():
        rl.mu.bias.copy_(torch.tensor([0.95, -1.0]))  # some actions beyond [-1, 1]: clamp matters
    (root / "nchw").mkdir()
    (root / "fixed").mkdir()
    return {
        "rl": rl,
        "nchw": nchw,
        "u8": u8,
        "rl_onnx": _export(rl, root / "rl.onnx", (1, S, S, 3), ["mu", "log_std", "value"]),
        "rl_fixed": _export(rl, root / "fixed" / "rl1.onnx", (1, S, S, 3),
                            ["mu", "log_std", "value"], dynamic=False),
        "nchw_onnx": _export(nchw, root / "nchw" / "p.onnx", (1, 3, S, S), ["actions"]),
        "u8_onnx": _export(u8, root / "u8.onnx", (1, S, S, 3), ["mu", "log_std", "value"],
                           dtype=torch.uint8),
        "jit": _save_jit(nchw, root / "policy.pt"),
        "root": root,
    }


def _save_jit(net: nn.Module, path: Path) -> Path:
    torch.jit.script(net).save(str(path))
    return path


def _frames(n: int = 5, h: int = S, w: int = S, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _t(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float()


# --------------------------------------------------------------------------- presets vs torch


def test_rl_games_preset_matches_torch(models: dict) -> None:
    frames = _frames()
    policy = load_policy(models["rl_onnx"], "rl_games")
    out = policy.run(frames)
    with torch.no_grad():
        mu, log_std, value = models["rl"](_t(frames))
    np.testing.assert_allclose(out.mu, mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.action, mu.clamp(-1, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(out.outputs["value"], value.numpy(), atol=1e-5)
    assert (np.abs(out.mu) > 1).any()
    assert policy.input_size == (S, S)
    assert policy.action_names == ("left", "right")
    np.testing.assert_allclose(policy.act(frames), out.action)


def test_rsl_rl_preset_bgr_mean_std_matches_torch(models: dict) -> None:
    spec = PolicySpec.preset("rsl_rl", channel_order="BGR", normalize="mean_std", mean=MEAN,
                             std=STD, clip=(-3.0, 3.0))
    frames = _frames(7, seed=1)
    out = load_policy(models["nchw_onnx"], spec, batch_size=3).run(frames)
    x = _t(frames).flip(-1) / 255.0  # BGR, 0-1
    x = ((x - torch.tensor(MEAN)) / torch.tensor(STD)).clamp(-3, 3).permute(0, 3, 1, 2)
    with torch.no_grad():
        want = models["nchw"](x)
    np.testing.assert_allclose(out.mu, want.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.action, want.clamp(-1, 1).numpy(), atol=1e-5)


def test_per_image_mean_onnx_matches_torch(models: dict) -> None:
    spec = PolicySpec.preset("rsl_rl", normalize="per_image_mean")
    frames = _frames(3, seed=2)
    got = load_policy(models["nchw_onnx"], spec).run(frames).mu
    x = _t(frames) / 255.0
    x = (x - x.mean(dim=(1, 2), keepdim=True)).permute(0, 3, 1, 2)  # Isaac Lab's normalisation
    with torch.no_grad():
        np.testing.assert_allclose(got, models["nchw"](x).numpy(), atol=1e-5)


def test_fixed_batch_model_is_fed_frame_by_frame(models: dict) -> None:
    policy = load_policy(models["rl_fixed"], "rl_games")
    assert policy.fixed_batch == 1
    frames = _frames(4, seed=3)
    with torch.no_grad():
        want = models["rl"](_t(frames))[0].numpy()
    np.testing.assert_allclose(policy.run(frames, batch_size=8).mu, want, atol=1e-5)
    assert policy.act(frames[0]).shape == (1, 2)  # one HWC frame is a batch of one


def test_uint8_model(models: dict) -> None:
    frames = _frames(2, seed=4)
    policy = load_policy(models["u8_onnx"], PolicySpec.preset("rl_games", dtype="uint8"))
    with torch.no_grad():
        want = models["u8"](torch.from_numpy(frames))[0].numpy()
    np.testing.assert_allclose(policy.run(frames).mu, want, atol=1e-5)


def test_frames_at_another_size_are_resized(models: dict) -> None:
    frames = _frames(2, 24, 20, seed=5)
    policy = load_policy(models["rl_onnx"], "rl_games")
    resized = F.interpolate(_t(frames).permute(0, 3, 1, 2), size=(S, S), mode="bilinear",
                            align_corners=False).permute(0, 2, 3, 1)
    with torch.no_grad():
        want = models["rl"](resized)[0].numpy()
    np.testing.assert_allclose(policy.run(frames).mu, want, atol=1e-4)


# --------------------------------------------------------------------------- features


def test_features_auto_equal_torch_penultimate(models: dict) -> None:
    frames = _frames(3, seed=6)
    policy = OnnxPolicy(models["rl_onnx"], PolicySpec.preset("rl_games"), features=True)
    out = policy.run(frames, features=True)
    with torch.no_grad():
        want = models["rl"].features(_t(frames)).numpy()
    assert out.features is not None and out.features.shape == (3, 16)
    np.testing.assert_allclose(out.features, want, atol=1e-5)
    assert policy.run(frames).features is None  # only when asked for
    # The named tensor works as an explicit feature_output too.
    named = PolicySpec.preset("rl_games", feature_output=policy.feature_name)
    again = load_policy(models["rl_onnx"], named).run(frames, True).features
    assert again is not None
    np.testing.assert_allclose(again, want, atol=1e-5)


def test_features_through_tanh_head_and_fixed_batch(models: dict) -> None:
    frames = _frames(3, seed=7)
    out = load_policy(models["nchw_onnx"], "rsl_rl").run(frames, features=True)
    with torch.no_grad():
        want = models["nchw"].features(_t(frames).permute(0, 3, 1, 2) / 255.0).numpy()
    assert out.features is not None
    np.testing.assert_allclose(out.features, want, atol=1e-5)
    fixed = load_policy(models["rl_fixed"], "rl_games").run(frames, features=True).features
    assert fixed is not None
    with torch.no_grad():
        np.testing.assert_allclose(fixed, models["rl"].features(_t(frames)).numpy(),
                                   atol=1e-5)


def test_bad_feature_output_names_tensors(models: dict) -> None:
    spec = PolicySpec.preset("rl_games", feature_output="nope")
    with pytest.raises(SpecMismatchError, match=r"feature_output 'nope' is not a tensor.*mu"):
        OnnxPolicy(models["rl_onnx"], spec, features=True)
    policy = OnnxPolicy(models["rl_onnx"], PolicySpec.preset("rl_games", feature_output=None))
    with pytest.raises(PolicySpecError, match="feature_output is null"):
        policy.run(_frames(1), features=True)


# --------------------------------------------------------------------------- mismatches


def test_wrong_input_name(models: dict) -> None:
    spec = PolicySpec.preset("rl_games", input_name="image")
    with pytest.raises(SpecMismatchError) as e:
        load_policy(models["rl_onnx"], spec)
    msg = str(e.value)
    assert "input_name 'image' is not an input" in msg
    assert "'obs' [batch, 16, 16, 3] float32" in msg and "Set input_name: obs" in msg
    assert str(models["rl_onnx"]) in msg


def test_nhwc_spec_on_nchw_model(models: dict) -> None:
    with pytest.raises(SpecMismatchError,
                       match=r"model input 'obs' has shape \[batch, 3, 16, 16\], which looks "
                             r"NCHW; set layout: NCHW"):
        load_policy(models["nchw_onnx"], PolicySpec.preset("rsl_rl", layout="NHWC"))
    with pytest.raises(SpecMismatchError, match="which looks NHWC; set layout: NHWC"):
        load_policy(models["rl_onnx"], PolicySpec.preset("rl_games", layout="NCHW"))


def test_wrong_size(models: dict) -> None:
    with pytest.raises(SpecMismatchError,
                       match=r"spec says height: 32, width: 32; set height: 16 and width: 16"):
        load_policy(models["rl_onnx"], PolicySpec.preset("rl_games", height=32, width=32))


def test_missing_output(models: dict) -> None:
    with pytest.raises(SpecMismatchError) as e:
        load_policy(models["nchw_onnx"], PolicySpec.preset("rsl_rl", action_output="mu"))
    assert "action_output 'mu' is not an output" in str(e.value)
    assert "'actions' [batch, 2] float32. Set action_output: actions" in str(e.value)


def test_wrong_dtype(models: dict) -> None:
    with pytest.raises(SpecMismatchError, match=r"type tensor\(float\).*dtype: uint8; set dtype: "
                                                r"float32"):
        load_policy(models["rl_onnx"], PolicySpec.preset("rl_games", dtype="uint8"))


def test_missing_model_and_spec_files(models: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"policy model not found: .*absent\.onnx"):
        load_policy(tmp_path / "absent.onnx", "rl_games")
    with pytest.raises(PolicySpecError, match=r"no policy_spec\.yaml next to it"):
        load_policy(models["rl_onnx"])
    with pytest.raises(PolicySpecError, match="neither a preset"):
        load_policy(models["rl_onnx"], "rl_gamez")
    odd = tmp_path / "policy.bin"
    odd.write_bytes(b"\0")
    with pytest.raises(PolicySpecError, match="set format: onnx"):
        load_policy(odd, PolicySpec())
    with pytest.raises(ValueError, match="cannot load .*policy.bin as an ONNX model"):
        load_policy(odd, PolicySpec(format="onnx"))


def test_spec_yaml_next_to_model(models: dict) -> None:
    folder = Path(models["nchw_onnx"]).parent
    (folder / "policy_spec.yaml").write_text("preset: rsl_rl\nchannel_order: BGR\n")
    policy = load_policy(models["nchw_onnx"])
    assert policy.spec.channel_order == "BGR" and policy.spec.preset_name == "rsl_rl"
    assert policy.spec.height == S  # taken from the model


# --------------------------------------------------------------------------- TorchScript


def test_torchscript_isaaclab_preset(models: dict) -> None:
    frames = _frames(3, seed=8)
    policy = load_policy(models["jit"], PolicySpec.preset("isaaclab_jit", height=S, width=S))
    assert isinstance(policy, TorchScriptPolicy)
    out = policy.run(frames, features=True)
    x = _t(frames) / 255.0
    x = (x - x.mean(dim=(1, 2), keepdim=True)).permute(0, 3, 1, 2)
    with torch.no_grad():
        want = models["nchw"](x)
        feats = models["nchw"].features(x)
    np.testing.assert_allclose(out.mu, want.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.action, want.clamp(-1, 1).numpy(), atol=1e-5)
    assert out.features is not None
    np.testing.assert_allclose(out.features, feats.numpy(), atol=1e-5)
    assert list(out.outputs) == ["action"]


def test_torchscript_without_features_method(models: dict, caplog: pytest.LogCaptureFixture,
                                             tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 2))
    torch.jit.script(net).save(str(path))
    policy = load_policy(path, "isaaclab_jit")
    assert policy.input_size is None
    with caplog.at_level("WARNING"):
        out = policy.run(_frames(2), features=True)
    assert out.features is None
    assert "no method 'features'" in caplog.text


def test_torchscript_layout_mismatch_fails_at_load(models: dict, tmp_path: Path) -> None:
    spec = PolicySpec.preset("isaaclab_jit", layout="NHWC", height=S, width=S)
    with pytest.raises(SpecMismatchError, match=r"fails on an input built from the spec "
                                                r"\(shape \[1, 16, 16, 3\], layout NHWC"):
        load_policy(models["jit"], spec)
    bogus = tmp_path / "weights.pt"
    torch.save(models["nchw"].state_dict(), bogus)
    with pytest.raises(ValueError, match="not a TorchScript module|cannot load"):
        load_policy(bogus, "isaaclab_jit")


# --------------------------------------------------------------------------- PolicySpec


def test_yaml_round_trip(tmp_path: Path) -> None:
    spec = PolicySpec.preset("rsl_rl", channel_order="BGR", normalize="mean_std", mean=MEAN,
                             std=STD, height=96, width=128, action_names=["left", "right"])
    path = spec.save(tmp_path / "spec.yaml")
    assert PolicySpec.from_yaml(path) == spec
    assert yaml.safe_load(path.read_text())["preset"] == "rsl_rl"
    for name in PRESETS:
        assert PolicySpec.from_dict(PolicySpec.preset(name).to_dict()) == PolicySpec.preset(name)


def test_yaml_preset_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("preset: rl_games\nheight: 224\nwidth: 224\nclamp: null\nlayout: nchw\n")
    spec = PolicySpec.from_yaml(path)
    assert spec == PolicySpec.preset("rl_games", height=224, width=224, clamp=None, layout="NCHW")


def test_spec_bad_keys_and_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("preset: rl_games\nchanel_order: BGR\n")
    with pytest.raises(PolicySpecError) as e:
        PolicySpec.from_yaml(path)
    assert str(path) in str(e.value) and "unknown key(s) 'chanel_order'" in str(e.value)
    assert "valid keys: preset, format, input_name, layout, channel_order" in str(e.value)
    with pytest.raises(PolicySpecError, match="scale must be one of 0-255, 0-1; got '0-256'"):
        PolicySpec.from_dict({"scale": "0-256"})
    with pytest.raises(PolicySpecError, match="layout must be one of NHWC, NCHW; got 'CHW'"):
        PolicySpec.from_dict({"layout": "CHW"}, where="cfg.policy")
    with pytest.raises(PolicySpecError, match="preset must be one of rl_games, rsl_rl"):
        PolicySpec.from_dict({"preset": "sb3"})
    with pytest.raises(PolicySpecError, match="mean_std needs both mean and std"):
        PolicySpec.from_dict({"normalize": "mean_std", "mean": [0, 0, 0]})
    with pytest.raises(PolicySpecError, match="mean must be three numbers"):
        PolicySpec(normalize="mean_std", mean=(0.5, 0.5), std=(1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(PolicySpecError, match="clamp must have lo < hi"):
        PolicySpec.preset("rl_games", clamp=(1, -1))
    with pytest.raises(PolicySpecError, match="give both height and width"):
        PolicySpec(height=224)
    with pytest.raises(PolicySpecError, match="dtype: uint8 needs scale: 0-255"):
        PolicySpec(dtype="uint8", scale="0-1")
    with pytest.raises(PolicySpecError, match="unknown field.*valid fields"):
        PolicySpec.preset("rl_games", colour="RGB")
    with pytest.raises(FileNotFoundError, match="policy spec file not found"):
        PolicySpec.from_yaml(tmp_path / "none.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PolicySpecError, match="empty"):
        PolicySpec.from_yaml(tmp_path / "empty.yaml")


# --------------------------------------------------------------------------- preprocess


def test_preprocess_steps() -> None:
    frames = _frames(2, 4, 6, seed=9)
    base = PolicySpec.preset("rl_games")
    x = preprocess(frames, base)
    assert x.dtype == np.float32 and x.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(x, frames.astype(np.float32))
    bgr = preprocess(frames, base.replace(channel_order="BGR", layout="NCHW", scale="0-1"))
    np.testing.assert_allclose(bgr, frames[..., ::-1].transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    pim = preprocess(frames, PolicySpec.preset("isaaclab_jit"))
    assert pim.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(pim.mean(axis=(2, 3)), 0.0, atol=1e-6)  # per image, per channel
    u8 = preprocess(frames[0], base.replace(dtype="uint8", height=8, width=12))
    assert u8.dtype == np.uint8 and u8.shape == (1, 8, 12, 3)
    clipped = preprocess(frames, base.replace(scale="0-1", clip=(0.2, 0.3)))
    assert clipped.min() >= 0.2 and clipped.max() <= 0.3


def test_preprocess_resize_matches_torch_bilinear() -> None:
    frames = _frames(2, 24, 20, seed=10)
    for size in [(8, 12), (40, 33)]:
        got = preprocess(frames, PolicySpec(height=size[0], width=size[1]))
        want = F.interpolate(_t(frames).permute(0, 3, 1, 2), size=size, mode="bilinear",
                             align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-3)


_SPECS = [
    PolicySpec(channel_order=c, scale=sc, normalize=n, mean=MEAN if n == "mean_std" else None,
               std=STD if n == "mean_std" else None, clip=cl, dtype=d, layout=lay)
    for c in ("RGB", "BGR") for sc in ("0-255", "0-1") for n in ("none", "mean_std", "per_image_mean")
    for cl in (None, (0.1, 0.7)) for d in ("float32", "uint8") for lay in ("NHWC", "NCHW")
    if d == "float32" or (sc, n) == ("0-255", "none")  # uint8 holds raw pixels only
]


def _onnx_preprocess(spec: PolicySpec, frames: np.ndarray) -> np.ndarray:
    """The fused graph's preprocessing ops alone, run by onnxruntime."""
    import onnxruntime as ort

    from translate.fusion import preprocess_model

    model = preprocess_model(spec, (frames.shape[1], frames.shape[2]))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"pixels": frames.astype(np.float32)})[0]


@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: "-".join(
    str(v) for v in (s.channel_order, s.scale, s.normalize, s.clip, s.dtype, s.layout)))
def test_preprocess_ops_numpy_torch_onnx_agree(spec: PolicySpec) -> None:
    """One declaration (PolicySpec.preprocess_ops), three interpreters: the same model input."""
    from translate.torch_policy import TorchPolicy

    frames = _frames(3, 6, 5, seed=11)
    want = preprocess(frames, spec.replace(height=6, width=5))  # the resize op is a no-op
    onnx_x = _onnx_preprocess(spec, frames)
    assert onnx_x.dtype == want.dtype
    np.testing.assert_allclose(onnx_x, want, atol=1e-5)  # a mean sums in another order
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).double().div(127.5).sub(1.0).float()
    got = TorchPolicy(nn.Identity(), spec, "a", None).preprocess(images).numpy()
    assert got.shape == want.shape
    # the torch path skips the uint8 rounding (no gradient): within half a level of it
    np.testing.assert_allclose(got, want.astype(np.float32), atol=0.5 + 1e-3 if spec.dtype == "uint8" else 1e-4)


def test_preprocess_ops_resize_numpy_torch_agree() -> None:
    from translate.torch_policy import TorchPolicy

    frames = _frames(2, 24, 20, seed=12)
    spec = PolicySpec(height=8, width=12, scale="0-1", layout="NCHW", channel_order="BGR")
    assert [op.kind for op in spec.preprocess_ops()] == ["resize", "flip_channels", "div", "layout"]
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).double().div(127.5).sub(1.0).float()
    got = TorchPolicy(nn.Identity(), spec, "a", None).preprocess(images).numpy()
    np.testing.assert_allclose(got, preprocess(frames, spec), atol=1e-5)
    with pytest.raises(ValueError, match="does not resize"):
        _onnx_preprocess(spec, frames)


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8), np.zeros((0, 8, 8, 3), np.uint8)])
def test_preprocess_rejects_bad_frames(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"frames must be RGB uint8|frames is empty"):
        preprocess(bad, PolicySpec())


def test_onnx_path_needs_no_torch(models: dict) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "import numpy as np\n"
        "from translate.policy import load_policy\n"
        f"p = load_policy({str(models['rl_onnx'])!r}, 'rl_games', features=True)\n"
        "out = p.run(np.zeros((2, 16, 16, 3), np.uint8), features=True)\n"
        "print(out.action.shape, out.features.shape)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(2, 2) (2, 16)"
