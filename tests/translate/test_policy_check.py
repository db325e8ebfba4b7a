"""Tests for translate.policy_check: a wrong policy spec is found on sim frames alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from translate.policy import PolicySpec
from translate.policy_check import check_policy_contract, main, spec_alternatives


class _ColourPolicy(nn.Module):
    """Turns towards red: mu = clamp(3 (m_R − m_B), −1, 1) and its negative, from NHWC 0–255 frames."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = obs.mean(dim=(1, 2)) / 255.0  # (N, 3)
        d = 3.0 * (m[:, 0:1] - m[:, 2:3])
        mu = torch.cat([d, -d], dim=1).clamp(-1, 1)
        return mu, torch.zeros_like(mu), d


@pytest.fixture(scope="module")
def colour_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.onnx"
    torch.onnx.export(_ColourPolicy(), (torch.zeros(1, 16, 16, 3),), str(path), input_names=["obs"],
                      output_names=["mu", "log_std", "value"], dynamic_axes={"obs": {0: "N"}},
                      opset_version=17, dynamo=False)
    return path


def _frames() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    frames[:12, ..., 0] //= 3  # half bluish, half reddish: varied turns
    frames[12:, ..., 2] //= 3
    m = frames.reshape(24, -1, 3).mean(1) / 255.0
    d = np.clip(3 * (m[:, 0] - m[:, 2]), -1, 1)
    return frames, np.stack([d, -d], 1)


def _spec(**kw: object) -> PolicySpec:
    return PolicySpec.preset("rl_games", height=16, width=16, feature_output=None, **kw)


def test_the_right_spec_passes(colour_policy: Path) -> None:
    frames, expert = _frames()
    res = check_policy_contract(colour_policy, _spec(), frames, expert)
    assert res.warnings == []
    assert res.rows[0]["spec"] == "as configured" and res.rows[0]["action_mae"] < 1e-4


@pytest.mark.parametrize("wrong,fix", [({"scale": "0-1"}, "scale: 0-255"),
                                       ({"channel_order": "BGR"}, "channel_order: RGB")])
def test_a_spec_wrong_for_every_stage_is_named(colour_policy: Path, wrong: dict, fix: str) -> None:
    frames, expert = _frames()
    res = check_policy_contract(colour_policy, _spec(**wrong), frames, expert)
    assert any(f"set {fix}" in w for w in res.warnings), res.warnings
    no_expert = check_policy_contract(colour_policy, _spec(**wrong), frames, None)
    if "scale" in wrong:  # without actions: the actions collapse, and the fix is named
        assert any("degenerate" in w for w in no_expert.warnings)
        assert any(f"try {fix}" in w for w in no_expert.warnings)


def test_alternatives_are_one_setting_away() -> None:
    labels = [label for label, _ in spec_alternatives(_spec())]
    assert "scale: 0-1" in labels and "channel_order: BGR" in labels and "layout: NCHW" in labels


def test_cli_prints_a_table_and_exits_2_on_a_wrong_spec(colour_policy: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from translate.imageio import write_image

    frames, expert = _frames()
    lines = []
    for i, f in enumerate(frames):
        write_image(tmp_path / "sim" / f"{i:03d}.png", f)
        lines.append(f'{{"stem": "{i:03d}", "sim": "sim/{i:03d}.png", "action": [{expert[i, 0]}, {expert[i, 1]}]}}')
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("preset: rl_games\nscale: 0-1\nheight: 16\nwidth: 16\nfeature_output: null\n")
    rc = main([str(colour_policy), "--sim", str(tmp_path / "sim"), "--manifest",
               str(tmp_path / "manifest.jsonl"), "--spec", str(spec)])
    out = capsys.readouterr().out
    assert rc == 2 and "as configured" in out and "WARNING" in out and "set scale: 0-255" in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("WARNING")) <= 100
