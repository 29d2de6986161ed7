"""``orsight run --record DIR``: keep a live case for replay, as it was captured.

What the run publishes is recorded beside it, by a thread of its own (the surgeon's picture
never waits for the encoder): every `video` frame, raw (H.264 at CRF 17, or lossless with
``lossless``; through the privacy gate: a frame out of body is hidden as the run's mode says),
its capture time, and every `alert` and `status` message. Everything is written as it comes:
the video in one-second fragments, one line per frame, alert and status, so a crash loses at most
the last second. ``orsight replay DIR`` then analyses the frames on their own capture times.

    DIR/video.mp4        the frames (fragmented MP4; lossless: x264's RGB encoder at quantiser 0)
    DIR/frames.csv       frame,t_capture_ns,privacy   (one line per frame in video.mp4, in order)
    DIR/alerts.jsonl     the alert transitions as published
    DIR/status.jsonl     the heartbeats
    DIR/recording.json   what was recorded, written at the end ("complete": true)

    recording = LiveRecording("case/", fps=30.0)
    publisher = RecordingPublisher(Publisher(endpoint), recording)    # run_live publishes through it
    ...
    summary = recording.close()
"""
from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import numpy as np

from pipeline.core.privacy import shared_picture
from pipeline.display.recorder import Recorder
from pipeline.runtime.video import RECORDED_TIMES, RECORDED_VIDEO

HIGH_QUALITY_CRF = 17
QUEUE_FRAMES = 30  # frames waiting for the encoder; beyond, a frame is not recorded (counted)


class LiveRecording:
    """The recording of one run in ``folder`` (made; an earlier recording there is refused by the caller)."""

    def __init__(self, folder: str | Path, fps: float, lossless: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.video = Recorder(self.folder / RECORDED_VIDEO, fps, live=True, crf=HIGH_QUALITY_CRF, lossless=lossless)
        self.times = (self.folder / RECORDED_TIMES).open("w", buffering=1)
        self.times.write("frame,t_capture_ns,privacy\n")
        self.alerts = (self.folder / "alerts.jsonl").open("w", buffering=1)
        self.status = (self.folder / "status.jsonl").open("w", buffering=1)
        self.lossless, self.recorded, self.dropped = lossless, 0, 0
        self.pending: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.thread = threading.Thread(target=self._encode, name="orsight-record", daemon=True)
        self.thread.start()

    def frame(self, image: np.ndarray, header: dict) -> None:
        """A published video frame (its header: frame_id, t_capture_ns, privacy): queued for the encoder."""
        try:
            self.pending.put_nowait((image, header))
        except queue.Full:
            self.dropped += 1

    def line(self, topic: str, header: dict) -> None:
        """An alert or status message, as published."""
        (self.alerts if topic == "alert" else self.status).write(json.dumps(header, default=str) + "\n")

    def _encode(self) -> None:
        while (item := self.pending.get()) is not None:
            image, header = item
            picture = shared_picture(image, header.get("privacy"), header.get("privacy_mode", "blur"))
            self.video.write(picture, header["t_capture_ns"])
            self.times.write(f"{header['frame_id']},{header['t_capture_ns']},{header.get('privacy') or ''}\n")
            self.recorded += 1

    def close(self) -> dict:
        """Finish the video and the files; ``recording.json`` says what was recorded."""
        self.pending.put(None)
        self.thread.join()
        self.video.close()
        for file in (self.times, self.alerts, self.status):
            file.close()
        summary = {"folder": str(self.folder), "frames": self.recorded, "frames_not_recorded": self.dropped,
                   "lossless": self.lossless, "complete": True}
        (self.folder / "recording.json").write_text(json.dumps(summary, indent=2))
        return summary


class RecordingPublisher:
    """A publisher that also hands what it sends to a :class:`LiveRecording`: video frames, alerts, status."""

    def __init__(self, publisher, recording: LiveRecording):
        self.publisher, self.recording = publisher, recording

    def send_image(self, topic: str, image: np.ndarray, encoding: str, jpeg_quality: int = 85, **fields) -> dict:
        sent = self.publisher.send_image(topic, image, encoding, jpeg_quality, **fields)
        if topic == "video":
            self.recording.frame(image, fields)
        return sent

    def send(self, topic: str, fields: dict, payloads: tuple = ()) -> dict:
        if topic in ("alert", "status"):
            self.recording.line(topic, fields)
        return self.publisher.send(topic, fields, payloads)

    def __getattr__(self, name: str):
        return getattr(self.publisher, name)
