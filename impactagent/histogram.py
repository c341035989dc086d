"""Histograms: observations counted into cumulative buckets, sent as deltas."""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from bisect import bisect_left
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union

from ._family import DEFAULT_MAX_SERIES, MetricFamily
from .statistics import DropCounter

F = TypeVar("F", bound=Callable[..., Any])

#: The boundaries Unleash SDKs use when none are given (seconds, for latencies).
DEFAULT_BUCKETS: Tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

_INF = float("inf")
_NEG_INF = -_INF


def check_buckets(metric: str, buckets: Sequence[float]) -> Tuple[float, ...]:
    """Return finite, strictly increasing bucket boundaries; a trailing +Inf is implied."""
    try:
        bounds = [float(b) for b in buckets]
    except (TypeError, ValueError):
        raise TypeError(f"buckets of {metric!r} must be numbers, got {buckets!r}") from None
    if bounds and bounds[-1] == _INF:
        bounds.pop()  # "+Inf" is always appended on the wire
    if not bounds:
        raise ValueError(f"histogram {metric!r} needs at least one finite bucket boundary")
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError(f"bucket boundaries of {metric!r} must be finite, got {buckets!r}")
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"bucket boundaries of {metric!r} must strictly increase: {buckets!r}")
    return tuple(bounds)


class HistogramDelta(NamedTuple):
    """What one histogram series gained since the last send: per-bucket counts and sum.

    ``counts[i]`` counts observations in bucket ``i`` alone (not cumulative); the last entry
    is the ``+Inf`` bucket. The payload builder turns them into cumulative ``le`` buckets.
    """

    child: HistogramChild
    counts: Tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:  # type: ignore[override]  # shadows tuple.count on purpose
        """The number of observations in this delta."""
        return sum(self.counts)


class HistogramChild:
    """One series of a histogram. Get it from :meth:`Histogram.labels` and keep it."""

    __slots__ = (
        "_bounds", "_counts", "_family", "_lock", "_sent_counts", "_sent_sum", "_sum",
        "label_values",
    )

    def __init__(self, family: Histogram, label_values: Tuple[str, ...], lock: threading.Lock):
        self._family = family
        self._bounds = family.buckets
        self._lock = lock
        self._counts: List[int] = [0] * (len(family.buckets) + 1)  # per bucket, not cumulative
        self._sum = 0.0
        self._sent_counts: List[int] = [0] * (len(family.buckets) + 1)
        self._sent_sum = 0.0
        self.label_values = label_values

    def observe(self, value: Union[int, float]) -> None:
        """Count one observation of ``value`` (a finite number)."""
        try:
            finite = _NEG_INF < value < _INF
        except TypeError:
            raise TypeError(
                f"histogram {self._family.name!r}: observe() takes a number, "
                f"got {type(value).__name__}"
            ) from None
        if not finite:
            self._family._drop("non_finite_value")
            return
        index = bisect_left(self._bounds, value)  # first bucket with value <= le
        with self._lock:  # no call inside: see CounterChild.inc
            self._counts[index] += 1
            self._sum += value

    def time(self) -> Timer:
        """Observe the seconds a block or a decorated function (sync or async) takes."""
        return Timer(self.observe)

    @property
    def count(self) -> int:
        """The number of observations since the agent started."""
        return sum(self._counts)

    @property
    def sum(self) -> float:
        """The sum of all observations since the agent started."""
        return self._sum

    def cumulative_buckets(self) -> List[Tuple[float, int]]:
        """Return ``[(le, count of observations <= le), ...]`` ending with ``(inf, count)``."""
        with self._lock:
            counts = list(self._counts)
        result, running = [], 0
        for le, n in zip((*self._bounds, _INF), counts):
            running += n
            result.append((le, running))
        return result

    def _take(self) -> HistogramDelta | None:
        with self._lock:  # one consistent read of counts and sum
            counts = list(self._counts)
            total = self._sum
        deltas = tuple(now - sent for now, sent in zip(counts, self._sent_counts))
        if not any(deltas):
            return None
        delta_sum = total - self._sent_sum
        self._sent_counts = counts
        self._sent_sum = total
        return HistogramDelta(self, deltas, delta_sum)

    def _give_back(self, delta: HistogramDelta) -> None:
        self._sent_counts = [sent - d for sent, d in zip(self._sent_counts, delta.counts)]
        self._sent_sum -= delta.sum

    def _pending(self) -> int:
        return sum(self._counts) - sum(self._sent_counts)

    def _reset(self) -> None:
        self._counts = [0] * len(self._counts)
        self._sent_counts = [0] * len(self._counts)
        self._sum = self._sent_sum = 0.0

    def __repr__(self) -> str:
        return f"<HistogramChild {self._family.name}{self.label_values} count={self.count}>"


class _DroppedHistogramChild(HistogramChild):
    """Stands in for label sets past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def observe(self, value: Union[int, float]) -> None:
        if self._family._accept_number(value, "observe()"):
            self._family._drop("cardinality_limit")


class Histogram(MetricFamily[HistogramChild]):
    """The distribution of a measurement, such as a latency, in cumulative buckets.

    >>> latency = Histogram("checkout_seconds", "Checkout latency", buckets=(0.1, 0.5, 1))
    >>> latency.observe(0.31)
    >>> with latency.time():
    ...     pass
    >>> latency.count
    2
    """

    kind = "histogram"
    _reserved_labels = ("le",)

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = DEFAULT_MAX_SERIES,
        drops: Optional[DropCounter] = None,
        flags: Sequence[str] = (),
    ) -> None:
        self.buckets = check_buckets(name, buckets)
        super().__init__(name, help, labels, max_series=max_series, drops=drops, flags=flags)

    def _new_child(self, label_values: Tuple[str, ...], lock: threading.Lock) -> HistogramChild:
        return HistogramChild(self, label_values, lock)

    def _new_overflow_child(self) -> HistogramChild:
        dropped = ("<dropped>",) * len(self.label_names)
        return _DroppedHistogramChild(self, dropped, self._locks[0])

    def _bind_default(self, child: HistogramChild) -> None:
        self.observe = child.observe  # type: ignore[method-assign]
        self.time = child.time  # type: ignore[method-assign]

    def _bind_in_flag_context(self) -> None:
        labels = self.labels

        def observe(value: Union[int, float]) -> None:
            labels().observe(value)

        self.observe = observe  # type: ignore[method-assign]
        # The series is chosen when the timing ends: the flag is usually decided inside.
        self.time = lambda: Timer(observe)  # type: ignore[method-assign]

    def observe(self, value: Union[int, float]) -> None:
        """Observe a value on an unlabelled histogram."""
        self._require_default()

    def time(self) -> Timer:
        """Time a block or function on an unlabelled histogram."""
        return self._require_default().time()

    @property
    def count(self) -> int:
        """Observations of an unlabelled histogram since the agent started."""
        return self._require_default().count

    @property
    def sum(self) -> float:
        """The sum of the observations of an unlabelled histogram."""
        return self._require_default().sum

    def cumulative_buckets(self) -> List[Tuple[float, int]]:
        """Cumulative ``(le, count)`` pairs of an unlabelled histogram."""
        return self._require_default().cumulative_buckets()

    def describe(self) -> Tuple[Any, ...]:
        return (self.kind, self.help, self.label_names, self.buckets, self.flags)


class Timer:
    """Measures elapsed seconds with ``time.perf_counter`` and hands them to ``observe``.

    Works as ``with histogram.time():`` and as ``@histogram.time()`` on ``def`` and
    ``async def`` functions alike; each call or block is one observation.
    """

    __slots__ = ("_observe", "_start")

    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._observe(time.perf_counter() - self._start)

    def __call__(self, func: F) -> F:
        observe = self._observe
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    observe(time.perf_counter() - start)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return wrapper  # type: ignore[return-value]
