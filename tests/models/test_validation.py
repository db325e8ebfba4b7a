"""Tests for validation by action agreement: the report's definitions, raw-frame baseline, health checks."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from models.base import translator_health, translator_stall
from models.cyclegan.module import CycleGANModule
from translate.metrics import action_metrics, gap_closed


def _module(tiny_synth: Path) -> CycleGANModule:
    torch.manual_seed(0)
    return CycleGANModule(generator={"ngf": 8, "n_blocks": 2}, discriminator={"ndf": 8},
                          policy={"path": str(tiny_synth / "policy" / "policy.onnx"), "spec": None})


def _validate(m: CycleGANModule, batches: list[dict[str, Any]]) -> dict[str, float]:
    logged: dict[str, float] = {}
    m.log = lambda k, v, **kw: logged.__setitem__(k, float(v))  # type: ignore[method-assign]
    m.eval()
    for i, b in enumerate(batches):
        m.validation_step(b, i)
    m.on_validation_epoch_end()
    return logged


def test_validation_uses_the_report_definitions_against_raw_frames(tiny_synth: Path) -> None:
    g = torch.Generator().manual_seed(0)
    batches = [{"real": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
                "raw": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
                "sim": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
                "action": torch.rand(4, 2, generator=g) * 2 - 1} for _ in range(2)]
    m = _module(tiny_synth)
    logged = _validate(m, batches)
    pol = m.frozen_policy
    assert pol is not None
    with torch.no_grad():
        ref = torch.cat([b["action"] for b in batches]).numpy()
        tr = torch.cat([pol(m(b["real"])).action for b in batches]).numpy()
        raw = torch.cat([pol(b["raw"]).action for b in batches]).numpy()  # not the corrected frames
        sim = torch.cat([pol(b["sim"]).action for b in batches]).numpy()
    mae = {k: action_metrics(v, ref)["action_mae"] for k, v in {"tr": tr, "raw": raw, "sim": sim}.items()}
    expected, _ = gap_closed(mae["raw"], mae["tr"], mae["sim"])
    assert logged["val/gap_closed"] == pytest.approx(expected, rel=1e-5)
    assert logged["val/action_mae"] == pytest.approx(mae["tr"], rel=1e-5)
    assert logged["val/turn_agreement"] == pytest.approx(action_metrics(tr, ref)["turn_agreement"])
    assert logged["val/frames"] == 8
    assert {"val/action_spread", "val/turn_mode_share", "val/moved", "val/output_spread",
            "val/sim_output_spread"} <= set(logged)


def test_validation_gap_closed_is_nan_without_a_gap(tiny_synth: Path) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 48, 48, generator=g) * 2 - 1
    batch = {"real": x, "raw": x, "sim": x, "action": torch.zeros(4, 2)}  # raw == sim: no gap
    logged = _validate(_module(tiny_synth), [batch])
    assert np.isnan(logged["val/gap_closed"])


def test_translator_health_flags_collapse_identity_and_constant_output() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, (50, 2))
    healthy = translator_health(sim + rng.normal(0, 0.1, (50, 2)), sim, np.full(50, 0.2),
                                rng.uniform(-1, 1, (50, 3)))
    assert healthy["warnings"] == []
    collapsed = translator_health(np.tile([[-1.0, 1.0]], (50, 1)), sim, np.full(50, 0.2),
                                  rng.uniform(-1, 1, (50, 3)))
    assert any("collapsed" in w for w in collapsed["warnings"]) and collapsed["turn_mode_share"] == 1.0
    ident = translator_health(sim, sim, np.full(50, 0.001), np.zeros((50, 3)))
    assert any("output ≈ input" in w for w in ident["warnings"])
    assert any("near-constant output" in w for w in ident["warnings"])


def test_constant_output_is_judged_against_the_sim_frames_by_content_not_mean_colour() -> None:
    rng = np.random.default_rng(1)
    sim = rng.uniform(-1, 1, (50, 2))

    def thumbs(images: np.ndarray) -> np.ndarray:  # (N, 3, 8, 8) → (N, 192), as the validation does
        return images.reshape(len(images), -1)

    # flat sim-look frames: one grey background, a bright blob at a different place in each frame
    base = np.full((50, 3, 8, 8), -0.4)
    for i in range(50):
        y, x = divmod(i % 16, 4)
        base[i, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2] = 0.8
    sim_thumbs = thumbs(base + rng.normal(0, 0.01, base.shape))
    # the translation keeps where the blob is but every frame has the same mean colour (after the
    # blob is subtracted from the background): the old mean-colour test called this constant
    moving = base - base.mean(axis=(2, 3), keepdims=True) + base.mean()
    assert moving.mean(axis=(2, 3)).std(axis=0).mean() < 1e-6
    ok = translator_health(sim, sim, np.full(50, 0.2), thumbs(moving), sim_thumbs=sim_thumbs)
    assert not any("near-constant" in w for w in ok["warnings"]) and ok["output_spread"] > 0.2
    # one image for every frame: flagged, and the message names the sim frames' figure
    same = translator_health(sim, sim, np.full(50, 0.2), thumbs(np.repeat(moving[:1], 50, axis=0)),
                             sim_thumbs=sim_thumbs)
    assert any("near-constant" in w and "sim frames" in w for w in same["warnings"])
    # a fainter copy of the sim frames' variation (a tenth of it) is flagged too, a half is not
    faint = base.mean(axis=0) + 0.1 * (base - base.mean(axis=0))
    half = base.mean(axis=0) + 0.5 * (base - base.mean(axis=0))
    assert any("near-constant" in w for w in translator_health(
        sim, sim, np.full(50, 0.2), thumbs(faint), sim_thumbs=sim_thumbs)["warnings"])
    assert not any("near-constant" in w for w in translator_health(
        sim, sim, np.full(50, 0.2), thumbs(half), sim_thumbs=sim_thumbs)["warnings"])


def test_validation_with_ema_scores_the_average_and_reports_the_live_generator(tiny_synth: Path) -> None:
    g = torch.Generator().manual_seed(2)
    batches = [{"real": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
                "sim": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
                "action": torch.rand(4, 2, generator=g) * 2 - 1}]
    torch.manual_seed(0)
    m = CycleGANModule(generator={"ngf": 8, "n_blocks": 2}, discriminator={"ndf": 8}, ema_decay=0.9,
                       policy={"path": str(tiny_synth / "policy" / "policy.onnx"), "spec": None})
    with torch.no_grad():
        for p in m.netG_A.parameters():
            p.mul_(1.5)
    logged = _validate(m, batches)
    pol = m.frozen_policy
    assert pol is not None
    b = batches[0]
    with torch.no_grad():
        mae = {name: action_metrics(pol(x).action.numpy(), b["action"].numpy())["action_mae"]
               for name, x in {"ema": m.netG_A_ema(b["real"]), "live": m.netG_A(b["real"]),
                               "raw": b["real"], "sim": b["sim"]}.items()}
    assert logged["val/action_mae"] == pytest.approx(mae["ema"], rel=1e-5)
    live, _ = gap_closed(mae["raw"], mae["live"], mae["sim"])
    assert logged["val/gap_closed_live"] == pytest.approx(live, rel=1e-5)
    assert mae["ema"] != pytest.approx(mae["live"])


def test_translator_stall_warns_only_on_a_run_that_never_left_zero() -> None:
    stalled = [-0.16, -0.08, -0.14, 0.01, 0.11]
    msg = translator_stall(stalled, done=0.5)
    assert msg is not None and "below 15 %" in msg and "best 11.0 %" in msg
    assert "14 + 6 epochs" in msg and "model.stall_extension" in msg
    assert translator_stall(stalled, done=0.3) is None  # too early in the schedule
    assert translator_stall([*stalled, 0.2], done=0.6) is None  # it took off once
    assert translator_stall([0.01, float("nan"), 0.02], done=0.9) is None  # 2 defined checks only
    assert translator_stall([0.01, float("nan"), 0.02, 0.03], done=0.9) is not None
    assert translator_stall([0.53, 0.62, 0.65], done=0.5) is None  # a look it learns


def test_validation_warns_once_on_a_stalled_run_and_the_history_survives_resume(
        tiny_synth: Path, caplog: pytest.LogCaptureFixture) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 48, 48, generator=g) * 2 - 1
    batch = {"real": x, "raw": x, "sim": torch.rand(4, 3, 48, 48, generator=g) * 2 - 1,
             "action": torch.rand(4, 2, generator=g) * 2 - 1}
    m = _module(tiny_synth)
    m.forward = lambda img: img  # type: ignore[method-assign]  # output = input: gap closed 0
    fake = SimpleNamespace(sanity_checking=False, estimated_stepping_batches=10, global_step=0,
                           logger=None, loggers=[])
    m._trainer = fake  # type: ignore[assignment]
    caplog.set_level(logging.WARNING, logger="models.base")
    for step in (2, 4, 6, 8):
        fake.global_step = step
        assert _validate(m, [batch])["val/gap_closed"] == pytest.approx(0.0, abs=1e-9)
    stalls = [r for r in caplog.records if "has stayed below" in r.getMessage()]
    assert len(stalls) == 1 and "step 6:" in stalls[0].getMessage()  # 3 checks by step 6: once
    state = m.extra_state()
    fresh = _module(tiny_synth)
    fresh.load_extra_state(state)
    assert fresh._val_gap_history == [0.0, 0.0, 0.0, 0.0] and fresh._stall_warned
    fake.sanity_checking = True  # the sanity check's pass is not a validation of the run
    _validate(m, [batch])
    assert len(m._val_gap_history) == 4
