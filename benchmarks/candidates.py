"""Candidate designs for the recording hot path, timed side by side (issues 16 and 25).

    python -m benchmarks.candidates [--quick]

Each row times one way of recording against prometheus_client doing the same work, in one
process and in alternation (:mod:`benchmarks.timing`). The candidates are minimal classes
written here, shaped like the real series (``__slots__``, a family reference, the exact-class
checks the real methods make), so a row measures the design, not the rest of the library:

- counters: today's ``with lock: value += amount``; an ``itertools.count`` advanced by a C
  call for ``inc()`` of 1 (through a stored bound ``__next__`` or through ``next()``), the
  lock only for other amounts; a plain ``+=`` with no lock (the unsafe floor, for scale);
- gauges: today's ``set()`` under the lock; two plain stores (value, then a change mark);
  a plain store of a fresh one-element cell that ``inc()`` changes in place under a lock;
- a ``with`` block against ``acquire()``/``release()``, and a bound ``itertools.count``
  called directly (the interpreter's floor for a call that changes a number);
- issue 25: a counter series that *is* its ``itertools.count``; a gauge whose ``set()``
  stores into a one-entry dict (``inc()`` by ``pop()``/``setdefault()``), with ``inc()``
  rows for it and the cell; ``labels()`` with three keywords keyed by a tuple of the
  names and values or by one ``itemgetter`` call; ``@agent.flag``'s wrapper forms
  (``*args, **kwargs``, ``*args`` alone, the function's own parameters) against
  ``record_flag`` alone.

Memory per series of each counter candidate is measured with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import operator
import threading
import tracemalloc
from typing import Any, Dict, List

import prometheus_client

import impactagent
from benchmarks.timing import Case, Peer, peer_table, time_case, warm
from impactagent.core.flag_decorator import evaluation

_ONE = 1


class _Family:
    name = "c"


class LockedCounter:
    """Today's design: every increment under a (striped) lock."""

    __slots__ = ("_family", "_lock", "_sent", "_value", "label_values")

    def __init__(self, family: Any, lock: Any) -> None:
        self._family, self._lock, self._value, self._sent = family, lock, 0, 0
        self.label_values = ("/cart",)

    def inc(self, amount: int = 1) -> None:
        if amount.__class__ is not int or amount < 0 or amount > 9007199254740991:
            raise TypeError(amount)
        with self._lock:
            self._value += amount


class TickCounter:
    """``inc()`` of 1 advances an ``itertools.count`` through its stored bound ``__next__``:
    one C call, atomic under the GIL. Other amounts go to a locked int."""

    __slots__ = ("_extra", "_family", "_lock", "_reads", "_sent", "_tick", "label_values")

    def __init__(self, family: Any, lock: Any) -> None:
        self._family, self._lock = family, lock
        self._tick = itertools.count().__next__
        self._extra = self._reads = self._sent = 0
        self.label_values = ("/cart",)

    def inc(self, amount: int = 1) -> None:
        if amount is _ONE:
            self._tick()
            return
        if amount.__class__ is not int or amount < 0 or amount > 9007199254740991:
            raise TypeError(amount)
        with self._lock:
            self._extra += amount


class NextCounter:
    """As :class:`TickCounter`, holding the ``count`` itself and calling ``next()`` on it
    (one object less per series, one builtin lookup more per call)."""

    __slots__ = ("_extra", "_family", "_lock", "_reads", "_sent", "_ticks", "label_values")

    def __init__(self, family: Any, lock: Any) -> None:
        self._family, self._lock = family, lock
        self._ticks = itertools.count()
        self._extra = self._reads = self._sent = 0
        self.label_values = ("/cart",)

    def inc(self, amount: int = 1) -> None:
        if amount is _ONE:
            next(self._ticks)
            return
        if amount.__class__ is not int or amount < 0 or amount > 9007199254740991:
            raise TypeError(amount)
        with self._lock:
            self._extra += amount


class PlainCounter:
    """No lock at all: ``+=`` on an attribute (loses counts under threads; the floor)."""

    __slots__ = ("_family", "_value", "label_values")

    def __init__(self, family: Any, lock: Any) -> None:
        self._family, self._value = family, 0
        self.label_values = ("/cart",)

    def inc(self, amount: int = 1) -> None:
        if amount.__class__ is not int or amount < 0 or amount > 9007199254740991:
            raise TypeError(amount)
        self._value += amount


class LockedGauge:
    """Today's ``set()``: value and change mark stored under the series lock."""

    __slots__ = ("_dirty", "_family", "_lock", "_value")

    def __init__(self, lock: Any) -> None:
        self._lock, self._value, self._dirty = lock, None, False

    def set(self, value: Any) -> None:
        if value.__class__ is float:
            if not -9007199254740991.0 <= value <= 9007199254740991.0:
                return
        elif value.__class__ is not int or not -9007199254740991 <= value <= 9007199254740991:
            return
        with self._lock:
            self._value = value
            self._dirty = True


class StoreGauge:
    """Two plain stores: the value, then the change mark (each one atomic)."""

    __slots__ = ("_dirty", "_family", "_lock", "_value")

    def __init__(self, lock: Any) -> None:
        self._lock, self._value, self._dirty = lock, None, False

    def set(self, value: Any) -> None:
        if value.__class__ is float:
            if not -9007199254740991.0 <= value <= 9007199254740991.0:
                return
        elif value.__class__ is not int or not -9007199254740991 <= value <= 9007199254740991:
            return
        self._value = value
        self._dirty = True


class CellGauge:
    """One plain store of a fresh one-element list; ``inc()`` changes the current list in
    place under the lock, so a racing ``set()`` replaces the list and is never undone."""

    __slots__ = ("_cell", "_family", "_lock")

    def __init__(self, lock: Any) -> None:
        self._lock, self._cell = lock, [None]

    def set(self, value: Any) -> None:
        if value.__class__ is float:
            if not -9007199254740991.0 <= value <= 9007199254740991.0:
                return
        elif value.__class__ is not int or not -9007199254740991 <= value <= 9007199254740991:
            return
        self._cell = [value]


class CountCounter(itertools.count):
    """The series *is* the ``itertools.count`` (a subclass with the series' slots): one
    object per series instead of a series holding a count (issue 25)."""

    __slots__ = ("_adjust", "_family", "_lock", "_sent", "label_values")

    def __new__(cls, family: Any, lock: Any) -> CountCounter:
        self = super().__new__(cls)
        self._family, self._lock = family, lock
        self._adjust = self._sent = 0
        self.label_values = ("/cart",)
        return self

    def inc(self, amount: int = 1) -> None:
        if amount is _ONE:
            next(self)
            return
        if amount.__class__ is not int or amount < 0 or amount > 9007199254740991:
            raise TypeError(amount)
        with self._lock:
            self._adjust += amount


_UNSET = object()


class SlotGauge:
    """``set()`` is one store into a one-entry dict (no allocation); ``inc()`` takes the
    value out with ``pop()`` and puts the sum back with ``setdefault()`` under the lock, so
    a racing ``set()`` wins (issue 25: set -10-25 ns, inc +40-70 ns; not kept)."""

    __slots__ = ("_family", "_last", "_lock", "_slot")

    def __init__(self, lock: Any) -> None:
        self._lock, self._slot, self._last = lock, {}, None

    def set(self, value: Any) -> None:
        if value.__class__ is float:
            if not -9007199254740991.0 <= value <= 9007199254740991.0:
                return
        elif value.__class__ is not int or not -9007199254740991 <= value <= 9007199254740991:
            return
        self._slot[0] = value

    def inc(self, amount: Any = 1) -> None:
        slot = self._slot
        with self._lock:
            value = slot.pop(0, _UNSET)
            base = self._last if value is _UNSET else value
            new = amount if base is None else base + amount
            if -9007199254740991.0 <= new <= 9007199254740991.0:
                slot.setdefault(0, new)


class CellGaugeInc(CellGauge):
    """:class:`CellGauge` with today's ``inc()``: the current cell changed in place."""

    __slots__ = ("_dirty",)

    def inc(self, amount: Any = 1) -> None:
        with self._lock:
            cell = self._cell
            value = cell[0]
            value = amount if value is None else value + amount
            if -9007199254740991.0 <= value <= 9007199254740991.0:
                cell[0] = value
                self._dirty = True


class TupleKeyFamily:
    """``labels(**kw)`` as it was: the tuple of names compared with the family's, then the
    tuple of values as the key (calls in another order miss and take the slow path)."""

    __slots__ = ("_lookup", "_names")

    def __init__(self, names: Any, child: Any) -> None:
        self._names, self._lookup = tuple(names), {("GET", "/cart", "2xx"): child}

    def labels(self, **kwvalues: Any) -> Any:
        if tuple(kwvalues) != self._names:
            raise ValueError(kwvalues)
        return self._lookup[tuple(kwvalues.values())]


class ItemgetterFamily(TupleKeyFamily):
    """``labels(**kw)`` kept: one ``itemgetter`` call makes the key in the family's order
    (a missing name raises KeyError), after a check of the number of keywords."""

    __slots__ = ("_count", "_key")

    def __init__(self, names: Any, child: Any) -> None:
        super().__init__(names, child)
        self._count, self._key = len(names), operator.itemgetter(*names)

    def labels(self, **kwvalues: Any) -> Any:
        if len(kwvalues) != self._count:
            raise ValueError(kwvalues)
        return self._lookup[self._key(kwvalues)]


def decorators(record: Any) -> Dict[str, Any]:
    """``@agent.flag``'s wrapper forms around one function, each counting through
    ``record`` (the flag counts' own method)."""

    def decide(user: str) -> bool:
        return user == "beta"

    # The same body as @agent.flag's wrapper: a bool is counted without evaluation().
    def star_args_kwargs(*args: Any, **kwargs: Any) -> Any:
        result = decide(*args, **kwargs)
        if result is True or result is False:
            record("f1", result)
        else:
            record("f1", *evaluation(result))
        return result

    def star_args(*args: Any) -> Any:  # refuses keywords: not a candidate, a measure
        result = decide(*args)
        if result is True or result is False:
            record("f2", result)
        else:
            record("f2", *evaluation(result))
        return result

    own = impactagent.Agent(app_name="candidates").flag("f3")(decide)
    return {"bare function": decide, "*args, **kwargs wrapper": star_args_kwargs,
            "*args wrapper (refuses keywords)": star_args,
            "own parameters (kept: @agent.flag)": own}


COUNTERS = {"series is its own itertools.count (kept)": CountCounter,
            "locked (issue 16)": LockedCounter, "itertools.count, bound __next__": TickCounter,
            "itertools.count, next() (issue 16's)": NextCounter,
            "plain += (no lock, unsafe)": PlainCounter}
GAUGES = {"locked": LockedGauge, "two plain stores (unsafe with inc())": StoreGauge,
          "fresh cell (kept)": CellGauge, "one-entry dict slot": SlotGauge}


def cases() -> List[Case]:
    registry = prometheus_client.CollectorRegistry()
    prom_child = prometheus_client.Counter("c", "h", ["route"], registry=registry).labels("/x")
    prom_gauge = prometheus_client.Gauge("g", "h", registry=registry)
    lock = threading.Lock()
    rows = []
    for label, cls in COUNTERS.items():
        names = {"child": cls(_Family(), lock), "prom": prom_child}
        rows.append(Case(f"counter inc(): {label}", "child.inc()",
                         (Peer("prometheus_client", "prom.inc()", 0.35),), names))
    for label, gcls in GAUGES.items():
        names = {"gauge": gcls(lock), "prom": prom_gauge}
        rows.append(Case(f"gauge set(12.5): {label}", "gauge.set(12.5)",
                         (Peer("prometheus_client", "prom.set(12.5)", 0.4),), names))
    prom_inc = prometheus_client.Gauge("gi", "h", registry=registry)
    for label, igcls in {"fresh cell, inc() in place (kept)": CellGaugeInc,
                         "one-entry dict slot, pop + setdefault": SlotGauge}.items():
        names = {"gauge": igcls(lock), "prom": prom_inc}
        names["gauge"].set(1.5)
        rows.append(Case(f"gauge inc(): {label}", "gauge.inc()",
                         (Peer("prometheus_client", "prom.inc()"),), names))
    three = ("method", "route", "status")
    prom3 = prometheus_client.Counter("c3", "h", three, registry=registry)
    series = CountCounter(_Family(), lock)
    for label, fcls in {"tuple of names compared, tuple of values": TupleKeyFamily,
                        "itemgetter key (kept)": ItemgetterFamily}.items():
        names = {"family": fcls(three, series), "prom": prom3}
        rows.append(Case(f"labels(3 keywords).inc(): {label}",
                         'family.labels(method="GET", route="/cart", status="2xx").inc()',
                         (Peer("prometheus_client", 'prom.labels(method="GET", route="/cart", '
                               'status="2xx").inc()'),), names))
    agent = impactagent.Agent(app_name="candidates")
    wrappers = decorators(agent.recorder.flags.record)
    for label, func in wrappers.items():
        names = {"func": func, "agent": agent}
        rows.append(Case(f"flag function call: {label}", 'func("ann")',
                         (Peer("record_flag alone", 'agent.record_flag("f4", False)'),), names))
    floor = {"lock": lock, "tick": itertools.count().__next__, "d": {"k": 0}}
    rows += [
        Case("floor: with lock: d['k'] += 1", "with lock: d['k'] += 1", (), floor),
        Case("floor: lock.acquire(); d['k'] += 1; lock.release()",
             "lock.acquire(); d['k'] += 1; lock.release()", (), floor),
        Case("floor: bound itertools.count().__next__()", "tick()", (), floor),
    ]
    for case in rows:
        warm(case)
    return rows


def memory_per_series(cls: Any, n: int = 10_000) -> float:
    """Bytes per series of ``n`` counter candidates kept in a dict by key, as a family does."""
    keys = [(f"/route/{i}",) for i in range(n)]
    lock = threading.Lock()
    family = _Family()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    lookup: Dict[Any, Any] = {}
    series = []
    for key in keys:
        child = cls(family, lock)
        child.label_values = key
        lookup[key] = child
        series.append(child)
        child.inc()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / n


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.candidates",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeat, seconds = (5, 0.02) if args.quick else (9, 0.1)
    print(peer_table([time_case(case, repeat, seconds) for case in cases()]))
    print()
    print("| counter candidate | bytes per series (10,000 in a dict and a list) |")
    print("|---|---|")
    for label, cls in COUNTERS.items():
        print(f"| {label} | {memory_per_series(cls):.0f} B |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
