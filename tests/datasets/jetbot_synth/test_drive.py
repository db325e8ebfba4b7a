"""jetbot_synth closed-loop driving: kinematics, moved scene states, seeded starts, episodes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from datasets.jetbot_synth.drive import (
    BEARING_KINDS,
    DriveConfig,
    StartState,
    expert_actor,
    kong_relative,
    run_episodes,
    start_states,
    state_at_pose,
    step_poses,
)
from datasets.jetbot_synth.world import Distractor, WorldConfig, kong_in_view, sample_states

DRIVE = DriveConfig()


def _drive(command: tuple[float, float], steps: int) -> np.ndarray:
    p = np.zeros((1, 3))
    for _ in range(steps):
        p = step_poses(p, np.array([command]), DRIVE)
    return p[0]


def test_a_constant_command_drives_the_expected_arc() -> None:
    left, right = 0.2, 0.6
    v = DRIVE.max_wheel_speed * (left + right) / 2
    w = DRIVE.max_wheel_speed * (right - left) / DRIVE.track
    radius = v / w
    for steps in (1, 7, 30):
        t = steps * DRIVE.dt
        x, y, yaw = _drive((left, right), steps)
        # a circle through the origin, tangent to +x, centred at (0, radius) (turning left)
        assert x == pytest.approx(radius * math.sin(w * t), abs=1e-9)
        assert y == pytest.approx(radius * (1 - math.cos(w * t)), abs=1e-9)
        assert math.cos(yaw) == pytest.approx(math.cos(w * t), abs=1e-9)
        assert math.sin(yaw) == pytest.approx(math.sin(w * t), abs=1e-9)
        assert math.hypot(x, y - radius) == pytest.approx(radius, abs=1e-9)


def test_straight_spin_and_clipping() -> None:
    x, y, yaw = _drive((0.5, 0.5), 10)
    assert (x, y, yaw) == pytest.approx((0.5 * DRIVE.max_wheel_speed * 10 * DRIVE.dt, 0.0, 0.0))
    x, y, yaw = _drive((-0.5, 0.5), 3)  # in place, to the left
    w = DRIVE.max_wheel_speed * 1.0 / DRIVE.track
    assert (x, y) == pytest.approx((0.0, 0.0), abs=1e-12) and yaw == pytest.approx(3 * w * DRIVE.dt)
    assert np.array_equal(_drive((2.0, 5.0), 4), _drive((1.0, 1.0), 4))
    with pytest.raises(ValueError, match=r"poses must be \(N, 3\)"):
        step_poses(np.zeros((2, 3)), np.zeros((3, 2)), DRIVE)


def test_state_at_pose_moves_the_robot_not_the_world() -> None:
    st = sample_states(1, 3, WorldConfig())[0]
    st = dataclasses.replace(st, kong_distance=1.0, kong_bearing_deg=0.0, distractors=(
        Distractor("sphere", 0.5, 0.5, (0.1, 0.1, 0.1), 0.0, (0.1, 0.1, 0.1)),))
    ahead = state_at_pose(st, np.array([0.3, 0.0, 0.0]))
    assert ahead.kong_distance == pytest.approx(0.7) and ahead.kong_bearing_deg == pytest.approx(0)
    turned = state_at_pose(st, np.array([0.0, 0.0, math.pi / 2]))
    assert turned.kong_bearing_deg == pytest.approx(-90.0)  # the Kong is now to the right
    d = turned.distractors[0]
    assert (d.x, d.y) == pytest.approx((0.5, -0.5))
    assert turned.light_azimuth_deg == pytest.approx(st.light_azimuth_deg - 90)
    assert state_at_pose(st, np.zeros(3)) == dataclasses.replace(
        st, kong_bearing_deg=0.0, kong_distance=1.0)
    dist, bearing = kong_relative(st, np.array([[0.3, 0.0, 0.0], [0.0, 0.0, math.pi / 2]]))
    assert dist == pytest.approx([0.7, 1.0]) and bearing == pytest.approx([0.0, -90.0])


def test_start_states_are_seeded_stratified_and_prefix_stable() -> None:
    world = WorldConfig()
    a = start_states(12, 5, world)
    assert a == start_states(12, 5, world)
    assert a[:6] == start_states(6, 5, world)
    assert a != start_states(12, 6, world)
    half = world.sim_hfov_deg / 2
    assert [s.bearing_kind for s in a[:6:2]] == list(BEARING_KINDS)
    for s in a:
        b, d = abs(s.state.kong_bearing_deg), s.state.kong_distance
        lo, hi = DRIVE.near_range if s.distance_band == "near" else DRIVE.far_range
        assert lo <= d <= hi
        if s.bearing_kind == "in_view":
            assert b <= 0.5 * half and kong_in_view(s.state, world)
        elif s.bearing_kind == "edge":
            assert b >= 0.75 * half and kong_in_view(s.state, world)
        else:
            assert not kong_in_view(s.state, world)


def test_the_expert_reaches_the_kong_and_episodes_repeat_exactly() -> None:
    world = WorldConfig()
    starts = start_states(12, 0, world)
    log = run_episodes(starts, expert_actor(world), DRIVE)
    again = run_episodes(starts, expert_actor(world), DRIVE)
    assert log.success.all(), log.outcome
    assert np.array_equal(log.poses, again.poses) and np.array_equal(log.steps, again.steps)
    assert (log.final_distance <= DRIVE.success_distance).all()
    assert (log.path_length > 0).all() and log.info["dt"] == DRIVE.dt
    # past the end, poses repeat the final one and actions are NaN
    i = int(np.argmin(log.steps))
    assert np.isnan(log.actions[i, log.steps[i]:]).all()
    assert (log.poses[i, log.steps[i]:] == log.poses[i, log.steps[i]]).all()


def test_driving_into_a_distractor_is_a_collision_and_no_progress_a_timeout() -> None:
    st = start_states(1, 0, WorldConfig())[0]
    box = Distractor("box", 0.4, 0.0, (0.1, 0.1, 0.1), 0.0, (0.2, 0.2, 0.2))
    scene = dataclasses.replace(st.state, kong_bearing_deg=120.0, distractors=(box,))
    start = StartState(0, scene, "out_of_view", "near")
    drive = dataclasses.replace(DRIVE, max_steps=50)

    def forward(ids: np.ndarray, states: list, t: int) -> np.ndarray:
        return np.full((len(ids), 2), 0.5)

    def still(ids: np.ndarray, states: list, t: int) -> np.ndarray:
        return np.zeros((len(ids), 2))

    log = run_episodes([start], forward, drive)
    assert log.outcome == ["collision"] and log.steps[0] < 50
    assert run_episodes([start], still, drive).outcome == ["timeout"]


def test_drive_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['speed'\]"):
        DriveConfig.from_dict({"speed": 1})
    with pytest.raises(ValueError, match="near_range"):
        DriveConfig(near_range=(0.1, 0.5))
    assert DriveConfig.from_dict({"far_range": [1.5, 2.0]}).far_range == (1.5, 2.0)
