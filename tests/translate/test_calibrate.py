"""translate.calibrate: checkerboard calibration (synthetic boards of known optics), OpenCV / ROS importers, the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from translate.calibrate import (
    CalibrationError,
    _rodrigues,
    board_object_points,
    calibrate_points,
    import_opencv,
    import_ros,
    main,
    parse_pattern,
    render_board,
)
from translate.camera import CameraModel, load_camera_yaml

cv2 = pytest.importorskip("cv2")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "calibration"
PATTERN, SQUARE = (7, 5), 0.03
PINHOLE = CameraModel(320, 240, 150.0, 152.0, 161.0, 118.5, "pinhole", (-0.25, 0.08, 0.001, -0.0005, -0.01))
FISHEYE = CameraModel(320, 240, 100.0, 101.0, 161.0, 118.5, "fisheye", (0.05, -0.02, 0.01, -0.004))


def _poses(n: int, seed: int, z: tuple[float, float], spread: float) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    centre = np.array([(PATTERN[0] - 1) * SQUARE / 2, (PATTERN[1] - 1) * SQUARE / 2, 0.0])
    out = []
    for _ in range(n):
        rvec = rng.uniform(-0.6, 0.6, 3)
        rvec[2] = rng.uniform(-0.3, 0.3)
        depth = rng.uniform(*z)
        off = rng.uniform(-spread, spread, 2) * depth * np.array([1.0, 0.7])
        out.append((rvec, np.array([off[0], off[1], depth]) - _rodrigues(rvec) @ centre))
    return out


def _board_folder(tmp: Path, cam: CameraModel, n: int, seed: int) -> Path:
    from translate.imageio import write_image

    folder = tmp / "boards"
    folder.mkdir()
    for i, (r, t) in enumerate(_poses(n, seed, (0.15, 0.3), 0.6)):
        write_image(folder / f"{i:02d}.png", np.repeat(render_board(cam, r, t, PATTERN, SQUARE)[..., None], 3, -1))
    return folder


def _max_map_error(truth: CameraModel, est: CameraModel, corners: np.ndarray) -> float:
    # where the board was seen: the same pixel must mean the same ray under both models
    lo, hi = corners.min(0), corners.max(0)
    g = truth.pixel_grid()
    g = g[(g[..., 0] >= lo[0]) & (g[..., 0] <= hi[0]) & (g[..., 1] >= lo[1]) & (g[..., 1] <= hi[1])]
    return float(np.abs(est.project(np.concatenate([truth.unproject_pixels(g), np.ones((len(g), 1))], 1)) - g).max())


@pytest.mark.parametrize("cam", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
def test_exact_corners_recover_the_intrinsics_and_distortion(cam: CameraModel) -> None:
    board = board_object_points((9, 6), 0.025)
    k = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]])
    obj, img = [], []
    for r, t in _poses(12, 1, (0.2, 0.4), 0.5):
        if cam.model == "pinhole":
            uv, _ = cv2.projectPoints(board, r, t, k, np.array(cam.dist))
        else:
            uv, _ = cv2.fisheye.projectPoints(board.reshape(1, -1, 3), r, t, k, np.array(cam.dist))
        obj.append(board)
        img.append(uv.reshape(-1, 2))
        # our model projects exactly as OpenCV does
        np.testing.assert_allclose(cam.project(board @ _rodrigues(r).T + t), img[-1], atol=1e-9)
    est, rms, per_view = calibrate_points(obj, img, (cam.width, cam.height), fisheye=cam.model == "fisheye")
    assert est.model == cam.model and rms < 1e-4 and len(per_view) == 12
    np.testing.assert_allclose([est.fx, est.fy, est.cx, est.cy], [cam.fx, cam.fy, cam.cx, cam.cy], atol=1e-3)
    np.testing.assert_allclose(est.dist, cam.dist, atol=1e-5)


@pytest.mark.parametrize("cam", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
def test_checkerboard_cli_on_rendered_boards(tmp_path: Path, cam: CameraModel, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _board_folder(tmp_path, cam, 10, 0)
    out = tmp_path / "camera.yaml"
    args = ["checkerboard", str(folder), "--pattern", "7x5", "--square", "0.03", "--sim-hfov", "75", "-o", str(out)]
    assert main(args + (["--fisheye"] if cam.model == "fisheye" else [])) == 0
    printed = capsys.readouterr().out
    assert "reprojection error: RMS" in printed and "board found in" in printed and "camera.yaml →" in printed
    rig = load_camera_yaml(out)
    est = rig.real
    assert est.model == cam.model and (est.width, est.height) == (320, 240)
    assert abs(est.fx / cam.fx - 1) < 0.02 and abs(est.fy / cam.fy - 1) < 0.02
    assert abs(est.cx - cam.cx) < 2 and abs(est.cy - cam.cy) < 2
    assert rig.sim.model == "pinhole" and abs(rig.sim.hfov_deg() - 75) < 1e-6
    rms = float(printed.split("reprojection error: RMS ")[1].split(" px")[0])
    found = int(printed.split("board found in ")[1].split(" of")[0])
    assert rms < 0.3 and found >= 8
    corners = np.concatenate([cam.project(board_object_points(PATTERN, SQUARE) @ _rodrigues(r).T + t)
                              for r, t in _poses(10, 0, (0.15, 0.3), 0.6)])
    assert _max_map_error(cam, est, corners[np.isfinite(corners).all(1)]) < 2.5


def test_size_rescales_and_sim_from_another_camera_yaml(tmp_path: Path) -> None:
    sim_src = tmp_path / "dataset_camera.yaml"
    assert main(["import-ros", str(FIXTURES / "ros_camera_info.yaml"), "--sim-hfov", "75", "--sim-size", "128", "128",
                 "-o", str(sim_src)]) == 0
    out = tmp_path / "camera.yaml"
    assert main(["import-ros", str(FIXTURES / "ros_camera_info.yaml"), "--size", "320", "240", "--sim", str(sim_src),
                 "-o", str(out)]) == 0
    rig = load_camera_yaml(out)
    assert (rig.real.width, rig.real.height) == (320, 240) and rig.real.fx == pytest.approx(305.5 / 2)
    assert rig.sim == load_camera_yaml(sim_src).sim
    # rerunning without a sim keeps the one in the existing file
    assert main(["import-ros", str(FIXTURES / "ros_camera_info.yaml"), "-o", str(out)]) == 0
    assert load_camera_yaml(out).sim == rig.sim


def test_importers_read_ros_and_opencv_files() -> None:
    ros = import_ros(FIXTURES / "ros_camera_info.yaml").camera
    assert (ros.model, ros.width, ros.height, ros.fx, ros.cy) == ("pinhole", 640, 480, 305.5, 241.75)
    assert ros.dist == (-0.281, 0.071, 0.0012, -0.0008, -0.0079)
    eq = import_ros(FIXTURES / "ros_camera_info_equidistant.yaml").camera
    assert (eq.model, eq.width, eq.height, eq.dist) == ("fisheye", 816, 616, (0.041, -0.012, 0.0031, -0.0007))
    yml = import_opencv(FIXTURES / "opencv_calibration.yaml")
    assert yml.camera.model == "fisheye" and yml.rms == pytest.approx(0.2375)
    assert (yml.camera.width, yml.camera.fx, yml.camera.dist[0]) == (224, 72.5, 0.052)
    xml = import_opencv(FIXTURES / "opencv_calibration.xml")
    assert xml.camera.model == "pinhole" and (xml.camera.width, xml.camera.height) == (640, 480)
    assert xml.camera.dist[:2] == (-0.12, 0.034) and xml.rms == pytest.approx(0.41)


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_size = tmp_path / "no_size.yaml"
    no_size.write_text("camera_matrix: {data: [100, 0, 50, 0, 100, 40, 0, 0, 1]}\ndistortion_model: plumb_bob\n")
    with pytest.raises(CalibrationError, match="no_size.yaml: no image size.*--image-size"):
        import_ros(no_size)
    assert import_ros(no_size, size=(100, 80)).camera.width == 100
    bad_model = tmp_path / "bad.yaml"
    bad_model.write_text("width: 10\nheight: 10\nK: [1, 0, 5, 0, 1, 5, 0, 0, 1]\ndistortion_model: mei\n")
    with pytest.raises(CalibrationError, match="distortion_model 'mei'"):
        import_ros(bad_model)
    with pytest.raises(CalibrationError, match="COLSxROWS"):
        parse_pattern("9-6")
    blank = tmp_path / "blank"
    blank.mkdir()
    from translate.imageio import write_image

    for i in range(3):
        write_image(blank / f"{i}.png", np.full((60, 80, 3), 128, np.uint8))
    for argv, needle in [
        (["checkerboard", str(blank), "--pattern", "7x5", "--sim-hfov", "75"], "found in 0 of 3 images"),
        (["import-ros", str(FIXTURES / "ros_camera_info.yaml"), "-o", str(tmp_path / "new.yaml")], "no sim camera"),
        (["import-opencv", str(tmp_path / "missing.xml")], "not found"),
        (["import-ros", str(FIXTURES / "opencv_calibration.yaml"), "--sim-hfov", "75"], "use import-opencv"),
        (["import-ros", str(FIXTURES / "ros_camera_info.yaml"), "--sim-size", "64", "64"], "goes with --sim-hfov"),
    ]:
        assert main(argv + ["-o", str(tmp_path / "x.yaml")] if "-o" not in argv else argv) == 1
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "error: error" not in err, err


def test_missing_opencv_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(CalibrationError, match=r"needs OpenCV \(cv2\): pip install \"\.\[camera\]\""):
        import_opencv(FIXTURES / "opencv_calibration.xml")
