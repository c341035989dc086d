"""Both bridges in one script: prometheus_client and OpenTelemetry metrics shipped to Unleash.

Run ``python -m examples.bridges``: it starts the development receiver on 127.0.0.1 (or sends
to ``UNLEASH_URL`` with ``UNLEASH_API_TOKEN`` when both are set), counts a few requests with
each library, closes the agent and prints what arrived. Needs ``impactagent[prometheus,
opentelemetry]``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Tuple

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from prometheus_client import CollectorRegistry, Counter, Histogram

import impactagent
from impactagent.devtools.receiver import Receiver
from impactagent.integrations.otel_bridge import ImpactMetricExporter
from impactagent.integrations.prometheus_bridge import bridge_prometheus


@contextlib.contextmanager
def destination() -> Iterator[Tuple[str, str, Any]]:
    """The server's url and token, and the receiver when there is no server configured."""
    url, token = os.environ.get("UNLEASH_URL"), os.environ.get("UNLEASH_API_TOKEN")
    if url and token:
        yield url, token, None
        return
    token = "default:development.example"
    with Receiver(token=token) as receiver:
        yield receiver.api_url, token, receiver


def main() -> None:
    with destination() as (url, token, receiver):
        agent = impactagent.Agent("bridges-example", url=url, api_key=token).start()

        registry = CollectorRegistry()  # your app would use the default REGISTRY
        requests = Counter("http_requests", "Requests served", ["route"], registry=registry)
        latency = Histogram("http_request_seconds", "Request latency", registry=registry)
        bridge_prometheus(agent, families=["http_requests", "http_request_seconds"],
                          registry=registry)

        reader = PeriodicExportingMetricReader(ImpactMetricExporter(agent),
                                               export_interval_millis=60_000)
        provider = MeterProvider(metric_readers=[reader])
        orders = provider.get_meter("shop").create_counter("shop.orders")

        for route, seconds in (("/cart", 0.02), ("/cart", 0.3), ("/home", 0.01)):
            requests.labels(route).inc()
            latency.observe(seconds)
            orders.add(1, {"route": route})

        provider.shutdown()  # OpenTelemetry's last export into the agent,
        agent.close()        # then the agent's last send
        if receiver is not None:
            totals = receiver.totals("bridges-example")
            for kind in ("counters", "histograms"):
                for (name, labels), value in sorted(totals[kind].items(), key=str):
                    print(kind[:-1], name, dict(labels).get("route", ""), value)


if __name__ == "__main__":
    main()
