import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline.core.packet import FramePacket, Geometry, Segmentation
from pipeline.stages.analyse.cpu import MeasureProximity, closest_pair


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


@pytest.mark.parametrize("gap_cells", [0, 1, 3, 17])
@pytest.mark.parametrize("cell_px", [5.0, 10 / 3])
def test_the_stage_finds_the_full_resolution_pair_through_the_model_grid(gap_cells, cell_px):
    """A class map scaled up from the model's grid (cells of 5 px, or 3 and 4 px): the stage's grid
    pass over every 5th (3rd) pixel keeps a vessel one cell wide, and the pair is the exact one."""
    cells = np.zeros((54, 96), np.uint8)
    cells[30:40, 20:30] = 1  # instrument
    cells[30 - gap_cells - 13:30 - gap_cells, 25 + gap_cells] = 2  # a vessel one cell wide, above it
    width, height = round(96 * cell_px), round(54 * cell_px)
    class_map = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
    segmentation = Segmentation(class_map, ("instrument", "vessel"), ("instrument", "vessel"), np.zeros(0, int),
                                np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                                geometry=Geometry((width, height), (0, 0, width, height), 1 / cell_px, (0, 0), (96, 54)))
    packet = FramePacket(0, "x", np.zeros((height, width, 3), np.uint8), 0, 0)
    packet.segmentation = segmentation
    measured = MeasureProximity()(packet).proximity
    assert segmentation.grid_step == int(cell_px)
    assert measured == replace(closest_pair(class_map == 1, class_map == 2), tier="high")


def test_the_stage_matches_the_full_resolution_pair_on_random_scenes():
    """Random instruments (boxes, ellipses) and vessels (lines one cell wide) on a grid scaled up by
    2-5 px a cell: the same pair as the full-resolution search, every time."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        rows, cols = int(rng.integers(30, 60)), int(rng.integers(40, 90))
        cells = np.zeros((rows, cols), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = int(rng.integers(0, cols)), int(rng.integers(0, rows))
            cv2.ellipse(cells, (cx, cy), (int(rng.integers(1, 9)), int(rng.integers(1, 9))), float(rng.uniform(0, 180)),
                        0, 360, 1, -1)
        for _ in range(int(rng.integers(1, 4))):
            ends = rng.integers(0, [cols, rows, cols, rows])
            cv2.line(cells, (int(ends[0]), int(ends[1])), (int(ends[2]), int(ends[3])), 2, 1)
        cell_px = float(rng.choice([2.0, 2.5, 3.0, 10 / 3, 4.0, 5.0]))
        width, height = round(cols * cell_px), round(rows * cell_px)
        class_map = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
        segmentation = Segmentation(class_map, ("instrument", "vessel"), ("instrument", "vessel"), np.zeros(0, int),
                                    np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                                    geometry=Geometry((width, height), (0, 0, width, height), cols / width, (0, 0),
                                                      (cols, rows)))
        packet = FramePacket(0, "x", np.zeros((height, width, 3), np.uint8), 0, 0)
        packet.segmentation = segmentation
        expected = replace(closest_pair(class_map == 1, class_map == 2), tier="high")
        assert MeasureProximity()(packet).proximity == expected, cell_px
