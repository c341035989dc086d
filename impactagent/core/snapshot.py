"""What one collect hands to delivery: a flag window and the impact-metric deltas.

A metric's deltas are kept in columns, not as one object per series: the positions of the
series that changed, their numbers, and histograms' bucket counts (flat), each an
``array.array`` of machine numbers. A collect of 100,000 series then allocates a handful
of objects the cyclic garbage collector knows about, and none of them holds 100,000
references: a young collection walks every item of every young list (a list is one
tracked object, but the collector visits each reference in it), while an ``array`` is not
tracked at all and holds no references (measured in benchmarks/README.md). Series are
named by their position in the family's append-only :meth:`~MetricFamily.series_table`,
which the family keeps alive anyway.

A column falls back to a plain list when a number does not fit its machine type (a
histogram bucket count beyond 2**63, which ``add_counts()`` allows): exact first, fast
when it can be.
"""

from __future__ import annotations

from array import array
from datetime import datetime
from itertools import islice
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ._family import MetricFamily, Series
from ._numbers import MAX_SAFE
from .counter import CounterDelta
from .flags import ToggleDelta
from .gauge import GaugeValue
from .histogram import Histogram, HistogramDelta


class MetricDelta(NamedTuple):
    """The deltas of one metric in a snapshot, as columns (series with nothing new are
    left out).

    ``indexes[i]`` is the position of a series that changed in the family's
    :meth:`series_table` and ``numbers[i]`` its number: a counter's increment (``array('q')``:
    a collect takes at most 2**53 - 1 at a time), a histogram's sum for the window
    (``array('d')``), a gauge's value (``array('d')``, with ``ints[i]`` 1 where the value
    set was an int: every gauge value is within +/-(2**53 - 1), where a float holds an int
    exactly, and an int must still be sent as ``5``, not ``5.0``). A histogram's bucket
    counts (each bucket alone, ``+Inf`` last) are in ``counts``, ``width`` per series:
    series ``i``'s are ``counts[i * width:(i + 1) * width]``. :attr:`children`,
    :attr:`values` and :attr:`samples` give the same as Python objects, built when asked.
    """

    family: MetricFamily[Any]  # a Counter, Gauge or Histogram
    indexes: Sequence[int]
    numbers: Sequence[Any]
    counts: Sequence[int] = ()
    ints: Sequence[int] = ()  # gauges with an array of numbers: 1 where the value is an int

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def width(self) -> int:
        """Bucket counts per series (histograms; 0 for other kinds)."""
        family = self.family
        return len(family.buckets) + 1 if isinstance(family, Histogram) else 0

    @property
    def children(self) -> List[Any]:
        """The series that changed, in order (a list built when asked)."""
        table = self.family.series_table()
        return [table[index] for index in self.indexes]

    @property
    def values(self) -> List[Any]:
        """Each series' number as it was taken (an int stays an int), built when asked."""
        ints = self.ints
        if not ints:
            return list(self.numbers)
        return [int(number) if is_int else number for number, is_int in zip(self.numbers, ints)]

    def value(self, index: int) -> Any:
        """Series ``index``'s number (see :attr:`values`)."""
        number = self.numbers[index]
        return int(number) if self.ints and self.ints[index] else number

    def bucket_counts(self, index: int) -> Tuple[int, ...]:
        """Series ``index``'s bucket counts (a histogram's), each bucket alone."""
        width = self.width
        return tuple(self.counts[index * width:(index + 1) * width])

    def delta(self, index: int) -> Any:
        """Series ``index``'s delta as its ``take_delta()`` returned it, to give back."""
        if self.family.kind == "histogram":
            return self.bucket_counts(index), self.numbers[index]
        return self.value(index)

    def events(self, index: int) -> int:
        """The recorded events series ``index`` carries: a counter's increment, a
        histogram's observations, one for a gauge value."""
        kind = self.family.kind
        if kind == "counter":
            return int(self.numbers[index])
        if kind == "histogram":
            return sum(self.bucket_counts(index))
        return 1

    @property
    def samples(self) -> Tuple[Any, ...]:
        """One ``CounterDelta``, ``GaugeValue`` or ``HistogramDelta`` per series (built
        when asked: the collect itself makes none)."""
        kind = self.family.kind
        children = self.children
        if kind == "histogram":
            return tuple(HistogramDelta(child, self.bucket_counts(i), self.numbers[i])
                         for i, child in enumerate(children))
        sample = CounterDelta if kind == "counter" else GaugeValue
        return tuple(sample(child, value) for child, value in zip(children, self.values))

    def subset(self, indexes: Iterable[int]) -> MetricDelta:
        """The deltas of the series at ``indexes`` only (part of a snapshot, for a body)."""
        picked = list(indexes)
        positions = array("q", [self.indexes[i] for i in picked])
        numbers = _like(self.numbers, [self.numbers[i] for i in picked])
        ints = bytes([self.ints[i] for i in picked]) if self.ints else b""
        if self.family.kind != "histogram":
            return MetricDelta(self.family, positions, numbers, (), ints)
        width = self.width
        counts = _like(self.counts, [n for i in picked
                                     for n in self.counts[i * width:(i + 1) * width]])
        return MetricDelta(self.family, positions, numbers, counts)


def _like(column: Sequence[Any], items: List[Any]) -> Sequence[Any]:
    """``items`` in a column of the same kind as ``column`` (an array of its type, or a list)."""
    return array(column.typecode, items) if isinstance(column, array) else items


def take_family(family: MetricFamily[Any]) -> Optional[MetricDelta]:
    """Take the delta of every series of ``family`` since the last take, as one
    :class:`MetricDelta` (``None`` when no series changed); callers serialise takes.

    Series are visited in order up to the table's length when the take starts (``islice``:
    no copy of the list): one created meanwhile is taken next time, as a copy would have
    left it.
    """
    table = family.series_table()
    kind = family.kind
    if kind == "counter":
        return _take_counters(family, table)
    if kind == "gauge":
        return _take_gauges(family, table)
    return _take_histograms(family, table)


def _take_counters(family: MetricFamily[Any], table: Sequence[Series]) -> Optional[MetricDelta]:
    indexes = array("q")
    numbers = array("q")  # a counter's delta is an int in 1..2**53 - 1 (take_delta's cap)
    add_index, add_number = indexes.append, numbers.append
    for index, child in enumerate(islice(table, len(table))):
        value = child.take_delta()
        if value is not None:
            add_index(index)
            add_number(value)
    return MetricDelta(family, indexes, numbers) if indexes else None


def _take_gauges(family: MetricFamily[Any], table: Sequence[Series]) -> Optional[MetricDelta]:
    indexes = array("q")
    numbers: Any = array("d")
    ints: Any = bytearray()
    for index, child in enumerate(islice(table, len(table))):
        value = child.take_delta()
        if value is None:
            continue
        indexes.append(index)
        if ints is None:  # a list already (see below)
            numbers.append(value)
        elif value.__class__ is float:
            numbers.append(value)
            ints.append(0)
        elif value.__class__ is int and -MAX_SAFE <= value <= MAX_SAFE:  # exact as a float
            numbers.append(value)
            ints.append(1)
        else:  # not expected (set() and inc() keep the range): keep it exact in a list
            numbers = [int(n) if i else n for n, i in zip(numbers, ints)] + [value]
            ints = None
    if not indexes:
        return None
    return MetricDelta(family, indexes, numbers, (), bytes(ints) if ints is not None else b"")


def _take_histograms(family: MetricFamily[Any], table: Sequence[Series]) -> Optional[MetricDelta]:
    indexes = array("q")
    sums = array("d")  # a window's sum is a float (it starts at 0.0)
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
            del counts[before:]  # the counts of this series that did fit
            counts = counts.tolist()
            counts.extend(taken[0])
        sums.append(taken[1])
    return MetricDelta(family, indexes, sums, counts) if indexes else None


def give_back_family(metric: MetricDelta) -> None:
    """Merge each series' delta in ``metric`` back into that series."""
    table = metric.family.series_table()
    for i, index in enumerate(metric.indexes):
        table[index].give_back_delta(metric.delta(i))


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
