"""Decoding hand-made model outputs whose right answer is known."""
import numpy as np
import pytest

from pipeline.stages.decode.instance import decode_segmentation
from pipeline.stages.preprocess.geometry import plan_geometry

NAMES, ROLES = ("instrument", "vessel"), ("instrument", "vessel")


def _outputs(instances, layout="raw", input_size=64, nm=2):
    """Prototype k is +10 inside instance k's box (input pixels), -10 elsewhere; proto stride 4."""
    mh = input_size // 4
    protos = np.full((1, nm, mh, mh), -10.0, np.float32)
    rows = []
    for k, (box, cls, score) in enumerate(instances):
        x0, y0, x1, y1 = (np.array(box) / 4).astype(int)
        protos[0, k, y0:y1, x0:x1] = 10.0
        coefficients = np.eye(nm)[k]
        rows.append((box, cls, score, coefficients))
    if layout == "end2end":
        predictions = np.array([[*box, score, cls, *coef] for box, cls, score, coef in rows], np.float32)[None]
        return [predictions, protos]
    anchors = []
    for box, cls, score, coef in rows:
        for jitter in (0, 1):  # two overlapping candidates per object: NMS keeps one
            x0, y0, x1, y1 = np.array(box, float) + jitter
            scores = np.zeros(len(NAMES))
            scores[cls] = score - 0.01 * jitter
            anchors.append([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, *scores, *coef])
    anchors.append([10, 10, 4, 4, 0.01, 0.02, 0, 0])  # below the score threshold
    return [np.array(anchors, np.float32).T[None], protos]


@pytest.mark.parametrize("layout", ["raw", "end2end"])
def test_instances_land_in_source_pixels(layout):
    geometry = plan_geometry((128, 64), (0, 0, 128, 64), 64)  # scale 0.5, 16 px bars top and bottom
    outputs = _outputs([((8, 24, 24, 40), 0, 0.9), ((40, 16, 56, 48), 1, 0.8)], layout)
    result = decode_segmentation(outputs, geometry, NAMES, ROLES, conf=0.25)
    assert list(result.class_ids) == [0, 1] and result.scores == pytest.approx([0.9, 0.8])
    assert result.class_map.shape == (64, 128) and result.masks.shape == (2, 64, 128)
    # instrument box (8,24)-(24,40) in input -> x 16..48, y 16..48 in source
    ys, xs = np.nonzero(result.class_map == 1)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((16, 47, 16, 47), abs=2)
    ys, xs = np.nonzero(result.class_map == 2)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((80, 111, 0, 63), abs=2)
    assert result.boxes[0] == pytest.approx([16, 16, 48, 48], abs=2.5)


def test_cropped_source_maps_back_with_the_crop_offset():
    geometry = plan_geometry((200, 100), (50, 0, 100, 100), 64)  # field-of-view square crop
    result = decode_segmentation(_outputs([((16, 16, 48, 48), 0, 0.9)]), geometry, NAMES, ROLES)
    ys, xs = np.nonzero(result.class_map)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((75, 124, 25, 74), abs=2)


def test_no_detection_gives_an_empty_map():
    geometry = plan_geometry((128, 64), (0, 0, 128, 64), 64)
    result = decode_segmentation(_outputs([((8, 24, 24, 40), 0, 0.1)]), geometry, NAMES, ROLES, conf=0.25)
    assert len(result.scores) == 0 and result.class_map.max() == 0


def test_nothing_is_found_outside_the_field_of_view():
    geometry = plan_geometry((64, 64), (0, 0, 64, 64), 64, fov=(32.0, 32.0, 20.0))
    result = decode_segmentation(_outputs([((0, 0, 64, 64), 0, 0.9)]), geometry, NAMES, ROLES)
    assert result.class_map[32, 32] == 1 and result.class_map[2, 2] == 0 and result.class_map[32, 60] == 0
    assert not result.masks[0, 2, 2] and result.masks[0, 32, 32]
