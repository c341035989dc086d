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
from impactagent.core.payload import encode


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


def _traversed_by_collect(series: int) -> Tuple[int, int, int]:
    """What a young collection would walk in a collect + build_payloads: the references
    held by every GC-tracked object the two created and keep alive (reached from the
    snapshot and its bodies), the most held by any one of them, and the bodies.

    The collector's traversal visits every reference of each young container, whatever
    it points to (a list of 100,000 ints or bytes is 100,000 visits); an ``array`` or a
    ``bytearray`` is not tracked and is not walked at all. Objects that existed before the
    collect (the families, their series) are old and left out; all of them are kept alive
    meanwhile, so that no new object can take the id of one."""
    agent, children = _agent(series)
    _record(agent, children)
    agent.build_payloads(agent.collect())  # one-off costs (caches, lazy imports) first
    _record(agent, children)
    gc.collect()
    old = gc.get_objects()
    old_ids = {id(obj) for obj in old}
    snapshot = agent.collect()
    payloads = agent.build_payloads(snapshot)
    seen: set = set()
    pending: List[Any] = [snapshot, payloads]
    references = most = 0
    while pending:
        obj = pending.pop()
        if id(obj) in seen or id(obj) in old_ids or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        references += len(referents)
        most = max(most, len(referents))
        pending.extend(referents)
    assert sum(impactagent.count_events(p.document) for p in payloads) == 3 * series + 1
    del old
    return references, most, len(payloads)


def test_a_collect_leaves_no_container_that_grows_with_the_series():
    small, small_most, small_bodies = _traversed_by_collect(1_000)
    large, large_most, large_bodies = _traversed_by_collect(10_000)
    # The biggest young container is a body list or a metric's few origins, not a column
    # of one entry per series (the columns are arrays: the old ones were lists of 10,000
    # series, ints and bytes objects each, walked item by item by every young collection
    # while they lived: 8.5 ms of recording threads' pause at 100,000 series).
    assert large_most <= 100, (small_most, large_most)
    # 10x the series: the references grow by a few per extra body, not per series.
    assert large - small <= 20 * (large_bodies - small_bodies) + 50, (small, large)


def test_columns_keep_every_number_exact():
    agent = impactagent.Agent("columns")
    gauge = agent.gauge("g", "Set", labels=("kind",))
    gauge.labels("int").set(5)
    gauge.labels("float").set(5.0)
    gauge.labels("negative zero").set(-0.0)
    gauge.labels("largest").set(2**53 - 1)
    counter = agent.counter("c_total", "Counted")
    counter.inc(2**53 - 1)
    counter.inc(2**53 - 1)  # two windows' worth: a collect takes 2**53 - 1 at a time
    histogram = agent.histogram("h", "Observed", buckets=(1,))
    histogram.add_counts([2**64, 3], 1.5)  # a count no int64 holds: that column is a list
    snapshot = agent.collect()
    by_name = {metric.name: metric for metric in snapshot.metrics}
    gauges = by_name["g"].values
    assert gauges == [5, 5.0, -0.0, 2**53 - 1]
    assert [type(v) for v in gauges] == [int, float, float, int]
    assert str(gauges[2]) == "-0.0"
    assert by_name["c_total"].values == [2**53 - 1]
    assert list(by_name["h"].counts) == [2**64, 3] and by_name["h"].values == [1.5]
    payloads = agent.build_payloads(snapshot)
    for payload in payloads:  # the bodies are exactly their documents, encoded
        assert payload.body == encode(payload.document)
    samples = {m["name"]: [s.get("value", s.get("count")) for s in m["samples"]]
               for payload in payloads for m in payload.document["impactMetrics"]}
    # The histogram's window is held exactly, but the server refuses a count past
    # 2**53 - 1: it is dropped and counted (in observations), never sent.
    assert samples == {"g": [5, 5.0, -0.0, 2**53 - 1], "c_total": [2**53 - 1]}
    assert agent.statistics()["dropped"] == {"unsafe_count": 2**64 + 3}
    assert b'"value":5}' in payloads[0].body and b'"value":5.0}' in payloads[0].body
    # Every body given back: the next collect carries all of it again, plus the rest.
    for payload in payloads:
        part = payload.part()
        assert part is not None
        agent.restore(part)
    again = {metric.name: metric for metric in agent.collect().metrics}
    assert again["c_total"].values == [2**53 - 1]  # the cap again; the rest waits
    assert "h" not in again  # dropped and counted: not given back, never counted twice
    assert again["g"].values == [5, 5.0, -0.0, 2**53 - 1]
    assert agent.collect().metrics[0].values == [2**53 - 1]  # the second window's worth


def _young_after_collect(series: int) -> Tuple[int, int]:
    """Objects a young collection would walk right after a collect + build_payloads (the
    tracked objects made since the last collection and still alive), and the bodies."""
    agent, children = _agent(series)
    _record(agent, children)
    agent.build_payloads(agent.collect())  # one-off costs (caches, lazy imports) first
    _record(agent, children)
    gc.collect()
    gc.disable()  # nothing is promoted out of the young generation meanwhile
    try:
        payloads = agent.build_payloads(agent.collect())
        return len(gc.get_objects(generation=0)), len(payloads)
    finally:
        gc.enable()


def test_a_collect_leaves_the_next_young_collection_nothing_per_series():
    # What a collect replaces must not outlive it as a new object per series: a histogram
    # series that kept its sent counts as a new list each collect left 10,000 young lists
    # here, walked (with the GIL held) by the next young collection.
    small, small_bodies = _young_after_collect(1_000)
    large, large_bodies = _young_after_collect(10_000)
    assert large - small <= 20 * (large_bodies - small_bodies) + 50, (small, large)
