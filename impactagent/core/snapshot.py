"""What one collect hands to delivery: a flag window and the impact-metric deltas.

A metric's deltas are kept in columns, not as one object per series: the series that
changed in one list, their numbers in another (histograms' bucket counts flat in a third).
A collect of 100,000 series then allocates a handful of objects the cyclic garbage
collector tracks, not 100,000: every tracked allocation that outlives a young collection
brings the next full collection nearer, and a full collection walks every tracked object
of the process while holding the GIL, which is what recording threads waited for during a
big collect (see benchmarks/README.md, issue 16). Ints and floats in a list are not
tracked; a list is one object whatever its length.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .counter import CounterDelta
from .flags import ToggleDelta
from .gauge import GaugeValue
from .histogram import HistogramDelta


class MetricDelta(NamedTuple):
    """The deltas of one metric in a snapshot, as columns (series with nothing new are
    left out).

    ``children[i]`` is a series that changed and ``values[i]`` its number: a counter's
    increment, a gauge's value, a histogram's sum for the window. A histogram's bucket
    counts (each bucket alone, ``+Inf`` last) are in ``counts``, ``width`` per series:
    series ``i``'s are ``counts[i * width:(i + 1) * width]``. :attr:`samples` gives the
    same as one tuple per series, for reading.
    """

    family: Any  # Counter | Gauge | Histogram
    children: Sequence[Any]
    values: Sequence[Any]
    counts: Sequence[int] = ()

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def width(self) -> int:
        """Bucket counts per series (histograms; 0 for other kinds)."""
        return len(self.family.buckets) + 1 if self.family.kind == "histogram" else 0

    def bucket_counts(self, index: int) -> Tuple[int, ...]:
        """Series ``index``'s bucket counts (a histogram's), each bucket alone."""
        width = self.width
        return tuple(self.counts[index * width:(index + 1) * width])

    def delta(self, index: int) -> Any:
        """Series ``index``'s delta as its ``take_delta()`` returned it, to give back."""
        if self.family.kind == "histogram":
            return self.bucket_counts(index), self.values[index]
        return self.values[index]

    def events(self, index: int) -> int:
        """The recorded events series ``index`` carries: a counter's increment, a
        histogram's observations, one for a gauge value."""
        kind = self.family.kind
        if kind == "counter":
            return int(self.values[index])
        if kind == "histogram":
            return sum(self.bucket_counts(index))
        return 1

    @property
    def samples(self) -> Tuple[Any, ...]:
        """One ``CounterDelta``, ``GaugeValue`` or ``HistogramDelta`` per series (built
        when asked: the collect itself makes none)."""
        kind = self.family.kind
        if kind == "histogram":
            return tuple(HistogramDelta(child, self.bucket_counts(i), self.values[i])
                         for i, child in enumerate(self.children))
        sample = CounterDelta if kind == "counter" else GaugeValue
        return tuple(sample(child, value) for child, value in zip(self.children, self.values))

    def subset(self, indexes: Iterable[int]) -> MetricDelta:
        """The deltas of the series at ``indexes`` only (part of a snapshot, for a body)."""
        picked = list(indexes)
        children = [self.children[i] for i in picked]
        values = [self.values[i] for i in picked]
        if self.family.kind != "histogram":
            return MetricDelta(self.family, children, values)
        counts: List[int] = []
        for i in picked:
            counts.extend(self.bucket_counts(i))
        return MetricDelta(self.family, children, values, counts)


def take_family(family: Any) -> Optional[MetricDelta]:
    """Take the delta of every series of ``family`` since the last take, as one
    :class:`MetricDelta` (``None`` when no series changed); callers serialise takes."""
    children: List[Any] = []
    values: List[Any] = []
    if family.kind == "histogram":
        counts: List[int] = []
        for child in family.series():
            taken = child.take_delta()
            if taken is not None:
                children.append(child)
                counts.extend(taken[0])
                values.append(taken[1])
        return MetricDelta(family, children, values, counts) if children else None
    for child in family.series():
        value = child.take_delta()
        if value is not None:
            children.append(child)
            values.append(value)
    return MetricDelta(family, children, values) if children else None


def give_back_family(metric: MetricDelta) -> None:
    """Merge each series' delta in ``metric`` back into that series."""
    for index, child in enumerate(metric.children):
        child.give_back_delta(metric.delta(index))


class Snapshot(NamedTuple):
    """Everything recorded since the last successful send, as deltas.

    Build request bodies from it with :func:`impactagent.build_payloads`; if sending fails,
    give it back with ``restore`` so its counts go out with the next one.
    """

    start: datetime
    stop: datetime
    toggles: Dict[str, ToggleDelta]
    metrics: Tuple[MetricDelta, ...]

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to send."""
        return not self.toggles and not self.metrics
