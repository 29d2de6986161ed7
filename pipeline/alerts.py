"""Alert engine: rules, debouncing, priorities, audit log.

A *rule* looks at one :class:`Observation` and says whether its condition holds (and how
badly: its priority). The :class:`AlertEngine` turns those readings into alerts: raised only
after ``k`` of the last ``n`` readings agree, cleared after ``k`` of ``n`` disagree (rules use
separate enter/exit thresholds while active), kept on for ``min_on_s``, not raised again for
``cooldown_s``. Each alert has an id, a start, ``updated`` events while active (priority
change, or every ``update_every_s``) and an end. Priorities follow IEC 60601-1-8: high,
medium, low.

Clinical rules (``vessel_proximity``, ``vessel_contact``) run in the AI path on the masks
already computed (:class:`Alerts` stage); health rules (``ai_stale``, ``capture_lost``,
``low_fps``, ``model_error``) run in the runtime's monitor.

    engine = AlertEngine([VesselProximity(), VesselContact()], audit=AuditLog("audit.jsonl"))
    events = engine.update(Observation(t_ns, frame_id, proximity=packet.proximity))
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from pipeline.packet import AlertEvent, FramePacket, Proximity, timed

PRIORITIES = ("high", "medium", "low")
PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1, None: 0}
ALERT_IDS = itertools.count(1)  # live: alert ids are unique within a process, across engines


@dataclass
class Observation:
    """What the rules look at, at one moment. Fields a rule needs but are ``None``: no reading."""

    t_ns: int  # capture time of the frame (clinical) or wall clock (health)
    frame_id: int = -1
    proximity: Proximity | None = None
    ai_age_ms: float | None = None  # time since the last segmentation result, while video flows
    capture_lost: str | None = None  # why, while the source is lost
    fps_ratio: float | None = None  # analysed fps / source fps
    model_error: str | None = None  # last model failure since the previous observation


@dataclass
class Reading:
    """A rule's verdict: ``priority`` None = condition does not hold."""

    priority: str | None
    message: str = ""
    distance_px: float | None = None
    distance_mm: float | None = None
    location: tuple[int, int] | None = None


@dataclass
class Rule:
    """Base of all rules: persistence and timing shared by every rule (each configurable)."""

    k: int = 1  # readings that must agree ...
    n: int = 1  # ... among the last n, to raise and to clear
    min_on_s: float = 0.0  # an alert stays at least this long
    cooldown_s: float = 0.0  # after it clears, it cannot be raised again for this long
    update_every_s: float = 1.0  # an active alert sends an update at least this often

    name = "rule"
    clinical = False  # suppressed while the segmentation is stale

    def __post_init__(self):
        if not 1 <= self.k <= self.n:
            raise ValueError(f"{self.name}: persistence needs 1 <= k <= n, got k={self.k}, n={self.n}")

    def check(self, observation: Observation, current: str | None) -> Reading | None:
        """The reading now; ``current`` is the priority of this rule's active alert (None: inactive)."""
        raise NotImplementedError


@dataclass
class VesselProximity(Rule):
    """Instrument within ``advisory_px`` (medium) / ``warning_px`` (high) of a vessel.

    With a pixel scale and ``*_mm`` thresholds set, the millimetre thresholds are used. While
    active, the alert holds until the distance exceeds the threshold plus ``exit_margin``.
    """

    k: int = 4  # 4 of 5: spurious 1-3 frame blobs never raise it
    n: int = 5
    min_on_s: float = 0.5
    cooldown_s: float = 1.0
    advisory_px: float = 60.0
    warning_px: float = 30.0
    exit_margin_px: float = 15.0
    advisory_mm: float | None = None
    warning_mm: float | None = None
    exit_margin_mm: float = 1.0
    name = "vessel_proximity"
    clinical = True

    def __post_init__(self):
        super().__post_init__()
        if self.warning_px > self.advisory_px:
            raise ValueError(f"{self.name}: warning_px {self.warning_px} must not exceed advisory_px "
                             f"{self.advisory_px}")

    def check(self, observation, current):
        proximity = observation.proximity
        if proximity is None:
            return None
        metric = proximity.distance_mm is not None and self.warning_mm is not None and self.advisory_mm is not None
        distance = proximity.distance_mm if metric else proximity.distance_px
        warning, advisory = (self.warning_mm, self.advisory_mm) if metric else (self.warning_px, self.advisory_px)
        margin = self.exit_margin_mm if metric else self.exit_margin_px
        # Hysteresis: a level is entered below its threshold and left above threshold + margin.
        high_limit = warning + (margin if current == "high" else 0.0)
        medium_limit = advisory + (margin if current is not None else 0.0)
        priority = "high" if distance < high_limit else "medium" if distance < medium_limit else None
        unit = "mm" if proximity.distance_mm is not None else "px"
        shown = proximity.distance_mm if proximity.distance_mm is not None else proximity.distance_px
        message = f"instrument {shown:.1f} {unit} from vessel" if math.isfinite(shown) else ""
        return Reading(priority, message, _finite(proximity.distance_px), proximity.distance_mm,
                       proximity.instrument_point)


@dataclass
class VesselContact(Rule):
    """Instrument touching or overlapping a vessel (gap at most ``contact_px``): high priority."""

    k: int = 4
    n: int = 5
    min_on_s: float = 0.5
    cooldown_s: float = 1.0
    contact_px: float = 0.0
    release_px: float = 3.0  # while active, contact holds until the gap exceeds this
    name = "vessel_contact"
    clinical = True

    def check(self, observation, current):
        proximity = observation.proximity
        if proximity is None:
            return None
        limit = self.release_px if current else self.contact_px
        touching = proximity.distance_px <= limit
        return Reading("high" if touching else None, "instrument touching vessel",
                       _finite(proximity.distance_px), proximity.distance_mm, proximity.instrument_point)


@dataclass
class AiStale(Rule):
    """No segmentation result for more than ``threshold_ms`` while video flows: medium."""

    threshold_ms: float = 120.0
    name = "ai_stale"

    def check(self, observation, current):
        if observation.ai_age_ms is None:
            return None
        stale = observation.ai_age_ms > self.threshold_ms
        return Reading("medium" if stale else None, f"AI stale ({observation.ai_age_ms:.0f} ms)")


@dataclass
class CaptureLost(Rule):
    """The video source stopped delivering frames: high."""

    name = "capture_lost"

    def check(self, observation, current):
        lost = observation.capture_lost
        return Reading("high" if lost else None, f"capture lost: {lost}" if lost else "capture lost")


@dataclass
class LowFps(Rule):
    """Analysis rate below ``min_fraction`` of the source rate: low."""

    min_fraction: float = 0.5
    k: int = 3
    n: int = 3
    name = "low_fps"

    def check(self, observation, current):
        if observation.fps_ratio is None:
            return None
        slow = observation.fps_ratio < self.min_fraction
        return Reading("low" if slow else None, f"AI at {observation.fps_ratio:.0%} of the video rate")


@dataclass
class ModelError(Rule):
    """The model raised an exception or gave NaN output: medium; shown at least ``min_on_s``."""

    min_on_s: float = 1.0
    name = "model_error"

    def check(self, observation, current):
        error = observation.model_error
        return Reading("medium" if error else None, f"model error: {error}" if error else "model error")


RULES = {rule.name: rule for rule in (VesselProximity, VesselContact, AiStale, CaptureLost, LowFps, ModelError)}
CLINICAL_RULES = ("vessel_proximity", "vessel_contact")
HEALTH_RULES = ("ai_stale", "capture_lost", "low_fps", "model_error")


def build_rules(names: tuple[str, ...], settings: dict[str, dict] | None = None) -> list[Rule]:
    """Rules by name, each with its settings (``{rule: {parameter: value}}``) applied."""
    settings = settings or {}
    unknown = set(settings) - set(RULES)
    if unknown:
        raise ValueError(f"unknown alert rules {', '.join(sorted(unknown))} (known: {', '.join(RULES)})")
    rules = []
    for name in names:
        try:
            rules.append(RULES[name](**settings.get(name, {})))
        except TypeError as error:
            raise ValueError(f"alert rule {name}: {error}") from None
    return rules


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class AuditLog:
    """Append-only JSONL of every alert transition; each line written whole, at once, and flushed.

    Every line carries the identity of the model and the configuration in force, so a log can
    be tied to what produced it. A crash leaves every written line complete.
    """

    def __init__(self, path: str | os.PathLike, identity: dict | None = None):
        self.path, self.identity = os.fspath(path), identity or {}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()

    def write(self, event: AlertEvent) -> None:
        line = json.dumps({"t_wall_ns": time.time_ns(), **dataclasses.asdict(event), **self.identity},
                          separators=(",", ":")) + "\n"
        with self.lock:
            os.write(self.fd, line.encode())  # one write of one line on an O_APPEND file: never interleaved
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class _RuleState:
    """Debouncing state of one rule."""

    def __init__(self, rule: Rule):
        self.recent: deque[bool] = deque(maxlen=rule.n)
        self.active: AlertEvent | None = None
        self.last_update_ns = 0
        self.cleared_ns: int | None = None


class AlertEngine:
    """Debounces rule readings into alert transitions; optionally logs each to an audit log."""

    def __init__(self, rules: list[Rule], audit: AuditLog | None = None, ids=None):
        self.rules, self.audit = rules, audit
        self.ids = ids or ALERT_IDS  # replay gives each video its own count: ids repeat exactly
        self.states = {rule.name: _RuleState(rule) for rule in rules}

    @property
    def active(self) -> list[AlertEvent]:
        """Active alerts, highest priority first."""
        alerts = [s.active for s in self.states.values() if s.active is not None]
        return sorted(alerts, key=lambda a: -PRIORITY_RANK[a.priority])

    def update(self, observation: Observation) -> list[AlertEvent]:
        """Transitions (raised / updated / cleared) caused by ``observation``."""
        events = []
        for rule in self.rules:
            state = self.states[rule.name]
            reading = rule.check(observation, state.active.priority if state.active else None)
            if reading is None:
                continue
            state.recent.append(reading.priority is not None)
            event = self._step(rule, state, reading, observation)
            if event is not None:
                events.append(event)
                if self.audit is not None:
                    self.audit.write(event)
        return events

    def clear_all(self, observation: Observation, rule_names: tuple[str, ...], why: str) -> list[AlertEvent]:
        """End the named rules' active alerts now (e.g. clinical alerts while the AI is stale)."""
        events = []
        for name in rule_names:
            state = self.states.get(name)
            if state is not None and state.active is not None:
                events.append(self._end(state, observation, why))
                state.recent.clear()
                if self.audit is not None:
                    self.audit.write(events[-1])
        return events

    @staticmethod
    def _event(rule, reading, observation, kind, alert_id, start_ns) -> AlertEvent:
        return AlertEvent(alert_id=alert_id, rule=rule.name, state=kind, priority=reading.priority,
                          frame_id=observation.frame_id, t_capture_ns=observation.t_ns,
                          distance_px=reading.distance_px, location=reading.location,
                          message=reading.message, t_start_ns=start_ns, distance_mm=reading.distance_mm)

    def _end(self, state: _RuleState, observation: Observation, message: str) -> AlertEvent:
        ended = dataclasses.replace(state.active, state="cleared", frame_id=observation.frame_id,
                                    t_capture_ns=observation.t_ns, t_end_ns=observation.t_ns,
                                    message=message or state.active.message)
        state.active, state.cleared_ns = None, observation.t_ns
        return ended

    def _step(self, rule, state, reading, observation) -> AlertEvent | None:
        now = observation.t_ns
        agreeing = sum(state.recent)
        if state.active is None:
            cooling = state.cleared_ns is not None and now - state.cleared_ns < rule.cooldown_s * 1e9
            if agreeing >= rule.k and reading.priority is not None and not cooling:
                state.active = self._event(rule, reading, observation, "raised", next(self.ids), now)
                state.last_update_ns = now
                return state.active
            return None
        on_long_enough = now - state.active.t_start_ns >= rule.min_on_s * 1e9
        if len(state.recent) - agreeing >= rule.k and on_long_enough:
            return self._end(state, observation, reading.message)
        priority = reading.priority or state.active.priority  # a dip below threshold is not a change
        escalated = PRIORITY_RANK[priority] != PRIORITY_RANK[state.active.priority]
        current = self._event(rule, dataclasses.replace(reading, priority=priority), observation, "updated",
                              state.active.alert_id, state.active.t_start_ns)
        if escalated or now - state.last_update_ns >= rule.update_every_s * 1e9:
            state.active, state.last_update_ns = current, now
            return current
        # No event, but the active alert shown with each frame carries this frame's distance.
        state.active = dataclasses.replace(current, state=state.active.state)
        return None


class Alerts:
    """Stage: clinical rules on ``packet.proximity``; fills ``packet.alerts`` and ``packet.active_alerts``.

    A frame captured more than ``stale_ms`` after the previous analysed one means the
    segmentation went stale in between: the clinical alerts of before are ended first
    (suppressed), and must be raised afresh from new evidence.
    """

    def __init__(self, rules: list[Rule], audit: AuditLog | None = None, stale_ms: float = 120.0, ids=None):
        self.engine = AlertEngine([r for r in rules if r.clinical], audit, ids)
        self.stale_ns = stale_ms * 1e6
        self.previous_ns: int | None = None

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "alerts"):
            observation = Observation(packet.t_capture_ns, packet.frame_id, proximity=packet.proximity)
            stale = self.previous_ns is not None and packet.t_capture_ns - self.previous_ns > self.stale_ns
            suppressed = self.engine.clear_all(observation, CLINICAL_RULES, "suppressed: segmentation was stale") \
                if stale else []
            self.previous_ns = packet.t_capture_ns
            packet.alerts = suppressed + self.engine.update(observation)
            packet.active_alerts = self.engine.active
        return packet
