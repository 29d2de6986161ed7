"""Durations in constant memory: percentiles within 1 % of the exact ones, the newest kept as they were."""
import numpy as np

from pipeline.core.latency import Latencies


def test_percentiles_match_the_exact_ones_within_a_percent_in_constant_memory():
    values = np.random.default_rng(0).lognormal(1.5, 0.6, 200_000)  # a day of frame delays, ms
    latencies = Latencies(window=100)
    for value in values:
        latencies.add(float(value))
    for q in (50, 95, 99):
        assert abs(latencies.percentile(q) / np.percentile(values, q) - 1) < 0.01
    assert latencies.count == 200_000 and len(latencies) == 100  # only the newest 100 kept as values
    assert latencies[-1] == values[-1] and latencies[-3:] == list(values[-3:])


def test_empty_zero_and_negative_delays():
    latencies = Latencies()
    assert latencies.percentiles() == {"p50": None, "p95": None, "p99": None}
    for value in (-2.0, 0.0, 5.0):  # clocks of two hosts may disagree
        latencies.add(value)
    assert latencies.percentile(0) == 0.0 and abs(latencies.percentile(100) - 5.0) < 0.05
