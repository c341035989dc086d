"""The bridges against the real server: what prometheus_client and OpenTelemetry recorded is
what unleash-server 8.2.0 stores, across a counter reset and through injected faults.

Each test records with the real library, ships through an agent (bridged, not native
metrics) via the fault proxy in front of the server, and reads the stored totals back from
the server's own impact-metrics exposition. Metric names carry a prefix of their own: the
server keeps one registry per name, whoever sent it.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Tuple

import pytest

from tests.e2e.conftest import RealServer
from tests.e2e.fault_proxy import RESET, FaultProxy, status
from tests.workload import series

prometheus_client = pytest.importorskip("prometheus_client")

from impactagent.integrations.prometheus_bridge import bridge_prometheus  # noqa: E402

Labels = FrozenSet[Tuple[str, str]]


def flush_until_delivered(agent: Any, proxy: FaultProxy, attempts: int = 30) -> None:
    """Flush until the proxy's faults are used up and the agent holds nothing."""
    for _ in range(attempts):
        result = agent.flush(timeout=10)
        if (result.ok and proxy.pending_faults() == 0
                and agent.statistics()["pending_events"] == 0):
            return
    raise AssertionError(f"not delivered after {attempts} flushes: {agent.statistics()}")


def stored(unleash: RealServer, app: str, kind: str, name: str,
           until: Any = None) -> Dict[Labels, Any]:
    """``{labels without appName/environment: value}`` of one metric the server stores
    (counters by the sample name it exposes, which ends in ``_total``)."""
    def pick(totals: Dict[str, Any]) -> Dict[Labels, Any]:
        return series(totals, kind, name)

    totals = unleash.admin.settled_totals(
        app, (), (lambda t: until(pick(t))) if until else (lambda t: bool(pick(t))))
    return pick(totals)


def test_prometheus_client_totals_are_stored_across_a_reset_and_through_faults(
        unleash: RealServer) -> None:
    app = "e2e-bridge-prometheus"
    registry = prometheus_client.CollectorRegistry()
    orders = prometheus_client.Counter("orders", "Orders", ["route"], registry=registry)
    latency = prometheus_client.Histogram("work_seconds", "Work", buckets=(0.1, 1.0),
                                          registry=registry)
    recorded = {"/cart": 0, "/pay": 0}
    observations = []
    with FaultProxy(unleash.url) as proxy:
        proxy.script(status(503), RESET, status(500), status(429, retry_after="1"))
        agent = unleash.agent(app, url=proxy.url, request_timeout=2.0)
        bridge_prometheus(agent, families=["orders", "work_seconds"], registry=registry,
                          prefix="e2eprom_")
        for round_ in range(4):
            if round_ == 2:
                # The counter restarts lower (a re-created counter): counted from zero again.
                registry.unregister(orders)
                orders = prometheus_client.Counter("orders", "Orders", ["route"],
                                                   registry=registry)
            for route, amount in (("/cart", round_ + 1), ("/pay", 2)):
                orders.labels(route).inc(amount)
                recorded[route] += amount
            for value in (0.05, 0.5, 3.0):
                latency.observe(value)
                observations.append(value)
            flush_until_delivered(agent, proxy)
        agent.close()
        statistics = agent.statistics()
    assert proxy.pending_faults() == 0, "not every fault was met"
    expected_orders = {frozenset({("route", route)}): n for route, n in recorded.items()}
    assert stored(unleash, app, "counters", "e2eprom_orders_total",
                  lambda got: got == expected_orders) == expected_orders
    (histogram,) = stored(unleash, app, "histograms", "e2eprom_work_seconds").values()
    assert histogram["count"] == len(observations)
    assert histogram["sum"] == pytest.approx(sum(observations))
    assert histogram["buckets"] == {0.1: 4, 1.0: 8, "+Inf": 12}
    assert statistics["dropped"] == {}
    assert statistics["delivery"]["retries"] > 0


def test_opentelemetry_totals_are_stored_through_faults(unleash: RealServer) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from impactagent.integrations.otel_bridge import ImpactMetricExporter

    app = "e2e-bridge-otel"
    with FaultProxy(unleash.url) as proxy:
        proxy.script(RESET, status(502), status(503))
        agent = unleash.agent(app, url=proxy.url, request_timeout=2.0)
        reader = PeriodicExportingMetricReader(ImpactMetricExporter(agent),
                                               export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("shop")
        jobs = meter.create_counter("e2eotel.jobs")
        seconds = meter.create_histogram("e2eotel.job.seconds",
                                         explicit_bucket_boundaries_advisory=[0.1, 1.0])
        recorded = 0
        for round_ in range(4):
            jobs.add(round_ + 1, {"queue": "mail"})
            recorded += round_ + 1
            seconds.record(0.5, {"queue": "mail"})
            assert reader.force_flush()
            flush_until_delivered(agent, proxy)
        provider.shutdown()
        agent.close()
        statistics = agent.statistics()
    assert proxy.pending_faults() == 0, "not every fault was met"
    expected = {frozenset({("queue", "mail")}): recorded}
    assert stored(unleash, app, "counters", "e2eotel_jobs_total",
                  lambda got: got == expected) == expected
    (histogram,) = stored(unleash, app, "histograms", "e2eotel_job_seconds").values()
    assert histogram == {"count": 4, "sum": 2.0, "buckets": {0.1: 0, 1.0: 4, "+Inf": 4}}
    assert statistics["dropped"] == {}
