"""Alert stage (first version): instrument too close to a vessel, debounced.

Raised when ``k`` of the last ``n`` frames have the instrument closer than ``enter_px``;
cleared (hysteresis) when ``k`` of the last ``n`` frames have it farther than ``exit_px``.

    alerts = ProximityAlert(enter_px=40, exit_px=60, k=3, n=5)
    packet = alerts(analyse(packet))      # fills packet.alerts / packet.active_alerts
"""
from __future__ import annotations

from collections import deque

from pipeline.packet import AlertEvent, FramePacket, timed


class ProximityAlert:
    """Stage: the ``vessel_proximity`` alert with k-of-n persistence and hysteresis."""

    rule = "vessel_proximity"
    priority = "high"

    def __init__(self, enter_px: float = 40.0, exit_px: float = 60.0, k: int = 3, n: int = 5):
        if not 1 <= k <= n:
            raise ValueError(f"alert persistence needs 1 <= k <= n, got k={k}, n={n}")
        if exit_px < enter_px:
            raise ValueError(f"alert exit distance {exit_px} must not be below its enter distance {enter_px}")
        self.enter_px, self.exit_px, self.k = enter_px, exit_px, k
        self.recent: deque[float] = deque(maxlen=n)
        self.active: AlertEvent | None = None
        self.next_id = 1

    def _event(self, state: str, packet: FramePacket) -> AlertEvent:
        proximity = packet.proximity
        distance = proximity.distance_px if proximity.distance_px != float("inf") else None
        text = "instrument near vessel" if distance is None else f"instrument {distance:.0f} px from vessel"
        if proximity.distance_mm is not None:
            text = f"instrument {proximity.distance_mm:.1f} mm from vessel"
        return AlertEvent(alert_id=self.active.alert_id if self.active else self.next_id, rule=self.rule, state=state,
                          priority=self.priority, frame_id=packet.frame_id, t_capture_ns=packet.t_capture_ns,
                          distance_px=distance, location=proximity.instrument_point, message=text)

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "alerts"):
            self.recent.append(packet.proximity.distance_px)
            near = sum(d < self.enter_px for d in self.recent)
            far = sum(d > self.exit_px for d in self.recent)
            packet.alerts = []
            if self.active is None and near >= self.k:
                self.active = self._event("raised", packet)
                self.next_id += 1
                packet.alerts.append(self.active)
            elif self.active is not None and far >= self.k:
                packet.alerts.append(self._event("cleared", packet))
                self.active = None
            elif self.active is not None:
                self.active = self._event("active", packet)
            packet.active_alerts = [self.active] if self.active else []
        return packet
