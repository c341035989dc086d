"""What one collect hands to delivery: a flag window and the impact-metric deltas.

A metric's deltas are columns (``array.array``): the positions of the changed series in the
family's :meth:`~MetricFamily.series_table`, their numbers and bucket counts. An array is
one object for the garbage collector, not one per series; a column falls back to a list
when a number does not fit its machine type."""

from __future__ import annotations

from array import array
from datetime import datetime
from itertools import islice
from typing import Any, Iterable, NamedTuple, Sequence, Union

from ._family import MetricFamily, Series
from ._numbers import MAX_SAFE, Number
from .counter import Counter, CounterChild, CounterDelta
from .flags import ToggleDelta
from .gauge import Gauge, GaugeChild, GaugeValue
from .histogram import Histogram, HistogramChild, HistogramDelta

Family = Union[Counter, Gauge, Histogram]
Child = Union[CounterChild, GaugeChild, HistogramChild]
#: What one series' ``take_delta()`` returned.
Delta = Union[Number, tuple[tuple[int, ...], float]]
Sample = Union[CounterDelta, GaugeValue, HistogramDelta]


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
    ints: Sequence[int] = ()  # gauges with an array of numbers: 1 where the value is an int

    @property
    def name(self) -> str:
        return self.family.name

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

    def delta(self, index: int) -> Delta:
        """Series ``index``'s delta as its ``take_delta()`` returned it."""
        if self.family.kind == "histogram":
            return self.bucket_counts(index), self.numbers[index]
        number = self.numbers[index]
        return int(number) if self.ints and self.ints[index] else number

    @property
    def samples(self) -> tuple[Sample, ...]:
        """One ``CounterDelta``, ``GaugeValue`` or ``HistogramDelta`` per series."""
        family = self.family
        if isinstance(family, Histogram):
            series = family.series_table()
            return tuple(HistogramDelta(series[position], self.bucket_counts(i), self.numbers[i])
                         for i, position in enumerate(self.indexes))
        if isinstance(family, Counter):
            counters = family.series_table()
            return tuple(CounterDelta(counters[position], int(value))
                         for position, value in zip(self.indexes, self.numbers))
        gauges = family.series_table()
        return tuple(GaugeValue(gauges[position], value)
                     for position, value in zip(self.indexes, self.values))

    def subset(self, indexes: Sequence[int]) -> MetricDelta:
        """The deltas of the series at ``indexes`` (increasing) only."""
        if not indexes or indexes[-1] - indexes[0] != len(indexes) - 1:
            return self._picked(indexes)
        start, stop = indexes[0], indexes[-1] + 1
        width = self.width
        return MetricDelta(self.family, self.indexes[start:stop], self.numbers[start:stop],
                           self.counts[start * width:stop * width] if width else (),
                           self.ints[start:stop])

    def _picked(self, picked: Sequence[int]) -> MetricDelta:
        positions = array("q", [self.indexes[i] for i in picked])
        numbers = _like(self.numbers, [self.numbers[i] for i in picked])
        ints = bytes([self.ints[i] for i in picked]) if self.ints else b""
        if self.family.kind != "histogram":
            return MetricDelta(self.family, positions, numbers, (), ints)
        width = self.width
        counts = _like(self.counts, [n for i in picked
                                     for n in self.counts[i * width:(i + 1) * width]])
        return MetricDelta(self.family, positions, numbers, counts)


def _like(column: Sequence[Any], items: list[Any]) -> Sequence[Any]:
    return array(column.typecode, items) if isinstance(column, array) else items


def take_family(family: MetricFamily[Any]) -> MetricDelta | None:
    """Every series' delta since the last take, or ``None``; callers serialise takes."""
    if isinstance(family, Counter):
        return _take_counters(family)
    if isinstance(family, Gauge):
        return _take_gauges(family)
    if isinstance(family, Histogram):
        return _take_histograms(family)
    raise TypeError(f"a metric family is a Counter, Gauge or Histogram, not {family!r}")


def _take_counters(family: Counter) -> MetricDelta | None:
    table = family.series_table()
    indexes = array("q")
    numbers = array("q")
    add_index, add_number = indexes.append, numbers.append
    for index, child in enumerate(islice(table, len(table))):
        value = child.take_delta()
        if value is not None:
            add_index(index)
            add_number(value)
    return MetricDelta(family, indexes, numbers) if indexes else None


def _take_gauges(family: Gauge) -> MetricDelta | None:
    table = family.series_table()
    indexes = array("q")
    numbers: Any = array("d")
    ints: Any = bytearray()
    for index, child in enumerate(islice(table, len(table))):
        value = child.take_delta()
        if value is None:
            continue
        indexes.append(index)
        if ints is None:
            numbers.append(value)
        elif value.__class__ is float:
            numbers.append(value)
            ints.append(0)
        elif value.__class__ is int and -MAX_SAFE <= value <= MAX_SAFE:  # exact as a float
            numbers.append(value)
            ints.append(1)
        else:  # out of the range set() and inc() keep: exact, in a list
            numbers = [int(n) if i else n for n, i in zip(numbers, ints)] + [value]
            ints = None
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
    for i, index in enumerate(metric.indexes):
        table[index].give_back_delta(metric.delta(i))


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
