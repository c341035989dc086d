"""What one collect hands to delivery: a flag window and each metric's deltas as columns
(``array.array``: one object for the garbage collector, not one per series), a column falling
back to a list when a number does not fit its machine type."""

from __future__ import annotations

from array import array
from datetime import datetime
from itertools import islice
from typing import Any, Iterable, NamedTuple, Sequence, Union

from ._family import MetricFamily, Series
from ._numbers import Number
from .counter import Counter, CounterChild
from .flags import ToggleDelta
from .gauge import Gauge, GaugeChild
from .histogram import Histogram, HistogramChild

Family = Union[Counter, Gauge, Histogram]
Child = Union[CounterChild, GaugeChild, HistogramChild]


class Sample(NamedTuple):
    """One series' delta, built when asked: a counter's increment or a gauge's value, or a
    histogram's observations with each bucket's count alone (``+Inf`` last) and their sum."""

    child: Child
    value: Number
    counts: tuple[int, ...] = ()
    sum: float = 0.0

    @property
    def count(self) -> Number:  # type: ignore[override]  # shadows tuple.count on purpose
        return self.value


class MetricDelta(NamedTuple):
    """The deltas of one metric in a snapshot, as columns (unchanged series left out).

    ``indexes[i]`` is a series' position in the family's :meth:`series_table`, ``numbers[i]``
    its increment, value or sum (``ints[i]`` is 1 where a gauge's value is an int, sent as
    ``5``, not ``5.0``); a histogram's bucket counts are in ``counts``, ``width`` per series.
    """

    family: Family
    indexes: Sequence[int]
    numbers: Sequence[Number]
    counts: Sequence[int] = ()
    ints: Sequence[int] = ()

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def events(self) -> int:
        """The recorded events it carries (a gauge's value is one)."""
        kind = self.family.kind
        if kind == "counter":
            return int(sum(self.numbers))
        return sum(self.counts) if kind == "histogram" else len(self.indexes)

    @property
    def width(self) -> int:
        family = self.family
        return len(family.buckets) + 1 if isinstance(family, Histogram) else 0

    @property
    def children(self) -> list[Child]:
        table: Sequence[Child] = self.family.series_table()
        return [table[index] for index in self.indexes]

    @property
    def values(self) -> list[Number]:
        return list(self.numbers_as_taken())

    def numbers_as_taken(self) -> Iterable[Number]:
        """Each series' number as it was taken (a gauge's int stays an int)."""
        if not self.ints:
            return self.numbers
        return (int(number) if is_int else number
                for number, is_int in zip(self.numbers, self.ints))

    def bucket_counts(self, index: int) -> tuple[int, ...]:
        width = self.width
        return tuple(self.counts[index * width:(index + 1) * width])

    @property
    def samples(self) -> tuple[Sample, ...]:
        """One :class:`Sample` per series."""
        if not self.width:
            return tuple(map(Sample, self.children, self.values))
        return tuple(Sample(child, sum(counts), counts, number) for child, counts, number in
                     zip(self.children, map(self.bucket_counts, range(len(self.indexes))),
                         self.numbers))

    def subset(self, indexes: Sequence[int]) -> MetricDelta:
        """The deltas of the series at ``indexes`` (increasing) only."""
        if not indexes or indexes[-1] - indexes[0] != len(indexes) - 1:
            return self._picked(indexes)
        start, stop = indexes[0], indexes[-1] + 1
        width = self.width
        return MetricDelta(self.family, self.indexes[start:stop], self.numbers[start:stop],
                           self.counts[start * width:stop * width], self.ints[start:stop])

    def _picked(self, picked: Sequence[int]) -> MetricDelta:
        width = self.width
        return MetricDelta(self.family, array("q", [self.indexes[i] for i in picked]),
                           _like(self.numbers, [self.numbers[i] for i in picked]),
                           _like(self.counts, [n for i in picked for n in
                                               self.counts[i * width:(i + 1) * width]]
                                 ) if width else (),
                           bytes([self.ints[i] for i in picked]) if self.ints else b"")


def _like(column: Sequence[Any], items: list[Any]) -> Sequence[Any]:
    return array(column.typecode, items) if isinstance(column, array) else items


def take_family(family: MetricFamily[Any]) -> MetricDelta | None:
    """Every series' delta since the last take, or ``None``; callers serialise takes."""
    if isinstance(family, Counter):
        return _take_numbers(family, array("q"), None)
    if isinstance(family, Gauge):
        return _take_numbers(family, array("d"), bytearray())
    if isinstance(family, Histogram):
        return _take_histograms(family)
    raise TypeError(f"a metric family is a Counter, Gauge or Histogram, not {family!r}")


def _take_numbers(family: Counter | Gauge, numbers: array[Any], ints: bytearray | None
                  ) -> MetricDelta | None:
    """A counter's increments, or a gauge's values with ``ints`` marking the ints (within
    ``+/-(2**53 - 1)`` by construction: exact as floats)."""
    table: Sequence[Series] = family.series_table()
    indexes = array("q")
    add_index, add_number = indexes.append, numbers.append
    for index, child in enumerate(islice(table, len(table))):
        value = child.take_delta()
        if value is not None:
            add_index(index)
            add_number(value)
            if ints is not None:
                ints.append(value.__class__ is int)
    if not indexes:
        return None
    return MetricDelta(family, indexes, numbers, (), bytes(ints) if ints is not None else b"")


def _take_histograms(family: Histogram) -> MetricDelta | None:
    table = family.series_table()
    indexes = array("q")
    sums = array("d")
    counts: Any = array("q")
    for index, child in enumerate(islice(table, len(table))):
        taken = child.take_delta()
        if taken is None:
            continue
        indexes.append(index)
        before = len(counts)
        try:
            counts.extend(taken[0])
        except OverflowError:  # a count beyond 2**63 (add_counts): a list from now on
            del counts[before:]
            counts = counts.tolist()
            counts.extend(taken[0])
        sums.append(taken[1])
    return MetricDelta(family, indexes, sums, counts) if indexes else None


def give_back_family(metric: MetricDelta) -> None:
    table: Sequence[Series] = metric.family.series_table()
    deltas: Iterable[Any] = metric.numbers_as_taken()
    if metric.width:
        deltas = zip(map(metric.bucket_counts, range(len(metric.indexes))), deltas)
    for index, delta in zip(metric.indexes, deltas):
        table[index].give_back_delta(delta)


class Snapshot(NamedTuple):
    """Everything recorded since the last collect, as deltas: bodies are built from it
    (:func:`impactagent.build_payloads`), and it is restored if they are not delivered."""

    start: datetime
    stop: datetime
    toggles: dict[str, ToggleDelta]
    metrics: tuple[MetricDelta, ...]

    @property
    def is_empty(self) -> bool:
        return not self.toggles and not self.metrics
