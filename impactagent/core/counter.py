"""Counters: integers that only go up, sent to Unleash as deltas since the last send.

The server takes a value up to ``2**53 - 1`` (:mod:`impactagent.core._numbers`): a single
``inc()`` above it is refused at the call; increments that add up to more in one window are
split, a collect taking at most ``2**53 - 1`` and leaving the rest pending.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
import threading
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterator,
    Literal,
    NamedTuple,
    NoReturn,
    TypeVar,
    Union,
    cast,
)

from ._family import MetricFamily
from ._gil import ATOMIC_C_CALLS
from ._numbers import MAX_SAFE

F = TypeVar("F", bound=Callable[..., Any])

#: What ``inc()`` counts by advancing the series' own count, one C call and no lock: the
#: int 1 where that call is atomic (builds with the GIL, see impactagent.core._gil), else
#: an object no caller holds, so that every increment takes the series lock.
_LOCK_FREE_ONE: object = 1 if ATOMIC_C_CALLS else object()

#: What ``count_exceptions()`` counts: an exception class or a tuple of them.
ExceptionTypes = Union[type[BaseException], tuple[type[BaseException], ...]]

if TYPE_CHECKING:
    _Count = itertools.count[int]  # generic to the type checker only
else:
    _Count = itertools.count


def _checked_increment(metric: str, amount: Any) -> int:
    """``amount`` as an exact int from 0 to ``2**53 - 1``, else a TypeError or ValueError."""
    if isinstance(amount, (bool, float)):
        raise TypeError(
            f"counter {metric!r}: inc() takes a non-negative int, got {amount!r}; "
            "a counter counts events, use a gauge or histogram for measurements"
        )
    try:
        exact = operator.index(amount)
    except TypeError:
        raise TypeError(
            f"counter {metric!r}: inc() takes a non-negative int, got {type(amount).__name__}"
        ) from None
    if exact < 0:
        raise ValueError(
            f"counter {metric!r}: inc() takes a non-negative int, got {exact}; "
            "counters never go down, use a gauge for values that do"
        )
    if exact > MAX_SAFE:
        raise ValueError(
            f"counter {metric!r}: inc() takes at most 2**53 - 1 at a time, got {exact}; "
            "Unleash refuses larger values"
        )
    return exact


class CounterDelta(NamedTuple):
    """What one counter series gained since the last successful send."""

    child: CounterChild
    value: int


class CounterChild(_Count):
    """One series of a counter. Get it from :meth:`Counter.labels` and keep it.

    The series *is* its count of increments of 1 (an ``itertools.count``: one object per
    series), advanced without a lock where that is atomic; other increments add to an int
    beside it, under the series lock. A reader, under the lock, reads the count by advancing
    it once more and takes its reads away in the int, so every total is exact.
    """

    __slots__ = ("_adjust", "_lock", "_sent", "family", "label_values")
    family: Counter
    label_values: tuple[str, ...]
    _lock: threading.Lock
    _adjust: int
    _sent: int

    def __new__(cls, family: Counter, label_values: tuple[str, ...],
                lock: threading.Lock) -> CounterChild:
        self = cast(CounterChild, super().__new__(cls))
        self.family = family
        self._lock = lock
        self._adjust = 0  # other increments less the readers' next() calls: total = count + this
        self._sent = 0  # the part of the total already handed to a collect; collector-owned
        self.label_values = label_values
        return self

    def __iter__(self) -> NoReturn:
        # A series is no sequence of numbers: iterating the count would never end.
        raise TypeError("a counter series is not iterable; read .value")

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` (a non-negative int up to ``2**53 - 1``, default 1)."""
        # `is`: the int 1 itself (CPython keeps one), never True or 1.0, which are refused
        # below; a 1 of another class (an IntEnum) takes the checked path and counts the same.
        if amount is _LOCK_FREE_ONE:
            next(self)
            return
        # The bound is written out: a constant costs less than a global.
        if amount.__class__ is not int or amount < 0 or amount > (2**53 - 1):
            amount = _checked_increment(self.family.name, amount)
        # `with`, not acquire()/release(): CPython hands the GIL over at a call, so a thread
        # could sleep holding the lock. Nothing in this `with` body makes a call.
        with self._lock:
            self._adjust += amount

    def _total(self) -> int:
        """Every increment so far (see the class docstring)."""
        with self._lock:
            # next() returns the increments of 1 plus the earlier reads, which _adjust takes
            # away; this read is one more.
            total = next(self) + self._adjust
            self._adjust -= 1
            return total

    @property
    def value(self) -> int:
        """The cumulative count since the agent started (reading it changes nothing)."""
        return self._total()

    def count_exceptions(self, exception: ExceptionTypes = Exception) -> _ExceptionCounter:
        """Count exceptions of type ``exception`` raised in a block or decorated function."""
        return _ExceptionCounter(self.inc, exception)

    # Collector side (the Series protocol): serialised by the recorder's collect lock.
    def take_delta(self) -> int | None:
        value = self._total()  # one exact read: increments after it belong to the next window
        delta = value - self._sent
        if not delta:
            return None
        # At most what the server takes in one value; the rest stays pending for the next.
        delta = min(delta, MAX_SAFE)
        self._sent += delta
        return delta

    def give_back_delta(self, delta: int) -> None:
        self._sent -= delta

    def pending_events(self) -> int:
        return self._total() - self._sent

    def reset_after_fork(self, lock: threading.Lock) -> None:
        """In a forked child: a new lock (the parent's may be held forever), nothing recorded."""
        self._lock = lock
        # The count is the series (the app may hold it): read once more and taken away.
        self._adjust = -(next(self) + 1)
        self._sent = 0

    def __repr__(self) -> str:
        return f"<CounterChild {self.family.name}{self.label_values} value={self._total()}>"


class _DroppedCounterChild(CounterChild):
    """Stands in for label sets past the series limit: validates, then counts the drop."""

    __slots__ = ()

    def inc(self, amount: int = 1) -> None:
        amount = _checked_increment(self.family.name, amount)
        self.family.rules.drop("cardinality_limit", amount)


class _CounterInContext:
    """The recording methods of a counter labelled by flags only: each call records into
    the series of the flags' states in the current context, looked up at that moment."""

    __slots__ = ("_labels",)

    def __init__(self, family: Counter) -> None:
        self._labels = family.labels

    def inc(self, amount: int = 1) -> None:
        self._labels().inc(amount)

    def count_exceptions(self, exception: ExceptionTypes = Exception) -> _ExceptionCounter:
        # The series is chosen when the exception is counted: the flag is decided inside.
        return _ExceptionCounter(self.inc, exception)


class Counter(MetricFamily[CounterChild]):
    """A count of events, reported to Unleash as the increase since the last send.

    >>> checkouts = Counter("checkout_total", "Completed checkouts", labels=("route",))
    >>> cart = checkouts.labels(route="/cart")
    >>> cart.inc(); cart.inc(2)
    >>> cart.value
    3

    A counter without labels records directly: ``Counter("jobs_total", "Jobs").inc()``, and
    so does one labelled by flags only, into the series of the flags' current states.
    """

    kind = "counter"
    _series_class = CounterChild
    _dropped_class = _DroppedCounterChild
    _in_context_class = _CounterInContext
    _target: CounterChild | _CounterInContext

    def _create_series(self, key: tuple[str, ...]) -> CounterChild:
        child = super()._create_series(key)
        if not key:
            # The family's own inc() of 1 then advances the count itself: one call, not two.
            # The series is never replaced (a fork resets it in place).
            self._ticks = child
        return child

    @property
    def value(self) -> int:
        """The cumulative count of an unlabelled counter since the agent started."""
        return self._require_default().value

    #: The only series of an unlabelled counter, else None.
    _ticks: Iterator[int] | None = None

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` to an unlabelled counter (or a counter labelled by flags only)."""
        if amount is _LOCK_FREE_ONE:
            ticks = self._ticks
            if ticks is not None:
                next(ticks)  # as CounterChild.inc does
                return
        self._target.inc(amount)

    def count_exceptions(self, exception: ExceptionTypes = Exception) -> _ExceptionCounter:
        """Count exceptions raised in a block or decorated function (unlabelled counters)."""
        return self._target.count_exceptions(exception)


class _ExceptionCounter:
    """Context manager and decorator (sync and ``async def``) that counts exceptions."""

    __slots__ = ("_exception", "_inc")

    def __init__(self, inc: Callable[[], None], exception: ExceptionTypes) -> None:
        self._inc = inc
        self._exception = exception

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, self._exception):
            self._inc()
        return False

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
