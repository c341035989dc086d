"""Gauges: a value that goes up and down; Unleash keeps the last value sent."""

from __future__ import annotations

import threading

from ._family import InContext, MetricFamily
from ._numbers import MAX_SAFE_FLOAT, Number


class GaugeChild:
    """One series of a gauge (from :meth:`Gauge.labels`; keep it), sent when it changed.

    The value lives in a one-element list, the *cell*: ``set()`` stores a fresh cell without a
    lock (one atomic store), ``inc()`` changes the current one in place under the lock, so it
    never lands as a stale sum over a newer set.
    """

    __slots__ = ("_cell", "_dirty", "_lock", "_taken", "family", "label_values")

    def __init__(self, family: Gauge, label_values: tuple[str, ...], lock: threading.Lock):
        self.family = family
        self._lock = lock
        self._cell: list[Number | None] = [None]
        self._dirty = False  # changed in place since the last collect
        self._taken: list[Number | None] | None = None  # the cell the last collect read
        self.label_values = label_values

    def set(self, value: Number) -> None:
        """Set the gauge to ``value`` (a finite number within ``+/-(2**53 - 1)``)."""
        # The safe range written out, against a constant of the value's type; NaN fails it.
        if value.__class__ is float:
            if not -(2.0**53 - 1) <= value <= (2.0**53 - 1):
                self.family.rules.drop_value(value, "unsafe_value")
                return
        elif value.__class__ is not int or not -(2**53 - 1) <= value <= (2**53 - 1):
            value = self.family.rules.number(value, "set()")
            if not -MAX_SAFE_FLOAT <= value <= MAX_SAFE_FLOAT:
                self.family.rules.drop_value(value, "unsafe_value")
                return
        self._cell = [value]

    def inc(self, amount: Number = 1) -> None:
        """Add ``amount`` (default 1) to the gauge."""
        if amount.__class__ is not int and amount.__class__ is not float:
            amount = self.family.rules.number(amount, "inc()")
        try:
            with self._lock:  # no call inside: int and float arithmetic calls no Python code
                cell = self._cell
                value = cell[0]
                value = amount if value is None else value + amount
                if (-(2**53 - 1) <= value <= (2**53 - 1) if value.__class__ is int
                        else -(2.0**53 - 1) <= value <= (2.0**53 - 1)):
                    cell[0] = value  # in place: a set() since replaced the cell and wins
                    self._dirty = True
                    return
        except OverflowError:  # an int too large for a float, added to a float
            value = amount
        self.family.rules.drop_value(value, "unsafe_value")

    def dec(self, amount: Number = 1) -> None:
        """Subtract ``amount`` (default 1) from the gauge."""
        if amount.__class__ is not int and amount.__class__ is not float:
            amount = self.family.rules.number(amount, "dec()")
        self.inc(-amount)

    @property
    def value(self) -> Number | None:
        """The last value set, or ``None``."""
        return self._cell[0]

    def take_delta(self) -> Number | None:
        with self._lock:  # no inc() between reading the mark and clearing it
            changed = self._dirty
            self._dirty = False
            cell = self._cell
            value = cell[0]
        if cell is self._taken and not changed:
            return None
        self._taken = cell
        return value  # None for a gauge never set: nothing to send

    def give_back_delta(self, value: Number) -> None:
        # What it holds now is at least as new as what failed: it goes out.
        self._dirty = True

    def pending_events(self) -> int:
        cell = self._cell
        return 1 if self._dirty or (cell is not self._taken and cell[0] is not None) else 0

    def reset_after_fork(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._cell = [None]
        self._dirty = False
        self._taken = None

    def __repr__(self) -> str:
        return f"<GaugeChild {self.family.name}{self.label_values} value={self.value}>"


class _DroppedGaugeChild(GaugeChild):
    """Past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def set(self, value: Number) -> None:
        self.family.rules.drop_past_limit(value, "set()")

    def inc(self, amount: Number = 1) -> None:
        self.family.rules.drop_past_limit(amount, "inc()")


class Gauge(MetricFamily[GaugeChild]):
    """A value that can go up and down, such as a queue depth or a pool size.

    >>> depth = Gauge("queue_depth", "Jobs waiting")
    >>> depth.set(12.5); depth.inc(); depth.dec(0.5)
    >>> depth.value
    13.0
    """

    kind = "gauge"
    _series_class = GaugeChild
    _dropped_class = _DroppedGaugeChild
    _target: GaugeChild | InContext

    @property
    def value(self) -> Number | None:
        """The last value set on an unlabelled gauge."""
        return self._require_default().value

    def set(self, value: Number) -> None:
        """Set an unlabelled gauge (or a gauge labelled by flags only)."""
        child = self._default
        # As GaugeChild.set() stores it, without a second call; anything else goes there.
        if (child is not None and (value.__class__ is float or value.__class__ is int)
                and -(2.0**53 - 1) <= value <= (2.0**53 - 1)):
            child._cell = [value]
            return
        self._target.set(value)

    def inc(self, amount: Number = 1) -> None:
        """Add to an unlabelled gauge."""
        self._target.inc(amount)

    def dec(self, amount: Number = 1) -> None:
        """Subtract from an unlabelled gauge."""
        self._target.dec(amount)
