"""A collect and its bodies allocate a bounded number of objects the cyclic GC tracks,
whatever the number of series (issue 16).

Why it matters: every tracked object that outlives a young collection brings the next full
collection nearer, and a full collection walks every tracked object of the process while it
holds the GIL. A collect of 100,000 series used to leave three tracked objects per series
(a delta tuple, a sample dict, a unit tuple), which set off three full collections per
collect: recording threads stood still for 100 ms where the GIL alone costs them 6.
Deltas and units are now columns (lists of ints, floats, bytes and shared references), so
the count of tracked objects a collect leaves grows with the number of metrics and bodies,
not with the number of series. Counted, not timed: ``gc.get_objects()`` before and after,
with every result kept alive.
"""

from __future__ import annotations

import gc
from typing import Any, List, Tuple

import impactagent


def _agent(series: int) -> Tuple[impactagent.Agent, List[Any]]:
    agent = impactagent.Agent("allocations", max_series_per_metric=series)
    counter = agent.counter("c_total", "Counted", labels=("route",), max_series=series)
    gauge = agent.gauge("g", "Set", labels=("route",), max_series=series)
    histogram = agent.histogram("h_seconds", "Observed", labels=("route",), buckets=(0.1, 1),
                                max_series=series)
    children = []
    for i in range(series):
        route = f"/route/{i:06d}"
        children.append((counter.labels(route), gauge.labels(route), histogram.labels(route)))
    return agent, children


def _record(agent: impactagent.Agent, children: List[Any]) -> None:
    for counter, gauge, histogram in children:
        counter.inc()
        # inc(), not set(): set() stores a new cell and the collect frees the one it read
        # before, one tracked list less per series that would hide one more elsewhere.
        gauge.inc(2.5)
        histogram.observe(0.5)
    agent.record_flag("checkout", True, "blue")


def _tracked_by_collect(series: int) -> Tuple[int, int, int]:
    """Tracked objects a collect + build_payloads leaves alive, the bodies, the events."""
    agent, children = _agent(series)
    _record(agent, children)
    agent.build_payloads(agent.collect())  # one-off costs (caches, lazy imports) first
    _record(agent, children)
    gc.collect()
    before = len(gc.get_objects())
    snapshot = agent.collect()
    payloads = agent.build_payloads(snapshot)
    after = len(gc.get_objects())
    events = sum(impactagent.count_events(payload.document) for payload in payloads)
    return after - before, len(payloads), events


def test_a_collect_tracks_a_bounded_number_of_objects_whatever_the_series():
    small, small_bodies, small_events = _tracked_by_collect(1_000)
    large, large_bodies, large_events = _tracked_by_collect(10_000)
    # Every increment, observation, gauge value and the flag evaluation went into a body.
    assert small_events == 3 * 1_000 + 1
    assert large_events == 3 * 10_000 + 1
    # 10x the series: the tracked objects grow by a few per extra body (its lists), not per
    # series (the old code left 3 per series per metric: 90,000 here).
    assert large - small <= 20 * (large_bodies - small_bodies) + 50, (small, large)
    assert large < 1_000, large


def test_a_snapshot_holds_its_deltas_in_columns():
    agent, children = _agent(3)
    _record(agent, children)
    snapshot = agent.collect()
    by_name = {metric.name: metric for metric in snapshot.metrics}
    counter, gauge, histogram = by_name["c_total"], by_name["g"], by_name["h_seconds"]
    assert [child.label_values for child in counter.children] == [
        ("/route/000000",), ("/route/000001",), ("/route/000002",)]
    assert list(counter.values) == [1, 1, 1]
    assert list(gauge.values) == [2.5, 2.5, 2.5]  # first inc() of a gauge never set
    # Per series: <= 0.1, <= 1, +Inf, each bucket alone; the sums apart.
    assert list(histogram.counts) == [0, 1, 0] * 3
    assert list(histogram.values) == [0.5, 0.5, 0.5]
    # The per-series view is still there, built when asked.
    first = histogram.samples[0]
    assert (first.child.label_values, first.counts, first.sum, first.count) == (
        ("/route/000000",), (0, 1, 0), 0.5, 1)
    assert [s.value for s in counter.samples] == [1, 1, 1]
