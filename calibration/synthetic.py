"""Render a board as a known camera sees it: ground truth for testing calibration.

    image = render_view(board, camera, rvec, tvec, noise=2.0)
    rvec, tvec = pose_looking_at((60.0, 42.5), rvec=(0.2, -0.1, 1.5), depth=70.0)   # a close, partial view
"""
from __future__ import annotations

import cv2
import numpy as np

from calibration.boards import Board
from calibration.camera import CameraModel


def render_view(board: Board, camera: CameraModel, rvec, tvec, noise: float = 0.0, seed: int = 0,
                supersample: int = 2, scope_light: bool = False) -> np.ndarray:
    """BGR image of ``board`` posed at (``rvec``, ``tvec``, millimetres) through ``camera``'s lens.

    Each output pixel is traced back through the distortion to a ray, the ray meets the board
    plane, and the printed board is sampled there (supersampled, then averaged). ``scope_light``:
    as a laparoscope lights it, see :func:`scope_lighting`.
    """
    width, height = camera.image_size
    px_per_mm = 12.0
    texture = board.texture(px_per_mm)
    origin = np.array(board.texture_origin_mm())
    s = supersample
    grid = np.mgrid[:height * s, :width * s][::-1].reshape(2, -1).T.astype(np.float64)
    pixels = (grid + 0.5) / s - 0.5
    k = camera.camera_matrix
    if camera.model == "fisheye":
        rays = cv2.fisheye.undistortPoints(pixels.reshape(-1, 1, 2), k, camera.distortion).reshape(-1, 2)
    else:
        rays = cv2.undistortPoints(pixels.reshape(-1, 1, 2), k, camera.distortion).reshape(-1, 2)
    rotation, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    plane_to_ray = np.column_stack([rotation[:, 0], rotation[:, 1], np.asarray(tvec, np.float64).ravel()])
    board_xy = np.linalg.solve(plane_to_ray, np.column_stack([rays, np.ones(len(rays))]).T).T
    board_xy = board_xy[:, :2] / board_xy[:, 2:3]
    map_xy = ((board_xy + origin) * px_per_mm - 0.5).astype(np.float32).reshape(height * s, width * s, 2)
    big = cv2.remap(texture, map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=200)
    image = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    if scope_light:
        image = scope_lighting(image, seed)
    if noise:
        image += np.random.default_rng(seed).normal(0, noise, image.shape)
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def scope_lighting(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """A scope's own light: grey ink, bright off-centre, dark vignetted corners, a lopsided gradient,
    blur growing towards the edges, and lines doubled as a field-based camera gives them."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    y, x = np.mgrid[:height, :width].astype(np.float32)
    centre = np.array([width, height]) * (0.5 + rng.uniform(-0.12, 0.12, 2))
    radius = np.hypot((x - centre[0]) / width, (y - centre[1]) / height) / 0.6
    light = np.clip(1.0 - 0.8 * radius ** 2, 0.12, 1.0) * (0.75 + 0.25 * x / width)
    edge = np.clip(radius, 0, 1)[..., None] if image.ndim == 3 else np.clip(radius, 0, 1)
    image = 90 + image * (165 / 255)  # the printed dots reflect a third of the light
    blurred = cv2.GaussianBlur(image, (0, 0), 2.5)
    lit = (image * (1 - edge) + blurred * edge) * (light[..., None] if image.ndim == 3 else light)
    lit[1::2] = lit[0:height - height % 2:2]
    return lit


def pose_looking_at(board_point_mm, rvec, depth: float, offset_mm=(0.0, 0.0)):
    """(rvec, tvec) of the board rotated by ``rvec`` with ``board_point_mm`` on the optical axis
    ``depth`` mm away (shifted across it by ``offset_mm``): close poses give partial views."""
    rotation, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    point = np.array([*board_point_mm, 0.0])
    tvec = np.array([offset_mm[0], offset_mm[1], depth]) - rotation @ point
    return np.asarray(rvec, np.float64), tvec
