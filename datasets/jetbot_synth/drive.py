"""Closed-loop driving in jetbot_synth: differential-drive kinematics, seeded start states, batched episodes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets.jetbot_synth.world import SceneState, WorldConfig, expert_action, sample_states

__all__ = [
    "BEARING_KINDS",
    "DISTANCE_BANDS",
    "OUTCOMES",
    "DriveConfig",
    "EpisodeLog",
    "StartState",
    "expert_actor",
    "kong_relative",
    "run_episodes",
    "start_states",
    "state_at_pose",
    "step_poses",
]

#: Where the Kong starts: well inside the sim camera's view, near its edge, or out of view.
BEARING_KINDS: tuple[str, ...] = ("in_view", "edge", "out_of_view")
#: How far it starts.
DISTANCE_BANDS: tuple[str, ...] = ("near", "far")
#: How an episode ends.
OUTCOMES: tuple[str, ...] = ("success", "collision", "timeout")

# Kong footprint radius per unit of kong_scale (its bottom lobe, m).
_KONG_RADIUS = 0.042


@dataclass(frozen=True)
class DriveConfig:
    """The robot, the episode rules and the start-state mix.

    Args:
        dt: time step (s); one camera frame and one policy action per step.
        max_wheel_speed: wheel speed at command 1 (m/s).
        track: distance between the wheels (m).
        robot_radius: footprint radius for collisions (m); the camera sits at its centre.
        max_steps: steps before an episode times out.
        success_distance: success when the camera is within this distance of the Kong (m) ...
        success_bearing_deg: ... and the Kong is within this angle of straight ahead.
        near_range: Kong start distance of ``near`` episodes (m).
        far_range: Kong start distance of ``far`` episodes (m).
        in_view_max: ``in_view`` starts have ``|bearing| <= in_view_max * hfov/2`` (sim camera).
        edge_min: ``edge`` starts have ``|bearing| >= edge_min * hfov/2`` and stay in view.
    """

    dt: float = 0.1
    max_wheel_speed: float = 0.4
    track: float = 0.12
    robot_radius: float = 0.08
    max_steps: int = 200
    success_distance: float = 0.4
    success_bearing_deg: float = 20.0
    near_range: tuple[float, float] = (0.6, 1.0)
    far_range: tuple[float, float] = (1.6, 2.4)
    in_view_max: float = 0.5
    edge_min: float = 0.75

    def __post_init__(self) -> None:
        for name in ("dt", "max_wheel_speed", "track", "success_distance"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"DriveConfig.{name} must be > 0, got {getattr(self, name)}")
        if int(self.max_steps) < 1:
            raise ValueError(f"DriveConfig.max_steps must be >= 1, got {self.max_steps}")
        for name in ("near_range", "far_range"):
            lo, hi = getattr(self, name)
            if not self.success_distance < lo <= hi:
                raise ValueError(f"DriveConfig.{name} {getattr(self, name)} must start beyond "
                                 f"success_distance ({self.success_distance}) and be ordered")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriveConfig:
        """Build from a plain dict (config); unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"closed_loop.drive: unknown key(s) {unknown}; valid: {sorted(names)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, (list, tuple)) else v
                                  for k, v in d.items()}
        return cls(**kwargs)


# ---------------------------------------------------------------------------- kinematics


def step_poses(poses: np.ndarray, actions: np.ndarray, drive: DriveConfig) -> np.ndarray:
    """Advance differential-drive robots by one time step (exact arc integration).

    Wheel commands are clipped to [-1, 1]; forward speed ``v = max_wheel_speed * (l + r) / 2``,
    turn rate ``w = max_wheel_speed * (r - l) / track`` (right wheel faster = turning left, the
    positive yaw). A constant command drives a circle of radius ``v / w``.

    Args:
        poses: ``(x, y, yaw)`` in the start frame (m, m, rad).
        actions: ``(left, right)`` wheel commands.
        drive: the robot.

    Returns:
        The new poses (float64).

    Shape:
        - poses: :math:`(N, 3)`; actions: :math:`(N, 2)`; output: :math:`(N, 3)`.
    """
    p = np.asarray(poses, np.float64)
    a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
    if p.ndim != 2 or p.shape[1] != 3 or a.shape != (len(p), 2):
        raise ValueError(f"poses must be (N, 3) and actions (N, 2); got {p.shape} and {a.shape}")
    v = drive.max_wheel_speed * (a[:, 0] + a[:, 1]) / 2.0
    w = drive.max_wheel_speed * (a[:, 1] - a[:, 0]) / drive.track
    th = p[:, 2]
    dth = w * drive.dt
    small = np.abs(dth) < 1e-9
    safe_w = np.where(small, 1.0, w)
    # exact arc; a straight segment where the rotation is negligible
    dx = np.where(small, v * drive.dt * np.cos(th), v / safe_w * (np.sin(th + dth) - np.sin(th)))
    dy = np.where(small, v * drive.dt * np.sin(th), -v / safe_w * (np.cos(th + dth) - np.cos(th)))
    yaw = np.angle(np.exp(1j * (th + dth)))  # wrapped to (-pi, pi]
    return np.stack([p[:, 0] + dx, p[:, 1] + dy, yaw], axis=1)


def _to_robot(x: float, y: float, pose: np.ndarray) -> tuple[float, float]:
    c, s = math.cos(pose[2]), math.sin(pose[2])
    dx, dy = x - pose[0], y - pose[1]
    return c * dx + s * dy, -s * dx + c * dy


def state_at_pose(start: SceneState, pose: np.ndarray) -> SceneState:
    """The scene seen from ``pose``: the start state re-expressed in the moved robot's frame.

    Everything in the world stays put: Kong, distractors, room, the real light's direction and
    the floor texture (its offset and angle are moved so the pattern is fixed to the floor).
    Known limit: the renderer anchors wall and ceiling textures to the camera, so those slide a
    little as the robot moves (the sim look has none).

    Args:
        start: the episode's start state (robot at the origin, facing +x).
        pose: ``(x, y, yaw)`` of the robot in the start frame.

    Returns:
        A :class:`SceneState` in the robot frame at ``pose``.
    """
    pose = np.asarray(pose, np.float64)
    yaw_deg = math.degrees(float(pose[2]))
    kx, ky = _to_robot(*start.kong_xy, pose)
    rc = _to_robot(*start.room_center, pose)
    dis = tuple(dataclasses.replace(d, x=q[0], y=q[1], yaw_deg=d.yaw_deg - yaw_deg)
                for d in start.distractors for q in (_to_robot(d.x, d.y, pose),))
    a0 = math.radians(start.texture_angle_deg)
    ou, ov = start.texture_offset
    off = (ou + math.cos(a0) * pose[0] + math.sin(a0) * pose[1],
           ov - math.sin(a0) * pose[0] + math.cos(a0) * pose[1])
    return dataclasses.replace(
        start,
        kong_distance=math.hypot(kx, ky),
        kong_bearing_deg=math.degrees(math.atan2(ky, kx)),
        kong_yaw_deg=start.kong_yaw_deg - yaw_deg,
        room_center=(float(rc[0]), float(rc[1])),
        room_yaw_deg=start.room_yaw_deg - yaw_deg,
        distractors=dis,
        light_azimuth_deg=start.light_azimuth_deg - yaw_deg,
        texture_offset=(float(off[0]), float(off[1])),
        texture_angle_deg=start.texture_angle_deg - yaw_deg,
    )


def kong_relative(start: SceneState, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) and bearing (deg, positive = left) of the Kong from each pose.

    Shape:
        - poses: :math:`(N, 3)`; outputs: :math:`(N,)` each.
    """
    p = np.asarray(poses, np.float64).reshape(-1, 3)
    kx, ky = start.kong_xy
    dx, dy = kx - p[:, 0], ky - p[:, 1]
    bearing = np.degrees(np.angle(np.exp(1j * (np.arctan2(dy, dx) - p[:, 2]))))
    return np.hypot(dx, dy), bearing


def _collides(start: SceneState, pose: np.ndarray, drive: DriveConfig) -> bool:
    x, y = float(pose[0]), float(pose[1])
    r = drive.robot_radius
    for d in start.distractors:
        if math.hypot(x - d.x, y - d.y) < d.radius + r:
            return True
    kx, ky = start.kong_xy
    if math.hypot(x - kx, y - ky) < _KONG_RADIUS * start.kong_scale + r:
        return True
    c, s = math.cos(math.radians(start.room_yaw_deg)), math.sin(math.radians(start.room_yaw_deg))
    dx, dy = x - start.room_center[0], y - start.room_center[1]
    hx, hy = start.room_half_extents
    return abs(c * dx + s * dy) > hx - r or abs(-s * dx + c * dy) > hy - r


# ---------------------------------------------------------------------------- start states


@dataclass(frozen=True)
class StartState:
    """One episode's start: the scene (robot at the origin facing +x) and its category.

    Args:
        index: the episode's index in its set (seeds its scene and its camera noise).
        state: the scene state at the start.
        bearing_kind: one of :data:`BEARING_KINDS`.
        distance_band: one of :data:`DISTANCE_BANDS`.
    """

    index: int
    state: SceneState
    bearing_kind: str
    distance_band: str

    @property
    def category(self) -> str:
        """``"<bearing_kind>/<distance_band>"``, e.g. ``"edge/far"``."""
        return f"{self.bearing_kind}/{self.distance_band}"


def start_states(n: int, seed: int, world: WorldConfig, drive: DriveConfig | None = None
                 ) -> list[StartState]:
    """Fixed, seeded episode starts, cycling through every bearing kind × distance band.

    Episode ``i`` has category ``i % 6`` (in_view/near, in_view/far, edge/near, ...) and its own
    random stream (``SeedSequence(seed).spawn``), so the first k episodes of a set of n are the
    set of k, whatever n is. Rooms, distractors, lights and floors are drawn as in the dataset
    (:func:`datasets.jetbot_synth.world.sample_states`), the Kong's place by the category.

    Args:
        n: number of episodes.
        seed: the set's seed.
        world: the world.
        drive: the start-state ranges (default :class:`DriveConfig`).

    Returns:
        ``n`` :class:`StartState`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    drive = drive or DriveConfig()
    half = world.sim_hfov_deg / 2.0
    cats = [(b, d) for b in BEARING_KINDS for d in DISTANCE_BANDS]
    seqs = np.random.SeedSequence([int(seed), 0x5EED]).spawn(n)
    out = []
    for i in range(n):
        kind, band = cats[i % len(cats)]
        cfg = dataclasses.replace(
            world, kong_distance_range=drive.near_range if band == "near" else drive.far_range,
            out_of_view_fraction=1.0 if kind == "out_of_view" else 0.0)
        rng = np.random.default_rng(seqs[i])
        for _ in range(10_000):
            st = sample_states(1, rng, cfg)[0]
            b = abs(st.kong_bearing_deg)
            if kind == "in_view" and b > drive.in_view_max * half:
                continue
            if kind == "edge" and b < drive.edge_min * half:
                continue
            break
        else:  # pragma: no cover - the accepted share is > 25 %
            raise RuntimeError(f"could not sample a {kind}/{band} start")
        out.append(StartState(i, st, kind, band))
    return out


# ---------------------------------------------------------------------------- episodes


@dataclass
class EpisodeLog:
    """What happened in a set of episodes driven together.

    Attributes:
        poses: pose before each step, ``(x, y, yaw)``; rows past an episode's end repeat its
            last pose.
        actions: the action taken at each step (NaN past the end).
        steps: steps each episode ran.
        outcome: per episode, one of :data:`OUTCOMES`.
        path_length: distance driven (m).
        final_distance: camera–Kong distance at the end (m).

    Shape:
        - poses: :math:`(E, T + 1, 3)`; actions: :math:`(E, T, 2)`; the rest :math:`(E,)`.
    """

    poses: np.ndarray
    actions: np.ndarray
    steps: np.ndarray
    outcome: list[str]
    path_length: np.ndarray
    final_distance: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> np.ndarray:
        """Boolean per episode."""
        return np.array([o == "success" for o in self.outcome], dtype=bool)


#: ``actor(episode ids, scene states at the current poses, step) -> actions (N, 2)``.
Actor = Callable[[np.ndarray, list[SceneState], int], np.ndarray]


def expert_actor(world: WorldConfig) -> Actor:
    """The expert as an actor: its action from the true scene state (no camera).

    Args:
        world: the world (the expert's gains).

    Returns:
        An actor for :func:`run_episodes`.
    """
    def act(ids: np.ndarray, states: list[SceneState], t: int) -> np.ndarray:
        if not states:
            return np.zeros((0, 2), np.float32)
        return np.stack([expert_action(s, world) for s in states])

    return act


def _reached(start: SceneState, pose: np.ndarray, drive: DriveConfig) -> bool:
    d, b = kong_relative(start, pose[None])
    return bool(d[0] <= drive.success_distance and abs(b[0]) <= drive.success_bearing_deg)


def run_episodes(starts: Sequence[StartState], actor: Actor, drive: DriveConfig) -> EpisodeLog:
    """Drive every episode in closed loop, all active ones stepped together.

    Each step: the scene at every active episode's pose (:func:`state_at_pose`) goes to
    ``actor`` in one batch (which renders, translates and runs the policy), the actions move the
    robots (:func:`step_poses`), then an episode ends on success (within ``success_distance`` of
    the Kong and facing it), on a collision (distractor, Kong or wall within the robot's radius)
    or after ``max_steps``. Success is checked before collision, and also at the start.

    Args:
        starts: the episodes.
        actor: maps (episode ids, scene states, step) to actions, see :data:`Actor`.
        drive: kinematics and rules.

    Returns:
        An :class:`EpisodeLog`.
    """
    e, t_max = len(starts), int(drive.max_steps)
    poses = np.full((e, t_max + 1, 3), np.nan)
    poses[:, 0] = 0.0
    actions = np.full((e, t_max, 2), np.nan)
    steps = np.zeros(e, dtype=np.int64)
    outcome = ["timeout"] * e
    path = np.zeros(e)
    active = np.ones(e, dtype=bool)
    for i, s in enumerate(starts):
        if _reached(s.state, poses[i, 0], drive):
            active[i] = False
            outcome[i] = "success"
    for t in range(t_max):
        idx = [int(i) for i in np.flatnonzero(active)]
        if not idx:
            break
        cur = poses[idx, t]
        states = [state_at_pose(starts[i].state, cur[k]) for k, i in enumerate(idx)]
        ids = np.array([starts[i].index for i in idx], dtype=np.int64)
        a = np.asarray(actor(ids, states, t), np.float64)
        if a.shape != (len(idx), 2):
            raise ValueError(f"actor returned actions of shape {a.shape}, expected ({len(idx)}, 2)")
        new = step_poses(cur, a, drive)
        actions[idx, t] = a
        poses[idx, t + 1] = new
        path[idx] += np.hypot(new[:, 0] - cur[:, 0], new[:, 1] - cur[:, 1])
        steps[idx] += 1
        for k, i in enumerate(idx):
            if _reached(starts[i].state, new[k], drive):
                outcome[i], active[i] = "success", False
            elif _collides(starts[i].state, new[k], drive):
                outcome[i], active[i] = "collision", False
    # rows past an episode's end repeat its final pose (plots, distances)
    for i in range(e):
        poses[i, steps[i] + 1:] = poses[i, steps[i]]
    final = np.array([kong_relative(s.state, poses[i, steps[i]][None])[0][0]
                      for i, s in enumerate(starts)]) if e else np.zeros(0)
    return EpisodeLog(poses=poses, actions=actions, steps=steps, outcome=outcome,
                      path_length=path, final_distance=final, info={"dt": drive.dt})
