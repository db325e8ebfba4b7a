"""Tests for translate.eval_accumulators: each accumulator on hand-made chunks, update() then result()."""

from __future__ import annotations

import numpy as np

from translate.eval_accumulators import (
    ACTION_KEYS,
    ActionsAccumulator,
    DistributionsAccumulator,
    InputContractAccumulator,
    StripsAccumulator,
    WorstFramesAccumulator,
)
from translate.eval_stages import Chunk, RawStage, SimStage, Stage
from translate.policy import PolicySpec


class _Translated(Stage):
    kind = "translated"

    def __init__(self) -> None:
        super().__init__("translated:t", "translated (t)")


def _chunks(n: int = 6, size: int = 4) -> list[Chunk]:
    rng = np.random.default_rng(0)
    out = []
    for start in (0, n // 2):
        idx = list(range(start, start + n // 2))
        frames = {k: rng.integers(0, 256, (len(idx), size, size, 3), dtype=np.uint8)
                  for k in ("raw", "translated:t", "sim")}
        ref = rng.uniform(-1, 1, (len(idx), 2))
        actions = {"raw": ref + 0.5, "translated:t": ref + 0.1, "sim": ref.copy()}
        out.append(Chunk(index=idx, raw=frames["raw"], sim=frames["sim"], frames=frames,
                         inputs={"translated:t": frames["raw"]}, policy_frames=frames,
                         actions=actions, features={k: a.copy() for k, a in actions.items()},
                         reference=ref))
    return out


def _stages() -> list[Stage]:
    return [RawStage(), _Translated(), SimStage()]


def test_actions_accumulator_scores_every_stage_against_the_reference() -> None:
    acc = ActionsAccumulator(_stages(), paired=True, action_names=("left", "right"),
                             dead_zone=0.05, tolerance=0.1, bootstrap=50, seed=0, ci_level=0.9)
    for c in _chunks():
        acc.update(c)
    r = acc.result()
    assert r["reference"].shape == (6, 2) and r["action_names"] == ["left", "right"]
    m = r["metrics"]
    assert set(ACTION_KEYS) <= set(m["translated:t"])
    assert abs(m["raw"]["action_mae"]["value"] - 0.5) < 1e-9
    assert abs(m["translated:t"]["action_mae"]["value"] - 0.1) < 1e-9
    assert abs(m["translated:t"]["gap_closed"]["value"] - 0.8) < 1e-9
    assert len(m["translated:t"]["action_mae"]["ci"]) == 2
    assert m["sim"]["action_mae"]["value"] == 0.0


def test_distributions_accumulator_compares_with_the_sim_stage() -> None:
    acc = DistributionsAccumulator(_stages(), features_reason="", kid_subset_size=4,
                                   kid_subsets=2, swd_projections=8, seed=0)
    for c in _chunks():
        acc.update(c)
    m = acc.result()
    assert m["sim"]["frechet_distance"]["reason"] == "reference stage"
    assert m["raw"]["action_energy_distance"]["value"] > m["translated:t"]["action_energy_distance"]["value"]
    assert m["raw"]["frechet_distance"]["available"]


def test_strips_worst_and_contract_accumulators() -> None:
    stems = [f"f{i}" for i in range(6)]
    strips = StripsAccumulator(_stages(), stems, n=3)
    worst = WorstFramesAccumulator(_stages(), stems, n=2)
    contract = InputContractAccumulator(_stages(), PolicySpec(), n_frames=4)
    for c in _chunks():
        for acc in (strips, worst, contract):
            acc.update(c)
    s = strips.result()
    assert s["stems"] == ["f0", "f2", "f5"] and s["stages"] == ["raw", "translated:t", "sim"]
    assert s["frames"]["raw"].shape == (3, 4, 4, 3) and s["reference"].shape == (3, 2)
    w = worst.result()
    assert list(w) == ["translated:t"] and len(w["translated:t"]["stems"]) == 2
    assert np.all(np.diff(w["translated:t"]["errors"]) <= 0)  # worst first
    stats, warnings = contract.result()
    assert set(stats) == {"raw", "translated:t", "sim"} and isinstance(warnings, list)


def test_reference_set_chunks_feed_only_the_set_level_accumulators() -> None:
    stems = ["a", "b"]
    strips = StripsAccumulator(_stages(), stems, n=2)
    ref_chunk = Chunk(index=[], sim=np.zeros((2, 4, 4, 3), np.uint8),
                      frames={"sim": np.zeros((2, 4, 4, 3), np.uint8)},
                      actions={"sim": np.zeros((2, 2))}, reference_set=True)
    strips.update(ref_chunk)
    assert strips.result()["stems"] == []
