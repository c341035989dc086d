"""Values the server refuses are refused at the call, or dropped and counted when recorded.

unleash-server (8.x) checks every impact-metric number with Joi's ``number()``: a JSON number
(not ``true``), finite, and ``|x| <= 2**53 - 1``, floats included. One refused value makes it
discard the body's whole ``impactMetrics`` array while answering 202. These tests hold every
body the agent builds to those rules (:func:`numbers_unleash_refuses`) and check that what
was recorded is delivered, pending, or counted as dropped, never silently lost.
"""

from __future__ import annotations

import enum
import json
import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest

import impactagent
from tests.scripted_server import ScriptedServer

MAX_SAFE = 2**53 - 1


@pytest.fixture
def agent():
    return impactagent.Agent(app_name="shop", environment="production")


def numbers_unleash_refuses(document):
    """Every impact-metric number in ``document`` (as sent: encoded, then parsed the way the
    server parses it) that Joi's ``number()`` would refuse, with where it is."""
    parsed = json.loads(json.dumps(document))
    problems = []

    def check(where, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((where, value, "must be a number"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((where, value, "cannot be infinity"))
        elif abs(value) > MAX_SAFE or float(value) == math.inf:
            problems.append((where, value, "must be a safe number"))

    for metric in parsed.get("impactMetrics") or []:
        for sample in metric["samples"]:
            where = metric["name"]
            if metric["type"] == "histogram":
                check(where + " count", sample["count"])
                check(where + " sum", sample["sum"])
                for bucket in sample["buckets"]:
                    if bucket["le"] != "+Inf":
                        check(where + " le", bucket["le"])
                    check(where + " bucket count", bucket["count"])
            else:
                check(where, sample["value"])
    return problems


def sent_samples(agent):
    """{metric name: [sample, ...]} in the bodies built from one collect."""
    samples = {}
    for body in agent.build_payloads(agent.collect()):
        assert numbers_unleash_refuses(body.document) == []
        for metric in body.document.get("impactMetrics", []):
            samples.setdefault(metric["name"], []).extend(metric["samples"])
    return samples


# -- the type of a value: int and float, converted when recorded, or refused ----------------


@pytest.mark.parametrize("record", [
    lambda a: a.gauge("g", "G").set(True),
    lambda a: a.gauge("g", "G").inc(True),
    lambda a: a.gauge("g", "G").dec(False),
    lambda a: a.histogram("h", "H").observe(True),
    lambda a: a.counter("c", "C").inc(True),
    lambda a: a.gauge("g", "G", labels=("x",)).labels("1").set(False),
], ids=["gauge set", "gauge inc", "gauge dec", "histogram observe", "counter inc", "child set"])
def test_bools_are_refused_at_the_call_and_name_the_metric(agent, record):
    with pytest.raises(TypeError, match=r"'[cgh]'.*(bool|True|False)"):
        record(agent)
    assert agent.collect().metrics == ()
    assert agent.statistics()["dropped"] == {}


class Level(enum.IntEnum):
    HIGH = 3


class Celsius:
    """A number type of the app's own, with ``__float__``."""

    def __float__(self):
        return 21.5


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("1.5"), 1.5), (Fraction(3, 8), 0.375), (Level.HIGH, 3), (Celsius(), 21.5),
    (Decimal("-0.125"), -0.125),
])
def test_other_numbers_become_int_or_float_when_recorded(agent, value, expected):
    gauge = agent.gauge("temperature", "T")
    histogram = agent.histogram("sizes", "S", buckets=(1.0, 10.0))
    gauge.set(value)
    histogram.observe(value)
    assert gauge.value == expected and gauge.value.__class__ in (int, float)
    samples = sent_samples(agent)
    assert [s["value"] for s in samples["temperature"]] == [expected]
    assert [s["sum"] for s in samples["sizes"]] == [expected]


def test_gauge_increments_of_other_numbers_are_converted_too(agent):
    gauge = agent.gauge("g", "G")
    gauge.inc(Decimal("2.5"))
    gauge.dec(Fraction(1, 2))
    assert gauge.value == 2.0 and gauge.value.__class__ is float


@pytest.mark.parametrize("value", ["1.5", None, [1], complex(1, 0), b"1"])
def test_what_is_not_a_number_is_a_type_error_naming_the_metric(agent, value):
    with pytest.raises(TypeError, match="gauge 'depth': set\\(\\) takes a number"):
        agent.gauge("depth", "D").set(value)
    with pytest.raises(TypeError, match="histogram 'h': observe\\(\\) takes a number"):
        agent.histogram("h", "H").observe(value)


def test_numpy_scalars_become_int_or_float(agent):
    numpy = pytest.importorskip("numpy")
    gauge = agent.gauge("g", "G")
    jobs = agent.counter("jobs_total", "Jobs")
    gauge.set(numpy.float32(0.5))
    jobs.inc(numpy.int64(3))
    assert gauge.value.__class__ is float and jobs.value == 3
    with pytest.raises(TypeError, match="bool"):
        gauge.set(numpy.bool_(True))
    assert sent_samples(agent)["g"] == [{"labels": {"appName": "shop",
                                                    "environment": "production"}, "value": 0.5}]


# -- the range of a value: within 2**53 - 1, or dropped and counted -------------------------


def test_a_counter_increment_beyond_what_the_server_takes_is_refused_at_the_call(agent):
    jobs = agent.counter("jobs_total", "Jobs")
    with pytest.raises(ValueError, match=r"at most 2\*\*53 - 1"):
        jobs.inc(10**30)
    jobs.inc(MAX_SAFE)  # the largest single increment is fine
    assert jobs.value == MAX_SAFE


def test_a_counters_window_never_carries_more_than_the_server_takes_and_the_rest_waits(agent):
    jobs = agent.counter("jobs_total", "Jobs")
    for _ in range(3):
        jobs.inc(MAX_SAFE)
    jobs.inc(5)
    sent = []
    for _ in range(5):
        samples = sent_samples(agent).get("jobs_total", [])
        sent += [s["value"] for s in samples]
    assert sent == [MAX_SAFE, MAX_SAFE, MAX_SAFE, 5]
    assert agent.statistics()["dropped"] == {} and agent.statistics()["pending_events"] == 0


def test_a_split_counter_window_given_back_is_sent_again_in_full(agent):
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(MAX_SAFE)
    jobs.inc(MAX_SAFE)
    agent.restore(agent.collect())  # a failed send
    assert agent.statistics()["pending_events"] == 2 * MAX_SAFE
    assert [s["value"] for s in sent_samples(agent)["jobs_total"]] == [MAX_SAFE]
    assert [s["value"] for s in sent_samples(agent)["jobs_total"]] == [MAX_SAFE]


@pytest.mark.parametrize("value", [1e30, -1e30, 10**400, -(2**53), 2**53, Decimal("1e20")])
def test_gauge_values_beyond_the_safe_range_are_dropped_and_counted(agent, value):
    gauge = agent.gauge("g", "G")
    gauge.set(value)
    assert agent.statistics()["dropped"] == {"unsafe_value": 1}
    assert gauge.value is None and sent_samples(agent) == {}


def test_a_gauge_increment_that_would_leave_the_safe_range_is_dropped_and_the_value_kept(agent):
    gauge = agent.gauge("g", "G")
    gauge.set(MAX_SAFE)
    gauge.inc()
    gauge.inc(10**400)
    gauge.set(1.5e308)
    gauge.inc(1.5e308)
    gauge.inc(math.inf)
    assert agent.statistics()["dropped"] == {"unsafe_value": 4, "non_finite_value": 1}
    assert gauge.value == MAX_SAFE
    assert sent_samples(agent)["g"][0]["value"] == MAX_SAFE


def test_a_histogram_stays_usable_after_observations_that_would_overflow_its_sum(agent):
    latency = agent.histogram("latency_seconds", "Latency", buckets=(1.0,))
    latency.observe(1e308)
    latency.observe(1e308)
    for _ in range(1000):
        latency.observe(0.5)
    (sample,) = sent_samples(agent)["latency_seconds"]
    assert (sample["count"], sample["sum"]) == (1000, 500.0)
    assert agent.statistics()["dropped"] == {"unsafe_sum": 2}
    assert latency.count == 1000 and latency.sum == 500.0


def test_the_sum_sent_for_a_window_stays_in_range_whatever_came_before(agent):
    # A running total minus what was sent would give -1.8e16 for the third window.
    h = agent.histogram("h", "H")
    h.observe(9e15)
    assert sent_samples(agent)["h"][0]["sum"] == 9e15
    h.observe(-9e15)
    assert sent_samples(agent)["h"][0]["sum"] == -9e15
    h.observe(-9e15)
    h.observe(-9e15)  # the window's sum would be -1.8e16: dropped
    assert sent_samples(agent)["h"][0]["sum"] == -9e15
    assert agent.statistics()["dropped"] == {"unsafe_sum": 1}


def test_a_given_back_histogram_window_that_no_longer_fits_is_dropped_and_counted(agent):
    h = agent.histogram("h", "H")
    for _ in range(3):
        h.observe(2e15)
    failed = agent.collect()
    for _ in range(3):
        h.observe(2e15)  # while the first window was away
    agent.restore(failed)  # 1.2e16 would not fit in one window's sum
    assert agent.statistics()["dropped"] == {"unsafe_sum": 3}
    assert [(s["count"], s["sum"]) for s in sent_samples(agent)["h"]] == [(3, 6e15)]
    assert agent.statistics()["pending_events"] == 0


def test_bucket_boundaries_beyond_the_safe_range_are_refused_at_definition(agent):
    with pytest.raises(ValueError, match=r"within \+/-\(2\*\*53 - 1\)"):
        agent.histogram("h", "H", buckets=(1.0, 1e16))
    with pytest.raises(ValueError, match=r"within \+/-\(2\*\*53 - 1\)"):
        agent.histogram("h2", "H", buckets=(-1e20, 0.0))


def test_values_past_the_series_limit_are_checked_the_same_way(agent):
    gauge = agent.gauge("g", "G", labels=("x",), max_series=1)
    gauge.labels("a").set(1)
    gauge.labels("b").set(1e30)  # past the limit, and out of range: counted as out of range
    with pytest.raises(TypeError, match="bool"):
        gauge.labels("c").set(True)
    assert agent.statistics()["dropped"] == {"unsafe_value": 1}


# -- drops are counted in events ----------------------------------------------------------


def test_a_flag_too_large_for_any_body_counts_every_evaluation_it_drops(agent):
    name = "f" * 100_000
    for i in range(500):
        agent.record_flag(name, i % 2 == 0)
    agent.record_flag("small", True)
    (body,) = agent.build_payloads(agent.collect())
    assert list(body.document["bucket"]["toggles"]) == ["small"]
    assert agent.statistics()["dropped"] == {"oversize_item": 500}


def test_a_sample_too_large_for_any_body_counts_its_increments(agent):
    agent.counter("c", "C", labels=("x",)).labels("x" * 200_000).inc(7)
    agent.build_payloads(agent.collect())
    assert agent.statistics()["dropped"] == {"oversize_item": 7}


def test_increments_past_the_series_limit_count_what_they_lose(agent):
    counter = agent.counter("c", "C", labels=("x",), max_series=1)
    counter.labels("a").inc()
    counter.labels("b").inc(40)
    assert agent.statistics()["dropped"] == {"cardinality_limit": 40}


# -- every value, every body --------------------------------------------------------------

TRICKY = [0, 1, -1, 0.5, -0.125, 2**60, -(2**60), MAX_SAFE, -MAX_SAFE, 2**53, -(2**53),
          10**400, -(10**400), 1e308, -1e308, 9e15, -9e15, 4.5e15, math.nan, math.inf,
          -math.inf, Decimal("1.5"), Decimal("1e400"), Decimal("-2.5e15"), Fraction(1, 3),
          Fraction(10**400, 3), Level.HIGH]


@pytest.mark.parametrize("seed", range(40))
def test_no_recorded_value_ever_makes_a_body_the_server_refuses(seed):
    """Random sequences of edge values, recorded and collected in turn (a seeded sweep:
    every seed is reproducible); whatever was kept is sent in full, in valid bodies."""
    rng = random.Random(seed)
    agent = impactagent.Agent("shop")
    gauge, histogram = agent.gauge("g", "G"), agent.histogram("h", "H")
    jobs = agent.counter("jobs_total", "Jobs")
    sent = {"jobs_total": 0, "h": 0}

    def collect():
        samples = sent_samples(agent)  # checks every body with numbers_unleash_refuses
        sent["jobs_total"] += sum(s["value"] for s in samples.get("jobs_total", []))
        sent["h"] += sum(s["count"] for s in samples.get("h", []))

    for _ in range(30):
        method, value = rng.choice(["set", "inc", "observe", "count"]), rng.choice(TRICKY)
        if method == "set":
            gauge.set(value)
        elif method == "inc":
            gauge.inc(value)
        elif method == "observe":
            histogram.observe(value)
        elif isinstance(value, int) and 0 <= value <= MAX_SAFE:  # IntEnum too
            jobs.inc(value)
        else:
            with pytest.raises((TypeError, ValueError)):
                jobs.inc(value)
        if rng.random() < 0.3:
            collect()
    for _ in range(10):  # a split counter takes a few windows
        collect()
    assert agent.statistics()["pending_events"] == 0
    assert sent == {"jobs_total": jobs.value, "h": histogram.count}


# -- the whole way: what the issue recorded arrives -----------------------------------------


def test_decimals_fractions_big_counts_and_flags_recorded_together_all_arrive():
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:development.x",
                                  flush_interval=60, request_timeout=2)
        try:
            agent.gauge("ratio", "Ratio").set(Decimal("1.5"))
            agent.gauge("share", "Share").set(Fraction(1, 4))
            jobs = agent.counter("jobs_total", "Jobs")
            jobs.inc(1000)
            agent.record_flag("new-checkout", True)
            latency = agent.histogram("latency_seconds", "Latency", buckets=(1.0,))
            latency.observe(1e308)
            latency.observe(1e308)
            for _ in range(1000):
                latency.observe(0.25)
            result = agent.flush(timeout=10)
        finally:
            agent.close(timeout=2)
        assert result.ok
        for document in server.accepted_documents():
            assert numbers_unleash_refuses(document) == []
        totals = server.totals()
        base = frozenset({"appName": "shop", "environment": "development"}.items())
        assert totals["counters"] == {("jobs_total", base): 1000}
        assert totals["gauges"] == {("ratio", base): 1.5, ("share", base): 0.25}
        assert totals["histograms"][("latency_seconds", base)]["count"] == 1000
        assert totals["histograms"][("latency_seconds", base)]["sum"] == 250.0
        assert totals["flags"]["new-checkout"]["yes"] == 1
        assert agent.statistics()["dropped"] == {"unsafe_sum": 2}
