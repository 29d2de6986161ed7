"""Live runtime: wires sources, stages and the publisher with threads. Stages know none of it.

    capture thread --> publish `video` (at once, never waits on the AI)
         `--> latest-frame slot --> AI worker: preprocess -> infer -> analyse -> alerts -> overlay
                                                  `--> publish `overlay`, `mask`, `alert`
    main thread: `status` heartbeat every second

    stages = compose(model, PipelineConfig())
    summary = run_live(open_source("phantom"), stages, Publisher(), LiveOptions(frames=300))
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from calibration.camera import CameraModel
from pipeline.alerts import (
    CLINICAL_RULES,
    HEALTH_RULES,
    AlertEngine,
    Alerts,
    AuditLog,
    Observation,
    build_rules,
)
from pipeline.analysis import Analyse
from pipeline.overlay import Overlay
from pipeline.packet import FramePacket
from pipeline.preprocess import LetterboxPreprocess, model_input
from pipeline.sources import Source, SourceError, SourceLost
from pipeline.transport import (
    MASK_ENCODING,
    SWITCH_INTERVAL_S,
    Publisher,
    default_video_encoding,
)
from pipeline.undistort import Redistort, Undistort


@dataclass
class PipelineConfig:
    """Settings of the AI path (``orsight run --config FILE`` overrides any of them)."""

    imgsz: int | None = None  # model input size; the model's own when None
    conf: float = 0.25
    iou: float = 0.7
    crop_to_fov: bool = True
    mm_per_px: float | None = None
    alerts: dict[str, dict] = field(default_factory=dict)  # rule name -> its parameters (pipeline/alerts.py)
    stale_ms: float = 120.0  # segmentation older than this is stale (ai_stale, clinical alerts suppressed)
    roles: dict[str, str] = field(default_factory=dict)  # class name -> instrument|vessel|other
    overlay_view: str = "original"  # with a calibration: draw on the original or the undistorted picture


@dataclass
class LiveOptions:
    """How the live path runs and publishes."""

    frames: int | None = None  # stop after this many captured frames
    realtime: bool = False  # pace file and phantom sources at their native rate
    video_encoding: str = "auto"  # auto: shm-bgr8 on ipc:// and loopback (same host), raw-bgr8 elsewhere
    overlay_encoding: str = "jpeg"
    jpeg_quality: int = 85
    heartbeat_s: float = 1.0
    health_tick_s: float = 0.04  # how often the health rules are checked
    ai_priority: str = "idle"  # Linux: "idle" = SCHED_IDLE (the AI gets only CPU time nothing else wants),
    ai_niceness: int = 10  # "nice" = this much nicer than the capture thread (for hosts shared with other work)
    reconnect_max_s: float = 5.0


def compose(model, config: PipelineConfig, camera: CameraModel | None = None, audit: AuditLog | None = None,
            device: str = "cpu") -> list:
    """The AI path in data-flow order: each item is a stage ``packet -> packet``.

    With a ``camera`` model the frame is undistorted first and the results are mapped back
    onto the original picture last; its scale gives distances in millimetres.
    """
    mm_per_px = config.mm_per_px or (camera.mm_per_px if camera else None)
    preprocess_args = {**model_input(model, config.imgsz), "crop_to_fov": config.crop_to_fov}
    if device == "cuda":  # the frame crosses to the GPU once; only results and the overlay come back
        from pipeline.cuda_analysis import CudaAnalyse
        from pipeline.cuda_overlay import CudaOverlay
        from pipeline.cuda_preprocess import CudaLetterboxPreprocess

        preprocess, analyse, overlay = CudaLetterboxPreprocess(**preprocess_args), CudaAnalyse(mm_per_px), CudaOverlay()
    else:
        preprocess, analyse, overlay = LetterboxPreprocess(**preprocess_args), Analyse(mm_per_px), Overlay()
    return [
        *([Undistort(camera)] if camera else []),  # the overlay needs the straightened picture itself
        preprocess,
        model,
        analyse,
        Alerts(build_rules(CLINICAL_RULES, config.alerts), audit, config.stale_ms),
        overlay,
        *([Redistort(camera, config.overlay_view)] if camera else []),
    ]


class LatestSlot:
    """Hand-off from capture to AI. ``newest_wins``: a put replaces an untaken frame (a drop);
    otherwise a put waits until the previous frame was taken (every frame analysed)."""

    def __init__(self, newest_wins: bool):
        self.newest_wins = newest_wins
        self.item: FramePacket | None = None
        self.closed = False
        self.drops = 0
        self.condition = threading.Condition()

    def put(self, packet: FramePacket) -> None:
        with self.condition:
            if self.newest_wins:
                self.drops += self.item is not None
            else:
                self.condition.wait_for(lambda: self.item is None or self.closed)
            self.item = packet
            self.condition.notify_all()

    def get(self) -> FramePacket | None:
        """The next frame, or ``None`` once the slot is closed and empty."""
        with self.condition:
            self.condition.wait_for(lambda: self.item is not None or self.closed)
            packet, self.item = self.item, None
            self.condition.notify_all()
            return packet

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()


@dataclass
class LiveStats:
    """Counters shared by the threads (each field written by one thread only)."""

    captured: int = 0
    analysed: int = 0
    started_ns: int = field(default_factory=time.monotonic_ns)
    last_capture_ns: int | None = None  # monotonic time of the newest capture
    last_result_ns: int | None = None  # monotonic time of the newest published result
    errors: int = 0
    alerts_raised: int = 0
    state: str = "starting"
    last_error: str = ""
    timings_ms: dict[str, list[float]] = field(default_factory=dict)

    def add_timings(self, timings: dict[str, float]) -> None:
        for name, ms in timings.items():
            self.timings_ms.setdefault(name, []).append(ms)


def _publish_results(publisher: Publisher, packet: FramePacket, options: LiveOptions) -> None:
    """``overlay``, ``mask`` and (on transitions) ``alert`` messages of one analysed frame."""
    common = {"frame_id": packet.frame_id, "t_capture_ns": packet.t_capture_ns,
              "timings_ms": {k: round(v, 3) for k, v in packet.timings_ms.items()}}
    segmentation, proximity = packet.segmentation, packet.proximity
    publisher.send_image("overlay", packet.overlay, options.overlay_encoding, options.jpeg_quality, **common)
    classes = [{"value": i + 1, "name": n, "role": r} for i, (n, r) in enumerate(zip(segmentation.names,
                                                                                    segmentation.roles))]
    distance = None if proximity.distance_px == float("inf") else round(proximity.distance_px, 2)
    publisher.send_image("mask", segmentation.class_map, MASK_ENCODING, classes=classes,
                         proximity={"distance_px": distance, "distance_mm": proximity.distance_mm,
                                    "mm_per_px": proximity.mm_per_px,
                                    "instrument_point": proximity.instrument_point,
                                    "vessel_point": proximity.vessel_point},
                         active_alerts=[dataclasses.asdict(a) for a in packet.active_alerts], **common)
    for event in packet.alerts:
        publisher.send("alert", {**dataclasses.asdict(event), **common})


class HealthMonitor:
    """Health rules (ai_stale, capture_lost, low_fps, model_error) evaluated by the runtime's main thread."""

    def __init__(self, config: PipelineConfig, audit: AuditLog | None, source_fps: float):
        self.engine = AlertEngine(build_rules(HEALTH_RULES, config.alerts), audit)
        self.source_fps = source_fps
        self.errors_seen = 0

    def observe(self, stats: LiveStats, fps_ai: float | None = None) -> list:
        """Transitions now; ``fps_ai`` (once a second) feeds ``low_fps``."""
        now = time.monotonic_ns()
        flowing = stats.last_capture_ns is not None and now - stats.last_capture_ns < 500e6
        age = (now - (stats.last_result_ns or stats.started_ns)) / 1e6 if flowing else None
        new_error = stats.last_error if stats.errors > self.errors_seen else None
        self.errors_seen = stats.errors
        observation = Observation(
            time.time_ns(), stats.captured - 1, ai_age_ms=age,
            capture_lost=stats.last_error if stats.state == "capture_lost" else None,
            fps_ratio=None if fps_ai is None or not flowing else fps_ai / self.source_fps,
            model_error=new_error)
        return self.engine.update(observation)


def lower_priority(policy: str, niceness: int = 10) -> None:
    """Let every other thread preempt this one: SCHED_IDLE (``idle``) or ``niceness`` more (``nice``).

    Per thread on Linux; quietly nothing where unsupported.
    """
    thread = threading.get_native_id()
    try:
        if policy == "idle":
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except (AttributeError, OSError):
        pass


def _reconnect(source: Source, publisher: Publisher, stats: LiveStats, stop: threading.Event,
               max_wait: float, error: Exception) -> None:
    """Report the lost source on ``status`` and retry with exponential backoff until it returns."""
    stats.state, stats.last_error = "capture_lost", str(error)
    wait = 0.25
    while not stop.is_set():
        publisher.send("status", {"state": "capture_lost", "error": str(error), "retry_in_s": wait,
                                  "t_capture_ns": time.time_ns()})
        if stop.wait(wait):
            return
        try:
            source.reopen()
            stats.state = "running"
            return
        except SourceError as retry_error:
            error, wait = retry_error, min(wait * 2, max_wait)


def run_live(source: Source, stages: list, publisher: Publisher, options: LiveOptions,
             stop: threading.Event | None = None, health: HealthMonitor | None = None) -> dict:
    """Run the live path until the source ends, ``options.frames`` are captured or ``stop`` is set.

    ``health`` (default: all health rules with default settings) is checked every
    ``options.health_tick_s``; its transitions go out on ``alert`` and its active alerts on ``status``.
    """
    health = health or HealthMonitor(PipelineConfig(), None, source.fps)
    # The capture thread must get the interpreter within a fraction of a millisecond, not the
    # default 5 ms, when the AI thread holds it: this is the tail of the passthrough delay.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    stop = stop or threading.Event()
    slot = LatestSlot(newest_wins=source.live or options.realtime)
    stats = LiveStats(state="running")
    started = time.monotonic()
    video_encoding = default_video_encoding(publisher.endpoint) if options.video_encoding == "auto" \
        else options.video_encoding

    def capture() -> None:
        period = 1.0 / source.fps if options.realtime and not source.live else 0.0
        next_due = time.monotonic()
        try:
            while not stop.is_set() and (options.frames is None or stats.captured < options.frames):
                if period:
                    stop.wait(max(0.0, next_due - time.monotonic()))
                    next_due += period
                try:
                    item = source.read()
                except SourceLost as lost:
                    _reconnect(source, publisher, stats, stop, options.reconnect_max_s, lost)
                    continue
                if item is None:
                    break
                packet = FramePacket.capture(item[0], stats.captured, source.name, truth=item[1])
                publisher.send_image("video", packet.image, video_encoding, options.jpeg_quality,
                                     frame_id=packet.frame_id, t_capture_ns=packet.t_capture_ns, fps=source.fps)
                stats.last_capture_ns = time.monotonic_ns()
                slot.put(packet)
                stats.captured += 1
        except SourceError as error:
            stats.state, stats.last_error = "source_error", str(error)
        finally:
            slot.close()

    def analyse() -> None:
        lower_priority(options.ai_priority, options.ai_niceness)  # the video path preempts the AI, never the reverse
        while (packet := slot.get()) is not None:
            packet.timings_ms["queue"] = (time.monotonic_ns() - packet.t_capture_mono_ns) / 1e6
            try:
                for stage in stages:
                    packet = stage(packet)
            except Exception as error:  # a bad frame must not stop the surgeon's picture
                stats.errors += 1
                stats.last_error = f"{type(error).__name__}: {error}"
                continue
            _publish_results(publisher, packet, options)
            stats.last_result_ns = time.monotonic_ns()
            stats.analysed += 1
            stats.alerts_raised += sum(event.state == "raised" for event in packet.alerts)
            stats.add_timings(packet.timings_ms)

    threads = [threading.Thread(target=capture, name="orsight-capture", daemon=True),
               threading.Thread(target=analyse, name="orsight-ai", daemon=True)]
    for thread in threads:
        thread.start()
    last, rates = (time.monotonic(), 0, 0), (0.0, 0.0)
    try:
        while any(thread.is_alive() for thread in threads):
            threads[1].join(timeout=options.health_tick_s)
            now = time.monotonic()
            fps_ai = None
            if now - last[0] >= options.heartbeat_s:
                elapsed = now - last[0]
                rates = ((stats.captured - last[1]) / elapsed, (stats.analysed - last[2]) / elapsed)
                last, fps_ai = (now, stats.captured, stats.analysed), rates[1]
            events = health.observe(stats, fps_ai)
            for event in events:
                publisher.send("alert", dataclasses.asdict(event))
            stats.alerts_raised += sum(event.state == "raised" for event in events)
            if fps_ai is not None or events:
                publisher.send("status", _status_fields(stats, slot, source, rates, health.engine.active))
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
    if stats.state == "running":
        stats.state = "ended"
    summary = _summary(stats, slot, source, time.monotonic() - started)
    publisher.send("status", {**_status_fields(stats, slot, source, (0.0, 0.0), []), "state": stats.state,
                              "final": True})
    return summary


def _status_fields(stats: LiveStats, slot: LatestSlot, source: Source, rates: tuple[float, float],
                   active_alerts: list) -> dict:
    return {"state": stats.state, "source": source.name, "t_capture_ns": time.time_ns(),
            "active_alerts": [dataclasses.asdict(a) for a in active_alerts],
            "fps_capture": round(rates[0], 2), "fps_ai": round(rates[1], 2), "frames_captured": stats.captured,
            "frames_analysed": stats.analysed, "drops": slot.drops, "errors": stats.errors,
            "last_error": stats.last_error,
            "timings_ms": {k: round(float(np.mean(v[-30:])), 3) for k, v in stats.timings_ms.items()}}


def _summary(stats: LiveStats, slot: LatestSlot, source: Source, seconds: float) -> dict:
    return {"source": source.name, "state": stats.state, "seconds": round(seconds, 3),
            "frames_captured": stats.captured, "frames_analysed": stats.analysed, "drops": slot.drops,
            "errors": stats.errors, "last_error": stats.last_error, "alerts_raised": stats.alerts_raised,
            "fps_capture": round(stats.captured / max(seconds, 1e-9), 2),
            "fps_ai": round(stats.analysed / max(seconds, 1e-9), 2),
            "stage_ms_p50": {k: round(float(np.percentile(v, 50)), 3) for k, v in stats.timings_ms.items()}}
