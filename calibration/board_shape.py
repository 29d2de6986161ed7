"""Printed boards are rarely flat: fit the board's shape together with the camera.

A paper board bends by a millimetre or so, which a laparoscope at 5 cm sees as pixels of
error that no lens model can absorb; the fit then pulls the principal point away to
compensate. As in the "release object" method of calibration tools, the board's points are
let out of the plane, here as one smooth surface shared by every view (views of part of a
board do not share points, so the heights cannot be free per point):
``z = sum c_ij x^i y^j`` over the terms of degree 2 to ``SURFACE_DEGREE`` (lower terms are a
tilt and an offset, which each view's pose already holds). Intrinsics, distortion, every
view's pose and the surface are refined together by least squares from the flat fit.

    surface, camera_matrix, distortion, errors = fit_board_surface(views, k, d, size, board_mm)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

SURFACE_DEGREE = 4
POSE = 6  # rotation vector and translation per view


@dataclass(frozen=True)
class BoardSurface:
    coefficients: np.ndarray  # one per term of :func:`_terms`
    extent_mm: tuple[float, float]  # the board's width and height: coordinates are scaled by half of them

    def heights(self, object_points: np.ndarray) -> np.ndarray:
        """Height in mm, off the plane, of each board point (N, 3)."""
        return _terms(object_points, self.extent_mm) @ self.coefficients

    def lift(self, object_points: np.ndarray) -> np.ndarray:
        """The board points (N, 3) with their heights."""
        lifted = np.asarray(object_points, np.float64).copy()
        lifted[:, 2] = self.heights(object_points)
        return lifted

    def deviation_mm(self, object_points: np.ndarray) -> float:
        """Peak-to-peak height over the given board points."""
        heights = self.heights(object_points)
        return float(heights.max() - heights.min()) if len(heights) else 0.0


def _terms(object_points: np.ndarray, extent_mm: tuple[float, float]) -> np.ndarray:
    """(N, terms): x^i y^j, 2 <= i + j <= SURFACE_DEGREE, with x, y in [-1, 1] over the board."""
    x = object_points[:, 0] / (extent_mm[0] / 2) - 1
    y = object_points[:, 1] / (extent_mm[1] / 2) - 1
    return np.column_stack([x ** i * y ** (total - i) for total in range(2, SURFACE_DEGREE + 1)
                            for i in range(total + 1)])


def fit_board_surface(views, camera_matrix: np.ndarray, distortion: np.ndarray, size: tuple[int, int],
                      extent_mm: tuple[float, float]):
    """Refine the flat fit with a bent board: (surface, camera matrix, distortion, per-view RMS)."""
    objects = [np.asarray(v.object_points, np.float64) for v in views]
    images = [np.asarray(v.image_points, np.float64).reshape(-1, 2) for v in views]
    terms = [_terms(o, extent_mm) for o in objects]
    poses = []
    for obj, img in zip(objects, images):
        _, rvec, tvec = cv2.solvePnP(obj, img, camera_matrix, distortion, flags=cv2.SOLVEPNP_ITERATIVE)
        poses.append(np.r_[rvec.ravel(), tvec.ravel()])
    n_dist, n_surface = len(distortion), terms[0].shape[1]
    head = 4 + n_dist  # fx, fy, cx, cy, distortion
    start = np.r_[camera_matrix[0, 0], camera_matrix[1, 1], camera_matrix[0, 2], camera_matrix[1, 2],
                  np.ravel(distortion), np.concatenate(poses), np.zeros(n_surface)]

    def unpack(x):
        k = np.array([[x[0], 0, x[2]], [0, x[1], x[3]], [0, 0, 1]])
        return k, x[4:head], x[head + POSE * len(views):]

    def residuals(x):
        k, d, surface = unpack(x)
        out = []
        for index, (obj, img, term) in enumerate(zip(objects, images, terms)):
            lifted = obj.copy()
            lifted[:, 2] = term @ surface
            pose = x[head + POSE * index: head + POSE * (index + 1)]
            projected, _ = cv2.projectPoints(lifted, pose[:3], pose[3:], k, d)
            out.append((projected.reshape(-1, 2) - img).ravel())
        return np.concatenate(out)

    solution = least_squares(residuals, start, jac_sparsity=_sparsity(images, head, n_surface), x_scale="jac",
                             method="trf")
    k, d, surface = unpack(solution.x)
    errors, offset = [], 0
    for img in images:
        block = solution.fun[offset: offset + 2 * len(img)].reshape(-1, 2)
        errors.append(float(np.sqrt(np.mean(np.sum(block ** 2, axis=1)))))
        offset += 2 * len(img)
    return BoardSurface(surface, extent_mm), k, d, errors


def _sparsity(images: list[np.ndarray], head: int, n_surface: int):
    """Which parameters move which residuals: the camera and surface all, a pose only its view's."""
    rows = 2 * sum(len(img) for img in images)
    columns = head + POSE * len(images) + n_surface
    pattern = lil_matrix((rows, columns), dtype=int)
    pattern[:, :head] = 1
    pattern[:, columns - n_surface:] = 1
    offset = 0
    for index, img in enumerate(images):
        pattern[offset: offset + 2 * len(img), head + POSE * index: head + POSE * (index + 1)] = 1
        offset += 2 * len(img)
    return pattern
