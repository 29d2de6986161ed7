"""Video files people can play: H.264 MP4 (PyAV), each frame at its own time.

Browsers play it (MPEG-4 Part 2, OpenCV's ``mp4v``, they refuse). A live recording is timed by
the capture clock in milliseconds, so a 25 s session records 25 s however many frames were
shown, and is fragmented with a keyframe every second, flushed as it goes: a recorder killed
outright (SIGKILL, power) leaves a file playable up to its last second. A replay's video is
timed by frame index at the source's rate (same frames, same times) with its index up front.
The file is written as ``NAME.partial.mp4`` and renamed on close, so a finished recording is
the only one under its final name.

    with Recorder("shown.mp4") as recorder:
        recorder.write(frame_bgr, t_ns)            # any clock, nanoseconds
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

LIVE_TIME_BASE = Fraction(1, 1000)  # live timestamps in milliseconds
FRAGMENT_S = 1.0  # a keyframe (and so a playable fragment) at least this often
PRESET = "ultrafast"  # the recorder shares the CPU with the live path
LIVE_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
FILE_OPTIONS = {"movflags": "+faststart"}


def partial_path(path: Path) -> Path:
    return path.with_name(path.stem + ".partial" + path.suffix)


class Recorder:
    """H.264 MP4 of BGR frames of one size (odd sizes are cropped by a pixel), each at its time."""

    def __init__(self, path: str | Path, nominal_fps: float = 30.0, live: bool = True, crf: int = 23,
                 lossless: bool = False):
        """``crf``: x264's quality (lower is better; 17-18 looks lossless); ``lossless``: every BGR pixel as
        it came (x264's RGB encoder at quantiser 0: larger files, not every browser plays them)."""
        import av  # noqa: F401  (loaded now, not when the first frame is due)

        self.path, self.live, self.crf, self.lossless = Path(path), live, crf, lossless
        self.partial = partial_path(self.path)
        self.nominal_fps = nominal_fps if nominal_fps and nominal_fps > 0 else 30.0
        self.rate = Fraction(self.nominal_fps).limit_denominator(1001)
        self.time_base = LIVE_TIME_BASE if live else 1 / self.rate
        self.container = self.stream = None
        self.first_ns: int | None = None
        self.last_pts = -1
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        import av

        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.partial), mode="w", format="mp4",
                                 options=LIVE_OPTIONS if self.live else FILE_OPTIONS)
        self.stream = self.container.add_stream("libx264rgb" if self.lossless else "libx264", rate=self.rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "bgr24" if self.lossless else "yuv420p"
        self.stream.time_base = self.stream.codec_context.time_base = self.time_base  # frames 1 tick apart stay apart
        self.stream.codec_context.gop_size = max(1, round(self.nominal_fps * FRAGMENT_S))
        quality = {"qp": "0"} if self.lossless else {"crf": str(self.crf)}
        self.stream.options = {"preset": PRESET, "tune": "zerolatency", "threads": "1", **quality}  # one core

    def write(self, image: np.ndarray, t_ns: int) -> None:
        """Add ``image`` (BGR uint8) shown at ``t_ns``; the first frame's size is the file's."""
        import av

        height, width = image.shape[0] & ~1, image.shape[1] & ~1  # 4:2:0 needs even sides
        if self.container is None:
            self._open(width, height)
            self.first_ns = t_ns
        elif (width, height) != (self.stream.width, self.stream.height):
            return  # a frame of another size (the source changed): not in this file
        if self.lossless:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
        else:  # BGR -> YUV 4:2:0 (BT.601, limited range: what the encoder's own conversion gives) by OpenCV, which
            # works without the interpreter lock: a receiving thread beside the recorder is not held up for it
            yuv = cv2.cvtColor(image[:height, :width], cv2.COLOR_BGR2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = max(round((t_ns - self.first_ns) / 1e9 / self.time_base), self.last_pts + 1)  # increasing
        frame.time_base = self.time_base
        self.last_pts = frame.pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Finish the file and give it its final name; None when nothing was recorded. ``complete=False``
        (the recording was cut short: a full disk) finishes what it can under the ``.partial`` name."""
        if self.container is None:
            return None
        container, self.container = self.container, None
        try:
            for packet in self.stream.encode():
                container.mux(packet)
        finally:
            container.close()
        if not complete:
            return None
        self.partial.replace(self.path)
        return self.path

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
