import json
import os
import time

import numpy as np
import pytest

from pipeline.transport.untrusted import SHARED_DIR, TransportError, decode_image
from pipeline.transport.zeromq import (
    Publisher,
    Receiver,
    SharedFrameRing,
    default_mask_encoding,
    default_video_encoding,
    encode_image,
)

needs_shm = pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="no /dev/shm")


@pytest.mark.parametrize("encoding", ["raw-bgr8", "png", "jpeg", "zlib",
                                      pytest.param("shm-bgr8", marks=needs_shm)])
def test_image_round_trip_over_loopback(free_tcp_endpoint, encoding):
    publisher = Publisher(free_tcp_endpoint)
    receiver = Receiver(free_tcp_endpoint, topics=("video",)).start()
    try:
        assert publisher.wait_for_subscriber(timeout=5)
        ramp = np.add.outer(np.arange(48), np.arange(64)).astype(np.uint8)  # smooth, so JPEG stays close
        image = np.dstack([ramp, ramp + 40, ramp + 80])
        for frame_id in range(3):
            publisher.send_image("video", image, encoding, frame_id=frame_id, t_capture_ns=time.time_ns(), fps=30.0)
        message = None
        for _ in range(3):
            message = receiver.wait_newer("video", message, timeout=5)
            if message.header["frame_id"] == 2:
                break
        assert message.header["seq"] == 2 and message.header["encoding"] == encoding
        decoded = decode_image(message)
        if encoding == "jpeg":
            assert np.abs(decoded.astype(int) - image).mean() < 3
        else:
            assert np.array_equal(decoded, image)
        assert receiver.counts["video"] >= 1 and len(receiver.delays_ms["video"]) >= 1
    finally:
        receiver.stop()
        publisher.close()


def test_the_receiver_tells_the_publishers_part_of_the_delay_from_the_transit(free_tcp_endpoint):
    publisher = Publisher(free_tcp_endpoint)
    receiver = Receiver(free_tcp_endpoint, topics=("video",)).start()
    try:
        assert publisher.wait_for_subscriber(timeout=5)
        captured = time.time_ns() - 200_000_000  # the publisher held this frame for 200 ms before sending it
        publisher.send_image("video", np.zeros((4, 4, 3), np.uint8), "raw-bgr8", frame_id=0, t_capture_ns=captured,
                             fps=30.0)
        assert receiver.wait_newer("video", None, timeout=5) is not None
        delay, transit = receiver.delays_ms["video"][0], receiver.transit_ms["video"][0]
        assert delay >= 200 and 0 <= transit < 100 and delay - transit >= 195
    finally:
        receiver.stop()
        publisher.close()


def test_port_in_use_is_a_clear_error(free_tcp_endpoint):
    first = Publisher(free_tcp_endpoint)
    try:
        with pytest.raises(TransportError, match="cannot publish on"):
            Publisher(free_tcp_endpoint)
    finally:
        first.close()


def test_unknown_encoding_is_refused():
    with pytest.raises(TransportError, match="unknown encoding"):
        encode_image(np.zeros((2, 2, 3), np.uint8), "webp")


def _frames_over(endpoint: str, count: int, shape=(6, 8, 3)):
    """Publish ``count`` distinct shm-bgr8 frames; the messages as received, and the publisher (open)."""
    publisher = Publisher(endpoint)
    receiver = Receiver(endpoint, topics=("video",)).start()
    seen = []
    try:
        assert publisher.wait_for_subscriber(timeout=5)
        for frame_id in range(count):
            publisher.send_image("video", np.full(shape, frame_id, np.uint8), "shm-bgr8", frame_id=frame_id,
                                 t_capture_ns=time.time_ns(), fps=30.0)
            time.sleep(0.02)  # a frame rate: a burst faster than the subscriber reads is dropped by design
            seen.append(receiver.wait_newer("video", seen[-1] if seen else None, timeout=5))
    finally:
        receiver.stop()
    return seen, publisher


@needs_shm
def test_shared_frame_overwritten_before_reading_is_refused_not_torn(free_tcp_endpoint):
    seen, publisher = _frames_over(free_tcp_endpoint, SharedFrameRing.SLOTS + 1)
    try:
        assert decode_image(seen[-1])[0, 0, 0] == SharedFrameRing.SLOTS  # the newest is intact
        assert decode_image(seen[1])[0, 0, 0] == 1  # still in the ring
        with pytest.raises(TransportError, match="overwritten"):
            decode_image(seen[0])  # its slot now holds the newest frame
    finally:
        publisher.close()


@needs_shm
def test_shared_ring_is_removed_on_close_and_orphans_are_swept(free_tcp_endpoint):
    orphan = SHARED_DIR / "orsight-test-999999999-0"  # a pid that cannot be alive
    orphan.write_bytes(b"left by a crashed publisher")
    seen, publisher = _frames_over(free_tcp_endpoint, 1)
    ring_file = seen[0].header["shm"]["path"]
    assert not orphan.exists() and SHARED_DIR.joinpath(ring_file).exists()
    publisher.close()
    assert not SHARED_DIR.joinpath(ring_file).exists()


def test_video_and_mask_go_through_shared_memory_only_on_same_host_links():
    shared = SHARED_DIR.is_dir()
    for local in ("ipc:///tmp/or.sock", "tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555"):
        assert default_video_encoding(local) == ("shm-bgr8" if shared else "raw-bgr8")
        assert default_mask_encoding(local) == ("shm-bgr8" if shared else "zlib")
    for remote in ("tcp://0.0.0.0:5555", "tcp://10.1.2.3:5555", "tcp://*:5555", "tcp://127-lab.example:5555"):
        assert default_video_encoding(remote) == "raw-bgr8" and default_mask_encoding(remote) == "zlib"


@needs_shm
def test_a_full_shared_memory_falls_back_to_frames_through_the_socket(free_tcp_endpoint, monkeypatch, capfd):
    def no_room(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.posix_fallocate", no_room)  # as a 64 MB /dev/shm does with big frames
    seen, publisher = _frames_over(free_tcp_endpoint, 2)
    publisher.close()
    assert [m.header["encoding"] for m in seen] == ["raw-bgr8", "raw-bgr8"]
    assert decode_image(seen[1])[0, 0, 0] == 1
    assert "no room" in capfd.readouterr().err and not list(SHARED_DIR.glob(f"orsight-*-{os.getpid()}-*"))


def test_the_packaged_schema_is_the_one_the_protocol_prints():
    import re
    from pathlib import Path

    from pipeline.transport.untrusted import SCHEMA_PATH

    document = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    printed = re.search(r"## Machine-readable schema.*?```json\n(.*?)```", document, re.S).group(1)
    assert json.loads(printed) == json.loads(SCHEMA_PATH.read_text())


def _until(condition, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_publisher_knows_which_topics_are_wanted(free_tcp_endpoint):
    publisher = Publisher(free_tcp_endpoint)
    display = everything = None
    try:
        assert not publisher.wants("overlay")
        display = Receiver(free_tcp_endpoint, topics=("video", "mask")).start()
        assert publisher.wait_for_subscriber(timeout=5)
        assert _until(lambda: publisher.wants("mask")) and publisher.wants("video")
        assert not publisher.wants("overlay")
        everything = Receiver(free_tcp_endpoint).start()  # every topic, overlay too
        assert _until(lambda: publisher.wants("overlay"))
        everything.stop()  # the last overlay subscriber leaves
        assert _until(lambda: not publisher.wants("overlay"))
        assert publisher.wants("mask")
    finally:
        for receiver in (display, everything):
            if receiver is not None:
                receiver.stop()
        publisher.close()


def test_the_default_endpoint_is_a_socket_only_this_user_can_open(tmp_path, monkeypatch):
    import os
    import stat

    from pipeline.transport import zeromq
    from pipeline.transport.endpoint import private_folder
    from pipeline.transport.untrusted import TransportError

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    endpoint = f"ipc://{private_folder()}/live.sock"
    publisher = zeromq.Publisher(endpoint)
    publisher.close()
    assert stat.S_IMODE(os.stat(tmp_path / "orsight").st_mode) == 0o700
    os.chmod(tmp_path / "orsight", 0o755)  # opened up by someone: refused, not used
    with pytest.raises(TransportError, match="not this user's alone"):
        zeromq.Publisher(endpoint)
    assert zeromq.DEFAULT_ENDPOINT.startswith("ipc://")
