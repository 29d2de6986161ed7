"""Stereo scopes: both cameras' intrinsics, the left-to-right transform, rectification.

Each camera is calibrated on its own views first (all of them), then the pair is fitted on
the frames where both saw the board, with each camera's intrinsics held: only board points
seen by both cameras count (ChArUco ids or a dot grid's fiducials make them the same points),
lifted off the plane by the left camera's fit of the board's shape when it is bent.
The YAML keeps the left camera under the mono keys, so ``orsight run --calibration`` reads
a stereo file as the left camera; the right camera, R, T, E, F and the rectification
(R1, R2, P1, P2, Q: :func:`rectify_maps` turns them into remap tables) sit beside it.

    stereo = calibrate_stereo(left_views, right_views, size)
    stereo.save("stereo.yaml")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.calibrate import Calibration, View, calibrate
from calibration.camera import CalibrationError, CameraModel

MIN_PAIRS = 3
RECTIFICATION = ("R1", "R2", "P1", "P2", "Q")


@dataclass
class StereoCalibration:
    left: Calibration
    right: Calibration
    rotation: np.ndarray  # (3, 3) left camera -> right camera
    translation: np.ndarray  # (3,) mm, left camera -> right camera
    essential: np.ndarray
    fundamental: np.ndarray
    rectification: dict[str, np.ndarray]  # R1 R2 P1 P2 Q (cv2.stereoRectify)
    rms: float  # over both cameras' points of the pairs
    pairs: int

    def save(self, path: str | Path) -> None:
        right = self.right.camera
        extra = {"right_camera_matrix": right.camera_matrix, "right_distortion_coefficients": right.distortion,
                 "right_rms": right.rms, "R": self.rotation, "T": self.translation.reshape(3, 1),
                 "E": self.essential, "F": self.fundamental, "stereo_rms": self.rms, "stereo_pairs": self.pairs,
                 **self.rectification}
        self.left.camera.save(path, extra)


def _shared_points(left: View, right: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Board points both views saw: (object points, left image points, right image points)."""
    right_at = {tuple(np.round(p, 3)): i for i, p in enumerate(right.object_points)}
    pairs = [(i, right_at[key]) for i, key in enumerate(tuple(np.round(p, 3)) for p in left.object_points)
             if key in right_at]
    if not pairs:
        return np.empty((0, 3)), np.empty((0, 2)), np.empty((0, 2))
    left_index, right_index = np.array(pairs).T
    return left.object_points[left_index], left.image_points[left_index], right.image_points[right_index]


def calibrate_stereo(left_views: list[View], right_views: list[View], size: tuple[int, int],
                     rational: bool = False, skipped: tuple[dict, dict] | None = None) -> StereoCalibration:
    """Fit each camera, then the transform between them from the frames both saw the board in."""
    left_skipped, right_skipped = skipped or ({}, {})
    left = calibrate(left_views, size, rational=rational, skipped=left_skipped)
    right = calibrate(right_views, size, rational=rational, skipped=right_skipped)
    right_by_frame = {v.frame: v for v in right_views if v.name in right.per_view_rms}
    objects, left_points, right_points = [], [], []
    for view in left_views:
        if view.name not in left.per_view_rms or view.frame not in right_by_frame:
            continue
        shared = _shared_points(view, right_by_frame[view.frame])
        if len(shared[0]) >= 6:
            board_points = shared[0] if left.surface is None else left.surface.lift(shared[0])
            objects.append(board_points.astype(np.float32).reshape(-1, 1, 3))
            left_points.append(shared[1].astype(np.float32).reshape(-1, 1, 2))
            right_points.append(shared[2].astype(np.float32).reshape(-1, 1, 2))
    if len(objects) < MIN_PAIRS:
        raise CalibrationError(f"too few stereo pairs: {len(objects)} frames where both cameras saw the same "
                               f"board points (need {MIN_PAIRS})")
    k1, d1 = left.camera.camera_matrix, left.camera.distortion
    k2, d2 = right.camera.camera_matrix, right.camera.distortion
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-9)
    try:
        rms, *_, rotation, translation, essential, fundamental = cv2.stereoCalibrate(
            objects, left_points, right_points, k1, d1, k2, d2, size, flags=cv2.CALIB_FIX_INTRINSIC,
            criteria=criteria)
        r1, r2, p1, p2, q, _, _ = cv2.stereoRectify(k1, d1, k2, d2, size, rotation, translation, alpha=0)
    except cv2.error as error:
        raise CalibrationError(f"stereo calibration did not converge: {str(error).strip().splitlines()[-1]}") from None
    return StereoCalibration(left, right, rotation, translation.ravel(), essential, fundamental,
                             dict(zip(RECTIFICATION, (r1, r2, p1, p2, q))), float(rms), len(objects))


def rectify_maps(path: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """cv2.remap tables (x, y) for the left and the right frames of a stereo calibration file."""
    left = CameraModel.load(path)
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    node = {name: storage.getNode(name).mat() for name in ("right_camera_matrix", "right_distortion_coefficients",
                                                          *RECTIFICATION)}
    storage.release()
    if any(value is None for value in node.values()):
        raise CalibrationError(f"{path} is not a stereo calibration (no right camera or rectification)")
    size = left.image_size
    maps_left = cv2.initUndistortRectifyMap(left.camera_matrix, left.distortion, node["R1"], node["P1"], size,
                                            cv2.CV_32FC1)
    maps_right = cv2.initUndistortRectifyMap(node["right_camera_matrix"], node["right_distortion_coefficients"],
                                             node["R2"], node["P2"], size, cv2.CV_32FC1)
    return maps_left, maps_right
