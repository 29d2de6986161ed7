"""Replay's per-frame record: the deterministic result of one frame, and the results rebuilt from it.

Instances with polygons (traced at model-input resolution, mapped to source pixels), areas and
the closest instrument-vessel pair; chunks analysed anywhere give the same records, and the
finishing stages draw from them alone.

    record = frame_record(packet, fps)
    packet.segmentation = segmentation_from_record(record, size, names, roles)
    jpeg = thumbnail(packet.overlay)               # for the report
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.evidence import VesselRegion
from pipeline.core.packet import FramePacket, Segmentation, to_host


def frame_record(packet: FramePacket, fps: float) -> dict:
    """The deterministic per-frame result: instances (class, score, box, area, polygons), distance.

    Polygons are traced at model-input resolution (where the masks are made) and mapped to
    source pixels; the area is the instance's pixel count in source pixels.
    """
    segmentation, proximity = packet.segmentation, packet.proximity
    geometry = segmentation.geometry
    instances = []
    logits = to_host(segmentation.instance_logits) if len(segmentation.class_ids) else None  # one copy off the GPU
    for index, (cls, score, box) in enumerate(zip(segmentation.class_ids, segmentation.scores, segmentation.boxes)):
        inside = (logits[index] > 0).astype(np.uint8)
        contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [np.round(geometry.to_source(c.reshape(-1, 2) + 0.5) - 0.5).astype(int).reshape(-1).tolist()
                    for c in contours if len(c) >= 3]
        instances.append({"class": segmentation.names[cls], "class_id": int(cls), "score": round(float(score), 4),
                          "box": [round(float(v), 1) for v in box],
                          "area": int(round(inside.sum() / geometry.scale**2)), "polygons": polygons})
    near = proximity.to_dict()
    return {"frame": packet.frame_id, "t_s": round(packet.frame_id / fps, 6), "instances": instances,
            "advisory": [region.to_dict() for region in segmentation.advisory],
            "vessel_evidence": None if segmentation.vessel_evidence is None else round(segmentation.vessel_evidence, 6),
            **{key: near[key] for key in ("distance_px", "instrument_point", "vessel_point", "tier", "advisory_pair")}}


def segmentation_from_record(record: dict, size: tuple[int, int], names, roles) -> Segmentation:
    """Rasterise a record's polygons back into a class map (higher score drawn last, wins)."""
    width, height = size
    class_map = np.zeros((height, width), np.uint8)
    instances = sorted(record["instances"], key=lambda i: i["score"])
    for instance in instances:
        polygons = [np.array(p, np.int32).reshape(-1, 2) for p in instance["polygons"]]
        cv2.fillPoly(class_map, polygons, instance["class_id"] + 1)
    return Segmentation(class_map, names, roles, np.array([i["class_id"] for i in instances], int),
                        np.array([i["score"] for i in instances], np.float32),
                        np.array([i["box"] for i in instances], np.float32).reshape(-1, 4),
                        advisory=[VesselRegion.from_dict(region) for region in record.get("advisory", [])],
                        vessel_evidence=record.get("vessel_evidence"))


THUMBNAIL_WIDTH = 360


def thumbnail(image: np.ndarray) -> bytes:
    """A small JPEG of ``image`` for the report."""
    height, width = image.shape[:2]
    scale = THUMBNAIL_WIDTH / width
    small = cv2.resize(image, (THUMBNAIL_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
