"""Analysis stage: closest instrument-vessel point pair, on the masks already computed.

    proximity = closest_pair(instrument_mask, vessel_mask)   # distance in source pixels
    packet = Analyse()(packet)                                # fills packet.proximity
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Proximity, timed

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
    instrument, vessel = instrument[y0:y1, x0:x1], vessel[y0:y1, x0:x1]
    to_vessel = cv2.distanceTransform((~vessel).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    masked = np.where(instrument, to_vessel, np.inf)
    # The transform is float32 and its last bit may depend on memory alignment, so near-ties
    # are settled in exact integers: squared distances, then raster order. Same masks, same pair.
    candidates = np.flatnonzero(masked <= masked.min() + 0.5)
    squared = np.rint(np.square(masked.flat[candidates].astype(np.float64))).astype(np.int64)
    iy, ix = np.unravel_index(candidates[np.argmin(squared)], masked.shape)
    reach = math.isqrt(int(squared.min())) + 2  # the nearest vessel pixel lies within this window
    wy0, wx0 = max(iy - reach, 0), max(ix - reach, 0)
    vy, vx = np.nonzero(vessel[wy0:iy + reach + 1, wx0:ix + reach + 1])
    exact = (vy + wy0 - iy) ** 2 + (vx + wx0 - ix) ** 2
    nearest = np.argmin(exact)
    # Adjacent pixels (centres 1 apart) touch: report the gap between pixels, not between centres.
    return Proximity(max(math.sqrt(int(exact[nearest])) - 1.0, 0.0), (int(ix + x0), int(iy + y0)),
                     (int(vx[nearest] + wx0 + x0), int(vy[nearest] + wy0 + y0)))


class Analyse:
    """Stage: instrument-vessel proximity from ``packet.segmentation``'s class map."""

    reads = ("segmentation",)
    writes = ("proximity",)

    def __init__(self, mm_per_px: float | None = None):
        self.mm_per_px = mm_per_px

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "analysis"):
            segmentation = packet.segmentation
            packet.proximity = closest_pair(segmentation.role_mask("instrument"), segmentation.role_mask("vessel"))
            packet.proximity.mm_per_px = self.mm_per_px
        return packet
