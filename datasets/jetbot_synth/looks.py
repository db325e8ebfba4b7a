"""Held-out "real-domain variants" of jetbot_synth: named camera looks applied to SIM renders."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from translate.fsutil import atomic_write_json, atomic_write_text, swap_folder_into_place
from translate.imageio import decode_image, encode_image, list_images, read_images, write_image
from translate.pairs import find_paired_samples

__all__ = [
    "HELDOUT_FORMAT_VERSION",
    "LOOKS",
    "LookSpec",
    "TextureKind",
    "apply_look",
    "build_heldout_dataset",
    "get_look",
    "main",
    "make_looks_contact_sheet",
]

TextureKind = Literal["none", "grain", "blotch", "planks"]

#: Version of the held-out layout and of the look pipeline; part of ``look.json``.
HELDOUT_FORMAT_VERSION = 1

#: Pixel sizes of a :class:`LookSpec` (blur, aberration, ...) are given at this frame width and
#: scale with the actual width, so a look means the same optics at 48, 128 or 224 px.
_REF_WIDTH = 128

# The sim camera of jetbot_synth (WorldConfig defaults): used only to lay floor textures out in
# perspective on the sim render's floor before the look's own optics are applied.
_SIM_HFOV_DEG = 75.0
_CAM_PITCH_DEG = 12.0
_CAM_HEIGHT_M = 0.11

# Frame indices of the per-frame random streams: training frames use their position in the
# source sim/ folder, val and test frames their position in the split plus these offsets, so no
# two frames of a held-out build share a noise or texture draw.
_SPLIT_INDEX_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000}
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


@dataclass(frozen=True)
class LookSpec:
    """One camera-and-room look, as a pipeline of scene, optics, sensor and ISP stages.

    Stages, in order: scene saturation, surface texture and lighting (linear light) → lens
    (distortion, zoom crop, chromatic aberration, blur) → sensor noise (shot, read, row banding)
    → white balance (the colour cast), tone curve → sharpening → salt-and-pepper pixels → JPEG.
    Saturation acts on the scene's colours before the cast, so a cast stays vivid on washed-out
    colours. Pixel sizes are for a 128 px wide frame and scale with the frame width.

    Args:
        name: the look's name.
        description: one line for people.
        texture: multiplicative texture on the grey floor and walls of the sim render: ``grain``
            (fine speckle), ``blotch`` (low-frequency stains), ``planks`` (floor boards and
            striped walls) or ``none``.
        texture_strength: texture contrast (log-gain amplitude; 0.3 ≈ ±30 %).
        texture_scale: texture frequency multiplier (2 = features half the size).
        exposure: global gain in linear light.
        exposure_jitter: per-frame log-normal std of the exposure (auto exposure hunting).
        light_gradient: strength of a linear light ramp across the frame (log-gain at the edge).
        light_angle_deg: where the ramp's bright side is (0 = right, 90 = top, 135 = top-left).
        light_angle_jitter_deg: per-frame jitter of that angle.
        light_pool: strength of a Gaussian pool of light (a street lamp) in the lower half.
        vignette: darkening at the frame corners (0 none, 1 black corners).
        barrel: radial distortion k1 (> 0 barrel); the frame is scaled so its corners stay
            inside the source frame, which magnifies the centre by 1 + 2·k1 (square frames).
        zoom: crop factor (< 1 zooms in: 0.92 keeps the central 92 %, a narrower FOV).
        chromatic_px: lateral chromatic aberration: red and blue are shifted this many pixels in
            opposite radial directions at the frame edge.
        blur_sigma_px: Gaussian lens blur.
        motion_blur_px: horizontal box motion-blur length (camera panning along x).
        wb_gains: white-balance gains (R, G, B): the colour cast.
        wb_jitter: per-frame log-normal std of each gain (auto white balance).
        saturation: saturation multiplier of the scene's colours (1 = unchanged).
        gamma: encoding gamma (2.2 standard; larger lifts the shadows).
        contrast: contrast around mid-grey after encoding.
        black_lift: lifted blacks: the output black level (0..1).
        sharpen: unsharp-mask amount (halos around edges).
        sharpen_radius_px: unsharp-mask Gaussian sigma.
        read_noise: Gaussian sensor noise std (linear light, per channel).
        shot_noise_photons: photons at full scale for Poisson shot noise (smaller = noisier);
            None for no shot noise.
        row_banding: std of a per-row offset (rolling-shutter / readout banding).
        salt_pepper: fraction of pixels stuck black or white.
        jpeg_quality: JPEG round-trip quality, or None for none.
    """

    name: str
    description: str = ""
    texture: TextureKind = "none"
    texture_strength: float = 0.0
    texture_scale: float = 1.0
    exposure: float = 1.0
    exposure_jitter: float = 0.0
    light_gradient: float = 0.0
    light_angle_deg: float = 135.0
    light_angle_jitter_deg: float = 0.0
    light_pool: float = 0.0
    vignette: float = 0.0
    barrel: float = 0.0
    zoom: float = 1.0
    chromatic_px: float = 0.0
    blur_sigma_px: float = 0.0
    motion_blur_px: float = 0.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    wb_jitter: float = 0.0
    saturation: float = 1.0
    gamma: float = 2.2
    contrast: float = 1.0
    black_lift: float = 0.0
    sharpen: float = 0.0
    sharpen_radius_px: float = 1.0
    read_noise: float = 0.0
    shot_noise_photons: float | None = None
    row_banding: float = 0.0
    salt_pepper: float = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.texture not in ("none", "grain", "blotch", "planks"):
            raise ValueError(f"look {self.name!r}: unknown texture {self.texture!r}")
        if not 0.0 < self.zoom <= 1.0:
            raise ValueError(f"look {self.name!r}: zoom must be in (0, 1], got {self.zoom}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"look {self.name!r}: jpeg_quality must be 1-100 or None")
        if self.shot_noise_photons is not None and self.shot_noise_photons <= 0:
            raise ValueError(f"look {self.name!r}: shot_noise_photons must be > 0 or None")
        if len(self.wb_gains) != 3:
            raise ValueError(f"look {self.name!r}: wb_gains must have 3 values")

    def to_dict(self) -> dict[str, Any]:
        """The look's parameters as a JSON-ready dict.

        Returns:
            ``{field: value}`` for every field (tuples as lists).

        Shape:
            - no arrays.
        """
        d = dataclasses.asdict(self)
        d["wb_gains"] = [float(g) for g in self.wb_gains]
        return d


#: The named held-out looks. Each differs from jetbot_synth's own real look (warm white balance,
#: wood/carpet/tile floors, 130° fisheye, vignette 0.5, blur 0.7 px, mild noise, JPEG 90) and
#: from the others in colour cast, optics, noise, texture and lighting.
LOOKS: dict[str, LookSpec] = {
    spec.name: spec
    for spec in (
        LookSpec(
            name="cool_led",
            description="cold LED strip lighting: blue-green cast, bright top-left, mild barrel "
            "lens with colour fringes, fine sensor noise, fine-grained speckled surfaces",
            texture="grain", texture_strength=0.25,
            exposure=1.0, exposure_jitter=0.08,
            light_gradient=0.6, light_angle_deg=135.0, light_angle_jitter_deg=20.0,
            barrel=0.2, chromatic_px=2.5, blur_sigma_px=0.4,
            wb_gains=(0.55, 1.0, 1.22), wb_jitter=0.04, saturation=1.1,
            read_noise=0.03,
        ),
        LookSpec(
            name="sodium_dusk",
            description="sodium street light at dusk: orange, washed-out colours, dim with lifted "
            "shadows, heavy vignette and a pool of light, stained surfaces, shot noise, "
            "horizontal motion blur, strong JPEG",
            texture="blotch", texture_strength=0.6,
            exposure=0.35, exposure_jitter=0.12,
            light_pool=0.9, vignette=0.8,
            motion_blur_px=4.0, blur_sigma_px=0.3,
            wb_gains=(1.5, 0.85, 0.35), wb_jitter=0.05, saturation=0.45, gamma=2.8,
            shot_noise_photons=120.0, read_noise=0.006,
            jpeg_quality=35,
        ),
        LookSpec(
            name="overcast_phone",
            description="phone camera on an overcast day: desaturated, slightly green, low "
            "contrast with lifted blacks, sharpening halos, 8 % zoom-in crop, plank floors and "
            "striped walls, row banding and stuck pixels",
            texture="planks", texture_strength=0.35,
            exposure=1.0, exposure_jitter=0.05,
            light_gradient=0.25, light_angle_deg=90.0, light_angle_jitter_deg=10.0,
            zoom=0.92,
            wb_gains=(0.92, 1.08, 0.9), wb_jitter=0.03, saturation=0.5,
            contrast=0.7, black_lift=0.16,
            sharpen=1.3, sharpen_radius_px=1.2,
            read_noise=0.01, row_banding=0.02, salt_pepper=0.004,
        ),
    )
}


def get_look(look: str | LookSpec) -> LookSpec:
    """Resolve a look name (a key of :data:`LOOKS`) or pass a :class:`LookSpec` through.

    Args:
        look: a name or a spec.

    Returns:
        The :class:`LookSpec`.

    Shape:
        - no arrays.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if isinstance(look, LookSpec):
        return look
    try:
        return LOOKS[look]
    except KeyError:
        raise KeyError(f"unknown look {look!r}; known looks: {', '.join(sorted(LOOKS))}") from None


# ---------------------------------------------------------------------------- small image ops


def _to_linear(x: np.ndarray) -> np.ndarray:
    return np.power(x, 2.2, dtype=np.float32)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, math.ceil(3.0 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _box_kernel(length: float) -> np.ndarray:
    """A centred box of fractional ``length`` pixels (partial weights at both ends)."""
    length = max(1.0, length)
    r = math.ceil((length - 1.0) / 2.0)
    t = np.abs(np.arange(-r, r + 1, dtype=np.float32))
    k = np.clip((length / 2.0 + 0.5) - t, 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def _convolve_axis(img: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along ``axis`` (0 = rows/y, 1 = columns/x) with edge-replicated borders."""
    r = len(kernel) // 2
    if r == 0:
        return img
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="edge")
    n = img.shape[axis]
    out = np.zeros_like(img)
    for i, w in enumerate(kernel):
        out += w * (p[i : i + n] if axis == 0 else p[:, i : i + n])
    return out


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.05:
        return img
    k = _gauss_kernel(sigma)
    return _convolve_axis(_convolve_axis(img, k, 0), k, 1)


def _remap(channel: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Bilinear sampling of an (H, W) channel at pixel coordinates (sx, sy), edges clamped."""
    h, w = channel.shape
    sx = np.clip(sx, 0.0, w - 1.0)
    sy = np.clip(sy, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(sx).astype(np.int64), w - 2) if w > 1 else np.zeros_like(sx, np.int64)
    y0 = np.minimum(np.floor(sy).astype(np.int64), h - 2) if h > 1 else np.zeros_like(sy, np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (sx - x0).astype(np.float32)
    fy = (sy - y0).astype(np.float32)
    top = channel[y0, x0] * (1 - fx) + channel[y0, x1] * fx
    bot = channel[y1, x0] * (1 - fx) + channel[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


class _ValueNoise:
    """Tileable multi-octave value noise sampled at arbitrary coordinates (lattice units)."""

    def __init__(self, rng: np.random.Generator, period: int = 64) -> None:
        self.period = period
        self.lattice = rng.standard_normal((period, period)).astype(np.float32)

    def octave(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = self.period
        fu, fv = np.floor(u), np.floor(v)
        iu, iv = fu.astype(np.int64) % p, fv.astype(np.int64) % p
        tu, tv = (u - fu).astype(np.float32), (v - fv).astype(np.float32)
        tu = tu * tu * (3 - 2 * tu)  # smoothstep: no lattice creases
        tv = tv * tv * (3 - 2 * tv)
        g = self.lattice
        a = g[iv, iu] * (1 - tu) + g[iv, (iu + 1) % p] * tu
        b = g[(iv + 1) % p, iu] * (1 - tu) + g[(iv + 1) % p, (iu + 1) % p] * tu
        return ((a * (1 - tv) + b * tv) / 0.6).astype(np.float32)  # ≈ unit std

    def fractal(self, u: np.ndarray, v: np.ndarray, octaves: int, footprint: np.ndarray,
                persistence: float = 0.5) -> np.ndarray:
        """Sum of octaves; each fades out where one pixel spans more than ~half its period."""
        out = np.zeros(np.broadcast(u, v).shape, np.float32)
        amp, total = 1.0, 0.0
        for o in range(octaves):
            f = 2.0**o
            fade = np.clip(1.6 - 2.0 * footprint * f, 0.0, 1.0)
            out += amp * fade * self.octave(u * f + 17.3 * o, v * f + 5.1 * o)
            total += amp * amp
            amp *= persistence
        return out / math.sqrt(total)


@dataclass(frozen=True)
class _Geometry:
    """Per-size pixel grids: normalised coordinates and where the sim floor plane is."""

    xn: np.ndarray  # (H, W) x / (W/2), right positive
    yn: np.ndarray  # (H, W) y / (W/2), down positive
    floor_x: np.ndarray  # lateral floor coordinate (m), NaN where the ray misses the floor
    floor_z: np.ndarray  # forward floor coordinate (m)
    floor_fp: np.ndarray  # floor metres per pixel (texture footprint)


_GEOMETRY_CACHE: dict[tuple[int, int], _Geometry] = {}


def _geometry(h: int, w: int) -> _Geometry:
    key = (h, w)
    if key in _GEOMETRY_CACHE:
        return _GEOMETRY_CACHE[key]
    u = (np.arange(w, dtype=np.float64) + 0.5 - w / 2.0) / (w / 2.0)
    v = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0) / (w / 2.0)
    xn, yn = np.meshgrid(u, v)
    f = 1.0 / math.tan(math.radians(_SIM_HFOV_DEG) / 2.0)  # focal length in half-widths
    p = math.radians(_CAM_PITCH_DEG)
    rx, ry = xn / f, yn / f  # camera ray (x right, y down, z forward = 1)
    down = ry * math.cos(p) + math.sin(p)
    fwd = math.cos(p) - ry * math.sin(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-6, _CAM_HEIGHT_M / down, np.nan)
    fz, fx = t * fwd, t * rx
    # metres per pixel: the larger of the along-row and along-column steps
    gz = np.abs(np.gradient(fz, axis=0)) if h > 1 else np.zeros_like(fz)
    gx = np.abs(np.gradient(fx, axis=1)) if w > 1 else np.zeros_like(fx)
    fp = np.nan_to_num(np.maximum(gz, gx), nan=1e3)
    geo = _Geometry(xn.astype(np.float32), yn.astype(np.float32), fx.astype(np.float32),
                    fz.astype(np.float32), fp.astype(np.float32))
    _GEOMETRY_CACHE[key] = geo
    return geo


# ---------------------------------------------------------------------------- the stages


def _surface_masks(frame_u8: np.ndarray, geo: _Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks of the floor and of the walls/ceiling in a sim render (H, W) each in [0, 1].

    jetbot_synth's sim renders flat grey surfaces: the floor neutral grey and the walls with a
    faint blue tint (b − r ≈ 3–7 / 255). Coloured objects (the Kong, most distractors) are
    saturated and get no texture.
    """
    rgb = frame_u8.astype(np.float32)
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    surface = np.clip(1.0 - (sat - 0.06) / 0.12, 0.0, 1.0)
    tint = rgb[..., 2] - 0.5 * (rgb[..., 0] + rgb[..., 1])
    neutral = np.clip((2.5 - tint) / 1.5, 0.0, 1.0)
    on_floor = np.isfinite(geo.floor_z).astype(np.float32)
    floor = surface * neutral * on_floor
    return floor, surface - floor


def _texture_field(spec: LookSpec, rng: np.random.Generator, geo: _Geometry, w: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Log-gain textures for the floor (in floor metres) and walls (in screen space)."""
    s = spec.texture_scale
    noise = _ValueNoise(rng)
    ox, oz = rng.uniform(0, 64, 2)
    fx = np.nan_to_num(geo.floor_x, nan=0.0)
    fz = np.nan_to_num(geo.floor_z, nan=0.0)
    # screen coordinates in frame widths, and one pixel's size in those units
    sx, sy = (geo.xn + 1.0) / 2.0, (geo.yn + 1.0) / 2.0
    px = np.float32(1.0 / w)
    if spec.texture == "grain":
        cpm = 90.0 * s  # cycles per metre on the floor: ~1 cm speckle
        floor = noise.fractal(fx * cpm + ox, fz * cpm + oz, 3, geo.floor_fp * cpm)
        cpi = 48.0 * s  # cycles per frame width on the walls
        wall = noise.fractal(sx * cpi + oz, sy * cpi + ox, 2, np.full_like(sx, px * cpi))
        return floor, wall
    if spec.texture == "blotch":
        cpm = 1.6 * s
        floor = noise.fractal(fx * cpm + ox, fz * cpm + oz, 4, geo.floor_fp * cpm, 0.6)
        cpi = 2.5 * s
        wall = noise.fractal(sx * cpi + oz, sy * cpi + ox, 4, np.full_like(sx, px * cpi), 0.6)
        # stains: push the noise towards dark blobs on a lighter ground
        return np.tanh(1.5 * floor), np.tanh(1.5 * wall)
    if spec.texture == "planks":
        board = 0.13 / s  # board width (m), boards run forwards
        bx = fx / board + ox
        idx = np.floor(bx)
        frac = bx - idx
        shade = rng.standard_normal(64).astype(np.float32)
        joint_off = rng.uniform(0, 1, 64).astype(np.float32)
        i64 = idx.astype(np.int64) % 64
        # boards are 1.1 m long with staggered end joints: a new shade after each joint
        seg = np.floor(fz / 1.1 + joint_off[i64])
        shade2 = shade[(i64 + 7 * seg.astype(np.int64)) % 64]
        fp_b = geo.floor_fp / board
        seam_w = np.maximum(0.07, fp_b)
        seam = np.clip(1.0 - np.minimum(frac, 1.0 - frac) / seam_w, 0.0, 1.0)
        seam_vis = np.clip(1.5 - 2.0 * fp_b, 0.0, 1.0)
        grain = noise.fractal(fx * 6.0 + ox, fz * 0.8 + oz, 2, geo.floor_fp * 6.0)
        floor = 0.8 * shade2 * np.clip(1.6 - fp_b, 0.0, 1.0) - 1.3 * seam * seam_vis + 0.3 * grain
        period = 1.0 / (9.0 * s)  # wall stripes: 9 per frame width
        phase = sx / period + oz
        stripe = np.sin(2 * np.pi * phase) + 0.35 * np.sin(6 * np.pi * phase)
        wall = 0.9 * stripe * np.clip(1.5 - 2.0 * px / period, 0.0, 1.0)
        return floor.astype(np.float32), wall.astype(np.float32)
    zero = np.zeros_like(sx)
    return zero, zero


def _light_field(spec: LookSpec, rng: np.random.Generator, geo: _Geometry) -> np.ndarray:
    """Multiplicative illumination (H, W): ramp, pool of light and vignette."""
    logg = np.zeros_like(geo.xn)
    if spec.light_gradient:
        a = math.radians(spec.light_angle_deg + rng.normal(0.0, spec.light_angle_jitter_deg))
        proj = (geo.xn * math.cos(a) - geo.yn * math.sin(a)) / math.sqrt(2.0)
        logg += spec.light_gradient * proj
    gain = np.exp(logg)
    if spec.light_pool:
        cx, cy = rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.7)
        r2 = (geo.xn - cx) ** 2 + ((geo.yn - cy) * 1.6) ** 2
        gain *= 1.0 + spec.light_pool * np.exp(-r2 / (2 * 0.35**2))
    if spec.vignette:
        r2 = (geo.xn**2 + geo.yn**2) / 2.0
        gain *= np.clip(1.0 - spec.vignette * r2**1.2, 0.0, 1.0)
    return gain.astype(np.float32)


def _lens(img: np.ndarray, spec: LookSpec, geo: _Geometry, scale: float) -> np.ndarray:
    """Distortion, zoom crop and lateral chromatic aberration in one bilinear remap."""
    h, w = img.shape[:2]
    if not spec.barrel and spec.zoom == 1.0 and not spec.chromatic_px:
        return img
    r2 = geo.xn**2 + geo.yn**2
    r2max = (1.0 + (h / w) ** 2)
    radial = spec.zoom * (1.0 + spec.barrel * r2) / (1.0 + spec.barrel * r2max)
    out = np.empty_like(img)
    ca = spec.chromatic_px * scale / (w / 2.0)  # radial scale change at the frame edge
    for c, dc in enumerate((ca, 0.0, -ca)):
        k = radial * (1.0 + dc)
        sx = geo.xn * k * (w / 2.0) + w / 2.0 - 0.5
        sy = geo.yn * k * (w / 2.0) + h / 2.0 - 0.5
        out[..., c] = _remap(img[..., c], sx, sy)
    return out


def _look_one(frame: np.ndarray, spec: LookSpec, rng: np.random.Generator) -> np.ndarray:
    h, w = frame.shape[:2]
    geo = _geometry(h, w)
    scale = w / _REF_WIDTH
    lin = _to_linear(frame.astype(np.float32) / 255.0)
    if spec.saturation != 1.0:  # the scene's colours, before the cast: a cast stays vivid
        luma = (lin @ _LUMA)[..., None]
        lin = np.maximum(luma + spec.saturation * (lin - luma), 0.0)

    # scene: texture on the flat grey surfaces, then the room's lighting
    if spec.texture != "none" and spec.texture_strength:
        floor_m, wall_m = _surface_masks(frame, geo)
        t_floor, t_wall = _texture_field(spec, rng, geo, w)
        logt = spec.texture_strength * (floor_m * t_floor + wall_m * t_wall)
        lin = lin * np.exp(logt)[..., None]
    exposure = spec.exposure * math.exp(rng.normal(0.0, spec.exposure_jitter))
    lin = lin * (_light_field(spec, rng, geo) * exposure)[..., None]

    # lens
    lin = _lens(lin, spec, geo, scale)
    lin = _gauss_blur(lin, spec.blur_sigma_px * scale)
    if spec.motion_blur_px:
        length = spec.motion_blur_px * scale * math.exp(rng.normal(0.0, 0.25))
        lin = _convolve_axis(lin, _box_kernel(length), 1)

    # sensor
    lin = np.clip(lin, 0.0, 1.0)
    if spec.shot_noise_photons is not None:
        q = spec.shot_noise_photons
        lin = (rng.poisson(lin * q) / q).astype(np.float32)
    if spec.read_noise:
        lin = lin + rng.normal(0.0, spec.read_noise, lin.shape).astype(np.float32)
    if spec.row_banding:
        rows = rng.normal(0.0, spec.row_banding, (h, 1, 1)).astype(np.float32)
        lin = lin + rows * (1.0 + 0.3 * rng.normal(size=(1, 1, 3)).astype(np.float32))

    # ISP: white balance, tone curve, sharpening
    gains = np.asarray(spec.wb_gains, np.float32) * np.exp(
        rng.normal(0.0, spec.wb_jitter, 3)).astype(np.float32)
    lin = lin * gains
    enc = np.power(np.clip(lin, 0.0, 1.0), 1.0 / spec.gamma, dtype=np.float32)
    enc = 0.5 + spec.contrast * (enc - 0.5)
    enc = spec.black_lift + (1.0 - spec.black_lift) * enc
    if spec.sharpen:
        enc = enc + spec.sharpen * (enc - _gauss_blur(enc, spec.sharpen_radius_px * scale))
    if spec.salt_pepper:
        hit = rng.random((h, w)) < spec.salt_pepper
        enc[hit] = (rng.random(int(hit.sum())) < 0.5).astype(np.float32)[:, None]
    out = np.clip(enc * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if spec.jpeg_quality is not None:
        out = decode_image(encode_image(out, fmt="jpg", quality=spec.jpeg_quality))
    return out


def _look_key(spec: LookSpec) -> int:
    return zlib.crc32(spec.name.encode("utf-8"))


def apply_look(images: np.ndarray, look: str | LookSpec, seed: int, *,
               index_offset: int = 0) -> np.ndarray:
    """Turn SIM renders into a held-out "real" look.

    Frame ``i`` draws its texture, lighting jitter and noise from ``(seed, look name,
    index_offset + i)`` only, so the same frame always gets the same result, whichever batch it
    is processed in (pass ``index_offset`` when processing in chunks).

    Args:
        images: RGB uint8 frames (jetbot_synth sim renders; any size, square or not).
        look: a name from :data:`LOOKS` or a :class:`LookSpec`.
        seed: the seed of the per-frame random streams.
        index_offset: the index of ``images[0]`` in the whole sequence.

    Returns:
        The frames with the look applied, RGB uint8.

    Shape:
        - images: :math:`(N, H, W, 3)`
        - output: :math:`(N, H, W, 3)`
    """
    spec = get_look(look)
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {arr.dtype} {arr.shape}")
    out = np.empty_like(arr)
    key = _look_key(spec)
    for i, frame in enumerate(arr):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, key, int(index_offset) + i])
        out[i] = _look_one(frame, spec, rng)
    return out


# ---------------------------------------------------------------------------- held-out builds


_CHUNK = 64


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _look_frames(paths: Sequence[Path], spec: LookSpec, seed: int, index_base: int,
                 dst_dir: Path) -> None:
    """Apply the look to ``paths`` in chunks; frame ``i`` is written as ``dst_dir/<stem>.png``."""
    for start in range(0, len(paths), _CHUNK):
        part = list(paths[start : start + _CHUNK])
        imgs, _, _ = read_images(part, on_error="raise")
        looked = apply_look(np.stack(imgs), spec, seed, index_offset=index_base + start)
        for p, img in zip(part, looked, strict=True):
            write_image(dst_dir / f"{p.stem}.png", img)


def _heldout_params(src: Path, spec: LookSpec, seed: int, n_train_real: int,
                    n_train_sim: int) -> dict[str, Any]:
    src_meta: dict[str, Any] = {}
    try:
        meta = json.loads((src / "dataset.json").read_text(encoding="utf-8"))
        src_meta = {k: meta[k] for k in ("name", "size", "seed", "counts", "generator_version")
                    if k in meta}
    except (OSError, json.JSONDecodeError):
        pass
    return {
        "name": "jetbot_synth_heldout",
        "format_version": HELDOUT_FORMAT_VERSION,
        "look": spec.name,
        "params": spec.to_dict(),
        "seed": int(seed),
        "source": str(src.resolve()),
        "source_dataset": src_meta,
        "train": {"real": n_train_real, "sim": n_train_sim},
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _matches(meta: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    return meta is not None and all(meta.get(k) == v for k, v in params.items())


def _write_paired_split(src_split: Path, dst_split: Path, spec: LookSpec, seed: int,
                        index_base: int) -> int:
    """Write ``real/`` (the look on the sim frames), ``sim/`` (copies) and ``manifest.jsonl``."""
    samples, _ = find_paired_samples(src_split, on_missing="raise", require_sim=True)
    raw = {str(r.get("stem", Path(r["real"]).stem)): r
           for r in _read_manifest(src_split / "manifest.jsonl")}
    sims = [s.sim for s in samples if s.sim is not None]
    (dst_split / "sim").mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for start in range(0, len(samples), _CHUNK):
        part = samples[start : start + _CHUNK]
        imgs, _, _ = read_images(sims[start : start + _CHUNK], on_error="raise")
        looked = apply_look(np.stack(imgs), spec, seed, index_offset=index_base + start)
        for s, img in zip(part, looked, strict=True):
            assert s.sim is not None
            write_image(dst_split / "real" / f"{s.stem}.png", img)
            sim_name = f"{s.stem}{s.sim.suffix.lower()}"
            shutil.copyfile(s.sim, dst_split / "sim" / sim_name)
            rec = dict(raw.get(s.stem, {}))
            rec.update({"stem": s.stem, "real": f"real/{s.stem}.png", "sim": f"sim/{sim_name}"})
            if "action" not in rec and s.action is not None:
                rec["action"] = list(s.action)
            order = ["stem", "real", "sim"] + [k for k in rec if k not in ("stem", "real", "sim")]
            lines.append(json.dumps({k: rec[k] for k in order}))
    atomic_write_text(dst_split / "manifest.jsonl", "".join(line + "\n" for line in lines))
    return len(samples)


def build_heldout_dataset(
    src_root: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    look: str | LookSpec,
    seed: int = 0,
    n_train_real: int | None = None,
) -> Path:
    """Build a held-out "real-domain variant" of a jetbot_synth dataset from its SIM renders.

    Layout of ``out_root``::

        look.json                                   look name, parameters, seed (written last)
        real/<stem>.png + real/manifest.jsonl       the look on the FIRST half of src sim/
        sim/<stem>.png  + sim/manifest.jsonl        the SECOND half of src sim/, copied
        val/{real,sim}/ + val/manifest.jsonl        paired: real = look(src sim), sim = src sim
        test/{real,sim}/ + test/manifest.jsonl

    Training real and sim frames come from disjoint source frames (unpaired, different scene
    states); val/test keep the source stems and expert actions. No ``camera.yaml`` is written:
    the look's optics are unknown to the user. The build goes to a hidden folder beside
    ``out_root`` that is renamed onto it at the end, so a killed build never looks complete.

    Args:
        src_root: a jetbot_synth dataset folder (``real/``, ``sim/``, ``val/``, ``test/``).
        out_root: the folder to write.
        look: a name from :data:`LOOKS` or a :class:`LookSpec`.
        seed: the seed of the look's per-frame randomness.
        n_train_real: real training frames (default: all of the first half of src sim/).

    Returns:
        ``out_root`` as a Path (reused without rebuilding when it holds a complete build whose
        ``look.json`` matches).

    Shape:
        - every written frame keeps its source frame's :math:`(H, W, 3)`.

    Raises:
        FileExistsError: ``out_root`` exists, is not empty and is not a held-out build.
        ValueError: ``n_train_real`` is not in 1..half of the source sim frames.
    """
    src, out = Path(src_root), Path(out_root)
    spec = get_look(look)
    sim_frames = list_images(src / "sim", what="source sim folder")
    half = len(sim_frames) // 2
    if half < 1:
        raise ValueError(f"source sim folder {src / 'sim'} needs at least 2 frames")
    n_real = half if n_train_real is None else int(n_train_real)
    if not 1 <= n_real <= half:
        raise ValueError(f"n_train_real must be in 1..{half} (half of {len(sim_frames)} source "
                         f"sim frames), got {n_train_real}")
    real_src, sim_src = sim_frames[:n_real], sim_frames[half:]
    params = _heldout_params(src, spec, seed, len(real_src), len(sim_src))
    if _matches(_read_json(out / "look.json"), params):
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and (
            _read_json(out / "look.json") or {}).get("name") != params["name"])):
        raise FileExistsError(f"{out} exists and is not a held-out look build (no look.json); "
                              "refusing to overwrite it: choose another output or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        src_sim_meta = {str(r.get("file")): r
                        for r in _read_manifest(src / "sim" / "manifest.jsonl")}
        _look_frames(real_src, spec, seed, _SPLIT_INDEX_BASE["train"], tmp / "real")
        (tmp / "sim").mkdir()
        real_lines, sim_lines = [], []
        for p in real_src:
            rec = {**src_sim_meta.get(p.name, {}), "file": f"{p.stem}.png",
                   "source": f"sim/{p.name}"}
            real_lines.append(json.dumps(rec))
        for p in sim_src:
            shutil.copyfile(p, tmp / "sim" / p.name)
            rec = {**src_sim_meta.get(p.name, {}), "file": p.name, "source": f"sim/{p.name}"}
            sim_lines.append(json.dumps(rec))
        atomic_write_text(tmp / "real" / "manifest.jsonl", "".join(s + "\n" for s in real_lines))
        atomic_write_text(tmp / "sim" / "manifest.jsonl", "".join(s + "\n" for s in sim_lines))
        counts = {"real": len(real_src), "sim": len(sim_src)}
        for split in ("val", "test"):
            if (src / split).is_dir():
                counts[split] = _write_paired_split(src / split, tmp / split, spec, seed,
                                                    _SPLIT_INDEX_BASE[split])
        atomic_write_json(tmp / "look.json", {**params, "counts": counts})  # last: complete
        _swap_into_place(tmp, out, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _clean_stale(out: Path) -> None:
    """Remove hidden partial builds of ``out`` left by killed processes."""
    for p in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(p.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (IndexError, ValueError, PermissionError):
            continue


def _swap_into_place(tmp: Path, out: Path, params: dict[str, Any]) -> None:
    """Rename the finished ``tmp`` onto ``out``, unless another process finished the same build."""
    swap_folder_into_place(tmp, out, lambda p: _matches(_read_json(p / "look.json"), params))


# ---------------------------------------------------------------------------- contact sheet


def make_looks_contact_sheet(src_root: str | os.PathLike[str], path: str | os.PathLike[str], *,
                             looks: Sequence[str | LookSpec] | None = None, seed: int = 0,
                             n_frames: int = 4, min_cell: int = 192) -> Path:
    """Write a PNG of test frames: sim | src real | each look applied to the sim frame.

    The frames are picked from ``src_root/test`` (Kong in view, near to far) and get exactly the
    pixels :func:`build_heldout_dataset` writes for them with the same seed.

    Args:
        src_root: a jetbot_synth dataset folder.
        path: the PNG to write.
        looks: the looks to show (default: all of :data:`LOOKS`).
        seed: the looks' seed.
        n_frames: rows.
        min_cell: smallest displayed cell size in pixels (nearest-neighbour enlargement).

    Returns:
        The path written.

    Shape:
        - each cell: :math:`(H, W, 3)` of the source, enlarged by an integer factor
    """
    specs = [get_look(k) for k in (looks if looks is not None else list(LOOKS))]
    samples, _ = find_paired_samples(Path(src_root) / "test", on_missing="raise")
    raw = {str(r.get("stem", Path(r["real"]).stem)): r
           for r in _read_manifest(Path(src_root) / "test" / "manifest.jsonl")}
    idx_in = [i for i, s in enumerate(samples) if raw.get(s.stem, {}).get("in_view", True)]
    idx_in.sort(key=lambda i: raw.get(samples[i].stem, {}).get("state", {}).get(
        "kong_distance", 0.0))
    pool = idx_in or list(range(len(samples)))
    picks = sorted({pool[round(q * (len(pool) - 1))]
                    for q in np.linspace(0.05, 0.85, n_frames)})
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    for i in picks:
        s = samples[i]
        assert s.sim is not None
        imgs, _, _ = read_images([s.sim, s.real], on_error="raise")
        sim, real = imgs
        row = [sim, real]
        for spec in specs:
            row.append(apply_look(sim[None], spec, seed,
                                  index_offset=_SPLIT_INDEX_BASE["test"] + i)[0])
        rows.append(row)
        a = s.action or (float("nan"), float("nan"))
        d = raw.get(s.stem, {}).get("state", {}).get("kong_distance", float("nan"))
        labels.append(f"test {s.stem}  d={d:.2f} m  action=({a[0]:+.2f}, {a[1]:+.2f})")
    titles = ["sim", "src real"] + [sp.name for sp in specs]
    h, w = rows[0][0].shape[:2]
    k = max(1, -(-min_cell // max(h, w)))
    ch, cw, pad, band = h * k, w * k, 4, 16
    sheet = Image.new("RGB", (len(titles) * (cw + pad) + pad,
                              band + len(rows) * (ch + band + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for j, t in enumerate(titles):
        draw.text((pad + j * (cw + pad) + 2, 2), t, fill=(230, 230, 230))
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        y = band + r * (ch + band + pad)
        draw.text((pad + 2, y + 2), label, fill=(200, 200, 120))
        for j, frame in enumerate(row):
            if frame.shape[:2] != (h, w):
                frame = np.asarray(Image.fromarray(frame).resize((w, h)))
            tile = Image.fromarray(frame).resize((cw, ch), Image.Resampling.NEAREST)
            sheet.paste(tile, (pad + j * (cw + pad), y + band))
    return write_image(path, np.asarray(sheet))


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.jetbot_synth.looks",
        description="Build a held-out real-domain variant of a jetbot_synth dataset by applying "
        "a named look to its sim renders (the paired sim frames are kept for scoring), and/or "
        "write a contact sheet of all looks.",
    )
    p.add_argument("--src", required=True, help="source jetbot_synth dataset folder")
    p.add_argument("--out", help="held-out dataset folder to write (or reuse)")
    p.add_argument("--look", choices=sorted(LOOKS), help="the look (needed with --out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-frame randomness")
    p.add_argument("--n-train-real", type=int, default=None,
                   help="real training frames (default: half of the source sim frames)")
    p.add_argument("--contact-sheet", metavar="PATH",
                   help="write a PNG: 4 test frames as sim | src real | every look")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.

    Shape:
        - no arrays.
    """
    args = _parser().parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        print("error: give --out (with --look) and/or --contact-sheet", file=sys.stderr)
        return 2
    if args.out is not None and args.look is None:
        print("error: --out needs --look", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            root = build_heldout_dataset(args.src, args.out, args.look, seed=args.seed,
                                         n_train_real=args.n_train_real)
            print(f"held-out '{args.look}' dataset: {root}")
        if args.contact_sheet is not None:
            sheet = make_looks_contact_sheet(args.src, args.contact_sheet, seed=args.seed)
            print(f"contact sheet: {sheet}")
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
