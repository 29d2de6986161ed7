"""The result types' one way to and from JSON (wire, records, API, display), and the operating points' tiers."""
import json
import math

from pipeline.core.evidence import OperatingPoint, OperatingPoints, VesselRegion
from pipeline.core.packet import AlertEvent, Proximity


def _through_json(values: dict) -> dict:
    return json.loads(json.dumps(values))


def test_a_proximity_survives_json_with_its_advisory_pair_and_no_distance_as_null():
    nearer = Proximity(3.0, (1, 2), (3, 4), 0.1, "advisory")
    proximity = Proximity(12.5, (10, 20), (30, 40), 0.1, "high", nearer)
    assert Proximity.from_dict(_through_json(proximity.to_dict())) == proximity
    nowhere = Proximity(math.inf)
    assert nowhere.to_dict()["distance_px"] is None and math.isinf(Proximity.from_dict(nowhere.to_dict()).distance_px)


def test_an_alert_survives_json_and_a_newer_sender_s_fields_are_left_out():
    alert = AlertEvent(7, "vessel_contact", "raised", "low", 12, 1_000, 0.0, (5, 6), "instrument touching possible "
                       "vessel", 1_000, tier="advisory")
    values = {**_through_json(alert.to_dict()), "added_in_a_later_version": 1}
    assert AlertEvent.from_dict(values) == alert


def test_a_vessel_region_survives_json():
    region = VesselRegion("advisory", 0.42, 0.0031, (1.0, 2.0, 30.0, 40.0), [[1, 2, 30, 2, 30, 40]])
    assert VesselRegion.from_dict(_through_json(region.to_dict())) == region


def test_operating_points_give_tiers_and_survive_the_model_file_s_metadata():
    points = OperatingPoints(1.5, OperatingPoint(0.01, 0.3, 0.05), OperatingPoint(0.001, 0.8, 0.5), "val", 34, 42,
                             0.75)
    assert [points.tier(e) for e in (0.02, 0.01, 0.005, 0.0005)] == ["high", "high", "advisory", None]
    assert OperatingPoints.from_json(points.to_json()) == points
    without_high = OperatingPoints(1.0, None, OperatingPoint(0.001, 0.8, 0.5), "val", 34, 42, 0.6)
    assert without_high.tier(1.0) == "advisory" and "advisory only" in without_high.summary()
