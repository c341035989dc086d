"""Gauges: a value that goes up and down; Unleash keeps the last value sent."""

from __future__ import annotations

import threading
from typing import NamedTuple, Optional, Tuple, Union

from ._family import MetricFamily

_INF = float("inf")
_NEG_INF = -_INF

Number = Union[int, float]


class GaugeValue(NamedTuple):
    """The value of one gauge series to send: the last one set."""

    child: GaugeChild
    value: float


class GaugeChild:
    """One series of a gauge. Get it from :meth:`Gauge.labels` and keep it.

    A gauge series is sent when it was set since the last successful send; an idle gauge
    costs nothing on the wire. NaN and infinities are dropped and counted, never sent.
    """

    __slots__ = ("_dirty", "_family", "_lock", "_value", "label_values")

    def __init__(self, family: Gauge, label_values: Tuple[str, ...], lock: threading.Lock):
        self._family = family
        self._lock = lock
        self._value: Optional[Number] = None
        self._dirty = False  # set since the last collect
        self.label_values = label_values

    def set(self, value: Number) -> None:
        """Set the gauge to ``value`` (a finite number)."""
        try:
            finite = _NEG_INF < value < _INF
        except TypeError:
            raise TypeError(
                f"gauge {self._family.name!r}: set() takes a number, got {type(value).__name__}"
            ) from None
        if not finite:
            self._family._drop("non_finite_value")
            return
        # Under the lock so a racing inc() cannot overwrite this value with a stale sum.
        # Value first, flag second; the collector clears the flag first, then reads the value,
        # so a racing set() is either in this window or flagged for the next one: never lost.
        with self._lock:  # no call inside: see CounterChild.inc
            self._value = value
            self._dirty = True

    def inc(self, amount: Number = 1) -> None:
        """Add ``amount`` (default 1) to the gauge."""
        if not self._family._accept_number(amount, "inc()/dec()"):
            return
        with self._lock:
            value = self._value
            self._value = amount if value is None else value + amount
            self._dirty = True

    def dec(self, amount: Number = 1) -> None:
        """Subtract ``amount`` (default 1) from the gauge."""
        self.inc(-amount)

    @property
    def value(self) -> Optional[Number]:
        """The last value set, or ``None`` if the gauge was never set."""
        return self._value

    def _take(self) -> GaugeValue | None:
        if not self._dirty:
            return None
        self._dirty = False
        value = self._value
        if value is None:
            return None
        return GaugeValue(self, value)

    def _give_back(self, sample: GaugeValue) -> None:
        # Whatever the gauge holds now is at least as new as what failed to send; flag it so
        # it goes out next time, without overwriting a value set after the collect.
        self._dirty = True

    def _pending(self) -> int:
        return 1 if self._dirty else 0

    def _reset(self) -> None:
        self._value = None
        self._dirty = False

    def __repr__(self) -> str:
        return f"<GaugeChild {self._family.name}{self.label_values} value={self._value}>"


class _DroppedGaugeChild(GaugeChild):
    """Stands in for label sets past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def set(self, value: Number) -> None:
        if self._family._accept_number(value, "set()"):
            self._family._drop("cardinality_limit")

    def inc(self, amount: Number = 1) -> None:
        if self._family._accept_number(amount, "inc()/dec()"):
            self._family._drop("cardinality_limit")


class Gauge(MetricFamily[GaugeChild]):
    """A value that can go up and down, such as a queue depth or a pool size.

    >>> depth = Gauge("queue_depth", "Jobs waiting")
    >>> depth.set(12.5); depth.inc(); depth.dec(0.5)
    >>> depth.value
    13.0
    """

    kind = "gauge"

    def _new_child(self, label_values: Tuple[str, ...], lock: threading.Lock) -> GaugeChild:
        return GaugeChild(self, label_values, lock)

    def _new_overflow_child(self) -> GaugeChild:
        return _DroppedGaugeChild(self, ("<dropped>",) * len(self.label_names), self._locks[0])

    def _bind_default(self, child: GaugeChild) -> None:
        self.set = child.set  # type: ignore[method-assign]
        self.inc = child.inc  # type: ignore[method-assign]
        self.dec = child.dec  # type: ignore[method-assign]

    def _bind_in_flag_context(self) -> None:
        labels = self.labels
        self.set = lambda value: labels().set(value)  # type: ignore[method-assign]
        self.inc = lambda amount=1: labels().inc(amount)  # type: ignore[method-assign]
        self.dec = lambda amount=1: labels().dec(amount)  # type: ignore[method-assign]

    @property
    def value(self) -> Optional[Number]:
        """The last value set on an unlabelled gauge."""
        return self._require_default().value

    def set(self, value: Number) -> None:
        """Set an unlabelled gauge."""
        self._require_default()

    def inc(self, amount: Number = 1) -> None:
        """Add to an unlabelled gauge."""
        self._require_default()

    def dec(self, amount: Number = 1) -> None:
        """Subtract from an unlabelled gauge."""
        self._require_default()
