"""Vessel evidence: how sure the pipeline is that a painted vessel is one, and what that is allowed to raise.

Two tiers (docs/alerts.md): **high**, only at an operating point whose frame-level false alarm was
validated on labelled frames and stored in the model file, and **advisory** ("possible vessel",
amber, never red). A model without validated points raises vessel alerts at advisory at most.

A region's *evidence* is its vessel probability mass: the sum of its pixels' calibrated vessel
probabilities, as a fraction of the model input's pixels (resolution-independent); a frame's
evidence is its strongest region's. The points are thresholds on that number.

    points = OperatingPoints.from_metadata(metadata)       # None: the model has none
    points.tier(0.004)                                     # "high", "advisory" or None
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

METADATA_KEY = "orsight_vessel_operating_points"  # ONNX metadata key; the same key in a .pt checkpoint
TIERS = ("high", "advisory")


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on frame evidence and what it gave on the validation frames."""

    threshold: float
    detected: float  # of the frames with a vessel, the fraction at or above the threshold
    false_alarm: float  # of the frames without one, the fraction at or above it


@dataclass(frozen=True)
class OperatingPoints:
    """The vessel class's validated operating points and the calibration they were chosen with."""

    temperature: float  # the logits are divided by it before the softmax (1: as trained)
    high: OperatingPoint | None  # None: no threshold met the false-alarm limit; vessels stay advisory
    advisory: OperatingPoint | None
    validated_on: str  # the data, e.g. "Endoscapes-Seg50 val: 76 frames, 10 patients"
    frames_present: int
    frames_absent: int
    roc_auc: float
    rule: str = ""  # how the points were chosen
    extra: dict = field(default_factory=dict)

    def tier(self, evidence: float) -> str | None:
        """``high``, ``advisory`` or None for a region (or frame) with this evidence."""
        if self.high is not None and evidence >= self.high.threshold:
            return "high"
        if self.advisory is None or evidence >= self.advisory.threshold:
            return "advisory"
        return None

    def summary(self) -> str:
        """One line for reports, web page and start-up messages."""
        parts = [f"{name.upper()} vessel: detected {p.detected:.0%} of frames with one, false alarm "
                 f"{p.false_alarm:.0%} of frames without" for name, p in (("high", self.high),
                                                                         ("advisory", self.advisory)) if p]
        if self.high is None:
            parts.insert(0, "no validated HIGH vessel point (vessel alerts advisory only)")
        return f"{'; '.join(parts)} (validated on {self.validated_on})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OperatingPoints:
        values = json.loads(text)
        for name in TIERS:
            values[name] = OperatingPoint(**values[name]) if values.get(name) else None
        return cls(**values)

    @classmethod
    def from_metadata(cls, metadata: dict) -> OperatingPoints | None:
        text = metadata.get(METADATA_KEY)
        return cls.from_json(text) if text else None


UNVALIDATED = "this model has no validated vessel operating points: vessel alerts are advisory only"


@dataclass
class VesselRegion:
    """One vessel region after the evidence stage: its tier, confidence and outline in source pixels."""

    tier: str  # high | advisory
    confidence: float  # mean calibrated vessel probability of its pixels
    evidence: float  # probability mass, a fraction of the model input (see module docstring)
    box: tuple[float, float, float, float]  # x0 y0 x1 y1, source pixels
    polygons: list[list[int]]  # outlines in source pixels, [x0, y0, x1, y1, ...] each

    def to_dict(self) -> dict:
        return {"tier": self.tier, "confidence": round(self.confidence, 4), "evidence": round(self.evidence, 6),
                "box": [round(v, 1) for v in self.box], "polygons": self.polygons}

    @classmethod
    def from_dict(cls, values: dict) -> VesselRegion:
        return cls(values["tier"], values["confidence"], values["evidence"], tuple(values["box"]),
                   values["polygons"])
