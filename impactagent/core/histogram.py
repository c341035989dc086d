"""Histograms: observations counted into cumulative buckets, sent as deltas. The sum is kept
per window (a long-lived series keeps its precision); an observation that would take it past
``+/-(2**53 - 1)``, which the server refuses, is dropped and counted (``unsafe_sum``)."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from itertools import accumulate
from typing import Sequence

from ._family import DEFAULT_MAX_SERIES, InContext, MetricFamily, Timer
from ._numbers import MAX_SAFE_FLOAT, Number, is_finite
from .statistics import DropCounter

#: The boundaries Unleash SDKs use when none are given (seconds).
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_INF = float("inf")


def check_buckets(metric: str, buckets: Sequence[float]) -> tuple[float, ...]:
    """Finite, strictly increasing boundaries within ``+/-(2**53 - 1)``; +Inf is implied."""
    try:
        bounds = [float(b) for b in buckets]
    except (TypeError, ValueError):
        raise TypeError(f"buckets of {metric!r} must be numbers, got {buckets!r}") from None
    if bounds and bounds[-1] == _INF:
        bounds.pop()
    if not bounds:
        raise ValueError(f"histogram {metric!r} needs at least one finite bucket boundary")
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError(f"bucket boundaries of {metric!r} must be finite, got {buckets!r}")
    if not all(-MAX_SAFE_FLOAT <= b <= MAX_SAFE_FLOAT for b in bounds):
        raise ValueError(f"bucket boundaries of {metric!r} must be within +/-(2**53 - 1), "
                         f"which Unleash takes; got {buckets!r}")
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"bucket boundaries of {metric!r} must strictly increase: {buckets!r}")
    return tuple(bounds)


_total_of = sum  # the builtin, under a name that add_counts()'s ``sum`` does not hide


class HistogramChild:
    """One series of a histogram. Get it from :meth:`Histogram.labels` and keep it."""

    __slots__ = ("_bounds", "_counts", "_lock", "_sent_counts", "_sum", "_window_sum", "family",
                 "label_values")

    def __init__(self, family: Histogram, label_values: tuple[str, ...], lock: threading.Lock):
        self.family = family
        self._bounds = family.buckets
        self._lock = lock
        self._counts: list[int] = [0] * (len(family.buckets) + 1)  # each bucket alone
        self._sum = 0.0  # since start, for the Prometheus view
        self._window_sum = 0.0  # what the next collect sends
        self._sent_counts: list[int] = [0] * (len(family.buckets) + 1)
        self.label_values = label_values

    def observe(self, value: Number) -> None:
        """Count one observation of ``value`` (a finite number)."""
        if value.__class__ is not float and value.__class__ is not int:
            value = self.family.rules.number(value, "observe()")
        index = bisect_left(self._bounds, value)  # first bucket with value <= le
        try:
            with self._lock:  # no call inside: see CounterChild.inc
                window = self._window_sum + value
                # The safe range written out; NaN fails it too.
                if -(2.0**53 - 1) <= window <= (2.0**53 - 1):
                    self._counts[index] += 1
                    self._window_sum = window
                    self._sum += value
                    return
        except OverflowError:  # an int too large for a float
            pass
        self.family.rules.drop_value(value, "unsafe_sum")

    def add_counts(self, counts: Sequence[int], sum: Number) -> None:
        """Add observations made elsewhere (bridges): ``counts[i]`` in bucket ``i`` alone,
        ``+Inf`` last, adding up to ``sum``."""
        added = self._checked_counts(counts)
        if sum.__class__ is not float and sum.__class__ is not int:
            sum = self.family.rules.number(sum, "add_counts()")
        total = _total_of(added)
        if not total:
            return  # a sum alone is no observation
        try:
            with self._lock:
                window = self._window_sum + sum
                if -(2.0**53 - 1) <= window <= (2.0**53 - 1):
                    mine = self._counts
                    for index, n in enumerate(added):
                        mine[index] += n
                    self._window_sum = window
                    self._sum += sum
                    return
        except OverflowError:  # an int too large for a float
            pass
        self.family.rules.drop("non_finite_value" if not is_finite(sum) else "unsafe_sum", total)

    def _checked_counts(self, counts: Sequence[int]) -> tuple[int, ...]:
        takes = f"histogram {self.family.name!r}: add_counts() takes"
        try:
            added = tuple(counts)
        except TypeError:
            raise TypeError(f"{takes} a sequence of counts, got {type(counts).__name__}") from None
        if len(added) != len(self._counts):
            raise ValueError(f"{takes} {len(self._counts)} counts (one per bucket, +Inf last), "
                             f"got {len(added)}")
        for n in added:
            if n.__class__ is not int and (isinstance(n, (bool, float))
                                           or not hasattr(n, "__index__")):
                raise TypeError(f"{takes} int counts, got {n!r}")
            if n < 0:
                raise ValueError(f"{takes} counts >= 0, got {n}")
        return tuple(int(n) for n in added)

    def time(self) -> Timer:
        """Observe the seconds a block or a decorated function takes."""
        return Timer(self.observe)

    @property
    def count(self) -> int:
        """The number of observations since the agent started."""
        return sum(self._counts)

    @property
    def sum(self) -> float:
        """The sum of all observations since the agent started."""
        return self._sum

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """``[(le, observations <= le), ...]`` ending with ``(inf, count)``."""
        with self._lock:
            counts = list(self._counts)
        return list(zip((*self._bounds, _INF), accumulate(counts)))

    def take_delta(self) -> tuple[tuple[int, ...], float] | None:
        with self._lock:  # one consistent read of counts and the window's sum
            counts = list(self._counts)
            window_sum = self._window_sum
            self._window_sum = 0.0
        deltas = tuple(now - sent for now, sent in zip(counts, self._sent_counts))
        if not any(deltas):
            return None
        # In place: a new list per series would leave the collector one per series to walk.
        self._sent_counts[:] = counts
        return deltas, window_sum

    def give_back_delta(self, delta: tuple[Sequence[int], float]) -> None:
        given_counts, given_sum = delta
        with self._lock:
            merged = self._window_sum + given_sum
            fits = -MAX_SAFE_FLOAT <= merged <= MAX_SAFE_FLOAT
            if fits:
                self._window_sum = merged
        if fits:
            self._sent_counts[:] = [sent - d for sent, d in zip(self._sent_counts, given_counts)]
        else:
            # With what was recorded meanwhile, the sum no longer fits: the older part goes.
            self.family.rules.drop("unsafe_sum", _total_of(given_counts))

    def pending_events(self) -> int:
        return sum(self._counts) - sum(self._sent_counts)

    def reset_after_fork(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._counts = [0] * len(self._counts)
        self._sent_counts = [0] * len(self._counts)
        self._sum = self._window_sum = 0.0

    def __repr__(self) -> str:
        return f"<HistogramChild {self.family.name}{self.label_values} count={self.count}>"


class _DroppedHistogramChild(HistogramChild):
    """Past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def observe(self, value: Number) -> None:
        self.family.rules.drop_past_limit(value, "observe()")

    def add_counts(self, counts: Sequence[int], sum: Number) -> None:
        added = self._checked_counts(counts)
        self.family.rules.number(sum, "add_counts()")  # raises as the real series would
        if _total_of(added):
            self.family.rules.drop("cardinality_limit", _total_of(added))


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
    _series_class = HistogramChild
    _dropped_class = _DroppedHistogramChild
    _target: HistogramChild | InContext

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), *,
                 buckets: Sequence[float] = DEFAULT_BUCKETS, max_series: int = DEFAULT_MAX_SERIES,
                 drops: DropCounter | None = None, flags: Sequence[str] = ()) -> None:
        self.buckets = check_buckets(name, buckets)
        super().__init__(name, help, labels, max_series=max_series, drops=drops, flags=flags)

    def observe(self, value: Number) -> None:
        """Observe a value on an unlabelled histogram."""
        self._target.observe(value)

    def add_counts(self, counts: Sequence[int], sum: Number) -> None:
        """Add bucketed observations to an unlabelled histogram."""
        self._target.add_counts(counts, sum)

    def time(self) -> Timer:
        """Time a block or function on an unlabelled histogram."""
        return self._target.time()

    @property
    def count(self) -> int:
        """Observations of an unlabelled histogram since the agent started."""
        return self._require_default().count

    @property
    def sum(self) -> float:
        """The sum of the observations of an unlabelled histogram."""
        return self._require_default().sum

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(le, count)`` pairs of an unlabelled histogram."""
        return self._require_default().cumulative_buckets()
