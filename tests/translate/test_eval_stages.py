"""Tests for translate.eval_stages: each stage's frames of a chunk, and the notes it records."""

from __future__ import annotations

import numpy as np

from translate.eval_stages import Chunk, RawStage, SimStage, TranslatedStage, build_stages, fit
from translate.eval_translators import FunctionTranslator


def test_stages_in_pipeline_order_and_their_frames() -> None:
    t = FunctionTranslator(lambda f: 255 - f, "invert")
    stages = build_stages([t], None, paired=True)
    assert [(st.name, st.kind) for st in stages] == [
        ("raw", "raw"), ("translated:invert", "translated"), ("sim", "sim")]
    raw = np.zeros((2, 8, 8, 3), np.uint8)
    chunk = Chunk(index=[0, 1], raw=raw, sim=raw + 1)
    timing: dict[str, float] = {}
    assert stages[0].frames(chunk, timing) is raw
    out = stages[1].frames(chunk, timing)
    assert np.all(out == 255) and chunk.inputs["translated:invert"] is raw
    assert "translate" in timing
    assert np.all(stages[2].frames(chunk, timing) == 1)


def test_raw_fed_translator_and_resizes_are_noted() -> None:
    t = FunctionTranslator(lambda f: f, "lens-inside")
    t.takes_raw = True  # type: ignore[attr-defined]
    t.input_size = (4, 4)  # type: ignore[attr-defined]
    st = TranslatedStage(t)
    chunk = Chunk(index=[0], raw=np.zeros((1, 8, 6, 3), np.uint8),
                  frames={"corrected": np.ones((1, 8, 6, 3), np.uint8)})
    assert st.frames(chunk, {}).shape == (1, 4, 4, 3)
    assert st.notes == ["fed raw real frames: the lens correction is inside the translator",
                        "6×8 frames resized to 4×4 for the translator (bilinear, antialiased)"]
    sim = SimStage("sim (reference set)")
    assert fit(sim, np.zeros((1, 4, 4, 3), np.uint8), (4, 4), "x").shape == (1, 4, 4, 3)
    assert sim.notes == [] and RawStage().label == "raw real"
