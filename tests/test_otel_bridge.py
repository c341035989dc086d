"""The OpenTelemetry bridge, with the real OpenTelemetry SDK and a real local server.

Each test records with the SDK, exports through ``PeriodicExportingMetricReader`` (its
``force_flush`` runs one export now) into an agent that ships to ``ScriptedServer``, and
compares what the server accepted with what was recorded.
"""

from __future__ import annotations

import pytest

import impactagent
from tests.scripted_server import Answer, ScriptedServer
from tests.workload import flush_until_delivered, series

pytest.importorskip("opentelemetry.sdk.metrics")
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExponentialBucketHistogramAggregation,
    View,
)

from impactagent.integrations.otel_bridge import ImpactMetricExporter


def make_agent(url):
    return impactagent.Agent("shop", url=url, api_key="t", flush_interval=60,
                             request_timeout=2)




class Shipping:
    """An agent, an exporter on it, and a meter whose reader exports only when told."""

    def __init__(self, url, views=(), **exporter_options):
        self.agent = make_agent(url)
        self.exporter = ImpactMetricExporter(self.agent, **exporter_options)
        self.reader = PeriodicExportingMetricReader(self.exporter,
                                                    export_interval_millis=3_600_000)
        self.provider = MeterProvider(metric_readers=[self.reader], views=list(views))
        self.meter = self.provider.get_meter("shop")

    def export(self):
        assert self.reader.force_flush()

    def close(self):
        self.provider.shutdown()  # its last export first, then the agent's last send
        self.agent.close()




def test_sums_gauges_and_histograms_arrive_with_the_totals_recorded_through_failures():
    with ScriptedServer() as server:
        server.script(503, Answer(drop=True), 500)
        shipping = Shipping(server.api_url)
        requests = shipping.meter.create_counter("http.server.requests")
        latency = shipping.meter.create_histogram(
            "job.seconds", explicit_bucket_boundaries_advisory=[0.1, 1.0])
        depth = shipping.meter.create_up_down_counter("queue.depth")
        recorded = {"/a": 0, "/b": 0}
        for i in range(6):
            route = "/a" if i % 2 else "/b"
            requests.add(i + 1, {"route": route, "http.method": "GET"})
            recorded[route] += i + 1
            latency.record(i / 2, {"queue": "mail"})
            depth.add(3 if i < 4 else -2)
            shipping.export()
            shipping.agent.flush(timeout=10)
        flush_until_delivered(shipping.agent)
        shipping.close()
        totals = server.totals()
    assert any(not r.accepted for r in server.requests)
    assert series(totals, "counters", "http_server_requests") == {
        frozenset({("route", "/a"), ("http_method", "GET")}): recorded["/a"],
        frozenset({("route", "/b"), ("http_method", "GET")}): recorded["/b"],
    }
    assert series(totals, "gauges", "queue_depth") == {frozenset(): 8.0}
    (histogram,) = series(totals, "histograms", "job_seconds").values()
    assert histogram == {"count": 6, "sum": 7.5, "buckets": {0.1: 1, 1.0: 3, "+Inf": 6}}
    assert shipping.agent.statistics()["dropped"] == {}


def test_cumulative_temporality_is_turned_into_deltas_and_fractions_into_whole_units():
    with ScriptedServer() as server:
        cumulative = {cls: AggregationTemporality.CUMULATIVE
                      for cls in (Counter, Histogram)}
        shipping = Shipping(server.api_url, preferred_temporality=cumulative)
        jobs = shipping.meter.create_counter("jobs")
        latency = shipping.meter.create_histogram(
            "job.seconds", explicit_bucket_boundaries_advisory=[1.0])
        for amount in (2.5, 1.0, 0.25, 0.25):
            jobs.add(amount)
            latency.record(amount)
            shipping.export()
            flush_until_delivered(shipping.agent)
        shipping.close()
        counter_values = [s["value"] for d in server.accepted_documents()
                          for m in d.get("impactMetrics", []) if m["name"] == "jobs"
                          for s in m["samples"]]
        counts = [s["count"] for d in server.accepted_documents()
                  for m in d.get("impactMetrics", []) if m["name"] == "job_seconds"
                  for s in m["samples"]]
    assert counter_values == [2, 1, 1]  # 2.5, 3.5, 3.75, 4.0 cumulative: whole units
    assert counts == [1, 1, 1, 1]  # each export carried one observation, not the total


def test_exponential_histograms_are_refused_with_the_reason_and_never_sent():
    with ScriptedServer() as server:
        view = View(instrument_name="payload.bytes",
                    aggregation=ExponentialBucketHistogramAggregation())
        shipping = Shipping(server.api_url, views=[view])
        shipping.meter.create_histogram("payload.bytes").record(512)
        shipping.meter.create_counter("jobs").add(1)
        shipping.export()
        shipping.close()
        assert server.counter_total("jobs") == 1
        names = {m["name"] for d in server.accepted_documents()
                 for m in d.get("impactMetrics", [])}
    assert names == {"jobs"}
    assert "exponential histogram" in shipping.exporter.refused["payload.bytes"]


def test_a_predicate_and_a_label_allowlist_choose_what_is_sent():
    with ScriptedServer() as server:
        shipping = Shipping(server.api_url, metrics=lambda name: name.startswith("shop."),
                            labels=["route"])
        orders = shipping.meter.create_counter("shop.orders")
        orders.add(2, {"route": "/a", "user": "u1"})
        orders.add(3, {"route": "/a", "user": "u2"})
        shipping.meter.create_counter("internal.ticks").add(9)
        shipping.export()
        shipping.close()
        totals = server.totals()
    assert series(totals, "counters", "shop_orders") == {frozenset({("route", "/a")}): 5}
    assert {name for name, _ in totals["counters"]} == {"shop_orders"}
