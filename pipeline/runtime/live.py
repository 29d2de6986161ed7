"""Live runtime: wires sources, stages and the publisher with threads. Stages know none of it.

    capture thread --> privacy stage --> publish `video` (at once, never waits on the AI; marked inside/outside/blank)
         `--> latest-frame slot --> AI worker: preprocess -> infer -> analyse -> alerts [-> overlay]
                                                  `--> publish `alert`, `mask` [, `overlay`]
                                                  `--> governor: the input budget that keeps masks fresh
    main thread: `status` heartbeat every second (with the operating point: input size, AI fps)

With the model on one CPU thread and two or more CPUs allowed, the AI thread runs on a CPU of its own
and every other thread on the others (pipeline.runtime.cores; `reserve_core`).

The overlay picture is drawn and encoded only while someone subscribes to `overlay`: the display
draws the `mask` over the `video` itself, so without other subscribers that work (a fifth of a
1080p frame's CPU) goes to the model instead. Nor are the instances found then (the connected
regions behind the overlay's boxes and labels, where the model gives a class map): only the
class map goes out.

    graph = build_graph(model, PipelineConfig())           # pipeline.runtime.graph
    summary = run_live(open_source("phantom"), graph, Publisher(), LiveOptions(frames=300))
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.latency import Latencies
from pipeline.core.packet import FramePacket
from pipeline.core.privacy import BLANK, OUTSIDE, out_of_body
from pipeline.core.signals import block_stop_signals
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.cores import pin_this_thread, split_cores, threads_on
from pipeline.runtime.governor import Governor
from pipeline.runtime.graph import Graph, Stage
from pipeline.runtime.health import HealthMonitor
from pipeline.runtime.slot import LatestSlot
from pipeline.sources.capture import Source, SourceError, SourceLost
from pipeline.stages.preprocess.geometry import GeometryPlan
from pipeline.transport.zeromq import (
    SHARED_ENCODING,
    SWITCH_INTERVAL_S,
    Publisher,
    default_mask_encoding,
    default_video_encoding,
)

# How the AI thread yields the CPU to the video path when they share CPUs (see lower_priority). Nice +2, not
# SCHED_IDLE: with one busy process beside it, SCHED_IDLE starved the AI (README, "Under load"); +2 keeps the
# quiet passthrough p99 under 5.75 ms and still gives the AI most of a fair share. On a CPU of its own there
# is nothing of the video path to yield to: the AI keeps the process's priority there (a fair share against
# other software), unless a niceness is asked for.
AI_PRIORITY, AI_NICENESS = "nice", 2
JOIN_S = 10.0  # how long a stop waits for the capture and AI threads (a frame or an inference: milliseconds)


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
    ai_priority: str = AI_PRIORITY  # Linux: "nice" = ai_niceness nicer than the video path (a share when busy),
    ai_niceness: int | None = None  # "idle" = SCHED_IDLE (only CPU time nothing else wants: starves when busy);
    # None: AI_NICENESS while the AI shares CPUs with the video path, 0 on a CPU of its own
    reconnect_max_s: float = 5.0
    governor: bool = True  # lower the model's input budget when masks would reach the display stale
    stale_ms: float = 120.0  # the display's limit the governor keeps masks under
    reserve_core: bool = True  # a one-thread CPU model: the AI thread on a CPU of its own, the rest on the others
    identity: dict = field(default_factory=dict)  # on every status: which model (full SHA-256) and settings run
    privacy: str = "blur"  # how displays share out-of-body frames (core.privacy.MODES), told on every video frame


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
    ai_cpus: list[int] | None = None  # the CPUs the AI thread may run on, when it has its own
    timings_ms: dict[str, Latencies] = field(default_factory=dict)  # per stage; constant memory
    privacy_frames: dict[str, int] = field(default_factory=lambda: {OUTSIDE: 0, BLANK: 0})  # not analysed

    def add_timings(self, timings: dict[str, float]) -> None:
        for name, ms in timings.items():
            self.timings_ms.setdefault(name, Latencies()).add(ms)


def _publish_results(publisher: Publisher, packet: FramePacket, options: LiveOptions, mask_encoding: str) -> None:
    """The ``alert`` transitions, the ``mask`` and the ``overlay`` (if drawn) of one analysed frame, in that
    order: the most urgent and smallest first, the picture that takes an encoding last."""
    common = {"frame_id": packet.frame_id, "t_capture_ns": packet.t_capture_ns,
              "timings_ms": {k: round(v, 3) for k, v in packet.timings_ms.items()}}
    for event in packet.alerts:
        publisher.send("alert", {**event.to_dict(), **common})
    segmentation, proximity = packet.segmentation, packet.proximity
    classes = [{"value": i + 1, "name": n, "role": r} for i, (n, r) in enumerate(zip(segmentation.names,
                                                                                    segmentation.roles))]
    if packet.privacy is not None:
        common["privacy"] = packet.privacy
    publisher.send_image("mask", segmentation.class_map, mask_encoding, classes=classes,
                         proximity=proximity.to_dict(), advisory=[r.to_dict() for r in segmentation.advisory],
                         vessel_evidence=segmentation.vessel_evidence,
                         active_alerts=[a.to_dict() for a in packet.active_alerts], **common)
    if packet.overlay is not None:
        publisher.send_image("overlay", packet.overlay, options.overlay_encoding, options.jpeg_quality, **common)


def lower_priority(policy: str, niceness: int = AI_NICENESS) -> None:
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


def run_live(source: Source, graph: Graph, publisher: Publisher, options: LiveOptions,
             stop: threading.Event | None = None, health: HealthMonitor | None = None) -> dict:
    """Run the live path until the source ends, ``options.frames`` are captured or ``stop`` is set.

    ``health`` (default: all health rules with default settings) is checked every
    ``options.health_tick_s``; its transitions go out on ``alert`` and its active alerts on ``status``.
    With ``options.reserve_core`` and a model on one CPU thread, the AI thread gets a CPU of its own
    and every other thread of the process the others, while it runs.
    """
    one_thread = getattr(graph.model, "cpu_threads", None) == 1  # (a wrapped model may not say)
    ai_cpus, video_cpus = (split_cores() if options.reserve_core and one_thread else None) or (None, None)
    with threads_on(video_cpus):  # the capture and AI threads start from here
        return _run_live(source, graph, publisher, options, stop, health, ai_cpus)


def _run_live(source: Source, graph: Graph, publisher: Publisher, options: LiveOptions,
              stop: threading.Event | None, health: HealthMonitor | None, ai_cpus: set[int] | None) -> dict:
    health = health or HealthMonitor(PipelineConfig(), None, source.fps)
    # The capture thread must get the interpreter within a fraction of a millisecond, not the
    # default 5 ms, when the AI thread holds it: this is the tail of the passthrough delay.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    stop = stop or threading.Event()
    slot = LatestSlot(newest_wins=source.live or options.realtime)
    stats = LiveStats(state="running")
    started = time.monotonic()
    video_encoding, mask_encoding = _encodings(publisher, source, options)
    plan = getattr(graph.preprocess, "plan", None)
    plan = plan if isinstance(plan, GeometryPlan) else None
    governor = Governor(plan, options.stale_ms) if plan is not None and options.governor else None
    drawn, undrawn = graph.analysis(), graph.undrawn()  # the second while nobody wants the overlay

    def analyse() -> None:
        _take_ai_place(stats, options, ai_cpus)
        last_published_ns = None
        while (packet := slot.get()) is not None:
            packet.timings_ms["queue"] = (time.monotonic_ns() - packet.t_capture_mono_ns) / 1e6
            try:
                packet = _analysed(graph, packet, drawn if publisher.wants("overlay") else undrawn)
            except Exception as error:  # a bad frame must not stop the surgeon's picture
                stats.errors += 1
                stats.last_error = f"{type(error).__name__}: {error}"
                continue
            _publish_results(publisher, packet, options, mask_encoding)
            now_ns = time.monotonic_ns()
            if governor is not None and last_published_ns is not None:
                governor.observe((now_ns - packet.t_capture_mono_ns) / 1e6, (now_ns - last_published_ns) / 1e6)
            stats.last_result_ns = last_published_ns = now_ns
            stats.analysed += 1
            stats.alerts_raised += sum(event.state == "raised" for event in packet.alerts)
            stats.add_timings(packet.timings_ms)

    # Finished threads are told by events, not join(): a join cut short by Ctrl-C or SIGTERM marks the
    # thread as stopped while it still runs (CPython gh-90882), and the interpreter then aborts inside the model.
    capture_done, ai_done = threading.Event(), threading.Event()
    capture = functools.partial(_capture, source, publisher, slot, stats, stop, options, video_encoding,
                                graph.privacy)
    for target, done, name in ((capture, capture_done, "orsight-capture"), (analyse, ai_done, "orsight-ai")):
        threading.Thread(target=_signalling(target, done), name=name, daemon=True).start()
    try:
        _watch_health(health, stats, slot, source, publisher, options, (capture_done, ai_done),
                      lambda rates: _operating_point(governor, plan, rates))
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM, SIGHUP: a clean stop, then the final status
        stats.state = "stopped"
        stats.last_error = stats.last_error or f"stopped by {interrupt.args[0] if interrupt.args else 'SIGINT'}"
        stop.set()
        for done in (capture_done, ai_done):  # a thread killed inside the model aborts the interpreter
            done.wait(timeout=JOIN_S)
    if stats.state == "running":
        stats.state = "ended"
    publisher.send("status", {**_status_fields(stats, slot, source, Rates(0.0), []), **options.identity,
                              "state": stats.state, "final": True})
    return {**_summary(stats, slot, source, time.monotonic() - started),
            "operating_point": _operating_point(governor, plan, None), "ai_cpus": stats.ai_cpus}


def _analysed(graph: Graph, packet: FramePacket, stages: list[Stage]) -> FramePacket:
    """One frame through the analysis; out of body held instead (no alarm on an operating-room scene)."""
    if not graph.analysed(packet):
        return graph.hold(packet)
    for stage in stages:
        packet = stage(packet)
    return packet


def _encodings(publisher: Publisher, source: Source, options: LiveOptions) -> tuple[str, str]:
    """(video, mask) encodings for this publisher; their shared-memory rings made before the threads start (the
    first frame and mask must not wait ~25 ms for them)."""
    video_encoding = default_video_encoding(publisher.endpoint) if options.video_encoding == "auto" \
        else options.video_encoding
    mask_encoding = default_mask_encoding(publisher.endpoint)
    width, height = source.frame_size
    rings = {"video": (video_encoding, (height, width, 3)), "mask": (mask_encoding, (height, width))}
    for topic, (encoding, shape) in rings.items():
        if encoding == SHARED_ENCODING:
            publisher.ring(topic, shape)
    return video_encoding, mask_encoding


def _capture(source: Source, publisher: Publisher, slot: LatestSlot, stats: LiveStats, stop: threading.Event,
             options: LiveOptions, video_encoding: str, privacy: Stage | None) -> None:
    """The capture thread: each frame judged by the privacy stage, published at once on ``video`` (with
    its privacy state and mode: what displays may share), then offered to the AI through ``slot``."""
    next_due = time.monotonic()
    try:  # whatever happens here, the slot is closed: the AI thread must never wait for ever
        period = 1.0 / source.fps if options.realtime and not source.live else 0.0
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
            marks = {}
            if privacy is not None:
                packet = privacy(packet)
                marks = {"privacy": packet.privacy, "privacy_mode": options.privacy}
                if packet.privacy in stats.privacy_frames:
                    stats.privacy_frames[packet.privacy] += 1
            publisher.send_image("video", packet.image, video_encoding, options.jpeg_quality,
                                 frame_id=packet.frame_id, t_capture_ns=packet.t_capture_ns, fps=source.fps, **marks)
            stats.last_capture_ns = time.monotonic_ns()
            slot.put(packet)
            stats.captured += 1
    except SourceError as error:
        stats.state, stats.last_error = "source_error", str(error)
    finally:
        slot.close()


def _take_ai_place(stats: LiveStats, options: LiveOptions, ai_cpus: set[int] | None) -> None:
    """The AI thread on its own CPU when it has one, and below the video path in priority."""
    if ai_cpus is not None:
        pin_this_thread(ai_cpus)
        stats.ai_cpus = sorted(os.sched_getaffinity(0))
    niceness = options.ai_niceness
    if niceness is None:  # yield to the video path only where it shares CPUs with it
        niceness = 0 if ai_cpus else AI_NICENESS
    lower_priority(options.ai_priority, niceness)  # the video path preempts the AI, never the reverse


def _watch_health(health: HealthMonitor, stats: LiveStats, slot: LatestSlot, source: Source, publisher: Publisher,
                  options: LiveOptions, done: tuple[threading.Event, threading.Event], operating_point) -> None:
    """The main thread while the capture and AI threads run: health rules every tick, ``status`` heartbeats."""
    rates = Rates(time.monotonic())
    while not all(event.is_set() for event in done):
        done[1].wait(timeout=options.health_tick_s)
        fps_ai = rates.tick(stats, options.heartbeat_s)
        events = health.observe(stats, fps_ai)
        for event in events:
            publisher.send("alert", event.to_dict())
        stats.alerts_raised += sum(event.state == "raised" for event in events)
        if fps_ai is not None or events:
            publisher.send("status", {**_status_fields(stats, slot, source, rates, health.engine.active),
                                      "operating_point": operating_point(rates), **options.identity})


def _signalling(target, done: threading.Event):
    """``target`` run in a worker thread: the stop signals go to the main thread only, ``done`` is set at the end."""

    def run() -> None:
        block_stop_signals()
        try:
            target()
        finally:
            done.set()

    return run


@dataclass
class Rates:
    """Capture and AI frame rates over the last heartbeat interval (main thread only)."""

    since: float  # monotonic seconds at the start of the interval
    captured: int = 0  # counters at the start of the interval
    analysed: int = 0
    fps_capture: float = 0.0
    fps_ai: float = 0.0

    def tick(self, stats: LiveStats, interval_s: float) -> float | None:
        """New rates once ``interval_s`` has passed: returns the AI's then, ``None`` in between."""
        now = time.monotonic()
        elapsed = now - self.since
        if elapsed < interval_s:
            return None
        self.fps_capture = (stats.captured - self.captured) / elapsed
        self.fps_ai = (stats.analysed - self.analysed) / elapsed
        self.since, self.captured, self.analysed = now, stats.captured, stats.analysed
        return self.fps_ai


def _operating_point(governor: Governor | None, plan: GeometryPlan | None, rates: Rates | None) -> dict:
    """The AI's input budget and size (and its frame rate): on ``status``, drawn by the display."""
    if governor is not None:
        point = governor.operating_point()
    else:
        geometry = plan.geometry if plan is not None else None
        point = {"input_size": list(geometry.input_size) if geometry else None}
    return {**point, **({"fps_ai": round(rates.fps_ai, 2)} if rates is not None else {})}


def _status_fields(stats: LiveStats, slot: LatestSlot, source: Source, rates: Rates, active_alerts: list) -> dict:
    return {"state": stats.state, "source": source.name, "t_capture_ns": time.time_ns(),
            "active_alerts": [a.to_dict() for a in active_alerts],
            "fps_capture": round(rates.fps_capture, 2), "fps_ai": round(rates.fps_ai, 2),
            "frames_captured": stats.captured,
            "frames_analysed": stats.analysed, "drops": slot.drops, "errors": stats.errors,
            "last_error": stats.last_error, "out_of_body": out_of_body(stats.privacy_frames, source.fps),
            "timings_ms": {k: round(float(np.mean(v[-30:])), 3) for k, v in list(stats.timings_ms.items())}}


def _summary(stats: LiveStats, slot: LatestSlot, source: Source, seconds: float) -> dict:
    return {"source": source.name, "state": stats.state, "seconds": round(seconds, 3),
            "frames_captured": stats.captured, "frames_analysed": stats.analysed, "drops": slot.drops,
            "errors": stats.errors, "last_error": stats.last_error, "alerts_raised": stats.alerts_raised,
            "out_of_body": out_of_body(stats.privacy_frames, source.fps),
            "fps_capture": round(stats.captured / max(seconds, 1e-9), 2),
            "fps_ai": round(stats.analysed / max(seconds, 1e-9), 2),
            **{f"stage_ms_p{q}": {k: round(v.percentile(q), 3) for k, v in stats.timings_ms.items()} for q in (50, 99)}}
