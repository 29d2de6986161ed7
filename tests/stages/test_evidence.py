"""Vessel evidence: calibrated probability, the temporal filter, tiers, and what each tier may raise."""
import numpy as np
import pytest

from pipeline.core.evidence import OperatingPoint, OperatingPoints
from pipeline.core.packet import FramePacket, Geometry, Proximity, Segmentation
from pipeline.stages.alerts.engine import AlertEngine
from pipeline.stages.alerts.rules import Observation, VesselContact, VesselProximity
from pipeline.stages.analyse.cpu import MeasureProximity
from pipeline.stages.evidence import VesselEvidence, vessel_probability

SIZE = 64
NAMES, ROLES = ("instrument", "vessel"), ("instrument", "vessel")
GEOMETRY = Geometry((SIZE, SIZE), (0, 0, SIZE, SIZE), 1.0, (0, 0), (SIZE, SIZE))
POINTS = OperatingPoints(1.0, OperatingPoint(0.02, 0.5, 0.05), OperatingPoint(0.008, 0.8, 0.4), "test frames", 10, 10,
                         0.8)
SCENE = (np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3))).astype(np.uint8)  # texture for the flow


def _packet(vessel: bool, frame_id: int = 0, instrument_touching: bool = False) -> FramePacket:
    """A frame whose model paints a 24x6 vessel (probability 0.9) or nothing; an instrument beside it."""
    class_map = np.zeros((SIZE, SIZE), np.uint8)
    logits = np.zeros((3, SIZE // 4, SIZE // 4), np.float32)
    logits[0] = 4.0  # background everywhere ...
    if vessel:
        class_map[20:26, 20:44] = 2
        logits[2, 5:7, 5:11] = 6.2  # ... but the vessel: p(vessel) ~ 0.9
    class_map[26 if instrument_touching else 40:50, 30:34] = 1
    segmentation = Segmentation(class_map, NAMES, ROLES, np.zeros(0, int), np.zeros(0, np.float32),
                                np.zeros((0, 4), np.float32), np.zeros((0, SIZE, SIZE), np.float32), GEOMETRY,
                                logits=logits)
    packet = FramePacket(frame_id, "test", SCENE.copy(), frame_id * 33_000_000, 0)
    packet.segmentation = segmentation
    return packet


def _tiers(evidence: VesselEvidence, present: list[bool]) -> list[str | None]:
    """The tier of the frame's vessel after each frame: high (in the class map), advisory, or None."""
    tiers = []
    for frame_id, vessel in enumerate(present):
        segmentation = evidence(_packet(vessel, frame_id)).segmentation
        high = bool((segmentation.class_map == 2).any())
        tiers.append("high" if high else "advisory" if segmentation.advisory else None)
    return tiers


def test_the_vessel_probability_is_the_softmax_of_the_scaled_logits():
    logits = np.array([[[0.0]], [[1.0]], [[2.0]]], np.float32)
    expected = np.exp(2) / (1 + np.exp(1) + np.exp(2))
    assert vessel_probability(logits, [2], 1.0)[0, 0] == pytest.approx(expected, rel=1e-5)
    assert vessel_probability(logits, [2], 2.0)[0, 0] == pytest.approx(np.exp(1) / (1 + np.exp(.5) + np.exp(1)),
                                                                       rel=1e-5)


def test_a_single_frame_alone_is_judged_by_its_own_evidence():
    segmentation = VesselEvidence(POINTS)(_packet(True)).segmentation
    area = 24 * 6 / SIZE**2
    assert 0.7 * area < segmentation.vessel_evidence < 0.9 * area  # p ~0.9 inside, softer at the upsampled edges
    assert (segmentation.class_map == 2).sum() == 24 * 6 and not segmentation.advisory


def test_the_temporal_filter_suppresses_a_flicker_and_keeps_a_steady_vessel():
    flicker = [False] * 5 + [True] + [False] * 4  # 1 frame of 10
    assert _tiers(VesselEvidence(POINTS), flicker) == [None] * 10
    steady = _tiers(VesselEvidence(POINTS), [True] * 10)  # 10 of 10: high within a few frames, and stays
    assert "high" in steady[:3] and steady[steady.index("high"):] == ["high"] * (10 - steady.index("high"))
    without_filter = _tiers(VesselEvidence(POINTS, temporal=False), flicker)
    assert without_filter[5] == "high"  # what the filter took away


def test_a_model_without_operating_points_draws_every_vessel_as_advisory_and_never_raises_high():
    engine = AlertEngine([VesselContact(k=1, n=1, min_on_s=0), VesselProximity(k=1, n=1, min_on_s=0)])
    evidence, analyse = VesselEvidence(None), MeasureProximity()
    priorities = set()
    for frame_id in range(10):
        packet = analyse(evidence(_packet(True, frame_id, instrument_touching=True)))
        assert packet.proximity.tier == "advisory" and packet.proximity.distance_px == 0
        assert not (packet.segmentation.class_map == 2).any()  # not painted as a (red-alarm) vessel
        region = packet.segmentation.advisory[0]
        assert region.tier == "advisory" and 0.7 < region.confidence < 0.9
        engine.update(Observation(packet.t_capture_ns, frame_id, proximity=packet.proximity))
        priorities |= {alert.priority for alert in engine.active}
    assert priorities == {"low"}
    assert all("possible vessel" in alert.message for alert in engine.active)


def test_only_a_high_tier_vessel_raises_high():
    for tier, expected in (("high", "high"), ("advisory", "low"), (None, "low")):
        engine = AlertEngine([VesselContact(k=1, n=1, min_on_s=0)])
        engine.update(Observation(0, 0, proximity=Proximity(0.0, (1, 1), (1, 2), tier=tier)))
        assert [alert.priority for alert in engine.active] == [expected] and engine.active[0].tier == tier
