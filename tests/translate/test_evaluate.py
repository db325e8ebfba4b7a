"""Evaluation core on tiny jetbot_synth data: stages, gap closed, contract check, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.camera import CameraCorrection
from translate.eval_schema import check_thresholds
from translate.eval_sets import EvalDataError, load_eval_set, resolve_camera
from translate.eval_translators import (
    FunctionTranslator,
    IdentityTranslator,
    OnnxTranslator,
    TranslatorOutputError,
)
from translate.evaluate import EvalSettings, evaluate_translators
from translate.imageio import read_image, write_image
from translate.metrics import PSNR_CAP_DB
from translate.policy import load_policy
from translate.recording import SessionWriter

FAST = EvalSettings(bootstrap=200, n_strips=3, n_worst=2, num_workers=2)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jetbot_synth at 48 px with 16 paired test frames, and an untrained rl_games policy."""
    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx

    root = tmp_path_factory.getbasetemp() / "eval_synth48"
    ensure_dataset(root, size=48, seed=0, n_real=4, n_sim=4, n_val=4, n_test=16,
                   progress=False, contact_sheet=False)
    policy = root / "policy" / "policy.onnx"
    if not policy.exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            export_rl_games_onnx(RlGamesJetbotNet(image_size=48), policy, height=48, width=48)
    return root


@pytest.fixture(scope="module")
def policy(synth: Path):
    return load_policy(synth / "policy" / "policy.onnx", features=True)


def _copy_split(synth: Path, dst: Path, *, real_from: str = "real", manifest: bool = False) -> Path:
    """A paired folder dst/test (real/ + sim/) with dst/camera.yaml, without the manifest."""
    test = dst / "test"
    shutil.copytree(synth / "test" / real_from, test / "real")
    shutil.copytree(synth / "test" / "sim", test / "sim")
    if real_from == "sim":  # the same file names as the real frames
        for p in (test / "real").glob("*.png"):
            p.rename(p.with_suffix(".png"))
    if manifest:
        shutil.copy(synth / "test" / "manifest.jsonl", test / "manifest.jsonl")
    shutil.copy(synth / "camera.yaml", dst / "camera.yaml")
    return test


def _stage(metrics: dict, name: str) -> dict:
    return next(st for st in metrics["stages"] if st["name"] == name)


def _value(metrics: dict, stage: str, key: str) -> float | None:
    return _stage(metrics, stage)["metrics"][key]["value"]


def _oracle(real_corrected: np.ndarray, sims: list[np.ndarray]) -> FunctionTranslator:
    """A perfect translator: maps each lens-corrected real frame to its sim partner."""
    table = {f.tobytes(): s for f, s in zip(real_corrected, sims, strict=True)}
    return FunctionTranslator(lambda frames: np.stack([table[f.tobytes()] for f in frames]),
                              "oracle")


def _swap() -> FunctionTranslator:
    return FunctionTranslator(lambda f: np.ascontiguousarray(f[..., ::-1]), "swap")


# ---------------------------------------------------------------------------- the acceptance cases


def test_identity_on_sim_frames_has_zero_error(synth: Path, policy, tmp_path: Path) -> None:
    # A set whose "real" frames are the sim frames, reference = the policy on the paired sim frame.
    test = _copy_split(synth, tmp_path, real_from="sim")
    es = load_eval_set(test)
    res = evaluate_translators([IdentityTranslator()], policy, es, camera=None, settings=FAST)
    m = res.metrics
    assert [st["name"] for st in m["stages"]] == ["raw", "translated:identity", "sim"]
    assert m["data"]["reference_actions"] == "policy_on_sim"
    for name in ("raw", "translated:identity", "sim"):
        assert _value(m, name, "action_mae") == 0.0
        assert _value(m, name, "turn_agreement") == 1.0
        assert _value(m, name, "within_tolerance") == 1.0
        gap = _stage(m, name)["metrics"]["gap_closed"]
        # raw real = sim here: there is no gap, so "gap closed" is undefined, not 0 or 100 %
        assert gap["available"] is False and "no sim-to-real gap" in gap["reason"]
    assert _value(m, "translated:identity", "psnr") == PSNR_CAP_DB
    assert _value(m, "translated:identity", "ssim") == pytest.approx(1.0, abs=1e-5)
    assert _value(m, "translated:identity", "frechet_distance") == pytest.approx(0.0, abs=1e-6)
    # (the tiny untrained policy is degenerate on sim frames: the spec self-check says so)
    assert [w for w in m["warnings"] if w["kind"] != "policy_spec"] == []


def test_perfect_translator_closes_the_gap(synth: Path, policy, tmp_path: Path) -> None:
    test = _copy_split(synth, tmp_path)
    es = load_eval_set(test)
    camera, source = resolve_camera("auto", es)
    assert camera is not None and source == str(tmp_path / "camera.yaml")
    corrected = camera.apply(np.stack([read_image(p) for p in es.real_paths]))
    oracle = _oracle(corrected, [read_image(p) for p in es.sim_paths or []])
    res = evaluate_translators([IdentityTranslator(), oracle], policy, es, camera=camera,
                               camera_source=source, settings=FAST)
    m = res.metrics
    assert [st["name"] for st in m["stages"]] == [
        "raw", "corrected", "translated:identity", "translated:oracle", "sim"]
    assert _value(m, "raw", "action_mae") > 0
    assert _value(m, "raw", "gap_closed") == 0.0
    assert _value(m, "sim", "gap_closed") == 1.0
    gap = _stage(m, "translated:oracle")["metrics"]["gap_closed"]
    assert gap["value"] == pytest.approx(1.0) and gap["ci"] == pytest.approx([1.0, 1.0])
    assert _value(m, "translated:oracle", "action_mae") == 0.0
    assert _value(m, "translated:oracle", "turn_agreement") == 1.0
    assert _value(m, "translated:identity", "gap_closed") == _value(m, "corrected", "gap_closed")
    mae = _stage(m, "raw")["metrics"]["action_mae"]
    assert mae["ci"][0] <= mae["value"] <= mae["ci"][1]
    # (the tiny untrained policy is degenerate on sim frames: the spec self-check says so)
    assert [w for w in m["warnings"] if w["kind"] != "policy_spec"] == []
    # the arrays behind the figures
    assert res.reference is not None and res.reference.shape == (16, 2)
    assert set(res.errors) == {st["name"] for st in m["stages"]}
    assert len(res.samples["stems"]) == 3 and res.samples["frames"]["raw"].shape == (3, 48, 48, 3)
    worst = res.worst["translated:identity"]
    assert worst["output"].shape == (2, 48, 48, 3) and worst["sim_pred"].shape == (2, 2)
    assert worst["errors"][0] >= worst["errors"][1]


def test_channel_swap_scores_worse_and_the_contract_check_names_it(
    synth: Path, policy, tmp_path: Path
) -> None:
    test = _copy_split(synth, tmp_path, real_from="sim")
    es = load_eval_set(test)
    res = evaluate_translators([_swap()], policy, es, camera=None, settings=FAST)
    m = res.metrics
    assert _value(m, "translated:swap", "action_mae") > _value(m, "raw", "action_mae")
    assert _value(m, "translated:swap", "psnr") < _value(m, "raw", "psnr")
    warnings = [(w["stage"], w["kind"]) for w in m["warnings"] if w["kind"] != "policy_spec"]
    assert warnings == [("translated:swap", "channel_order")]
    assert "BGR" in m["warnings"][0]["message"]


def test_swapped_output_of_a_good_translator_is_named_on_real_frames(
    synth: Path, policy, tmp_path: Path
) -> None:
    test = _copy_split(synth, tmp_path)
    es = load_eval_set(test)
    camera, _ = resolve_camera("auto", es)
    assert camera is not None
    corrected = camera.apply(np.stack([read_image(p) for p in es.real_paths]))
    oracle = _oracle(corrected, [read_image(p) for p in es.sim_paths or []])
    bgr = FunctionTranslator(lambda f: np.ascontiguousarray(oracle(f)[..., ::-1]), "oracle_bgr")
    nchw = FunctionTranslator(  # an NCHW buffer reshaped (not transposed) to NHWC
        lambda f: np.ascontiguousarray(oracle(f).transpose(0, 3, 1, 2)).reshape(f.shape),
        "oracle_nchw")
    res = evaluate_translators([oracle, bgr, nchw], policy, es, camera=camera, settings=FAST)
    kinds = {(w["stage"], w["kind"]) for w in res.metrics["warnings"]}
    assert ("translated:oracle_bgr", "channel_order") in kinds
    assert ("translated:oracle_nchw", "layout") in kinds
    assert not [k for k in kinds if k[0] in ("raw", "corrected", "translated:oracle")]


def test_manifest_actions_are_the_reference(synth: Path, policy) -> None:
    es = load_eval_set(synth / "test")
    assert es.kind == "paired" and es.action_source == "manifest" and len(es) == 16
    camera, source = resolve_camera("auto", es)
    assert source == str(synth / "camera.yaml")  # found in the split's parent
    res = evaluate_translators([IdentityTranslator()], policy, es, camera=camera, settings=FAST)
    m = res.metrics
    assert m["data"]["reference_actions"] == "manifest"
    assert _value(m, "sim", "action_mae") > 0  # an untrained policy disagrees with the expert
    np.testing.assert_allclose(res.reference, es.actions)
    json.dumps(m)  # JSON-ready as it stands


def test_bootstrap_is_deterministic_by_seed(synth: Path, policy) -> None:
    es = load_eval_set(synth / "test", max_frames=8)
    a = evaluate_translators([], policy, es, settings=FAST).metrics
    b = evaluate_translators([], policy, es, settings=FAST).metrics
    assert len(es) == 8 and a["data"]["n_listed"] == 16
    for key in ("action_mae", "turn_agreement"):
        assert _stage(a, "raw")["metrics"][key]["ci"] == _stage(b, "raw")["metrics"][key]["ci"]


# ---------------------------------------------------------------------------- translators


def test_onnx_core_and_robot_translators_agree(synth: Path, policy, tmp_path: Path) -> None:
    from models.networks import ResnetGenerator
    from translate.export import export_generator

    camera = CameraCorrection.from_yaml(synth / "camera.yaml")
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=4, n_blocks=1).eval()
    for p in g.parameters():
        p.data.uniform_(-0.1, 0.1)
    export_generator(g, tmp_path / "rgb", camera=camera)
    export_generator(g, tmp_path / "bgr", camera=camera, input_channel_order="BGR")
    core = OnnxTranslator(tmp_path / "rgb")  # an export folder: its translator.onnx
    robot = OnnxTranslator(tmp_path / "rgb" / "translator_robot.onnx", name="robot")
    robot_bgr = OnnxTranslator(tmp_path / "bgr" / "translator_robot.onnx", name="robot_bgr")
    assert (core.variant, core.takes_raw) == ("core", False)
    assert (robot.variant, robot.takes_raw, robot.input_size) == ("robot", True, (48, 48))
    assert robot_bgr.input_channel_order == "BGR"
    assert core.name == "rgb"
    es = load_eval_set(synth / "test", max_frames=6)
    res = evaluate_translators([core, robot, robot_bgr], policy, es, camera=camera,
                               settings=FAST)
    frames = res.samples["frames"]
    core_out = frames["translated:rgb"].astype(int)
    # The robot graph gets RAW frames (its correction is inside): it matches the core graph fed
    # corrected frames up to the uint8 rounding of the harness's correction, amplified by this
    # random generator — and is far from what feeding it corrected frames (twice corrected) gives.
    diff = np.abs(core_out - frames["translated:robot"]).mean()
    twice = robot(frames["corrected"])
    assert diff < 0.25 * np.abs(core_out - twice).mean()
    np.testing.assert_array_equal(frames["translated:robot"], frames["translated:robot_bgr"])
    assert any("fed raw real frames" in n for n in _stage(res.metrics, "translated:robot")["notes"])
    assert _stage(res.metrics, "translated:rgb")["notes"] == []


def test_translator_output_is_checked(synth: Path, policy) -> None:
    es = load_eval_set(synth / "test", max_frames=2)
    nchw = FunctionTranslator(lambda f: np.ascontiguousarray(f.transpose(0, 3, 1, 2)), "nchw")
    with pytest.raises(TranslatorOutputError, match="looks NCHW"):
        evaluate_translators([nchw], policy, es, settings=FAST)
    unit = FunctionTranslator(lambda f: f.astype(np.float32) / 255, "unit")
    with pytest.raises(TranslatorOutputError, match="uint8"):
        evaluate_translators([unit], policy, es, settings=FAST)
    with pytest.raises(ValueError, match="unique"):
        evaluate_translators([IdentityTranslator(), IdentityTranslator()], policy, es)


# ---------------------------------------------------------------------------- sets and bad inputs


def test_unreadable_frames_are_skipped_and_reported(synth: Path, policy, tmp_path: Path) -> None:
    test = _copy_split(synth, tmp_path)
    broken = test / "real" / "000003.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    es = load_eval_set(test)
    res = evaluate_translators([], policy, es, settings=FAST)
    skipped = res.metrics["data"]["skipped"]
    assert [s["path"] for s in skipped] == [str(broken)] and skipped[0]["reason"]
    assert res.metrics["data"]["n_frames"] == 15 and "000003" not in res.stems
    with pytest.raises(Exception, match="000003"):
        evaluate_translators([], policy, es, settings=EvalSettings(on_error="raise"))


def test_all_frames_unreadable_is_an_error(synth: Path, policy, tmp_path: Path) -> None:
    test = _copy_split(synth, tmp_path)
    for p in (test / "real").iterdir():
        p.write_bytes(b"")
    es = load_eval_set(test, max_frames=3)
    with pytest.raises(EvalDataError, match="no readable frames.*file is empty"):
        evaluate_translators([], policy, es, settings=FAST)


def test_missing_partners_are_reported(synth: Path, tmp_path: Path) -> None:
    test = _copy_split(synth, tmp_path)
    (test / "sim" / "000005.png").unlink()
    (test / "real" / "000007.jpg").unlink()
    es = load_eval_set(test)
    assert len(es) == 14
    text = " ".join(es.problems)
    assert "000005" in text and "000007" in text


def test_unlabelled_frames_need_sim_data(synth: Path, policy, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    shutil.copytree(synth / "test" / "real", folder)
    with pytest.raises(EvalDataError, match="sim_data"):
        load_eval_set(folder)
    es = load_eval_set(folder, sim_data=synth / "test")  # a folder holding sim/
    assert es.kind == "unlabelled" and es.sim_ref_paths and len(es.sim_ref_paths) == 16
    res = evaluate_translators([IdentityTranslator()], policy, es, settings=FAST)
    m = res.metrics
    assert [st["name"] for st in m["stages"]] == ["raw", "translated:identity", "sim"]
    assert _stage(m, "sim")["label"] == "sim (reference set)"
    raw = _stage(m, "raw")["metrics"]
    assert raw["frechet_distance"]["available"] and raw["kid"]["available"]
    assert raw["action_energy_distance"]["available"]
    assert not raw["action_mae"]["available"] and "no reference actions" in raw["action_mae"]["reason"]
    assert not raw["psnr"]["available"]


def test_recording_session_with_teleop_actions(synth: Path, policy, tmp_path: Path) -> None:
    frames = [read_image(p) for p in sorted((synth / "test" / "real").iterdir())[:5]]
    with SessionWriter(tmp_path / "session", source="test", width=48, height=48) as w:
        for i, f in enumerate(frames):
            w.write(f, action=(0.1 * i, -0.1 * i))
    es = load_eval_set(tmp_path / "session", sim_data=synth / "test" / "sim")
    assert es.kind == "session" and es.action_source == "session"
    res = evaluate_translators([IdentityTranslator()], policy, es, settings=FAST)
    m = res.metrics
    assert m["data"]["reference_actions"] == "session"
    assert _stage(m, "raw")["metrics"]["action_mae"]["available"]
    sim_gap = _stage(m, "sim")["metrics"]["gap_closed"]
    assert not sim_gap["available"] and "not paired" in sim_gap["reason"]


def test_frames_of_another_size_are_resized_and_noted(synth: Path, policy, tmp_path: Path) -> None:
    for p in sorted((synth / "test" / "real").iterdir())[:4]:
        write_image(tmp_path / "real" / f"{p.stem}.png", np.repeat(np.repeat(read_image(p), 2, 0), 2, 1))
    es = load_eval_set(tmp_path / "real", sim_data=synth / "test" / "sim")
    res = evaluate_translators([], policy, es, settings=FAST)
    notes = _stage(res.metrics, "raw")["notes"]
    assert any("96×96 frames resized to 48×48 for the policy" in n for n in notes)
    odd = tmp_path / "real" / "zz_odd.png"
    write_image(odd, np.zeros((50, 60, 3), np.uint8))
    es = load_eval_set(tmp_path / "real", sim_data=synth / "test" / "sim")
    with pytest.raises(EvalDataError, match="zz_odd.png is 60×50"):
        evaluate_translators([], policy, es, settings=FAST)


def test_thresholds(synth: Path, policy) -> None:
    es = load_eval_set(synth / "test", max_frames=6)
    m = evaluate_translators([IdentityTranslator()], policy, es, settings=FAST).metrics
    checks = check_thresholds(m, {"turn_agreement": 1.01}, {"action_mae": 10.0})
    assert [(c["metric"], c["passed"]) for c in checks] == [
        ("turn_agreement", False), ("action_mae", True)]
    assert "translated:identity: turn_agreement" in checks[0]["message"]
    lpips_check = check_thresholds(m, {"lpips": 0.0})[0]  # LPIPS needs cached weights: unavailable
    if not _stage(m, "translated:identity")["metrics"]["lpips"]["available"]:
        assert not lpips_check["passed"] and "unavailable" in lpips_check["message"]
    with pytest.raises(ValueError, match="unknown metric; valid names:.*turn_agreement"):
        check_thresholds(m, {"turn_agreemnt": 0.8})
    assert check_thresholds(m, {"action_mae_left": 0.0})[0]["passed"]


def test_bad_bootstrap_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"bootstrap\.n must be >= 0 \(0 = no confidence intervals\); got -5"):
        EvalSettings(bootstrap=-5)
    with pytest.raises(ValueError, match=r"bootstrap\.level must be in \(0, 1\)"):
        EvalSettings(ci_level=95)
