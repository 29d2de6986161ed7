"""The endoscope's camera model: intrinsics, distortion, pixel scale; stored as OpenCV YAML.

    camera = CameraModel.load("scope.yaml")        # written by `orsight calibrate`
    straight = camera.undistort_points(points)     # original -> undistorted pixels
    map_x, map_y = camera.undistort_maps()         # for cv2.remap of whole frames
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

MODELS = ("pinhole", "fisheye")


class CalibrationError(Exception):
    """A calibration could not be made or read; the message says what was found."""


@dataclass
class CameraModel:
    """Intrinsics of one scope + camera head. Undistorted images keep the same camera matrix."""

    model: str  # pinhole | fisheye
    camera_matrix: np.ndarray  # (3, 3)
    distortion: np.ndarray  # pinhole: OpenCV's k1 k2 p1 p2 k3 [k4 k5 k6]; fisheye: k1..k4
    image_size: tuple[int, int]  # (width, height)
    rms: float = 0.0
    date: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))
    scope_id: str = ""
    camera_id: str = ""
    mm_per_px: float | None = None  # at working_distance_mm, in the undistorted image
    working_distance_mm: float | None = None
    view_errors: dict[str, float] = field(default_factory=dict)  # RMS reprojection error (px) per view used

    @property
    def fx(self) -> float:
        return float(self.camera_matrix[0, 0])

    def scale_at(self, working_distance_mm: float) -> float:
        """Millimetres per (undistorted) pixel on a plane facing the scope at that distance."""
        return working_distance_mm / self.fx

    # ---- points and maps ------------------------------------------------------------------
    def undistort_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) original pixels -> undistorted pixels (same camera matrix)."""
        points = np.asarray(points, np.float64).reshape(-1, 1, 2)
        k = self.camera_matrix
        if self.model == "fisheye":
            return cv2.fisheye.undistortPoints(points, k, self.distortion, P=k).reshape(-1, 2)
        return cv2.undistortPoints(points, k, self.distortion, P=k).reshape(-1, 2)

    def distort_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) undistorted pixels -> original pixels."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        k = self.camera_matrix
        normalised = np.column_stack([(points[:, 0] - k[0, 2]) / k[0, 0], (points[:, 1] - k[1, 2]) / k[1, 1],
                                      np.ones(len(points))]).reshape(-1, 1, 3)
        zero = np.zeros(3)
        if self.model == "fisheye":
            return cv2.fisheye.distortPoints(normalised[:, :, :2].astype(np.float64), k, self.distortion).reshape(-1, 2)
        projected, _ = cv2.projectPoints(normalised, zero, zero, k, self.distortion)
        return projected.reshape(-1, 2)

    def undistort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 maps: for each undistorted pixel, where to sample the original frame."""
        k, size = self.camera_matrix, self.image_size
        if self.model == "fisheye":
            return cv2.fisheye.initUndistortRectifyMap(k, self.distortion, np.eye(3), k, size, cv2.CV_32FC1)
        return cv2.initUndistortRectifyMap(k, self.distortion, np.eye(3), k, size, cv2.CV_32FC1)

    def distort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 maps: for each original pixel, where it lies in the undistorted image."""
        width, height = self.image_size
        grid = np.mgrid[:height, :width][::-1].reshape(2, -1).T.astype(np.float64)
        undistorted = self.undistort_points(grid).astype(np.float32)
        return undistorted[:, 0].reshape(height, width), undistorted[:, 1].reshape(height, width)

    # ---- file ----------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Write an OpenCV FileStorage YAML (readable by cv2.FileStorage in any language); ``extra``:
        more named matrices and numbers (a stereo pair's right camera and transform)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial.yaml")
        storage = cv2.FileStorage(str(partial), cv2.FILE_STORAGE_WRITE)
        storage.write("model", self.model)
        storage.write("camera_matrix", np.asarray(self.camera_matrix, np.float64))
        storage.write("distortion_coefficients", np.asarray(self.distortion, np.float64).reshape(1, -1))
        storage.write("image_width", int(self.image_size[0]))
        storage.write("image_height", int(self.image_size[1]))
        storage.write("rms", float(self.rms))
        storage.write("date", self.date)
        storage.write("scope_id", self.scope_id)
        storage.write("camera_id", self.camera_id)
        if self.mm_per_px is not None:
            storage.write("mm_per_px", float(self.mm_per_px))
        if self.working_distance_mm is not None:
            storage.write("working_distance_mm", float(self.working_distance_mm))
        if self.view_errors:
            storage.startWriteStruct("views", cv2.FileNode_SEQ)
            for name, error in self.view_errors.items():
                storage.startWriteStruct("", cv2.FileNode_MAP)
                storage.write("name", name)
                storage.write("rms", float(error))
                storage.endWriteStruct()
            storage.endWriteStruct()
        for name, value in (extra or {}).items():
            storage.write(name, np.asarray(value, np.float64) if np.ndim(value) else float(value))
        storage.release()
        partial.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> CameraModel:
        if not Path(path).is_file():
            raise CalibrationError(f"calibration file not found: {path}")
        try:
            storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        except (cv2.error, SystemError):  # OpenCV's parser raises either for a file it cannot read
            raise CalibrationError(f"{path} is not an OpenCV YAML calibration file") from None
        matrix = storage.getNode("camera_matrix").mat()
        distortion = storage.getNode("distortion_coefficients").mat()
        model = storage.getNode("model").string()
        if matrix is None or distortion is None or model not in MODELS:
            raise CalibrationError(f"{path} lacks camera_matrix, distortion_coefficients or model")

        def optional(name):
            node = storage.getNode(name)
            return None if node.empty() else node.real()

        camera = cls(model=model, camera_matrix=matrix, distortion=distortion.ravel(),
                     image_size=(int(storage.getNode("image_width").real()),
                                 int(storage.getNode("image_height").real())),
                     rms=storage.getNode("rms").real(), date=storage.getNode("date").string(),
                     scope_id=storage.getNode("scope_id").string(), camera_id=storage.getNode("camera_id").string(),
                     mm_per_px=optional("mm_per_px"), working_distance_mm=optional("working_distance_mm"))
        views = storage.getNode("views")
        camera.view_errors = {views.at(i).getNode("name").string(): views.at(i).getNode("rms").real()
                              for i in range(views.size())} if views.isSeq() else {}
        storage.release()
        return camera


def scale_from_reference(p1, p2, length_mm: float, camera: CameraModel | None = None) -> float:
    """Millimetres per pixel from two image points ``length_mm`` apart (undistorted first if a camera is given)."""
    points = np.array([p1, p2], np.float64)
    if camera is not None:
        points = camera.undistort_points(points)
    pixels = float(np.hypot(*(points[1] - points[0])))
    if pixels < 1:
        raise CalibrationError("the two reference points coincide")
    return length_mm / pixels
