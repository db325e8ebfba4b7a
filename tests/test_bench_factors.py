"""bench/factors.py: each factor of the real look turns on its own knobs and nothing else."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import factors  # noqa: E402

from datasets.jetbot_synth.world import RealStyle  # noqa: E402


def test_each_factor_differs_from_the_lens_alone_only_in_its_own_knobs() -> None:
    lens = dataclasses.asdict(factors.factor_style("lens"))
    assert all(lens[k] == v for k, v in factors.OFF.items())
    assert factors.factor_style("full") == RealStyle()
    default = dataclasses.asdict(RealStyle())
    for name, knobs in factors.FACTORS.items():
        style = dataclasses.asdict(factors.factor_style(name))
        changed = {k for k in style if style[k] != lens[k]}
        assert changed <= set(knobs), name
        assert all(style[k] == default[k] for k in knobs), name
    # the four factors together are the whole real look
    parts = set().union(*(set(factors.FACTORS[f]) for f in ("camera", "materials", "lighting")))
    assert parts == set(factors.OFF)


def test_a_factor_renders_the_val_states_of_the_world(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    root = factors.render_factor(tmp_path / "lens", "lens", size=32, seed=0, n_val=3)
    full = factors.render_factor(tmp_path / "full", "full", size=32, seed=0, n_val=3)
    names = sorted(p.name for p in (root / "val" / "sim").iterdir() if p.suffix == ".png")
    assert len(names) == 3
    for n in names:  # the same states: identical sim frames, different real looks
        a = np.asarray(Image.open(root / "val" / "sim" / n))
        b = np.asarray(Image.open(full / "val" / "sim" / n))
        assert np.array_equal(a, b)
    reals = sorted((root / "val" / "real").iterdir())
    assert reals and not np.array_equal(np.asarray(Image.open(reals[0])),
                                        np.asarray(Image.open(sorted((full / "val" / "real").iterdir())[0])))
