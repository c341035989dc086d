"""The peer libraries, set up the way an app would set them up, and never on a network.

- ``prometheus_client``: metrics in a private ``CollectorRegistry``.
- OpenTelemetry SDK: a ``MeterProvider`` with an ``InMemoryMetricReader`` (the SDK's own
  reader for tests: it aggregates exactly as an exporting reader does, and exports nowhere).
  A view lifts the SDK's per-metric cardinality limit (2,000 by default; later series fold
  into one overflow series), so memory is compared on as many real series as ours.
- UnleashClient: a real ``UnleashClient`` with metrics and registration disabled and its
  cache bootstrapped from a dict, so it evaluates flags without ever fetching them; it is
  never ``initialize_client()``-ed, so no thread starts and no socket opens. Its
  ``impact_metrics`` attribute is the SDK's impact-metrics API (define_counter,
  increment_counter, ...), which records in the Rust engine across the FFI boundary.

Every builder returns ``None`` when its library is not installed; the rows that need it are
then left out. Installs nothing.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from typing import Any, Dict, Optional

import prometheus_client

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import View
except ImportError:  # pragma: no cover - depends on the environment
    MeterProvider = None  # type: ignore[assignment,misc]

try:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache
    from UnleashClient.utils import InstanceAllowType
    from yggdrasil_engine.engine import UnleashEngine
except ImportError:  # pragma: no cover - depends on the environment
    UnleashClient = None  # type: ignore[assignment,misc]
    UnleashEngine = None

#: One flag, on for everyone, for the bootstrapped UnleashClient.
FEATURES = {"version": 1, "features": [
    {"name": "new-checkout", "enabled": True, "strategies": [{"name": "default"}]}]}
CARDINALITY = 1_000_000  # OpenTelemetry's per-metric series limit, lifted for the benchmarks


def prometheus(prefix: str = "") -> Dict[str, Any]:
    """A counter with a ``route`` label, an unlabelled counter, a histogram and a gauge, in a
    private registry."""
    registry = prometheus_client.CollectorRegistry()
    return {
        "registry": registry,
        "counter": prometheus_client.Counter(f"{prefix}c", "h", ["route"], registry=registry),
        "plain": prometheus_client.Counter(f"{prefix}plain", "h", registry=registry),
        "histogram": prometheus_client.Histogram(f"{prefix}h", "h", registry=registry),
        "gauge": prometheus_client.Gauge(f"{prefix}g", "h", registry=registry),
    }


def otel() -> Optional[Dict[str, Any]]:
    """A meter whose counter, histogram and gauge aggregate into an in-memory reader."""
    if MeterProvider is None:
        return None
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=[
        View(instrument_name="*", aggregation_cardinality_limit=CARDINALITY)])
    meter = provider.get_meter("bench")
    return {
        "provider": provider, "reader": reader, "meter": meter,
        "counter": meter.create_counter("c"),
        "histogram": meter.create_histogram("h"),
        # The synchronous gauge (SDK >= 1.23); an up-down counter is the older stand-in.
        "gauge": (meter.create_gauge("g") if hasattr(meter, "create_gauge")
                  else meter.create_up_down_counter("g")),
    }


def otel_series(reader: Any, name: str) -> int:
    """How many series (data points) the reader holds for metric ``name``."""
    data = reader.get_metrics_data()
    return sum(len(metric.data.data_points)
               for resource in data.resource_metrics
               for scope in resource.scope_metrics
               for metric in scope.metrics if metric.name == name)


_client: Optional[Any] = None


def unleash_client() -> Optional[Any]:
    """The one offline UnleashClient of this process (its cache lives in a temp dir)."""
    global _client
    if UnleashClient is None:
        return None
    if _client is None:
        directory = tempfile.mkdtemp(prefix="impactagent-bench-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        cache = FileCache("bench", directory=directory)
        cache.bootstrap_from_dict(FEATURES)
        _client = UnleashClient(
            "http://127.0.0.1:9/api", "bench", disable_metrics=True,
            disable_registration=True, cache=cache,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW)
    return _client


def unleash_impact() -> Optional[Any]:
    """UnleashClient's impact-metrics API with a counter ``c``, histogram ``h``, gauge ``g``."""
    client = unleash_client()
    if client is None:
        return None
    impact = client.impact_metrics
    impact.define_counter("c", "h")
    impact.define_histogram("h", "h")
    impact.define_gauge("g", "h")
    return impact


def engine() -> Optional[Any]:
    """A bare yggdrasil engine, the object UnleashClient counts flag evaluations in."""
    return None if UnleashEngine is None else UnleashEngine()
