"""Tests for workflows.evaluation: evaluate(cfg) end to end, translator kinds, bad inputs, evaluation after training, the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_eval_cfg

import eval_policy_on_translated as ept
from translate.policy import SpecMismatchError
from workflows import evaluation


def test_evaluate_writes_the_report(tiny_synth: Path, onnx_translator: Path, tmp_path: Path) -> None:
    cfg = tiny_eval_cfg(tiny_synth, tmp_path / "eval", translator=["identity", str(onnx_translator)])
    m = evaluation.evaluate(cfg)
    assert m["schema_version"] == 1
    assert [st["name"] for st in m["stages"]] == [
        "raw", "corrected", "translated:identity", "translated:tiny", "sim"]
    assert m["thresholds"] == {"checks": [], "passed": True}
    out = tmp_path / "eval"
    for name in ("metrics.json", "report.md", "report.html", "per_frame.csv",
                 "figures/strips.png", "figures/summary.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["translator"] == ["identity", str(onnx_translator)]
    assert saved["data"]["camera"]["source"] == str(tiny_synth / "camera.yaml")
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_missing_policy_is_a_clear_error(tiny_synth: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_eval_cfg(tiny_synth, tmp_path / "out", **{"policy.path": str(tmp_path / "nope.onnx")})
    with pytest.raises(FileNotFoundError, match=r"policy model not found: .*nope\.onnx"):
        evaluation.evaluate(cfg)
    assert ept.run(cfg) == 1
    assert "policy model not found" in capsys.readouterr().err


def test_spec_that_contradicts_the_model(tiny_synth: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("preset: rl_games\nheight: 64\nwidth: 64\n")
    cfg = tiny_eval_cfg(tiny_synth, tmp_path / "out", **{"policy.spec": str(spec)})
    with pytest.raises(SpecMismatchError, match="height: 64"):
        evaluation.evaluate(cfg)


def test_empty_evaluation_set(tiny_synth: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        evaluation.evaluate(tiny_eval_cfg(tiny_synth, tmp_path / "out", data=str(empty)))


def test_reference_policy_is_built_when_missing(tiny_synth: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets.jetbot_synth import reference_policy

    root = tmp_path / "jetbot_synth_48px_seed0"
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("policy"))
    calls = []

    def fake_ensure_policy(r: Path, **kwargs) -> Path:
        calls.append(Path(r))
        (Path(r) / "policy").mkdir(exist_ok=True)
        for f in ("policy.onnx", "policy_spec.yaml"):
            shutil.copy(tiny_synth / "policy" / f, Path(r) / "policy" / f)
        return Path(r) / "policy" / "policy.onnx"

    monkeypatch.setattr(reference_policy, "ensure_policy", fake_ensure_policy)
    with pytest.raises(FileNotFoundError, match=r"policy\.build_if_missing=true"):
        evaluation.evaluate(tiny_eval_cfg(root, tmp_path / "a", max_frames=2))
    assert not calls
    m = evaluation.evaluate(tiny_eval_cfg(root, tmp_path / "b", max_frames=2, **{"policy.build_if_missing": True}))
    assert calls == [root] and m["policy"]["path"] == str(root / "policy" / "policy.onnx")


def test_checkpoint_translators(tmp_path: Path) -> None:
    from models.cyclegan.module import CycleGANModule
    from models.networks import ResnetGenerator

    torch.manual_seed(0)
    module = CycleGANModule(generator={"ngf": 8, "n_blocks": 1}, discriminator={"ndf": 8})
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    g = ResnetGenerator(ngf=8, n_blocks=1)
    torch.save(g.state_dict(), tmp_path / "latest_net_G_A.pth")
    torch.save(g.state_dict(), tmp_path / "generator.pth")
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for path, name, kind in ((ckpt, "run-last", "lightning"),
                             (tmp_path / "latest_net_G_A.pth", "cyclegan-latest_net_G_A",
                              "official")):
        t = evaluation.load_translator(str(path), batch_size=2)
        assert t.name == name and t.info["kind"] == kind  # type: ignore[attr-defined]
        out = t(frames)
        assert out.shape == frames.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="translator_model=cyclegan or translator_model=cut"):
        evaluation.load_translator(str(tmp_path / "generator.pth"))
    assert evaluation.load_translator(str(tmp_path / "generator.pth"), model="cyclegan")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown kind"):
        evaluation.load_translator(str(tmp_path / "x.bin"))
    with pytest.raises(FileNotFoundError, match="translator not found"):
        evaluation.load_translator(str(tmp_path / "missing.onnx"))


def test_evaluate_after_training(compose_cfg, tiny_synth: Path, onnx_translator: Path,
                                 tmp_path: Path) -> None:
    cfg_train = compose_cfg("train", [
        f"data.root={tiny_synth}", f"paths.runs_dir={tmp_path}", "evaluate.max_frames=4",
        "trainer.enable_progress_bar=false", "+evaluate.bootstrap.n=50",
    ])
    m = evaluation.evaluate_after_training(cfg_train, onnx_translator)
    assert m is not None and m["data"]["n_frames"] == 4
    assert m["data"]["path"] == str(tiny_synth / "test")
    assert m["settings"]["bootstrap"] == 50
    run_dir = Path(str(cfg_train.run_dir))
    assert (run_dir / "eval" / "metrics.json").is_file()
    no_policy = compose_cfg("train", [f"data.root={tiny_synth}", "policy=none"])
    assert evaluation.evaluate_after_training(no_policy, onnx_translator) is None


def test_default_config_takes_group_choices() -> None:
    cfg = evaluation.default_config(["policy=custom", "policy.path=p.onnx", "policy.spec=rsl_rl"])
    assert (cfg.policy.path, cfg.policy.spec, cfg.policy.build_if_missing) == ("p.onnx", "rsl_rl", False)
    assert str(evaluation.default_config().policy.path).endswith(
        "jetbot_synth_128px_seed0/policy/policy.onnx")
