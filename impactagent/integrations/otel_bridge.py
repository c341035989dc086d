"""Ship OpenTelemetry metrics to Unleash: a ``MetricExporter`` that records into an agent::

    reader = PeriodicExportingMetricReader(ImpactMetricExporter(agent),
                                           export_interval_millis=15_000)
    provider = MeterProvider(metric_readers=[reader])

A monotonic sum becomes a counter, other sums and gauges a gauge, an explicit-bucket
histogram a histogram (an exponential one is refused: Unleash stores fixed bounds). Shut the
``MeterProvider`` down before closing the agent, so that its last export is sent.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from ._bridged import Bridged, BridgedFamilies, CounterReadings, GaugeReadings, HistogramReadings

try:
    from opentelemetry.sdk import metrics as sdk
    from opentelemetry.sdk.metrics import export
    from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, Sum
except ImportError:  # pragma: no cover - the module imports (docs, doctests) without OTel
    MetricExporter = object  # type: ignore[assignment,misc]
    _OTEL = False
else:
    _OTEL = True

if TYPE_CHECKING:
    from ..agent import Agent


class ImpactMetricExporter(MetricExporter):
    """An OpenTelemetry metric exporter that records into ``agent``: ``metrics`` chooses by
    name (all unless given), ``labels`` is an allowlist of attribute names, ``prefix`` goes
    before every name; both temporalities are handled, delta asked for counts."""

    def __init__(self, agent: Agent, *, metrics: Optional[Callable[[str], bool]] = None,
                 labels: Optional[Iterable[str]] = None, prefix: str = "",
                 max_series: Optional[int] = None,
                 preferred_temporality: Optional[dict[type, Any]] = None) -> None:
        if not _OTEL:
            raise ImportError("ImpactMetricExporter needs the OpenTelemetry SDK: "
                              "pip install 'impactagent[opentelemetry]'")
        delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
        super().__init__(preferred_temporality={
            sdk.Counter: delta, sdk.ObservableCounter: delta, sdk.Histogram: delta,
            sdk.UpDownCounter: cumulative, sdk.ObservableUpDownCounter: cumulative,
            sdk.ObservableGauge: cumulative, **(preferred_temporality or {})})
        self._agent = agent
        self._chosen = metrics
        self._native = BridgedFamilies(agent, source="OpenTelemetry", prefix=prefix,
                                       labels=labels, max_series=max_series)
        self._lock = threading.Lock()
        self._counters = CounterReadings()
        self._histograms = HistogramReadings()
        self._running: dict[Any, float] = {}  # totals of delta sums, by source series
        self._gauges = GaugeReadings()

    @property
    def refused(self) -> dict[str, str]:
        """Metrics that are not sent, by name, with the reason."""
        return dict(self._native.refused)

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        """Record one export's data points into the agent."""
        with self._lock:
            gauges: dict[Any, float] = {}
            for resource_metrics in metrics_data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if self._chosen is None or self._chosen(metric.name):
                            self._metric(metric, gauges)
            self._gauges.set_changed(gauges)
        return export.MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered here."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release (close the agent to send what is left)."""

    def _metric(self, metric: Any, gauges: dict[Any, float]) -> None:
        data, name = metric.data, metric.name
        if isinstance(data, export.ExponentialHistogram):
            self._native.refuse(name, "an exponential histogram's bucket boundaries move "
                                      "with its scale; Unleash stores fixed ones (use the "
                                      "explicit-bucket aggregation)")
            return
        for point in data.data_points:
            labels = tuple(sorted((k, _text(v)) for k, v in (point.attributes or {}).items()))
            names = tuple(k for k, _ in labels)
            key = (name, labels)
            if isinstance(data, Sum) and data.is_monotonic:
                self._sum(metric, data, point, key, names)
            elif isinstance(data, (Sum, export.Gauge)):
                self._gauge(metric, data, point, key, names, gauges)
            elif isinstance(data, export.Histogram):
                self._histogram(metric, data, point, key, names)
            else:
                self._native.refuse(name, f"{type(data).__name__} is no kind the agent knows")

    def _sum(self, metric: Any, data: Any, point: Any, key: Any, names: tuple[str, ...]) -> None:
        if _is_delta(data):
            delta = self._counters.delta(key, self._running_total(key, point.value))
        else:
            delta = self._counters.delta(key, point.value, point.start_time_unix_nano)
        bridged = self._native.family("counter", metric.name, metric.description, names)
        if bridged is not None and delta:
            self._native.count(metric.name, bridged, _labels(key, bridged), delta)

    def _gauge(self, metric: Any, data: Any, point: Any, key: Any, names: tuple[str, ...],
               gauges: dict[Any, float]) -> None:
        total = float(point.value)
        if isinstance(data, Sum) and _is_delta(data):
            total = self._running_total(key, total)
        bridged = self._native.family("gauge", metric.name, metric.description, names)
        if bridged is None:
            return
        self._gauges.add(self._native, metric.name, bridged, key, _labels(key, bridged), total,
                         gauges)

    def _running_total(self, key: Any, delta: float) -> float:
        """What a delta-temporality sum added up to so far."""
        self._running[key] = self._running.get(key, 0.0) + delta
        return self._running[key]

    def _histogram(self, metric: Any, data: Any, point: Any, key: Any, names: tuple[str, ...]
                   ) -> None:
        counts = [int(n) for n in point.bucket_counts]
        if _is_delta(data):
            added = (tuple(counts), point.sum) if any(counts) else None
        else:
            added = self._histograms.delta(key, counts, point.sum, point.start_time_unix_nano)
        bridged = self._native.family("histogram", metric.name, metric.description, names,
                                      buckets=tuple(point.explicit_bounds))
        if (bridged is not None and self._native.fits(metric.name, bridged,
                                                      point.explicit_bounds, "a point")
                and added is not None):
            self._native.add_counts(metric.name, bridged, _labels(key, bridged), added)


def _labels(key: Any, bridged: Bridged) -> dict[str, str]:
    """A point's attributes by the bridged label names (a missing one is empty)."""
    by_name = dict(key[1])
    return {n: by_name.get(n, "") for n in bridged.source_labels}


def _is_delta(data: Any) -> bool:
    return bool(data.aggregation_temporality == AggregationTemporality.DELTA)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)
