"""Tests for datasets.jetbot_synth.source: SynthSource's frames, actions and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.jetbot_synth.generate import render_arrays
from datasets.jetbot_synth.source import SynthSource


@pytest.mark.parametrize("chunk", [1, 3])
def test_frames_equal_render_arrays_whatever_the_chunk(chunk: int) -> None:
    frames = list(SynthSource(32, 32, seed=5, frames=4, chunk=chunk))
    images, actions, _ = render_arrays(4, 5, "real", size=32)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert np.array_equal(np.stack([f.image for f in frames]), images)
    np.testing.assert_allclose(np.stack([f.action for f in frames]), actions, atol=1e-6)


def test_sim_domain_and_description() -> None:
    src = SynthSource(32, 32, seed=1, frames=2, domain="sim")
    images, _, _ = render_arrays(2, 1, "sim", size=32)
    assert np.array_equal(np.stack([f.image for f in src]), images)
    assert src.describe() == "synth:1" and src.info()["domain"] == "sim"


@pytest.mark.parametrize(("kw", "match"), [
    ({"width": 32, "height": 48}, "square frames"),
    ({"domain": "other"}, "domain must be one of"),
    ({"frames": -1}, "frames must be >= 0"),
])
def test_bad_arguments_are_named(kw: dict, match: str) -> None:
    args = {"width": 32, "height": 32, **kw}
    with pytest.raises(ValueError, match=match):
        SynthSource(args.pop("width"), args.pop("height"), **args)
