"""Calibration targets: chessboard, ChArUco and circle grids; detection and rendering.

``COLSxROWS`` means inner corners for a chessboard, squares for a ChArUco board and circles
for a (symmetric) circle grid; ``square_mm`` is the square side or circle spacing.

    board = Board("chessboard", 9, 6, square_mm=5.0)
    found = board.detect(gray)          # (image points (N, 2), object points (N, 3)) or None
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

PATTERNS = ("chessboard", "charuco", "circles")
SUBPIXEL_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 1e-3)
MIN_CHARUCO_CORNERS = 8


@dataclass(frozen=True)
class Board:
    pattern: str
    cols: int
    rows: int
    square_mm: float

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r} (choose from {', '.join(PATTERNS)})")
        if self.cols < 2 or self.rows < 2 or self.square_mm <= 0:
            raise ValueError(f"board {self.cols}x{self.rows} with square {self.square_mm} mm is not usable")

    @cached_property
    def charuco(self):
        dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_5X5_250)
        return cv2.aruco.CharucoBoard((self.cols, self.rows), self.square_mm, 0.7 * self.square_mm, dictionary)

    def object_points(self) -> np.ndarray:
        """(N, 3) board points in millimetres, z = 0, in detection order."""
        if self.pattern == "charuco":
            return np.asarray(self.charuco.getChessboardCorners(), np.float32).reshape(-1, 3)
        grid = np.mgrid[: self.cols, : self.rows].T.reshape(-1, 2).astype(np.float32) * self.square_mm
        return np.column_stack([grid, np.zeros(len(grid), np.float32)])

    def detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Sub-pixel image points and their board points, or ``None`` when the board is not seen."""
        if self.pattern == "chessboard":
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            found, corners = cv2.findChessboardCorners(gray, (self.cols, self.rows), flags=flags)
            if not found:
                return None
            corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), SUBPIXEL_CRITERIA)
            return corners.reshape(-1, 2), self.object_points()
        if self.pattern == "circles":
            found, centres = cv2.findCirclesGrid(gray, (self.cols, self.rows), flags=cv2.CALIB_CB_SYMMETRIC_GRID)
            return (centres.reshape(-1, 2), self.object_points()) if found else None
        corners, ids, _, _ = cv2.aruco.CharucoDetector(self.charuco).detectBoard(gray)
        if ids is None or len(ids) < MIN_CHARUCO_CORNERS:
            return None
        corners = cv2.cornerSubPix(gray, corners.astype(np.float32), (5, 5), (-1, -1), SUBPIXEL_CRITERIA)
        return corners.reshape(-1, 2), self.object_points()[ids.ravel()]

    def texture(self, px_per_mm: float) -> np.ndarray:
        """The printed board as a greyscale image, with a white margin of one square."""
        margin = self.square_mm
        if self.pattern == "charuco":
            size = (int((self.cols * self.square_mm + 2 * margin) * px_per_mm),
                    int((self.rows * self.square_mm + 2 * margin) * px_per_mm))
            return self.charuco.generateImage(size, marginSize=int(margin * px_per_mm))
        squares = (self.cols + 1, self.rows + 1) if self.pattern == "chessboard" else (self.cols, self.rows)
        width = int((squares[0] * self.square_mm + 2 * margin) * px_per_mm)
        height = int((squares[1] * self.square_mm + 2 * margin) * px_per_mm)
        image = np.full((height, width), 255, np.uint8)
        step, offset = self.square_mm * px_per_mm, margin * px_per_mm
        for i in range(squares[0]):
            for j in range(squares[1]):
                if self.pattern == "chessboard" and (i + j) % 2 == 0:
                    cv2.rectangle(image, (round(offset + i * step), round(offset + j * step)),
                                  (round(offset + (i + 1) * step) - 1, round(offset + (j + 1) * step) - 1), 0, -1)
                elif self.pattern == "circles":
                    centre = (round(offset + (i + 0.5) * step), round(offset + (j + 0.5) * step))
                    cv2.circle(image, centre, round(step * 0.3), 0, -1, cv2.LINE_AA)
        return image

    def texture_origin_mm(self) -> tuple[float, float]:
        """Where board point (0, 0) lies in :meth:`texture` coordinates, in millimetres."""
        if self.pattern == "chessboard":
            return 2 * self.square_mm, 2 * self.square_mm
        if self.pattern == "circles":
            return 1.5 * self.square_mm, 1.5 * self.square_mm
        return self.square_mm, self.square_mm
