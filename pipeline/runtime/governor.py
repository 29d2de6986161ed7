"""Live governor: the model's input budget follows the CPU the AI gets, so the overlay stays fresh.

The display shows a mask only while it is at most ``stale_ms`` older than the video frame
under it. A mask is as old as its own delay (capture to publish) plus the wait for the next
one (the AI's period), so the governor watches ``delay + period`` over the last frames: when
its 80th percentile passes ``target`` (85 % of the stale limit) the input budget steps down
one rung (32 px of side: ~20 % fewer pixels, ~20 % less inference), when the budget one rung
up would still fit (the cost scaled by its pixels, with a margin) it steps back up. After
each step it waits a full window before judging again. A model of fixed input size cannot
follow; the governor then only reports.

    governor = Governor(preprocess.plan, stale_ms=120)
    governor.observe(delay_ms, period_ms)       # after each published frame (AI thread)
    governor.operating_point()                  # {"budget": 288, "input_size": [352, 224], ...}
"""
from __future__ import annotations

import collections

import numpy as np

from pipeline.stages.preprocess.geometry import GeometryPlan

RUNG_PX = 32  # budget sides step by the network's deepest stride
MIN_BUDGET = 160
TARGET_FRACTION = 0.85  # of the stale limit
UP_MARGIN = 0.8  # step up only if the larger budget's predicted cost is under this fraction of the target
WINDOW = 12  # frames judged together (and waited after a step)
PERCENTILE = 80


class Governor:
    """Chooses the input budget from ``delay + period`` of the frames just published."""

    def __init__(self, plan: GeometryPlan, stale_ms: float, min_budget: int = MIN_BUDGET):
        self.plan = plan
        self.target_ms = TARGET_FRACTION * stale_ms
        top = int(np.sqrt(plan.input_size[0] * plan.input_size[1]))
        self.rungs = list(range(top, max(min_budget, RUNG_PX) - 1, -RUNG_PX)) if plan.fit_aspect else [top]
        self.rung = 0  # index into rungs: 0 = the model's own budget
        self.ages_ms: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.steps = 0

    @property
    def budget(self) -> int:
        return self.rungs[self.rung]

    def observe(self, delay_ms: float, period_ms: float) -> None:
        """One published frame: its capture-to-publish delay and the time since the previous one."""
        self.ages_ms.append(delay_ms + period_ms)
        if len(self.ages_ms) < WINDOW or len(self.rungs) == 1:
            return
        age = float(np.percentile(self.ages_ms, PERCENTILE))
        if age > self.target_ms and self.rung < len(self.rungs) - 1:
            self._step(+1)
        elif self.rung > 0 and age * (self.rungs[self.rung - 1] / self.budget) ** 2 < UP_MARGIN * self.target_ms:
            self._step(-1)

    def _step(self, direction: int) -> None:
        self.rung += direction
        self.plan.set_budget(self.budget)
        self.ages_ms.clear()
        self.steps += 1

    def operating_point(self) -> dict:
        """What the AI runs at now: for ``status`` and the display."""
        geometry = self.plan.geometry
        return {"budget": self.budget, "max_budget": self.rungs[0], "steps": self.steps,
                "input_size": list(geometry.input_size) if geometry else None,
                "mask_age_p80_ms": round(float(np.percentile(self.ages_ms, PERCENTILE)), 1) if self.ages_ms else None}
