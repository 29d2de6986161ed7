import time

import numpy as np
import pytest

from pipeline.transport import Publisher, Receiver, TransportError, decode_image, encode_image


@pytest.mark.parametrize("encoding", ["raw-bgr8", "png", "jpeg", "zlib"])
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
