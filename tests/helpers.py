"""Helpers shared by the tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket
from pipeline.runtime.graph import decode_stage
from pipeline.stages.infer import SegmentationModel
from pipeline.transport.zeromq import Publisher

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "endoscapes"  # real frames, never committed
PINHOLE = CameraModel("pinhole", np.array([[600.0, 0, 322], [0, 605, 236], [0, 0, 1]]),
                      np.array([-0.25, 0.08, 0.001, -0.001, 0.0]), (640, 480))


def orsight(*args, timeout: float = 240, **options) -> subprocess.CompletedProcess:
    """The command line as a user runs it, in a process of its own: ``orsight ARGS...`` (text output captured)."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **options)


def can_split_cpus() -> bool:
    """Whether this process may use two CPUs or more and move its threads between them (Linux, not forbidden)."""
    if not hasattr(os, "sched_getaffinity") or len(allowed := os.sched_getaffinity(0)) < 2:
        return False
    try:
        os.sched_setaffinity(0, {min(allowed)})
        os.sched_setaffinity(0, allowed)
    except OSError:
        return False
    return True


def write_video(path, frames=12, size=(160, 120), fps=25):
    """A small MPEG-4 file whose frames are flat greys (frame i: i * 20 mod 255)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * 20 % 255, np.uint8))
    writer.release()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def segment(model: SegmentationModel, packet: FramePacket) -> FramePacket:
    """A preprocessed packet through the model and its decoder (as the graph chains them)."""
    return decode_stage(model)(model(packet))


def frame_times(path) -> list[float]:
    """Presentation time (s) of every frame of a video file, decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]


ALERT = {"alert_id": 1, "rule": "vessel_contact", "state": "raised", "priority": "high", "frame_id": 0,
         "t_capture_ns": 0, "t_start_ns": 0, "t_end_ns": None, "distance_px": 2.0, "distance_mm": None,
         "location": [40, 40], "message": "instrument touching vessel"}


POSSIBLE_VESSEL = {"tier": "advisory", "confidence": 0.42, "evidence": 0.001, "box": [250, 20, 300, 40],
                   "polygons": [[250, 20, 300, 20, 300, 40, 250, 40]]}  # a mask header's advisory-tier region


def publish_synthetic(publisher: Publisher, stop: threading.Event) -> None:
    """Until ``stop``: a moving picture (a bright square sliding right) at 30 fps with its mask, a "possible
    vessel" outline, the closest points, a raised high alert on the mask, and an ``alert`` message every 10
    frames."""
    publisher.wait_for_subscriber(timeout=10)
    frame_id = 0
    while not stop.is_set():
        image = np.full((240, 320, 3), 60, np.uint8)
        x = (frame_id * 4) % 280
        image[100:140, x:x + 40] = 250
        now = time.time_ns()
        publisher.send_image("video", image, "raw-bgr8", frame_id=frame_id, t_capture_ns=now, fps=30.0)
        class_map = np.zeros((240, 320), np.uint8)
        class_map[100:140, x:x + 40] = 1
        publisher.send_image("mask", class_map, "zlib", frame_id=frame_id, t_capture_ns=now, timings_ms={},
                             classes=[{"value": 1, "name": "instrument", "role": "instrument"}],
                             proximity={"distance_px": 10.0, "distance_mm": None, "mm_per_px": None,
                                        "instrument_point": [x + 40, 120], "vessel_point": [x + 50, 120]},
                             active_alerts=[{**ALERT, "frame_id": frame_id, "t_capture_ns": now}],
                             advisory=[POSSIBLE_VESSEL])
        if frame_id % 10 == 0:
            publisher.send("alert", {**ALERT, "frame_id": frame_id, "t_capture_ns": now, "timings_ms": {}})
        frame_id += 1
        time.sleep(1 / 30)
