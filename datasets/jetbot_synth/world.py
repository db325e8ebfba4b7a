"""The jetbot_synth world: configuration, sampled scene states, the cameras and the expert policy."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from translate.camera import CameraModel, CameraRig
from translate.metrics import turn_direction  # re-exported: one definition, in translate

__all__ = [
    "DISTRACTOR_KINDS",
    "FLOOR_TYPES",
    "Distractor",
    "RealStyle",
    "SceneState",
    "WorldConfig",
    "camera_rotation",
    "expert_action",
    "expert_actions",
    "kong_in_view",
    "kong_lobes",
    "make_rig",
    "sample_states",
    "turn_direction",
]

Vec3 = tuple[float, float, float]
DistractorKind = Literal["sphere", "box", "cylinder"]
DISTRACTOR_KINDS: tuple[str, ...] = ("sphere", "box", "cylinder")
FLOOR_TYPES: tuple[str, ...] = ("wood", "carpet", "tiles")

# Kong lobes, bottom to top, for kong_scale = 1: (height of centre, horizontal radius, vertical
# radius) in metres. Overlapping squashed spheres, 0.108 m tall, like the classic red toy.
_KONG_LOBES: tuple[tuple[float, float, float], ...] = (
    (0.032, 0.042, 0.032),
    (0.071, 0.031, 0.022),
    (0.094, 0.021, 0.014),
)
# How far (m, per unit of lobe height) the upper lobes lean along the Kong's yaw: makes yaw visible.
_KONG_LEAN = 0.08

# Linear-RGB albedo palettes. Reddish ones make the search non-trivial; none is the Kong's red.
_REDDISH = ((0.80, 0.22, 0.03), (0.85, 0.32, 0.30), (0.30, 0.12, 0.05), (0.65, 0.08, 0.40),
            (0.90, 0.45, 0.08))
_OTHER = ((0.05, 0.15, 0.60), (0.08, 0.40, 0.10), (0.75, 0.65, 0.05), (0.70, 0.70, 0.70),
          (0.25, 0.25, 0.27), (0.30, 0.10, 0.45), (0.05, 0.40, 0.40), (0.03, 0.03, 0.03),
          (0.55, 0.40, 0.25))
_WOODS = (((0.42, 0.24, 0.11), (0.30, 0.16, 0.07)), ((0.55, 0.38, 0.20), (0.42, 0.27, 0.13)),
          ((0.22, 0.11, 0.05), (0.14, 0.07, 0.03)), ((0.50, 0.30, 0.15), (0.35, 0.19, 0.08)))
_CARPETS = (((0.25, 0.25, 0.26), (0.18, 0.18, 0.19)), ((0.35, 0.30, 0.22), (0.28, 0.23, 0.16)),
            ((0.12, 0.16, 0.26), (0.08, 0.11, 0.19)), ((0.18, 0.22, 0.15), (0.13, 0.16, 0.10)))
_TILES = (((0.62, 0.60, 0.55), (0.35, 0.33, 0.30)), ((0.45, 0.45, 0.47), (0.20, 0.20, 0.22)),
          ((0.55, 0.45, 0.33), (0.40, 0.30, 0.20)), ((0.70, 0.70, 0.70), (0.10, 0.10, 0.10)))
_WALLS = ((0.62, 0.58, 0.48), (0.50, 0.56, 0.62), (0.70, 0.70, 0.66), (0.45, 0.52, 0.40),
          (0.65, 0.50, 0.42), (0.40, 0.40, 0.42))


@dataclass(frozen=True)
class RealStyle:
    """Every knob of the REAL look: change these to widen or narrow the sim-to-real gap.

    Colours are linear RGB; the camera pipeline runs lens blur -> vignetting -> sensor noise ->
    white balance -> saturation -> gamma -> JPEG, like a cheap camera's ISP.

    Setting every knob to its "off" value (``material_mix=0, light_mix=0, texture_strength=0,
    specular=0, ambient_occlusion=0, shadow_softness=0, auto_exposure=False, wb_gains=(1, 1, 1),
    saturation=1, vignetting=0, blur_sigma=0, shot_noise=0, read_noise=0, black_level=0``) leaves
    only the lens: the real frame is then the sim scene seen through the fisheye.

    Args:
        material_mix: 0 = the sim's flat floor/wall colours, 1 = each state's own floor and wall
            colours (wood, carpet, tiles, paint).
        light_mix: 0 = the sim's light, 1 = each state's own light (direction, warm colour,
            intensity, ambient).
        texture_strength: 0 = flat materials (sim-like), 1 = full procedural textures.
        floor_types: floor materials to draw from ("wood", "carpet", "tiles").
        wb_gains: per-channel gains after the sensor; R > 1 > B is the Jetbot's reddish cast.
        saturation: 1 = unchanged, < 1 washes colours out (no colour-correction matrix).
        exposure: exposure multiplier applied after auto exposure.
        auto_exposure: scale each frame so its mean linear luminance is ``ae_target``.
        ae_target: auto-exposure target (mean linear luminance before white balance).
        light_intensity_range: per-state intensity of the directional (sun/lamp) light.
        light_elevation_deg_range: per-state light elevation above the floor.
        light_warmth_range: per-state warmth, 0 = white, 1 = tungsten orange.
        ambient_range: per-state ambient (sky/bounce) light level.
        shadow_softness: angular radius of the light in radians (penumbra width per metre).
        ambient_occlusion: strength of contact darkening under objects.
        specular: Blinn-Phong strength on the Kong's rubber (other materials scale from it).
        shininess: Blinn-Phong exponent on the Kong.
        vignetting: brightness lost in the image corners (0 = none).
        blur_sigma: Gaussian lens blur in pixels at 128 px (scaled with the image size).
        shot_noise: shot-noise variance per unit of linear signal.
        read_noise: read-noise standard deviation (linear units).
        black_level: raised black (linear offset added before gamma).
        gamma: display gamma of the camera's tone curve.
        jpeg_quality: JPEG quality of saved (and ``jpeg=True`` round-tripped) real frames: 90, as
            ``record_real.py`` saves them (q75 smears the small red Kong enough that even a perfect
            translator could not recover it).
    """

    material_mix: float = 1.0
    light_mix: float = 1.0
    texture_strength: float = 1.0
    floor_types: tuple[str, ...] = FLOOR_TYPES
    wb_gains: Vec3 = (1.38, 1.0, 0.70)
    saturation: float = 0.85
    exposure: float = 1.0
    auto_exposure: bool = True
    ae_target: float = 0.20
    light_intensity_range: tuple[float, float] = (0.7, 1.5)
    light_elevation_deg_range: tuple[float, float] = (25.0, 70.0)
    light_warmth_range: tuple[float, float] = (0.4, 1.0)
    ambient_range: tuple[float, float] = (0.20, 0.40)
    shadow_softness: float = 0.08
    ambient_occlusion: float = 0.6
    specular: float = 0.5
    shininess: float = 30.0
    vignetting: float = 0.5
    blur_sigma: float = 0.7
    shot_noise: float = 0.006
    read_noise: float = 0.015
    black_level: float = 0.015
    gamma: float = 2.2
    jpeg_quality: int = 90


@dataclass(frozen=True)
class WorldConfig:
    """The world: image size, room, cameras, object counts, the sim look, the expert, the real look.

    Args:
        size: square image size in pixels (sim and real).
        camera_height: camera height above the floor (m).
        camera_pitch_deg: camera pitch below the horizon (deg).
        sim_hfov_deg: horizontal FOV of the pinhole sim camera.
        real_hfov_deg: nominal horizontal FOV of the fisheye real camera (before the k-terms).
        real_dist: OpenCV fisheye coefficients (k1, k2, k3, k4) of the real camera.
        room_half_extent_range: half width/length of the room (m).
        room_height: wall height, where the ceiling is (m).
        kong_distance_range: Kong distance from the camera (m).
        kong_scale_range: Kong size multiplier.
        out_of_view_fraction: fraction of states whose Kong is outside the sim camera's view.
        n_distractors_range: inclusive range of the number of distractor objects.
        max_per_kind: most distractors of one kind (sphere, box, cylinder each).
        reddish_fraction: fraction of distractors with reddish/orange colours.
        kong_color: Kong albedo (linear RGB), both looks.
        sim_floor_color: flat sim floor albedo.
        sim_wall_color: flat sim wall albedo.
        sim_ceiling_color: flat sim ceiling albedo.
        sim_light_dir_deg: sim light (azimuth, elevation) in the robot frame, degrees.
        sim_light_intensity: sim directional light intensity.
        sim_ambient: sim ambient light.
        sim_shadows: draw hard shadows in sim.
        turn_gain: expert turn at the edge of the sim view.
        max_forward: expert forward speed when far.
        stop_distance: the expert stops driving forward at this distance (m).
        full_speed_distance: the expert drives at ``max_forward`` from this distance on (m).
        search_action: (left, right) when the Kong is out of the sim view: rotate in place.
        real: the real look (:class:`RealStyle`).
    """

    size: int = 128
    camera_height: float = 0.11
    camera_pitch_deg: float = 12.0
    sim_hfov_deg: float = 75.0
    real_hfov_deg: float = 130.0
    real_dist: tuple[float, float, float, float] = (0.06, 0.01, 0.0, 0.0)
    room_half_extent_range: tuple[float, float] = (1.8, 3.5)
    room_height: float = 2.5
    kong_distance_range: tuple[float, float] = (0.2, 2.5)
    kong_scale_range: tuple[float, float] = (0.9, 1.15)
    out_of_view_fraction: float = 0.25
    n_distractors_range: tuple[int, int] = (1, 6)
    max_per_kind: int = 2
    reddish_fraction: float = 0.3
    kong_color: Vec3 = (0.60, 0.014, 0.012)
    sim_floor_color: Vec3 = (0.30, 0.30, 0.30)
    sim_wall_color: Vec3 = (0.55, 0.55, 0.58)
    sim_ceiling_color: Vec3 = (0.70, 0.70, 0.70)
    sim_light_dir_deg: tuple[float, float] = (-30.0, 60.0)
    sim_light_intensity: float = 0.85
    sim_ambient: float = 0.40
    sim_shadows: bool = True
    turn_gain: float = 0.5
    max_forward: float = 0.6
    stop_distance: float = 0.25
    full_speed_distance: float = 1.5
    search_action: tuple[float, float] = (-0.5, 0.5)
    real: RealStyle = field(default_factory=RealStyle)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"WorldConfig.size must be an integer >= 8, got {self.size!r}")
        if not 0.0 <= self.out_of_view_fraction <= 1.0:
            raise ValueError(
                f"WorldConfig.out_of_view_fraction must be in [0, 1], got {self.out_of_view_fraction}"
            )
        lo, hi = self.n_distractors_range
        if not 0 <= lo <= hi <= 3 * self.max_per_kind:
            raise ValueError(
                f"WorldConfig.n_distractors_range {self.n_distractors_range} must satisfy "
                f"0 <= lo <= hi <= 3 * max_per_kind ({3 * self.max_per_kind})"
            )
        bad = [t for t in self.real.floor_types if t not in FLOOR_TYPES]
        if bad or not self.real.floor_types:
            raise ValueError(
                f"RealStyle.floor_types must be a non-empty subset of {FLOOR_TYPES}, "
                f"got {self.real.floor_types}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorldConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error naming them."""
        d = dict(d)
        real = d.pop("real", {})
        return cls(**_tuplify(cls, d), real=RealStyle(**_tuplify(RealStyle, dict(real))))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _tuplify(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    return {k: tuple(_tuplify_seq(v)) if isinstance(v, list) else v for k, v in d.items()}


def _tuplify_seq(v: list[Any]) -> list[Any]:
    return [tuple(x) if isinstance(x, list) else x for x in v]


@dataclass(frozen=True)
class Distractor:
    """One distractor object standing on the floor.

    Args:
        kind: ``"sphere"``, ``"box"`` or ``"cylinder"`` (vertical).
        x: centre, metres forward of the camera (robot frame: x forward, y left, z up).
        y: centre, metres to the left.
        size: full extents (dx, dy, dz) in metres; a sphere uses ``size[0]`` as its diameter, a
            cylinder ``size[0]`` as its diameter and ``size[2]`` as its height.
        yaw_deg: rotation about the vertical (boxes).
        color: linear-RGB albedo (both looks).
    """

    kind: str
    x: float
    y: float
    size: Vec3
    yaw_deg: float
    color: Vec3

    @property
    def radius(self) -> float:
        """Radius of the footprint's bounding circle (m)."""
        if self.kind == "box":
            return 0.5 * math.hypot(self.size[0], self.size[1])
        return 0.5 * self.size[0]


@dataclass(frozen=True)
class SceneState:
    """One sampled world state, rendered both as SIM and as REAL. JSON via to_dict/from_dict.

    Angles are degrees; positions are in the robot frame (x forward, y left, z up, camera above
    the origin).

    Args:
        kong_distance: horizontal distance camera -> Kong (m).
        kong_bearing_deg: direction of the Kong; positive = to the LEFT.
        kong_yaw_deg: the Kong's heading (its upper lobes lean that way).
        kong_scale: size multiplier of the Kong.
        room_center: room centre (x, y) in the robot frame.
        room_half_extents: half length/width of the room along its own axes.
        room_yaw_deg: rotation of the room's axes.
        distractors: the distractor objects.
        light_azimuth_deg: REAL light direction (towards the light), azimuth from x towards y.
        light_elevation_deg: REAL light elevation above the floor.
        light_intensity: REAL directional light intensity.
        light_color: REAL light colour (linear RGB).
        ambient: REAL ambient light level.
        floor_type: REAL floor material (``"wood"``, ``"carpet"``, ``"tiles"``).
        floor_color: REAL main floor colour.
        floor_color2: REAL second floor colour (plank variation, grout, alternate tiles).
        wall_color: REAL wall paint colour.
        texture_seed: REAL texture choice (which wood, carpet, tile and wall pattern).
        texture_offset: REAL floor texture offset (m).
        texture_angle_deg: REAL floor texture rotation.
        texture_scale: REAL floor pattern size multiplier.
    """

    kong_distance: float
    kong_bearing_deg: float
    kong_yaw_deg: float
    kong_scale: float
    room_center: tuple[float, float]
    room_half_extents: tuple[float, float]
    room_yaw_deg: float
    distractors: tuple[Distractor, ...]
    light_azimuth_deg: float
    light_elevation_deg: float
    light_intensity: float
    light_color: Vec3
    ambient: float
    floor_type: str
    floor_color: Vec3
    floor_color2: Vec3
    wall_color: Vec3
    texture_seed: int
    texture_offset: tuple[float, float]
    texture_angle_deg: float
    texture_scale: float

    @property
    def kong_xy(self) -> tuple[float, float]:
        """Kong position (x, y) in the robot frame."""
        b = math.radians(self.kong_bearing_deg)
        return self.kong_distance * math.cos(b), self.kong_distance * math.sin(b)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it exactly (floats round-trip in JSON)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneState:
        """Rebuild a state from :meth:`to_dict` output."""
        d = dict(d)
        dis = tuple(Distractor(**_tuplify(Distractor, dict(x))) for x in d.pop("distractors", []))
        return cls(**_tuplify(cls, d), distractors=dis)


# ---------------------------------------------------------------------------- cameras


def make_rig(config: WorldConfig) -> CameraRig:
    """The two cameras of the world at ``config.size``: fisheye REAL, pinhole SIM.

    Args:
        config: the world.

    Returns:
        ``CameraRig(real=fisheye, sim=pinhole)``; both share the pose of :func:`camera_rotation`.
    """
    s = config.size
    real = CameraModel.from_fov(s, s, config.real_hfov_deg, model="fisheye",
                                dist=tuple(config.real_dist))
    sim = CameraModel.from_fov(s, s, config.sim_hfov_deg, model="pinhole")
    return CameraRig(real=real, sim=sim)


def camera_rotation(pitch_deg: float) -> np.ndarray:
    """Rotation from camera axes (OpenCV: x right, y down, z forward) to the robot frame.

    Args:
        pitch_deg: pitch below the horizon.

    Returns:
        (3, 3) float64 matrix whose columns are the camera axes in the robot frame.
    """
    p = math.radians(pitch_deg)
    x_cam = (0.0, -1.0, 0.0)
    y_cam = (-math.sin(p), 0.0, -math.cos(p))
    z_cam = (math.cos(p), 0.0, -math.sin(p))
    return np.array([x_cam, y_cam, z_cam], dtype=np.float64).T


def kong_lobes(state: SceneState) -> list[tuple[Vec3, float, float]]:
    """The Kong's three lobes as vertical-axis ellipsoids, bottom to top.

    Args:
        state: the scene state.

    Returns:
        ``[(centre (x, y, z), horizontal radius, vertical radius), ...]`` in the robot frame.
    """
    kx, ky = state.kong_xy
    yaw = math.radians(state.kong_yaw_deg)
    s = state.kong_scale
    out = []
    for z, rxy, rz in _KONG_LOBES:
        lean = _KONG_LEAN * (z - _KONG_LOBES[0][0]) * s
        out.append(((kx + lean * math.cos(yaw), ky + lean * math.sin(yaw), z * s), rxy * s, rz * s))
    return out


def _camera_coords(config: WorldConfig, point: np.ndarray) -> np.ndarray:
    rot = camera_rotation(config.camera_pitch_deg)
    return rot.T @ (point - np.array([0.0, 0.0, config.camera_height]))


def _kong_centre(state: SceneState) -> np.ndarray:
    kx, ky = state.kong_xy
    return np.array([kx, ky, _KONG_LOBES[1][0] * state.kong_scale])


def _horizontal_angle(config: WorldConfig, point: np.ndarray) -> float:
    """Angle of ``point`` off the sim camera's axis in the image's horizontal direction (rad);
    pi for points behind the camera."""
    xc, _, zc = _camera_coords(config, point)
    if zc <= 1e-9:
        return math.pi
    return abs(math.atan2(xc, zc))


def kong_in_view(state: SceneState, config: WorldConfig) -> bool:
    """Whether the Kong's centre projects inside the SIM camera's image (horizontally).

    Args:
        state: the scene state.
        config: the world.

    Returns:
        True when the middle lobe's centre is inside the sim frame.
    """
    return _horizontal_angle(config, _kong_centre(state)) <= math.radians(config.sim_hfov_deg) / 2


# ---------------------------------------------------------------------------- expert


def expert_action(state: SceneState, config: WorldConfig) -> np.ndarray:
    """The expert's wheel commands (left, right) in [-1, 1] for one state.

    With bearing ``b`` (positive = Kong to the left), ``h = sim_hfov / 2`` and distance ``d``::

        if the Kong is in the sim camera's view (:func:`kong_in_view`):
            turn    = turn_gain * clip(b / h, -1, 1)
            forward = max_forward * clip((d - stop_distance)
                                         / (full_speed_distance - stop_distance), 0, 1)
            (left, right) = clip((forward - turn, forward + turn), -1, 1)
        else:
            (left, right) = search_action          # rotate in place, always the same way

    So a Kong to the left makes the right wheel faster; close to the Kong (``d <= 0.25`` m by
    default) the expert only turns. The search direction is fixed, so the behaviour is a function
    of the sim image alone.

    Args:
        state: the scene state.
        config: the world.

    Returns:
        Array of shape (2,), float32: (left, right).
    """
    if not kong_in_view(state, config):
        return np.asarray(config.search_action, dtype=np.float32)
    half = math.radians(config.sim_hfov_deg) / 2
    b = math.radians(state.kong_bearing_deg)
    turn = config.turn_gain * float(np.clip(b / half, -1.0, 1.0))
    span = max(config.full_speed_distance - config.stop_distance, 1e-6)
    fwd = config.max_forward * float(np.clip((state.kong_distance - config.stop_distance) / span,
                                             0.0, 1.0))
    return np.clip(np.array([fwd - turn, fwd + turn], dtype=np.float32), -1.0, 1.0)


def expert_actions(states: list[SceneState], config: WorldConfig) -> np.ndarray:
    """:func:`expert_action` for many states.

    Shape:
        - output: :math:`(N, 2)`, float32
    """
    if not states:
        return np.zeros((0, 2), dtype=np.float32)
    return np.stack([expert_action(s, config) for s in states])


# ---------------------------------------------------------------------------- sampling


def _rot2(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def _jitter(rng: np.random.Generator, color: tuple[float, ...], amount: float) -> Vec3:
    c = np.clip(np.asarray(color) * rng.uniform(1 - amount, 1 + amount, size=3), 0.0, 0.95)
    return (float(c[0]), float(c[1]), float(c[2]))


def _inside_room(p: np.ndarray, centre: np.ndarray, half: np.ndarray, yaw: float,
                 margin: float) -> bool:
    q = _rot2(yaw).T @ (p - centre)
    return bool(abs(q[0]) <= half[0] - margin and abs(q[1]) <= half[1] - margin)


def _segment_distance(p: np.ndarray, b: np.ndarray) -> float:
    """Distance from point ``p`` to the segment from the origin to ``b`` (2D)."""
    bb = float(b @ b)
    t = 0.0 if bb <= 0 else float(np.clip((p @ b) / bb, 0.0, 1.0))
    return float(np.linalg.norm(p - t * b))


def _sample_kong(rng: np.random.Generator, config: WorldConfig) -> tuple[float, float, float]:
    """(distance, bearing_deg, scale) with the in/out-of-view split and a margin at the edge."""
    half = math.radians(config.sim_hfov_deg) / 2
    out_of_view = rng.random() < config.out_of_view_fraction
    lo, hi = config.kong_distance_range
    for _ in range(1000):
        d = float(rng.uniform(lo, hi))
        scale = float(rng.uniform(*config.kong_scale_range))
        if out_of_view:
            b = float(rng.uniform(half, math.pi)) * (1 if rng.random() < 0.5 else -1)
        else:
            b = float(rng.uniform(-half, half))
        kx, ky = d * math.cos(b), d * math.sin(b)
        centre = np.array([kx, ky, _KONG_LOBES[1][0] * scale])
        alpha = _horizontal_angle(config, centre)
        rho = math.asin(min(1.0, 0.05 * scale / max(float(np.linalg.norm(
            centre - np.array([0, 0, config.camera_height]))), 1e-6)))
        # Keep a margin around the view's edge: an in-view Kong shows its centre, an
        # out-of-view Kong is entirely outside the sim frame, so the label follows the image.
        if out_of_view and (alpha - rho >= half + math.radians(1.0)):
            return d, math.degrees(b), scale
        if not out_of_view and alpha <= half - math.radians(2.0):
            return d, math.degrees(b), scale
    raise RuntimeError("could not sample a Kong placement; check kong_distance_range")


def _sample_one(rng: np.random.Generator, config: WorldConfig) -> SceneState:
    d, bearing_deg, scale = _sample_kong(rng, config)
    b = math.radians(bearing_deg)
    kong = np.array([d * math.cos(b), d * math.sin(b)])
    kong_r = 0.045 * scale

    # Room: place the robot at a random spot and heading inside it so the Kong is inside too.
    for _ in range(1000):
        half = rng.uniform(*config.room_half_extent_range, size=2)
        room_yaw = float(rng.uniform(-math.pi, math.pi))
        robot_in_room = rng.uniform(-(half - 0.4), half - 0.4)
        centre = -(_rot2(room_yaw) @ robot_in_room)
        if _inside_room(kong, centre, half, room_yaw, 0.3):
            break
    else:  # pragma: no cover - rooms are much larger than the Kong's range
        raise RuntimeError("could not place the room; room_half_extent_range too small")

    n = int(rng.integers(config.n_distractors_range[0], config.n_distractors_range[1] + 1))
    counts = dict.fromkeys(DISTRACTOR_KINDS, 0)
    placed: list[Distractor] = []
    for _ in range(n):
        kinds = [k for k in DISTRACTOR_KINDS if counts[k] < config.max_per_kind]
        kind = kinds[int(rng.integers(len(kinds)))]
        palette = _REDDISH if rng.random() < config.reddish_fraction else _OTHER
        color = _jitter(rng, palette[int(rng.integers(len(palette)))], 0.15)
        if kind == "sphere":
            dia = float(rng.uniform(0.05, 0.25))
            size: Vec3 = (dia, dia, dia)
        elif kind == "box":
            size = (float(rng.uniform(0.08, 0.4)), float(rng.uniform(0.08, 0.4)),
                    float(rng.uniform(0.05, 0.45)))
        else:
            dia = float(rng.uniform(0.05, 0.25))
            size = (dia, dia, float(rng.uniform(0.08, 0.5)))
        for _ in range(50):
            # Mostly where the wide real camera looks, sometimes anywhere.
            spread = math.radians(80.0) if rng.random() < 0.85 else math.pi
            ob = float(rng.uniform(-spread, spread))
            od = float(rng.uniform(0.35, 3.5))
            p = np.array([od * math.cos(ob), od * math.sin(ob)])
            cand = Distractor(kind, float(p[0]), float(p[1]), size,
                              float(rng.uniform(-180.0, 180.0)), color)
            r = cand.radius
            if not _inside_room(p, centre, half, room_yaw, r + 0.05):
                continue
            # Never block the line of sight camera -> Kong, never touch the Kong or the robot.
            if _segment_distance(p, kong) < r + kong_r + 0.05:
                continue
            if float(np.linalg.norm(p)) < r + 0.25:
                continue
            if any(float(np.hypot(p[0] - o.x, p[1] - o.y)) < r + o.radius + 0.03 for o in placed):
                continue
            placed.append(cand)
            counts[kind] += 1
            break

    style = config.real
    warmth = float(rng.uniform(*style.light_warmth_range))
    light_color = (1.0, 1.0 - 0.22 * warmth, 1.0 - 0.5 * warmth)
    floor_type = style.floor_types[int(rng.integers(len(style.floor_types)))]
    table = {"wood": _WOODS, "carpet": _CARPETS, "tiles": _TILES}[floor_type]
    c1, c2 = table[int(rng.integers(len(table)))]
    return SceneState(
        kong_distance=d,
        kong_bearing_deg=bearing_deg,
        kong_yaw_deg=float(rng.uniform(-180.0, 180.0)),
        kong_scale=scale,
        room_center=(float(centre[0]), float(centre[1])),
        room_half_extents=(float(half[0]), float(half[1])),
        room_yaw_deg=math.degrees(room_yaw),
        distractors=tuple(placed),
        light_azimuth_deg=float(rng.uniform(-180.0, 180.0)),
        light_elevation_deg=float(rng.uniform(*style.light_elevation_deg_range)),
        light_intensity=float(rng.uniform(*style.light_intensity_range)),
        light_color=light_color,
        ambient=float(rng.uniform(*style.ambient_range)),
        floor_type=floor_type,
        floor_color=_jitter(rng, c1, 0.1),
        floor_color2=_jitter(rng, c2, 0.1),
        wall_color=_jitter(rng, _WALLS[int(rng.integers(len(_WALLS)))], 0.08),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        texture_offset=(float(rng.uniform(0, 10)), float(rng.uniform(0, 10))),
        texture_angle_deg=float(rng.uniform(0.0, 180.0)),
        texture_scale=float(rng.uniform(0.8, 1.25)),
    )


def sample_states(
    n: int,
    seed: int | np.random.SeedSequence | np.random.Generator,
    config: WorldConfig | None = None,
) -> list[SceneState]:
    """Sample ``n`` scene states, deterministically from ``seed``.

    States come from one sequential stream, so the first k states of ``sample_states(n, s)`` are
    ``sample_states(k, s)``.

    Args:
        n: number of states.
        seed: integer seed, a numpy SeedSequence (e.g. one of ``SeedSequence(seed).spawn(k)``),
            or a Generator to continue drawing from (a stream read in pieces).
        config: the world (default :class:`WorldConfig`).

    Returns:
        List of :class:`SceneState`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    config = config or WorldConfig()
    rng = np.random.default_rng(seed)
    return [_sample_one(rng, config) for _ in range(n)]
