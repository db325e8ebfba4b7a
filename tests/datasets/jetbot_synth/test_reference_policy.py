"""Tests for datasets.jetbot_synth.reference_policy: the cached reference policy and its parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets.jetbot_synth.generate import ensure_dataset
from datasets.jetbot_synth.reference_policy import ensure_policy, policy_params

TINY = dict(n_frames=16, epochs=1, progress=False)


def test_policy_params_key_everything_that_changes_the_policy() -> None:
    base = dict(size=48, seed=0, n_frames=16, epochs=1, randomize=1.0, world={})
    p = policy_params(**base)  # type: ignore[arg-type]
    assert {"recipe_version", "size", "seed", "n_frames", "epochs", "randomize", "world"} <= p.keys()
    assert p != policy_params(**{**base, "epochs": 2})  # type: ignore[arg-type]


def test_missing_dataset_names_the_generator(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset.json missing.*python -m datasets.jetbot_synth"):
        ensure_policy(tmp_path, **TINY)  # type: ignore[arg-type]


def test_trains_once_then_reuses_and_retrains_on_other_params(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ensure_dataset(root, size=48, seed=0, n_real=2, n_sim=2, n_val=2, n_test=2, progress=False,
                   contact_sheet=False)
    path = ensure_policy(root, **TINY)  # type: ignore[arg-type]
    assert path == root / "policy" / "policy.onnx" and (root / "policy" / "policy_spec.yaml").exists()
    info = json.loads((root / "policy" / "policy.json").read_text())
    assert info["params"]["n_frames"] == 16
    stamp = path.stat().st_mtime_ns
    assert ensure_policy(root, **TINY) == path and path.stat().st_mtime_ns == stamp  # type: ignore[arg-type]
    ensure_policy(root, n_frames=8, epochs=1, progress=False)
    assert json.loads((root / "policy" / "policy.json").read_text())["params"]["n_frames"] == 8
