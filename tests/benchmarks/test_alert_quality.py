"""benchmarks/alert_quality.py: the touch figures count what an OR team would feel, and the rules meet them
on the phantom's true masks (a perfect model)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from alert_quality import approach_delays, run, touch_figures  # noqa: E402

from pipeline.sources.phantom import PhantomScene  # noqa: E402


def test_a_contact_alert_that_drops_and_returns_within_one_touch_counts_twice():
    events = [(105, "vessel_contact", "raised", "high"), (120, "vessel_contact", "cleared", None),
              (140, "vessel_contact", "raised", "high"), (150, "vessel_contact", "updated", "high"),
              (170, "vessel_contact", "cleared", None), (110, "vessel_proximity", "raised", "medium")]
    figures = touch_figures(events, range(0, 300), touch=100, release=160)
    assert figures["contact_after"] == 5 and figures["contact_raises"] == 2
    assert figures["contact_held"] == round((15 + 20) / 60, 3)  # frames 105-119 and 140-159


def test_a_contact_raised_before_the_touch_counts_from_the_touch_and_none_is_none():
    early = touch_figures([(95, "vessel_contact", "raised", "high")], range(0, 300), touch=100, release=160)
    assert early == {"contact_after": -5, "contact_raises": 1, "contact_held": 1.0}
    assert touch_figures([], range(0, 300), 100, 160) == {"contact_after": None, "contact_raises": 0,
                                                          "contact_held": 0.0}


def test_on_true_masks_each_touch_raises_one_contact_alert_that_holds():
    scene = PhantomScene(320, 180, fps=30.0, scenario="approach", seed=1)
    schedule = scene.approach_events()
    distance, events = run(scene, schedule["period"], None, {})
    (row,) = approach_delays(distance, events, schedule)
    assert row["raises"] == 1 and row["contact_raises"] == 1
    assert abs(row["contact_after"]) <= 5 and row["contact_held"] > 0.9  # at 320x180 the pixels meet a frame early
