"""A live session assembled from what the user chose: source, camera, model, stages, health, audit.

    session = open_session("phantom:approach", model_path=None, device="cpu", config=PipelineConfig())
    summary = run_live(session.source, session.graph, publisher, options, health=session.health)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from calibration.camera import CameraModel
from pipeline.core.evidence import UNVALIDATED
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import Graph, build_graph
from pipeline.runtime.health import HealthMonitor
from pipeline.sources.capture import Source, open_source
from pipeline.stages.alerts.audit import AuditLog, audit_key
from pipeline.stages.infer import SegmentationModel, load_model
from pipeline.stages.preprocess.geometry import input_dims
from pipeline.stages.privacy import MODEL as PRIVACY_MODEL
from pipeline.stages.privacy import OutOfBodyModel


class SessionError(ValueError):
    """The choices do not fit together (a calibration for another frame size, a fixed model input...)."""


@dataclass
class Session:
    source: Source
    model: SegmentationModel
    graph: Graph
    health: HealthMonitor
    config: PipelineConfig  # as resolved (the input size that runs)
    identity: dict  # model (full SHA-256) and settings: on the audit log and on every status
    audit: AuditLog | None = None

    def close(self) -> str | None:
        """Close the source and end the audit log's run (its close record); returns the run's last link of the
        chain (kept in the summary: a log cut or rewritten after it no longer ends there)."""
        self.source.close()
        return self.audit.close() if self.audit is not None else None


def model_identity(model: SegmentationModel, config: PipelineConfig) -> dict:
    """Model and configuration identity stamped on every audit-log line."""
    from pipeline.core.version import __version__

    path = getattr(model, "path", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    settings = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    points = model.operating_points
    return {"orsight": __version__, "model": model.description, "model_sha256": digest,  # full SHA-256
            "config_sha256": hashlib.sha256(settings.encode()).hexdigest()[:16],
            "privacy": config.privacy,  # "off" (out-of-body frames shared unchanged) stays on record
            "vessel_alerts": points.summary() if points else UNVALIDATED}


def open_session(source_spec: str, model_path: str | Path | None, device: str, config: PipelineConfig,
                 camera: CameraModel | None = None, audit_path: str | Path | None = None,
                 size: tuple[int, int] = (1280, 720), fps: float = 30.0, fourcc: str | None = None,
                 privacy_model: str | Path | None = None) -> Session:
    """Open the source and the models, check they fit, build the graph and the health monitor."""
    source = open_source(source_spec, size=size, fps=fps, fourcc=fourcc)
    if camera is not None and tuple(camera.image_size) != source.frame_size:
        raise SessionError(f"the calibration is for {camera.image_size[0]}x{camera.image_size[1]} frames, "
                           f"the source gives {source.frame_size[0]}x{source.frame_size[1]}")
    model = load_model(model_path, device=device, conf=config.conf, iou=config.iou, roles=config.roles)
    if config.imgsz and model.fixed_input and input_dims(config.imgsz) != model.input_size:
        fixed = "x".join(map(str, model.input_size))
        raise SessionError(f"--imgsz {config.imgsz}: this ONNX model has a fixed input of {fixed}")
    identity = model_identity(model, config)
    try:
        audit = AuditLog(audit_path, identity, key=_signing_key()) if audit_path else None
    except OSError as error:
        raise SessionError(f"cannot write audit log {audit_path}: {error.strerror}") from None
    graph = build_graph(model, config, camera, audit, device, privacy=_privacy_model(privacy_model))
    return Session(source, model, graph, HealthMonitor(config, audit, source.fps), config, identity, audit)


def _signing_key() -> bytes | None:
    """The site's audit key; when it cannot be read or made, the log is chained but not signed (said once): the
    operation must not wait for a key file."""
    try:
        return audit_key()
    except (OSError, ValueError) as error:
        print(f"orsight: warning: no audit key ({getattr(error, 'strerror', None) or error}): the audit log is "
              "chained, not signed",
              file=sys.stderr)
        return None


def _privacy_model(path: str | Path | None) -> OutOfBodyModel:
    """The out-of-body model (the shipped one unless ``path``); a file that is not one is a SessionError."""
    try:
        return OutOfBodyModel(path or PRIVACY_MODEL)
    except ValueError as error:
        raise SessionError(str(error)) from None
