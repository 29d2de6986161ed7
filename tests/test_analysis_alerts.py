import math

import numpy as np
import pytest

from pipeline.alerts import ProximityAlert
from pipeline.analysis import closest_pair
from pipeline.packet import FramePacket, Proximity


def test_gap_between_two_boxes_and_its_end_points():
    instrument, vessel = np.zeros((100, 100), bool), np.zeros((100, 100), bool)
    instrument[10:20, 10:20] = True
    vessel[40:60, 12:14] = True
    result = closest_pair(instrument, vessel)
    assert result.distance_px == pytest.approx(20)  # rows 20..39 are empty
    assert result.instrument_point[1] == 19 and result.vessel_point[1] == 40


def test_diagonal_gap_is_euclidean_and_touching_is_zero():
    instrument, vessel = np.zeros((50, 50), bool), np.zeros((50, 50), bool)
    instrument[0, 0], vessel[3, 4] = True, True
    assert closest_pair(instrument, vessel).distance_px == pytest.approx(4.0)  # 5 between centres
    vessel[1, 0] = True
    assert closest_pair(instrument, vessel).distance_px == 0


def test_missing_class_gives_infinite_distance():
    assert math.isinf(closest_pair(np.zeros((5, 5), bool), np.ones((5, 5), bool)).distance_px)


def _run(alert, distances):
    states = []
    for i, d in enumerate(distances):
        packet = FramePacket.capture(np.zeros((4, 4, 3), np.uint8), i, "test")
        packet.proximity = Proximity(d, (1, 1), (2, 2))
        packet = alert(packet)
        states.append((bool(packet.active_alerts), [e.state for e in packet.alerts]))
    return states


def test_raised_after_k_of_n_and_cleared_with_hysteresis():
    alert = ProximityAlert(enter_px=40, exit_px=60, k=3, n=5)
    states = _run(alert, [100, 30, 30, 30, 50, 50, 50, 70, 70, 70, 100])
    active = [s[0] for s in states]
    assert active == [False, False, False, True, True, True, True, True, True, False, False]
    assert states[3][1] == ["raised"] and states[9][1] == ["cleared"]


def test_short_blips_do_not_raise():
    alert = ProximityAlert(enter_px=40, exit_px=60, k=3, n=5)
    assert not any(active for active, _ in _run(alert, [100, 10, 10, 100, 100, 100, 10, 100, 100, 100]))


def test_each_alert_has_its_own_id():
    alert = ProximityAlert(k=1, n=1)
    states = _run(alert, [10, 100, 10])
    assert alert.next_id == 3 and states[2][1] == ["raised"]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        ProximityAlert(k=4, n=3)
    with pytest.raises(ValueError):
        ProximityAlert(enter_px=50, exit_px=40)
