"""Mask propagation: the display moves the newest mask with the picture to the frame it shows."""
import threading
import time

import cv2
import numpy as np

from pipeline.display.propagate import MaskPropagator, move_point
from pipeline.display.viewer import run_display
from pipeline.transport.zeromq import Publisher

SIZE = (360, 640)  # (height, width)
SHIFT = (18, -10)  # the scene moves this far (x, y pixels) between the mask's frame and the one shown
CLASSES = [{"value": 1, "name": "instrument", "role": "instrument"}, {"value": 2, "name": "vessel", "role": "vessel"}]


def _tissue(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (SIZE[0] // 8, SIZE[1] // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, SIZE[::-1], interpolation=cv2.INTER_CUBIC), (0, 0), 2)


def _shifted(image: np.ndarray, shift=SHIFT, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    return cv2.warpAffine(image, matrix, SIZE[::-1], flags=interpolation, borderMode=cv2.BORDER_REFLECT)


def _class_map() -> np.ndarray:
    class_map = np.zeros(SIZE, np.uint8)
    class_map[120:220, 200:330] = 1
    cv2.line(class_map, (380, 60), (520, 300), 2, 6)  # a thin vessel
    return class_map


def _iou(a, b, value):
    return np.count_nonzero((a == value) & (b == value)) / np.count_nonzero((a == value) | (b == value))


def test_a_mask_moves_with_the_scene_to_the_frame_shown():
    before = _tissue()
    after = _shifted(before)
    class_map, truth = _class_map(), _shifted(_class_map(), interpolation=cv2.INTER_NEAREST)
    propagator = MaskPropagator()
    propagator.remember(4, before)
    propagator.remember(7, after)
    moved, flow = propagator.carry(class_map, 4, 7)
    for value in (1, 2):
        assert _iou(class_map, truth, value) < 0.75  # held, the mask is off the picture
        assert _iou(moved, truth, value) > 0.85
    point = move_point((250, 170), flow, SIZE)
    assert abs(point[0] - (250 + SHIFT[0])) <= 3 and abs(point[1] - (170 + SHIFT[1])) <= 3


def test_a_still_scene_leaves_the_mask_where_it_is_thin_vessels_included():
    image, class_map = _tissue(), _class_map()
    propagator = MaskPropagator()
    propagator.remember(1, image)
    propagator.remember(2, image.copy())
    moved, _ = propagator.carry(class_map, 1, 2)
    assert _iou(moved, class_map, 1) > 0.98 and _iou(moved, class_map, 2) > 0.95


def test_only_remembered_frames_are_carried_between_and_the_history_is_bounded():
    propagator = MaskPropagator(history=4)
    for frame_id in range(10):
        propagator.remember(frame_id, _tissue(frame_id))
    assert list(propagator.frames) == [6, 7, 8, 9]
    assert propagator.carry(_class_map(), 2, 9) is None  # forgotten: shown as it came
    assert propagator.carry(_class_map(), 9, 9) is None  # the mask's own frame: nothing to move
    assert propagator.carry(_class_map(), 7, 12) is None  # a frame not shown yet
    assert propagator.carry(_class_map(), 8, 9) is not None


def test_the_display_moves_fresh_masks_and_says_so(tmp_path):
    """A real publisher and display: frames of a panning scene, one mask of the first; with --propagate
    the frames after it are shown with the mask moved (and counted), without it none are."""
    tissue = _tissue()
    summaries = {}
    for propagate in (False, True):
        endpoint = f"ipc://{tmp_path}/display-{propagate}.sock"  # one each: a closed TCP port may linger
        publisher = Publisher(endpoint)

        def publish():
            publisher.wait_for_subscriber(timeout=10)
            time.sleep(0.3)
            start = time.time_ns()
            for frame_id in range(6):
                t_ns = start + frame_id * 16_000_000
                image = _shifted(tissue, (3 * frame_id, -2 * frame_id))
                if frame_id == 0:  # before its frame, so that every frame has a fresh mask
                    publisher.send_image("mask", _class_map(), "zlib", frame_id=0, t_capture_ns=t_ns, classes=CLASSES,
                                         proximity={"distance_px": 40.0, "distance_mm": None, "mm_per_px": None,
                                                    "instrument_point": [330, 170], "vessel_point": [370, 170]},
                                         active_alerts=[], timings_ms={})
                    time.sleep(0.05)
                publisher.send_image("video", image, "raw-bgr8", frame_id=frame_id, t_capture_ns=t_ns, fps=60.0)
                time.sleep(0.08)
            publisher.send("status", {"state": "ended", "final": True, "t_capture_ns": time.time_ns()})

        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        try:
            summaries[propagate] = run_display(endpoint, headless=True, propagate=propagate, until_publisher_ends=True)
        finally:
            sender.join(timeout=10)
            publisher.close()
    # (a display on a busy machine may skip a frame: it always shows the newest)
    assert summaries[False]["frames_moved"] == 0 and summaries[False]["frames_shown"] >= 5
    assert summaries[True]["frames_moved"] >= summaries[True]["frames_shown"] - 1 >= 4  # all after the mask's own
    assert summaries[True]["frames_stale"] == summaries[False]["frames_stale"] == 0
