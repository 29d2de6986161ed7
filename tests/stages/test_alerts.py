"""The alert engine: rules, persistence, hysteresis, cooldown, suppression, audit log, health."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pipeline.core.packet import AlertEvent, FramePacket, Proximity
from pipeline.sources.phantom import INSTRUMENT, VESSEL, PhantomScene
from pipeline.stages.alerts.engine import AlertEngine, Alerts
from pipeline.stages.alerts.rules import (
    AiStale,
    CaptureLost,
    LowFps,
    ModelFailure,
    Observation,
    VesselContact,
    VesselProximity,
    build_rules,
)
from pipeline.stages.analyse.cpu import MeasureProximity
from tests.helpers import orsight

FPS = 30.0


def _observe(engine, distances, fps=FPS):
    """Feed one distance per frame; returns per frame (active priorities by rule, event states)."""
    timeline = []
    for i, d in enumerate(distances):
        events = engine.update(Observation(int(i / fps * 1e9), i, proximity=Proximity(d, (1, 1), (2, 2), tier="high")))
        timeline.append(({a.rule: a.priority for a in engine.active}, [(e.rule, e.state, e.priority) for e in events]))
    return timeline


def test_proximity_raises_after_k_of_n_escalates_and_clears_with_hysteresis():
    engine = AlertEngine([VesselProximity(k=3, n=5, min_on_s=0, advisory_px=60, warning_px=30, exit_margin_px=15)])
    timeline = _observe(engine, [100, 50, 50, 50, 20, 20, 70, 70, 70, 80, 80, 80, 100])
    assert [t[0].get("vessel_proximity") for t in timeline] == \
        [None, None, None, "medium", "high", "high", "medium", "medium", "medium", "medium", "medium", None, None]
    assert ("vessel_proximity", "raised", "medium") in timeline[3][1]
    assert ("vessel_proximity", "updated", "high") in timeline[4][1]
    assert ("vessel_proximity", "updated", "medium") in timeline[6][1]  # 70: above 30 + 15, below 60 + 15
    assert ("vessel_proximity", "cleared", "medium") in timeline[11][1]  # 3 of the last 5 above 60 + 15


def test_short_blips_do_not_raise():
    engine = AlertEngine([VesselProximity(k=4, n=5)])
    assert not any(t[0] for t in _observe(engine, [100, 10, 10, 10, 100, 100, 100, 10, 100, 100, 10, 10, 100]))


def test_minimum_on_time_and_cooldown():
    rule = VesselProximity(k=1, n=1, min_on_s=0.5, cooldown_s=1.0, exit_margin_px=0)
    engine = AlertEngine([rule])
    distances = [10] + [100] * 29 + [10] * 3 + [100] * 5 + [10] * 2
    timeline = _observe(engine, distances)
    active = [bool(t[0]) for t in timeline]
    assert active[:15] == [True] * 15 and not active[16]  # held 0.5 s (15 frames) despite clearing at frame 1
    raised = [i for i, t in enumerate(timeline) if any(e[1] == "raised" for e in t[1])]
    assert raised == [0, 45 - 7] or raised[0] == 0 and all(i >= 15 + 30 for i in raised[1:])  # 1 s cool-down


def test_contact_rule_and_ids_and_updates():
    engine = AlertEngine([VesselContact(k=2, n=3, min_on_s=0, update_every_s=0.1)])
    timeline = _observe(engine, [5, 0, 0, 0, 0, 9, 12, 9, 0, 0, 20, 20, 20])
    states = [e for t in timeline for e in t[1]]
    assert states[0] == ("vessel_contact", "raised", "high")
    assert all(t[0] for t in timeline[2:11])  # gaps of 9-12 px (the masks' jitter) hold it: released above 15
    assert ("vessel_contact", "updated", "high") in states and states[-1][1] == "cleared"
    assert sum(e[1] == "raised" for e in states) == 1


def test_health_rules():
    rules = [AiStale(threshold_ms=120, k=1, n=1, min_on_s=0), CaptureLost(), LowFps(min_fraction=0.5, k=1, n=1),
             ModelFailure(min_on_s=0)]
    engine = AlertEngine(rules)
    events = engine.update(Observation(0, ai_age_ms=300, capture_lost="unplugged", fps_ratio=0.2,
                                       model_error="NaN output"))
    assert {(e.rule, e.priority) for e in events} == {("ai_stale", "medium"), ("capture_lost", "high"),
                                                      ("low_fps", "low"), ("model_error", "medium")}
    assert [a.priority for a in engine.active] == ["high", "medium", "medium", "low"]
    events = engine.update(Observation(10**9, ai_age_ms=30, capture_lost=None, fps_ratio=0.9, model_error=None))
    assert {e.rule for e in events if e.state == "cleared"} == {"ai_stale", "capture_lost", "low_fps", "model_error"}


def test_ai_stale_does_not_flap_on_a_busy_host():
    engine = AlertEngine([AiStale()])
    ages = [150 if tick % 3 else 60 for tick in range(35 * 25)]  # 35 s of 40 ms ticks, an AI hovering at the limit
    events = [e for tick, age in enumerate(ages) for e in engine.update(Observation(tick * 40 * 10**6, ai_age_ms=age))]
    raised = [e for e in events if e.state == "raised"]
    assert 1 <= len(raised) <= 3  # it was 70 raise/clear pairs before debouncing


def test_rules_are_configurable_and_checked():
    rules = build_rules(("vessel_proximity", "ai_stale"), {"vessel_proximity": {"warning_px": 10, "k": 2},
                                                           "ai_stale": {"threshold_ms": 200}})
    assert rules[0].warning_px == 10 and rules[0].k == 2 and rules[1].threshold_ms == 200
    with pytest.raises(ValueError, match="unknown alert rules"):
        build_rules(("ai_stale",), {"bogus": {}})
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_rules(("ai_stale",), {"ai_stale": {"colour": "red"}})
    with pytest.raises(ValueError, match="k <= n"):
        VesselProximity(k=6, n=5)


def _clinical_run(scene, frames, segment=None):
    """Ground-truth masks (optionally altered by ``segment``) through analysis and the alert stage."""
    analyse, alerts = MeasureProximity(), Alerts([VesselProximity(), VesselContact()])
    truth_distance, events = [], []
    for frame in frames:
        _, truth = scene.render(frame)
        packet = FramePacket(frame, "phantom", np.zeros((1, 1, 3), np.uint8), int(frame / scene.fps * 1e9), 0)
        packet.segmentation = truth.segmentation() if segment is None else segment(frame, truth)
        packet = alerts(analyse(packet))
        truth_distance.append(truth.distance_px)
        events += [(frame, e.rule, e.state, e.priority) for e in packet.alerts]
    return truth_distance, events


def test_approach_raises_once_per_approach_within_k_frames():
    scene = PhantomScene(640, 360, fps=FPS, scenario="approach")
    period = scene.approach_events()["period"]
    rule = VesselProximity()
    distance, events = _clinical_run(scene, range(2 * period))
    for start in (0, period):
        window = [e for e in events if start <= e[0] < start + period and e[1] == "vessel_proximity"]
        raised = [e for e in window if e[2] == "raised"]
        assert len(raised) == 1
        crossed = next(f for f in range(start, start + period) if distance[f] < rule.advisory_px)
        assert 0 <= raised[0][0] - crossed <= rule.k
        high = next(e for e in window if e[3] == "high")
        crossed_warning = next(f for f in range(start, start + period) if distance[f] < rule.warning_px)
        assert 0 <= high[0] - crossed_warning <= rule.k
        cleared = [e for e in window if e[2] == "cleared"]
        left = next(f for f in range(crossed_warning, start + period)
                    if distance[f] > rule.advisory_px + rule.exit_margin_px)
        assert len(cleared) == 1 and 0 <= cleared[0][0] - left <= rule.k
        assert sum(1 for e in events if start <= e[0] < start + period and e[1:3] == ("vessel_contact", "raised")) == 1


def test_spurious_vessel_blobs_next_to_the_instrument_raise_nothing():
    scene = PhantomScene(640, 360, fps=FPS, scenario="approach")
    rng = np.random.default_rng(0)
    bursts, frame = set(), 0
    while frame < 600:  # 1-3 frame bursts, at least 4 clean frames apart
        length = int(rng.integers(1, 4))
        bursts.update(range(frame, frame + length))
        frame += length + int(rng.integers(4, 9))

    def noisy(frame, truth):
        segmentation = truth.segmentation()
        if frame in bursts:
            ys, xs = np.nonzero(truth.class_map == INSTRUMENT)
            tip = np.argmin(ys)  # the instrument comes from below: its top is the tip
            segmentation.class_map = truth.class_map.copy()
            segmentation.class_map[max(0, ys[tip] - 8):ys[tip] - 2, xs[tip] - 3:xs[tip] + 3] = VESSEL
        return segmentation

    events = scene.approach_events()
    parked = [f for f in range(600) if f % events["period"] < events["advance"] or f % events["period"] >= events["away"]]
    assert len(parked) == 120 and len(bursts & set(parked)) >= 25
    distance, alerts = _clinical_run(scene, parked, noisy)
    assert min(distance) > 100 and alerts == []
    burst = min(bursts & set(parked))
    packet = FramePacket(0, "phantom", np.zeros((1, 1, 3), np.uint8), 0, 0)
    packet.segmentation = noisy(burst, scene.render(burst)[1])
    assert MeasureProximity()(packet).proximity.distance_px < 10  # each blob alone would look like danger


def test_clinical_alerts_are_suppressed_after_a_stale_gap():
    stage = Alerts([VesselContact(k=1, n=1, min_on_s=0, cooldown_s=0)], stale_ms=120)
    packets = []
    for frame, t_ms in enumerate([0, 33, 66, 400]):  # 334 ms without a result before the last frame
        packet = FramePacket(frame, "x", np.zeros((1, 1, 3), np.uint8), int(t_ms * 1e6), 0)
        packet.proximity = Proximity(0.0, (0, 0), (1, 1), tier="high")
        packets.append(stage(packet))
    assert packets[2].active_alerts and packets[2].alerts == []
    states = [(e.state, e.message) for e in packets[3].alerts]
    assert states[0] == ("cleared", "suppressed: segmentation was stale") and states[1][0] == "raised"


def test_audit_log_is_complete_after_a_crash(tmp_path):
    log = tmp_path / "audit.jsonl"
    script = textwrap.dedent(f"""
        import itertools
        from pipeline.stages.alerts.audit import AuditLog
        from pipeline.stages.alerts.engine import AlertEngine
        from pipeline.stages.alerts.rules import Observation, VesselContact
        from pipeline.core.packet import Proximity
        engine = AlertEngine([VesselContact(k=1, n=1, min_on_s=0, cooldown_s=0)],
                             AuditLog({str(log)!r}, {{"model": "m.onnx", "config_sha256": "abc"}}))
        for i in itertools.count():
            engine.update(Observation(i, i, proximity=Proximity(0.0 if i % 2 else 20.0, (1, 1), (2, 2), tier="high")))
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends on a complete line
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) > 10 and all(r["model"] == "m.onnx" and r["config_sha256"] == "abc" for r in records)
    states = [r["state"] for r in records]
    assert all(a != b for a, b in zip(states, states[1:]))  # raised, cleared, raised ...: nothing lost
    assert {r["alert_id"] for r in records if r["state"] == "raised"} == {r["alert_id"] for r in records
                                                                          if r["state"] == "cleared"} | (
        {records[-1]["alert_id"]} if states[-1] == "raised" else set())


def test_audit_log_chain_shows_a_removed_or_edited_line(tmp_path):
    from pipeline.stages.alerts.audit import AuditLog, verify

    log = tmp_path / "audit.jsonl"
    for run in range(2):  # a second run appends to the same chain
        audit = AuditLog(log, {"model_sha256": "f" * 64})
        for alert_id in range(3):
            audit.write(AlertEvent(alert_id, "vessel_contact", "raised", "high", alert_id, 10 * alert_id))
        audit.close()
    assert verify(log) == [] and os.stat(log).st_mode & 0o777 == 0o600
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["record"] for r in records].count("close") == 2 and len({r["run_id"] for r in records}) == 2
    lines = log.read_text().splitlines(keepends=True)
    (tmp_path / "removed.jsonl").write_text("".join(lines[:2] + lines[3:]))
    (tmp_path / "edited.jsonl").write_text("".join(lines[:1] + [lines[1].replace('"high"', '"low"')] + lines[2:]))
    removed = verify(tmp_path / "removed.jsonl")
    assert removed[0] == "line 3: does not follow line 2 (a line was removed, added or edited before it)"
    assert "lines of the run are missing" in removed[1] and "closes with 3 lines, 2 were written" in removed[2]
    assert len(verify(tmp_path / "edited.jsonl")) == 1
    result = orsight("audit", "verify", str(tmp_path / "edited.jsonl"), timeout=60)
    assert result.returncode == 2 and "line 3" in result.stdout


def test_audit_log_cut_short_or_empty_is_not_intact_and_a_readable_log_is_made_private(tmp_path):
    from pipeline.stages.alerts.audit import AuditLog, verify

    log = tmp_path / "audit.jsonl"
    log.write_text("")
    os.chmod(log, 0o644)  # as another tool might leave it
    assert verify(log) == ["empty: no record at all"]
    audit = AuditLog(log, {"model_sha256": "f" * 64})
    assert os.stat(log).st_mode & 0o777 == 0o600
    for alert_id in range(4):
        audit.write(AlertEvent(alert_id, "vessel_contact", "raised", "high", alert_id, 10 * alert_id))
    audit.close()
    assert verify(log) == []
    lines = log.read_text().splitlines(keepends=True)
    (tmp_path / "cut.jsonl").write_text("".join(lines[:-2]))  # the last alert and the close record removed
    problems = verify(tmp_path / "cut.jsonl")
    assert len(problems) == 1 and "no close record after line 3" in problems[0]
    result = orsight("audit", "verify", str(tmp_path / "cut.jsonl"), timeout=60)
    assert result.returncode == 2 and "intact" not in result.stdout


def test_a_signed_chain_cannot_be_rewritten_without_the_key(tmp_path):
    """Whoever can write the log can edit a line and recompute every SHA-256 after it; with the site's key
    (held apart) the chain is an HMAC, and the rewritten log fails."""
    import hashlib

    from pipeline.stages.alerts.audit import AuditLog, audit_key, verify

    key = audit_key(tmp_path / "audit.key")
    log = tmp_path / "audit.jsonl"
    audit = AuditLog(log, {"model_sha256": "f" * 64}, key=key)
    for alert_id in range(3):
        audit.write(AlertEvent(alert_id, "vessel_contact", "raised", "high", alert_id, 10 * alert_id))
    head = audit.close()
    assert verify(log, key) == [] and head
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines[1]["priority"] = "low"  # the forger's edit, then the chain recomputed as a plain SHA-256 chain
    forged, previous = [], "0" * 64
    for record in lines:
        record["prev"] = previous
        text = json.dumps(record, separators=(",", ":"))
        forged.append(text)
        previous = hashlib.sha256(text.encode()).hexdigest()
    (tmp_path / "forged.jsonl").write_text("\n".join(forged) + "\n")
    assert verify(tmp_path / "forged.jsonl", key)  # detected
    assert "signed with the audit key" in verify(log)[0]  # and without the key nothing is called intact
