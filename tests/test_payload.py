"""Every body the agent can build validates, and splitting carries every count exactly once."""

from __future__ import annotations

import contextlib
import json
from bisect import bisect_left
from collections import Counter as Tally
from datetime import timedelta

import pytest
from freezegun import freeze_time

import impactagent
from tests.schema import validate_client_metrics


@pytest.fixture
def agent():
    return impactagent.Agent(app_name="shop", environment="production", instance_id="pod-1")


def bodies(agent, **kwargs):
    payloads = agent.build_payloads(agent.collect())
    for payload in payloads:
        assert json.loads(payload.body) == payload.document
        validate_client_metrics(payload.document)
    return payloads


SHAPES = {
    "empty": lambda a: None,
    "flags only": lambda a: a.record_flag("f", True),
    "variants": lambda a: (a.record_flag("f", True, "blue"), a.record_flag("f", False, "off")),
    "counter": lambda a: a.counter("c", "C").inc(3),
    "labelled counter": lambda a: a.counter("c", "C", labels=("a", "b")).labels(1, "x").inc(),
    "gauge": lambda a: a.gauge("g", "G").set(-2.5),
    "histogram": lambda a: a.histogram("h", "H").observe(0.3),
    "custom buckets": lambda a: a.histogram("h", "H", buckets=(1, 2, 3)).observe(7),
    "unicode": lambda a: (a.counter("c", "Ünïcode hélp", labels=("l",)).labels("日本").inc(),
                          a.record_flag("flag-ü", True, "vä")),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_validates(agent, shape):
    SHAPES[shape](agent)
    (payload,) = bodies(agent)
    assert "bucket" in payload.document


def test_all_shapes_together_validate(agent):
    for record in SHAPES.values():
        # "c"/"h" are redefined differently by later shapes: the first definition stands.
        with contextlib.suppress(ValueError):
            record(agent)
    bodies(agent)


def test_document_fields(agent):
    agent.counter("c", "C").inc()
    (payload,) = bodies(agent)
    document = payload.document
    assert document["appName"] == "shop"
    assert document["instanceId"] == "pod-1"
    assert document["connectionId"] == agent.identity.connection_id
    assert document["environment"] == "production"
    assert document["sdkVersion"] == "impactagent:" + impactagent.__version__
    assert document["sdkType"] == "backend"
    assert document["platformName"] and document["platformVersion"]
    assert document["specVersion"] == agent.identity.spec_version
    (metric,) = document["impactMetrics"]
    assert metric["samples"][0]["labels"] == {"appName": "shop", "environment": "production"}


def test_body_is_compact_json_with_string_inf_and_cumulative_buckets(agent):
    latency = agent.histogram("h", "H", buckets=(0.1, 1))
    for value in (0.05, 0.5, 0.7, 3):
        latency.observe(value)
    (payload,) = bodies(agent)
    assert b": " not in payload.body and b", " not in payload.body
    assert b'"le":"+Inf"' in payload.body
    (sample,) = payload.document["impactMetrics"][0]["samples"]
    assert sample["buckets"] == [{"le": 0.1, "count": 1}, {"le": 1.0, "count": 3},
                                 {"le": "+Inf", "count": 4}]
    assert sample["count"] == 4 and sample["sum"] == pytest.approx(4.25)


def test_flags_without_yes_or_no_are_left_out(agent):
    agent.record_flag("f", True)
    agent.collect()  # nothing new for "f" after this
    agent.record_flag("g", False)
    (payload,) = bodies(agent)
    assert list(payload.document["bucket"]["toggles"]) == ["g"]


def test_window_dates_are_iso_utc_and_consecutive(agent):
    with freeze_time("2026-11-25 10:00:00") as clock:
        windowed = impactagent.Agent(app_name="shop")
        windowed.record_flag("f", True)
        clock.tick(timedelta(seconds=60))
        first = windowed.build_payloads(windowed.collect())[0].document["bucket"]
        clock.tick(timedelta(seconds=30))
        second = windowed.build_payloads(windowed.collect())[0].document["bucket"]
    assert first["start"] == "2026-11-25T10:00:00.000Z"
    assert first["stop"] == "2026-11-25T10:01:00.000Z"
    assert second["start"] == first["stop"]
    assert second["stop"] == "2026-11-25T10:01:30.000Z"


def test_restore_keeps_the_oldest_start():
    with freeze_time("2026-11-25 10:00:00") as clock:
        windowed = impactagent.Agent(app_name="shop")
        windowed.record_flag("f", True)
        clock.tick(60)
        failed = windowed.collect()
        clock.tick(60)
        windowed.record_flag("f", False)
        windowed.restore(failed)
        clock.tick(60)
        bucket = windowed.build_payloads(windowed.collect())[0].document["bucket"]
    assert bucket["start"] == "2026-11-25T10:00:00.000Z"
    assert bucket["stop"] == "2026-11-25T10:03:00.000Z"
    assert bucket["toggles"]["f"] == {"yes": 1, "no": 1, "variants": {}}


def _record_large(agent):
    expected = {"flags": Tally(), "series": Tally(), "buckets": Tally()}
    for i in range(3000):
        agent.record_flag(f"flag-number-{i}", i % 2 == 0, f"variant-{i % 5}")
        expected["flags"][(f"flag-number-{i}", "yes" if i % 2 == 0 else "no")] += 1
        expected["flags"][(f"flag-number-{i}", f"variant-{i % 5}")] += 1
    for m in range(50):
        counter = agent.counter(f"metric_{m}", f"Metric {m}", labels=("user",))
        for s in range(200):
            counter.labels(f"user-{s}").inc(m + s)
            expected["series"][(f"metric_{m}", f"user-{s}")] += m + s
    histogram = agent.histogram("latency", "Latency", labels=("route",), buckets=(1, 2))
    for s in range(100):
        histogram.labels(f"/r{s}").observe(s % 3)
        # le is inclusive: 0 and 1 fall in le=1 (index 0), 2 in le=2 (index 1).
        expected["buckets"][(f"/r{s}", bisect_left((1, 2), s % 3))] += 1
    return expected


def _delivered(payloads):
    got = {"flags": Tally(), "series": Tally(), "buckets": Tally()}
    for payload in payloads:
        for name, toggle in payload.document["bucket"]["toggles"].items():
            for answer in ("yes", "no"):
                if toggle[answer]:
                    got["flags"][(name, answer)] += toggle[answer]
            for variant, n in toggle["variants"].items():
                got["flags"][(name, variant)] += n
        for metric in payload.document.get("impactMetrics", []):
            for sample in metric["samples"]:
                if metric["type"] == "counter":
                    got["series"][(metric["name"], sample["labels"]["user"])] += sample["value"]
                else:
                    previous = 0
                    for index, bucket in enumerate(sample["buckets"]):
                        if bucket["count"] - previous:
                            got["buckets"][(sample["labels"]["route"], index)] += (
                                bucket["count"] - previous)
                        previous = bucket["count"]
    return got


@pytest.mark.parametrize("max_bytes", [95_000, 2_000])
def test_a_big_snapshot_is_split_and_every_count_arrives_once(max_bytes):
    agent = impactagent.Agent(app_name="shop", max_payload_bytes=max_bytes)
    expected = _record_large(agent)
    payloads = bodies(agent)
    assert len(payloads) > 1
    assert all(len(p.body) <= max_bytes for p in payloads)
    assert _delivered(payloads) == expected
    assert agent.statistics()["dropped"] == {}


def test_split_payload_halves_carry_the_same_counts():
    agent = impactagent.Agent(app_name="shop")
    expected = _record_large(agent)
    payloads = agent.build_payloads(agent.collect())
    halves = [half for p in payloads for half in impactagent.split_payload(p)]
    assert len(halves) == 2 * len(payloads)
    for half in halves:
        validate_client_metrics(half.document)
    assert _delivered(halves) == expected
    assert sum(map(impactagent.count_events, (h.document for h in halves))) == sum(
        map(impactagent.count_events, (p.document for p in payloads)))


def test_an_item_too_big_for_any_body_is_dropped_and_counted(agent):
    counter = agent.counter("c", "C", labels=("blob",))
    counter.labels("x" * 200_000).inc()
    counter.labels("small").inc(5)
    (payload,) = bodies(agent)
    (metric,) = payload.document["impactMetrics"]
    assert [s["value"] for s in metric["samples"]] == [5]
    assert agent.statistics()["dropped"] == {"oversize_item": 1}


def test_observations_beyond_the_safe_sum_are_dropped_when_recorded_not_sent(agent):
    histogram = agent.histogram("h", "H")
    histogram.observe(1.5e308)
    histogram.observe(1.5e308)  # each alone takes the window's sum past what Unleash takes
    (payload,) = bodies(agent)
    assert "impactMetrics" not in payload.document
    assert agent.statistics()["dropped"] == {"unsafe_sum": 2}


@pytest.mark.parametrize(
    ("token", "environment"),
    [("proj:production.abc", "production"), ("*:dev.xyz", "dev"),
     ("plain-token", "fallback"), (None, "fallback"), ("proj:.abc", "fallback"),
     ("a:b", "fallback")],
)
def test_environment_from_token(token, environment):
    assert impactagent.environment_from_token(token, "fallback") == environment


def test_bodies_are_byte_for_byte_the_encoding_of_their_documents():
    """Bodies are joined from pieces encoded once; they must equal a plain encoding."""
    import impactagent
    from impactagent.core.payload import encode
    from tests import workload

    agent = impactagent.Agent("shop", "production")
    workload.record(agent, 300)
    users = agent.counter("logins_total", "Logins \u00e9 \"quoted\"", labels=("user",))
    for i in range(400):
        users.labels(f"user-{i}-\u00fc").inc(i + 1)
    snapshot = agent.collect()
    payloads = (agent.build_payloads(snapshot)
                + impactagent.build_payloads(snapshot, agent.identity, max_bytes=4000))
    assert len(payloads) > 3
    for payload in payloads:
        assert payload.body == encode(payload.document)
        for half in impactagent.split_payload(payload):
            assert half.body == encode(half.document)


def test_counter_and_gauge_samples_are_written_as_the_encoder_writes_them():
    """Counter and gauge samples are written straight to JSON (no dict per sample): the body
    must be byte for byte the encoding of the document built the plain way, one dict per
    sample, for label values that need escaping and numbers of every shape."""
    from impactagent.core.payload import encode

    agent = impactagent.Agent("shop", "production")
    awkward = ["plain", 'quo"te', "back\\slash", "tab\there", "nl\n", "\x00\x1f", "caf\u00e9",
               "\u2028", "\U0001f600", " "]
    counter = agent.counter("hits_total", "Hits", labels=("route", "who"))
    gauge = agent.gauge("level", "Level", labels=("route",))
    numbers = [0.1, 1e-7, -0.0, 2.5e15, 9007199254740991, -9007199254740991, 3, 1e300 ** 0]
    for i, value in enumerate(awkward):
        counter.labels(value, awkward[-1 - i]).inc(i + 1)
        gauge.labels(value).set(numbers[i % len(numbers)])
    snapshot = agent.collect()
    (payload,) = agent.build_payloads(snapshot)
    document = json.loads(payload.body)
    base = {"appName": "shop", "environment": "production"}
    document["impactMetrics"] = [
        {"name": m.family.name, "help": m.family.help, "type": m.family.kind,
         "samples": [{"labels": {**base, **dict(zip(m.family.label_names,
                                                     s.child.label_values))},
                      "value": s.value} for s in m.samples]}
        for m in snapshot.metrics]
    assert payload.body == encode(document)
    assert [type(s["value"]) for s in document["impactMetrics"][1]["samples"]] == [
        type(n) for n in (numbers * 2)[:len(awkward)]]


def test_a_body_kept_alone_holds_its_own_bytes_not_its_whole_builds():
    """A body kept for a retry (or waiting for its answer) holds its bytes and the indexes
    of what it carries, not the encoding of every other body of its build: a body used to
    share one buffer of all units, so one body kept alive kept all of them."""
    import gc
    import tracemalloc

    agent = impactagent.Agent("shop", "production", max_series_per_metric=20_000)
    routes = agent.counter("hits_total", "Hits", labels=("route",), max_series=20_000)
    for i in range(20_000):
        routes.labels(f"/route/{i:06d}").inc()
    snapshot = agent.collect()
    tracemalloc.start()
    try:
        payloads = agent.build_payloads(snapshot)
        kept = payloads[0]
        del payloads
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept.body) > 50_000 and held < 2 * len(kept.body), (held, len(kept.body))
    part = kept.part()  # and it still gives back exactly what it carries
    assert part is not None
    assert sum(len(metric.indexes) for metric in part.metrics) == kept.events


def test_a_snapshot_joined_from_two_names_each_metric_once_per_body():
    """Two windows joined into one snapshot by hand carry each metric twice; every body
    still names each metric once, stays under its bound, and carries every count once."""
    from impactagent.core.payload import encode

    agent = impactagent.Agent("shop", "production")
    hits = agent.counter("hits_total", "Hits", labels=("route",))
    level = agent.gauge("level", "Level", labels=("route",))
    for window in range(2):
        for i in range(300):
            hits.labels(f"/r/{i}").inc(window + 1)
            level.labels(f"/r/{i}").set(window)
        if window == 0:
            first = agent.collect()
    second = agent.collect()
    joined = impactagent.Snapshot(first.start, second.stop, {},
                                  first.metrics + second.metrics)
    for max_bytes in (95_000, 6_000):
        payloads = impactagent.build_payloads(joined, agent.identity, max_bytes=max_bytes)
        names = [[m["name"] for m in p.document["impactMetrics"]] for p in payloads]
        assert all(len(n) == len(set(n)) for n in names), names
        assert all(len(p.body) <= max_bytes and p.body == encode(p.document)
                   for p in payloads)
        hits_sent = sum(s["value"] for p in payloads for m in p.document["impactMetrics"]
                        if m["name"] == "hits_total" for s in m["samples"])
        assert hits_sent == 300 * 1 + 300 * 2
        assert sum(p.events for p in payloads) == 900 + 600  # and one per gauge value
