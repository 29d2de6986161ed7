import math

import numpy as np
import pytest

from pipeline.stages.analyse.cpu import closest_pair


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


def test_ties_are_settled_in_raster_order_every_time():
    """Equal gaps (float32 transform values may differ in the last bit) give one answer."""
    instrument, vessel = np.zeros((60, 80), bool), np.zeros((60, 80), bool)
    instrument[20, 40] = instrument[20, 10] = True  # both 34 ** 0.5 from a vessel pixel
    vessel[23, 45] = vessel[25, 43] = vessel[23, 15] = True
    results = {(p.instrument_point, p.vessel_point, p.distance_px)
               for p in (closest_pair(instrument.copy(), vessel.copy()) for _ in range(20))}
    (instrument_point, vessel_point, distance), = results
    assert instrument_point == (10, 20) and vessel_point == (15, 23) and distance == 34 ** 0.5 - 1
