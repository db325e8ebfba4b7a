"""Tests for translate.fusion: the fused translator + policy graph acts as translator-then-policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from translate.export_format import read_export_metadata
from translate.fusion import fuse_translator_and_policy
from translate.policy import PolicySpec, load_policy
from translate.runtime import FusedPolicy, Translator


def _linear_policy(path: Path, layout: str, dtype: str, scale: float, size: int = 16) -> Path:
    """A tiny ONNX policy: obs → (Cast) → Flatten → Gemm → mu (N, 2)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape: list[Any] = ["N", 3, size, size] if layout == "NCHW" else ["N", size, size, 3]
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    nodes, cur = [], "obs"
    if dtype == "uint8":
        nodes.append(helper.make_node("Cast", ["obs"], ["obs_f"], to=TensorProto.FLOAT))
        cur = "obs_f"
    nodes += [helper.make_node("Flatten", [cur], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "W", "b"], ["mu"])]
    rng = np.random.default_rng(3)
    w = (rng.normal(0, 1, (3 * size * size, 2)) * scale).astype(np.float32)
    graph = helper.make_graph(
        nodes, "policy", [helper.make_tensor_value_info("obs", elem, shape)],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(w, "W"),
                     numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


SPECS: dict[str, dict[str, Any]] = {
    "rl_games_like": dict(layout="NHWC", scale="0-255"),
    "nchw_bgr_01": dict(layout="NCHW", channel_order="BGR", scale="0-1"),
    "mean_std_clip": dict(layout="NCHW", scale="0-1", normalize="mean_std",
                          mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), clip=(-1.5, 1.5)),
    "per_image_mean": dict(layout="NHWC", scale="0-1", normalize="per_image_mean"),
    "uint8": dict(layout="NHWC", dtype="uint8", scale="0-255"),
}


@pytest.mark.parametrize("variant", ["robot", "core"])
@pytest.mark.parametrize("name", list(SPECS))
def test_fused_graph_gives_the_same_actions(
    exported: dict[str, Any], frames: np.ndarray, tmp_path: Path, variant: str, name: str
) -> None:
    fields: dict[str, Any] = {"dtype": "float32", "channel_order": "RGB", "normalize": "none",
                              **SPECS[name]}
    w_scale = 2e-4 if fields["scale"] == "0-255" else 0.05
    policy_path = _linear_policy(tmp_path / "p.onnx", fields["layout"], fields["dtype"], w_scale)
    spec = PolicySpec(format="onnx", input_name="obs", action_output="mu", clamp=(-1.0, 1.0),
                      feature_output=None, **fields)
    src = exported["robot_onnx"] if variant == "robot" else exported["onnx"]
    out = fuse_translator_and_policy(src, policy_path, spec, tmp_path / "fused.onnx")
    fused = FusedPolicy.from_onnx(out, input_channel_order="BGR")
    assert fused.meta["variant"] == "fused" and fused.meta["translator_variant"] == variant
    assert fused.input_size == (20, 24) and fused.action_output == "action"
    assert fused.correction_in_graph == (variant == "robot")
    in_shape = fused.session.get_inputs()[0].shape
    assert in_shape[1:] == ([20, 24, 3] if variant == "robot" else [16, 16, 3])
    outs = fused.run(frames)
    assert set(outs) == {"mu", "action"}
    translator = Translator.from_onnx(src, input_channel_order="BGR")
    policy = load_policy(policy_path, spec)
    want = policy.run(translator.translate(frames))
    np.testing.assert_allclose(outs["mu"], want.mu, atol=1e-4)
    np.testing.assert_allclose(fused.act(frames), want.action, atol=1e-4)
    assert np.abs(want.mu).max() > 0.05  # the check is not vacuous
    with pytest.raises(ValueError, match="not a translator"):
        Translator.from_onnx(out)


def test_fuse_errors(exported: dict[str, Any], tmp_path: Path) -> None:
    from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx

    torch.manual_seed(0)
    good = export_rl_games_onnx(RlGamesJetbotNet(40), tmp_path / "a" / "policy.onnx",
                                height=40, width=40)
    with pytest.raises(ValueError, match=r"takes 40x40 \(WxH\).*gives 16x16"):
        fuse_translator_and_policy(exported["robot_onnx"], good, None, tmp_path / "f.onnx")
    assert not (tmp_path / "f.onnx").exists()
    with pytest.raises(ValueError, match="sim2real.format_version"):
        read_export_metadata(good)


def test_the_runtime_names_the_fusion_command(capsys: pytest.CaptureFixture) -> None:
    from translate.runtime import main

    with pytest.raises(SystemExit) as exc:
        main(["fuse", "t.onnx", "p.onnx", "out.onnx"])
    assert exc.value.code == 2
    assert "python -m translate.fusion TRANSLATOR POLICY OUT" in capsys.readouterr().err
