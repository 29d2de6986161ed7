"""The AI path, assembled in one place: live, replay, eval and the benchmarks all run this list.

    stages = build_graph(model, PipelineConfig(), device="cpu")
    for stage in stages:
        packet = stage(packet)

In data-flow order: [undistort] -> preprocess -> infer -> decode -> evidence -> analyse -> alerts
-> overlay -> [redistort]. The CPU or CUDA variant of each stage is chosen here, once, from the device, the
model's kind and its backend; no stage decides per frame. Each stage declares the packet
fields it ``reads`` and ``writes``, and the chain is checked when it is built.
"""
from __future__ import annotations

import itertools
from typing import Protocol

from calibration.camera import CameraModel
from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.stages.alerts.audit import AuditLog
from pipeline.stages.alerts.engine import Alerts
from pipeline.stages.alerts.rules import CLINICAL_RULES, build_rules
from pipeline.stages.analyse.cpu import Analyse
from pipeline.stages.decode.instance import InstanceDecode
from pipeline.stages.decode.semantic import SemanticDecode
from pipeline.stages.evidence import VesselEvidence
from pipeline.stages.infer import SegmentationModel, TorchSegmentationModel
from pipeline.stages.overlay.cpu import Overlay
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from pipeline.stages.preprocess.geometry import model_input
from pipeline.stages.undistort import Redistort, Undistort

CAPTURED = ("frame_id", "source", "image", "t_capture_ns", "t_capture_mono_ns", "truth")  # FramePacket.capture


class Stage(Protocol):
    """``packet -> packet``, declaring the packet fields it needs and the ones it fills."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def __call__(self, packet: FramePacket) -> FramePacket: ...


class GraphError(ValueError):
    """A stage reads a packet field that no stage before it writes."""


def build_graph(model: SegmentationModel, config: PipelineConfig, camera: CameraModel | None = None,
                audit: AuditLog | None = None, device: str = "cpu",
                fov: tuple[float, float, float] | None = None, alert_ids: itertools.count | None = None,
                stale_ms: float | None = None) -> list[Stage]:
    """The stages of the AI path for ``model`` on ``device``.

    ``camera``: undistort first, map results back onto the original picture last; its scale
    gives distances in mm. ``fov``: the endoscope circle when known in advance (replay detects
    it once per recording). ``alert_ids`` / ``stale_ms``: replay's own alert numbering and no
    staleness (every frame is analysed); live takes the process-wide ids and ``config.stale_ms``.
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
        from pipeline.stages.analyse.cuda import CudaAnalyse
        from pipeline.stages.overlay.cuda import CudaOverlay

        analyse, overlay = CudaAnalyse(mm_per_px), CudaOverlay()
    else:
        analyse, overlay = Analyse(mm_per_px), None
    stages = [
        *([Undistort(camera)] if camera else []),  # the overlay needs the straightened picture itself
        preprocess,
        model,
        decode_stage(model, device_decode),
        VesselEvidence(model.operating_points),
        analyse,
        *finishing_stages(config, camera, audit, overlay, alert_ids, stale_ms),
    ]
    check_chain(stages)
    return stages


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


def split_at(stages: list[Stage], kind: type) -> tuple[list[Stage], list[Stage]]:
    """``(before, from)``: the stages before the first one of ``kind``, and the rest."""
    index = next(i for i, stage in enumerate(stages) if isinstance(stage, kind))
    return stages[:index], stages[index:]
