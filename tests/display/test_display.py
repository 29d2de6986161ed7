"""The display's compositing rules, on messages as they come off the wire."""
import numpy as np
import pytest

from pipeline.display.viewer import _packet_from, fresh_mask
from pipeline.stages.overlay.cpu import BannerAnnotator, MaskAnnotator
from pipeline.transport.untrusted import Message
from pipeline.transport.zeromq import encode_image

T0 = 1_700_000_000_000_000_000


def _video(t_ns):
    image = np.full((60, 80, 3), 90, np.uint8)
    header = {"stream": "orsight", "frame_id": 7, "t_capture_ns": t_ns, "shape": [60, 80, 3], "dtype": "uint8",
              "encoding": "raw-bgr8", "fps": 30.0}
    return Message("video", header, [bytes(encode_image(image, "raw-bgr8"))], t_ns + 1_000_000)


def _mask(t_ns, alerts=()):
    class_map = np.zeros((60, 80), np.uint8)
    class_map[10:30, 10:30] = 1
    header = {"stream": "orsight", "frame_id": 5, "t_capture_ns": t_ns, "shape": [60, 80], "dtype": "uint8",
              "encoding": "zlib", "classes": [{"value": 1, "name": "instrument", "role": "instrument"},
                                               {"value": 2, "name": "vessel", "role": "vessel"}],
              "proximity": {"distance_px": None, "distance_mm": None, "mm_per_px": None, "instrument_point": None,
                            "vessel_point": None}, "active_alerts": list(alerts)}
    return Message("mask", header, [encode_image(class_map, "zlib")], t_ns + 50_000_000)


def test_a_mask_older_than_120_ms_is_hidden_and_ai_stale_shown():
    video = _video(T0)
    assert fresh_mask(video, _mask(T0 - 100_000_000)) is not None
    assert fresh_mask(video, _mask(T0 - 121_000_000)) is None
    packet = _packet_from(video, None, None)
    assert packet.segmentation is None and [a.rule for a in packet.active_alerts] == ["ai_stale"]
    scene = BannerAnnotator().annotate(packet.image.copy(), packet)
    banner = np.all(np.abs(scene[:25].astype(int) - (0, 215, 255)) < 5, axis=2)  # medium: yellow
    assert banner.sum() > 50 and (scene[40:] == 90).all()


def test_a_fresh_mask_is_drawn_over_the_raw_frame_with_its_alerts():
    alert = {"alert_id": 3, "rule": "vessel_contact", "state": "raised", "priority": "high", "frame_id": 5,
             "t_capture_ns": T0, "distance_px": 0.0, "location": [20, 20], "message": "instrument touching vessel",
             "t_start_ns": T0, "t_end_ns": None, "distance_mm": None}
    video, mask = _video(T0), _mask(T0 - 60_000_000, [alert])
    packet = _packet_from(video, fresh_mask(video, mask), None)
    assert [a.rule for a in packet.active_alerts] == ["vessel_contact"]
    scene = MaskAnnotator().annotate(packet.image.copy(), packet)
    assert scene[20, 20].tolist() != [90, 90, 90] and scene[50, 70].tolist() == [90, 90, 90]


def test_a_shared_frame_reused_before_it_is_read_is_skipped_not_fatal(free_tcp_endpoint):
    import threading
    import time

    from pipeline.display.viewer import run_display
    from pipeline.transport.untrusted import SHARED_DIR
    from pipeline.transport.zeromq import Publisher, SharedFrameRing

    if not SHARED_DIR.is_dir():
        pytest.skip("no /dev/shm")
    publisher = Publisher(free_tcp_endpoint)

    def publish():
        publisher.wait_for_subscriber(timeout=10)
        time.sleep(0.3)
        for frame_id in range(12):
            header = publisher.send_image("video", np.full((60, 80, 3), frame_id, np.uint8), "shm-bgr8",
                                          frame_id=frame_id, t_capture_ns=time.time_ns(), fps=30.0)
            if frame_id == 3:  # the display is late: this frame's slot is written over before it reads it
                stale_header = dict(header)
            time.sleep(0.05)
        ring = publisher.rings[("video", (60, 80, 3))]
        for _ in range(SharedFrameRing.SLOTS):
            ring.write(np.zeros((60, 80, 3), np.uint8))  # reuse every slot, frame 3's included
        publisher.send("video", {**stale_header, "t_publish_ns": time.time_ns()}, (b"",))
        time.sleep(0.2)
        publisher.send("status", {"state": "ended", "final": True, "t_capture_ns": time.time_ns()})

    sender = threading.Thread(target=publish, daemon=True)
    sender.start()
    try:
        summary = run_display(free_tcp_endpoint, headless=True, until_publisher_ends=True)
    finally:
        sender.join(timeout=10)
        publisher.close()
    assert summary["frames_overwritten"] == 1 and summary["frames_shown"] >= 10
