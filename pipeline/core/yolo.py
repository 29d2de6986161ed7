"""The one door to ultralytics: offline, no auto-install, no telemetry.

    from pipeline.core.yolo import YOLO     # torch and ultralytics: the train extra
    model = YOLO("best.pt")                  # a trusted checkpoint (pipeline.core.trust)

Architectures are built from YAML by ``pipeline.training.build``.
"""
from __future__ import annotations

# The package's __init__ (imported before this module) set YOLO_OFFLINE and YOLO_AUTOINSTALL first.
from ultralytics import YOLO  # noqa: F401  (re-exported: every use of ultralytics goes through here)
from ultralytics.utils import SETTINGS

if SETTINGS.get("sync"):
    SETTINGS.update(sync=False)  # no usage analytics, ever
