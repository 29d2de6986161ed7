import math

import cv2
import numpy as np
import pytest

from pipeline.sources.phantom import INSTRUMENT, VESSEL, PhantomScene
from pipeline.stages.preprocess.fov import detect_fov


def test_same_seed_same_frames_other_seed_other_scene():
    a, b, c = PhantomScene(640, 360, seed=1), PhantomScene(640, 360, seed=1), PhantomScene(640, 360, seed=2)
    assert np.array_equal(a.render(7)[0], b.render(7)[0])
    assert not np.array_equal(a.render(7)[0], c.render(7)[0])


@pytest.mark.parametrize("size", [(320, 240), (1280, 720), (1920, 1080)])
def test_masks_lie_inside_the_field_of_view_and_outside_is_black(size):
    scene = PhantomScene(*size, scenario="default")
    image, truth = scene.render(30)
    cx, cy, r = truth.fov
    yy, xx = np.mgrid[: size[1], : size[0]]
    outside = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 > (r + 1) ** 2
    assert image[outside].max() == 0 and truth.class_map[outside].max() == 0
    assert (truth.class_map == INSTRUMENT).sum() > 0.005 * image.shape[0] * image.shape[1]
    assert (truth.class_map == VESSEL).any()


def test_instruments_move_and_their_pixels_are_grey_metal():
    scene = PhantomScene(640, 360)
    (first, truth_first), (_, truth_later) = scene.render(0), scene.render(45)
    assert not np.array_equal(truth_first.class_map == INSTRUMENT, truth_later.class_map == INSTRUMENT)
    metal = first[truth_first.class_map == INSTRUMENT].astype(int)
    assert np.abs(metal[:, 0] - metal[:, 2]).mean() < 20  # grey, unlike the red tissue


def test_approach_scenario_advances_touches_and_backs_off_at_its_known_frames():
    scene = PhantomScene(1280, 720, scenario="approach")
    events = scene.approach_events()
    distance = [scene.render(f)[1].distance_px for f in range(events["period"])]
    assert distance[events["advance"] - 1] > 150
    assert all(d == 0 for d in distance[events["touch"]:events["release"]])
    assert all(d > 0 for d in distance[events["advance"]:events["touch"] - 5])
    approaching = distance[events["advance"]:events["touch"]]
    assert all(b <= a + 1 for a, b in zip(approaching, approaching[1:]))  # monotone, bar jaw motion
    assert distance[events["away"]] > 150


def test_truth_distance_is_the_pixel_gap_between_instrument_and_vessel():
    scene = PhantomScene(640, 360, scenario="approach")
    truth = scene.render(scene.approach_events()["advance"] + 20)[1]
    iy, ix = np.nonzero(truth.class_map == INSTRUMENT)
    vy, vx = np.nonzero(truth.class_map == VESSEL)
    brute = min(np.hypot(vx - x, vy - y).min() for x, y in zip(ix[::3], iy[::3]))
    assert truth.distance_px == pytest.approx(brute - 1, abs=1.5)


def test_smoke_scenario_veils_the_scene():
    clear, _ = PhantomScene(640, 360, scenario="default").render(10)
    smoky, _ = PhantomScene(640, 360, scenario="smoke").render(10)
    assert smoky[180, 320].std() < clear[180, 320].std() + 40 and smoky.mean() > clear.mean()


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown phantom scenario"):
        PhantomScene(640, 360, scenario="nope")


@pytest.mark.parametrize("size", [(854, 480), (1920, 1080), (720, 720)])
def test_field_of_view_is_detected_within_two_pixels(size):
    image, truth = PhantomScene(*size, scenario="default", seed=3).render(12)
    found = detect_fov(image)
    assert math.dist(found[:2], truth.fov[:2]) < 2 and abs(found[2] - truth.fov[2]) < 2


def test_frame_without_black_surround_has_no_field_of_view():
    assert detect_fov(np.full((200, 300, 3), 90, np.uint8)) is None


def test_field_of_view_survives_dark_tissue_at_the_rim():
    image, truth = PhantomScene(1280, 720, seed=5).render(0)
    cx, cy, r = truth.fov
    cv2.circle(image, (int(cx + r), int(cy)), int(0.25 * r), (0, 0, 0), -1)  # a big shadow on the rim
    cv2.circle(image, (int(cx), int(cy - r)), int(0.1 * r), (3, 3, 3), -1)
    found = detect_fov(image)
    assert math.dist(found[:2], truth.fov[:2]) < 2 and abs(found[2] - truth.fov[2]) < 2
