"""Dot grids seen in part: find the dots, index them on the grid, fix the origin by fiducials.

A laparoscope at working distance sees a patch of the board, bent by strong barrel
distortion. The dots are found as blobs in the picture divided by its own background (so
uneven light and vignetting do not matter; dark dots on a light board or the reverse), then
indexed by growing the grid from a dot near
the middle, one neighbour at a time, each step predicted from the last measured spacing (so
the distortion bends the prediction with the grid). Dots whose index disagrees with their
neighbours are dropped. Fiducials, the larger dots at known grid positions, turn the view's
own indices into the board's: the one lattice symmetry and shift that put every seen fiducial
on a known one (and no dot off the board).

    dots = find_dots(gray, colour=0)                       # dark dots (255: light dots on a dark board)
    indexed = index_grid(dots.centres)                     # {dot: (i, j)} in the view's own frame
    board_ij = align_to_fiducials(indexed, dots, ...)      # {dot: (col, row)} on the printed board
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NEIGHBOUR_TOLERANCE = 0.3  # a predicted neighbour must lie this fraction of the spacing from a dot
MIDPOINT_TOLERANCE = 0.2  # a dot may sit this fraction of the spacing off the midpoint of its two neighbours
MAX_FILL = 0.75  # dots narrower than this fraction of their spacing (a chessboard's squares are wider)
FIDUCIAL_SIZE_RATIO = 1.3  # a fiducial's diameter over the median of the dots around it
MIN_DOTS = 12
BACKGROUND_FRACTION = 12  # the background closing spans this fraction of the picture's longer side
FIDUCIAL_SPAN = 5  # ... and at least this many median dot diameters (a fiducial is ~3 wide)
MIN_FIDUCIALS = 2
STRAY_LARGE_DOTS = 1  # a larger blob off the fiducials' places (a smear, a merged pair) is let pass
STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))
# the 8 symmetries of a square grid (rotations, and rotations of the mirror image)
SYMMETRIES = [np.array(m) for m in ([[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]], [[0, 1], [-1, 0]],
                                    [[1, 0], [0, -1]], [[0, 1], [1, 0]], [[-1, 0], [0, 1]], [[0, -1], [-1, 0]])]


class GridNotFound(Exception):
    """The grid could not be indexed in this view; the message says why (shown per view)."""


@dataclass
class Dots:
    centres: np.ndarray  # (N, 2) pixels
    diameters: np.ndarray  # (N,) pixels


def find_dots(gray: np.ndarray, colour: int) -> Dots:
    """Round blobs darker (``colour`` 0) or lighter (255) than the board around them.

    The picture is first divided by its own background (the board without dots: a morphological
    closing larger than any dot, on a quarter-size copy), which flattens a scope's uneven light and
    vignetting; blobs are then taken by shape at several thresholds. The closing must span the
    fiducials too: when the dots turn out large, the search runs again with a wider one.
    """
    dark = gray if colour == 0 else 255 - gray
    width = max(gray.shape) // BACKGROUND_FRACTION
    dots = _blobs(_flattened(dark, width))
    if len(dots.diameters) and FIDUCIAL_SPAN * np.median(dots.diameters) > width:
        dots = _blobs(_flattened(dark, int(FIDUCIAL_SPAN * np.median(dots.diameters))))
    return dots


def _flattened(dark: np.ndarray, width: int) -> np.ndarray:
    """``dark`` divided by its background (dark dots removed by a closing ``width`` pixels wide)."""
    small = cv2.resize(dark, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    side = max(3, width // 4) | 1
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    background = cv2.resize(background, (dark.shape[1], dark.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(dark.astype(np.float32) * 255 / np.maximum(background, 1), 0, 255).astype(np.uint8)


def _blobs(flat: np.ndarray) -> Dots:
    """Dark round blobs of a flattened picture, accepted by area, circularity, convexity and inertia."""
    params = cv2.SimpleBlobDetector_Params()
    params.blobColor, params.filterByColor = 0, True
    params.minThreshold, params.maxThreshold, params.thresholdStep, params.minRepeatability = 40, 220, 20, 2
    params.filterByArea, params.minArea, params.maxArea = True, 6.0, flat.size / 100
    params.filterByCircularity, params.minCircularity = True, 0.6  # blur and slant round the edges off
    params.filterByInertia, params.minInertiaRatio = True, 0.1  # dots seen at a slant are ellipses
    params.filterByConvexity, params.minConvexity = True, 0.85
    params.minDistBetweenBlobs = 2.0
    keypoints = cv2.SimpleBlobDetector_create(params).detect(flat)
    return Dots(np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2),
                np.array([k.size for k in keypoints], np.float64))


def index_grid(centres: np.ndarray) -> dict[int, tuple[int, int]]:
    """Grid indices (the view's own frame) of the dots that form one consistent grid."""
    if len(centres) < MIN_DOTS:
        raise GridNotFound(f"{len(centres)} dots found (need {MIN_DOTS})")
    seed = int(np.argmin(np.linalg.norm(centres - np.median(centres, axis=0), axis=1)))
    from_seed = np.linalg.norm(centres - centres[seed], axis=1)  # only the seed's neighbours are needed
    from_seed[seed] = np.inf
    first, second = _basis(centres, from_seed, seed)
    index_of = {seed: (0, 0)}
    taken = {(0, 0): seed}
    queue = [(seed, first, second)]
    while queue:
        dot, step_i, step_j = queue.pop(0)
        i, j = index_of[dot]
        for di, dj in STEPS:
            step = step_i if di else step_j
            sign = di or dj
            predicted = centres[dot] + sign * step
            candidate = int(np.argmin(np.linalg.norm(centres - predicted, axis=1)))
            if np.linalg.norm(centres[candidate] - predicted) > NEIGHBOUR_TOLERANCE * np.linalg.norm(step):
                continue
            target = (i + di, j + dj)
            if candidate in index_of or target in taken:
                continue  # reached again: the consistency check below settles disagreements
            index_of[candidate], taken[target] = target, candidate
            measured = sign * (centres[candidate] - centres[dot])
            queue.append((candidate, measured, step_j) if di else (candidate, step_i, measured))
    return _consistent(centres, index_of)


def _basis(centres: np.ndarray, from_seed: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid's two steps at the seed: its nearest neighbour, then the nearest one across it."""
    order = np.argsort(from_seed)
    first = centres[order[0]] - centres[seed]
    for other in order[1:8]:
        second = centres[other] - centres[seed]
        cosine = abs(first @ second) / (np.linalg.norm(first) * np.linalg.norm(second))
        if cosine < 0.5 and np.linalg.norm(second) < 2 * np.linalg.norm(first):
            return first, second
    raise GridNotFound("the dots do not form a grid")


def _consistent(centres: np.ndarray, index_of: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """Drop dots that sit off the midpoint of their two neighbours along a row or a column."""
    at = {ij: dot for dot, ij in index_of.items()}
    kept = {}
    for dot, (i, j) in index_of.items():
        good = True
        for di, dj in ((1, 0), (0, 1)):
            before, after = at.get((i - di, j - dj)), at.get((i + di, j + dj))
            if before is None or after is None:
                continue
            midpoint = (centres[before] + centres[after]) / 2
            spacing = np.linalg.norm(centres[after] - centres[before]) / 2
            good &= bool(np.linalg.norm(centres[dot] - midpoint) <= MIDPOINT_TOLERANCE * spacing)
        if good:
            kept[dot] = (i, j)
    if len(kept) < MIN_DOTS:
        raise GridNotFound(f"only {len(kept)} dots form a consistent grid (need {MIN_DOTS})")
    return kept


def check_dot_size(indexed: dict[int, tuple[int, int]], dots: Dots) -> None:
    """Blobs about as wide as their spacing are not dots (a chessboard's squares, say): raise."""
    at = {ij: dot for dot, ij in indexed.items()}
    spacings = [np.linalg.norm(dots.centres[at[(i + 1, j)]] - dots.centres[dot])
                for dot, (i, j) in indexed.items() if (i + 1, j) in at]
    fill = float(np.median(dots.diameters[list(indexed)]) / np.median(spacings))
    if fill > MAX_FILL:
        raise GridNotFound(f"blobs {fill:.0%} of their spacing wide: not a dot grid (the right --pattern?)")


def fiducials_among(indexed: dict[int, tuple[int, int]], dots: Dots) -> list[int]:
    """Indexed dots clearly larger than the dots around them (within two grid steps)."""
    at = {ij: dot for dot, ij in indexed.items()}
    larger = []
    for dot, (i, j) in indexed.items():
        around = [dots.diameters[at[(i + a, j + b)]] for a in range(-2, 3) for b in range(-2, 3)
                  if (a or b) and (i + a, j + b) in at]
        if len(around) >= 4 and dots.diameters[dot] > FIDUCIAL_SIZE_RATIO * np.median(around):
            larger.append(dot)
    return larger


def align_to_board(indexed: dict[int, tuple[int, int]], centres: np.ndarray, cols: int, rows: int,
                   fiducial_dots: list[int] | None = None,
                   fiducials: tuple[tuple[int, int], ...] = ()) -> dict[int, tuple[int, int]]:
    """The board's (col, row) of each indexed dot.

    Only symmetries that keep the printed side facing the camera are considered; with
    ``fiducials`` every seen fiducial but one stray must land on a known one (at least ``MIN_FIDUCIALS``);
    without, the view's own corner becomes (0, 0). Among equals, the board's columns run most
    nearly left to right in the image (a board symmetric under a half turn reads the same way
    in both cameras of a stereo pair).
    """
    if fiducials and len(fiducial_dots) < MIN_FIDUCIALS:
        raise GridNotFound(f"{len(fiducial_dots)} of {len(fiducials)} fiducials seen (need {MIN_FIDUCIALS})")
    dots = list(indexed)
    local = np.array([indexed[d] for d in dots])
    axes = _image_axes(indexed, centres)
    handedness = np.sign(np.linalg.det(axes))
    best, best_score = None, None
    for symmetry in SYMMETRIES:
        if np.sign(np.linalg.det(symmetry)) != handedness:
            continue
        turned = local @ symmetry.T
        if fiducials:
            seen = np.array([indexed[d] for d in fiducial_dots]) @ symmetry.T
            shifts = {tuple(np.array(known) - s) for s in seen for known in fiducials}
        else:
            shifts = {tuple(-turned.min(axis=0))}
        known = set(fiducials)
        for shift in shifts:
            placed = turned + np.array(shift)
            matched = sum(tuple(p) in known for p in (seen + np.array(shift))) if fiducials else 0
            on_board = int(np.sum((placed[:, 0] >= 0) & (placed[:, 0] < cols) & (placed[:, 1] >= 0)
                                  & (placed[:, 1] < rows)))
            columns_run_right = axes[0] @ (np.linalg.inv(symmetry) @ [1, 0])
            score = (matched, on_board, columns_run_right)
            if best_score is None or score > best_score:
                best, best_score = placed, score
    if fiducials and best_score[0] < max(MIN_FIDUCIALS, len(fiducial_dots) - STRAY_LARGE_DOTS):
        raise GridNotFound(f"the {len(fiducial_dots)} larger dots seen do not match the fiducials' positions")
    inside = (best[:, 0] >= 0) & (best[:, 0] < cols) & (best[:, 1] >= 0) & (best[:, 1] < rows)
    return {dot: (int(c), int(r)) for dot, (c, r), keep in zip(dots, best, inside) if keep}


def _image_axes(indexed: dict[int, tuple[int, int]], centres: np.ndarray) -> np.ndarray:
    """2x2: image displacement per +1 of the view's own i (first column) and j (second column)."""
    local = np.array([indexed[d] for d in indexed], np.float64)
    image = centres[list(indexed)]
    design = np.column_stack([local, np.ones(len(local))])
    solution, *_ = np.linalg.lstsq(design, image, rcond=None)
    return solution[:2].T
