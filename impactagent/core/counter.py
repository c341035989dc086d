"""Counters: integers that only go up, sent as deltas; an ``inc()`` above ``2**53 - 1`` (the
most the server takes) is refused, and a window's increments past it wait for the next collect.
"""

from __future__ import annotations

import itertools
import operator
import threading
from typing import TYPE_CHECKING, Any, NoReturn, cast

from ._family import ExceptionCounter, ExceptionTypes, InContext, MetricFamily
from ._gil import ATOMIC_C_CALLS
from ._numbers import MAX_SAFE

#: What ``inc()`` counts with one ``next()`` and no lock: the int 1 where that call is
#: atomic (see _gil), else an object no caller holds, so every increment takes the lock.
_LOCK_FREE_ONE: object = 1 if ATOMIC_C_CALLS else object()

if TYPE_CHECKING:
    _Count = itertools.count[int]
else:
    _Count = itertools.count


def _checked_increment(metric: str, amount: Any) -> int:
    takes = f"counter {metric!r}: inc() takes a non-negative int, got"
    if isinstance(amount, (bool, float)):
        raise TypeError(f"{takes} {amount!r}; a counter counts events, use a gauge or "
                        "histogram for measurements")
    try:
        exact = operator.index(amount)
    except TypeError:
        raise TypeError(f"{takes} {type(amount).__name__}") from None
    if exact < 0:
        raise ValueError(f"{takes} {exact}; counters never go down, use a gauge for values "
                         "that do")
    if exact > MAX_SAFE:
        raise ValueError(f"counter {metric!r}: inc() takes at most 2**53 - 1 at a time, got "
                         f"{exact}; Unleash refuses larger values")
    return exact


class CounterChild(_Count):
    """One series of a counter. Get it from :meth:`Counter.labels` and keep it.

    The series *is* its count of increments of 1 (an ``itertools.count``); other increments
    add to ``_adjust`` under the lock. A reader advances the count once more and takes that
    read away in ``_adjust``, so every total is exact.
    """

    __slots__ = ("_adjust", "_lock", "_sent", "family", "label_values")
    family: Counter
    label_values: tuple[str, ...]
    _lock: threading.Lock
    _adjust: int
    _sent: int

    def __new__(cls, family: Counter, label_values: tuple[str, ...], lock: threading.Lock
                ) -> CounterChild:
        self = cast(CounterChild, super().__new__(cls))
        self.family = family
        self._lock = lock
        self._adjust = 0  # total = count + _adjust
        self._sent = 0  # collector-owned
        self.label_values = label_values
        return self

    def __iter__(self) -> NoReturn:
        raise TypeError("a counter series is not iterable; read .value")

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` (a non-negative int up to ``2**53 - 1``, default 1)."""
        # `is`: the int 1 itself, never True or 1.0 (refused below).
        if amount is _LOCK_FREE_ONE:
            next(self)
            return
        # The bound written out: a constant costs less than a global.
        if amount.__class__ is not int or amount < 0 or amount > (2**53 - 1):
            amount = _checked_increment(self.family.name, amount)
        # `with` and no call inside: the GIL is never handed over while the lock is held.
        with self._lock:
            self._adjust += amount

    def _total(self) -> int:
        with self._lock:
            total = next(self) + self._adjust
            self._adjust -= 1
            return total

    @property
    def value(self) -> int:
        """The cumulative count since the agent started."""
        return self._total()

    def count_exceptions(self, exception: ExceptionTypes = Exception) -> ExceptionCounter:
        """Count exceptions of type ``exception`` raised in a block or decorated function."""
        return ExceptionCounter(self.inc, exception)

    # The Series protocol, serialised by the recorder's collect lock.
    def take_delta(self) -> int | None:
        delta = self._total() - self._sent
        if not delta:
            return None
        delta = min(delta, MAX_SAFE)
        self._sent += delta
        return delta

    def give_back_delta(self, delta: int) -> None:
        self._sent -= delta

    def pending_events(self) -> int:
        return self._total() - self._sent

    def reset_after_fork(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._adjust = -(next(self) + 1)
        self._sent = 0

    def __repr__(self) -> str:
        return f"<CounterChild {self.family.name}{self.label_values} value={self._total()}>"


class _DroppedCounterChild(CounterChild):
    """Past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def inc(self, amount: int = 1) -> None:
        amount = _checked_increment(self.family.name, amount)
        self.family.rules.drop("cardinality_limit", amount)


class Counter(MetricFamily[CounterChild]):
    """A count of events, reported to Unleash as the increase since the last send.

    >>> checkouts = Counter("checkout_total", "Completed checkouts", labels=("route",))
    >>> cart = checkouts.labels(route="/cart")
    >>> cart.inc(); cart.inc(2)
    >>> cart.value
    3

    A counter without labels (or labelled by flags only) records directly.
    """

    kind = "counter"
    _series_class = CounterChild
    _dropped_class = _DroppedCounterChild
    _target: CounterChild | InContext

    @property
    def value(self) -> int:
        """The cumulative count of an unlabelled counter since the agent started."""
        return self._require_default().value

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` to an unlabelled counter (or a counter labelled by flags only)."""
        if amount is _LOCK_FREE_ONE:
            ticks = self._default
            if ticks is not None:
                next(ticks)
                return
        self._target.inc(amount)

    def count_exceptions(self, exception: ExceptionTypes = Exception) -> ExceptionCounter:
        """Count exceptions raised in a block or decorated function (unlabelled counters)."""
        return self._target.count_exceptions(exception)
