"""Vessel evidence stage: a calibrated vessel probability, accumulated over frames, and each vessel region's tier.

The rule (docs/alerts.md, "Vessel evidence"):

1. ``p``: each model-input pixel's vessel probability, ``softmax(logits / T)`` with the temperature ``T``
   validated with the model (1 without one); a model that gives no logits: 1 on its vessel pixels.
2. Over time, in log-odds: the previous filtered map is moved onto this frame along the dense optical
   flow of the model-input picture (DIS), then ``L = a * L_previous + (1 - a) * clip(logit p, -4, 4)``
   with ``a = memory`` (0.6); the first frame of a scene starts it (``L = clip(logit p)``).
3. A region (connected pixels the model paints vessel) has evidence ``sum(min(p, sigmoid(L))) / input
   pixels``: never more than this frame alone shows (the quantity the operating points were validated
   on), less for a region that was not there before, so a flickering false region fades while a real
   artery keeps its evidence. The frame's evidence is its strongest region's.
4. Tiers by the model's operating points (:class:`~pipeline.core.evidence.OperatingPoints`): ``high``
   regions stay in the class map (drawn red, may raise HIGH alerts); ``advisory`` ones leave it and
   become outlines (``Segmentation.advisory``: amber, "possible vessel 0.42"); weaker ones are dropped.
   Without operating points every vessel region is advisory.

    evidence = VesselEvidence(model.operating_points)
    packet = evidence(decode(model(preprocess(packet))))    # packet.segmentation.advisory, .vessel_evidence
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.evidence import OperatingPoints, VesselRegion
from pipeline.core.packet import FramePacket, Segmentation, timed, to_host

LOGIT_LIMIT = 4.0  # |log-odds| a pixel's single-frame vote is clipped to: the memory of certainty is bounded
MEMORY = 0.6  # weight of the moved previous map against this frame's


def vessel_probability(logits: np.ndarray, vessel_values: list[int], temperature: float) -> np.ndarray:
    """(h, w) float32: the summed softmax probability of the vessel classes, at the logits' own resolution."""
    scaled = logits.astype(np.float32) / np.float32(temperature)
    scaled -= scaled.max(axis=0, keepdims=True)
    exp = np.exp(scaled)
    return exp[vessel_values].sum(axis=0) / exp.sum(axis=0)


def log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.clip(np.log(clipped / (1 - clipped)), -LOGIT_LIMIT, LOGIT_LIMIT).astype(np.float32)


class TemporalFilter:
    """Step 2 of the rule: the log-odds map carried along the optical flow and blended with each new frame."""

    def __init__(self, memory: float = MEMORY):
        self.memory = memory
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.pixels: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the past (a new scene: another recording, a new chunk)."""
        self.previous_grey: np.ndarray | None = None
        self.previous_log_odds: np.ndarray | None = None

    def grid(self, shape: tuple[int, int]) -> np.ndarray:
        """(h, w, 2) float32: every pixel's own coordinates (made once per size)."""
        if self.pixels is None or self.pixels.shape[:2] != shape:
            height, width = shape
            self.pixels = np.dstack(np.meshgrid(np.arange(width, dtype=np.float32),
                                                np.arange(height, dtype=np.float32)))
        return self.pixels

    def update(self, probability: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """The filtered probability for this frame (same shape as ``probability``)."""
        current = log_odds(probability)
        if self.previous_log_odds is not None and self.previous_log_odds.shape == current.shape:
            flow = self.flow.calc(grey, self.previous_grey, None)  # where each pixel of this frame was before
            flow += self.grid(current.shape)
            moved = cv2.remap(self.previous_log_odds, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            current = self.memory * moved + (1 - self.memory) * current
        self.previous_grey, self.previous_log_odds = grey, current
        return 1.0 / (1.0 + np.exp(-current))


class VesselEvidence:
    """Stage: vessel regions' evidence and tiers; the class map keeps the HIGH tier's vessels only."""

    reads = ("segmentation", "image")
    writes = ("segmentation",)

    def __init__(self, points: OperatingPoints | None, temporal: bool = True, memory: float = MEMORY):
        self.points = points
        self.temperature = points.temperature if points else 1.0
        self.filter = TemporalFilter(memory) if temporal else None

    def reset(self) -> None:
        if self.filter is not None:
            self.filter.reset()

    def tier(self, evidence: float) -> str | None:
        return self.points.tier(evidence) if self.points else "advisory"

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "evidence"):
            segmentation = packet.segmentation
            vessel_values = [i + 1 for i, role in enumerate(segmentation.roles) if role == "vessel"]
            if vessel_values and segmentation.geometry is not None:
                self.judge(packet, segmentation, vessel_values)
        return packet

    def judge(self, packet: FramePacket, segmentation: Segmentation, vessel_values: list[int]) -> None:
        geometry = segmentation.geometry
        x0, y0, x1, y1 = geometry.content_box()
        cx, cy, cw, ch = geometry.crop
        table = segmentation.role_table("vessel")
        crop_map = segmentation.class_map[cy:cy + ch, cx:cx + cw]
        vessel = cv2.resize(cv2.LUT(crop_map, table), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        count, labels = cv2.connectedComponents(vessel, connectivity=8)
        segmentation.vessel_evidence = 0.0
        if count == 1 and self.filter is None:
            return
        probability = self.probability(segmentation, vessel, vessel_values, (x0, y0, x1, y1))
        weight = probability
        if self.filter is not None:  # its memory follows every frame, with or without a vessel
            grey = cv2.cvtColor(cv2.resize(packet.image[cy:cy + ch, cx:cx + cw], (x1 - x0, y1 - y0),
                                           interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
            weight = np.minimum(probability, self.filter.update(probability, grey))
        if count == 1:
            return
        width, height = geometry.input_size
        flat = labels.ravel()
        pixels = np.bincount(flat, minlength=count)
        mass = np.bincount(flat, weights=weight.ravel(), minlength=count) / (width * height)
        mean = np.bincount(flat, weights=probability.ravel(), minlength=count) / np.maximum(pixels, 1)
        tiers = [None, *(self.tier(float(m)) for m in mass[1:])]
        segmentation.vessel_evidence = float(mass[1:].max())
        segmentation.advisory = [self.region(labels == r, (x0, y0), geometry, float(mean[r]), float(mass[r]))
                                 for r in range(1, count) if tiers[r] == "advisory"]
        keep = np.array([tier == "high" for tier in tiers], np.uint8)
        if not keep[1:].all():
            self.keep_only(packet, segmentation, keep[labels], table)
        self.rescore(segmentation, probability, keep[labels], (x0, y0))

    def probability(self, segmentation: Segmentation, vessel: np.ndarray, vessel_values: list[int],
                    box: tuple[int, int, int, int]) -> np.ndarray:
        """Step 1: (h, w) over the content box of the model input."""
        if segmentation.logits is None:
            return vessel.astype(np.float32)
        width, height = segmentation.geometry.input_size
        x0, y0, x1, y1 = box
        small = vessel_probability(segmentation.logits, vessel_values, self.temperature)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]

    @staticmethod
    def region(mask: np.ndarray, offset: tuple[int, int], geometry, confidence: float,
               evidence: float) -> VesselRegion:
        """An advisory region's outline and box in source pixels."""
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        outlines = [geometry.to_source(c.reshape(-1, 2) + np.array(offset) + 0.5) - 0.5 for c in contours]
        points = np.concatenate(outlines)
        box = (*points.min(axis=0).tolist(), *points.max(axis=0).tolist())
        polygons = [np.round(o).astype(int).reshape(-1).tolist() for o in outlines if len(o) >= 3]
        return VesselRegion("advisory", confidence, evidence, tuple(float(v) for v in box), polygons)

    @staticmethod
    def keep_only(packet: FramePacket, segmentation: Segmentation, keep: np.ndarray, table: np.ndarray) -> None:
        """Vessel pixels of regions below the HIGH tier leave the class map (the model's own is kept)."""
        geometry = segmentation.geometry
        cx, cy, cw, ch = geometry.crop
        kept = cv2.resize(keep, (cw, ch), interpolation=cv2.INTER_NEAREST)
        shown = segmentation.class_map.copy()
        window = shown[cy:cy + ch, cx:cx + cw]
        window[(cv2.LUT(window, table) > 0) & (kept == 0)] = 0
        segmentation.model_class_map, segmentation.class_map = segmentation.class_map, shown
        if packet.device is not None and packet.device.class_map is not None:  # the CUDA stages read that copy
            import cupy

            packet.device.class_map = cupy.asarray(shown)

    @staticmethod
    def rescore(segmentation: Segmentation, probability: np.ndarray, keep: np.ndarray,
                offset: tuple[int, int]) -> None:
        """Vessel instances: those on a HIGH region stay, scored by their calibrated mean probability."""
        vessel = np.array([segmentation.roles[c] == "vessel" for c in segmentation.class_ids], bool)
        if not vessel.any():
            return
        geometry = segmentation.geometry
        height, width = probability.shape
        logits = to_host(segmentation.instance_logits)
        # each instance's box in content-box pixels: only that window is looked at
        corners = (segmentation.boxes.reshape(-1, 2, 2) - np.array(geometry.crop[:2])) * geometry.scale
        corners = np.clip(np.round(corners).astype(int) + [[-1], [1]], 0, [width, height])
        rows, scores = ~vessel, segmentation.scores.copy()
        x0, y0 = offset
        for row in np.flatnonzero(vessel):
            (bx0, by0), (bx1, by1) = corners[row]
            inside = logits[row, y0 + by0:y0 + by1, x0 + bx0:x0 + bx1] > 0
            rows[row] = bool((inside & (keep[by0:by1, bx0:bx1] > 0)).any())
            scores[row] = probability[by0:by1, bx0:bx1][inside].mean() if inside.any() else 0.0
        segmentation.class_ids, segmentation.scores = segmentation.class_ids[rows], scores[rows]
        segmentation.boxes, segmentation.instance_logits = segmentation.boxes[rows], logits[rows]
        segmentation.source_masks = None
