"""The AI path, assembled in one place: live, replay, eval and the benchmarks all run this graph.

    graph = build_graph(model, PipelineConfig(), device="cpu")
    for stage in graph:                       # every stage, in data-flow order
        packet = stage(packet)
    graph.preprocess, graph.model, graph.evidence, graph.overlay      # the parts callers ask for, by name

First the ``privacy`` stage (out of body or not: live runs it in the capture thread, before the
frame is published; a frame out of body is not analysed, :meth:`Graph.hold`). Then four named
segments, in data-flow order: ``prepare`` ([undistort] -> preprocess), ``model``,
``describe`` (decode -> evidence -> proximity) and ``finish`` (alerts -> overlay -> [redistort]). The
CPU or CUDA variant of each stage is chosen here, once, from the device, the model's kind and its
backend; no stage decides per frame. Each stage declares the packet
fields it ``reads`` and ``writes``, and the chain is checked when it is built.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket, Proximity, Segmentation
from pipeline.core.privacy import INSIDE
from pipeline.runtime.config import PipelineConfig
from pipeline.stages.alerts.audit import AuditLog
from pipeline.stages.alerts.engine import Alerts
from pipeline.stages.alerts.rules import CLINICAL_RULES, build_rules
from pipeline.stages.analyse.cpu import MeasureProximity
from pipeline.stages.decode.instance import InstanceDecode
from pipeline.stages.decode.semantic import SemanticDecode
from pipeline.stages.evidence import VesselEvidence
from pipeline.stages.infer import SegmentationModel, TorchSegmentationModel
from pipeline.stages.overlay.cpu import Overlay
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from pipeline.stages.preprocess.geometry import model_input
from pipeline.stages.privacy import OutOfBodyModel, PrivacyGate
from pipeline.stages.undistort import Redistort, Undistort

CAPTURED = ("frame_id", "source", "image", "t_capture_ns", "t_capture_mono_ns", "truth")  # FramePacket.capture


class Stage(Protocol):
    """``packet -> packet``, declaring the packet fields it needs and the ones it fills."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def __call__(self, packet: FramePacket) -> FramePacket: ...


class GraphError(ValueError):
    """A stage reads a packet field that no stage before it writes."""


@dataclass
class Graph:
    """The AI path's stages in named segments; iterating gives them all in order."""

    prepare: list[Stage]  # [undistort] -> preprocess: per frame, before the model
    model: SegmentationModel  # one forward pass (replay batches it)
    decode: Stage  # the segment ``describe``: the frame's results from the model's outputs ...
    evidence: VesselEvidence
    proximity: Stage  # ... to the closest instrument-vessel pair
    finish: list[Stage]  # alerts -> overlay -> [redistort]: in frame order (replay: from the records)
    privacy: PrivacyGate | None = None  # first, right after capture (None: every frame taken as inside)

    @property
    def describe(self) -> list[Stage]:
        return [self.decode, self.evidence, self.proximity]

    def __iter__(self) -> Iterator[Stage]:
        yield from (*([self.privacy] if self.privacy else []), *self.analysis())

    def analysis(self) -> list[Stage]:
        """The stages after the privacy stage: what a frame inside the body goes through."""
        return [*self.prepare, self.model, *self.describe, *self.finish]

    def hold(self, packet: FramePacket) -> FramePacket:
        """A frame out of body (or blank): not analysed. Empty results, no overlay; the alerts stage still
        sees it, so that a vessel alarm raised before the scope came out is cleared, and the vessel
        evidence forgets the view before it (the scope comes back to another)."""
        self.evidence.reset()
        height, width = packet.image.shape[:2]
        packet.segmentation = Segmentation(np.zeros((height, width), np.uint8), self.model.names, self.model.roles,
                                           np.zeros(0, int), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
        packet.proximity = Proximity(math.inf)
        return self.alerts(packet) if self.finish else packet

    @staticmethod
    def analysed(packet: FramePacket) -> bool:
        """Whether the frame is analysed: inside the body, or not judged at all."""
        return packet.privacy in (None, INSIDE)

    @property
    def preprocess(self) -> Stage:
        return self.prepare[-1]

    @property
    def alerts(self) -> Stage:
        return self.finish[0]

    @property
    def overlay(self) -> Stage:
        return self.finish[1]

    def undrawn(self) -> list[Stage]:
        """The stages while nobody wants the drawn overlay: no overlay, and the decoder's class map only."""
        return [*self.prepare, self.model, self.decode.class_map_only(), self.evidence, self.proximity,
                *(stage for stage in self.finish if stage is not self.overlay)]


def build_graph(model: SegmentationModel, config: PipelineConfig, camera: CameraModel | None = None,
                audit: AuditLog | None = None, device: str = "cpu",
                fov: tuple[float, float, float] | None = None, alert_ids: itertools.count | None = None,
                stale_ms: float | None = None, finish: bool = True, privacy: OutOfBodyModel | None = None) -> Graph:
    """The AI path for ``model`` on ``device``.

    ``camera``: undistort first, map results back onto the original picture last; its scale
    gives distances in mm. ``fov``: the endoscope circle when known in advance (replay detects
    it once per recording). ``alert_ids`` / ``stale_ms``: replay's own alert numbering and no
    staleness (every frame is analysed); live takes the process-wide ids and ``config.stale_ms``.
    ``finish``: False leaves the finishing segment empty (replay runs its own from the records).
    ``privacy``: the out-of-body model, run every ``config.privacy_every`` frames (None: no privacy stage).
    """
    mm_per_px = config.mm_per_px or (camera.mm_per_px if camera else None)
    preprocess_args = {**model_input(model, config.imgsz), "crop_to_fov": config.crop_to_fov,
                       "fov": fov if config.crop_to_fov else None}
    on_gpu = device == "cuda"
    # Instances of a torch model are decoded on the GPU; ONNX Runtime and semantic outputs come to the host.
    device_decode = on_gpu and model.task == "segment" and isinstance(model, TorchSegmentationModel)
    model.place(device_input=on_gpu, device_outputs=device_decode)
    if on_gpu:  # the frame crosses to the GPU once; only results and the overlay come back
        from pipeline.stages.preprocess.cuda import CudaLetterboxPreprocess

        preprocess = CudaLetterboxPreprocess(**preprocess_args)
    else:
        preprocess = LetterboxPreprocess(**preprocess_args)
    if device_decode:
        from pipeline.stages.analyse.cuda import CudaMeasureProximity
        from pipeline.stages.overlay.cuda import CudaOverlay

        proximity, overlay = CudaMeasureProximity(mm_per_px), CudaOverlay()
    else:
        proximity, overlay = MeasureProximity(mm_per_px), None
    graph = Graph(prepare=[*([Undistort(camera)] if camera else []), preprocess],  # the overlay needs the
                  model=model,                                                     # straightened picture itself
                  decode=decode_stage(model, device_decode), evidence=VesselEvidence(model.operating_points),
                  proximity=proximity,
                  finish=finishing_stages(config, camera, audit, overlay, alert_ids, stale_ms) if finish else [],
                  privacy=PrivacyGate(privacy, config.privacy_every) if privacy else None)
    check_chain(list(graph))
    return graph


def decode_stage(model: SegmentationModel, on_device: bool = False) -> Stage:
    """The decoder for ``model``'s outputs: instances or a class map, on the host or (``on_device``) the GPU."""
    if on_device:
        from pipeline.stages.decode.cuda import CudaInstanceDecode

        return CudaInstanceDecode(model.names, model.roles, model.conf, model.iou)
    if model.task == "semantic":
        return SemanticDecode(model.names, model.roles)
    return InstanceDecode(model.names, model.roles, model.conf, model.iou)


def finishing_stages(config: PipelineConfig, camera: CameraModel | None = None, audit: AuditLog | None = None,
                     overlay: Stage | None = None, alert_ids: itertools.count | None = None,
                     stale_ms: float | None = None) -> list[Stage]:
    """The stages after the analysis: alerts -> overlay (CPU unless given) -> [redistort].

    Replay runs them, in frame order, on results rebuilt from its per-frame records.
    """
    alerts = Alerts(build_rules(CLINICAL_RULES, config.alerts), audit,
                    config.stale_ms if stale_ms is None else stale_ms, alert_ids)
    return [alerts, overlay or Overlay(), *([Redistort(camera, config.overlay_view)] if camera else [])]


def check_chain(stages: list[Stage]) -> None:
    """Every field a stage reads is captured or written by a stage before it (:class:`GraphError`)."""
    available = set(CAPTURED)
    for stage in stages:
        missing = [field for field in stage.reads if field not in available]
        if missing:
            raise GraphError(f"{type(stage).__name__} reads {', '.join(missing)}, which no stage before it writes")
        available.update(stage.writes)
