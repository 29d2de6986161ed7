"""Replay's second phase for one video: alerts in frame order, overlays drawn from the per-frame records, and
the outputs written (annotated video, frames.jsonl, alerts.jsonl, the report's series and thumbnails); frames
out of body are hidden in the video and thumbnails as the run's ``privacy`` mode says.

    finaliser = Finaliser(work, info, names, roles, config)
    finaliser.add(image, record)             # every frame, in order
    finaliser.close()
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket, Proximity, Segmentation
from pipeline.core.privacy import BLANK, OUTSIDE, shared_picture
from pipeline.display.recorder import Recorder
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import finishing_stages
from pipeline.runtime.records import thumbnail
from pipeline.runtime.video import VideoInfo
from pipeline.stages.undistort import Undistort


class Finaliser:
    """Phase 2 for one video: alerts in frame order, overlays from the records, outputs written."""

    def __init__(self, work: Path, info: VideoInfo, names, roles, config: PipelineConfig,
                 camera: CameraModel | None = None, overlapped: bool = True):
        self.work, self.info, self.names, self.roles = work, info, names, roles
        self.undistort = Undistort(camera) if camera else None  # the records' pixels are the undistorted picture's
        # the graph's finishing segment, on the host: every frame is analysed (nothing goes stale), alert ids
        # count from 1 in each video
        self.finish = finishing_stages(config, camera, alert_ids=itertools.count(1), stale_ms=float("inf"))
        self.recorder = Recorder(work / "annotated.mp4", info.fps, live=False)  # H.264, frame times as the source
        self.frames_file = open(work / "frames.jsonl", "w")
        self.alerts_file = open(work / "alerts.jsonl", "w")
        self.timeline: list[dict] = []
        self.overlapped = overlapped  # False: the records came from chunks analysed elsewhere
        self.series = {"t_s": [], "instrument": [], "vessel": [], "distance_px": []}
        self.thumbnails: dict[str, tuple[float, bytes]] = {}  # caption -> (video time, JPEG) for the report
        self.closest = float("inf")
        self.advisory_frames = 0  # frames with a "possible vessel" (advisory tier) outline
        self.privacy = config.privacy  # out-of-body frames in the annotated video and thumbnails
        self.privacy_frames = {OUTSIDE: 0, BLANK: 0}

    def add(self, image: np.ndarray, record: dict) -> None:
        packet = FramePacket(record["frame"], self.info.path, image, int(record["t_s"] * 1e9), 0)
        if self.undistort is not None:
            packet = self.undistort(packet)
        packet.segmentation = Segmentation.from_dict(record, self.info.size, self.names, self.roles)
        packet.proximity = Proximity.from_dict(record)
        for stage in self.finish:
            packet = stage(packet)
        state = record.get("privacy")
        if state in self.privacy_frames:
            self.privacy_frames[state] += 1
        packet.overlay = shared_picture(packet.overlay, state, self.privacy)  # the annotated video leaves the OR
        self.recorder.write(packet.overlay, packet.t_capture_ns)
        self.frames_file.write(json.dumps(record, separators=(",", ":")) + "\n")
        for event in packet.alerts:
            line = {**event.to_dict(), "t_s": round(event.t_capture_ns / 1e9, 6)}
            self.alerts_file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.timeline.append(line)
            if event.state == "raised":
                self.thumbnails[f"alert {event.alert_id}: {event.rule} ({event.priority})"] = \
                    (record["t_s"], thumbnail(packet.overlay))
        self.advisory_frames += bool(record.get("advisory"))
        if record["distance_px"] is not None and record["distance_px"] < self.closest:
            self.closest = record["distance_px"]
            self.thumbnails["closest approach"] = (record["t_s"], thumbnail(packet.overlay))
        area = {role: sum(i["area"] for i in record["instances"] if self.roles[i["class_id"]] == role)
                for role in ("instrument", "vessel")}
        self.series["t_s"].append(record["t_s"])
        self.series["instrument"].append(area["instrument"] / (self.info.size[0] * self.info.size[1]))
        self.series["vessel"].append(area["vessel"] / (self.info.size[0] * self.info.size[1]))
        self.series["distance_px"].append(record["distance_px"])

    def close(self) -> None:
        self.recorder.close()
        self.frames_file.close()
        self.alerts_file.close()
