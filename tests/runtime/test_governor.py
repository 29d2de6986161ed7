"""The live governor: the input budget follows the CPU the AI gets, so masks reach the display fresh."""
import time

import numpy as np

from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.governor import WINDOW, Governor
from pipeline.runtime.graph import build_graph
from pipeline.runtime.live import LiveOptions
from pipeline.sources.capture import open_source
from pipeline.stages.infer import DEFAULT_MODEL, load_model
from pipeline.stages.preprocess.geometry import GeometryPlan
from tests.runtime.test_live import _run_and_listen

FRAME = np.zeros((720, 1280, 3), np.uint8)


def _observe(governor: Governor, age_ms: float, frames: int = WINDOW) -> None:
    for _ in range(frames):
        governor.observe(age_ms / 2, age_ms / 2)


def test_budget_steps_down_while_masks_would_be_stale_and_back_up_with_room():
    plan = GeometryPlan(320, crop_to_fov=False, fit_aspect=True)
    governor = Governor(plan, stale_ms=120)
    full = plan(FRAME)[0].input_size
    _observe(governor, 150)  # older than 85 % of 120 ms: one rung down
    assert governor.budget == 288
    smaller, new = plan(FRAME)
    assert new and smaller.input_size[0] * smaller.input_size[1] < full[0] * full[1]
    _observe(governor, 150, 3 * WINDOW)
    assert governor.budget == 192
    _observe(governor, 95)  # fits, but 95 ms * (224/192)^2 would not fit with the margin: stays
    assert governor.budget == 192
    _observe(governor, 40, 4 * WINDOW)  # plenty of room: back to the model's own budget
    assert governor.budget == 320 and plan(FRAME)[0].input_size == full
    assert governor.operating_point()["steps"] == 8


def test_a_fixed_input_model_is_never_resized():
    plan = GeometryPlan(320, crop_to_fov=False, fit_aspect=False)
    governor = Governor(plan, stale_ms=120)
    _observe(governor, 500, 3 * WINDOW)
    assert governor.budget == 320 and plan(FRAME)[0].input_size == (320, 320)


class PixelCostModel:
    """The shipped model on a CPU shared with other work: 1.4 us more per input pixel (140 ms at 320x320)."""

    def __init__(self, model):
        self.model, self.reads, self.writes = model, model.reads, model.writes

    def __call__(self, packet):
        width, height = packet.geometry.input_size
        time.sleep(1.4e-6 * width * height)
        return self.model(packet)


def test_live_governor_shrinks_the_input_of_a_slow_ai_and_reports_it(free_tcp_endpoint):
    model = load_model(DEFAULT_MODEL)
    stages = build_graph(model, PipelineConfig())
    stages.model = PixelCostModel(model)
    summary, receiver, headers = _run_and_listen(free_tcp_endpoint, open_source("phantom", size=(1280, 720), fps=30),
                                                 stages, LiveOptions(frames=300, realtime=True))
    point = summary["operating_point"]
    assert point["budget"] < 320 and point["steps"] >= 2
    sizes = [h["operating_point"]["input_size"] for h in headers
             if h["topic"] == "status" and (h.get("operating_point") or {}).get("input_size")]
    assert sizes[-1][0] * sizes[-1][1] < sizes[0][0] * sizes[0][1]  # the status shows the input shrinking
    assert all(h["operating_point"]["fps_ai"] >= 0 for h in headers if h["topic"] == "status" and not h.get("final"))
