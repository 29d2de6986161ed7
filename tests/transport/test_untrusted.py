"""The display under a hostile peer: random and mutated messages never crash, freeze or blind it."""
import json
import os
import threading
import time
import zlib

import numpy as np
import pytest
import zmq

from pipeline.display.viewer import run_display
from pipeline.transport.untrusted import SHARED_DIR, BadMessage, TransportError, decode_image, parse

TOPICS = ("video", "overlay", "mask", "alert", "status")


def _video_header(frame_id, **changes):
    header = {"schema_version": 1, "topic": "video", "stream": "fuzz", "seq": frame_id, "frame_id": frame_id,
              "t_capture_ns": time.time_ns(), "t_publish_ns": time.time_ns(), "shape": [48, 64, 3], "dtype": "uint8",
              "encoding": "raw-bgr8", "fps": 30.0}
    return {**header, **changes}


def _mask_header(**changes):
    header = {**_video_header(0), "topic": "mask", "shape": [48, 64], "encoding": "zlib", "timings_ms": {},
              "classes": [{"value": 1, "name": "instrument", "role": "instrument"}], "active_alerts": [],
              "proximity": {"distance_px": None, "distance_mm": None, "mm_per_px": None, "instrument_point": None,
                            "vessel_point": None}}
    header.pop("fps")
    return {**header, **changes}


def _shm(path, offset=8, generation=2):
    return _video_header(0, encoding="shm-bgr8", shm={"path": path, "offset": offset, "generation": generation})


def _hostile_messages(fifo) -> list[list[bytes]]:
    frame = bytes(48 * 64 * 3)
    as_json = lambda header: json.dumps(header).encode()  # noqa: E731
    bomb = zlib.compress(bytes(200 << 20), 9)  # 200 MB of zeros in 200 kB
    messages = [
        [b"video"],  # one part
        [b"video", b"{not json", frame],
        [b"\xff\xfe", as_json(_video_header(0)), frame],  # topic not UTF-8
        [b"video", b"[1, 2, 3]", frame],  # a JSON list
        [b"video", as_json({"topic": "video"}), frame],  # missing fields
        [b"video", as_json(_video_header(0, shape=[-48, 64, 3])), frame],
        [b"video", as_json(_video_header(0, shape=[100000, 100000, 3])), frame],
        [b"video", as_json(_video_header(0)), frame[:-1]],  # payload one byte short
        [b"video", as_json(_video_header(0)), b"x" * 10],
        [b"mask", as_json(_mask_header()), bomb],  # a zlib bomb
        [b"video", as_json(_shm("/dev/shm/orsight-x", offset=0)), b""],
        [b"video", as_json(_shm("/dev/shm/orsight-x", offset=-8)), b""],
        [b"video", as_json(_shm(fifo)), b""],  # a FIFO would block a plain open forever
        [b"video", as_json(_shm("/etc/passwd")), b""],
        [b"video", as_json(_shm("/dev/shm/../../etc/passwd")), b""],
        [b"video", b"{" * 100000, frame],  # deep nesting
        [b"video", b" " * (70 << 10), frame],  # an oversized header
    ]
    rng = np.random.default_rng(0)
    valid = [b"video", as_json(_video_header(0)), frame]
    for _ in range(40):  # random mutations of a valid message
        mutated = [bytearray(part) for part in valid]
        part = mutated[rng.integers(0, 2)]
        for _ in range(rng.integers(1, 4)):
            if part:
                part[rng.integers(0, len(part))] = rng.integers(0, 256)
        messages.append([bytes(p) for p in mutated[: rng.integers(1, 4)]])
    return messages


@pytest.fixture
def fifo():
    if not SHARED_DIR.is_dir():
        pytest.skip("no /dev/shm")
    path = SHARED_DIR / f"orsight-fuzz-{os.getpid()}"
    os.mkfifo(path)
    yield str(path)
    path.unlink()


def test_every_bad_message_is_refused_in_one_line_of_reason(fifo):
    refused, shown = 0, 0
    for frames in _hostile_messages(fifo):
        try:
            message = parse(frames, time.time_ns(), TOPICS)
        except BadMessage as error:
            assert str(error) and "\n" not in str(error)
            refused += 1
            continue
        try:
            decode_image(message)
            shown += 1  # a mutation that kept the message valid (a byte of the picture changed)
        except TransportError:
            refused += 1
    assert refused >= 17 and refused + shown == len(_hostile_messages(fifo))


def test_the_display_keeps_showing_video_between_hostile_messages(free_tcp_endpoint, fifo):
    context = zmq.Context.instance()
    socket = context.socket(zmq.PUB)
    socket.bind(free_tcp_endpoint)
    hostile = _hostile_messages(fifo)
    summary, stop = {}, threading.Event()
    display = threading.Thread(target=lambda: summary.update(run_display(free_tcp_endpoint, headless=True,
                                                                         stop=stop, until_publisher_ends=True)),
                               daemon=True)
    display.start()
    time.sleep(0.5)
    for frame_id, frames in enumerate(hostile):
        socket.send_multipart(frames)
        time.sleep(0.01)
        socket.send_multipart([b"video", json.dumps(_video_header(frame_id)).encode(), bytes(48 * 64 * 3)])
        time.sleep(0.03)
    socket.send_multipart([b"status", json.dumps({"schema_version": 1, "topic": "status", "stream": "fuzz", "seq": 0,
                                                  "t_capture_ns": time.time_ns(), "t_publish_ns": time.time_ns(),
                                                  "state": "ended", "final": True}).encode()])
    display.join(timeout=10)
    stop.set()
    socket.close()
    assert not display.is_alive()  # no hang
    assert summary["frames_shown"] >= 0.8 * len(hostile)  # the picture kept flowing
    assert sum(summary["messages_rejected"].values()) >= 12


def test_no_video_brings_no_signal_instead_of_a_frozen_picture(free_tcp_endpoint, tmp_path):
    context = zmq.Context.instance()
    socket = context.socket(zmq.PUB)
    socket.bind(free_tcp_endpoint)
    summary, stop = {}, threading.Event()
    display = threading.Thread(target=lambda: summary.update(run_display(free_tcp_endpoint, headless=True,
                                                                         no_signal_ms=200, stop=stop)), daemon=True)
    display.start()
    time.sleep(0.5)
    for frame_id in range(5):
        socket.send_multipart([b"video", json.dumps(_video_header(frame_id)).encode(), bytes(48 * 64 * 3)])
        time.sleep(0.03)
    time.sleep(1.5)  # the publisher falls silent: the display says so, and stays up
    assert display.is_alive()
    for frame_id in range(5, 10):  # it comes back
        socket.send_multipart([b"video", json.dumps(_video_header(frame_id)).encode(), bytes(48 * 64 * 3)])
        time.sleep(0.03)
    time.sleep(0.3)
    stop.set()
    display.join(timeout=5)
    socket.close()
    assert summary["no_signal_screens"] >= 5 and summary["frames_shown"] >= 8


def test_no_signal_screen_says_capture_lost_when_the_publisher_does():
    from pipeline.display.viewer import no_signal_screen
    from pipeline.transport.untrusted import Message

    lost = Message("status", {"state": "capture_lost"}, [], 0)
    red = no_signal_screen((120, 160), lost, 0)
    assert red[1, -2].tolist() == [0, 0, 230] and not red[100, 100].any()  # the banner, on black
