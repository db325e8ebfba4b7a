"""Batched CPU ray caster for jetbot_synth: one scene state rendered with the SIM or the REAL look."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from datasets.jetbot_synth.world import (
    DISTRACTOR_KINDS,
    FLOOR_TYPES,
    SceneState,
    WorldConfig,
    camera_rotation,
    kong_lobes,
    make_rig,
)
from translate.camera import CameraModel
from translate.imageio import decode_image, encode_image

__all__ = ["DOMAINS", "Domain", "Renderer", "jpeg_roundtrip"]

Domain = Literal["sim", "real"]
DOMAINS: tuple[str, ...] = ("sim", "real")

# Pixels are processed in square tiles: object and shadow tests are first done per tile (a cone of
# rays against a bounding sphere), so exact per-pixel maths only runs where something can hit.
_TILE = 8
_TP = _TILE * _TILE
# Surface ids: 0 floor, 1 ceiling, 2 walls, 6.. objects (Kong lobes, spheres, boxes, cylinders).
_FLOOR, _CEIL, _WALL0, _OBJ0 = 0, 1, 2, 6
_N_KONG = 3
_KIND_CODE = {"ell": 0, "box": 1, "cyl": 2}
# Shadow rays start this far back towards the camera, off the surface they leave.
_SHADOW_OFFSET = 2e-3
# Pixel rays per chunk: bounds memory and keeps the working set near the caches.
_RAY_BUDGET = 1 << 17

# Texture atlas: tileable patterns of _TEX texels over _TEX_PERIOD metres (1 cm texels), one row
# of tiles per pattern, one column per prefiltered level (Gaussian sigma 0, 1, 2, 4 texels).
_TEX = 256
_TEX_PERIOD = 2.56
_TEX_LEVELS = 4
_PATTERNS: dict[str, tuple[int, ...]] = {
    "wood": (0, 1, 2, 3), "carpet": (4, 5, 6), "tiles": (7, 8, 9, 10), "wall": (11, 12, 13),
}
_N_PATTERNS = 15  # the last one is the ceiling
_SKIRTING = (0.70, 0.68, 0.62)
_AMBIENT_TINT = (0.92, 0.97, 1.05)  # sky/bounce light is a little cooler than the lamp
_NOISE_PAD = 64
_NOISE_BANK = 8


def jpeg_roundtrip(frames: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode frames as JPEG exactly as saving them to ``.jpg`` does.

    Args:
        frames: RGB uint8 frames.
        quality: JPEG quality.

    Returns:
        The decoded frames, same shape.

    Shape:
        - frames: :math:`(N, H, W, 3)`
        - output: :math:`(N, H, W, 3)`
    """
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        out[i] = decode_image(encode_image(f, fmt="jpg", quality=quality))
    return out


# ---------------------------------------------------------------------------- texture atlas


def _noise(rng: np.random.Generator, lo: float, hi: float, beta: float,
           aniso: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Tileable band-limited noise (S, S), mean 0.5, std ~0.17, in [0, 1]."""
    f = np.fft.fftfreq(_TEX) * _TEX
    fr = np.sqrt((f[:, None] * aniso[0]) ** 2 + (f[None, :] * aniso[1]) ** 2)
    amp = np.where((fr >= lo) & (fr <= hi), 1.0 / np.maximum(fr, 1.0) ** (beta / 2), 0.0)
    img = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((_TEX, _TEX))) * amp))
    img = (img - img.mean()) / (img.std() + 1e-12)
    return np.clip(0.5 + 0.17 * img, 0.0, 1.0)


def _blur_wrap(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    f = np.fft.fftfreq(_TEX)
    g = np.exp(-2 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * g))


def _patterns(rng: np.random.Generator) -> list[np.ndarray]:
    """Channels (mix between the surface's two colours, brightness, gloss), each (3, S, S)."""
    s = _TEX
    yy, xx = np.mgrid[0:s, 0:s]
    out = []
    # Wood: staggered planks (width, length in texels), per-plank tone, streaky grain, joints.
    for width, length in ((16, 128), (32, 128), (16, 64), (8, 64)):
        row = yy // width
        stagger = rng.integers(0, length, size=s // width + 1)[row]
        col = ((xx + stagger) % s) // length
        tones = rng.random((s // width + 1, s // length + 1, 2))
        r1, r2 = tones[row, col, 0], tones[row, col, 1]
        grain = _noise(rng, 1, 90, 0.8, aniso=(0.08, 1.0)).T  # streaks along x (the plank)
        shift = rng.integers(0, s, size=s // width + 1)[row]
        grain = grain[yy, (xx + shift) % s]
        bright = (0.86 + 0.28 * r2) * (1.0 + 0.7 * (grain - 0.5))
        joint = (yy % width == 0) | ((xx + stagger) % length == 0)
        bright = np.where(joint, 0.5 * bright, bright)
        out.append(np.stack([r1, bright, np.where(joint, 0.0, 0.35)]))
    # Carpet: blotchy two-tone with fibre noise.
    for lo in (2, 4, 8):
        blob = np.clip(_noise(rng, lo, 4 * lo, 2.0) * 2.2 - 0.6, 0.0, 1.0)
        fibre = _noise(rng, 60, 128, 0.0)
        out.append(np.stack([blob, 0.8 + 0.4 * fibre + 0.2 * (_noise(rng, 8, 32, 1.0) - 0.5),
                             np.zeros((s, s))]))
    # Tiles: (tile size in texels, checkerboard), grout lines, per-tile tone, dirt.
    for size, checker in ((32, True), (32, False), (64, False), (16, False)):
        ti, tj = yy // size, xx // size
        tone = rng.random((s // size, s // size))[ti, tj]
        grout = (yy % size == 0) | (xx % size == 0)
        mix = np.where(grout, 1.0, np.where(checker & ((ti + tj) % 2 == 1), 0.6, 0.0))
        dirt = _noise(rng, 2, 16, 2.0)
        bright = (0.92 + 0.16 * tone) * (0.85 + 0.3 * dirt)
        out.append(np.stack([mix, np.where(grout, 0.8, bright), np.where(grout, 0.0, 0.7)]))
    # Walls (rows = height, 1 cm each from the floor): paint with stains, skirting board.
    for lo in (1, 2, 3):
        stain = _noise(rng, lo, 12, 2.5)
        speck = _noise(rng, 30, 128, 0.0)
        bright = (0.78 + 0.44 * stain) * (0.96 + 0.08 * speck)
        board = yy < 8
        bright = np.where(yy == 8, 0.55, np.where(board, 0.95 + 0.1 * speck, bright))
        out.append(np.stack([board.astype(np.float64), bright, np.where(board, 0.3, 0.03)]))
    # Ceiling: plain paint in the trim colour (mix 1).
    out.append(np.stack([np.ones((s, s)), 0.97 + 0.06 * _noise(rng, 1, 8, 2.0),
                         np.zeros((s, s))]))
    for chans in out:
        # Brightness averages 1, so a surface's mean colour is its base colour at any strength.
        chans[1] /= chans[1].mean()
    return out


@functools.lru_cache(maxsize=4)
def _atlas(strength: float) -> torch.Tensor:
    """All patterns at all prefilter levels, (1, 3, P*(S+1), L*(S+1)); seeded, so fixed forever.

    ``strength`` scales every pattern's contrast about its mean (0 = flat materials)."""
    rng = np.random.default_rng(20240611)
    pats = _patterns(rng)
    assert len(pats) == _N_PATTERNS
    t1 = _TEX + 1
    atlas = np.zeros((3, _N_PATTERNS * t1, _TEX_LEVELS * t1), dtype=np.float32)
    for p, chans in enumerate(pats):
        chans = chans.mean(axis=(1, 2), keepdims=True) * (1 - strength) + strength * chans
        for lev in range(_TEX_LEVELS):
            sigma = 0.0 if lev == 0 else float(2 ** (lev - 1))
            tile = np.stack([_blur_wrap(c, sigma) for c in chans])
            tile = np.concatenate([tile, tile[:, :1]], axis=1)  # wrapped row/column:
            tile = np.concatenate([tile, tile[:, :, :1]], axis=2)  # seamless bilinear
            atlas[:, p * t1 : (p + 1) * t1, lev * t1 : (lev + 1) * t1] = tile
    return torch.from_numpy(atlas)[None]


# ---------------------------------------------------------------------------- helpers


_MASK64 = (1 << 64) - 1
_PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _splitmix64(x: int) -> int:
    """A well-mixed 64-bit hash of an integer (SplitMix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _light_dir(az_deg: float, el_deg: float) -> tuple[float, float, float]:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def _pack_key(t: torch.Tensor, sid: torch.Tensor) -> torch.Tensor:
    """(distance, surface id) -> one int64 that orders by distance (non-negative float bits)."""
    bits = t.clamp_min(0.0).contiguous().view(torch.int32).to(torch.int64)
    return (bits << 8) | sid.to(torch.int64)


def _unpack_key(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = (key >> 8).to(torch.int32).view(torch.float32)
    return t, key & 0xFF


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable binomial blur with variance ~sigma**2, edges replicated. (N, C, H, W)

    A binomial kernel is the discrete Gaussian with the fewest taps (sigma 0.7 is [1, 2, 1] / 4);
    it is applied as ``order`` two-tap averages per axis, cheaper than a depthwise conv on a CPU.
    """
    order = max(1, round(4 * sigma * sigma))
    for i in range(order):
        # Alternate the side of the pad so the kernel stays centred.
        pad = (0, 1) if i % 2 == 0 else (1, 0)
        x = F.pad(img, (*pad, *pad), mode="replicate")
        x = x[..., 1:, :] + x[..., :-1, :]
        img = (x[..., 1:] + x[..., :-1]) * 0.25
    return img


# ---------------------------------------------------------------------------- data holders


@dataclass
class _View:
    """Per-camera precomputed rays in tile-major order (T tiles x 64 pixels)."""

    dx: torch.Tensor  # (T, 64) unit ray directions, robot frame
    dy: torch.Tensor
    dz: torch.Tensor
    valid: torch.Tensor  # (H, W) float: the lens has a ray for this pixel
    t_floor: torch.Tensor  # (T, 64), inf where the ray doesn't go down
    t_ceil: torch.Tensor
    floor_x: torch.Tensor  # (T, 64) where the ray meets the floor plane (0 if it doesn't)
    floor_y: torch.Tensor
    ceil_u: torch.Tensor  # (T, 64) ceiling texture coordinates
    ceil_v: torch.Tensor
    pix_angle: torch.Tensor  # (T, 64) angular pixel size (rad), for texture prefiltering
    axis: torch.Tensor  # (T, 3) tile cone axis
    half_angle: torch.Tensor  # (T,) tile cone half angle (rad)
    sin_half: torch.Tensor  # (T,)
    vignette: torch.Tensor  # (H, W)


@dataclass
class _Scene:
    """A chunk of states as tensors. K object slots: 3 Kong lobes + spheres (ellipsoids), boxes,
    cylinders; unused slots are flagged inactive."""

    n: int
    kinds: list[str]  # per slot: "ell", "box", "cyl"
    c: torch.Tensor  # (N, K, 3) centre (boxes/cylinders: centre of the volume)
    bound: torch.Tensor  # (N, K) bounding-sphere radius
    p: torch.Tensor  # (N, K, 3) ell (r, rz, -), box half sizes, cyl (r, height, -)
    rot: torch.Tensor  # (N, K, 2) (cos, sin) of yaw
    color: torch.Tensor  # (N, K, 3)
    spec: torch.Tensor  # (N, K) specular strength (real look)
    shin: torch.Tensor  # (N, K) Blinn-Phong exponent
    active: torch.Tensor  # (N, K) bool
    wall_n: torch.Tensor  # (N, 4, 2) outward wall normals
    wall_off: torch.Tensor  # (N, 4): inside means n . x <= off
    light: torch.Tensor  # (N, 3) unit direction towards the light
    light_rgb: torch.Tensor  # (N, 3) light colour x intensity
    ambient: torch.Tensor  # (N,)
    floor_uv: torch.Tensor  # (N, 6): u = a x + b y + c, v = d x + e y + f (atlas tiles)
    floor_pattern: torch.Tensor  # (N,) atlas row of the floor pattern
    wall_pattern: torch.Tensor  # (N,)
    texel: torch.Tensor  # (N,) floor texel size in metres
    floor_c1: torch.Tensor  # (N, 3)
    floor_c2: torch.Tensor  # (N, 3)
    wall_c: torch.Tensor  # (N, 3)
    trim_c: torch.Tensor  # (N, 3) skirting board and ceiling


class Renderer:
    """Render scene states as SIM (pinhole, flat shading) or REAL (fisheye, textured, camera ISP).

    Rays are cast analytically in torch on the CPU, batched over frames and pixels, in chunks of
    about 2**17 rays. Objects and shadows are first tested per 8x8 tile of rays against bounding
    spheres, so the exact maths runs only where something can be hit.

    Args:
        config: the world (image size, cameras, looks).
        device: torch device (``"cpu"``).

    Example:
        >>> from datasets.jetbot_synth.world import WorldConfig, sample_states
        >>> cfg = WorldConfig(size=32)
        >>> r = Renderer(cfg)
        >>> r.render(sample_states(2, 0, cfg), "sim").shape
        (2, 32, 32, 3)
    """

    def __init__(self, config: WorldConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or WorldConfig()
        self.device = torch.device(device)
        self.rig = make_rig(self.config)
        self._views = {"sim": self._make_view(self.rig.sim, False),
                       "real": self._make_view(self.rig.real, True)}
        self._noise_bank: torch.Tensor | None = None
        self._has_invalid = {d: bool((v.valid < 1).any()) for d, v in self._views.items()}

    # ------------------------------------------------------------------ setup

    def _tensor(self, a: np.ndarray | Sequence[float], dtype: torch.dtype = torch.float32
                ) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

    def _make_view(self, cam: CameraModel, real: bool) -> _View:
        cfg = self.config
        h, w = cam.height, cam.width
        rays = cam.pixel_rays()  # (H, W, 3) camera frame
        valid = np.isfinite(rays).all(axis=-1)
        rays = np.where(valid[..., None], rays, np.array([0.0, 0.0, 1.0]))
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        world = rays @ camera_rotation(cfg.camera_pitch_deg).T  # (H, W, 3) robot frame
        nb = np.concatenate([world[:, 1:], world[:, -2:-1]], axis=1)
        pix_angle = np.arccos(np.clip((world * nb).sum(-1), -1.0, 1.0))
        # Tile-major order; sizes that are not a multiple of the tile repeat the edge pixels.
        th, tw = -(-h // _TILE), -(-w // _TILE)
        ys = np.minimum(np.arange(th * _TILE), h - 1)
        xs = np.minimum(np.arange(tw * _TILE), w - 1)
        yy = ys.reshape(th, _TILE)[:, None, :, None]
        xx = xs.reshape(tw, _TILE)[None, :, None, :]
        src = np.broadcast_to(yy * w + xx, (th, tw, _TILE, _TILE)).reshape(th * tw, _TP)
        yr, xr = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")

        flat = world.reshape(-1, 3)[src]  # (T, 64, 3)
        dz = flat[..., 2]
        z0 = cfg.camera_height
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(dz < -1e-9, z0 / -dz, np.inf)
            t_ceil = np.where(dz > 1e-9, (cfg.room_height - z0) / dz, np.inf)
            floor_x = np.where(np.isfinite(t_floor), t_floor * flat[..., 0], 0.0)
            floor_y = np.where(np.isfinite(t_floor), t_floor * flat[..., 1], 0.0)
            ceil_u = np.where(np.isfinite(t_ceil), t_ceil * flat[..., 0], 0.0) / _TEX_PERIOD
            ceil_v = np.where(np.isfinite(t_ceil), t_ceil * flat[..., 1], 0.0) / _TEX_PERIOD
        axis = flat.mean(axis=1)
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        cosang = np.clip((flat * axis[:, None]).sum(-1), -1.0, 1.0)
        half_angle = np.arccos(cosang.min(axis=1)) + 1e-3

        if real:
            r = np.hypot(xr - cam.cx, yr - cam.cy) / math.hypot(cam.cx + 0.5, cam.cy + 0.5)
            vignette = 1.0 - cfg.real.vignetting * r**2
        else:
            vignette = np.ones((h, w))
        t = self._tensor
        return _View(
            dx=t(flat[..., 0]), dy=t(flat[..., 1]), dz=t(dz), valid=t(valid),
            t_floor=t(t_floor), t_ceil=t(t_ceil), floor_x=t(floor_x), floor_y=t(floor_y),
            ceil_u=t(ceil_u), ceil_v=t(ceil_v), pix_angle=t(pix_angle.reshape(-1)[src]),
            axis=t(axis), half_angle=t(half_angle), sin_half=t(np.sin(half_angle)),
            vignette=t(vignette),
        )

    # ------------------------------------------------------------------ public

    def render(
        self,
        states: Sequence[SceneState],
        domain: Domain | str,
        seed: int = 0,
        *,
        index_offset: int = 0,
        jpeg: bool = False,
        frame_ids: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Render states with one look.

        Real frames are deterministic in ``(seed, index_offset + i)`` for the i-th state, so a
        list rendered in pieces equals the list rendered at once.

        Args:
            states: the scene states.
            domain: ``"sim"`` or ``"real"``.
            seed: seed of the real camera's sensor noise (sim frames have none).
            index_offset: global index of ``states[0]`` (for chunked callers).
            jpeg: JPEG round trip real frames at ``config.real.jpeg_quality``, so in-memory
                frames equal frames saved as ``.jpg`` and read back. Ignored for sim.
            frame_ids: the global index of each state's frame instead of ``index_offset + i``
                (closed-loop episodes: a frame's noise then depends on its episode and step,
                not on which other episodes share the batch).

        Returns:
            RGB uint8 frames.

        Shape:
            - output: :math:`(N, H, W, 3)` with ``H = W = config.size``
        """
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        s = self.config.size
        if frame_ids is not None and len(frame_ids) != len(states):
            raise ValueError(f"frame_ids has {len(frame_ids)} entries for {len(states)} states")
        ids = [index_offset + i for i in range(len(states))] if frame_ids is None \
            else [int(i) for i in frame_ids]
        out = np.empty((len(states), s, s, 3), dtype=np.uint8)
        chunk = max(1, _RAY_BUDGET // (s * s))
        with torch.inference_mode():
            for i in range(0, len(states), chunk):
                part = states[i : i + chunk]
                out[i : i + len(part)] = self._render_chunk(part, domain, seed,
                                                             ids[i : i + len(part)])
        if jpeg and domain == "real":
            out = jpeg_roundtrip(out, self.config.real.jpeg_quality)
        return out

    # ------------------------------------------------------------------ scene packing

    def _pack(self, states: Sequence[SceneState], domain: str) -> _Scene:
        cfg = self.config
        m = cfg.max_per_kind
        kinds = ["ell"] * (_N_KONG + m) + ["box"] * m + ["cyl"] * m
        n, k = len(states), len(kinds)
        c = np.zeros((n, k, 3))
        c[..., 2] = -1e3  # unused slots: far below the floor
        bound = np.full((n, k), 1e-3)
        par = np.full((n, k, 3), 1e-3)
        rot = np.zeros((n, k, 2))
        rot[..., 0] = 1.0
        color = np.zeros((n, k, 3))
        spec = np.zeros((n, k))
        shin = np.full((n, k), 10.0)
        active = np.zeros((n, k), dtype=bool)
        wall_n = np.zeros((n, 4, 2))
        wall_off = np.zeros((n, 4))
        light = np.zeros((n, 3))
        light_rgb = np.zeros((n, 3))
        ambient = np.zeros(n)
        floor_uv = np.zeros((n, 6))
        floor_pattern = np.zeros(n)
        wall_pattern = np.zeros(n)
        texel = np.ones(n)
        floor_c1 = np.zeros((n, 3))
        floor_c2 = np.zeros((n, 3))
        wall_c = np.zeros((n, 3))
        trim_c = np.zeros((n, 3))
        real = domain == "real"
        style = cfg.real
        first = {"sphere": _N_KONG, "box": _N_KONG + m, "cylinder": _N_KONG + 2 * m}
        sim_light = _light_dir(*cfg.sim_light_dir_deg)
        sim_floor, sim_wall = np.asarray(cfg.sim_floor_color), np.asarray(cfg.sim_wall_color)
        sim_ceiling = np.asarray(cfg.sim_ceiling_color)
        for i, st in enumerate(states):
            for j, (centre, rxy, rz) in enumerate(kong_lobes(st)):
                c[i, j] = centre
                par[i, j] = (rxy, rz, 0.0)
                bound[i, j] = max(rxy, rz)
                color[i, j] = cfg.kong_color
                spec[i, j], shin[i, j] = style.specular, style.shininess
                active[i, j] = True
            used = dict.fromkeys(DISTRACTOR_KINDS, 0)
            for d in st.distractors:
                j = first[d.kind] + used[d.kind]
                used[d.kind] += 1
                sx, sy, sz = d.size
                if d.kind == "sphere":
                    r = sx / 2
                    c[i, j] = (d.x, d.y, r)
                    par[i, j] = (r, r, 0.0)
                    bound[i, j] = r
                    spec[i, j], shin[i, j] = 0.6 * style.specular, 20.0
                elif d.kind == "box":
                    c[i, j] = (d.x, d.y, sz / 2)
                    par[i, j] = (sx / 2, sy / 2, sz / 2)
                    bound[i, j] = 0.5 * math.sqrt(sx * sx + sy * sy + sz * sz)
                    yaw = math.radians(d.yaw_deg)
                    rot[i, j] = (math.cos(yaw), math.sin(yaw))
                    spec[i, j], shin[i, j] = 0.15 * style.specular, 8.0
                else:
                    c[i, j] = (d.x, d.y, sz / 2)
                    par[i, j] = (sx / 2, sz, 0.0)
                    bound[i, j] = math.hypot(sx / 2, sz / 2)
                    spec[i, j], shin[i, j] = 0.3 * style.specular, 12.0
                color[i, j] = d.color
                active[i, j] = True
            yaw = math.radians(st.room_yaw_deg)
            cy, sy_ = math.cos(yaw), math.sin(yaw)
            ex, ey = st.room_half_extents
            rcx, rcy = st.room_center
            for j, (nx, ny, ext) in enumerate(((cy, sy_, ex), (-sy_, cy, ey),
                                               (-cy, -sy_, ex), (sy_, -cy, ey))):
                wall_n[i, j] = (nx, ny)
                wall_off[i, j] = nx * rcx + ny * rcy + ext
            if real:
                # light_mix / material_mix blend the state's real light and colours with the sim's.
                lm, mm = style.light_mix, style.material_mix
                ld = (1 - lm) * np.asarray(sim_light) + lm * np.asarray(
                    _light_dir(st.light_azimuth_deg, st.light_elevation_deg))
                light[i] = ld / max(float(np.linalg.norm(ld)), 1e-9)
                light_rgb[i] = ((1 - lm) * cfg.sim_light_intensity
                                + lm * np.asarray(st.light_color) * st.light_intensity)
                ambient[i] = (1 - lm) * cfg.sim_ambient + lm * st.ambient
                a = math.radians(st.texture_angle_deg)
                period = _TEX_PERIOD * st.texture_scale
                ca, sa = math.cos(a) / period, math.sin(a) / period
                ou, ov = st.texture_offset
                floor_uv[i] = (ca, sa, ou / period, -sa, ca, ov / period)
                rows = _PATTERNS[st.floor_type if st.floor_type in FLOOR_TYPES else "wood"]
                floor_pattern[i] = rows[st.texture_seed % len(rows)]
                wall_rows = _PATTERNS["wall"]
                wall_pattern[i] = wall_rows[(st.texture_seed // 7) % len(wall_rows)]
                texel[i] = period / _TEX
                floor_c1[i] = (1 - mm) * sim_floor + mm * np.asarray(st.floor_color)
                floor_c2[i] = (1 - mm) * sim_floor + mm * np.asarray(st.floor_color2)
                wall_c[i] = (1 - mm) * sim_wall + mm * np.asarray(st.wall_color)
                trim_c[i] = (1 - mm) * sim_ceiling + mm * np.asarray(_SKIRTING)
            else:
                light[i] = _light_dir(*cfg.sim_light_dir_deg)
                light_rgb[i] = cfg.sim_light_intensity
                ambient[i] = cfg.sim_ambient
        t = self._tensor
        return _Scene(
            n=n, kinds=kinds, c=t(c), bound=t(bound), p=t(par), rot=t(rot), color=t(color),
            spec=t(spec), shin=t(shin), active=t(active, torch.bool), wall_n=t(wall_n),
            wall_off=t(wall_off), light=t(light), light_rgb=t(light_rgb), ambient=t(ambient),
            floor_uv=t(floor_uv), floor_pattern=t(floor_pattern), wall_pattern=t(wall_pattern),
            texel=t(texel), floor_c1=t(floor_c1), floor_c2=t(floor_c2), wall_c=t(wall_c),
            trim_c=t(trim_c),
        )

    # ------------------------------------------------------------------ geometry kernel

    @staticmethod
    def _intersect(kind: str, ox: torch.Tensor, oy: torch.Tensor, oz: torch.Tensor,
                   dx: torch.Tensor, dy: torch.Tensor, dz: torch.Tensor,
                   c: torch.Tensor, p: torch.Tensor, rot: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Entry and exit distances (inf / -inf on a miss) of rays against one object each.

        Shapes: origins and directions broadcast to (M, 64); c, p (M, 1, 3); rot (M, 1, 2).
        """
        cx, cy, cz = c[..., 0], c[..., 1], c[..., 2]
        if kind == "ell":
            r, rz = p[..., 0], p[..., 1]
            s = r / rz  # squash z so the ellipsoid becomes a sphere of radius r
            qx, qy, qz = ox - cx, oy - cy, (oz - cz) * s
            ez = dz * s
            a = dx * dx + dy * dy + ez * ez
            b = qx * dx + qy * dy + qz * ez
            cc = qx * qx + qy * qy + qz * qz - r * r
            disc = b * b - a * cc
            sq = torch.sqrt(disc.clamp_min(0.0))
            t0 = (-b - sq) / a
            t1 = (-b + sq) / a
            hit = disc > 0
        else:
            co, si = rot[..., 0], rot[..., 1]
            qx0, qy0 = ox - cx, oy - cy
            qx = co * qx0 + si * qy0
            qy = co * qy0 - si * qx0
            lx = co * dx + si * dy
            ly = co * dy - si * dx
            if kind == "box":
                t0 = torch.full_like(qx, -math.inf)
                t1 = torch.full_like(qx, math.inf)
                for q, d, hh in ((qx, lx, p[..., 0]), (qy, ly, p[..., 1]),
                                 (oz - cz, dz, p[..., 2])):
                    inv = 1.0 / d
                    ta = (-hh - q) * inv
                    tb = (hh - q) * inv
                    t0 = torch.maximum(t0, torch.minimum(ta, tb))
                    t1 = torch.minimum(t1, torch.maximum(ta, tb))
                hit = t1 >= t0
            else:  # vertical cylinder standing on the floor, height p[1]
                r, hgt = p[..., 0], p[..., 1]
                a = lx * lx + ly * ly
                b = qx * lx + qy * ly
                cc = qx * qx + qy * qy - r * r
                disc = b * b - a * cc
                sq = torch.sqrt(disc.clamp_min(0.0))
                ia = 1.0 / a
                ts0 = (-b - sq) * ia
                ts1 = (-b + sq) * ia
                iz = 1.0 / dz
                qz = oz - cz
                ta = (-0.5 * hgt - qz) * iz
                tb = (0.5 * hgt - qz) * iz
                t0 = torch.maximum(ts0, torch.minimum(ta, tb))
                t1 = torch.minimum(ts1, torch.maximum(ta, tb))
                hit = (disc > 0) & (t1 >= t0)
        t0 = torch.where(hit, t0, math.inf)
        t1 = torch.where(hit, t1, -math.inf)
        return t0, t1

    # ------------------------------------------------------------------ one chunk

    def _render_chunk(self, states: Sequence[SceneState], domain: str, seed: int,
                      ids: Sequence[int]) -> np.ndarray:
        cfg = self.config
        real = domain == "real"
        view = self._views[domain]
        sc = self._pack(states, domain)
        n = sc.n
        nt = view.dx.shape[0]
        dx, dy, dz = view.dx, view.dy, view.dz  # (T, 64)

        def per_state(x: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, 1, 1)
            return x.view(n, 1, 1)

        # ---- environment (floor, ceiling, walls), densely: every pixel sees one of them
        lx, ly, lz = (per_state(sc.light[:, i]) for i in range(3))
        t_w = torch.full((n, nt, _TP), math.inf, device=self.device)
        wnx = torch.zeros((n, nt, _TP), device=self.device)  # normal of the wall hit
        wny = torch.zeros((n, nt, _TP), device=self.device)
        if real:
            cos_inc = torch.ones((n, nt, _TP), device=self.device)
        for j in range(4):
            nx, ny = per_state(sc.wall_n[:, j, 0]), per_state(sc.wall_n[:, j, 1])
            nd = nx * dx + ny * dy
            tw = torch.where(nd > 1e-9, per_state(sc.wall_off[:, j]) / nd, math.inf)
            closer = tw < t_w
            t_w = torch.where(closer, tw, t_w)
            wnx = torch.where(closer, nx, wnx)
            wny = torch.where(closer, ny, wny)
            if real:
                cos_inc = torch.where(closer, nd, cos_inc)
        is_floor = view.t_floor < t_w
        is_ceil = view.t_ceil < t_w
        t_env = torch.minimum(torch.minimum(view.t_floor, view.t_ceil), t_w)
        ndl = torch.where(is_floor, lz, torch.where(is_ceil, -lz, -(wnx * lx + wny * ly)))
        ndl = ndl.clamp_min(0.0)
        env_id = torch.where(is_floor, _FLOOR, torch.where(is_ceil, _CEIL, _WALL0))

        # ---- objects: candidate (frame, object, tile) triples, then exact per-pixel tests
        t_fin, sid_fin, rows, t_rows, sid_rows = self._objects(sc, view, t_env, env_id)

        # ---- shadows (and for real, contact ambient occlusion), per candidate tile
        vis, ao = self._shadows(sc, view, t_fin, sid_fin, env_id, wnx, wny, real)
        vis_env, ao = vis.view(n, nt, _TP), ao.view(n, nt, _TP)

        # ---- environment shading, densely
        amb = per_state(sc.ambient)
        lr, lg, lb = (per_state(sc.light_rgb[:, i]) for i in range(3))
        direct = ndl * vis_env
        if real:
            alb, gloss = self._env_albedo(sc, view, t_env, is_floor, is_ceil, wnx, wny, cos_inc)
            lm = cfg.real.light_mix
            # Ambient from above (ceiling bounce) and slightly cool; light_mix 0 = the sim's flat.
            hemi = torch.where(is_floor, 1.0, torch.where(is_ceil, 1.0 - 0.5 * lm,
                                                          1.0 - 0.25 * lm)) * amb * ao
            tint = [1.0 + lm * (c - 1.0) for c in _AMBIENT_TINT]
            # Floor gloss: Blinn-Phong with the floor normal (0, 0, 1), view vector -d.
            ldotd = lx * dx + ly * dy + lz * dz
            ndh = (lz - dz) * torch.rsqrt((2.0 - 2.0 * ldotd).clamp_min(1e-6))
            h2 = ndh.clamp(0.0, 1.0) ** 2  # ndh ** 40 by squaring: cheaper than pow
            h10 = h2 * h2 * h2 * h2 * h2
            h40 = h10 * h10
            h40 = h40 * h40
            spec = (gloss * cfg.real.specular) * torch.where(is_floor, h40, 0.0) * direct
            col = torch.stack([
                alb[0] * (hemi * tint[0] + lr * direct) + lr * spec,
                alb[1] * (hemi * tint[1] + lg * direct) + lg * spec,
                alb[2] * (hemi * tint[2] + lb * direct) + lb * spec,
            ])
        else:
            fl, wl, cl = cfg.sim_floor_color, cfg.sim_wall_color, cfg.sim_ceiling_color
            light_amt = amb + lr * direct
            col = torch.stack([
                torch.where(is_floor, fl[i], torch.where(is_ceil, cl[i], wl[i])) * light_amt
                for i in range(3)
            ])
        col = col.view(3, n * nt, _TP)

        # ---- objects shading on the pixels they cover
        if rows.numel():
            self._shade_objects(sc, view, col, rows, t_rows, sid_rows, vis, real)

        s = cfg.size
        th = -(-s // _TILE)
        # Tile-major (3, N, th, tw, 8, 8) -> raster (N, 3, H, W), cropping any edge padding.
        img = col.view(3, n, th, th, _TILE, _TILE).permute(1, 0, 2, 4, 3, 5)
        img = img.reshape(n, 3, th * _TILE, th * _TILE)[:, :, :s, :s]
        if real:
            img = self._camera_pipeline(img, view.valid, seed, ids)
        else:
            img = img.clamp(0.0, 1.0).pow_(1.0 / 2.2)
            if self._has_invalid[domain]:
                img.mul_(view.valid)
        img = img.mul_(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
        return img.permute(0, 2, 3, 1).numpy()

    def _objects(self, sc: _Scene, view: _View, t_env: torch.Tensor, env_id: torch.Tensor
                 ) -> tuple[torch.Tensor, ...]:
        """Closest hits including objects. Returns dense (N*T, 64) distance and surface id, and
        the rows (frame * T + tile) that objects may cover with their distances and ids."""
        n, nt = sc.n, view.dx.shape[0]
        z0 = self.config.camera_height
        t_fin = t_env.reshape(n * nt, _TP)
        sid_fin = env_id.reshape(n * nt, _TP)
        v = sc.c - torch.tensor([0.0, 0.0, z0], device=self.device)  # (N, K, 3)
        dist = v.norm(dim=-1).clamp_min(1e-9)
        cosang = torch.einsum("nkc,tc->nkt", v, view.axis) / dist[..., None]
        ang = torch.arccos(cosang.clamp(-1.0, 1.0))
        reach = torch.arcsin((sc.bound / dist).clamp(max=1.0))
        cand = (ang <= view.half_angle + reach[..., None]) | (dist <= sc.bound)[..., None]
        cand &= sc.active[..., None]
        idx = cand.nonzero()  # (M, 3): frame, object, tile
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        if idx.shape[0] == 0:
            return t_fin, sid_fin, empty, t_fin[:0], sid_fin[:0]
        row_all = idx[:, 0] * nt + idx[:, 2]
        rows, inv = torch.unique(row_all, return_inverse=True)
        key = _pack_key(t_fin[rows], sid_fin[rows])
        zero = torch.zeros(1, device=self.device)
        for kind in ("ell", "box", "cyl"):
            code = _KIND_CODE[kind]
            kind_of = torch.tensor([_KIND_CODE[k] for k in sc.kinds], device=self.device)
            sel = (kind_of[idx[:, 1]] == code).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            fi, oi, ti = idx[sel, 0], idx[sel, 1], idx[sel, 2]
            t0, _ = self._intersect(
                kind, zero, zero, zero + z0, view.dx[ti], view.dy[ti], view.dz[ti],
                sc.c[fi, oi][:, None], sc.p[fi, oi][:, None], sc.rot[fi, oi][:, None],
            )
            t0 = torch.where(t0 > 1e-6, t0, math.inf)
            kk = _pack_key(t0, (oi + _OBJ0)[:, None].expand_as(t0))
            key.scatter_reduce_(0, inv[sel][:, None].expand_as(kk), kk, reduce="amin")
        t_rows, sid_rows = _unpack_key(key)
        t_fin = t_fin.clone()
        sid_fin = sid_fin.clone()
        t_fin[rows] = t_rows
        sid_fin[rows] = sid_rows
        return t_fin, sid_fin, rows, t_rows, sid_rows

    def _env_albedo(self, sc: _Scene, view: _View, t_env: torch.Tensor, is_floor: torch.Tensor,
                    is_ceil: torch.Tensor, wnx: torch.Tensor, wny: torch.Tensor,
                    cos_inc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """REAL albedo (3, N, T, 64) and gloss (N, T, 64) of the environment from the atlas."""
        n = sc.n
        dx, dy, dz = view.dx, view.dy, view.dz
        fu = sc.floor_uv
        a, b, c, d, e, f = (fu[:, i].view(n, 1, 1) for i in range(6))
        uf = a * view.floor_x + b * view.floor_y + c
        vf = d * view.floor_x + e * view.floor_y + f
        # Walls: along the wall (each wall its own phase) and height, both in atlas periods.
        uw = t_env * (wnx * dy - wny * dx) * (1.0 / _TEX_PERIOD) + (wnx * 0.31 + wny * 0.17)
        vw = (self.config.camera_height + t_env * dz) * (1.0 / _TEX_PERIOD)
        u = torch.where(is_floor, uf, torch.where(is_ceil, view.ceil_u, uw))
        v = torch.where(is_floor, vf, torch.where(is_ceil, view.ceil_v, vw))
        pattern = torch.where(is_floor, sc.floor_pattern.view(n, 1, 1),
                              torch.where(is_ceil, float(_N_PATTERNS - 1),
                                          sc.wall_pattern.view(n, 1, 1)))
        # Prefilter level from the pixel's footprint on the surface, in texels.
        cosv = torch.where(is_floor, -dz, torch.where(is_ceil, dz, cos_inc)).clamp_min(0.08)
        texel = torch.where(is_floor, sc.texel.view(n, 1, 1), _TEX_PERIOD / _TEX)
        foot = t_env * view.pix_angle / (cosv * texel)
        level = torch.log2(foot.clamp_min(1.0)).round_().clamp_(max=_TEX_LEVELS - 1)
        t1 = _TEX + 1
        w_at, h_at = _TEX_LEVELS * t1, _N_PATTERNS * t1
        gx = (level * t1 + (u - torch.floor(u)) * _TEX) * (2.0 / (w_at - 1)) - 1.0
        gy = (pattern * t1 + (v - torch.floor(v)) * _TEX) * (2.0 / (h_at - 1)) - 1.0
        grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2)
        tex = F.grid_sample(_atlas(float(self.config.real.texture_strength)), grid,
                            mode="bilinear", padding_mode="border", align_corners=True)
        tex = tex.view(3, n, *t_env.shape[1:])
        mix, bright, gloss = tex[0], tex[1], tex[2]
        # Floor: its two colours; walls: the paint and the skirting board; ceiling: trim colour.
        albs = []
        for i in range(3):
            c1 = torch.where(is_floor, sc.floor_c1[:, i].view(n, 1, 1),
                             sc.wall_c[:, i].view(n, 1, 1))
            c2 = torch.where(is_floor, sc.floor_c2[:, i].view(n, 1, 1),
                             sc.trim_c[:, i].view(n, 1, 1))
            albs.append(torch.lerp(c1, c2, mix).mul_(bright))
        return torch.stack(albs).clamp_(0.0, 0.95), gloss

    def _shade_objects(self, sc: _Scene, view: _View, col: torch.Tensor, rows: torch.Tensor,
                       t_rows: torch.Tensor, sid_rows: torch.Tensor, vis: torch.Tensor,
                       real: bool) -> None:
        """Write the colour of object pixels into ``col`` (3, N*T, 64), in place."""
        nt = view.dx.shape[0]
        r_i, j_i = (sid_rows >= _OBJ0).nonzero(as_tuple=True)
        if r_i.numel() == 0:
            return
        row = rows[r_i]
        fi, ti = row // nt, row % nt
        oi = sid_rows[r_i, j_i] - _OBJ0
        t = t_rows[r_i, j_i]
        d = torch.stack([view.dx[ti, j_i], view.dy[ti, j_i], view.dz[ti, j_i]])  # (3, M)
        p = t * d
        p[2] += self.config.camera_height
        q = p - sc.c[fi, oi].T  # hit point relative to the object's centre
        prm = sc.p[fi, oi].T
        rot = sc.rot[fi, oi].T
        kind_of = torch.tensor([_KIND_CODE[k] for k in sc.kinds], device=self.device)[oi]
        # Ellipsoid: gradient of the implicit function.
        en = torch.stack([q[0] / prm[0] ** 2, q[1] / prm[0] ** 2, q[2] / prm[1] ** 2])
        # Box: the face whose normalised coordinate is largest.
        bx = rot[0] * q[0] + rot[1] * q[1]
        by = rot[0] * q[1] - rot[1] * q[0]
        face = torch.stack([bx / prm[0], by / prm[1], q[2] / prm[2]]).abs().argmax(0)
        sx = torch.where(face == 0, torch.sign(bx), 0.0)
        sy = torch.where(face == 1, torch.sign(by), 0.0)
        bn = torch.stack([rot[0] * sx - rot[1] * sy, rot[1] * sx + rot[0] * sy,
                          torch.where(face == 2, torch.sign(q[2]), 0.0)])
        # Cylinder: top cap or side.
        top = q[2] >= 0.5 * prm[1] - 1e-4
        cn = torch.stack([torch.where(top, 0.0, q[0]), torch.where(top, 0.0, q[1]),
                          top.to(torch.float32)])
        nrm = torch.where(kind_of == 0, en, torch.where(kind_of == 1, bn, cn))
        nrm = nrm / nrm.norm(dim=0).clamp_min(1e-9)
        light = sc.light[fi].T
        lrgb = sc.light_rgb[fi].T
        amb = sc.ambient[fi]
        ndl = (nrm * light).sum(0).clamp_min(0.0)
        direct = ndl * vis[row, j_i]
        alb = sc.color[fi, oi].T
        if real:
            lm = self.config.real.light_mix
            hemi = (1.0 - lm * 0.25 * (1.0 - nrm[2])) * amb
            amb_rgb = torch.stack([hemi * (1.0 + lm * (c - 1.0)) for c in _AMBIENT_TINT])
            half = light - d
            half = half / half.norm(dim=0).clamp_min(1e-9)
            ndh = (nrm * half).sum(0).clamp_min(0.0)
            spec = sc.spec[fi, oi] * ndh ** sc.shin[fi, oi] * direct
            out = alb * (amb_rgb + lrgb * direct) + lrgb * spec
        else:
            out = alb * (amb + lrgb * direct)
        col[:, row, j_i] = out

    def _shadows(self, sc: _Scene, view: _View, t_fin: torch.Tensor, sid_fin: torch.Tensor,
                 env_id: torch.Tensor, wnx: torch.Tensor, wny: torch.Tensor, real: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Direct-light visibility and ambient occlusion, each (N*T, 64) in [0, 1]."""
        n, nt = sc.n, view.dx.shape[0]
        cfg = self.config
        vis = torch.ones(n * nt, _TP, device=self.device)
        ao = torch.ones(n * nt, _TP, device=self.device)
        if not real and not cfg.sim_shadows:
            return vis, ao
        soft = cfg.real.shadow_softness if real else 0.0
        z0 = cfg.camera_height
        # Bounding sphere of each tile's surface points: a cone segment between tmin and tmax.
        tt = t_fin.view(n, nt, _TP)
        tmin = tt.amin(dim=-1)
        tmax = tt.amax(dim=-1).clamp(max=50.0)
        mid = 0.5 * (tmin + tmax)
        m = view.axis[None] * mid[..., None]  # (N, T, 3)
        m[..., 2] += z0
        rho = 0.5 * (tmax - tmin) + tmax * view.sin_half + _SHADOW_OFFSET
        lv = sc.light  # (N, 3)
        along = (sc.c * lv[:, None]).sum(-1)[..., None] - (m * lv[:, None]).sum(-1)[:, None]
        w2 = ((sc.c[:, :, None] - m[:, None]) ** 2).sum(-1)  # (N, K, T)
        perp = (w2 - along * along).clamp_min(0.0).sqrt()
        rr = sc.bound[..., None] + rho[:, None]
        cand = (along > -rr) & (perp <= rr + soft * along.clamp_min(0.0) + 1e-3)
        cand &= sc.active[..., None]
        kind_of = torch.tensor([_KIND_CODE[k] for k in sc.kinds], device=self.device)
        idx = cand.nonzero()
        for kind, code in _KIND_CODE.items():
            sel = (kind_of[idx[:, 1]] == code).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            fi, oi, ti = idx[sel, 0], idx[sel, 1], idx[sel, 2]
            row = fi * nt + ti
            # Shadow rays start on the surface, pulled back a little towards the camera.
            tr = t_fin[row] - _SHADOW_OFFSET
            ox, oy, oz = tr * view.dx[ti], tr * view.dy[ti], z0 + tr * view.dz[ti]
            lx, ly, lz = (lv[fi, i][:, None] for i in range(3))
            c, p, rot = sc.c[fi, oi][:, None], sc.p[fi, oi][:, None], sc.rot[fi, oi][:, None]
            if kind == "ell":
                r, rz = p[..., 0], p[..., 1]
                s = r / rz
                qx, qy, qz = ox - c[..., 0], oy - c[..., 1], (oz - c[..., 2]) * s
                ez = lz * s
                a = lx * lx + ly * ly + ez * ez
                b = qx * lx + qy * ly + qz * ez
                tca = -b / a
                h2 = (qx * qx + qy * qy + qz * qz - b * b / a).clamp_min(0.0)
                if soft > 0:
                    # Share of the light's disc the sphere hides, as a smooth ramp.
                    x = (h2.sqrt() - r) / (soft * tca.clamp_min(0.0) + 1e-4)
                    v = _smoothstep(0.5 + 0.5 * x)
                else:
                    v = (h2 >= r * r).to(torch.float32)
                v = torch.where(tca > 0, v, 1.0)
            else:
                t0, t1 = self._intersect(kind, ox, oy, oz, lx, ly, lz, c, p, rot)
                t0c = t0.clamp_min(0.0)
                chord = (t1 - t0c).clamp_min(0.0)
                if soft > 0:
                    v = 1.0 - _smoothstep(chord / (2.0 * soft * t0c + 4e-3))
                else:
                    v = (chord <= 0).to(torch.float32)
            vis.scatter_reduce_(0, row[:, None].expand_as(v), v, reduce="prod")
        if real and cfg.real.ambient_occlusion > 0:
            # Contact darkening on floor and walls within about two radii of an object.
            near = (w2.sqrt() <= 2.5 * sc.bound[..., None] + rho[:, None]) & sc.active[..., None]
            idx = near.nonzero()
            if idx.shape[0]:
                fi, oi, ti = idx[:, 0], idx[:, 1], idx[:, 2]
                row = fi * nt + ti
                tr = t_fin[row]
                px, py, pz = tr * view.dx[ti], tr * view.dy[ti], z0 + tr * view.dz[ti]
                eid = env_id.reshape(n * nt, _TP)[row]
                is_wall = eid == _WALL0
                nx = torch.where(is_wall, -wnx.reshape(n * nt, _TP)[row], 0.0)
                ny = torch.where(is_wall, -wny.reshape(n * nt, _TP)[row], 0.0)
                nz = torch.where(eid == _FLOOR, 1.0, torch.where(eid == _CEIL, -1.0, 0.0))
                c = sc.c[fi, oi][:, None]
                prm = sc.p[fi, oi]
                # Occluder as a sphere: ellipsoid / cylinder radius, a box's smallest half size.
                rad = torch.where(kind_of[oi] == 1, prm.min(dim=-1).values, prm[:, 0])[:, None]
                wx, wy, wz = c[..., 0] - px, c[..., 1] - py, c[..., 2] - pz
                d2 = (wx * wx + wy * wy + wz * wz).clamp_min(1e-8)
                cosw = ((nx * wx + ny * wy + nz * wz) * torch.rsqrt(d2)).clamp_min(0.0)
                occ = (rad * rad / d2).clamp(max=1.0) * cosw
                v = 1.0 - cfg.real.ambient_occlusion * occ
                v = torch.where(sid_fin[row] < _OBJ0, v, 1.0)
                ao.scatter_reduce_(0, row[:, None].expand_as(v), v, reduce="prod")
        return vis, ao

    # ------------------------------------------------------------------ the real camera

    def _noise(self, n: int, seed: int, ids: Sequence[int]) -> torch.Tensor:
        """Unit Gaussian sensor noise (N, 3, H, W): a crop, flip and channel order of a fixed
        bank, drawn per frame from (seed, global index) -- far cheaper than fresh randn."""
        s = self.config.size
        if self._noise_bank is None:
            g = torch.Generator().manual_seed(1234567)
            self._noise_bank = torch.randn((_NOISE_BANK, 3, s + _NOISE_PAD, s + _NOISE_PAD),
                                           generator=g).to(self.device)
        out = torch.empty((n, 3, s, s), device=self.device)
        for i in range(n):
            h = _splitmix64((int(seed) * 0x9E3779B97F4A7C15 + int(ids[i])) & _MASK64)
            k, oy, ox = h % _NOISE_BANK, (h >> 8) % _NOISE_PAD, (h >> 16) % _NOISE_PAD
            crop = self._noise_bank[k, :, oy : oy + s, ox : ox + s]
            if (h >> 24) & 1:
                crop = crop.transpose(-1, -2)
            out[i] = crop[_PERMS[(h >> 25) % 6]]
        return out

    def _camera_pipeline(self, img: torch.Tensor, valid: torch.Tensor, seed: int,
                         ids: Sequence[int]) -> torch.Tensor:
        """Auto exposure, vignetting, lens blur, sensor noise, white balance, saturation and the
        tone curve. (N, 3, H, W) linear -> display values in [0, 1].

        White balance is folded into the exposure gain (it is a per-channel constant), so the
        noise is added after it; that changes the noise colour a little and saves a pass.
        """
        st = self.config.real
        n = img.shape[0]
        gain = torch.full((n, 1, 1, 1), float(st.exposure), device=img.device)
        if st.auto_exposure:
            lum = 0.2126 * img[:, 0] + 0.7152 * img[:, 1] + 0.0722 * img[:, 2]
            mean = (lum * valid).sum(dim=(1, 2)) / valid.sum().clamp_min(1)
            gain = gain * (st.ae_target / mean.clamp_min(1e-4)).clamp(0.3, 4.0).view(n, 1, 1, 1)
        wb = torch.tensor(st.wb_gains, device=img.device).view(1, 3, 1, 1)
        img = img * (gain * wb * self._views["real"].vignette)
        sigma = st.blur_sigma * self.config.size / 128.0
        if sigma > 0:
            img = _gaussian_blur(img, sigma)
        if st.shot_noise > 0 or st.read_noise > 0:
            std = img.clamp_min(0.0).mul_(st.shot_noise).add_(st.read_noise**2).sqrt_()
            img = img.add_(std.mul_(self._noise(n, seed, ids)))
        if st.saturation != 1.0:
            lum = (0.2126 * img[:, 0] + 0.7152 * img[:, 1] + 0.0722 * img[:, 2])[:, None]
            img = torch.lerp(lum, img, st.saturation)
        img = img.clamp_(0.0, 1.0).mul_(1.0 - st.black_level).add_(st.black_level)
        img = img.pow_(1.0 / st.gamma)
        if self._has_invalid["real"]:
            img.mul_(valid)
        return img
