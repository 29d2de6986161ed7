"""Alert engine: debouncing, priorities, audit log; the clinical alerts stage.

A *rule* (:mod:`.rules`) looks at one :class:`Observation` and says whether its condition
holds (and how badly: its priority). The :class:`AlertEngine` turns those readings into alerts: raised only
after ``k`` of the last ``n`` readings agree, cleared after ``k`` of ``n`` disagree (rules use
separate enter/exit thresholds while active), kept on for ``min_on_s``, not raised again for
``cooldown_s``. Each alert has an id, a start, ``updated`` events while active (priority
change, or every ``update_every_s``) and an end. Priorities follow IEC 60601-1-8: high,
medium, low.

Clinical rules run in the AI path (the :class:`Alerts` stage); health rules in the runtime's
monitor (:mod:`.health`).

    engine = AlertEngine([VesselProximity(), VesselContact()], audit=AuditLog("audit.jsonl"))
    events = engine.update(Observation(t_ns, frame_id, proximity=packet.proximity))
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque

from pipeline.core.packet import AlertEvent, FramePacket, timed
from pipeline.stages.alerts.audit import AuditLog
from pipeline.stages.alerts.rules import CLINICAL_RULES, PRIORITY_RANK, Observation, Rule

ALERT_IDS = itertools.count(1)  # live: alert ids are unique within a process, across engines


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

    def update(self, observation: Observation, displayable: bool = True) -> list[AlertEvent]:
        """Transitions (raised / updated / cleared) caused by ``observation``; ``displayable``: they
        reach the displays fresh enough to be shown (the audit log says so)."""
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
                    self.audit.write(event, displayable)
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
                          message=reading.message, t_start_ns=start_ns, distance_mm=reading.distance_mm,
                          tier=reading.tier)

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

    reads = ("proximity",)
    writes = ("alerts", "active_alerts")

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
            # a result older than the stale limit is hidden by every display: its alerts are logged as not shown
            displayable = time.time_ns() - packet.t_capture_ns <= self.stale_ns
            packet.alerts = suppressed + self.engine.update(observation, displayable)
            packet.active_alerts = self.engine.active
        return packet
