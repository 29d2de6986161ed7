"""Real-scope calibration: boards seen only in part, dot grids with fiducials, fields, stereo pairs."""

import cv2
import numpy as np
import pytest

from calibration.boards import Board
from calibration.calibrate import calibrate, collect_views
from calibration.camera import CameraModel
from calibration.fields import full_picture, is_combed
from calibration.stereo import rectify_maps
from calibration.synthetic import pose_looking_at, render_view
from tests.calibration.test_calibration import FISHEYE
from tests.helpers import PINHOLE, orsight

FIDUCIALS = ((7, 5), (17, 5), (7, 12), (17, 12))
DOTGRID = Board("dotgrid", 25, 18, 5.0, fiducials=FIDUCIALS)
CHARUCO = Board("charuco", 14, 10, 8.0)
RIGHT = CameraModel("pinhole", np.array([[590.0, 0, 330], [0, 594, 240], [0, 0, 1]]),
                    np.array([-0.22, 0.06, -0.001, 0.001, 0.0]), (640, 480))
LEFT_TO_RIGHT = (np.array([0.0, 0.03, 0.01]), np.array([-5.0, 0.2, 0.1]))  # rvec, tvec (mm): a 5 mm baseline


def _poses(board, count, depth, turn=np.pi, seed=0):
    """Close poses around the board's middle: each view sees a part of the board."""
    rng = np.random.default_rng(seed)
    middle = (board.cols * board.square_mm / 2, board.rows * board.square_mm / 2)
    for _ in range(count):
        rvec = rng.uniform(-0.45, 0.45, 3) * [1, 1, 0] + [0, 0, rng.uniform(-turn, turn)]
        target = np.array(middle) + rng.uniform(-8, 8, 2)
        yield pose_looking_at(target, rvec, depth * rng.uniform(0.85, 1.15), offset_mm=rng.uniform(-6, 6, 2))


def _write_views(folder, board, camera, depth, count=12, prefix="view", turn=np.pi):
    paths = []
    for i, (rvec, tvec) in enumerate(_poses(board, count, depth, turn)):
        paths.append(folder / f"{prefix}{i:02d}.png")
        cv2.imwrite(str(paths[-1]), render_view(board, camera, rvec, tvec, noise=2.0, seed=i))
    return [str(p) for p in paths]


def _assert_intrinsics(found: CameraModel, truth: CameraModel):
    for r, c in [(0, 0), (1, 1), (0, 2), (1, 2)]:
        assert found.camera_matrix[r, c] == pytest.approx(truth.camera_matrix[r, c], rel=0.01)


@pytest.mark.parametrize("board", [CHARUCO, DOTGRID], ids=["charuco", "dotgrid"])
@pytest.mark.parametrize("camera, depth", [(PINHOLE, 65.0), (FISHEYE, 45.0)], ids=["pinhole", "fisheye"])
def test_partial_views_give_intrinsics_within_one_percent(tmp_path, board, camera, depth):
    views, size, skipped = collect_views(_write_views(tmp_path, board, camera, depth), board)
    assert len(views) >= 8
    whole = board.cols * board.rows if board.pattern == "dotgrid" else (board.cols - 1) * (board.rows - 1)
    assert max(len(v.image_points) for v in views) < 0.8 * whole  # no view saw the whole board
    result = calibrate(views, size, fisheye=camera.model == "fisheye", skipped=skipped)
    _assert_intrinsics(result.camera, camera)
    assert result.camera.rms < 0.5


@pytest.mark.parametrize("board", [Board("chessboard", 15, 11, 6.0), Board("circles", 21, 15, 5.0)],
                         ids=["chessboard", "circles"])
def test_partial_chessboard_and_circle_grid_views(tmp_path, board):
    views, size, skipped = collect_views(_write_views(tmp_path, board, PINHOLE, 65.0), board)
    assert len(views) >= 8
    _assert_intrinsics(calibrate(views, size, skipped=skipped).camera, PINHOLE)


@pytest.mark.parametrize("fiducials, turn", [(FIDUCIALS, 1.2), (((8, 5), (16, 6), (10, 12)), np.pi)],
                         ids=["symmetric-quarter-turns", "asymmetric-any-turn"])
def test_dot_grid_fiducials_fix_the_board_origin(fiducials, turn):
    """Detected dots carry the printed board's indices: projected through the true pose they land on them."""
    board = Board("dotgrid", 25, 18, 5.0, fiducials=fiducials)
    checked = 0
    for rvec, tvec in _poses(board, 6, 70.0, turn, seed=3):
        gray = cv2.cvtColor(render_view(board, PINHOLE, rvec, tvec, noise=2.0), cv2.COLOR_BGR2GRAY)
        try:
            points, board_points = board.detect(gray)
        except Exception as error:  # a view may miss the fiducials; that is said, not guessed
            assert "fiducials" in str(error)
            continue
        projected, _ = cv2.projectPoints(board_points.astype(np.float64), rvec, tvec, PINHOLE.camera_matrix,
                                         PINHOLE.distortion)
        assert np.abs(projected.reshape(-1, 2) - points).max() < 1.0
        checked += 1
    assert checked >= 4


def _through_a_scope(image: np.ndarray, seed: int) -> np.ndarray:
    """What a laparoscope adds: a round field stop, vignetting, a saturated specular highlight."""
    height, width = image.shape[:2]
    y, x = np.mgrid[:height, :width]
    radius = np.hypot(x - width / 2, y - height / 2) / (0.55 * width)
    light = np.clip(1.15 - 0.75 * radius ** 2, 0, 1) * (radius < 1)
    scoped = image.astype(np.float32) * light[..., None]
    rng = np.random.default_rng(seed)
    centre = (int(rng.uniform(0.3, 0.7) * width), int(rng.uniform(0.3, 0.7) * height))
    cv2.ellipse(scoped, centre, (40, 18), rng.uniform(0, 180), 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
    return np.clip(scoped, 0, 255).astype(np.uint8)


def test_vignetted_scope_views_with_highlights(tmp_path):
    paths = _write_views(tmp_path, DOTGRID, PINHOLE, 80.0)
    for seed, path in enumerate(paths):
        cv2.imwrite(path, _through_a_scope(cv2.imread(path), seed))
    views, size, skipped = collect_views(paths, DOTGRID)
    assert len(views) >= 8
    _assert_intrinsics(calibrate(views, size, skipped=skipped).camera, PINHOLE)


def test_view_without_enough_fiducials_is_skipped_with_the_reason(tmp_path):
    rvec, tvec = pose_looking_at((20.0, 80.0), (0.1, 0.1, 0.0), 45.0)  # a corner of the board, no fiducial
    path = tmp_path / "corner.png"
    cv2.imwrite(str(path), render_view(DOTGRID, PINHOLE, rvec, tvec))
    views, _, skipped = collect_views([str(path)], DOTGRID)
    assert not views and "fiducials seen (need 2)" in skipped["corner.png"]


def test_half_height_fields_calibrate_the_full_picture(tmp_path):
    """A stereo scope's 640x240 field of a 640x480 picture: detected and stretched back (field x2)."""
    paths = _write_views(tmp_path, CHARUCO, PINHOLE, 65.0)
    for path in paths:
        cv2.imwrite(path, cv2.imread(path)[0::2])
    views, size, skipped = collect_views(paths, CHARUCO)
    assert size == (640, 480)
    _assert_intrinsics(calibrate(views, size, skipped=skipped).camera, PINHOLE)


def test_combed_frame_is_replaced_by_its_first_field():
    rvec, tvec = next(_poses(CHARUCO, 1, 65.0))
    still = render_view(CHARUCO, PINHOLE, rvec, tvec)
    moved = np.roll(still, 9, axis=1)
    combed = still.copy()
    combed[1::2] = moved[1::2]
    assert not is_combed(cv2.cvtColor(still, cv2.COLOR_BGR2GRAY))
    picture, how = full_picture(combed)
    assert how == "combed: first field" and picture.shape == still.shape
    error = lambda image: np.abs(image.astype(int) - still.astype(int)).mean()  # noqa: E731
    assert error(picture) < error(combed)


def test_stereo_pair_gives_both_cameras_and_the_baseline(tmp_path):
    rotation, _ = cv2.Rodrigues(LEFT_TO_RIGHT[0])
    left, right = [], []
    for i, (rvec, tvec) in enumerate(_poses(DOTGRID, 10, 70.0, turn=1.2)):
        board_rotation, _ = cv2.Rodrigues(rvec)
        right_rvec, _ = cv2.Rodrigues(rotation @ board_rotation)
        right_tvec = rotation @ tvec + LEFT_TO_RIGHT[1]
        for side, camera, pose, paths in (("L", PINHOLE, (rvec, tvec), left),
                                          ("R", RIGHT, (right_rvec, right_tvec), right)):
            paths.append(str(tmp_path / f"{side}{i:02d}.png"))
            cv2.imwrite(paths[-1], render_view(DOTGRID, camera, *pose, noise=2.0, seed=i))
    out = tmp_path / "stereo.yaml"
    result = orsight("calibrate", "--stereo", *left, "--right", *right,
                     "--pattern", "dotgrid", "--board", "25x18", "--square", "5",
                     "--fiducials", "7,5,17,5,7,12,17,12", "--out", str(out), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "baseline 5.0" in result.stdout
    _assert_intrinsics(CameraModel.load(out), PINHOLE)  # the mono keys hold the left camera: run uses it
    storage = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
    right_camera = CameraModel("pinhole", storage.getNode("right_camera_matrix").mat(),
                               storage.getNode("right_distortion_coefficients").mat().ravel(), (640, 480))
    _assert_intrinsics(right_camera, RIGHT)
    assert storage.getNode("T").mat().ravel() == pytest.approx(LEFT_TO_RIGHT[1], abs=0.05)  # 1 % of the baseline
    rotation_found = cv2.Rodrigues(storage.getNode("R").mat())[0].ravel()
    assert np.abs(rotation_found - LEFT_TO_RIGHT[0]).max() < 0.005
    (left_x, left_y), (right_x, right_y) = rectify_maps(out)
    assert left_x.shape == right_y.shape == (480, 640)


def test_calibrate_command_on_partial_dot_grid_views_with_debug_pictures(tmp_path):
    paths = _write_views(tmp_path, DOTGRID, PINHOLE, 65.0, count=8)
    out, debug = tmp_path / "scope.yaml", tmp_path / "seen"
    result = orsight("calibrate", *paths, "--pattern", "dotgrid",
                     "--board", "25x18", "--square", "5", "--fiducials", "7,5,17,5,7,12,17,12",
                     "--debug", str(debug), "--out", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    camera = CameraModel.load(out)
    _assert_intrinsics(camera, PINHOLE)
    assert len(camera.view_errors) >= 6 and all(e < 0.5 for e in camera.view_errors.values())
    assert sorted(p.name for p in debug.iterdir()) == [f"view{i:02d}.png" for i in range(8)]
    assert "points)" in result.stdout


def test_make_board_writes_a_printable_board(tmp_path):
    from PIL import Image

    out = tmp_path / "board.png"
    result = orsight("calibrate", "--make-board", "charuco",
                     "--board", "11x8", "--square", "5", "--out", str(out), timeout=60)
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.info["dpi"][0] == pytest.approx(300, abs=1)
    assert image.size[0] / 300 * 25.4 == pytest.approx(65, abs=0.5)  # 11 squares + 2 margins of 5 mm
    gray = np.array(image)
    corners, ids, _, _ = cv2.aruco.CharucoDetector(Board("charuco", 11, 8, 5.0).charuco).detectBoard(gray)
    assert ids is not None and len(ids) == 70
