"""Durations over a whole operating day in constant memory.

A log-spaced histogram (bins 1 % wide, from a microsecond to a quarter of an hour; beyond, the
end bins) gives the run's percentiles to within 1 %; the newest ``window`` values are kept as
they were, for recent means and for reading like a list (``values[-30:]``, ``values[0]``).

    delays = Latencies()
    delays.add(3.2)
    delays.percentiles()        # {"p50": 3.2, "p95": 3.2, "p99": 3.2}
    sum(delays[-30:]) / len(delays[-30:])
"""
from __future__ import annotations

import collections
import math

import numpy as np

LOW_MS, HIGH_MS, RATIO = 1e-3, 1e6, 1.01
BINS = int(math.ceil(math.log(HIGH_MS / LOW_MS) / math.log(RATIO))) + 1
WINDOW = 1000


class Latencies:
    """Milliseconds: percentiles of all of them, the newest ``window`` as they were."""

    def __init__(self, window: int = WINDOW):
        self.counts = np.zeros(BINS + 1, np.int64)  # bin 0: zero and below (clocks of two hosts disagree)
        self.count = 0
        self.window: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, ms: float) -> None:
        self.counts[_bin(ms)] += 1
        self.count += 1
        self.window.append(ms)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of every value added (the centre of its bin), None before the first."""
        if not self.count:
            return None
        index = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.count, side="left"))
        return 0.0 if index == 0 else LOW_MS * RATIO ** (index - 0.5)

    def percentiles(self) -> dict[str, float | None]:
        """p50/p95/p99 rounded to 0.01 (None when empty)."""
        return {f"p{q}": None if self.count == 0 else round(self.percentile(q), 2) for q in (50, 95, 99)}

    def __len__(self) -> int:
        return len(self.window)

    def __getitem__(self, index):
        return list(self.window)[index] if isinstance(index, slice) else self.window[index]

    def __iter__(self):
        return iter(self.window)


def _bin(ms: float) -> int:
    if not ms > 0:
        return 0
    return int(min(BINS, max(1, math.floor(math.log(max(ms, LOW_MS) / LOW_MS) / math.log(RATIO)) + 1)))
