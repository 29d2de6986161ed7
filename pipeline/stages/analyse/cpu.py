"""Analysis stage: closest instrument-vessel point pair, on the masks already computed.

    proximity = closest_pair(instrument_mask, vessel_mask)   # distance in source pixels
    proximity = closest_roles(segmentation)                   # the same from a class map, faster
    packet = Analyse()(packet)                                # fills packet.proximity
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Proximity, Segmentation, timed

COARSE = 4  # pixels per cell of the coarse pass


def _window(instrument: np.ndarray, vessel: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) holding every instrument and vessel pixel that can be part of the closest pair.

    A coarse pass (COARSE x COARSE cells, exact distance transform) bounds the gap from above
    by ``reach``; such pixels lie within ``reach`` of the other mask's box, so the window is the
    intersection of both boxes grown by ``reach``: small when the two are close, which is when
    it matters.
    """
    height, width = instrument.shape
    cells = ((width + COARSE - 1) // COARSE, (height + COARSE - 1) // COARSE)
    # Area averaging of 0/255: a cell holding any pixel of the mask stays non-zero (one pixel gives 255/16).
    coarse = [cv2.resize(m.view(np.uint8) * np.uint8(255), cells, interpolation=cv2.INTER_AREA) > 0
              for m in (instrument, vessel)]
    to_vessel = cv2.distanceTransform((~coarse[1]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    reach = COARSE * (float(to_vessel[coarse[0]].min()) + 2)  # cell centres -> any pixels of the two cells
    boxes = [cv2.boundingRect(m.view(np.uint8)) for m in (instrument, vessel)]
    x0 = max(max(x - reach for x, _, _, _ in boxes), 0)
    y0 = max(max(y - reach for _, y, _, _ in boxes), 0)
    x1 = min(min(x + w + reach for x, _, w, _ in boxes), width)
    y1 = min(min(y + h + reach for _, y, _, h in boxes), height)
    return int(y0), math.ceil(y1), int(x0), math.ceil(x1)


def closest_pair(instrument: np.ndarray, vessel: np.ndarray) -> Proximity:
    """Gap in pixels between two boolean masks (0 when they touch or overlap) and its end points.

    Exact Euclidean distance transform, over the window where the pair can lie (:func:`_window`).
    """
    if not instrument.any() or not vessel.any():
        return Proximity(math.inf)
    y0, y1, x0, x1 = _window(instrument, vessel)
    return _pair_within(instrument[y0:y1, x0:x1], vessel[y0:y1, x0:x1], x0, y0)


def _pair_within(instrument: np.ndarray, vessel: np.ndarray, x0: int = 0, y0: int = 0) -> Proximity:
    """:func:`closest_pair` over the whole of two masks cut at ``(x0, y0)`` of the picture (its points)."""
    if not instrument.any() or not vessel.any():
        return Proximity(math.inf)
    to_vessel = cv2.distanceTransform((~vessel).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    np.copyto(to_vessel, np.float32(np.inf), where=~instrument)
    # The transform is float32 and its last bit may depend on memory alignment, so near-ties
    # are settled in exact integers: squared distances, then raster order. Same masks, same pair.
    candidates = np.flatnonzero(to_vessel <= to_vessel.min() + 0.5)
    squared = np.rint(np.square(to_vessel.flat[candidates].astype(np.float64))).astype(np.int64)
    iy, ix = np.unravel_index(candidates[np.argmin(squared)], to_vessel.shape)
    reach = math.isqrt(int(squared.min())) + 2  # the nearest vessel pixel lies within this window
    wy0, wx0 = max(iy - reach, 0), max(ix - reach, 0)
    vy, vx = np.nonzero(vessel[wy0:iy + reach + 1, wx0:ix + reach + 1])
    exact = (vy + wy0 - iy) ** 2 + (vx + wx0 - ix) ** 2
    nearest = np.argmin(exact)
    # Adjacent pixels (centres 1 apart) touch: report the gap between pixels, not between centres.
    return Proximity(max(math.sqrt(int(exact[nearest])) - 1.0, 0.0), (int(ix + x0), int(iy + y0)),
                     (int(vx[nearest] + wx0 + x0), int(vy[nearest] + wy0 + y0)))


def closest_roles(segmentation: Segmentation) -> Proximity:
    """:func:`closest_pair` of the instrument and vessel pixels of ``segmentation.class_map``, exactly.

    The class map is the model's grid scaled up, so a pass over every ``grid_step``-th pixel
    (a 25th of a 1080p map for a 384-wide input) finds both roles and a pair of their pixels
    (``reach`` apart at most); the full-resolution work is then confined to the window where a
    pair that close can lie (what :func:`_window` finds for :func:`closest_pair`). (A region
    narrower than a step in both directions, which a scaled-up grid does not hold, can be missed.)
    """
    step = segmentation.grid_step
    grid = [segmentation.role_mask(role, step) for role in ("instrument", "vessel")]
    if step == 1 or not grid[0].any() or not grid[1].any():
        return closest_pair(*grid)
    # The sampled pair is (gap + 1) steps apart; a region's pixels reach up to a step beyond its sampled ones.
    reach = math.ceil((closest_pair(*grid).distance_px + 2) * step)
    boxes = [cv2.boundingRect(mask.view(np.uint8)) for mask in grid]  # in grid cells
    height, width = segmentation.class_map.shape
    x0 = max(max(x * step for x, _, _, _ in boxes) - reach, 0)
    y0 = max(max(y * step for _, y, _, _ in boxes) - reach, 0)
    x1 = min(min((x + w) * step for x, _, w, _ in boxes) + reach, width)
    y1 = min(min((y + h) * step for _, y, _, h in boxes) + reach, height)
    window = segmentation.class_map[y0:y1, x0:x1]
    return _pair_within(*(cv2.LUT(window, segmentation.role_table(role)).view(bool) for role in ("instrument", "vessel")),
                        x0, y0)


class Analyse:
    """Stage: instrument-vessel proximity from ``packet.segmentation``'s class map."""

    reads = ("segmentation",)
    writes = ("proximity",)

    def __init__(self, mm_per_px: float | None = None):
        self.mm_per_px = mm_per_px

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "analysis"):
            packet.proximity = closest_roles(packet.segmentation)
            packet.proximity.mm_per_px = self.mm_per_px
        return packet
