import numpy as np
import pytest

from pipeline.core.packet import FramePacket, Proximity, Segmentation
from pipeline.stages.undistort import Redistort, Undistort
from tests.helpers import PINHOLE


def _dot_frame(point):
    image = np.zeros((480, 640, 3), np.uint8)
    x, y = point
    image[y - 2:y + 3, x - 2:x + 3] = 255
    return image


def _centre(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_undistort_moves_a_dot_where_the_camera_model_says():
    original = (560, 420)  # near a corner: strong barrel distortion
    packet = Undistort(PINHOLE)(FramePacket.capture(_dot_frame(original), 0, "test"))
    expected = PINHOLE.undistort_points([original])[0]
    assert np.abs(_centre(packet.image[..., 0] > 100) - expected).max() < 1.0
    assert packet.original is not None and packet.original.shape == packet.image.shape


def test_redistort_puts_results_back_on_the_original_picture():
    original = (560, 420)
    packet = Undistort(PINHOLE)(FramePacket.capture(_dot_frame(original), 0, "test"))
    class_map = (packet.image[..., 0] > 100).astype(np.uint8)  # a perfect segmentation of the dot
    packet.segmentation = Segmentation(class_map, ("instrument",), ("instrument",), np.array([0]),
                                       np.array([0.9], np.float32), np.array([[0, 0, 1, 1]], float),
                                       source_masks=class_map[None].astype(bool))
    point = tuple(int(v) for v in PINHOLE.undistort_points([original])[0].round())
    packet.proximity = Proximity(3.0, point, point)
    packet.overlay = packet.image.copy()
    packet = Redistort(PINHOLE)(packet)
    assert np.abs(_centre(packet.segmentation.class_map) - original).max() < 1.0
    assert np.abs(_centre(packet.segmentation.masks[0]) - original).max() < 1.0
    assert np.abs(np.array(packet.proximity.instrument_point) - original).max() <= 1
    assert np.abs(_centre(packet.overlay[..., 0] > 100) - original).max() < 1.0
    assert packet.image is packet.original


def test_calibration_for_another_frame_size_is_refused():
    with pytest.raises(ValueError, match="calibration is for 640x480"):
        Undistort(PINHOLE)(FramePacket.capture(np.zeros((720, 1280, 3), np.uint8), 0, "test"))
