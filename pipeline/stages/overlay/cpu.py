"""Overlay stage: small annotators, each ``annotate(scene, packet) -> image``, composed in order.

    overlay = Overlay()                       # masks, contours, labels, proximity line, alerts
    packet = overlay(packet)                  # fills packet.overlay
    image = MaskAnnotator().annotate(frame.copy(), packet)
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from pipeline.core.classes import ADVISORY_COLOUR, PRIORITY_COLOURS, ROLE_COLOURS
from pipeline.core.packet import FramePacket, Segmentation, timed

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_scale(scene: np.ndarray) -> float:
    return max(0.45, scene.shape[0] / 1080)


def label_style(scene: np.ndarray) -> tuple[float, int]:
    """(font scale, line width) for labels about 3 % of the picture's height (never under 12 px)."""
    height_px = max(12.0, 0.03 * scene.shape[0])
    return height_px / 22.0, max(1, round(scene.shape[0] / 540))  # Hershey simplex: 22 px tall at scale 1


def place_label(size: tuple[int, int], anchor: tuple[int, int], scene_size: tuple[int, int],
                taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """A box ``(x0, y0, x1, y1)`` of ``size`` (w, h) near ``anchor`` (its top-left wish), inside the
    picture and clear of the boxes already ``taken`` (moved down, then up, until it is)."""
    width, height = scene_size
    w, h = size
    x0 = int(np.clip(anchor[0], 0, max(0, width - w)))
    y0 = int(np.clip(anchor[1] - h, 0, max(0, height - h)))
    for shift in (0, *[s * step for step in range(1, 12) for s in (1, -1)]):
        y = int(np.clip(y0 + shift * (h + 2), 0, max(0, height - h)))
        box = (x0, y, x0 + w, y + h)
        if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
            return box
    return x0, y0, x0 + w, y0 + h


@lru_cache(maxsize=8)
def colour_table(roles: tuple[str, ...]) -> np.ndarray:
    """(256, 3) uint8: class-map value -> BGR colour of its role (background black)."""
    table = np.zeros((256, 3), np.uint8)
    for index, role in enumerate(roles):
        table[index + 1] = ROLE_COLOURS[role]
    return table


class LastSegmentation:
    """What an annotator derives from a segmentation, derived again only when a different one comes:
    the display draws each mask over every video frame until the next mask (two to four frames at
    60 fps), so its colours and outlines are worked out once, not per frame."""

    def __init__(self, derive):
        self.derive, self.segmentation, self.derived = derive, None, None

    def __call__(self, segmentation: Segmentation):
        if segmentation is not self.segmentation:
            self.segmentation, self.derived = segmentation, self.derive(segmentation)
        return self.derived


def _colour_layer(segmentation: Segmentation) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """(x, y, class map, role colours) over the box the classes cover, or None when nothing is segmented."""
    x, y, w, h = cv2.boundingRect(segmentation.class_map)
    if not w:
        return None
    class_map = segmentation.class_map[y:y + h, x:x + w]
    colours = cv2.LUT(cv2.cvtColor(class_map, cv2.COLOR_GRAY2BGR), colour_table(segmentation.roles)[:, None])
    return x, y, class_map, colours


def _outlines(segmentation: Segmentation) -> list[tuple[tuple[int, int, int], list[np.ndarray]]]:
    """(role colour, outer contours in source pixels) of each class."""
    x, y, w, h = cv2.boundingRect(segmentation.class_map)  # search only the covered box
    class_map = segmentation.class_map[y:y + h, x:x + w]
    return [(ROLE_COLOURS[role], cv2.findContours((class_map == index + 1).astype(np.uint8), cv2.RETR_EXTERNAL,
                                                  cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))[0])
            for index, role in enumerate(segmentation.roles)]


def annotate_all(annotators: list, scene: np.ndarray, packet: FramePacket) -> np.ndarray:
    """Every annotator over ``scene`` in order, sharing the boxes already taken (alert banners, the distance,
    labels), so that no text is drawn over another."""
    taken: list[tuple[int, int, int, int]] = []
    for annotator in annotators:
        scene = annotator.annotate(scene, packet, taken)
    return scene


class MaskAnnotator:
    """Translucent colour over every segmented pixel, by role."""

    def __init__(self, opacity: float = 0.45):
        self.opacity = opacity
        self.layer = LastSegmentation(_colour_layer)

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        if packet.segmentation is None or (layer := self.layer(packet.segmentation)) is None:
            return scene
        x, y, class_map, colours = layer
        region = scene[y:y + class_map.shape[0], x:x + class_map.shape[1]]  # blend only the covered box
        blended = cv2.addWeighted(region, 1 - self.opacity, colours, self.opacity, 0)
        cv2.copyTo(blended, class_map, region)  # where the class map is non-zero; region is a view of scene
        return scene


class ContourAnnotator:
    """Solid outline of each class region, by role."""

    def __init__(self, thickness: int = 2):
        self.thickness = thickness
        self.outlines = LastSegmentation(_outlines)

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        if packet.segmentation is None:
            return scene
        for colour, contours in self.outlines(packet.segmentation):
            cv2.drawContours(scene, contours, -1, colour, self.thickness, cv2.LINE_AA)
        return scene


def dashed_polygon(scene: np.ndarray, polygon: np.ndarray, colour, thickness: int, dash: int) -> None:
    """A closed polygon drawn in dashes of about ``dash`` pixels."""
    points = np.vstack([polygon, polygon[:1]]).astype(np.float32)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if along[-1] < 1:
        return
    ticks = np.arange(0.0, along[-1], dash)
    xy = np.stack([np.interp(ticks, along, points[:, 0]), np.interp(ticks, along, points[:, 1])], axis=1)
    for start, end in zip(xy[0::2], xy[1::2]):
        cv2.line(scene, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), colour, thickness,
                 cv2.LINE_AA)


class AdvisoryAnnotator:
    """Advisory-tier vessels ("possible vessel"): a thin dashed amber outline and a label with the confidence."""

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        segmentation = packet.segmentation
        if segmentation is None or not segmentation.advisory:
            return scene
        font_scale, width = label_style(scene)
        taken = [] if taken is None else taken
        for region in segmentation.advisory:
            for polygon in region.polygons:
                dashed_polygon(scene, np.array(polygon).reshape(-1, 2), ADVISORY_COLOUR, width, 4 + 4 * width)
            text = f"possible vessel {region.confidence:.2f}"
            (w, h), baseline = cv2.getTextSize(text, FONT, font_scale, width)
            pad = max(2, h // 4)
            x0, y0, x1, y1 = place_label((w + 2 * pad, h + baseline + 2 * pad),
                                         (int(region.box[0]), int(region.box[3]) + h + 2 * pad),
                                         (scene.shape[1], scene.shape[0]), taken)
            taken.append((x0, y0, x1, y1))
            cv2.rectangle(scene, (x0, y0), (x1, y1), (20, 20, 20), -1)
            cv2.putText(scene, text, (x0 + pad, y1 - pad - baseline), FONT, font_scale, ADVISORY_COLOUR, width,
                        cv2.LINE_AA)
        return scene


class LabelAnnotator:
    """Class name and score by each instance's box: sized to the picture, inside it, never on each other."""

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        segmentation = packet.segmentation
        if segmentation is None:
            return scene
        font_scale, width = label_style(scene)
        taken = [] if taken is None else taken
        for box, cls, score in zip(segmentation.boxes, segmentation.class_ids, segmentation.scores):
            text = f"{segmentation.names[cls]} {score:.2f}"
            (w, h), baseline = cv2.getTextSize(text, FONT, font_scale, width)
            pad = max(2, h // 4)
            x0, y0, x1, y1 = place_label((w + 2 * pad, h + baseline + 2 * pad), (int(box[0]), int(box[1])),
                                         (scene.shape[1], scene.shape[0]), taken)
            taken.append((x0, y0, x1, y1))
            cv2.rectangle(scene, (x0, y0), (x1, y1), ROLE_COLOURS[segmentation.roles[cls]], -1)
            cv2.putText(scene, text, (x0 + pad, y1 - pad - baseline), FONT, font_scale, (0, 0, 0), width, cv2.LINE_AA)
        return scene


class ProximityAnnotator:
    """Line between the closest instrument and vessel points, with the distance on a dark plate."""

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        proximity = packet.proximity
        if proximity is None or proximity.instrument_point is None:
            return scene
        font_scale, width = label_style(scene)
        colour = PRIORITY_COLOURS["high"] if any(a.priority == "high" for a in packet.active_alerts) else \
            ADVISORY_COLOUR if proximity.tier == "advisory" else (255, 255, 255)
        cv2.line(scene, proximity.instrument_point, proximity.vessel_point, colour, 1 + width, cv2.LINE_AA)
        for point in (proximity.instrument_point, proximity.vessel_point):
            cv2.circle(scene, point, 2 + 2 * width, colour, -1, cv2.LINE_AA)
        mm = proximity.distance_mm
        text = f"{mm:.1f} mm" if mm is not None else f"{proximity.distance_px:.0f} px"
        (w, h), baseline = cv2.getTextSize(text, FONT, font_scale, width)
        pad = max(2, h // 4)
        middle = ((proximity.instrument_point[0] + proximity.vessel_point[0]) // 2 + 3 * pad,
                  (proximity.instrument_point[1] + proximity.vessel_point[1]) // 2)
        taken = [] if taken is None else taken
        x0, y0, x1, y1 = place_label((w + 2 * pad, h + baseline + 2 * pad), middle, (scene.shape[1], scene.shape[0]),
                                     taken)
        taken.append((x0, y0, x1, y1))
        cv2.rectangle(scene, (x0, y0), (x1, y1), (20, 20, 20), -1)  # readable on tissue whatever its colour
        cv2.putText(scene, text, (x0 + pad, y1 - pad - baseline), FONT, font_scale, colour, width, cv2.LINE_AA)
        return scene


class BannerAnnotator:
    """A banner row per active alert across the top, by priority (IEC 60601-1-8 style):
    high: red, fast flash; medium: yellow, slow flash; low: steady. The text stays on a dark band
    between flashes; labels drawn after keep off the banner."""

    FLASH_HZ = {"high": 2.0, "medium": 0.6, "low": 0.0}

    def annotate(self, scene: np.ndarray, packet: FramePacket, taken: list | None = None) -> np.ndarray:
        scale = _text_scale(scene)
        height = int(44 * scale)
        now = packet.t_capture_ns / 1e9  # flash phase follows the video's own clock (replays repeat exactly)
        for row, alert in enumerate(packet.active_alerts):
            colour, hz = PRIORITY_COLOURS[alert.priority], self.FLASH_HZ[alert.priority]
            lit = hz == 0 or (now * hz) % 1.0 < 0.6  # on 60 % of each flash period
            top = row * height
            # lit: the priority's colour; between flashes a dark band, so the text reads on any tissue
            cv2.rectangle(scene, (0, top), (scene.shape[1], top + height), colour if lit else (20, 20, 20), -1)
            if taken is not None:
                taken.append((0, top, scene.shape[1], top + height))
            text_colour = ((255, 255, 255) if alert.priority == "high" else (0, 0, 0)) if lit else colour
            cv2.putText(scene, f"{alert.priority.upper()}: {(alert.message or alert.rule).upper()}",
                        (int(12 * scale), top + int(31 * scale)), FONT, 0.9 * scale, text_colour, 2, cv2.LINE_AA)
        return scene


def mark_annotators() -> list:
    """The vector marks drawn over the mask layer, most important first (each later label keeps off the
    earlier ones): alert banners, the distance, instance labels, "possible vessel" labels."""
    return [BannerAnnotator(), ProximityAnnotator(), LabelAnnotator(), AdvisoryAnnotator()]


class Overlay:
    """Stage: composite the annotators onto a copy of the source frame into ``packet.overlay``."""

    reads = ("image", "segmentation", "proximity", "active_alerts")
    writes = ("overlay",)

    def __init__(self, annotators=None):
        self.annotators = annotators or [MaskAnnotator(), ContourAnnotator(), *mark_annotators()]

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "overlay"):
            packet.overlay = annotate_all(self.annotators, packet.image.copy(), packet)
        return packet
