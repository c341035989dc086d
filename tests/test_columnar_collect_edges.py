"""Edges of the columnar collect and the hand-written JSON, through the public API only.

The promise each test holds the agent to: every count recorded is delivered exactly once
or counted as dropped with a reason, and what a real Unleash server refuses (here: a
non-strict receiver, which answers 202 and throws away what 8.2.0 throws away) is never
sent as fine.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from typing import Any, Dict, List, Tuple

import pytest

import impactagent
from impactagent.delivery.transport import DELIVERED, RETRY, Outcome
from impactagent.devtools.receiver import Receiver

TOKEN = "default:production.attack-columns"


def _agent(receiver: Receiver, **kwargs) -> impactagent.Agent:
    return impactagent.Agent("shop", "production", url=receiver.api_url, api_key=TOKEN,
                             register=False, handle_sigterm=False, **kwargs)


def _counter_totals(receiver: Receiver) -> Dict[Tuple[str, frozenset], int]:
    return dict(receiver.totals("shop")["counters"])


def test_an_empty_label_value_does_not_cost_the_other_metrics_of_its_body():
    with Receiver() as receiver:  # not strict: answers 202 like the real server
        agent = _agent(receiver)
        agent.counter("orders_total", "Orders").inc(5)
        jobs = agent.counter("jobs_total", "Jobs", labels=("queue",))
        # Refused at the call, where the mistake is, by position, by name, and as a str
        # subclass whose text is empty; nothing is recorded, so nothing is owed.
        for call in (lambda: jobs.labels(""), lambda: jobs.labels(queue=""),
                     lambda: jobs.labels(type("Text", (str,), {})(""))):
            with pytest.raises(ValueError, match="non-empty value"):
                call()
        assert agent.close(timeout=10).ok
        dropped = agent.statistics()["dropped"]
        totals = _counter_totals(receiver)
        problems = receiver.problems()
    orders = [n for (name, _), n in totals.items() if name == "orders_total"]
    assert orders == [5], (totals, problems)
    assert not problems
    assert dropped == {}, dropped


def test_a_bridged_empty_label_value_does_not_cost_the_other_metrics_of_its_body():
    prometheus_client = pytest.importorskip("prometheus_client")
    from impactagent.integrations.prometheus_bridge import bridge_prometheus

    registry = prometheus_client.CollectorRegistry()
    jobs = prometheus_client.Counter("jobs", "Jobs", ["queue"], registry=registry)
    jobs.labels("").inc(3)
    jobs.labels("fast").inc(2)
    prometheus_client.Counter("orders", "Orders", registry=registry).inc(5)
    with Receiver() as receiver:
        agent = _agent(receiver)
        bridge_prometheus(agent, families=lambda name: True, registry=registry)
        assert agent.close(timeout=10).ok
        dropped = sum(agent.statistics()["dropped"].values())
        totals = _counter_totals(receiver)
        problems = receiver.problems()
    assert not problems
    by_name = Tally()
    for (name, _), n in totals.items():
        by_name[name] += n
    assert by_name["orders_total"] == 5, (totals, problems)
    assert by_name["jobs_total"] == 2 and dropped == 3, (totals, dropped)
    assert agent.statistics()["dropped"] == {"empty_label_value": 3}


class _Answering:
    """A user transport that answers every body with ``kind`` and keeps the delivered ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.bodies: List[bytes] = []

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.kind != DELIVERED:
            return Outcome(self.kind, 503)
        self.bodies.append(body)
        return Outcome(DELIVERED, 202)

    def events(self) -> int:
        return sum(impactagent.count_events(json.loads(body)) for body in self.bodies)


def _quiet_agent(transport: Any, **kwargs: Any) -> impactagent.Agent:
    return impactagent.Agent("shop", "production", transport=transport, register=False,
                             handle_sigterm=False, **kwargs)


def test_a_spooled_body_with_an_empty_label_value_is_read_back_or_counted_in_events(
        tmp_path):
    failing = _Answering(RETRY)
    first = _quiet_agent(failing, spool_dir=str(tmp_path))
    first.counter("orders_total", "Orders").inc(5)
    recorded = 5
    with pytest.raises(ValueError):  # refused at the call: nothing recorded, nothing owed
        first.counter("jobs_total", "Jobs", labels=("queue",)).labels("").inc(3)
    first.close(timeout=5)
    assert first.statistics()["dropped"] == {}  # all spooled
    sink = _Answering(DELIVERED)
    second = _quiet_agent(sink, spool_dir=str(tmp_path))
    second.flush(timeout=5)
    second.close(timeout=5)
    dropped = second.statistics()["dropped"]
    assert "spool_corrupt" not in dropped, dropped
    # Every recorded event delivered, or counted as dropped (in events) with a reason.
    assert sink.events() + sum(dropped.values()) == recorded, (sink.bodies, dropped)


def test_an_otel_point_lacking_an_attribute_does_not_cost_the_other_metrics_of_its_body():
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from impactagent.integrations.otel_bridge import ImpactMetricExporter

    with Receiver() as receiver:
        agent = _agent(receiver)
        reader = PeriodicExportingMetricReader(ImpactMetricExporter(agent),
                                               export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("shop")
        jobs = meter.create_counter("jobs")
        jobs.add(2, {"queue": "fast", "region": "eu"})
        jobs.add(3, {"queue": "slow"})  # no region: a common OpenTelemetry shape
        meter.create_counter("orders").add(5)
        provider.shutdown()
        assert agent.close(timeout=10).ok
        dropped = sum(agent.statistics()["dropped"].values())
        totals = _counter_totals(receiver)
        problems = receiver.problems()
    by_name = Tally()
    for (name, _), n in totals.items():
        by_name[name] += n
    assert not problems
    assert by_name["orders"] + by_name["orders_total"] == 5, (totals, problems)
    assert by_name["jobs"] + by_name["jobs_total"] == 2 and dropped == 3, (totals, dropped)
    assert agent.statistics()["dropped"] == {"empty_label_value": 3}


@pytest.mark.parametrize("calls", [[2**53], [2**52, 2**52]], ids=["one call", "two calls"])
def test_histogram_counts_beyond_the_safe_range_never_cost_the_other_metrics(calls):
    """``add_counts`` (the bridges' seam) takes any count: a window whose observations add
    up past 2**53 - 1 made a sample the server refuses, and its Joi schema then discards
    the body's whole impactMetrics array (202). It is dropped and counted instead."""
    with Receiver() as receiver:
        agent = _agent(receiver)
        agent.counter("orders_total", "Orders").inc(5)
        batches = agent.histogram("batch_seconds", "Batches", buckets=(1,))
        for count in calls:
            batches.add_counts([count, 0], 0.5)
        assert agent.close(timeout=10).ok
        dropped = agent.statistics()["dropped"]
        totals = _counter_totals(receiver)
        problems = receiver.problems()
    assert not problems
    assert [n for (name, _), n in totals.items() if name == "orders_total"] == [5]
    assert dropped == {"unsafe_count": sum(calls)}
