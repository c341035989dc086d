"""A NaN gauge through either bridge: dropped and counted the same way, once per new value
(NaN is the same as NaN), whether its series maps to a native one or cannot be mapped."""

from __future__ import annotations

import math

import pytest

import impactagent

pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk.metrics")
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry
from prometheus_client import Gauge as PrometheusGauge

from impactagent.integrations.otel_bridge import ImpactMetricExporter
from impactagent.integrations.prometheus_bridge import bridge_prometheus

READS = 3


def through_prometheus_client(queue: str) -> dict:
    agent = impactagent.Agent("shop")
    registry = CollectorRegistry()
    PrometheusGauge("depth", "Depth", ["queue"], registry=registry).labels(queue).set(math.nan)
    bridge = bridge_prometheus(agent, families=["depth"], registry=registry)
    for _ in range(READS):
        bridge.read()
    return agent.statistics()["dropped"]


def through_opentelemetry(queue: str) -> dict:
    # The SDK's own instruments refuse NaN; an export still carries one from any other source.
    agent = impactagent.Agent("shop")
    exporter = ImpactMetricExporter(agent)
    point = NumberDataPoint({"queue": queue}, 0, 1, math.nan)
    data = MetricsData([ResourceMetrics(Resource.create({}), [ScopeMetrics(
        InstrumentationScope("shop"), [Metric("depth", "Depth", "", Gauge([point]))], "")], "")])
    for _ in range(READS):
        exporter.export(data)
    return agent.statistics()["dropped"]


@pytest.mark.parametrize("bridge", [through_prometheus_client, through_opentelemetry])
@pytest.mark.parametrize("queue, dropped", [
    ("mail", {"non_finite_value": 1}),  # mapped: set once, refused by the native gauge
    ("", {"empty_label_value": 1}),  # cannot be mapped: the unchanged NaN is no new event
])
def test_a_nan_gauge_read_again_is_dropped_and_counted_once(bridge, queue, dropped):
    assert bridge(queue) == dropped
