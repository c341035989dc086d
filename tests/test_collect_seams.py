"""The two public seams bridges build on: collect hooks and ``HistogramChild.add_counts``.

A collect hook runs at the start of every collect and records into native series, so what
it records travels with everything else; ``add_counts`` adds bucketed observations under the
same value rules and drop counting as ``observe``.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import pytest

from impactagent.core.recorder import Recorder
from impactagent.core.snapshot import Snapshot


def deltas(snapshot: Snapshot):
    """{(metric, labels): delta value, or (counts, sum) for a histogram}."""
    result = {}
    for metric in snapshot.metrics:
        for sample in metric.samples:
            key = (metric.name, sample.child.label_values)
            result[key] = ((sample.counts, sample.sum) if metric.family.kind == "histogram"
                           else sample.value)
    return result


# -- collect hooks -------------------------------------------------------------------------

def test_a_collect_hook_runs_before_each_take_and_what_it_records_is_in_that_collect():
    recorder = Recorder()
    jobs = recorder.metrics.counter("jobs_total", "Jobs")
    readings = iter([3, 5, 5, 9])
    seen = {"last": 0}

    def hook():
        now = next(readings)
        jobs.inc(now - seen["last"]) if now > seen["last"] else None
        seen["last"] = now

    recorder.add_collect_hook(hook)
    assert deltas(recorder.collect()) == {("jobs_total", ()): 3}
    assert deltas(recorder.collect()) == {("jobs_total", ()): 2}
    assert deltas(recorder.collect()) == {}
    recorder.remove_collect_hook(hook)
    assert deltas(recorder.collect()) == {}  # not run any more: 9 is never read
    assert jobs.value == 5


def test_what_a_hook_recorded_and_failed_to_send_is_merged_back_like_anything_else():
    recorder = Recorder()
    jobs = recorder.metrics.counter("jobs_total", "Jobs")
    recorder.add_collect_hook(lambda: jobs.inc(2))
    failed = recorder.collect()
    recorder.restore(failed)
    assert deltas(recorder.collect()) == {("jobs_total", ()): 4}


def test_a_hook_that_raises_is_counted_and_logged_once_and_the_collect_goes_on(caplog):
    recorder = Recorder()
    jobs = recorder.metrics.counter("jobs_total", "Jobs")
    jobs.inc(7)

    def broken():
        raise RuntimeError("registry gone")

    recorder.add_collect_hook(broken)
    recorder.add_collect_hook(lambda: jobs.inc(1))  # hooks after a broken one still run
    with caplog.at_level(logging.ERROR, logger="impactagent"):
        assert deltas(recorder.collect()) == {("jobs_total", ()): 8}
        assert deltas(recorder.collect()) == {("jobs_total", ()): 1}
    assert recorder.collect_hook_errors == 2
    assert caplog.text.count("RuntimeError: registry gone") == 1


def test_a_collect_hook_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        Recorder().add_collect_hook("not a function")  # type: ignore[arg-type]


# -- add_counts ----------------------------------------------------------------------------

def test_add_counts_adds_bucketed_observations_that_are_sent_and_merged_back():
    recorder = Recorder()
    latency = recorder.metrics.histogram("job_seconds", "Job time", ("queue",), buckets=(1, 5))
    fast = latency.labels("fast")
    fast.add_counts([2, 0, 1], 7.5)
    fast.observe(3)
    assert fast.cumulative_buckets() == [(1.0, 2), (5.0, 3), (float("inf"), 4)]
    assert fast.sum == 10.5
    snapshot = recorder.collect()
    assert deltas(snapshot) == {("job_seconds", ("fast",)): ((2, 1, 1), 10.5)}
    recorder.restore(snapshot)
    fast.add_counts((0, 0, 2), Fraction(41, 2))  # other numbers are converted, as observe's
    assert deltas(recorder.collect()) == {("job_seconds", ("fast",)): ((2, 1, 3), 31.0)}
    assert recorder.pending_events() == 0


def test_add_counts_refuses_counts_that_are_not_one_non_negative_int_per_bucket():
    latency = Recorder().metrics.histogram("job_seconds", "Job time", buckets=(1, 5))
    with pytest.raises(ValueError, match="takes 3 counts"):
        latency.add_counts([1, 2], 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        latency.add_counts([1, -1, 0], 1.0)
    with pytest.raises(TypeError, match="int counts"):
        latency.add_counts([1.0, 0, 0], 1.0)
    with pytest.raises(TypeError, match="int counts"):
        latency.add_counts([True, 0, 0], 1.0)
    with pytest.raises(TypeError, match="a bool"):
        latency.add_counts([1, 0, 0], True)
    assert latency.count == 0


def test_add_counts_drops_and_counts_in_observations_what_the_server_would_refuse():
    recorder = Recorder()
    latency = recorder.metrics.histogram("job_seconds", "Job time", buckets=(1, 5))
    latency.add_counts([1, 2, 0], float("nan"))
    latency.add_counts([0, 0, 4], 2.0**60)
    latency.add_counts([0, 0, 0], 0.0)  # nothing observed: nothing to add or drop
    assert recorder.drops.as_dict() == {"non_finite_value": 3, "unsafe_sum": 4}
    assert latency.count == 0
    assert recorder.collect().metrics == ()


def test_add_counts_past_the_series_limit_counts_the_observations_as_dropped():
    recorder = Recorder()
    latency = recorder.metrics.histogram("job_seconds", "Job time", ("queue",), buckets=(1,),
                                         max_series=1)
    latency.labels("a").add_counts([1, 1], 3.0)
    latency.labels("b").add_counts([2, 3], 9.0)
    assert recorder.drops.as_dict() == {"cardinality_limit": 5}
    with pytest.raises(ValueError, match="takes 2 counts"):
        latency.labels("c").add_counts([1], 1.0)  # refused there as on a real series
    assert deltas(recorder.collect()) == {("job_seconds", ("a",)): ((1, 1), 3.0)}


def test_add_counts_on_a_labelled_family_says_to_call_labels_first():
    latency = Recorder().metrics.histogram("job_seconds", "Job time", ("queue",))
    with pytest.raises(ValueError, match=r"call .labels\(...\).add_counts\(\)"):
        latency.add_counts([0] * 12, 0.0)
