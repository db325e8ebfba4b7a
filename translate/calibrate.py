"""Lens calibration into camera.yaml: checkerboard images (OpenCV pinhole / fisheye), OpenCV and ROS files."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from translate.camera import (
    CameraConfigError,
    CameraCorrection,
    CameraModel,
    CameraRig,
    load_camera_yaml,
)

__all__ = [
    "Calibration",
    "CalibrationError",
    "board_object_points",
    "calibrate_checkerboard",
    "calibrate_points",
    "find_board_corners",
    "import_opencv",
    "import_ros",
    "main",
    "parse_pattern",
    "render_board",
    "reprojection_errors",
    "write_camera_yaml",
]

#: fewer views than this cannot constrain the intrinsics and distortion together
MIN_VIEWS = 3
#: an RMS reprojection error above this (pixels) is worth a warning: blurred or badly found boards
RMS_WARN_PX = 1.0
_ROS_MODELS = {"plumb_bob": "pinhole", "rational_polynomial": "pinhole", "equidistant": "fisheye",
               "fisheye": "fisheye", "kannala_brandt": "fisheye"}
_CV_MATRIX_KEYS = ("camera_matrix", "cameraMatrix", "K", "intrinsics", "M")
_CV_DIST_KEYS = ("distortion_coefficients", "dist_coeffs", "distCoeffs", "distortion", "D")


class CalibrationError(ValueError):
    """Calibration input that cannot give a camera model; the message names the file or option."""


def _cv2(what: str) -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise CalibrationError(
            f"{what} needs OpenCV (cv2): pip install \".[camera]\" (opencv-python-headless), or on "
            "a Jetson the system build (sudo apt install python3-opencv)"
        ) from exc
    return cv2


@dataclass(frozen=True)
class Calibration:
    """A calibrated or imported camera and how well it fits.

    Attributes:
        camera: the real camera (camera.yaml's ``real`` block).
        rms: RMS reprojection error over every corner, in pixels; None when unknown (an
            imported file that does not record it).
        per_view: RMS reprojection error of each used image, in pixels.
        used: the images the board was found in.
        rejected: the images it was not found in (or that OpenCV's fisheye solver could not use).
        source: what the model came from (a folder or file), for messages.
    """

    camera: CameraModel
    rms: float | None
    per_view: tuple[float, ...] = ()
    used: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    source: str = ""


def parse_pattern(text: str) -> tuple[int, int]:
    """Parse ``"9x6"`` (inner corners per row x per column, OpenCV's ``patternSize``).

    Args:
        text: ``COLSxROWS``.

    Returns:
        ``(cols, rows)``.

    Raises:
        CalibrationError: not two whole numbers >= 2 separated by ``x``.
    """
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise CalibrationError(
            f"--pattern must be the inner corners as COLSxROWS (e.g. 9x6 for a board of 10x7 "
            f"squares), got {text!r}"
        ) from None
    if cols < 2 or rows < 2:
        raise CalibrationError(f"--pattern needs at least 2x2 inner corners, got {text!r}")
    return cols, rows


def board_object_points(pattern: tuple[int, int], square: float) -> np.ndarray:
    """The board's inner corners in its own frame (z = 0), in OpenCV's detection order.

    Args:
        pattern: ``(cols, rows)`` inner corners.
        square: side of one square (any unit; the intrinsics do not depend on it).

    Returns:
        Corner coordinates, float64, row by row.

    Shape:
        - output: :math:`(cols \\cdot rows, 3)`
    """
    cols, rows = pattern
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float64)
    return np.concatenate([grid * float(square), np.zeros((grid.shape[0], 1))], axis=1)


def render_board(
    camera: CameraModel,
    rvec: np.ndarray,
    tvec: np.ndarray,
    pattern: tuple[int, int],
    square: float,
    *,
    supersample: int = 2,
) -> np.ndarray:
    """A photo of a checkerboard taken by ``camera``: each pixel's ray meets the board plane.

    Made for checking the calibration end to end (tests, and trying the tool without a board):
    the board's pose and the camera's optics are known exactly. The board has ``cols+1 x rows+1``
    squares with a white margin of one square, on grey.

    Args:
        camera: the camera (any lens model :class:`CameraModel` holds).
        rvec: the board's rotation in the camera (Rodrigues vector, as OpenCV's).
        tvec: the board origin (its first inner corner) in the camera frame.
        pattern: ``(cols, rows)`` inner corners.
        square: side of one square, in the units of ``tvec``.
        supersample: rays per pixel side (anti-aliasing).

    Returns:
        The greyscale image, uint8.

    Shape:
        - output: :math:`(H, W)`
    """
    cols, rows = pattern
    ss = int(supersample)
    o = (np.arange(ss) + 0.5) / ss - 0.5
    u = (np.arange(camera.width)[:, None] + o[None]).reshape(-1)
    v = (np.arange(camera.height)[:, None] + o[None]).reshape(-1)
    xy = camera.unproject_pixels(np.stack(np.meshgrid(u, v), -1))
    rot = _rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3))
    rays_b = np.concatenate([xy, np.ones_like(xy[..., :1])], -1) @ rot  # rays in the board frame
    t_b = rot.T @ np.asarray(tvec, dtype=np.float64).reshape(3)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = t_b[2] / rays_b[..., 2]
        p = s[..., None] * rays_b - t_b
    ok = np.isfinite(p).all(-1) & (s > 0)
    x = np.where(ok, p[..., 0] / square, -100.0)
    y = np.where(ok, p[..., 1] / square, -100.0)
    board = (x >= -1) & (x < cols) & (y >= -1) & (y < rows)
    margin = (x >= -2) & (x < cols + 1) & (y >= -2) & (y < rows + 1)
    img = np.full(x.shape, 90.0)
    img[margin] = 230.0
    img[board & ((np.floor(x) + np.floor(y)) % 2 == 0)] = 20.0
    img = img.reshape(camera.height, ss, camera.width, ss).mean(axis=(1, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def find_board_corners(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Find a checkerboard's inner corners to sub-pixel accuracy.

    Tries OpenCV's sector-based detector first (robust under fisheye distortion), then the
    classic one refined with ``cornerSubPix``.

    Args:
        gray: the image, uint8 greyscale.
        pattern: ``(cols, rows)`` inner corners.

    Returns:
        Corner pixel coordinates (pixel centres at integers), float64, or None when not found.

    Shape:
        - gray: :math:`(H, W)`
        - output: :math:`(cols \\cdot rows, 2)`
    """
    cv2 = _cv2("checkerboard calibration")
    ok, corners = cv2.findChessboardCornersSB(gray, pattern, flags=cv2.CALIB_CB_ACCURACY)
    if not ok:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        ok, corners = cv2.findChessboardCorners(gray, pattern, flags=flags)
        if not ok:
            return None
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
        corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
    return np.asarray(corners, dtype=np.float64).reshape(-1, 2)


def reprojection_errors(
    camera: CameraModel,
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    rvecs: Sequence[np.ndarray],
    tvecs: Sequence[np.ndarray],
) -> tuple[float, list[float]]:
    """RMS distance between found corners and the board projected by ``camera`` (our model).

    Projecting with :meth:`CameraModel.project` rather than OpenCV checks that the written
    camera.yaml means what OpenCV calibrated.

    Args:
        camera: the camera model.
        object_points: per view, the board corners ``(K, 3)``.
        image_points: per view, the found corners ``(K, 2)``.
        rvecs, tvecs: per view, the board pose (Rodrigues vector, translation) in the camera.

    Returns:
        ``(rms over all corners, [rms of each view])`` in pixels.
    """
    sq_all: list[np.ndarray] = []
    per_view: list[float] = []
    for obj, img, r, t in zip(object_points, image_points, rvecs, tvecs, strict=True):
        rot = _rodrigues(np.asarray(r, dtype=np.float64).reshape(3))
        cam_pts = np.asarray(obj, dtype=np.float64) @ rot.T + np.asarray(t, dtype=np.float64).reshape(1, 3)
        d2 = np.sum((camera.project(cam_pts) - np.asarray(img, dtype=np.float64).reshape(-1, 2)) ** 2, axis=1)
        sq_all.append(d2)
        per_view.append(float(np.sqrt(np.mean(d2))))
    return float(np.sqrt(np.mean(np.concatenate(sq_all)))), per_view


def _rodrigues(r: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(r))
    if theta < 1e-15:
        return np.eye(3)
    k = r / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * (kx @ kx)


def _flag(cv2: Any, name: str) -> int:
    # OpenCV 4 keeps the fisheye flags in cv2.fisheye, OpenCV 5 in cv2
    return int(getattr(cv2.fisheye, name, None) or getattr(cv2, name))


def _cv_msg(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__


def _solves_alone(solve: Any, i: int, cv2: Any, f0: float) -> bool:
    try:
        solve([i], f0)
    except cv2.error:
        return False
    return True


def calibrate_points(
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    image_size: tuple[int, int],
    *,
    fisheye: bool = False,
    rational: bool = False,
) -> tuple[CameraModel, float, list[float]]:
    """Calibrate from corner correspondences with ``cv2.calibrateCamera`` / ``cv2.fisheye.calibrate``.

    Args:
        object_points: per view, board corners in the board frame ``(K, 3)``.
        image_points: per view, their pixel coordinates ``(K, 2)``.
        image_size: ``(width, height)`` of the images.
        fisheye: OpenCV's fisheye (equidistant) model, ``dist`` = (k1, k2, k3, k4); else the
            pinhole radial-tangential model, ``dist`` = (k1, k2, p1, p2, k3).
        rational: pinhole only: the 8-coefficient rational model (k4, k5, k6 too).

    Returns:
        ``(camera, rms, per_view)``: the model, the RMS reprojection error over all corners
        and per view, in pixels (recomputed with :meth:`CameraModel.project`); a view that
        OpenCV's fisheye solver could not use is NaN in ``per_view``.

    Raises:
        CalibrationError: fewer than :data:`MIN_VIEWS` views, or OpenCV could not solve.
    """
    cv2 = _cv2("calibration")
    if len(object_points) < MIN_VIEWS:
        raise CalibrationError(
            f"calibration needs the board in at least {MIN_VIEWS} images (10-20 at varied angles "
            f"and distances work well), got {len(object_points)}"
        )
    w, h = int(image_size[0]), int(image_size[1])
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    keep = list(range(len(object_points)))

    def solve(views: list[int], f0: float = 0.0) -> tuple[Any, Any, Any, Any]:
        if fisheye:
            obj = [np.asarray(object_points[i], np.float64).reshape(1, -1, 3) for i in views]
            img = [np.asarray(image_points[i], np.float64).reshape(1, -1, 2) for i in views]
            flags = (_flag(cv2, "CALIB_RECOMPUTE_EXTRINSIC") | _flag(cv2, "CALIB_FIX_SKEW")
                     | _flag(cv2, "CALIB_USE_INTRINSIC_GUESS"))
            k0 = np.array([[f0, 0, (w - 1) / 2], [0, f0, (h - 1) / 2], [0, 0, 1]], dtype=np.float64)
            _, k, d, rv, tv = cv2.fisheye.calibrate(
                obj, img, (w, h), k0, np.zeros((4, 1)), flags=flags, criteria=criteria)
        else:
            obj32 = [np.asarray(object_points[i], np.float32).reshape(-1, 3) for i in views]
            img32 = [np.asarray(image_points[i], np.float32).reshape(-1, 1, 2) for i in views]
            flags = cv2.CALIB_RATIONAL_MODEL if rational else 0
            _, k, d, rv, tv = cv2.calibrateCamera(obj32, img32, (w, h), None, None, flags=flags,
                                                  criteria=criteria)
        return k, d, rv, tv

    if not fisheye:
        try:
            k, d, rvecs, tvecs = solve(keep)
        except cv2.error as exc:
            raise CalibrationError(f"OpenCV could not calibrate from these views: {_cv_msg(exc)}") from exc
    else:
        # cv2.fisheye starts from a guessed focal length (its own default fails outright on some
        # views: an assertion in InitExtrinsics); try a few guesses around the equidistant
        # 180-degree one, drop views that fail on their own, keep the best fit
        best: tuple[float, list[int], Any] | None = None
        last_exc: Exception | None = None
        for f0 in (max(w, h) / math.pi * s for s in (1.0, 0.7, 1.4)):
            try:
                views = keep
                try:
                    sol = solve(views, f0)
                except cv2.error:
                    views = [i for i in keep if _solves_alone(solve, i, cv2, f0)]
                    if len(views) < MIN_VIEWS:
                        continue
                    sol = solve(views, f0)
            except cv2.error as exc:
                last_exc = exc
                continue
            k_, d_ = sol[0], sol[1]
            if not (k_[0, 0] > 0 and k_[1, 1] > 0 and np.all(np.isfinite(d_))):
                continue
            cam_ = CameraModel(w, h, float(k_[0, 0]), float(k_[1, 1]), float(k_[0, 2]), float(k_[1, 2]),
                               "fisheye", tuple(float(v) for v in np.asarray(d_).reshape(-1)))
            err, _ = reprojection_errors(cam_, [object_points[i] for i in views],
                                         [image_points[i] for i in views], sol[2], sol[3])
            score = err if math.isfinite(err) else math.inf
            if best is None or (len(views), -score) > (len(best[1]), -best[0]):
                best = (score, views, sol)
        if best is None:
            why = f" ({_cv_msg(last_exc)})" if last_exc is not None else ""
            raise CalibrationError(
                f"OpenCV's fisheye calibration did not converge on these {len(keep)} views{why}; "
                "add views with the board at varied angles and distances, filling the image corners")
        _, keep, (k, d, rvecs, tvecs) = best
    dist = np.asarray(d, dtype=np.float64).reshape(-1)
    if not fisheye:
        dist = dist[: 8 if rational else 5]
    camera = CameraModel(w, h, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                         "fisheye" if fisheye else "pinhole", tuple(float(v) for v in dist))
    rms, kept_errors = reprojection_errors(camera, [object_points[i] for i in keep],
                                           [image_points[i] for i in keep], rvecs, tvecs)
    per_view = [math.nan] * len(object_points)
    for i, e in zip(keep, kept_errors, strict=True):
        per_view[i] = e
    return camera, rms, per_view


def calibrate_checkerboard(
    images: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    pattern: tuple[int, int],
    square: float = 1.0,
    fisheye: bool = False,
    rational: bool = False,
) -> Calibration:
    """Calibrate the camera from photos of a checkerboard.

    Args:
        images: a folder of images or a list of image files, all of one size.
        pattern: ``(cols, rows)`` inner corners (``9x6`` for a board of 10 x 7 squares).
        square: side of one square in metres (only the board poses depend on it).
        fisheye: the fisheye (equidistant) model, for lenses beyond ~120 degrees.
        rational: pinhole only: the 8-coefficient rational model.

    Returns:
        The :class:`Calibration`.

    Raises:
        FileNotFoundError: the folder or a file does not exist.
        CalibrationError: images of mixed sizes (naming two), or the board found in fewer than
            :data:`MIN_VIEWS` images (naming how many were tried).
    """
    from translate.imageio import list_images, read_image

    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration image folder not found: {folder}")
        paths = list_images(folder, what="calibration image folder")
        source = str(folder)
    else:
        paths = [Path(p) for p in images]
        source = f"{len(paths)} images"
    if not paths:
        raise CalibrationError(f"{source}: no images")
    if not (isinstance(square, (int, float)) and square > 0 and math.isfinite(square)):
        raise CalibrationError(f"--square must be a positive length in metres, got {square!r}")
    board = board_object_points(pattern, square)
    obj_pts: list[np.ndarray] = []
    img_pts: list[np.ndarray] = []
    used: list[str] = []
    rejected: list[str] = []
    size: tuple[int, int] | None = None
    first: Path | None = None
    for p in paths:
        rgb = read_image(p)
        h, w = rgb.shape[:2]
        if size is None:
            size, first = (w, h), p
        elif (w, h) != size:
            raise CalibrationError(
                f"calibration images must have one size: {first} is {size[0]}x{size[1]}, "
                f"{p} is {w}x{h}"
            )
        gray = np.rint(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        corners = find_board_corners(gray.clip(0, 255).astype(np.uint8), pattern)
        if corners is None:
            rejected.append(str(p))
            continue
        obj_pts.append(board)
        img_pts.append(corners)
        used.append(str(p))
    assert size is not None
    if len(used) < MIN_VIEWS:
        raise CalibrationError(
            f"{source}: a {pattern[0]}x{pattern[1]} board (inner corners) was found in "
            f"{len(used)} of {len(paths)} images; need at least {MIN_VIEWS}. Check --pattern "
            "(inner corners, not squares), focus and lighting, and that the whole board is in view"
        )
    camera, rms, per_view = calibrate_points(obj_pts, img_pts, size, fisheye=fisheye, rational=rational)
    solved = [i for i, e in enumerate(per_view) if math.isfinite(e)]
    rejected += [used[i] for i, e in enumerate(per_view) if not math.isfinite(e)]
    return Calibration(camera, rms, tuple(per_view[i] for i in solved), tuple(used[i] for i in solved),
                       tuple(rejected), source)


# ------------------------------------------------------------------ importers


def _dims(where: str, width: Any, height: Any, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return int(size[0]), int(size[1])
    if width is None or height is None:
        raise CalibrationError(
            f"{where}: no image size in the file (image_width / image_height); pass --image-size W H"
        )
    return int(width), int(height)


def _model_from_k(where: str, w: int, h: int, k: Any, dist: Any, model: str) -> CameraModel:
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise CalibrationError(f"{where}: the camera matrix must have 9 values (3x3), got {k.size}")
    d = [float(v) for v in np.asarray(dist if dist is not None else [], dtype=np.float64).reshape(-1)]
    if model == "fisheye":
        d = d[:4]
    elif len(d) > 8:
        if any(v != 0.0 for v in d[8:]):
            raise CalibrationError(
                f"{where}: {len(d)} distortion coefficients with non-zero thin-prism / tilt terms "
                "(beyond k6); camera.yaml holds up to 8 (k1, k2, p1, p2, k3, k4, k5, k6)"
            )
        d = d[:8]
    if model == "pinhole" and len(d) in (6, 7):
        d = d + [0.0] * (8 - len(d))
    if d and all(v == 0.0 for v in d):
        d = []
    try:
        return CameraModel(w, h, float(k[0]), float(k[4]), float(k[2]), float(k[5]), model,  # type: ignore[arg-type]
                           tuple(d))
    except CameraConfigError as exc:
        raise CalibrationError(f"{where}: {exc}") from exc


def import_ros(path: str | os.PathLike[str], *, size: tuple[int, int] | None = None) -> Calibration:
    """Read a ROS ``camera_info`` YAML (``camera_calibration``'s ost.yaml, or a message dump).

    Accepts the calibration-file form (``image_width``, ``camera_matrix: {data: [...]}``,
    ``distortion_model``, ``distortion_coefficients``) and the message form (``width``, ``K`` or
    ``k``, ``D`` or ``d``). ``plumb_bob`` and ``rational_polynomial`` map to pinhole,
    ``equidistant`` to fisheye.

    Args:
        path: the YAML file.
        size: ``(width, height)`` when the file has none.

    Returns:
        The :class:`Calibration` (``rms`` None: ROS files do not record it).

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: not YAML, a key missing or an unknown distortion model (named).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ROS camera_info file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("%YAML:1.0"):
        raise CalibrationError(f"{p}: an OpenCV FileStorage file, not ROS camera_info: use import-opencv")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{p}: expected a camera_info mapping, got {type(data).__name__}")

    def get(*keys: str) -> Any:
        for key in keys:
            if key in data:
                v = data[key]
                return v.get("data") if isinstance(v, dict) else v
        return None

    k = get("camera_matrix", "K", "k")
    if k is None:
        raise CalibrationError(f"{p}: no camera_matrix (or K) key: not a ROS camera_info file")
    model_name = str(get("distortion_model") or "plumb_bob").lower()
    if model_name not in _ROS_MODELS:
        raise CalibrationError(
            f"{p}: distortion_model {model_name!r} is not one camera.yaml holds; known: "
            f"{', '.join(sorted(_ROS_MODELS))}"
        )
    w, h = _dims(str(p), get("image_width", "width"), get("image_height", "height"), size)
    if w == 0 or h == 0:
        w, h = _dims(str(p), None, None, size)
    cam = _model_from_k(str(p), w, h, k, get("distortion_coefficients", "D", "d"), _ROS_MODELS[model_name])
    return Calibration(cam, None, source=str(p))


def import_opencv(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    fisheye: bool | None = None,
) -> Calibration:
    """Read an OpenCV calibration file (``cv::FileStorage`` YAML or XML).

    The camera matrix is read from ``camera_matrix`` (or ``cameraMatrix``, ``K``), the
    coefficients from ``distortion_coefficients`` (or ``dist_coeffs``, ``distCoeffs``, ``D``), the
    size from ``image_width`` / ``image_height`` (or ``image_size`` / ``imageSize``), the model from
    ``fisheye_model`` (OpenCV's calibration sample) and the error from ``avg_reprojection_error``.

    Args:
        path: the ``.yaml`` / ``.yml`` / ``.xml`` file.
        size: ``(width, height)`` when the file has none.
        fisheye: force the model (None: ``fisheye_model`` in the file, else pinhole).

    Returns:
        The :class:`Calibration`.

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: OpenCV cannot read it or a key is missing (named).
    """
    cv2 = _cv2("reading an OpenCV calibration file")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"OpenCV calibration file not found: {p}")
    try:
        fs = cv2.FileStorage(str(p), cv2.FILE_STORAGE_READ)
    except cv2.error as exc:
        raise CalibrationError(f"{p}: OpenCV cannot read it as FileStorage YAML/XML") from exc
    if not fs.isOpened():
        raise CalibrationError(f"{p}: OpenCV cannot read it as FileStorage YAML/XML")
    try:
        def node(keys: Sequence[str]) -> Any:
            for key in keys:
                n = fs.getNode(key)
                if not n.empty():
                    return n
            return None

        def number(keys: Sequence[str]) -> float | None:
            n = node(keys)
            return None if n is None else float(n.real())

        def matrix(keys: Sequence[str]) -> np.ndarray | None:
            n = node(keys)
            if n is None:
                return None
            if n.isSeq():
                return np.array([n.at(i).real() for i in range(n.size())], dtype=np.float64)
            m = n.mat()
            return None if m is None else np.asarray(m, dtype=np.float64)

        k = matrix(_CV_MATRIX_KEYS)
        if k is None:
            raise CalibrationError(
                f"{p}: no camera matrix (looked for {', '.join(_CV_MATRIX_KEYS)})")
        dist = matrix(_CV_DIST_KEYS)
        width, height = number(("image_width", "imageWidth")), number(("image_height", "imageHeight"))
        sz = matrix(("image_size", "imageSize"))
        if (width is None or height is None) and sz is not None and sz.size == 2:
            width, height = float(sz.reshape(-1)[0]), float(sz.reshape(-1)[1])
        fisheye_flag = number(("fisheye_model", "fisheye"))
        rms = number(("avg_reprojection_error", "rms", "reprojection_error"))
    finally:
        fs.release()
    if fisheye is None:
        fisheye = bool(fisheye_flag)
    w, h = _dims(str(p), None if width is None else int(width), None if height is None else int(height), size)
    cam = _model_from_k(str(p), w, h, k, dist, "fisheye" if fisheye else "pinhole")
    return Calibration(cam, rms, source=str(p))


# ------------------------------------------------------------------ camera.yaml


def write_camera_yaml(
    real: CameraModel,
    out: str | os.PathLike[str],
    *,
    sim: CameraModel | None = None,
) -> tuple[Path, CameraCorrection]:
    """Write ``real`` and the sim camera to camera.yaml atomically, after checking the correction.

    Args:
        real: the calibrated real camera.
        out: the camera.yaml to write.
        sim: the sim camera; None: the ``sim`` block of ``out`` when it exists.

    Returns:
        ``(path, correction)``: the written file and the real→sim correction it defines.

    Raises:
        CalibrationError: no sim camera given and none in ``out``.
        CameraConfigError: the correction maps too little of the sim view inside the real image.
    """
    out = Path(out)
    if sim is None:
        if not out.is_file():
            raise CalibrationError(
                f"no sim camera: give --sim CAMERA_YAML (take its sim block, e.g. a jetbot_synth "
                f"dataset's camera.yaml) or --sim-hfov DEG [--sim-size W H]; {out} does not exist yet"
            )
        sim = load_camera_yaml(out).sim
    rig = CameraRig(real, sim)
    correction = CameraCorrection.from_rig(rig)
    return rig.save(out), correction


def _sim_camera(args: argparse.Namespace, real: CameraModel) -> CameraModel | None:
    if args.sim and args.sim_hfov is not None:
        raise CalibrationError("give --sim or --sim-hfov, not both")
    if args.sim_size and args.sim_hfov is None:
        raise CalibrationError("--sim-size goes with --sim-hfov (the size of that pinhole sim camera)")
    if args.sim:
        return load_camera_yaml(args.sim).sim
    if args.sim_hfov is not None:
        w, h = args.sim_size if args.sim_size else (real.width, real.height)
        return CameraModel.from_fov(int(w), int(h), float(args.sim_hfov))
    return None


def _report(cal: Calibration) -> list[str]:
    cam = cal.camera
    dist = ", ".join(f"{v:.6g}" for v in cam.dist) or "none"
    lines = [
        f"camera: {cam.model} {cam.width}x{cam.height}  fx {cam.fx:.2f}  fy {cam.fy:.2f}  "
        f"cx {cam.cx:.2f}  cy {cam.cy:.2f}  dist [{dist}]  hfov {cam.hfov_deg():.1f} deg",
    ]
    if cal.used or cal.rejected:
        n = len(cal.used) + len(cal.rejected)
        lines.append(f"board found in {len(cal.used)} of {n} images"
                     + (f" (not in: {', '.join(Path(r).name for r in cal.rejected[:5])}"
                        + (" ..." if len(cal.rejected) > 5 else "") + ")" if cal.rejected else ""))
    if cal.rms is None:
        lines.append("reprojection error: not recorded in the file")
    else:
        worst = ""
        if cal.per_view:
            i = int(np.argmax(cal.per_view))
            worst = f"; worst image {Path(cal.used[i]).name} {cal.per_view[i]:.3f} px"
        lines.append(f"reprojection error: RMS {cal.rms:.3f} px{worst}")
        if cal.rms > RMS_WARN_PX:
            lines.append(f"warning: RMS above {RMS_WARN_PX:g} px: blurred or mis-detected boards, or "
                         "the wrong model (try --fisheye for a lens beyond ~120 deg); drop the worst images")
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m translate.calibrate",
        description="Make camera.yaml's real camera from checkerboard photos, an OpenCV "
        "calibration file or a ROS camera_info YAML; prints the reprojection error.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-o", "--out", default="camera.yaml", help="camera.yaml to write (default: camera.yaml)")
        sp.add_argument("--sim", help="take the sim camera from this camera.yaml (e.g. the dataset's)")
        sp.add_argument("--sim-hfov", type=float, help="or: a pinhole sim camera of this horizontal FOV (deg)")
        sp.add_argument("--sim-size", type=int, nargs=2, metavar=("W", "H"),
                        help="with --sim-hfov: the sim image size (default: the real one)")
        sp.add_argument("--size", type=int, nargs=2, metavar=("W", "H"),
                        help="the size you record at, when it differs from the calibration's "
                        "(same field of view, intrinsics rescaled)")

    cb = sub.add_parser("checkerboard", help="calibrate from a folder of checkerboard photos")
    cb.add_argument("folder", help="folder of images of the board, all one size")
    cb.add_argument("--pattern", required=True, help="inner corners COLSxROWS, e.g. 9x6")
    cb.add_argument("--square", type=float, default=0.025, help="square side in metres (default 0.025)")
    cb.add_argument("--fisheye", action="store_true", help="OpenCV's fisheye model (wide lenses)")
    cb.add_argument("--rational", action="store_true", help="pinhole: the 8-coefficient model")
    common(cb)
    ros = sub.add_parser("import-ros", help="import a ROS camera_info YAML")
    ros.add_argument("file")
    ros.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                     help="the calibration's image size, when the file has none")
    common(ros)
    ocv = sub.add_parser("import-opencv", help="import an OpenCV FileStorage YAML/XML calibration")
    ocv.add_argument("file")
    ocv.add_argument("--fisheye", action="store_true", default=None,
                     help="the file holds fisheye coefficients (default: its fisheye_model key)")
    ocv.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                     help="the calibration's image size, when the file has none")
    common(ocv)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.calibrate {checkerboard,import-ros,import-opencv} ... -o camera.yaml``.

    Returns:
        0 on success, 1 on an error (one line on stderr naming the file or option).
    """
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "checkerboard":
            cal = calibrate_checkerboard(args.folder, pattern=parse_pattern(args.pattern),
                                         square=args.square, fisheye=args.fisheye, rational=args.rational)
        elif args.cmd == "import-ros":
            cal = import_ros(args.file, size=tuple(args.image_size) if args.image_size else None)
        else:
            cal = import_opencv(args.file, size=tuple(args.image_size) if args.image_size else None,
                                fisheye=args.fisheye)
        size = tuple(args.size) if args.size else None
        for line in _report(cal):
            print(line)
        real = cal.camera
        if size is not None and size != (real.width, real.height):
            real = real.scaled(int(size[0]), int(size[1]))
            print(f"rescaled to {real.width}x{real.height}: fx {real.fx:.2f}  fy {real.fy:.2f}  "
                  f"cx {real.cx:.2f}  cy {real.cy:.2f}")
        path, correction = write_camera_yaml(real, args.out, sim=_sim_camera(args, real))
    except (FileNotFoundError, CalibrationError, CameraConfigError, OSError) as exc:
        msg = str(exc)
        print(f"calibrate: {msg}", file=sys.stderr)
        return 1
    sim = correction.sim
    print(f"camera.yaml → {path}  (sim {sim.model} {sim.width}x{sim.height}, hfov {sim.hfov_deg():.1f} deg; "
          f"{correction.valid.mean():.1%} of the sim view maps inside the real image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
