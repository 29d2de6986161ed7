"""Alert quality on the phantom: detection delay (frames) and false alerts per minute.

Every frame goes through the live path's stages (preprocess, model, analysis, alerts) in
order, timed by the video clock (30 fps), with the model's masks and, as a reference, with
the ground-truth masks (a perfect model).

* ``approach``: for each approach, frames from the true distance crossing the advisory /
  warning threshold to the alert being raised / escalated, and from leaving to clearing; and
  for its touch (the tip resting on the vessel for 2 s), frames from the touch to the contact
  alert, contact alerts raised (one is right: more is an alarm that flaps), and the share of
  the touch's frames it was active.
* ``default`` (busy scene): alerts raised per minute, and false ones (no true instrument-vessel
  gap under advisory + exit margin within +-k frames of the raise) per minute.

    python benchmarks/alert_quality.py [--minutes 2] [--model PATH] [--json FILE]
        [--alerts '{"vessel_contact": {"release_px": 8}}']   # rule parameters, as in the config
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import provenance, provenance_lines

from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.alerts.engine import Alerts
from pipeline.stages.alerts.rules import CLINICAL_RULES, VesselProximity, build_rules
from pipeline.stages.analyse.cpu import MeasureProximity
from pipeline.stages.infer import load_model

SIZE, FPS = (1280, 720), 30.0


def run(scene: PhantomScene, frames: int, model, rules: dict) -> tuple[list[float], list[tuple]]:
    """True distance per frame and alert events ``(frame, rule, state, priority)``; ``rules``: rule
    parameters (``PipelineConfig.alerts``)."""
    if model:
        graph = build_graph(model, PipelineConfig(alerts=rules))
        stages = [*graph.prepare, graph.model, *graph.describe, graph.alerts]  # the live path up to its alerts
    else:
        stages = [MeasureProximity(), Alerts(build_rules(CLINICAL_RULES, rules))]  # on the true masks
    truth_distance, events = [], []
    for frame in range(frames):
        image, truth = scene.render(frame)
        packet = FramePacket(frame, "phantom", image, int(frame / FPS * 1e9), 0)
        if not model:
            packet.segmentation = truth.segmentation()
        for stage in stages:
            packet = stage(packet)
        truth_distance.append(truth.distance_px)
        events += [(frame, e.rule, e.state, e.priority) for e in packet.alerts]
    return truth_distance, events


def approach_delays(distance, events, schedule) -> list[dict]:
    """Per approach of the ``approach`` scenario (``schedule``: its ``approach_events``)."""
    rule = VesselProximity()
    period = schedule["period"]
    rows = []
    for start in range(0, len(distance) - period + 1, period):
        window = [e for e in events if start <= e[0] < start + period and e[1] == "vessel_proximity"]
        crossed = next((f for f in range(start, start + period) if distance[f] < rule.advisory_px), None)
        warned = next((f for f in range(start, start + period) if distance[f] < rule.warning_px), None)
        raised = next((e[0] for e in window if e[2] == "raised"), None)
        high = next((e[0] for e in window if e[3] == "high"), None)
        left = next((f for f in range(warned or start, start + period)
                     if distance[f] > rule.advisory_px + rule.exit_margin_px), None)
        cleared = next((e[0] for e in window if e[2] == "cleared"), None)
        rows.append({"raised_after": None if None in (raised, crossed) else raised - crossed,
                     "high_after": None if None in (high, warned) else high - warned,
                     "cleared_after": None if None in (cleared, left) else cleared - left,
                     "raises": sum(e[2] == "raised" for e in window),
                     **touch_figures(events, range(start, start + period), start + schedule["touch"],
                                     start + schedule["release"])})
    return rows


def touch_figures(events, approach: range, touch: int, release: int) -> dict:
    """The contact alert over one approach's touch (its frames ``touch`` to ``release``): frames from
    the touch to its first raise, raises within the approach, share of the touch's frames it was active."""
    contact = [e for e in events if e[1] == "vessel_contact" and e[0] in approach]
    raised = [e[0] for e in contact if e[2] == "raised"]
    changes = {e[0]: e[2] != "cleared" for e in contact if e[2] in ("raised", "cleared")}
    active, held = False, 0
    for frame in range(approach.start, release):
        active = changes.get(frame, active)
        held += active and frame >= touch
    return {"contact_after": raised[0] - touch if raised else None, "contact_raises": len(raised),
            "contact_held": round(held / (release - touch), 3)}


def false_alerts(distance, events, k=4) -> tuple[int, int]:
    limit = VesselProximity().advisory_px + VesselProximity().exit_margin_px
    raised = [e for e in events if e[2] == "raised"]
    false = [e for e in raised if min(distance[max(0, e[0] - k):e[0] + k + 1]) >= limit]
    return len(raised), len(false)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--scenes", type=int, default=1,
                        help="approach scenes (vessel layouts: seeds 0..N-1), three approaches each")
    parser.add_argument("--json", default=None)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="folder for alert_quality.json and alert_quality.md")
    parser.add_argument("--alerts", type=json.loads, default={},
                        help="rule parameters as JSON, e.g. '{\"vessel_contact\": {\"release_px\": 8}}'")
    args = parser.parse_args()
    model = load_model(args.model)
    result = {**provenance(), "model_file": model.description, "rules": args.alerts,
              "input": f"phantom {SIZE[0]}x{SIZE[1]} @ {FPS:g} fps, every frame"}
    approaches = [PhantomScene(*SIZE, fps=FPS, scenario="approach", seed=seed) for seed in range(args.scenes)]
    busy = PhantomScene(*SIZE, fps=FPS, scenario="default", seed=1)
    frames = int(args.minutes * 60 * FPS)
    for label, which in (("model", model), ("ground truth masks", None)):
        rows = []
        for seed, scene in enumerate(approaches):
            schedule = scene.approach_events()
            distance, events = run(scene, 3 * schedule["period"], which, args.alerts)
            rows += [{"scene": seed, **row} for row in approach_delays(distance, events, schedule)]
        busy_distance, busy_events = run(busy, frames, which, args.alerts)
        raised, false = false_alerts(busy_distance, busy_events)
        result[label] = {"approach": rows, "default_alerts_per_min": round(raised / args.minutes, 2),
                         "default_false_alerts_per_min": round(false / args.minutes, 2)}
        print(label, json.dumps(result[label]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    write_results(Path(args.out), result)


def write_results(out: Path, result: dict) -> None:
    """``alert_quality.json`` and ``alert_quality.md`` (the table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "alert_quality.json").write_text(json.dumps(result, indent=2))
    lines = ["# Alert quality on the phantom", "", *provenance_lines(result),
             f"{result['model_file']}; {result['input']}",
             "", "| masks | approach | raised after | high after | cleared after | raises | contact after | "
             "contact raises | contact held |", "|---|---|---|---|---|---|---|---|---|"]
    for label in ("model", "ground truth masks"):
        lines += [f"| {label} | {i + 1} | {row['raised_after']} | {row['high_after']} | {row['cleared_after']} | "
                  f"{row['raises']} | {row['contact_after']} | {row['contact_raises']} | {row['contact_held']} |"
                  for i, row in enumerate(result[label]["approach"])]
    lines += ["", "| masks | busy scene: alerts a minute | false ones a minute |", "|---|---|---|"]
    for label in ("model", "ground truth masks"):
        busy = result[label]
        lines.append(f"| {label} | {busy['default_alerts_per_min']} | {busy['default_false_alerts_per_min']} |")
    lines += ["", "Frames at 30 fps from the true distance crossing the threshold (or the touch) to the alert; "
              "-1: already high when raised."]
    (out / "alert_quality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
