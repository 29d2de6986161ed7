"""A real laparoscope's views: a scope's light on the dots, a bent paper board, inputs of the same name,
and the shared real views (skipped when ../shared is absent)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.board_shape import BoardSurface
from calibration.boards import Board
from calibration.calibrate import View, _wrapped, calibrate, collect_views
from calibration.camera import CameraModel
from calibration.synthetic import render_view
from tests.calibration.test_partial_views import _assert_intrinsics, _poses
from tests.helpers import PINHOLE, orsight

UCL_BOARD = Board("dotgrid", 25, 18, 5.0, fiducials=((8, 5), (16, 5), (8, 12), (16, 12)))
UCL_VIEWS = Path(__file__).resolve().parents[3] / "shared" / "data" / "calibration-ucl" / "views"
UCL_LEFT = {"fx": 1758.0, "fy": 1762.0, "cx": 903.0, "cy": 468.0}  # the data README's reference figures
UCL_ARGS = ("--pattern", "dotgrid", "--board", "25x18", "--square", "5", "--fiducials", "8,5,16,5,8,12,16,12")


def test_dots_found_under_a_scopes_light(tmp_path):
    """Grey ink, vignetting, a lopsided light, blurred edges and doubled lines: the board is still found,
    each dot with a grid index consistent with every other (two fiducials in one column cannot tell
    column 8 from 16, so the ids are checked up to the board's own symmetry: a plane's homography)."""
    for seed, (rvec, tvec) in enumerate(_poses(UCL_BOARD, 6, 65.0)):
        gray = cv2.cvtColor(render_view(UCL_BOARD, PINHOLE, rvec, tvec, noise=2.0, seed=seed, scope_light=True),
                            cv2.COLOR_BGR2GRAY)
        image_points, board_points = UCL_BOARD.detect(gray)
        assert len(image_points) > 100
        ideal = cv2.undistortPoints(image_points.reshape(-1, 1, 2).astype(np.float64), PINHOLE.camera_matrix,
                                    PINHOLE.distortion, P=PINHOLE.camera_matrix).reshape(-1, 2)
        homography, _ = cv2.findHomography(board_points[:, :2].astype(np.float64), ideal, 0)
        mapped = cv2.perspectiveTransform(board_points[:, :2].reshape(-1, 1, 2).astype(np.float64), homography)
        assert np.abs(mapped.reshape(-1, 2) - ideal).max() < 4  # a wrong index is off by a spacing, 30 px


def _bent_views(bend_mm: float, count: int = 12) -> list[View]:
    """Views of a board bowed by ``bend_mm`` (a paper board), its points projected exactly plus noise."""
    rng = np.random.default_rng(4)
    surface = BoardSurface(np.r_[bend_mm, 0.0, 0.6 * bend_mm, np.zeros(9)], (120.0, 85.0))
    views = []
    for index, (rvec, tvec) in enumerate(_poses(UCL_BOARD, count, 70.0)):
        flat = UCL_BOARD.object_points().astype(np.float64)
        projected, _ = cv2.projectPoints(surface.lift(flat), rvec, tvec, PINHOLE.camera_matrix, PINHOLE.distortion)
        points = projected.reshape(-1, 2) + rng.normal(0, 0.1, (len(flat), 2))
        inside = np.all((points > 0) & (points < PINHOLE.image_size), axis=1)
        views.append(View(f"v{index}", index, points[inside], flat[inside], 1.0))
    return views


def test_a_bent_board_is_fitted_and_the_intrinsics_hold():
    result = calibrate(_bent_views(1.5), PINHOLE.image_size)
    assert result.surface is not None
    assert result.flat_rms > 0.5 and result.camera.rms < 0.2
    _assert_intrinsics(result.camera, PINHOLE)


def test_a_flat_board_stays_flat():
    result = calibrate(_bent_views(0.0), PINHOLE.image_size)
    assert result.surface is None and result.camera.rms < 0.2


def test_inputs_of_the_same_name_stay_separate_views(tmp_path):
    paths = []
    for index, (rvec, tvec) in enumerate(_poses(UCL_BOARD, 8, 65.0)):
        folder = tmp_path / f"take{index}"
        folder.mkdir()
        paths.append(str(folder / "left_image.png"))
        cv2.imwrite(paths[-1], render_view(UCL_BOARD, PINHOLE, rvec, tvec, noise=2.0, seed=index))
    views, _, _ = collect_views(paths, UCL_BOARD, debug_dir=tmp_path / "seen")
    assert sorted(v.name for v in views) == [f"take{i}/left_image.png" for i in range(8)]
    assert len(list((tmp_path / "seen").iterdir())) == 8  # one debug picture each, none overwritten


def test_a_long_refusal_is_wrapped_to_the_picture():
    text = "board not found: " + "the 3 larger dots seen do not match the fiducials' positions " * 3
    lines = _wrapped(text, 300, 0.6, 1)
    assert len(lines) > 3 and " ".join(lines) == " ".join(text.split())
    assert all(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)[0][0] <= 300 for line in lines)


@pytest.mark.skipif(not UCL_VIEWS.is_dir(), reason="../shared/data/calibration-ucl not present")
def test_real_stereo_laparoscope_views(tmp_path):
    left = sorted(str(p) for p in UCL_VIEWS.glob("calib.left.images.*.png"))
    right = sorted(str(p) for p in UCL_VIEWS.glob("calib.right.images.*.png"))
    out = tmp_path / "stereo.yaml"
    result = orsight("calibrate", "--stereo", *left, "--right", *right, *UCL_ARGS, "--out", str(out),
                     "--debug", str(tmp_path / "seen"), timeout=300)
    assert result.returncode == 0, result.stderr
    camera = CameraModel.load(out)
    assert len(camera.view_errors) == len(left)  # every view used
    k = camera.camera_matrix
    found = {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]}
    for name in ("fx", "fy", "cx"):
        assert found[name] == pytest.approx(UCL_LEFT[name], rel=0.03), name
    assert found["cy"] == pytest.approx(UCL_LEFT["cy"], rel=0.06)
    assert camera.distortion[0] < -0.1  # clear barrel distortion
    assert "baseline 4." in result.stdout  # a 3D laparoscope's few millimetres
    assert (tmp_path / "seen" / "rectified-pair.png").is_file()
    assert len(list((tmp_path / "seen" / "left").iterdir())) == len(left)
