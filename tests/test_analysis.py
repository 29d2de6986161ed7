import math

import numpy as np
import pytest

from pipeline.analysis import closest_pair


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
