"""A thread-safe set of metric definitions, and taking their deltas for a send."""

from __future__ import annotations

import threading
from typing import Any, Sequence, TypeVar

from ._family import DEFAULT_MAX_SERIES, Definition, MetricFamily
from .counter import Counter
from .gauge import Gauge
from .histogram import DEFAULT_BUCKETS, Histogram
from .snapshot import MetricDelta, give_back_family, take_family
from .statistics import DropCounter

M = TypeVar("M", bound="MetricFamily[Any]")


class MetricRegistry:
    """Metrics by name; defining one twice the same way returns the first.

    >>> registry = MetricRegistry()
    >>> a = registry.counter("jobs_total", "Jobs done")
    >>> registry.counter("jobs_total", "Jobs done") is a
    True
    >>> registry.gauge("jobs_total", "Jobs done")
    Traceback (most recent call last):
    ValueError: metric 'jobs_total' is already defined differently: type counter, not gauge
    """

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES, drops: DropCounter | None = None
                 ) -> None:
        self.max_series = max_series
        self.drops = drops if drops is not None else DropCounter()
        self._lock = threading.Lock()
        self._families: dict[str, MetricFamily[Any]] = {}

    def counter(self, name: str, help: str, labels: Sequence[str] = (), *,
                max_series: int | None = None, flags: Sequence[str] = ()) -> Counter:
        """Define (or get) a counter."""
        return self._define(Counter, name, help, labels, max_series, flags=flags)

    def gauge(self, name: str, help: str, labels: Sequence[str] = (), *,
              max_series: int | None = None, flags: Sequence[str] = ()) -> Gauge:
        """Define (or get) a gauge."""
        return self._define(Gauge, name, help, labels, max_series, flags=flags)

    def histogram(self, name: str, help: str, labels: Sequence[str] = (), *,
                  buckets: Sequence[float] = DEFAULT_BUCKETS,
                  max_series: int | None = None, flags: Sequence[str] = ()) -> Histogram:
        """Define (or get) a histogram with the given bucket boundaries."""
        return self._define(Histogram, name, help, labels, max_series, buckets=buckets, flags=flags)

    def _define(self, cls: type[M], name: str, help: str, labels: Sequence[str],
                max_series: int | None, **extra: Any) -> M:
        candidate = cls(name, help, labels, drops=self.drops,
                        max_series=max_series or self.max_series, **extra)
        with self._lock:
            existing = self._families.get(name)
            if existing is None:
                self._families[name] = candidate
                return candidate
        difference = _difference(existing.describe(), candidate.describe())
        if difference:
            raise ValueError(f"metric {name!r} is already defined differently: {difference}")
        return existing  # type: ignore[return-value]

    def get(self, name: str) -> MetricFamily[Any] | None:
        """The metric called ``name``, or ``None``."""
        return self._families.get(name)

    def families(self) -> list[MetricFamily[Any]]:
        """Every metric defined, in definition order."""
        with self._lock:
            return list(self._families.values())

    def take(self) -> tuple[MetricDelta, ...]:
        """Every series' delta since the last take (callers serialise take and give_back)."""
        return tuple(delta for delta in map(take_family, self.families()) if delta is not None)

    def give_back(self, metrics: tuple[MetricDelta, ...]) -> None:
        """Merge back deltas that failed to send."""
        for metric in metrics:
            give_back_family(metric)

    def reset_after_fork(self) -> None:
        """In a forked child: new locks, zero counts, the same definitions."""
        self._lock = threading.Lock()
        for family in self._families.values():
            family.reset_after_fork()


def _difference(old: Definition, new: Definition) -> str:
    return ", ".join(f"{aspect} {a!r}, not {b!r}" if aspect != "type" else f"type {a}, not {b}"
                     for (aspect, a), b in zip(old._asdict().items(), new) if a != b)
