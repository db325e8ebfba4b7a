"""Tests for datasets.jetbot_synth.world: state sampling and the expert."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from datasets.jetbot_synth.world import (
    SceneState,
    WorldConfig,
    expert_action,
    expert_actions,
    kong_in_view,
    sample_states,
    turn_direction,
)


@pytest.fixture(scope="module")
def cfg32() -> WorldConfig:
    return WorldConfig(size=32)


def _state_at(bearing: float, distance: float, cfg: WorldConfig) -> SceneState:
    base = sample_states(1, 0, cfg)[0]
    return dataclasses.replace(base, kong_bearing_deg=bearing, kong_distance=distance)


def test_sample_states_deterministic_prefix_and_json(cfg32: WorldConfig) -> None:
    a = sample_states(20, 7, cfg32)
    assert a == sample_states(20, 7, cfg32)
    assert a[:5] == sample_states(5, 7, cfg32)
    assert a != sample_states(20, 8, cfg32)
    for s in a:
        assert SceneState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert WorldConfig.from_dict(json.loads(json.dumps(cfg32.to_dict()))) == cfg32
    with pytest.raises(ValueError, match="unknown key"):
        WorldConfig.from_dict({**cfg32.to_dict(), "bogus": 1})


def test_states_cover_in_and_out_of_view_and_keep_line_of_sight() -> None:
    cfg = WorldConfig()
    states = sample_states(400, 0, cfg)
    in_view = np.array([kong_in_view(s, cfg) for s in states])
    assert 0.15 < 1 - in_view.mean() < 0.35
    d = np.array([s.kong_distance for s in states])
    assert d.min() >= 0.2 and d.max() <= 2.5
    half = cfg.sim_hfov_deg / 2
    bearings = np.array([s.kong_bearing_deg for s in states])
    assert np.all(np.abs(bearings[in_view]) < half)
    assert np.all(np.abs(bearings[~in_view]) > half)
    for s in states:
        kx, ky = s.kong_xy
        for o in s.distractors:
            # distance from the distractor to the camera->Kong segment in the floor plane
            t = np.clip((o.x * kx + o.y * ky) / (kx * kx + ky * ky), 0.0, 1.0)
            assert math.hypot(o.x - t * kx, o.y - t * ky) > o.radius


def test_expert_turns_towards_the_kong_and_searches_out_of_view() -> None:
    cfg = WorldConfig()
    left = expert_action(_state_at(20.0, 1.0, cfg), cfg)
    right = expert_action(_state_at(-20.0, 1.0, cfg), cfg)
    assert left.dtype == np.float32 and left.shape == (2,)
    assert left[1] > left[0]  # Kong to the left: right wheel faster
    assert right[0] > right[1]
    assert turn_direction(left) == -1 and turn_direction(right) == 1
    straight = expert_action(_state_at(0.0, 2.0, cfg), cfg)
    assert turn_direction(straight) == 0 and straight[0] > 0.3
    close = expert_action(_state_at(0.0, 0.22, cfg), cfg)
    np.testing.assert_allclose(close, 0.0, atol=1e-6)  # arrived: stop
    for b in (60.0, -60.0, 170.0, -120.0):
        s = _state_at(b, 1.0, cfg)
        assert not kong_in_view(s, cfg)
        np.testing.assert_array_equal(expert_action(s, cfg),
                                      np.asarray(cfg.search_action, np.float32))
    acts = expert_actions(sample_states(300, 1, cfg), cfg)
    assert acts.shape == (300, 2) and acts.min() >= -1 and acts.max() <= 1
    np.testing.assert_array_equal(turn_direction(np.array([[0.5, 0.49], [0.0, 1.0]])), [0, -1])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        turn_direction(np.zeros(3))
