"""Analysis stage: closest instrument-vessel point pair, on the masks already computed.

    proximity = closest_pair(instrument_mask, vessel_mask)   # distance in source pixels
    proximity = closest_roles(segmentation)                   # the same from a class map, faster
    packet = MeasureProximity()(packet)                       # fills packet.proximity
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Proximity, Segmentation, timed

COARSE = 4  # pixels per cell of the coarse pass
ROLES = ("instrument", "vessel")


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
    to_vessel = _distance_to(coarse[1])
    reach = COARSE * (float(to_vessel[coarse[0]].min()) + 2)  # cell centres -> any pixels of the two cells
    return _meeting_window(instrument, vessel, reach)


def _meeting_window(instrument: np.ndarray, vessel: np.ndarray, reach: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the intersection of both masks' boxes grown by ``reach``, where every pair
    of their pixels at most ``reach`` apart lies."""
    height, width = instrument.shape
    boxes = [cv2.boundingRect(m.view(np.uint8)) for m in (instrument, vessel)]
    x0 = max(max(x - reach for x, _, _, _ in boxes), 0)
    y0 = max(max(y - reach for _, y, _, _ in boxes), 0)
    x1 = min(min(x + w + reach for x, _, w, _ in boxes), width)
    y1 = min(min(y + h + reach for _, y, _, h in boxes), height)
    return int(y0), math.ceil(y1), int(x0), math.ceil(x1)


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the nearest pixel of the boolean ``mask`` (float32)."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


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
    to_vessel = _distance_to(vessel)
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

    The class map is the model's grid scaled up, so a pass over every ``grid_step``-th pixel (a
    9th to a 25th of the map) sees every cell. The closest sampled pair is ``gap + 1`` cells
    apart; a pixel of the true pair lies within a step of a sampled pixel in each direction, so
    that cell is within ``gap + 1 + 2 * sqrt(2)`` cells of the other role: only such cells (the
    facing bands), grown by one, go to the full-resolution search. (A region narrower than a
    step in both directions, which a scaled-up grid does not hold, can be missed.)
    """
    step, tables = segmentation.grid_step, [segmentation.role_table(role) for role in ROLES]
    sampled = np.ascontiguousarray(segmentation.class_map[::step, ::step])
    grid = [cv2.LUT(sampled, table).view(bool) for table in tables]
    grid_pair = closest_pair(*grid)
    if step == 1 or math.isinf(grid_pair.distance_px):  # the full map itself, or a role absent
        return grid_pair
    limit = grid_pair.distance_px + 4  # cells
    gy0, gy1, gx0, gx1 = _meeting_window(*grid, limit + 1)  # every cell within the limit, and the growth
    grid = [mask[gy0:gy1, gx0:gx1] for mask in grid]
    bands = [cv2.dilate((mask & (_distance_to(other) <= limit)).view(np.uint8), np.ones((3, 3), np.uint8))
             for mask, other in zip(grid, grid[::-1])]
    x, y, w, h = cv2.boundingRect(bands[0] | bands[1])  # in cells of the window
    height, width = segmentation.class_map.shape
    x0, y0 = (gx0 + x) * step, (gy0 + y) * step
    x1, y1 = min((gx0 + x + w) * step, width), min((gy0 + y + h) * step, height)
    window = segmentation.class_map[y0:y1, x0:x1]
    masks = []
    for table, band in zip(tables, bands):
        cells = cv2.resize(band[y:y + h, x:x + w], (w * step, h * step), interpolation=cv2.INTER_NEAREST)
        masks.append((cv2.LUT(window, table) & cells[:y1 - y0, :x1 - x0]).view(bool))
    return _pair_within(*masks, x0, y0)


def closest_advisory(segmentation: Segmentation) -> Proximity:
    """:func:`closest_pair` of the instrument pixels and the advisory vessel outlines (``tier`` advisory)."""
    vessel = np.zeros(segmentation.class_map.shape, np.uint8)
    for region in segmentation.advisory:
        cv2.fillPoly(vessel, [np.array(p, np.int32).reshape(-1, 2) for p in region.polygons], 1)
    proximity = closest_pair(segmentation.role_mask("instrument"), vessel.view(bool))
    proximity.tier = "advisory" if math.isfinite(proximity.distance_px) else None
    return proximity


def set_scale(proximity: Proximity, mm_per_px: float | None) -> None:
    """The pixel scale on a proximity and on the advisory one beside it."""
    for pair in (proximity, proximity.advisory):
        if pair is not None:
            pair.mm_per_px = mm_per_px


def tiered_proximity(segmentation: Segmentation, high: Proximity) -> Proximity:
    """The proximity to a HIGH-tier vessel (the class map's) when there is one, with the advisory-tier vessels'
    beside it when one of them is nearer; else the proximity to an advisory one."""
    if not math.isfinite(high.distance_px):
        return closest_advisory(segmentation) if segmentation.advisory else high
    high.tier = "high"
    if segmentation.advisory and high.distance_px > 0:  # touching a HIGH vessel: nothing can be nearer
        advisory = closest_advisory(segmentation)
        if advisory.distance_px < high.distance_px:
            high.advisory = advisory
    return high


class MeasureProximity:
    """Stage: instrument-vessel proximity from ``packet.segmentation``'s class map (HIGH-tier vessels), else
    from its advisory vessel outlines."""

    reads = ("segmentation",)
    writes = ("proximity",)

    def __init__(self, mm_per_px: float | None = None):
        self.mm_per_px = mm_per_px

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "proximity"):
            packet.proximity = tiered_proximity(packet.segmentation, closest_roles(packet.segmentation))
            set_scale(packet.proximity, self.mm_per_px)
        return packet
