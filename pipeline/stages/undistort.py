"""Undistortion stages: straighten the frame for analysis, then map results back to the video.

With a calibration, the AI path works on the undistorted picture (distances are straight and,
with a scale, metric); :class:`Redistort` maps the class map, points and boxes back onto the
original picture so that masks line up with the raw ``video`` topic, and warps the overlay
back too unless the overlay is wanted on the undistorted picture.

    stages = [Undistort(camera), preprocess, model, analyse, alerts, overlay, Redistort(camera)]
"""
from __future__ import annotations

import cv2
import numpy as np

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket, timed

OVERLAY_VIEWS = ("original", "undistorted")  # which picture the overlay is drawn on, with a calibration


class Undistort:
    """Stage: ``packet.image`` becomes the undistorted frame; the original is kept in ``packet.original``."""

    reads = ("image",)
    writes = ("image", "original")

    def __init__(self, camera: CameraModel):
        self.camera = camera
        self.map_x, self.map_y = camera.undistort_maps()

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "undistort"):
            if packet.size != tuple(self.camera.image_size):
                raise ValueError(f"frame is {packet.size[0]}x{packet.size[1]} but the calibration is for "
                                 f"{self.camera.image_size[0]}x{self.camera.image_size[1]}")
            packet.original = packet.image
            packet.image = cv2.remap(packet.image, self.map_x, self.map_y, cv2.INTER_LINEAR)
        return packet


class Redistort:
    """Stage: results back to original-picture pixels; the overlay too when ``overlay_view='original'``."""

    reads = ("segmentation", "proximity", "overlay", "original")
    writes = ("segmentation", "proximity", "overlay", "image")

    def __init__(self, camera: CameraModel, overlay_view: str = "original"):
        if overlay_view not in OVERLAY_VIEWS:
            raise ValueError(f"overlay view must be one of {', '.join(OVERLAY_VIEWS)}, not {overlay_view!r}")
        self.camera, self.overlay_view = camera, overlay_view
        self.map_x, self.map_y = camera.distort_maps()

    def _nearest(self, image: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_NEAREST)

    def _points(self, point):
        return None if point is None else tuple(int(round(v)) for v in self.camera.distort_points([point])[0])

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "redistort"):
            segmentation = packet.segmentation
            segmentation.class_map = self._nearest(segmentation.class_map)
            segmentation.masks = np.array([self._nearest(m.view(np.uint8)) for m in segmentation.masks], bool).reshape(
                (-1, *segmentation.class_map.shape))
            if len(segmentation.boxes):
                corners = self.camera.distort_points(segmentation.boxes.reshape(-1, 2)).reshape(-1, 2, 2)
                segmentation.boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
            for region in segmentation.advisory:
                region.polygons = [np.round(self.camera.distort_points(np.reshape(p, (-1, 2)))).astype(int)
                                   .reshape(-1).tolist() for p in region.polygons]
            proximity = packet.proximity
            proximity.instrument_point = self._points(proximity.instrument_point)
            proximity.vessel_point = self._points(proximity.vessel_point)
            for alert in {id(a): a for a in packet.alerts + packet.active_alerts}.values():
                alert.location = self._points(alert.location)
            if self.overlay_view == "original" and packet.overlay is not None:
                packet.overlay = cv2.remap(packet.overlay, self.map_x, self.map_y, cv2.INTER_LINEAR)
            packet.image = packet.original
        return packet
