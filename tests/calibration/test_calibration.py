"""Calibration against boards rendered through a known camera."""

import cv2
import numpy as np
import pytest

from calibration.boards import Board
from calibration.calibrate import calibrate, collect_views
from calibration.camera import CalibrationError, CameraModel, scale_from_reference
from calibration.synthetic import render_view
from tests.helpers import PINHOLE, orsight

FISHEYE = CameraModel("fisheye", np.array([[420.0, 0, 322], [0, 425, 236], [0, 0, 1]]),
                      np.array([0.08, -0.02, 0.01, -0.003]), (640, 480))


def _render_views(folder, board, camera, count=15, blur_index=None):
    """Views that sweep the board over a 3x3 grid of image positions, tilted every which way."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        rvec = rng.uniform(-0.5, 0.5, 3) * [1, 1, 0.3]
        depth = rng.uniform(90, 130)
        centre = np.array([(i % 3 - 1) * 150, (i // 3 % 3 - 1) * 100]) + rng.uniform(-20, 20, 2)
        tvec = [*(centre * depth / camera.camera_matrix[0, 0] - [17, 12]), depth]
        image = render_view(board, camera, rvec, tvec, noise=2.0, seed=i)
        if i == blur_index:
            image = cv2.GaussianBlur(image, (0, 0), 2.5)
        paths.append(folder / f"view{i:02d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return [str(p) for p in paths]


def _assert_recovered(found: CameraModel, truth: CameraModel):
    for (r, c) in [(0, 0), (1, 1), (0, 2), (1, 2)]:
        assert found.camera_matrix[r, c] == pytest.approx(truth.camera_matrix[r, c], rel=0.01)
    assert found.rms < 0.5


@pytest.mark.parametrize("pattern, dims", [("chessboard", (9, 6)), ("circles", (7, 5)), ("charuco", (7, 5))])
def test_pinhole_intrinsics_recovered_within_one_percent(tmp_path, pattern, dims):
    board = Board(pattern, *dims, square_mm=5.0)
    views, size, _ = collect_views(_render_views(tmp_path, board, PINHOLE), board)
    result = calibrate(views, size)
    _assert_recovered(result.camera, PINHOLE)


def test_fisheye_intrinsics_recovered_within_one_percent(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    views, size, _ = collect_views(_render_views(tmp_path, board, FISHEYE), board)
    _assert_recovered(calibrate(views, size, fisheye=True).camera, FISHEYE)


def test_blurred_view_is_skipped_and_shifted_view_rejected(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    views, size, skipped = collect_views(_render_views(tmp_path, board, PINHOLE, blur_index=3), board)
    assert skipped.get("view03.png") == "blurred"
    views[5].image_points = views[5].image_points + np.random.default_rng(1).normal(0, 4, views[5].image_points.shape)
    result = calibrate(views, size)
    assert list(result.rejected) == [views[5].name]
    _assert_recovered(result.camera, PINHOLE)


@pytest.mark.parametrize("camera", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
def test_undistort_distort_round_trip_within_half_a_pixel(camera):
    points = np.random.default_rng(0).uniform([60, 40], [580, 440], (200, 2))
    back = camera.distort_points(camera.undistort_points(points))
    assert np.abs(back - points).max() < 0.5


def test_file_round_trip_is_opencv_yaml(tmp_path):
    camera = CameraModel(**{**PINHOLE.__dict__, "scope_id": "scope-7", "mm_per_px": 0.05,
                            "working_distance_mm": 30.0})
    path = tmp_path / "scope.yaml"
    camera.save(path)
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    assert np.allclose(storage.getNode("camera_matrix").mat(), PINHOLE.camera_matrix)
    loaded = CameraModel.load(path)
    assert loaded.scope_id == "scope-7" and loaded.mm_per_px == pytest.approx(0.05)
    assert loaded.image_size == (640, 480) and np.allclose(loaded.distortion, PINHOLE.distortion)


def test_scale_from_reference_and_from_working_distance():
    assert scale_from_reference((100, 100), (100, 300), 10.0) == pytest.approx(0.05)
    assert PINHOLE.scale_at(60.0) == pytest.approx(0.1)


def test_too_few_views_names_what_was_found(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    paths = _render_views(tmp_path, board, PINHOLE, count=3)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((480, 640, 3), 128, np.uint8))
    views, size, skipped = collect_views(paths + [str(tmp_path / "blank.png")], board)
    with pytest.raises(CalibrationError, match=r"too few usable views: [0-3] \(need 6\); .*1 board not found"):
        calibrate(views, size, skipped=skipped)


def test_calibrate_command_and_its_bad_input(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    paths = _render_views(tmp_path, board, PINHOLE, count=10)
    out = tmp_path / "scope.yaml"

    def run(*a):
        return orsight("calibrate", *a, timeout=120)

    result = run(*paths, "--pattern", "chessboard", "--board", "9x6", "--square", "5", "--out", str(out),
                 "--working-distance", "60")
    assert result.returncode == 0, result.stderr
    assert "RMS" in result.stdout and CameraModel.load(out).mm_per_px == pytest.approx(0.1, rel=0.02)
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((240, 320, 3), np.uint8))
    result = run(paths[0], str(tmp_path / "small.png"), "--pattern", "chessboard", "--board", "9x6",
                 "--square", "5", "--out", str(out))
    assert result.returncode == 2 and "inconsistent image sizes" in result.stderr
    result = run(*paths[:2], "--pattern", "charuco", "--board", "9x6", "--square", "5", "--out", str(out))
    assert result.returncode == 2 and "2 board not found" in result.stderr


def test_calibration_from_a_video_samples_its_frames(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    paths = _render_views(tmp_path, board, PINHOLE, count=12)
    video = tmp_path / "sweep.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for path in paths:
        for _ in range(3):  # the camera lingers: repeated frames are duplicates, not new views
            writer.write(cv2.imread(path))
    writer.release()
    views, size, skipped = collect_views([str(video)], board)
    assert size == (640, 480) and 8 <= len(views) <= 12
    assert sum(reason.startswith("duplicate") for reason in skipped.values()) >= 18
    _assert_recovered(calibrate(views, size).camera, PINHOLE)


def test_a_folder_of_views_is_read_in_name_order_and_other_files_are_passed_over(tmp_path):
    board = Board("chessboard", 9, 6, square_mm=5.0)
    folder = tmp_path / "views"
    folder.mkdir()
    paths = _render_views(folder, board, PINHOLE, count=10)
    (folder / "notes.txt").write_text("board sweep, 2026-12-05")
    views, size, skipped = collect_views([str(folder)], board)
    names = [view.name for view in views]
    assert names == sorted(names) and sorted(names + list(skipped)) == sorted(p.rsplit("/", 1)[1] for p in paths)
    _assert_recovered(calibrate(views, size).camera, PINHOLE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no pictures or videos in folder"):
        collect_views([str(tmp_path / "empty")], board)
