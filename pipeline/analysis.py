"""Analysis stage: closest instrument-vessel point pair, on the masks already computed.

    proximity = closest_pair(instrument_mask, vessel_mask)   # distance in source pixels
    packet = Analyse()(packet)                                # fills packet.proximity
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.packet import FramePacket, Proximity, timed


def closest_pair(instrument: np.ndarray, vessel: np.ndarray) -> Proximity:
    """Gap in pixels between two boolean masks (0 when they touch or overlap) and its end points.

    Exact Euclidean distance transform over the two masks' joint bounding box only.
    """
    either = instrument | vessel
    rows, cols = np.flatnonzero(either.any(axis=1)), np.flatnonzero(either.any(axis=0))
    if not instrument.any() or not vessel.any():
        return Proximity(math.inf)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    instrument, vessel = instrument[y0:y1, x0:x1], vessel[y0:y1, x0:x1]
    to_vessel = cv2.distanceTransform((~vessel).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    masked = np.where(instrument, to_vessel, np.inf)
    iy, ix = np.unravel_index(np.argmin(masked), masked.shape)
    vy, vx = np.nonzero(vessel)
    nearest = np.argmin((vy - iy) ** 2 + (vx - ix) ** 2)
    centre_distance = float(masked[iy, ix])
    # Adjacent pixels (centres 1 apart) touch: report the gap between pixels, not between centres.
    return Proximity(max(centre_distance - 1.0, 0.0), (int(ix + x0), int(iy + y0)),
                     (int(vx[nearest] + x0), int(vy[nearest] + y0)))


class Analyse:
    """Stage: instrument-vessel proximity from ``packet.segmentation``'s class map."""

    def __init__(self, mm_per_px: float | None = None):
        self.mm_per_px = mm_per_px

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "analysis"):
            segmentation = packet.segmentation
            packet.proximity = closest_pair(segmentation.role_mask("instrument"), segmentation.role_mask("vessel"))
            packet.proximity.mm_per_px = self.mm_per_px
        return packet
