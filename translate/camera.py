"""Camera models (OpenCV pinhole/fisheye), camera.yaml I/O, the real-to-sim geometric correction."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from translate.fsutil import atomic_write_text

if TYPE_CHECKING:
    import torch

__all__ = [
    "CameraConfigError",
    "CameraCorrection",
    "CameraModel",
    "CameraModelName",
    "CameraRig",
    "NO_CAMERA",
    "load_camera_yaml",
    "resolve_camera_setting",
]

CameraModelName = Literal["pinhole", "fisheye"]
_MODELS: tuple[str, ...] = get_args(CameraModelName)
# OpenCV's rational/radial-tangential model: (k1, k2, p1, p2[, k3[, k4, k5, k6]]).
_PINHOLE_DIST_LENGTHS = (0, 4, 5, 8)
_FISHEYE_DIST_LENGTHS = (0, 4)
_MODEL_KEYS = ("width", "height", "model", "fx", "fy", "cx", "cy", "dist")
_REQUIRED_KEYS = ("width", "height", "fx", "fy", "cx", "cy")
_RIG_KEYS = ("version", "real", "sim")
_YAML_VERSION = 1
# Newton solves below stop at this residual (normalized image units); far below a pixel.
_NEWTON_TOL = 1e-13
_NEWTON_ITERS = 60
# A grid_sample coordinate for sim pixels with no real source: far enough outside [-1, 1] that all
# four bilinear neighbours are out of bounds, so zeros padding returns exactly 0.
_OUTSIDE = -10.0


class CameraConfigError(ValueError):
    """A camera model or camera.yaml is invalid. The message names the file and key at fault."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _yaml_float(v: Any) -> Any:
    # YAML 1.1 (PyYAML) reads "1e-7" (no dot) as a string; accept it as the number it means.
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _check_model_fields(
    where: str,
    width: Any,
    height: Any,
    fx: Any,
    fy: Any,
    cx: Any,
    cy: Any,
    model: Any,
    dist: Any,
) -> None:
    for key, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise CameraConfigError(f"{where}.{key} must be an integer, got {v!r}")
        if v < 2:
            raise CameraConfigError(f"{where}.{key} must be at least 2 pixels, got {v}")
    for key, v in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not _is_number(v) or not math.isfinite(float(v)):
            raise CameraConfigError(f"{where}.{key} must be a finite number, got {v!r}")
    for key, v in (("fx", fx), ("fy", fy)):
        if float(v) <= 0:
            raise CameraConfigError(f"{where}.{key} (focal length in pixels) must be > 0, got {v}")
    if model not in _MODELS:
        raise CameraConfigError(
            f"{where}.model must be one of {', '.join(_MODELS)}, got {model!r}"
        )
    if not isinstance(dist, (list, tuple)):
        raise CameraConfigError(f"{where}.dist must be a list of numbers, got {dist!r}")
    for i, v in enumerate(dist):
        if not _is_number(v) or not math.isfinite(float(v)):
            raise CameraConfigError(f"{where}.dist[{i}] must be a finite number, got {v!r}")
    allowed = _PINHOLE_DIST_LENGTHS if model == "pinhole" else _FISHEYE_DIST_LENGTHS
    if len(dist) not in allowed:
        counts = "4, 5 or 8 values" if model == "pinhole" else "4 values"
        order = (
            "(k1, k2, p1, p2[, k3[, k4, k5, k6]])" if model == "pinhole" else "(k1, k2, k3, k4)"
        )
        raise CameraConfigError(
            f"{where}.dist must have {counts} for model {model!r}, got {len(dist)} "
            f"(OpenCV order {order}; [] for none)"
        )


def _check_last_dim(arr: np.ndarray, n: int, name: str) -> None:
    if arr.ndim < 1 or arr.shape[-1] != n:
        raise ValueError(f"{name} must have shape (..., {n}), got {tuple(arr.shape)}")


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics and lens distortion of one camera, with OpenCV's conventions.

    Pixel centres sit at integer coordinates 0..W-1; camera axes are x right, y down, z forward.
    ``pinhole`` is OpenCV's radial-tangential (rational) model, ``dist`` = (k1, k2, p1, p2[, k3[,
    k4, k5, k6]]) as for ``cv2.projectPoints``; ``fisheye`` is ``cv2.fisheye``'s equidistant model
    with ``dist`` = (k1, k2, k3, k4). An empty ``dist`` means no distortion.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        fx: horizontal focal length in pixels.
        fy: vertical focal length in pixels.
        cx: principal point x in pixels.
        cy: principal point y in pixels.
        model: ``"pinhole"`` or ``"fisheye"``.
        dist: distortion coefficients in OpenCV order.

    Example:
        >>> cam = CameraModel.from_fov(128, 128, 90.0)
        >>> cam.project(np.array([1.0, 0.0, 1.0]))
        array([127.5,  63.5])
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: CameraModelName = "pinhole"
    dist: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        dist = tuple(self.dist) if isinstance(self.dist, (list, tuple, np.ndarray)) else self.dist
        _check_model_fields(
            "CameraModel", self.width, self.height, self.fx, self.fy, self.cx, self.cy,
            self.model, dist,
        )
        # Normalise types so equality, hashing and YAML output don't depend on how it was built.
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        for key in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, key, float(getattr(self, key)))
        object.__setattr__(self, "dist", tuple(float(v) for v in dist))

    # ------------------------------------------------------------------ construction / I/O

    @classmethod
    def from_fov(
        cls,
        width: int,
        height: int,
        hfov_deg: float,
        *,
        model: CameraModelName = "pinhole",
        dist: tuple[float, ...] = (),
    ) -> CameraModel:
        """Build a camera from its horizontal field of view, principal point at the centre.

        The FOV spans the outer pixel edges (-0.5 .. W-0.5). Pinhole: ``fx = (W/2)/tan(hfov/2)``;
        fisheye (equidistant): ``fx = (W/2)/(hfov/2 in radians)``, so the image edge is at hfov/2
        before the k-terms. Square pixels: ``fy = fx``.

        Args:
            width: image width in pixels.
            height: image height in pixels.
            hfov_deg: horizontal field of view in degrees (pinhole: < 180).
            model: ``"pinhole"`` or ``"fisheye"``.
            dist: distortion coefficients in OpenCV order.

        Returns:
            The camera model.
        """
        if not _is_number(hfov_deg) or not 0 < hfov_deg < (180 if model == "pinhole" else 360):
            limit = 180 if model == "pinhole" else 360
            raise CameraConfigError(
                f"hfov_deg must be in (0, {limit}) for model {model!r}, got {hfov_deg!r}"
            )
        half = math.radians(hfov_deg) / 2
        f = (width / 2) / (math.tan(half) if model == "pinhole" else half)
        return cls(width, height, f, f, (width - 1) / 2, (height - 1) / 2, model, tuple(dist))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (YAML/JSON ready) with the keys of camera.yaml."""
        return {
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "dist": list(self.dist),
        }

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "camera") -> CameraModel:
        """Build a camera from a dict as written by :meth:`to_dict`, with errors naming the key.

        Args:
            d: mapping with ``width, height, fx, fy, cx, cy`` and optional ``model`` (default
                pinhole) and ``dist`` (default none).
            where: prefix for error messages, e.g. ``"camera.yaml: real"``.

        Returns:
            The camera model.

        Raises:
            CameraConfigError: unknown or missing key, or a bad value; the message names it.
        """
        if not isinstance(d, dict):
            raise CameraConfigError(
                f"{where} must be a mapping with keys {', '.join(_MODEL_KEYS)}, "
                f"got {type(d).__name__}"
            )
        unknown = [k for k in d if k not in _MODEL_KEYS]
        if unknown:
            raise CameraConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys are {', '.join(_MODEL_KEYS)}"
            )
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise CameraConfigError(
                f"{where}: missing key(s) {', '.join(missing)} "
                f"(required: {', '.join(_REQUIRED_KEYS)}; optional: model, dist)"
            )
        model = d.get("model", "pinhole")
        dist = d.get("dist", [])
        if dist is None:
            dist = []
        if isinstance(dist, (list, tuple)):
            dist = [_yaml_float(v) for v in dist]
        fx, fy, cx, cy = (_yaml_float(d[k]) for k in ("fx", "fy", "cx", "cy"))
        _check_model_fields(where, d["width"], d["height"], fx, fy, cx, cy, model, dist)
        return cls(
            int(d["width"]), int(d["height"]), float(fx), float(fy), float(cx), float(cy),
            model, tuple(float(v) for v in dist),
        )

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same optics at another resolution (pixel edges, not centres, scale).

        With OpenCV's pixel-centre convention ``fx' = fx * s`` and ``cx' = (cx + 0.5) * s - 0.5``,
        so the field of view and the distortion (in normalized coordinates) are unchanged.

        Args:
            width: new image width in pixels.
            height: new image height in pixels.

        Returns:
            The rescaled camera model.
        """
        sx = width / self.width
        sy = height / self.height
        return CameraModel(
            width, height, self.fx * sx, self.fy * sy,
            (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.model, self.dist,
        )

    # ------------------------------------------------------------------ geometry

    @property
    def has_distortion(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return any(v != 0.0 for v in self.dist)

    def _pinhole_coeffs(self) -> tuple[float, ...]:
        d = list(self.dist) + [0.0] * (8 - len(self.dist))
        return tuple(d)  # k1, k2, p1, p2, k3, k4, k5, k6

    def _fisheye_coeffs(self) -> tuple[float, ...]:
        return tuple(self.dist) if self.dist else (0.0, 0.0, 0.0, 0.0)

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Map normalized undistorted coordinates to normalized distorted ones.

        Exactly OpenCV's formulas (``cv2.projectPoints`` / ``cv2.fisheye.projectPoints``) before
        the focal length and principal point are applied.

        Args:
            xy: undistorted normalized coordinates ``(X/Z, Y/Z)``.

        Returns:
            Distorted normalized coordinates, float64.

        Shape:
            - xy: :math:`(*, 2)`
            - output: :math:`(*, 2)`
        """
        xy = np.asarray(xy, dtype=np.float64)
        _check_last_dim(xy, 2, "xy")
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        if self.model == "pinhole":
            k1, k2, p1, p2, k3, k4, k5, k6 = self._pinhole_coeffs()
            radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            return np.stack([xd, yd], axis=-1)
        r = np.sqrt(r2)
        theta = np.arctan(r)
        theta_d = self._fisheye_theta_d(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            # theta_d / r -> 1 as r -> 0 (theta ~ r, theta_d ~ theta).
            scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
        return xy * scale[..., None]

    def _fisheye_theta_d(self, theta: np.ndarray) -> np.ndarray:
        k1, k2, k3, k4 = self._fisheye_coeffs()
        t2 = theta * theta
        return theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))

    def undistort(self, xy_d: np.ndarray) -> np.ndarray:
        """Invert :meth:`distort` by Newton's method.

        Converges to below 1e-9 wherever the lens model is invertible. Points with no valid
        inverse (a fisheye ray at or beyond 90 degrees from the axis, or a distortion polynomial
        that has folded over) come back as NaN.

        Args:
            xy_d: distorted normalized coordinates.

        Returns:
            Undistorted normalized coordinates ``(X/Z, Y/Z)``, float64.

        Shape:
            - xy_d: :math:`(*, 2)`
            - output: :math:`(*, 2)`
        """
        xy_d = np.asarray(xy_d, dtype=np.float64)
        _check_last_dim(xy_d, 2, "xy_d")
        if self.model == "pinhole" and not self.has_distortion:
            return xy_d.copy()
        # Work on a flat (P, 2) array so 0-d inputs don't collapse to scalars mid-iteration.
        flat = xy_d.reshape(-1, 2)
        if self.model == "pinhole":
            out = self._pinhole_undistort(flat)
        else:
            out = self._fisheye_undistort(flat)
        return out.reshape(xy_d.shape)

    def _fisheye_undistort(self, xy_d: np.ndarray) -> np.ndarray:
        k1, k2, k3, k4 = self._fisheye_coeffs()
        table_t, table_td, limit = _radial_table(self.model, self.dist)
        # tan() needs theta < 90 degrees to give a z=1 ray.
        limit = min(limit, math.pi / 2 - 1e-9)
        theta_d = np.hypot(xy_d[:, 0], xy_d[:, 1])
        # Start from the tabulated inverse: Newton then needs two or three steps.
        theta = np.interp(theta_d, table_td, table_t)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for _ in range(_NEWTON_ITERS):
                t2 = theta * theta
                f = self._fisheye_theta_d(theta) - theta_d
                if not np.any(np.abs(f) > _NEWTON_TOL):
                    break
                df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
                theta = np.clip(theta - f / df, 0.0, math.pi)
            t2 = theta * theta
            df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
            resid = np.abs(self._fisheye_theta_d(theta) - theta_d)
            # The principal branch only: inside the angle where theta_d stops growing, so the
            # ray found is the lens's own and not a fold of the polynomial.
            ok = (resid < 1e-10) & (df > 0) & (theta < limit)
            scale = np.where(
                theta_d > 1e-12, np.tan(theta) / np.where(theta_d > 1e-12, theta_d, 1.0), 1.0
            )
        out = xy_d * scale[:, None]
        out[~ok] = np.nan
        return out

    def _pinhole_undistort(self, xy_d: np.ndarray) -> np.ndarray:
        k1, k2, p1, p2, k3, k4, k5, k6 = self._pinhole_coeffs()
        table_r, table_rd, r_limit = _radial_table(self.model, self.dist)

        def residual_and_jacobian(
            x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            r2 = x * x + y * y
            a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
            b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
            da = k1 + r2 * (2 * k2 + r2 * 3 * k3)
            db = k4 + r2 * (2 * k5 + r2 * 3 * k6)
            radial = a / b
            dradial = (da * b - a * db) / (b * b)  # d radial / d r2
            fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - tx
            fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - ty
            j11 = radial + 2 * x * x * dradial + 2 * p1 * y + 6 * p2 * x
            j12 = 2 * x * y * dradial + 2 * p1 * x + 2 * p2 * y  # = j21
            j22 = radial + 2 * y * y * dradial + 6 * p1 * y + 2 * p2 * x
            return fx, fy, j11, j12, j22

        def solve(
            x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            x, y = x.copy(), y.copy()
            act = np.arange(x.size)  # points still iterating
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                for _ in range(_NEWTON_ITERS):
                    xa, ya, txa, tya = x[act], y[act], tx[act], ty[act]
                    fx, fy, j11, j12, j22 = residual_and_jacobian(xa, ya, txa, tya)
                    err = np.hypot(fx, fy)
                    keep = ~(err <= _NEWTON_TOL)
                    if not keep.any():
                        break
                    act, xa, ya, txa, tya = act[keep], xa[keep], ya[keep], txa[keep], tya[keep]
                    fx, fy, j11, j12, j22, err = (
                        v[keep] for v in (fx, fy, j11, j12, j22, err)
                    )
                    det = j11 * j22 - j12 * j12
                    sx = (j22 * fx - j12 * fy) / det
                    sy = (j11 * fy - j12 * fx) / det
                    # Damped step: halve until the residual shrinks, so a full Newton step that
                    # overshoots under strong distortion cannot throw a point off its branch.
                    t = np.ones_like(xa)
                    for _ in range(8):
                        nfx, nfy, *_ = residual_and_jacobian(xa - t * sx, ya - t * sy, txa, tya)
                        worse = ~(np.hypot(nfx, nfy) <= err)
                        if not worse.any():
                            break
                        t = np.where(worse, t * 0.5, t)
                    x[act] = xa - t * sx
                    y[act] = ya - t * sy
                fx, fy, j11, j12, j22 = residual_and_jacobian(x, y, tx, ty)
                # The principal branch only: positive Jacobian and inside the radius where the
                # radial map stops growing; anything else is a fold of the polynomial.
                ok = (
                    (np.hypot(fx, fy) < 1e-10)
                    & (j11 * j22 - j12 * j12 > 0)
                    & (np.hypot(x, y) < r_limit)
                )
            return x, y, ok

        xd, yd = xy_d[:, 0], xy_d[:, 1]
        rd = np.hypot(xd, yd)
        # Beyond the largest distorted radius the principal branch reaches (radial part plus a
        # bound on the tangential part) there is nothing to solve for.
        rd_max = table_rd[-1] + 3 * (abs(p1) + abs(p2)) * r_limit**2
        todo = np.flatnonzero(~(rd > rd_max + 1e-9))
        x = np.full(rd.shape, np.nan)
        y = np.full(rd.shape, np.nan)
        ok = np.zeros(rd.shape, dtype=bool)
        if todo.size:
            xd_t, yd_t, rd_t = xd[todo], yd[todo], rd[todo]
            # Start from the tabulated radial-only inverse; tangential terms are small.
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(rd_t > 0, np.interp(rd_t, table_rd, table_r) / rd_t, 1.0)
            xs, ys, oks = solve(xd_t * s, yd_t * s, xd_t, yd_t)
            for frac in (1.0, 0.5):  # rare: restart failures from the distorted point, or inside
                retry = np.flatnonzero(~oks)
                if not retry.size:
                    break
                x2, y2, ok2 = solve(
                    xd_t[retry] * frac, yd_t[retry] * frac, xd_t[retry], yd_t[retry]
                )
                xs[retry], ys[retry], oks[retry] = x2, y2, ok2
            x[todo], y[todo], ok[todo] = xs, ys, oks
        out = np.stack([x, y], axis=-1)
        out[~ok] = np.nan
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project camera-frame 3D points to pixel coordinates.

        Points with ``z <= 0`` (behind the camera) project to NaN.

        Args:
            points: points ``(X, Y, Z)`` in the camera frame (OpenCV axes).

        Returns:
            Pixel coordinates ``(u, v)``, float64.

        Shape:
            - points: :math:`(*, 3)`
            - output: :math:`(*, 2)`
        """
        points = np.asarray(points, dtype=np.float64)
        _check_last_dim(points, 3, "points")
        z = points[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = points[..., :2] / np.where(z > 0, z, np.nan)[..., None]
        return self.normalized_to_pixels(self.distort(xy))

    def normalized_to_pixels(self, xy_d: np.ndarray) -> np.ndarray:
        """Apply the intrinsics to distorted normalized coordinates.

        Shape:
            - xy_d: :math:`(*, 2)`
            - output: :math:`(*, 2)`
        """
        xy_d = np.asarray(xy_d, dtype=np.float64)
        _check_last_dim(xy_d, 2, "xy_d")
        u = self.fx * xy_d[..., 0] + self.cx
        v = self.fy * xy_d[..., 1] + self.cy
        return np.stack([u, v], axis=-1)

    def unproject_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Map pixel coordinates to normalized undistorted coordinates (the ray is ``(x, y, 1)``).

        Args:
            uv: pixel coordinates ``(u, v)``.

        Returns:
            Undistorted normalized coordinates, float64; NaN where the lens has no inverse
            (see :meth:`undistort`).

        Shape:
            - uv: :math:`(*, 2)`
            - output: :math:`(*, 2)`
        """
        uv = np.asarray(uv, dtype=np.float64)
        _check_last_dim(uv, 2, "uv")
        xy_d = np.stack([(uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy], -1)
        return self.undistort(xy_d)

    def pixel_grid(self) -> np.ndarray:
        """Pixel-centre coordinates ``(u, v)`` of every pixel.

        Shape:
            - output: :math:`(H, W, 2)`, float64
        """
        u, v = np.meshgrid(
            np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64)
        )
        return np.stack([u, v], axis=-1)

    def pixel_rays(self) -> np.ndarray:
        """Ray direction ``(x, y, 1)`` through every pixel centre (undistorted, not unit length).

        Pixels with no valid ray (beyond 90 degrees for a fisheye, or where the lens polynomial
        has folded over) are NaN in all three components.

        Returns:
            Float64 ray directions in the camera frame (OpenCV axes).

        Shape:
            - output: :math:`(H, W, 3)`
        """
        xy = self.unproject_pixels(self.pixel_grid())
        z = np.where(np.isfinite(xy).all(axis=-1, keepdims=True), 1.0, np.nan)
        return np.concatenate([xy, z], axis=-1)

    def hfov_deg(self) -> float:
        """Horizontal field of view in degrees, between the outer pixel edges on the centre row."""
        uv = np.array([[-0.5, self.cy], [self.width - 0.5, self.cy]])
        xy = self.unproject_pixels(uv)
        return math.degrees(math.atan(abs(xy[0, 0])) + math.atan(abs(xy[1, 0])))


@functools.lru_cache(maxsize=64)
def _radial_table(model: str, dist: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """Tabulate the radial map up to where it first stops increasing.

    Pinhole: undistorted radius r -> distorted radius (radial terms only); fisheye: theta ->
    theta_d. Beyond the returned limit the lens polynomial folds back, so rays there cannot be
    told apart from rays inside: that is the edge of the model's valid field of view (``inf``
    when it never folds within the table). The table seeds Newton's method in ``undistort``.

    Returns:
        ``(r, r_d, limit)``: increasing tables (read-only) and the limit radius.
    """
    if model == "pinhole":
        k1, k2, _p1, _p2, k3, k4, k5, k6 = (list(dist) + [0.0] * 8)[:8]
        r = np.concatenate([np.linspace(0.0, 10.0, 20001), np.geomspace(10.0, 1e4, 4000)[1:]])
        r2 = r * r
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rd = r * (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    else:
        k1, k2, k3, k4 = dist if dist else (0.0, 0.0, 0.0, 0.0)
        r = np.linspace(0.0, math.pi, 20001)
        t2 = r * r
        rd = r * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    with np.errstate(invalid="ignore"):
        fold = np.flatnonzero(~(np.diff(rd) > 0))
    n = fold[0] + 1 if fold.size else r.size
    limit = float(r[n - 1]) if fold.size else math.inf
    r, rd = r[:n].copy(), rd[:n].copy()
    r.setflags(write=False)
    rd.setflags(write=False)
    return r, rd, limit


def _format_float(v: float) -> str:
    # repr gives the shortest string that round-trips exactly; YAML needs a dot or exponent.
    s = repr(float(v))
    mantissa, e, exp = s.partition("e")
    if "." not in mantissa:
        mantissa += ".0"  # PyYAML (YAML 1.1) reads "1e-07" as a string, "1.0e-07" as a float
    return mantissa + e + exp


def _camera_yaml_block(name: str, cam: CameraModel) -> list[str]:
    dist = ", ".join(_format_float(v) for v in cam.dist)
    return [
        f"{name}:",
        f"  width: {cam.width}",
        f"  height: {cam.height}",
        f"  model: {cam.model}",
        f"  fx: {_format_float(cam.fx)}",
        f"  fy: {_format_float(cam.fy)}",
        f"  cx: {_format_float(cam.cx)}",
        f"  cy: {_format_float(cam.cy)}",
        f"  dist: [{dist}]",
    ]


@dataclass(frozen=True)
class CameraRig:
    """The real camera and the sim camera it is corrected to: the contents of ``camera.yaml``.

    Args:
        real: the robot's camera (distorted, wide).
        sim: the simulator's camera (the view the translator and policy expect).
    """

    real: CameraModel
    sim: CameraModel

    def to_dict(self) -> dict[str, Any]:
        """``{"version": 1, "real": {...}, "sim": {...}}``."""
        return {"version": _YAML_VERSION, "real": self.real.to_dict(), "sim": self.sim.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "camera") -> CameraRig:
        """Build a rig from a parsed camera.yaml mapping; errors are prefixed with ``where``."""
        if not isinstance(d, dict):
            raise CameraConfigError(
                f"{where}: expected a mapping with keys 'real' and 'sim', got {type(d).__name__}"
            )
        unknown = [k for k in d if k not in _RIG_KEYS]
        if unknown:
            raise CameraConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid top-level keys are {', '.join(_RIG_KEYS)}"
            )
        if "version" in d and d["version"] != _YAML_VERSION:
            raise CameraConfigError(
                f"{where}: version must be {_YAML_VERSION}, got {d['version']!r}"
            )
        for key in ("real", "sim"):
            if key not in d:
                raise CameraConfigError(f"{where}: missing key {key!r}")
        return cls(
            CameraModel.from_dict(d["real"], where=f"{where}: real"),
            CameraModel.from_dict(d["sim"], where=f"{where}: sim"),
        )

    def to_yaml(self) -> str:
        """camera.yaml text (exact round trip of every value)."""
        lines = [
            "# sim2real translate camera model (OpenCV conventions)",
            f"version: {_YAML_VERSION}",
            *_camera_yaml_block("real", self.real),
            *_camera_yaml_block("sim", self.sim),
        ]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write camera.yaml atomically. Returns the path."""
        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CameraRig:
        """Read camera.yaml; see :func:`load_camera_yaml`."""
        return load_camera_yaml(path)


def load_camera_yaml(path: str | os.PathLike[str]) -> CameraRig:
    """Read and validate a camera.yaml.

    Args:
        path: the file.

    Returns:
        The camera rig.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        CameraConfigError: the YAML does not parse or a key is missing, unknown or bad; the
            message names the file and the key.
    """
    import yaml  # lazily: the rest of this module needs only numpy

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera model file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CameraConfigError(f"{path}: not valid YAML: {exc}") from exc
    return CameraRig.from_dict(data, where=str(path))


#: Setting values that mean "no lens correction" (compared lower-case).
NO_CAMERA = ("", "none", "null", "off", "false")


def resolve_camera_setting(
    setting: str | os.PathLike[str] | None,
    candidates: Sequence[str | os.PathLike[str] | None] = (),
    *,
    what: str = "camera",
) -> Path | None:
    """The camera.yaml a ``camera`` / ``data.camera_yaml`` setting names: the one rule for ``auto``.

    Training (``data.camera_yaml``), the evaluation (``camera``) and the glue between them all
    resolve their setting here.

    Args:
        setting: ``"auto"`` (the first of ``candidates`` that is a file, else None), None or one
            of :data:`NO_CAMERA` (no correction), or a camera.yaml path (must exist).
        candidates: where ``auto`` looks, in order: the camera.yaml files the data may hold
            (None entries are skipped).
        what: the setting's name, for the error message.

    Returns:
        The camera.yaml, or None for no correction.

    Raises:
        FileNotFoundError: a path that is not a file (the message names the setting).

    Example:
        >>> resolve_camera_setting("none") is None
        True
    """
    if setting is None or str(setting).strip().lower() in NO_CAMERA:
        return None
    if str(setting).strip().lower() == "auto":
        return next((Path(c) for c in candidates if c is not None and Path(c).is_file()), None)
    path = Path(setting)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist (use {what}=auto or {what}=none)")
    return path


class CameraCorrection:
    """Undistort a real frame and remap it to the sim camera's view.

    For every sim pixel the sim ray is pushed through the real camera's lens model to find where
    the real frame is sampled. The maps are computed once, here; :meth:`apply` (numpy) and
    :meth:`apply_torch` (``grid_sample``) then do bilinear sampling, with sim pixels whose ray
    falls outside the real image set to 0.

    Args:
        real: the robot's camera.
        sim: the target (simulator) camera.

    Attributes:
        map_x: real-image x coordinate sampled for each sim pixel, float32 (H_sim, W_sim); -1
            where not ``valid`` (so cv2.remap with a constant border also gives 0).
        map_y: real-image y coordinate, float32 (H_sim, W_sim).
        valid: the sim pixel maps inside the real image, bool (H_sim, W_sim).

    Example:
        >>> real = CameraModel.from_fov(64, 64, 160.0, model="fisheye")
        >>> sim = CameraModel.from_fov(64, 64, 90.0)
        >>> corr = CameraCorrection(real, sim)
        >>> corr.apply(np.zeros((64, 64, 3), np.uint8)).shape
        (64, 64, 3)
    """

    def __init__(self, real: CameraModel, sim: CameraModel) -> None:
        if not isinstance(real, CameraModel) or not isinstance(sim, CameraModel):
            raise TypeError(
                f"real and sim must be CameraModel, got {type(real).__name__} and "
                f"{type(sim).__name__}"
            )
        self.real = real
        self.sim = sim
        self._identity = real == sim
        hs, ws = sim.height, sim.width
        if self._identity:
            grid = sim.pixel_grid()
            mx, my = grid[..., 0], grid[..., 1]
            valid = np.ones((hs, ws), dtype=bool)
        else:
            xy = sim.unproject_pixels(sim.pixel_grid())  # (Hs, Ws, 2) sim rays
            xy_d = real.distort(xy)
            uv = real.normalized_to_pixels(xy_d)
            mx, my = uv[..., 0], uv[..., 1]
            with np.errstate(invalid="ignore"):
                valid = (
                    np.isfinite(mx) & np.isfinite(my)
                    & (mx >= 0) & (mx <= real.width - 1)
                    & (my >= 0) & (my <= real.height - 1)
                )
                # Beyond the lens's monotonic range the real model folds back into the image:
                # such a sim pixel would sample a wrong ray, so it must not count as seen.
                back = real.undistort(xy_d)
                scale = 1.0 + np.abs(xy).max(axis=-1)
                valid &= np.all(np.abs(back - xy) <= 1e-6 * scale[..., None], axis=-1)
        self.valid: np.ndarray = valid
        self.map_x: np.ndarray = np.where(valid, mx, -1.0).astype(np.float32)
        self.map_y: np.ndarray = np.where(valid, my, -1.0).astype(np.float32)
        self._prepare_numpy()
        self._grid_np = self._make_grid()
        self._torch_grids: dict[tuple[str, Any], Any] = {}
        self._plans: dict[tuple[int, Any], Any] = {}

    @classmethod
    def from_rig(cls, rig: CameraRig, *, min_coverage: float = 0.5) -> CameraCorrection:
        """Correction from a :class:`CameraRig` (e.g. a camera.yaml), checked for plausibility.

        Args:
            rig: the real and sim cameras.
            min_coverage: the least share of the sim view that must map inside the real image
                (where the real lens model is invertible). Below it the lens coefficients are
                implausible for the camera (wrong order or units) and corrected frames would be
                mostly black; 0 turns the check off.

        Raises:
            CameraConfigError: the correction covers less than ``min_coverage``; the message says
                how much and what to check.
        """
        corr = cls(rig.real, rig.sim)
        coverage = float(corr.valid.mean())
        if coverage < min_coverage:
            raise CameraConfigError(
                f"camera: only {100 * coverage:.0f} % of the sim view maps inside the real image with "
                f"the real camera's {rig.real.model} distortion {list(rig.real.dist)} (the lens map is "
                "not monotone, or far too strong, over the frame): corrected frames would be mostly "
                "black; check the coefficients' order and units (OpenCV: k1, k2, p1, p2[, k3]; fisheye: "
                "k1..k4) and fx, fy")
        return corr

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> CameraCorrection:
        """Correction from a camera.yaml file."""
        return cls.from_rig(load_camera_yaml(path))

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "camera correction") -> CameraCorrection:
        """Rebuild from :meth:`to_dict` output (e.g. read back from ONNX metadata)."""
        rig = CameraRig.from_dict(d, where=where)
        return cls(rig.real, rig.sim)

    def to_dict(self) -> dict[str, Any]:
        """``{"real": {...}, "sim": {...}}``: enough to rebuild this correction."""
        return {"real": self.real.to_dict(), "sim": self.sim.to_dict()}

    @property
    def is_identity(self) -> bool:
        """True when real and sim cameras are equal: apply and apply_torch just copy."""
        return self._identity

    @property
    def in_size(self) -> tuple[int, int]:
        """Input (real) frame size ``(H, W)``."""
        return self.real.height, self.real.width

    @property
    def out_size(self) -> tuple[int, int]:
        """Output (sim) frame size ``(H, W)``."""
        return self.sim.height, self.sim.width

    def _prepare_numpy(self) -> None:
        w = self.real.width
        idx = np.flatnonzero(self.valid)
        x = self.map_x.reshape(-1)[idx].astype(np.float64)
        y = self.map_y.reshape(-1)[idx].astype(np.float64)
        # Clamp the left/top neighbour so x = W-1 exactly uses weight 1 on the last column.
        x0 = np.clip(np.floor(x), 0, self.real.width - 2).astype(np.intp)
        y0 = np.clip(np.floor(y), 0, self.real.height - 2).astype(np.intp)
        wx = x - x0
        wy = y - y0
        self._out_idx = idx
        self._i00 = y0 * w + x0
        self._i01 = self._i00 + 1
        self._i10 = self._i00 + w
        self._i11 = self._i10 + 1
        self._w00 = (1 - wx) * (1 - wy)
        self._w01 = wx * (1 - wy)
        self._w10 = (1 - wx) * wy
        self._w11 = wx * wy

    def _gather_plan(
        self, c: int, compute: type[np.floating[Any]]
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
        key = (c, compute)
        plan = self._plans.get(key)
        if plan is None:
            ch = np.arange(c)
            idx = [
                (i[:, None] * c + ch).reshape(-1)
                for i in (self._i00, self._i01, self._i10, self._i11)
            ]
            wts = [
                np.repeat(wt.reshape(-1).astype(compute), c)
                for wt in (self._w00, self._w01, self._w10, self._w11)
            ]
            out_idx = None if self.valid.all() else (self._out_idx[:, None] * c + ch).reshape(-1)
            plan = (idx, wts, out_idx)
            self._plans[key] = plan
        return plan

    def _make_grid(self) -> np.ndarray:
        gx = 2.0 * self.map_x.astype(np.float64) / (self.real.width - 1) - 1.0
        gy = 2.0 * self.map_y.astype(np.float64) / (self.real.height - 1) - 1.0
        gx = np.where(self.valid, gx, _OUTSIDE)
        gy = np.where(self.valid, gy, _OUTSIDE)
        return np.stack([gx, gy], axis=-1)[None].astype(np.float32)

    def grid(self) -> np.ndarray:
        """The sampling grid for ``grid_sample(..., align_corners=True, padding_mode="zeros")``.

        Sim pixels with no real source hold a coordinate far outside [-1, 1], so they sample 0.
        Suitable for embedding as a constant in an ONNX ``GridSample`` node.

        Shape:
            - output: :math:`(1, H_{sim}, W_{sim}, 2)`, float32, last axis ``(x, y)``
        """
        return self._grid_np.copy()

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Correct one frame or a batch (numpy, bilinear, outside pixels 0).

        uint8 frames are interpolated in float32 and rounded back; float frames keep their dtype.

        Args:
            frames: real frames, uint8 or float, channels last.

        Returns:
            Corrected frames at the sim camera's size, same dtype.

        Shape:
            - frames: :math:`(H_{real}, W_{real}, C)` or :math:`(N, H_{real}, W_{real}, C)`
            - output: :math:`(H_{sim}, W_{sim}, C)` or :math:`(N, H_{sim}, W_{sim}, C)`
        """
        frames = np.asarray(frames)
        if frames.ndim not in (3, 4):
            raise ValueError(
                f"frames must have shape (H, W, C) or (N, H, W, C), got {frames.shape}"
            )
        h, w = frames.shape[-3], frames.shape[-2]
        if (h, w) != self.in_size:
            raise ValueError(
                f"frames are {w}x{h} (WxH) but the real camera in camera.yaml is "
                f"{self.real.width}x{self.real.height}; got frames of shape {frames.shape}"
            )
        if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
            raise TypeError(f"frames must be uint8 or floating point, got dtype {frames.dtype}")
        if self.is_identity:
            return frames.copy()
        single = frames.ndim == 3
        batch = frames[None] if single else frames
        n, c = batch.shape[0], batch.shape[-1]
        compute = np.float64 if frames.dtype == np.float64 else np.float32
        idx, wts, out_idx = self._gather_plan(c, compute)
        flat = batch.reshape(n, h * w * c)
        hs, ws = self.out_size
        out = np.zeros((n, hs * ws * c), dtype=frames.dtype)
        # Gathering from (N, H*W*C) with channel-expanded indices reads contiguous runs (2.5x
        # faster than indexing the pixel axis of (N, H*W, C)); chunks of ~1 MB of float scratch
        # keep the four passes in cache.
        m = idx[0].size
        chunk = max(1, (1 << 20) // max(1, m * np.dtype(compute).itemsize))
        acc = np.empty((min(chunk, n), m), dtype=compute)
        tmp = np.empty_like(acc)
        for i in range(0, n, chunk):
            part = flat[i : i + chunk]
            a, t = acc[: part.shape[0]], tmp[: part.shape[0]]
            np.multiply(np.take(part, idx[0], axis=1), wts[0], out=a)
            for k in (1, 2, 3):
                np.multiply(np.take(part, idx[k], axis=1), wts[k], out=t)
                a += t
            if frames.dtype == np.uint8:
                # a convex combination of uint8 values: rounding keeps it in [0, 255]
                np.rint(a, out=a)
            if out_idx is None:
                out[i : i + chunk] = a
            else:
                out[i : i + chunk, out_idx] = a
        out = out.reshape(n, hs, ws, c)
        return out[0] if single else out

    def apply_torch(self, frames: torch.Tensor) -> torch.Tensor:
        """Correct a batch of float tensors with ``grid_sample`` (bilinear, zeros padding).

        The grid is built once per device and dtype and cached; autograd flows through.

        Args:
            frames: real frames, floating point, on any device.

        Returns:
            Corrected frames at the sim camera's size, same device and dtype.

        Shape:
            - frames: :math:`(N, C, H_{real}, W_{real})`
            - output: :math:`(N, C, H_{sim}, W_{sim})`
        """
        import torch
        import torch.nn.functional as F

        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if frames.ndim != 4:
            raise ValueError(f"frames must have shape (N, C, H, W), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise TypeError(f"frames must be floating point, got dtype {frames.dtype}")
        h, w = int(frames.shape[-2]), int(frames.shape[-1])
        if (h, w) != self.in_size:
            raise ValueError(
                f"frames are {w}x{h} (WxH) but the real camera in camera.yaml is "
                f"{self.real.width}x{self.real.height}; got frames of shape "
                f"{tuple(frames.shape)}"
            )
        if self.is_identity:
            return frames.clone()
        key = (str(frames.device), frames.dtype)
        grid = self._torch_grids.get(key)
        if grid is None:
            grid = torch.from_numpy(self._grid_np).to(device=frames.device, dtype=frames.dtype)
            self._torch_grids[key] = grid
        grid = grid.expand(frames.shape[0], -1, -1, -1)
        return F.grid_sample(
            frames, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )

    def __getstate__(self) -> dict[str, Any]:
        # Device tensors must not travel to DataLoader workers; they are rebuilt on demand.
        state = self.__dict__.copy()
        state["_torch_grids"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"CameraCorrection(real={self.real.model} {self.real.width}x{self.real.height}, "
            f"sim={self.sim.model} {self.sim.width}x{self.sim.height}, "
            f"valid={self.valid.mean():.1%})"
        )
