"""Health alerts of the running system: the AI stale, the capture lost, the AI slow, the model failing.

Evaluated by the live runtime's main thread every few tens of milliseconds (not per frame:
a stale AI produces no frames to look at), on the counters the runtime keeps.

    health = HealthMonitor(config, audit, source_fps=30.0)
    events = health.observe(stats, fps_ai=17.5)      # stats: pipeline.runtime.live.LiveStats
"""
from __future__ import annotations

import time

from pipeline.core.packet import AlertEvent
from pipeline.runtime.config import PipelineConfig
from pipeline.stages.alerts.audit import AuditLog
from pipeline.stages.alerts.engine import AlertEngine
from pipeline.stages.alerts.rules import HEALTH_RULES, Observation, build_rules

FLOWING_NS = 500e6  # frames count as flowing while the newest capture is younger than this


class HealthMonitor:
    """Health rules (ai_stale, capture_lost, low_fps, model_error) over the runtime's counters."""

    def __init__(self, config: PipelineConfig, audit: AuditLog | None, source_fps: float):
        self.engine = AlertEngine(build_rules(HEALTH_RULES, config.alerts), audit)
        self.source_fps = source_fps
        self.errors_seen = 0

    def observe(self, stats, fps_ai: float | None = None) -> list[AlertEvent]:
        """Transitions now, from the live runtime's counters (``stats``: its ``LiveStats``); ``fps_ai`` (once a
        second) feeds ``low_fps``."""
        now = time.monotonic_ns()
        flowing = stats.last_capture_ns is not None and now - stats.last_capture_ns < FLOWING_NS
        age = (now - (stats.last_result_ns or stats.started_ns)) / 1e6 if flowing else None
        new_error = stats.last_error if stats.errors > self.errors_seen else None
        self.errors_seen = stats.errors
        observation = Observation(
            time.time_ns(), stats.captured - 1, ai_age_ms=age,
            capture_lost=stats.last_error if stats.state == "capture_lost" else None,
            fps_ratio=None if fps_ai is None or not flowing else fps_ai / self.source_fps,
            model_error=new_error)
        return self.engine.update(observation)
