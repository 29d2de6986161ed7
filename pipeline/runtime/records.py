"""Replay's per-frame record: the deterministic result of one frame (the results rebuilt from it by
``Segmentation.from_dict`` and ``Proximity.from_dict``), and the report's thumbnails.

Instances with polygons (traced at model-input resolution, mapped to source pixels), areas and
the closest instrument-vessel pair; chunks analysed anywhere give the same records, and the
finishing stages draw from them alone.

    record = frame_record(packet)                  # its time: packet.t_capture_ns (media time)
    packet.segmentation = Segmentation.from_dict(record, size, names, roles)
    jpeg = thumbnail(packet.overlay)               # for the report
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.packet import FramePacket


def frame_record(packet: FramePacket) -> dict:
    """The deterministic per-frame result: the frame, its media time, whether it is inside the body, its
    segmentation (``Segmentation.to_dict``: instances with their outlines, the advisory vessel regions, the
    vessel evidence) and the closest pair."""
    near = packet.proximity.to_dict()
    return {"frame": packet.frame_id, "t_s": round(packet.t_capture_ns / 1e9, 6), "privacy": packet.privacy,
            **packet.segmentation.to_dict(),
            **{key: near[key] for key in ("distance_px", "instrument_point", "vessel_point", "tier", "advisory_pair")}}


THUMBNAIL_WIDTH = 360


def thumbnail(image: np.ndarray) -> bytes:
    """A small JPEG of ``image`` for the report."""
    height, width = image.shape[:2]
    scale = THUMBNAIL_WIDTH / width
    small = cv2.resize(image, (THUMBNAIL_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
