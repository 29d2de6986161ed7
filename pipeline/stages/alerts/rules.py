"""Alert rules: each looks at one :class:`Observation` and says whether its condition holds.

Clinical rules (``vessel_proximity``, ``vessel_contact``) run in the AI path on the masks
already computed (the :class:`~pipeline.stages.alerts.engine.Alerts` stage); health rules
(``ai_stale``, ``capture_lost``, ``low_fps``, ``model_error``) run in the runtime's
:class:`~pipeline.runtime.health.HealthMonitor`. Priorities follow IEC 60601-1-8.

    rules = build_rules(CLINICAL_RULES, {"vessel_proximity": {"warn_px": 80}})
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.core.packet import Proximity


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None

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
    tier: str | None = None  # the vessel evidence tier behind a clinical reading


def vessel_priority(priority: str | None, proximity: Proximity) -> str | None:
    """A clinical priority as the vessel's evidence allows: HIGH-tier vessels as the rule says, advisory
    ("possible vessel") ones a low-priority advisory at most."""
    return priority if priority is None or proximity.tier == "high" else "low"


def vessel_word(proximity: Proximity) -> str:
    return "vessel" if proximity.tier == "high" else "possible vessel"


PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1, None: 0}


def most_severe(read, proximity: Proximity) -> Reading:
    """``read(pair)`` for the proximity and for the nearer advisory-tier pair beside it; the more urgent
    (the HIGH-tier one on a tie)."""
    readings = [read(pair) for pair in (proximity, proximity.advisory) if pair is not None]
    return max(readings, key=lambda reading: PRIORITY_RANK[reading.priority])


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
    """Instrument within ``advisory_px`` (medium) / ``warning_px`` (high) of a vessel of the HIGH evidence tier;
    within ``advisory_px`` of an advisory-tier vessel ("possible vessel"): low.

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
        if observation.proximity is None:
            return None
        return most_severe(lambda proximity: self.read(proximity, current), observation.proximity)

    def read(self, proximity: Proximity, current: str | None) -> Reading:
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
        message = f"instrument {shown:.1f} {unit} from {vessel_word(proximity)}" if math.isfinite(shown) else ""
        return Reading(vessel_priority(priority, proximity), message, _finite(proximity.distance_px),
                       proximity.distance_mm, proximity.instrument_point, proximity.tier)


@dataclass
class VesselContact(Rule):
    """Instrument touching or overlapping a vessel (gap at most ``contact_px``): high priority for a vessel of
    the HIGH evidence tier, low for an advisory-tier one ("possible vessel").

    While active it holds until the gap exceeds ``release_px``, the proximity rule's exit margin:
    on a resting touch the model's masks open gaps of up to 11 px at 720p (five of its input
    pixels), so a margin of a pixel or two drops the alert and raises it again within one touch,
    and inside 15 px the proximity rule's high priority holds anyway.
    """

    k: int = 4
    n: int = 5
    min_on_s: float = 0.5
    cooldown_s: float = 1.0
    contact_px: float = 0.0
    release_px: float = 15.0  # while active, contact holds until the gap exceeds this
    name = "vessel_contact"
    clinical = True

    def check(self, observation, current):
        if observation.proximity is None:
            return None
        return most_severe(lambda proximity: self.read(proximity, current), observation.proximity)

    def read(self, proximity: Proximity, current: str | None) -> Reading:
        limit = self.release_px if current else self.contact_px
        touching = proximity.distance_px <= limit
        return Reading(vessel_priority("high" if touching else None, proximity),
                       f"instrument touching {vessel_word(proximity)}", _finite(proximity.distance_px),
                       proximity.distance_mm, proximity.instrument_point, proximity.tier)


@dataclass
class AiStale(Rule):
    """No segmentation result for more than ``threshold_ms`` while video flows: medium.

    Debounced like the clinical rules (checked every health tick, 40 ms): raised when 3 of the
    last 4 ticks are stale, cleared only below ``release_fraction`` of the threshold, shown at
    least ``min_on_s``, then quiet for ``cooldown_s`` (on a busy host it flapped 70 times in 35 s).
    """

    k: int = 3
    n: int = 4
    min_on_s: float = 1.0
    cooldown_s: float = 0.5
    threshold_ms: float = 120.0
    release_fraction: float = 0.75
    name = "ai_stale"

    def check(self, observation, current):
        if observation.ai_age_ms is None:
            return None
        limit = self.threshold_ms * (self.release_fraction if current else 1.0)
        stale = observation.ai_age_ms > limit
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
class ModelFailure(Rule):
    """The model raised an exception or gave NaN output: medium; shown at least ``min_on_s``."""

    min_on_s: float = 1.0
    name = "model_error"

    def check(self, observation, current):
        error = observation.model_error
        return Reading("medium" if error else None, f"model error: {error}" if error else "model error")


RULES = {rule.name: rule for rule in (VesselProximity, VesselContact, AiStale, CaptureLost, LowFps, ModelFailure)}
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
