"""Calibration targets: chessboard, ChArUco, circle grids and dot grids with fiducials.

``COLSxROWS`` means inner corners for a chessboard, squares for a ChArUco board and dots for
a (symmetric) circle grid or a dot grid; ``square_mm`` is the square side or dot spacing. Every
pattern is found when the board is only partly in view: ChArUco by its markers' ids, a dot
grid by its fiducials (larger dots at known grid positions, ``fiducials``), a chessboard and a
circle grid by the part seen (its own corner is the origin: enough for intrinsics, not stereo).

    board = Board("dotgrid", 25, 18, square_mm=5.0, fiducials=((8, 5), (16, 5), (8, 12), (16, 12)))
    image_points, object_points = board.detect(gray)     # raises BoardNotFound(reason)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from calibration.lattice import GridNotFound, align_to_board, check_dot_size, fiducials_among, find_dots, index_grid

PATTERNS = ("chessboard", "charuco", "circles", "dotgrid")
SUBPIXEL_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 1e-3)
MIN_POINTS = 8
DOT_RADIUS, FIDUCIAL_RADIUS = 0.2, 0.35  # printed dot radii, in spacings
MAX_BEND = 0.3  # a partial chessboard's corners may bend this fraction of a square from corner to corner


class BoardNotFound(Exception):
    """The board was not found in a view; the message says why."""


@dataclass(frozen=True)
class Board:
    pattern: str
    cols: int
    rows: int
    square_mm: float
    fiducials: tuple[tuple[int, int], ...] = ()  # dot grid: (col, row) of the larger dots, 0-based

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r} (choose from {', '.join(PATTERNS)})")
        if self.cols < 2 or self.rows < 2 or self.square_mm <= 0:
            raise ValueError(f"board {self.cols}x{self.rows} with square {self.square_mm} mm is not usable")
        if self.fiducials and self.pattern != "dotgrid":
            raise ValueError("fiducials belong to a dot grid (--pattern dotgrid)")
        if self.pattern == "dotgrid" and len(self.fiducials) < 2:
            raise ValueError("a dot grid needs the positions of its fiducials (at least two COL,ROW pairs)")
        for col, row in self.fiducials:
            if not (0 <= col < self.cols and 0 <= row < self.rows):
                raise ValueError(f"fiducial ({col}, {row}) lies outside the {self.cols}x{self.rows} grid")

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

    def point_ids(self, object_points: np.ndarray) -> list[int]:
        """Each board point's number, row by row (a ChArUco corner's or a dot's), from its position in mm."""
        per_row = self.cols - 1 if self.pattern == "charuco" else self.cols
        grid = np.rint(np.asarray(object_points)[:, :2] / self.square_mm).astype(int)
        if self.pattern == "charuco":
            grid -= 1  # the first inner corner lies one square in
        return [int(row * per_row + col) for col, row in grid]

    def detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sub-pixel image points (N, 2) and their board points (N, 3); raises :class:`BoardNotFound`."""
        if self.pattern == "charuco":
            return self._detect_charuco(gray)
        if self.pattern == "chessboard":
            return self._detect_chessboard(gray)
        if self.pattern == "circles":
            found, centres = cv2.findCirclesGrid(gray, (self.cols, self.rows), flags=cv2.CALIB_CB_SYMMETRIC_GRID)
            if found:
                return centres.reshape(-1, 2), self.object_points()
        return self._detect_dots(gray)

    def _detect_charuco(self, gray):
        corners, ids, _, _ = cv2.aruco.CharucoDetector(self.charuco).detectBoard(gray)
        if ids is None or len(ids) < MIN_POINTS:
            raise BoardNotFound(f"{0 if ids is None else len(ids)} ChArUco corners found (need {MIN_POINTS})")
        corners = cv2.cornerSubPix(gray, corners.astype(np.float32), (5, 5), (-1, -1), SUBPIXEL_CRITERIA)
        return corners.reshape(-1, 2), self.object_points()[ids.ravel()]

    def _detect_chessboard(self, gray):
        """The whole board, else the largest part of it seen (at least 6 x 4 inner corners, a smooth grid)."""
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(gray, (self.cols, self.rows), flags=flags)
        if found:
            corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), SUBPIXEL_CRITERIA)
            return corners.reshape(-1, 2), self.object_points()
        smallest = (min(self.cols, 6), min(self.rows, 4))
        found, corners, meta = cv2.findChessboardCornersSBWithMeta(
            gray, smallest, cv2.CALIB_CB_LARGER | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY)
        if not found:
            raise BoardNotFound("no chessboard corners found")
        rows, cols = meta.shape
        if _bend(corners.reshape(rows, cols, 2)) > MAX_BEND:
            raise BoardNotFound("the chessboard corners found do not form a smooth grid")
        grid = np.mgrid[:cols, :rows].T.reshape(-1, 2).astype(np.float32) * self.square_mm
        return corners.reshape(-1, 2), np.column_stack([grid, np.zeros(len(grid), np.float32)])

    def _detect_dots(self, gray):
        """Dark dots on a light board or the reverse: the polarity that forms the larger grid."""
        grids, reasons = [], []
        for colour in (0, 255):
            dots = find_dots(gray, colour)
            try:
                grids.append((index_grid(dots.centres), dots))
            except GridNotFound as error:
                reasons.append(str(error))
        if not grids:
            raise BoardNotFound(reasons[0])  # the dark dots' reason
        indexed, dots = max(grids, key=lambda grid: len(grid[0]))
        try:
            check_dot_size(indexed, dots)
            fiducial_dots = fiducials_among(indexed, dots) if self.fiducials else None
            placed = align_to_board(indexed, dots.centres, self.cols, self.rows, fiducial_dots, self.fiducials)
        except GridNotFound as error:
            raise BoardNotFound(str(error)) from None
        if len(placed) < MIN_POINTS:
            raise BoardNotFound(f"{len(placed)} dots on the board (need {MIN_POINTS})")
        image_points = dots.centres[list(placed)].astype(np.float32)
        grid = np.array(list(placed.values()), np.float32) * self.square_mm
        return image_points, np.column_stack([grid, np.zeros(len(grid), np.float32)])

    def texture(self, px_per_mm: float) -> np.ndarray:
        """The printed board as a greyscale image, with a white margin of one square."""
        margin = self.square_mm
        if self.pattern == "charuco":
            size = (int((self.cols * self.square_mm + 2 * margin) * px_per_mm),
                    int((self.rows * self.square_mm + 2 * margin) * px_per_mm))
            return self.charuco.generateImage(size, marginSize=int(margin * px_per_mm))
        squares = (self.cols + 1, self.rows + 1) if self.pattern == "chessboard" else (self.cols, self.rows)
        fiducials = set(self.fiducials)
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
                else:
                    centre = (offset + (i + 0.5) * step, offset + (j + 0.5) * step)
                    radius = (FIDUCIAL_RADIUS if (i, j) in fiducials else DOT_RADIUS) * step
                    _filled_circle(image, centre, radius)
        return image

    def texture_origin_mm(self) -> tuple[float, float]:
        """Where board point (0, 0) lies in :meth:`texture` coordinates, in millimetres."""
        if self.pattern == "chessboard":
            return 2 * self.square_mm, 2 * self.square_mm
        if self.pattern in ("circles", "dotgrid"):
            return 1.5 * self.square_mm, 1.5 * self.square_mm
        return self.square_mm, self.square_mm


def _filled_circle(image: np.ndarray, centre: tuple[float, float], radius: float) -> None:
    """A black disc at a sub-pixel centre (OpenCV's fixed-point shift), anti-aliased."""
    shift = 4
    scale = 1 << shift
    cv2.circle(image, (round(centre[0] * scale), round(centre[1] * scale)), round(radius * scale), 0, -1,
               cv2.LINE_AA, shift)


def _bend(grid: np.ndarray) -> float:
    """Largest second difference along rows and columns of a (rows, cols, 2) grid, in squares."""
    along_rows = np.linalg.norm(grid[:, 2:] - 2 * grid[:, 1:-1] + grid[:, :-2], axis=-1)
    along_cols = np.linalg.norm(grid[2:] - 2 * grid[1:-1] + grid[:-2], axis=-1)
    square = float(np.median(np.linalg.norm(grid[:, 1:] - grid[:, :-1], axis=-1)))
    return max(along_rows.max(initial=0), along_cols.max(initial=0)) / square
