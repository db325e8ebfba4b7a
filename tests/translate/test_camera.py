"""Tests for translate.camera: OpenCV agreement, inverses, correction round trip, camera.yaml."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.camera import (
    CameraConfigError,
    CameraCorrection,
    CameraModel,
    CameraRig,
    load_camera_yaml,
    resolve_camera_setting,
)

PINHOLE_DISTS = [
    (-0.28, 0.07, 0.001, -0.0015),
    (-0.3, 0.1, 0.0008, 0.0012, -0.015),
    (0.12, -0.03, 0.002, -0.001, 0.004, 0.05, -0.01, 0.002),
]
FISHEYE_DISTS = [(0.05, -0.01, 0.002, -0.0005), (-0.02, 0.004, 0.0, 0.0)]

EXAMPLE_YAML = """\
# sim2real translate camera model (OpenCV conventions)
real:
  width: 128
  height: 128
  model: fisheye          # pinhole | fisheye
  fx: 40.0
  fy: 40.0
  cx: 63.5
  cy: 63.5
  dist: [0.05, -0.01, 0.0, 0.0]
sim:
  width: 128
  height: 128
  model: pinhole
  fx: 110.0
  fy: 110.0
  cx: 63.5
  cy: 63.5
  dist: []
"""


def _camera(model: str, dist: tuple[float, ...]) -> CameraModel:
    return CameraModel(160, 120, 70.0, 72.5, 80.3, 58.6, model, dist)  # type: ignore[arg-type]


def _k(cam: CameraModel) -> np.ndarray:
    return np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]])


def _rig() -> CameraRig:
    real = CameraModel.from_fov(96, 80, 150.0, model="fisheye", dist=(0.05, -0.01, 0.002, 0.0))
    sim = CameraModel.from_fov(64, 64, 90.0)
    return CameraRig(real, sim)


# ---------------------------------------------------------------- lens model vs OpenCV


@pytest.mark.parametrize("dist", PINHOLE_DISTS)
def test_pinhole_project_matches_opencv(dist: tuple[float, ...]) -> None:
    cv2 = pytest.importorskip("cv2")
    cam = _camera("pinhole", dist)
    pts = np.random.default_rng(0).uniform([-1, -1, 0.8], [1, 1, 3], (300, 3))
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), _k(cam), np.array(dist))
    np.testing.assert_allclose(cam.project(pts), ref.reshape(-1, 2), atol=1e-9)


@pytest.mark.parametrize("dist", FISHEYE_DISTS)
def test_fisheye_project_matches_opencv(dist: tuple[float, ...]) -> None:
    cv2 = pytest.importorskip("cv2")
    cam = _camera("fisheye", dist)
    pts = np.random.default_rng(1).uniform([-3, -3, 0.5], [3, 3, 3], (300, 3))
    ref, _ = cv2.fisheye.projectPoints(
        pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), _k(cam), np.array(dist)
    )
    np.testing.assert_allclose(cam.project(pts), ref.reshape(-1, 2), atol=1e-9)


def test_project_shapes_and_behind_camera() -> None:
    cam = CameraModel.from_fov(64, 48, 90.0, dist=(-0.1, 0.01, 0.0, 0.0))
    pts = np.ones((2, 5, 3))
    assert cam.project(pts).shape == (2, 5, 2)
    assert cam.project(np.array([0.0, 0.0, 1.0])) == pytest.approx([cam.cx, cam.cy])
    assert np.isnan(cam.project(np.array([0.1, 0.2, -1.0]))).all()
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 3\)"):
        cam.project(np.ones((4, 2)))


@pytest.mark.parametrize(
    ("model", "dist"),
    [("pinhole", d) for d in PINHOLE_DISTS] + [("fisheye", d) for d in FISHEYE_DISTS],
)
def test_undistort_inverts_distort(model: str, dist: tuple[float, ...]) -> None:
    cam = _camera(model, dist)
    # Points within 1.0 (45 degrees) of the axis: inside the valid FOV of every lens above.
    rng = np.random.default_rng(2)
    r = np.sqrt(rng.uniform(0, 1, 2000))
    a = rng.uniform(0, 2 * np.pi, 2000)
    xy = np.stack([r * np.cos(a), r * np.sin(a)], -1)
    back = cam.undistort(cam.distort(xy))
    assert np.abs(back - xy).max() < 1e-9
    # and from the distorted side, every pixel of the image
    xy_d = (cam.pixel_grid() - [cam.cx, cam.cy]) / [cam.fx, cam.fy]
    und = cam.undistort(xy_d)
    ok = np.isfinite(und).all(-1)
    assert np.abs(cam.distort(und[ok]) - xy_d[ok]).max() < 1e-9


def test_undistort_strong_barrel_converges() -> None:
    # The classic wide-angle IMX219 calibration shape: strong negative k1.
    dist = (-0.32, 0.11, 5e-4, -3e-4, -0.017)
    cam = CameraModel(224, 224, 130.0, 130.0, 111.5, 111.5, "pinhole", dist)
    rays = cam.pixel_rays()
    ok = np.isfinite(rays).all(-1)
    # the polynomial folds at r ~ 1.68 (distorted 0.99): the far corners have no ray
    assert 0.9 < ok.mean() < 1.0 and not ok[0, 0] and ok[112, 0]
    assert np.isnan(rays[~ok]).all()
    uv = cam.project(rays[ok])
    np.testing.assert_allclose(uv, cam.pixel_grid()[ok], atol=1e-7)


def test_undistort_outside_valid_fov_is_nan() -> None:
    # A 200 degree fisheye sees rays beyond 90 degrees: they have no (x, y, 1) form.
    fish = CameraModel.from_fov(64, 64, 200.0, model="fisheye")
    rays = fish.pixel_rays()
    assert np.isnan(rays[32, 0]).all() and np.isnan(rays[0, 0]).all()
    assert np.isfinite(rays[32, 32]).all()
    # A barrel polynomial folds back beyond its maximum radius: no inverse there.
    folded = CameraModel(64, 64, 10.0, 10.0, 31.5, 31.5, "pinhole", (-0.3, 0.0, 0.0, 0.0))
    r_max_d = 2 / 3 * math.sqrt(1 / 0.9)  # max of r (1 - 0.3 r^2)
    assert np.isnan(folded.undistort(np.array([r_max_d * 1.05, 0.0]))).all()
    assert np.isfinite(folded.undistort(np.array([r_max_d * 0.95, 0.0]))).all()


def test_pixel_rays_round_trip() -> None:
    for cam in (_camera("fisheye", FISHEYE_DISTS[0]), _camera("pinhole", PINHOLE_DISTS[1])):
        rays = cam.pixel_rays()
        assert rays.shape == (cam.height, cam.width, 3) and rays.dtype == np.float64
        ok = np.isfinite(rays).all(-1)
        assert ok.mean() > 0.7 and (rays[ok, 2] == 1).all()
        np.testing.assert_allclose(cam.project(rays[ok]), cam.pixel_grid()[ok], atol=1e-7)
        uv = np.array([[40.25, 30.5], [100.0, 60.0]])
        np.testing.assert_allclose(
            cam.project(np.concatenate([cam.unproject_pixels(uv), np.ones((2, 1))], -1)), uv,
            atol=1e-9,
        )


# ---------------------------------------------------------------- construction


def test_from_fov_and_scaled_keep_fov() -> None:
    pin = CameraModel.from_fov(128, 96, 90.0)
    assert pin.fx == pytest.approx(64.0) and pin.fy == pin.fx
    assert (pin.cx, pin.cy) == (63.5, 47.5)
    assert pin.hfov_deg() == pytest.approx(90.0)
    fish = CameraModel.from_fov(128, 96, 160.0, model="fisheye")
    assert fish.fx == pytest.approx(64.0 / math.radians(80.0))
    assert fish.hfov_deg() == pytest.approx(160.0)
    cams = (pin, fish, _camera("fisheye", FISHEYE_DISTS[0]), _camera("pinhole", PINHOLE_DISTS[0]))
    for cam in cams:
        for w, h in ((224, 224), (64, 48), (33, 17)):
            s = cam.scaled(w, h)
            assert (s.width, s.height, s.model, s.dist) == (w, h, cam.model, cam.dist)
            assert s.hfov_deg() == pytest.approx(cam.hfov_deg(), abs=1e-9)
            # A ray lands at the same fraction of the image (pixel edges scale, not centres).
            ray = np.array([0.3, -0.2, 1.0])
            frac = (cam.project(ray) + 0.5) / [cam.width, cam.height]
            np.testing.assert_allclose((s.project(ray) + 0.5) / [w, h], frac, atol=1e-12)
        assert cam.scaled(cam.width, cam.height) == cam


def test_model_validation_messages() -> None:
    with pytest.raises(CameraConfigError, match=r"CameraModel\.fx .* must be > 0, got -1"):
        CameraModel(64, 64, -1.0, 1.0, 0.0, 0.0)
    with pytest.raises(CameraConfigError, match=r"dist must have 4 values for model 'fisheye'"):
        CameraModel(64, 64, 1.0, 1.0, 0.0, 0.0, "fisheye", (0.1,))
    with pytest.raises(CameraConfigError, match=r"model must be one of pinhole, fisheye"):
        CameraModel(64, 64, 1.0, 1.0, 0.0, 0.0, "omni")  # type: ignore[arg-type]
    with pytest.raises(CameraConfigError, match=r"width must be an integer"):
        CameraModel(64.5, 64, 1.0, 1.0, 0.0, 0.0)  # type: ignore[arg-type]
    with pytest.raises(CameraConfigError, match=r"hfov_deg must be in \(0, 180\)"):
        CameraModel.from_fov(64, 64, 180.0)
    cam = CameraModel(64, 64, 50, 50, 31, 31, "pinhole", [0, 0, 0, 0])  # type: ignore[arg-type]
    assert cam.dist == (0.0, 0.0, 0.0, 0.0) and isinstance(cam.fx, float)
    assert hash(cam) == hash(CameraModel(64, 64, 50.0, 50.0, 31.0, 31.0, dist=(0, 0, 0, 0)))


# ---------------------------------------------------------------- camera.yaml


def test_yaml_round_trip(tmp_path: Path) -> None:
    rig = CameraRig(
        CameraModel(224, 224, 101.234567891234, 101.5, 111.7, 112.2, "fisheye", (0.1, -1e-7, 0, 3)),
        CameraModel.from_fov(224, 224, 87.0),
    )
    path = rig.save(tmp_path / "sub" / "camera.yaml")
    assert path.read_text().startswith("# sim2real translate camera model")
    assert CameraRig.load(path) == rig
    assert load_camera_yaml(path) == rig
    assert not list(path.parent.glob(".*.tmp"))


def test_yaml_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text(EXAMPLE_YAML)
    rig = load_camera_yaml(path)
    assert rig.real.model == "fisheye" and rig.real.dist == (0.05, -0.01, 0.0, 0.0)
    assert rig.sim == CameraModel(128, 128, 110.0, 110.0, 63.5, 63.5)
    path.write_text("version: 1\n" + EXAMPLE_YAML)
    assert load_camera_yaml(path) == rig
    # model and dist are optional (pinhole, no distortion)
    path.write_text(EXAMPLE_YAML.replace("  model: pinhole\n", "").replace("  dist: []\n", ""))
    assert load_camera_yaml(path).sim == rig.sim


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("model: fisheye ", "model: kannala ",
         r"real\.model must be one of pinhole, fisheye, got 'kannala'"),
        ("[0.05, -0.01, 0.0, 0.0]", "[0.05, -0.01, 0.0, 0.0, 0.1]",
         r"real\.dist must have 4 values for model 'fisheye', got 5"),
        ("dist: []", "dist: [0.1, 0.2]",
         r"sim\.dist must have 4, 5 or 8 values for model 'pinhole', got 2"),
        ("  fy: 110.0\n", "", r"sim: missing key\(s\) fy"),
        ("fx: 40.0", "fx: -40.0", r"real\.fx \(focal length in pixels\) must be > 0, got -40"),
        ("fx: 40.0", "fx: forty", r"real\.fx must be a finite number, got 'forty'"),
        ("  model: fisheye", "  k1: 0.1\n  model: fisheye",
         r"real: unknown key\(s\) 'k1'; valid keys are width, height, model"),
        ("0.05, -0.01", "0.05, x", r"real\.dist\[1\] must be a finite number"),
        ("sim:", "sims:", r"unknown key\(s\) 'sims'; valid top-level keys are version, real, sim"),
        ("real:", "version: 2\nreal:", r"version must be 1, got 2"),
        ("width: 128", "width: 128.5", r"real\.width must be an integer"),
        ("real:\n", "real: [\n", r"not valid YAML"),
    ],
)
def test_yaml_errors_name_file_and_key(tmp_path: Path, old: str, new: str, match: str) -> None:
    path = tmp_path / "camera.yaml"
    assert old in EXAMPLE_YAML
    path.write_text(EXAMPLE_YAML.replace(old, new, 1))
    with pytest.raises(CameraConfigError, match=match) as info:
        load_camera_yaml(path)
    assert str(path) in str(info.value)


def test_yaml_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_camera_yaml(tmp_path / "nope.yaml")
    path = tmp_path / "camera.yaml"
    path.write_text("real: {width: 2}\n")
    with pytest.raises(CameraConfigError, match=r"missing key 'sim'"):
        load_camera_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(CameraConfigError, match=r"expected a mapping"):
        load_camera_yaml(path)


# ---------------------------------------------------------------- correction


def _soft_checker(xy: np.ndarray, period: float = 0.6) -> np.ndarray:
    """A smooth checkerboard on the z=1 plane, a function of normalized camera coordinates."""
    k = 2 * np.pi / period
    v = np.tanh(2.5 * np.sin(k * xy[..., 0])) * np.tanh(2.5 * np.sin(k * xy[..., 1] + 0.7))
    return 127.5 + 110.0 * v


def _render(cam: CameraModel) -> np.ndarray:
    """What ``cam`` sees of the checker plane: each pixel's ray sampled exactly (no resampling)."""
    rays = cam.pixel_rays()
    ok = np.isfinite(rays).all(-1)
    img = np.zeros((cam.height, cam.width), np.float64)
    img[ok] = _soft_checker(rays[ok, :2])
    grey = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.stack([grey, 255 - grey, grey // 2], -1)


@pytest.mark.parametrize(
    "real",
    [
        CameraModel.from_fov(160, 120, 150.0, model="fisheye", dist=(0.05, -0.01, 0.002, 0.0)),
        CameraModel.from_fov(160, 120, 115.0, dist=(-0.28, 0.07, 0.001, -0.0015, -0.01)),
    ],
    ids=["fisheye", "pinhole"],
)
def test_correction_round_trip_checkerboard(real: CameraModel) -> None:
    sim = CameraModel.from_fov(96, 96, 90.0)
    sim_img = _render(sim)  # the ideal pinhole view
    real_img = _render(real)  # the same plane through the distorting lens
    corr = CameraCorrection(real, sim)
    out = corr.apply(real_img)
    assert out.shape == sim_img.shape and out.dtype == np.uint8
    # The sim view lies inside both real FOVs, so every sim pixel is seen.
    assert corr.valid.all()
    inner = np.zeros_like(corr.valid)
    inner[2:-2, 2:-2] = True
    err = np.abs(out.astype(np.float64) - sim_img)[inner]
    assert err.mean() < 3.0, err.mean()
    # Uncorrected, the frames do not line up at all (the test would catch a no-op).
    naive = np.asarray(
        torch.nn.functional.interpolate(
            torch.from_numpy(real_img).permute(2, 0, 1)[None].float(), size=(96, 96),
            mode="bilinear", align_corners=True,
        )[0].permute(1, 2, 0)
    )
    assert np.abs(naive - sim_img)[inner].mean() > 20.0


def test_correction_map_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rig = _rig()
    corr = CameraCorrection.from_rig(rig)
    size = (rig.sim.width, rig.sim.height)
    mx, my = cv2.fisheye.initUndistortRectifyMap(
        _k(rig.real), np.array(rig.real.dist), np.eye(3), _k(rig.sim), size, cv2.CV_32FC1
    )
    np.testing.assert_allclose(corr.map_x, mx, atol=2e-3)
    np.testing.assert_allclose(corr.map_y, my, atol=2e-3)
    real = _camera("pinhole", PINHOLE_DISTS[0])
    sim = CameraModel.from_fov(64, 48, 80.0)
    corr = CameraCorrection(real, sim)
    mx, my = cv2.initUndistortRectifyMap(
        _k(real), np.array(real.dist), None, _k(sim), (64, 48), cv2.CV_32FC1
    )
    np.testing.assert_allclose(corr.map_x[corr.valid], mx[corr.valid], atol=2e-3)
    np.testing.assert_allclose(corr.map_y[corr.valid], my[corr.valid], atol=2e-3)
    # and the resampling agrees with cv2.remap (which quantises weights to 1/32 px)
    img = np.random.default_rng(3).uniform(0, 1, (real.height, real.width, 3)).astype(np.float32)
    ref = cv2.remap(img, corr.map_x, corr.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    assert np.abs(corr.apply(img) - ref)[corr.valid].max() < 0.05


def test_sim_wider_than_real_marks_outside_invalid() -> None:
    real = CameraModel.from_fov(64, 64, 60.0, dist=(-0.05, 0.0, 0.0, 0.0))
    sim = CameraModel.from_fov(64, 64, 100.0)
    corr = CameraCorrection(real, sim)
    assert 0.1 < corr.valid.mean() < 0.6
    assert corr.valid[32, 32] and not corr.valid[0, 0] and not corr.valid[32, 0]
    out = corr.apply(np.full((64, 64, 3), 200, np.uint8))
    assert (out[~corr.valid] == 0).all() and (out[corr.valid] == 200).all()
    g = corr.grid()
    assert g.shape == (1, 64, 64, 2) and g.dtype == np.float32
    assert (np.abs(g[0][corr.valid]) <= 1 + 1e-6).all() and (g[0][~corr.valid] < -2).all()


def test_torch_matches_numpy_and_batch_matches_single() -> None:
    corr = CameraCorrection.from_rig(_rig())
    rng = np.random.default_rng(4)
    frames = rng.uniform(0, 1, (3, 80, 96, 3)).astype(np.float32)
    out_np = corr.apply(frames)
    assert out_np.shape == (3, 64, 64, 3) and out_np.dtype == np.float32
    out_t = corr.apply_torch(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert out_t.shape == (3, 3, 64, 64) and out_t.dtype == torch.float32
    assert np.abs(out_t.permute(0, 2, 3, 1).numpy() - out_np).max() < 1e-4
    for i in range(3):
        np.testing.assert_array_equal(corr.apply(frames[i]), out_np[i])
    # uint8 rounds the float result; float64 stays float64
    u8 = rng.integers(0, 256, (2, 80, 96, 3), dtype=np.uint8)
    ref = np.rint(corr.apply(u8.astype(np.float64)))
    out_u8 = corr.apply(u8)
    assert out_u8.dtype == np.uint8 and np.abs(out_u8 - ref).max() <= 1
    # the grid is cached per device/dtype, and gradients flow
    x = torch.rand(1, 2, 80, 96, dtype=torch.float64, requires_grad=True)
    y = corr.apply_torch(x)
    assert y.dtype == torch.float64
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert len(corr._torch_grids) == 2


def test_identity_and_input_checks() -> None:
    cam = _camera("fisheye", FISHEYE_DISTS[0])
    corr = CameraCorrection(cam, cam)
    assert corr.is_identity and corr.valid.all()
    frame = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = corr.apply(frame)
    np.testing.assert_array_equal(out, frame)
    assert out is not frame
    t = torch.rand(2, 3, 120, 160)
    assert torch.equal(corr.apply_torch(t), t)
    # the general path agrees with the identity: the grid is the pixel grid itself
    np.testing.assert_allclose(corr.map_x, cam.pixel_grid()[..., 0])
    assert not CameraCorrection.from_rig(_rig()).is_identity

    corr = CameraCorrection.from_rig(_rig())
    with pytest.raises(ValueError, match=r"frames are 64x80 \(WxH\) but the real camera .* 96x80"):
        corr.apply(np.zeros((80, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"frames must have shape \(H, W, C\) or \(N, H, W, C\)"):
        corr.apply(np.zeros((80, 96), np.uint8))
    with pytest.raises(TypeError, match=r"uint8 or floating point, got dtype int32"):
        corr.apply(np.zeros((80, 96, 3), np.int32))
    with pytest.raises(ValueError, match=r"frames are 80x96 \(WxH\) but the real camera .* 96x80"):
        corr.apply_torch(torch.zeros(1, 3, 96, 80))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        corr.apply_torch(torch.zeros(3, 80, 96))


def test_correction_dict_and_yaml(tmp_path: Path) -> None:
    rig = _rig()
    corr = CameraCorrection.from_rig(rig)
    d = corr.to_dict()
    assert set(d) == {"real", "sim"}
    again = CameraCorrection.from_dict(d)
    assert (again.real, again.sim) == (rig.real, rig.sim)
    np.testing.assert_array_equal(again.map_x, corr.map_x)
    rig.save(tmp_path / "camera.yaml")
    assert CameraCorrection.from_yaml(tmp_path / "camera.yaml").real == rig.real


def test_pickle_drops_device_grids() -> None:
    corr = CameraCorrection.from_rig(_rig())
    corr.apply_torch(torch.rand(1, 3, 80, 96))
    again = pickle.loads(pickle.dumps(corr))
    assert again._torch_grids == {} and again.real == corr.real
    frame = np.random.default_rng(6).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    np.testing.assert_array_equal(again.apply(frame), corr.apply(frame))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_apply_torch_cuda_matches_cpu() -> None:
    corr = CameraCorrection.from_rig(_rig())
    x = torch.rand(4, 3, 80, 96)
    y = corr.apply_torch(x.cuda())
    assert y.device.type == "cuda"
    assert (y.cpu() - corr.apply_torch(x)).abs().max() < 1e-5


def test_an_absurd_lens_model_is_refused_saying_what_to_check() -> None:
    sim = CameraModel.from_fov(128, 128, 75.0)
    sane = CameraModel.from_fov(128, 128, 130.0, dist=(0.06, 0.01, 0.0, 0.0))
    assert CameraCorrection.from_rig(CameraRig(sane, sim)).valid.mean() > 0.99
    absurd = CameraModel.from_fov(128, 128, 130.0, dist=(50.0, -80.0, 0.0, 0.0))
    with pytest.raises(CameraConfigError, match=r"only \d+ % of the sim view maps inside .*\[50\.0, -80\.0, 0\.0, 0\.0\].*order and units"):
        CameraCorrection.from_rig(CameraRig(absurd, sim))
    assert CameraCorrection.from_rig(CameraRig(absurd, sim), min_coverage=0).valid.mean() < 0.5


def test_resolve_camera_setting_one_rule(tmp_path: Path) -> None:
    """auto = the first candidate that exists; none-like = no correction; a path must exist."""
    near, far = tmp_path / "a" / "camera.yaml", tmp_path / "camera.yaml"
    far.write_text("x")
    assert resolve_camera_setting("auto", [None, near, far]) == far
    near.parent.mkdir()
    near.write_text("x")
    assert resolve_camera_setting("AUTO", [near, far]) == near
    assert resolve_camera_setting("auto", []) is None
    for off in (None, "", "none", "null", "off", "false", "None"):
        assert resolve_camera_setting(off, [near]) is None
    assert resolve_camera_setting(str(far)) == far
    with pytest.raises(FileNotFoundError, match=r"data.camera_yaml: .*nope.yaml does not exist"):
        resolve_camera_setting(tmp_path / "nope.yaml", what="data.camera_yaml")
