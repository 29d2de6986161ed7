"""Field of view: the circle of the endoscope's image inside the black frame.

    cx, cy, r = detect_fov(image)        # or None when the frame has no black surround
"""
from __future__ import annotations

import cv2
import numpy as np

DARK_LEVEL = 12  # brightest channel below this counts as the black surround
MIN_BORDER_FRACTION = 0.05  # a frame with less black than this has no circular field of view
WORK_SIZE = 480  # detection runs on a copy this many pixels on its long side
GAP = 15  # dark notches narrower than this (work pixels) are closed before fitting
TRIM_PX = 1.5  # boundary points further inside the fitted circle than this are dropped and the circle refitted


def detect_fov(image: np.ndarray) -> tuple[float, float, float] | None:
    """Centre and radius (source pixels) of the lit circular area, or ``None`` without one.

    The largest lit region is closed (small dark notches at the rim do not bite into it), and a
    circle is fitted by least squares to its boundary, leaving out points on the frame edge (a
    circle cut by the frame still fits) and, in a few rounds, points well inside the circle
    (larger dark areas at the rim).
    """
    height, width = image.shape[:2]
    scale = min(1.0, WORK_SIZE / max(height, width))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    lit = (small.max(axis=2) > DARK_LEVEL).astype(np.uint8)
    if 1 - lit.mean() < MIN_BORDER_FRACTION:
        return None
    lit = cv2.copyMakeBorder(lit, GAP, GAP, GAP, GAP, cv2.BORDER_CONSTANT, value=0)
    lit = cv2.morphologyEx(lit, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (GAP, GAP)))
    contours, _ = cv2.findContours(lit, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    points = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64) - GAP
    h, w = small.shape[:2]
    inner = points[(points[:, 0] > 0) & (points[:, 1] > 0) & (points[:, 0] < w - 1) & (points[:, 1] < h - 1)]
    if len(inner) < 20:
        return None
    a, b, radius = _fit_circle(inner)
    for _ in range(3):  # dark tissue at the rim only pulls the boundary inwards: drop those points, refit
        outward = np.hypot(inner[:, 0] - a, inner[:, 1] - b) - radius > -TRIM_PX
        if outward.sum() < 20 or outward.all():
            break
        inner = inner[outward]
        a, b, radius = _fit_circle(inner)
    radius += 0.5  # the contour runs through the centres of the boundary pixels
    return float((a + 0.5) / scale), float((b + 0.5) / scale), float(radius / scale)


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (Kasa) circle: x^2 + y^2 = 2 a x + 2 b y + c, with r^2 = c + a^2 + b^2."""
    design = np.column_stack([2 * points[:, 0], 2 * points[:, 1], np.ones(len(points))])
    (a, b, c), *_ = np.linalg.lstsq(design, (points**2).sum(axis=1), rcond=None)
    return a, b, float(np.sqrt(c + a * a + b * b))
