"""Annotations a person can read: sized to the picture, inside it, never on top of each other."""
import numpy as np

from pipeline.core.packet import FramePacket, Proximity, Segmentation
from pipeline.stages.overlay.cpu import (
    ContourAnnotator,
    LabelAnnotator,
    MaskAnnotator,
    ProximityAnnotator,
    label_style,
    place_label,
)


def test_labels_scale_with_the_picture_and_stay_readable():
    small, large = label_style(np.zeros((480, 854, 3))), label_style(np.zeros((1080, 1920, 3)))
    assert small[0] * 22 >= 14 and large[0] > small[0] and large[1] >= small[1]  # >= 14 px text on 854x480


def test_labels_stay_inside_and_apart():
    taken = []
    for _ in range(3):  # three labels wished at the same spot, at the picture's top edge
        taken.append(place_label((120, 20), (800, 0), (854, 480), taken))
    for x0, y0, x1, y1 in taken:
        assert 0 <= x0 and x1 <= 854 and 0 <= y0 and y1 <= 480
    for i, a in enumerate(taken):
        for b in taken[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_annotators_draw_on_a_small_frame_without_failing():
    scene = np.full((480, 854, 3), (60, 60, 200), np.uint8)  # reddish tissue
    packet = FramePacket.capture(scene, 0, "t")
    class_map = np.zeros((480, 854), np.uint8)
    packet.segmentation = Segmentation(class_map, ("instrument", "vessel"), ("instrument", "vessel"),
                                       np.array([0, 1]), np.array([0.36, 0.29], np.float32),
                                       np.array([[0, 0, 50, 50], [2, 1, 40, 40]], np.float32))
    packet.proximity = Proximity(23.0, (100, 100), (120, 110))
    for annotator in (LabelAnnotator(), ProximityAnnotator()):
        scene = annotator.annotate(scene, packet)
    plate = scene[100:110, 120:140]
    assert (plate == 20).all(axis=2).any()  # the distance sits on a dark plate


def _segmented(centre: tuple[int, int]) -> FramePacket:
    packet = FramePacket.capture(np.full((240, 320, 3), (60, 60, 200), np.uint8), 0, "t")
    class_map = np.zeros((240, 320), np.uint8)
    class_map[centre[1] - 20:centre[1] + 20, centre[0] - 30:centre[0] + 30] = 2  # a vessel
    packet.segmentation = Segmentation(class_map, ("instrument", "vessel"), ("instrument", "vessel"),
                                       np.zeros(0, int), np.zeros(0, np.float32), np.zeros((0, 4)))
    return packet


def test_a_mask_drawn_again_looks_the_same_and_a_new_one_replaces_it():
    first, second = _segmented((80, 60)), _segmented((240, 180))
    for kind in (MaskAnnotator, ContourAnnotator):
        kept = kind()  # the display's annotator: the same mask over several frames, then the next one
        shown = [kept.annotate(packet.image.copy(), packet) for packet in (first, first, second)]
        assert np.array_equal(shown[0], shown[1])
        assert np.array_equal(shown[2], kind().annotate(second.image.copy(), second))  # not the first mask's
        assert not np.array_equal(shown[2], shown[0])


def test_the_distance_and_the_labels_never_cover_each_other_or_the_banner():
    """The instrument's label wished right where the distance goes (the user's "in[4 px]nent") and at the top,
    under a HIGH banner: each box is placed clear of the others, and every text stays whole."""
    from pipeline.core.packet import AlertEvent
    from pipeline.stages.overlay.cpu import annotate_all, mark_annotators

    plain = np.full((480, 854, 3), (60, 60, 200), np.uint8)
    packet = FramePacket.capture(plain.copy(), 0, "t")
    packet.segmentation = Segmentation(np.zeros((480, 854), np.uint8), ("instrument", "vessel"),
                                       ("instrument", "vessel"), np.array([0, 1]), np.array([0.9, 0.8], np.float32),
                                       np.array([[130, 96, 300, 200], [0, 0, 80, 60]], np.float32))
    packet.proximity = Proximity(4.0, (100, 100), (110, 100))  # the distance's plate starts near (110, 100)
    packet.active_alerts = [AlertEvent(1, "vessel_contact", "raised", "high", 0, packet.t_capture_ns, 0.0, (100, 100),
                                       "instrument touching vessel")]
    boxes = []

    class Recording(list):  # the shared list of taken boxes, kept for the check
        def append(self, box):
            boxes.append(box)
            super().append(box)

    taken = Recording()
    scene = plain.copy()
    for annotator in mark_annotators():
        scene = annotator.annotate(scene, packet, taken)
    assert len(boxes) == 4  # banner, distance, two labels
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert np.array_equal(scene, annotate_all(mark_annotators(), plain.copy(), packet))


def test_the_alarm_text_reads_between_flashes():
    from pipeline.core.packet import AlertEvent
    from pipeline.stages.overlay.cpu import BannerAnnotator

    red_tissue = np.full((480, 854, 3), (0, 0, 230), np.uint8)  # the alarm's own red
    packet = FramePacket.capture(red_tissue.copy(), 0, "t")
    packet.active_alerts = [AlertEvent(1, "vessel_contact", "raised", "high", 0, 0, 0.0, (1, 1), "touching")]
    for t_s, lit in ((0.0, True), (0.4, False)):  # 2 Hz, on 60 % of each period
        packet.t_capture_ns = int(t_s * 1e9)
        band = BannerAnnotator().annotate(red_tissue.copy(), packet)[:int(44 * 480 / 1080)]
        background = np.median(band.reshape(-1, 3), axis=0)
        assert (background == (0, 0, 230)).all() if lit else (background < 40).all()
        assert (np.abs(band.astype(int) - background).max(axis=2) > 100).sum() > 30  # the text stands out
