"""The OR display: raw video with the newest mask composited; the picture never waits on the AI.

A receiver thread drains the socket to the newest message of each topic (each one checked as
untrusted input first). Each new ``video`` frame is shown at once, with the newest mask drawn
over it if that mask was captured at most ``stale_ms`` before the frame; otherwise the mask is
hidden and "AI STALE" is shown. The display keeps its own watchdog: after ``no_signal_ms``
without video the picture is replaced by NO SIGNAL (CAPTURE LOST when the publisher says so),
never left frozen; ZeroMQ reconnects, and the stream is shown again when the publisher returns.

    summary = run_display("tcp://127.0.0.1:5555", headless=True, record="out.mp4", frames=300)
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.evidence import VesselRegion
from pipeline.core.latency import Latencies
from pipeline.core.packet import AlertEvent, FramePacket, Proximity, Segmentation
from pipeline.core.privacy import BLANK, OUTSIDE, mark, shared_picture
from pipeline.display.propagate import MaskPropagator, move_point
from pipeline.display.recorder import Recorder
from pipeline.stages.overlay.cpu import (
    FONT,
    AdvisoryAnnotator,
    BannerAnnotator,
    ContourAnnotator,
    MaskAnnotator,
    ProximityAnnotator,
    annotate_all,
    label_style,
)
from pipeline.transport.untrusted import Message, TransportError, decode_image
from pipeline.transport.zeromq import SWITCH_INTERVAL_S, Receiver

DISPLAY_TOPICS = ("video", "mask", "alert", "status")  # not `overlay`: the display draws the mask itself
STALE_MS = 120.0
NO_SIGNAL_MS = 500.0  # no video for this long: the picture is replaced by NO SIGNAL
REFRESH_S = 0.1  # how often the NO SIGNAL screen is redrawn (and the loop looks at the clock)
NO_SIGNAL_SIZE = (720, 1280)  # (height, width) of the NO SIGNAL screen before any frame came
WINDOW = "orsight"


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (ms) of ``values``, ``None`` when there are none."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


def _stale_alert(video: Message) -> AlertEvent:
    return AlertEvent(alert_id=0, rule="ai_stale", state="active", priority="medium",
                      frame_id=video.header["frame_id"], t_capture_ns=video.header["t_capture_ns"],
                      message="AI STALE")


def _alerts_from(header: dict) -> list[AlertEvent]:
    """The header's active alerts."""
    return [AlertEvent.from_dict(a) for a in header.get("active_alerts", [])]


def video_size(video: Message | None) -> tuple[int, int]:
    """(height, width) of the last video frame, or the NO SIGNAL screen's own before any."""
    return tuple(video.header["shape"][:2]) if video is not None else NO_SIGNAL_SIZE


def no_signal_screen(size: tuple[int, int], status: Message | None, now_ns: int) -> np.ndarray:
    """A black picture with a flashing high-priority banner: CAPTURE LOST if the publisher's
    newest status says so, else NO SIGNAL (the publisher itself is silent)."""
    lost = status is not None and status.header.get("state") == "capture_lost"
    alert = AlertEvent(alert_id=0, rule="capture_lost" if lost else "no_signal", state="active", priority="high",
                       frame_id=-1, t_capture_ns=now_ns, message="CAPTURE LOST" if lost else "NO SIGNAL")
    packet = FramePacket(frame_id=-1, source="display", image=np.zeros((*size, 3), np.uint8), t_capture_ns=now_ns,
                         t_capture_mono_ns=0, active_alerts=[alert])
    return BannerAnnotator().annotate(packet.image, packet)


def fresh_mask(video: Message, mask: Message | None, stale_ms: float = STALE_MS) -> Message | None:
    """``mask`` if it was captured at most ``stale_ms`` before the ``video`` frame shown, else None."""
    if mask is None or (video.header["t_capture_ns"] - mask.header["t_capture_ns"]) / 1e6 > stale_ms:
        return None
    return mask


@lru_cache(maxsize=2)
def _segmentation_from(mask: Message, shape: tuple[int, int]) -> Segmentation:
    """The mask message as a segmentation (decoded once per message, shown over many frames)."""
    names = tuple(c["name"] for c in mask.header["classes"])
    roles = tuple(c["role"] for c in mask.header["classes"])
    class_map = decode_image(mask)
    if class_map.shape != shape:
        class_map = cv2.resize(class_map, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    advisory = [VesselRegion.from_dict(region) for region in mask.header.get("advisory", [])]
    return Segmentation(class_map, names, roles, np.zeros(0, int), np.zeros(0, np.float32), np.zeros((0, 4)),
                        advisory=advisory, vessel_evidence=mask.header.get("vessel_evidence"))


def _packet_from(video: Message, mask: Message | None, status: Message | None) -> FramePacket:
    """A frame packet rebuilt from the wire: the raw frame, the mask's results if fresh, and the
    publisher's health alerts (its ``ai_stale`` aside: the display judges staleness itself)."""
    image = decode_image(video)
    image = image if image.flags.writeable else image.copy()  # drawn on below
    packet = FramePacket(frame_id=video.header["frame_id"], source=video.header["stream"], image=image,
                         t_capture_ns=video.header["t_capture_ns"], t_capture_mono_ns=0,
                         privacy=video.header.get("privacy"))
    health = [a for a in _alerts_from(status.header) if a.rule != "ai_stale"] if status else []
    if mask is None:
        packet.active_alerts = health + [_stale_alert(video)]
        return packet
    try:
        packet.segmentation = _segmentation_from(mask, image.shape[:2])
    except (TransportError, ValueError):  # a mask that does not decode: shown as no mask, the picture goes on
        packet.active_alerts = health + [_stale_alert(video)]
        return packet
    packet.proximity = Proximity.from_dict(mask.header["proximity"])
    packet.active_alerts = _alerts_from(mask.header) + health
    return packet


def draw_operating_point(scene: np.ndarray, status: Message | None, moved_ms: float | None = None) -> None:
    """Bottom left, small: what the AI runs at now ("AI 416x224 21.3 fps"), from the newest status, and
    when the mask shown was moved to this frame, from how far back ("mask moved 45 ms")."""
    point = status.header.get("operating_point") if status is not None else None
    if not point or not point.get("input_size"):
        return
    width, height = point["input_size"]
    text = f"AI {width}x{height} {point.get('fps_ai', 0):.1f} fps" + (
        f", mask moved {moved_ms:.0f} ms" if moved_ms is not None else "")
    scale, thickness = label_style(scene)
    scale *= 0.8
    (text_w, text_h), base = cv2.getTextSize(text, FONT, scale, thickness)
    x0, y1 = 4, scene.shape[0] - 4
    cv2.rectangle(scene, (x0, y1 - text_h - base - 4), (x0 + text_w + 8, y1), (0, 0, 0), -1)
    cv2.putText(scene, text, (x0 + 4, y1 - base - 2), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


@dataclasses.dataclass
class Shown:
    """One picture the display shows: a composited video frame, or the watchdog's NO SIGNAL screen."""

    scene: np.ndarray
    t_ns: int  # the video frame's capture time, or now for NO SIGNAL
    video_frame: bool
    stale: bool  # a video frame shown without its mask (AI STALE)
    packet: FramePacket | None = None  # the frame's results (None for NO SIGNAL)
    moved_ms: float | None = None  # the mask was moved to this frame from a frame this much older
    privacy_mode: str = "blur"  # the publisher's: how an out-of-body frame may leave this monitor

    @property
    def privacy(self) -> str | None:
        return self.packet.privacy if self.packet is not None else None

    def shared(self) -> np.ndarray:
        """The picture as it may leave the monitor (recording, web, snapshot): an out-of-body frame hidden."""
        return shared_picture(self.scene, self.privacy, self.privacy_mode)

    def on_monitor(self) -> np.ndarray:
        """The picture for the local OR monitor: the camera's own view, marked when it is out of body."""
        if self.privacy == OUTSIDE:
            scene = self.scene.copy()
            mark(scene, "OUT OF BODY: not recorded or streamed")
            return scene
        return self.scene


class Compositor:
    """What the OR display shows, picture by picture, from a receiver: the newest video frame with the
    newest fresh mask and the alerts, or NO SIGNAL after ``no_signal_ms`` without video. ``propagate``:
    move each mask with the picture to the frame shown (``propagate``), marked in the corner."""

    def __init__(self, receiver: Receiver, stale_ms: float = STALE_MS, no_signal_ms: float = NO_SIGNAL_MS,
                 propagate: bool = False, until_publisher_ends: bool = False):
        self.receiver, self.stale_ms, self.no_signal_ms = receiver, stale_ms, no_signal_ms
        self.until_publisher_ends = until_publisher_ends
        # the marks most important first: each later label keeps off the earlier ones
        self.annotators = [MaskAnnotator(), ContourAnnotator(), BannerAnnotator(), ProximityAnnotator(),
                           AdvisoryAnnotator()]
        self.propagator = MaskPropagator() if propagate else None
        self.video: Message | None = None
        self.last_video_s = time.monotonic()
        self.counts = {"frames_stale": 0, "frames_overwritten": 0, "frames_failed": 0, "no_signal_screens": 0,
                       "frames_moved": 0, "frames_outside": 0, "frames_blank": 0}
        self.compose_ms = Latencies()
        self.notices: list[AlertEvent] = []  # the display's own alarms, on every picture (a stopped recording)

    @property
    def status(self) -> Message | None:
        return self.receiver.newest("status")

    def next(self) -> Shown | None:
        """The next picture (waiting at most ``REFRESH_S``). A publisher that stops (its final status) is
        silence like any other: NO SIGNAL until it is back. Only with ``until_publisher_ends`` (a program
        embedding the display, a test) None then."""
        while True:
            status = self.status
            ended = status is not None and status.header.get("final", False)
            newer = self.receiver.wait_newer("video", self.video, timeout=0.3 if ended else REFRESH_S)
            if newer is None:
                if ended and self.until_publisher_ends:
                    return None
                if (time.monotonic() - self.last_video_s) * 1e3 >= self.no_signal_ms:  # never a frozen picture
                    self.counts["no_signal_screens"] += 1
                    now_ns = time.time_ns()
                    return Shown(no_signal_screen(video_size(self.video), status, now_ns), now_ns, False, False)
                continue
            self.video, self.last_video_s = newer, time.monotonic()
            started = time.perf_counter()
            mask = fresh_mask(newer, self.receiver.newest("mask"), self.stale_ms)
            try:
                packet = _packet_from(newer, mask, status)
                packet.active_alerts += self.notices
                moved_ms = self._move_mask(packet, mask) if self.propagator is not None else None
                scene = annotate_all(self.annotators, packet.image, packet)
                draw_operating_point(scene, status, moved_ms)
            except TransportError:  # a shared-memory frame reused before we read it: the next one is newer
                self.counts["frames_overwritten"] += 1
                continue
            except Exception:  # a message that passed the checks but cannot be drawn: skip it, keep showing
                self.counts["frames_failed"] += 1
                continue
            self.counts["frames_stale"] += mask is None
            self.counts["frames_moved"] += moved_ms is not None
            self.compose_ms.add((time.perf_counter() - started) * 1e3)
            if packet.privacy in (OUTSIDE, BLANK):
                self.counts[f"frames_{packet.privacy}"] += 1
            return Shown(scene, newer.header["t_capture_ns"], True, mask is None, packet, moved_ms,
                         newer.header.get("privacy_mode", "blur"))

    def _move_mask(self, packet: FramePacket, mask: Message | None) -> float | None:
        """Remember the frame (before anything is drawn on it); move the fresh mask's class map and closest
        points from the mask's frame onto it. Returns how much older the mask's frame is, None if not moved."""
        self.propagator.remember(packet.frame_id, packet.image)
        if packet.segmentation is None:
            return None
        carried = self.propagator.carry(packet.segmentation.class_map, mask.header["frame_id"], packet.frame_id)
        if carried is None:
            return None
        class_map, flow = carried
        packet.segmentation = dataclasses.replace(packet.segmentation, class_map=class_map)
        size = class_map.shape
        packet.proximity = dataclasses.replace(packet.proximity,
                                               instrument_point=move_point(packet.proximity.instrument_point, flow, size),
                                               vessel_point=move_point(packet.proximity.vessel_point, flow, size))
        return (packet.t_capture_ns - mask.header["t_capture_ns"]) / 1e6

    def summary(self, shown: int) -> dict:
        receiver = self.receiver
        return {
            "frames_shown": shown,
            **self.counts,  # stale: without mask; overwritten: shm frames read too late; failed: could not be drawn
            "messages_rejected": dict(receiver.rejected),  # bad messages by kind (never shown)
            "received": dict(receiver.counts),
            "passthrough_delay_ms": receiver.delays_ms["video"].percentiles(),
            # its parts: capture to publish (the publisher's threads), publish to receive (ZeroMQ, this process)
            "passthrough_publisher_ms": receiver.publisher_ms["video"].percentiles(),
            "passthrough_transit_ms": receiver.transit_ms["video"].percentiles(),
            "annotation_delay_ms": receiver.delays_ms["mask"].percentiles(),  # the annotation drawn: the mask
            "annotation_transit_ms": receiver.transit_ms["mask"].percentiles(),  # its publish-to-receive part
            "compose_ms": self.compose_ms.percentiles(),
        }


def _stop_recording(recorder: Recorder, error: OSError, compositor: Compositor) -> None:
    """The recording cannot be written: said once, shown on every picture from now on, the file closed as
    far as it goes under its ``.partial`` name (it is not the whole case)."""
    reason = f"recording stopped: {error.strerror or error}".upper()
    print(f"orsight: {reason.lower()}; the display goes on", file=sys.stderr)
    compositor.notices.append(AlertEvent(alert_id=0, rule="recording_stopped", state="active", priority="medium",
                                         frame_id=-1, t_capture_ns=time.time_ns(), message=reason))
    _close_recording(recorder, complete=False)


def _close_recording(recorder: Recorder | None, complete: bool = True) -> Path | None:
    """Finish the recording; None when there is none, it was cut short or cannot be finished (a full disk):
    then the file keeps its ``.partial`` name, as far as it was written."""
    if recorder is None:
        return None
    try:
        return recorder.close(complete)
    except OSError:
        return None


def run_display(endpoint: str, headless: bool = False, record: str | Path | None = None,
                frames: int | None = None, stale_ms: float = STALE_MS, no_signal_ms: float = NO_SIGNAL_MS,
                stop: threading.Event | None = None, keys: str | Path | None = None, propagate: bool = False,
                until_publisher_ends: bool = False) -> dict:
    """Show (or record) the stream until ``frames`` frames, ``stop``, q/Esc or a signal. Silence is not
    an end, nor is the publisher stopping: NO SIGNAL is shown until video comes back (it may be restarted
    mid-operation); ``until_publisher_ends`` ends with the publisher instead (programs and tests). ``keys``:
    this display's ``orsight keys`` folder, for a ``--secure`` publisher. ``propagate``: move each mask
    with the picture to the frame shown (:class:`Compositor`)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))  # the receiver stamps arrivals promptly
    receiver = Receiver(endpoint, DISPLAY_TOPICS, keys=keys).start()
    compositor = Compositor(receiver, stale_ms, no_signal_ms, propagate, until_publisher_ends)
    recorder = Recorder(record) if record else None
    shown = 0
    try:
        while (frames is None or shown < frames) and not (stop is not None and stop.is_set()):
            picture = compositor.next()
            if picture is None:
                break
            # the recording starts with the first video frame (its size is the file's)
            if recorder is not None and (picture.video_frame or recorder.frames):
                try:
                    recorder.write(picture.shared(), picture.t_ns)
                except OSError as error:  # a full disk stops the recording, never the picture
                    _stop_recording(recorder, error, compositor)
                    recorder = None
            if not headless:
                cv2.imshow(WINDOW, picture.on_monitor())
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
            shown += picture.video_frame
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: a clean stop; the recording is finished below
        pass
    finally:
        receiver.stop()
        recorded = _close_recording(recorder)  # a finished file under its final name
        if not headless:
            cv2.destroyAllWindows()
    return {**compositor.summary(shown), "recording": str(recorded) if recorded else None}
