"""Helpers shared by the tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket
from pipeline.runtime.graph import decode_stage
from pipeline.stages.infer import SegmentationModel

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "endoscapes"  # real frames, never committed
PINHOLE = CameraModel("pinhole", np.array([[600.0, 0, 322], [0, 605, 236], [0, 0, 1]]),
                      np.array([-0.25, 0.08, 0.001, -0.001, 0.0]), (640, 480))


def write_video(path, frames=12, size=(160, 120), fps=25):
    """A small MPEG-4 file whose frames are flat greys (frame i: i * 20 mod 255)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * 20 % 255, np.uint8))
    writer.release()


def segment(model: SegmentationModel, packet: FramePacket) -> FramePacket:
    """A preprocessed packet through the model and its decoder (as the graph chains them)."""
    return decode_stage(model)(model(packet))


def frame_times(path) -> list[float]:
    """Presentation time (s) of every frame of a video file, decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]
