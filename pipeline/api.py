"""The Python API: the live path's own stages on your frames and videos.

    from pipeline import Analyzer

    analyzer = Analyzer()                          # the shipped model on the CPU (model=, device=, config=)
    result = analyzer.analyse(frame_bgr)           # a numpy (H, W, 3) uint8 picture
    result.instances                               # [{"class", "role", "score", "box", "area", "polygons"}, ...]
    result.class_map, result.masks                 # (H, W) class values, (N, H, W) instance masks
    result.proximity.distance_px, result.alerts    # closest instrument-vessel gap, active alerts
    result.proximity.tier, result.advisory         # the vessel's evidence tier; "possible vessel" outlines
    cv2.imwrite("overlay.png", result.plot())      # the overlay the OR display shows
    Analyzer(privacy=True).analyse(frame).privacy  # "inside", "outside", "blank": outside frames are not analysed
    result.plot(shared=True)                       # ... and hidden as in every picture that leaves the monitor
    print(result.to_json())
    for t_s, result in analyzer.stream("case1.mp4"):                  # every frame on the video's own times
        print(t_s, [a.message for a in result.alerts])
    summaries, errors = analyzer.replay(["case1.mp4"], "results/")    # orsight replay

``orsight eval`` scores models through this class, so the API is what the command line runs.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.packet import FramePacket
from pipeline.core.privacy import shared_picture
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.stages.infer import SegmentationModel, load_model
from pipeline.stages.privacy import OutOfBodyModel


@dataclasses.dataclass
class Result:
    """What the pipeline found in one frame, in the frame's pixels."""

    packet: FramePacket

    @property
    def class_map(self) -> np.ndarray:
        """(H, W) uint8: 0 background, class index + 1 elsewhere."""
        return self.packet.segmentation.class_map

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool, one per instance."""
        return self.packet.segmentation.masks

    @property
    def instances(self) -> list[dict]:
        """One dict per instance: class, class_id, role, score, box, area and outlines (``Segmentation.to_dict``)."""
        return self.segmentation_dict["instances"]

    @functools.cached_property
    def segmentation_dict(self) -> dict:
        """``Segmentation.to_dict`` of this frame (its outlines are traced once, on first use)."""
        return self.packet.segmentation.to_dict()

    @property
    def proximity(self):
        """The closest instrument-vessel pair (``distance_px`` inf when one of them is absent)."""
        return self.packet.proximity

    @property
    def advisory(self) -> list:
        """Advisory-tier vessel regions ("possible vessel": confidence, evidence, outline), not in ``class_map``."""
        return self.packet.segmentation.advisory

    @property
    def alerts(self) -> list:
        """The clinical alerts active after this frame, highest priority first."""
        return self.packet.active_alerts

    @property
    def privacy(self) -> str | None:
        """inside, outside or blank (an ``Analyzer(privacy=True)``), else None."""
        return self.packet.privacy

    def plot(self, shared: bool = False, mode: str = "blur") -> np.ndarray:
        """The picture with masks, labels, the proximity line and alert banners (BGR), as the OR display shows it;
        ``shared``: as it may leave the monitor (an out-of-body frame blurred, or blanked with ``mode="blank"``)."""
        return shared_picture(self.packet.overlay, self.privacy, mode) if shared else self.packet.overlay

    def to_json(self) -> str:
        return json.dumps({"frame": self.packet.frame_id, **self.segmentation_dict,
                           **self.proximity.to_dict(), "alerts": [a.to_dict() for a in self.alerts],
                           "timings_ms": {k: round(v, 3) for k, v in self.packet.timings_ms.items()}})


class Analyzer:
    """A model and the live graph built around it; frames analysed one after another (alerts follow them)."""

    def __init__(self, model: str | Path | SegmentationModel | None = None, device: str = "cpu",
                 config: PipelineConfig | None = None, camera=None, threads: int | None = None,
                 privacy: bool = False):
        self.config = config or PipelineConfig()
        self.model = model if isinstance(model, SegmentationModel) else \
            load_model(model, device=device, threads=threads, conf=self.config.conf, iou=self.config.iou,
                       roles=self.config.roles)
        self.device, self.camera = device, camera
        self.graph = build_graph(self.model, dataclasses.replace(self.config, privacy_every=1), camera, device=device,
                                 stale_ms=float("inf"),  # every frame given is analysed: none goes stale
                                 privacy=OutOfBodyModel() if privacy else None)
        self.frames = 0

    def analyse(self, image: np.ndarray, new_scene: bool = False, t_ns: int | None = None) -> Result:
        """One BGR frame through the graph. ``t_ns``: the frame's media time in nanoseconds (its place
        in the video: alerts then follow the video, the same on every run); the wall clock when None.
        ``new_scene``: detect the field of view again (a frame from another recording)."""
        if new_scene:
            self.graph.preprocess.redetect()
            self.graph.evidence.reset()
        packet = FramePacket.capture(image, self.frames, "api") if t_ns is None else \
            FramePacket(self.frames, "api", image, int(t_ns), int(t_ns))
        self.frames += 1
        if self.graph.privacy is not None:
            packet = self.graph.privacy(packet)
        if not self.graph.analysed(packet):  # out of body: not analysed, the picture as it is
            packet = self.graph.hold(packet)
            packet.overlay = packet.image.copy()
            return Result(packet)
        for stage in self.graph.analysis():
            packet = stage(packet)
        return Result(packet)

    def stream(self, video: str | Path) -> Iterator[tuple[float, Result]]:
        """``(time in seconds, result)`` for every frame of ``video`` (a file or a folder of images), in order,
        on the video's own times, as replay reads it: the same alerts on every run."""
        from pipeline.runtime.video import probe, read_frames

        fps = probe(str(video)).fps
        for index, image in read_frames(str(video)):
            yield index / fps, self.analyse(image, new_scene=index == 0, t_ns=round(index / fps * 1e9))

    def replay(self, videos: list[str | Path], out: str | Path, **options) -> tuple[list[dict], dict[str, str]]:
        """``orsight replay``: every frame of each video, outputs under ``out``; ``options`` of ReplayOptions."""
        from pipeline.runtime.replay import ReplayOptions, replay_videos

        settings = ReplayOptions(device=self.device, config=self.config, camera=self.camera,
                                 **{"progress": False, **options})
        return replay_videos([str(v) for v in videos], out, self.model.path, settings)
