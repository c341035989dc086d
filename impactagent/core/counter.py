"""Counters: integers that only go up, sent to Unleash as deltas since the last send.

The server takes a counter's value only up to ``2**53 - 1`` (see :mod:`impactagent.core._numbers`).
A single ``inc()`` above that is refused with a ``ValueError`` at the call (it is almost
certainly a bug, and no split could deliver it in a useful time); increments that add up to
more within one window are split: a collect takes at most ``2**53 - 1`` of a series and
leaves the rest pending for the next one, so nothing is lost and nothing is dropped.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterator,
    Literal,
    NamedTuple,
    NoReturn,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

from ._family import ATOMIC_C_CALLS, MetricFamily
from ._numbers import MAX_SAFE

F = TypeVar("F", bound=Callable[..., Any])

_ONE = 1  # the int inc() takes without a lock (see CounterChild)

if TYPE_CHECKING:
    _Count = itertools.count[int]  # generic to the type checker only
else:
    _Count = itertools.count


def _checked_increment(metric: str, amount: Any) -> int:
    """Return ``amount`` as an exact int if it is a non-negative integer the server takes
    in one window (at most ``2**53 - 1``), else raise."""
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

    How an increment stays exact without a lock (see :data:`ATOMIC_C_CALLS`):

    - ``inc()`` of 1, nearly every call, advances the series itself, an ``itertools.count``:
      ``next()`` on it is one C call that runs whole while it holds the GIL (it runs no
      Python code and never releases it), so two threads can never both read the same
      count. No lock, no read-modify-write in Python: 4 threads run as fast as one. (The
      series *is* the count, not an object holding one: one object per series, not two.)
    - Any other amount is validated, then added to a plain int under the series lock.
    - A reader (a collect, ``value``) takes the lock and reads the count by advancing it
      too, as one more ``next()``: the number returned is every increment of 1 made before
      it plus every earlier read; the int beside it holds the other increments less those
      reads (under the lock), so the increments are exact and no increment is ever read
      twice or missed. Reading the count without advancing it would need ``repr()``
      (slower) or pickling (gone in 3.14).

    On a free-threaded build (3.13t and later) one C call is no longer alone, and
    ``itertools.count`` is not documented as thread-safe there: ``inc`` is defined to take
    the series lock for every amount (the count is then never advanced by recorders).
    """

    __slots__ = ("_adjust", "_lock", "_sent", "family", "label_values")
    family: Counter
    label_values: Tuple[str, ...]
    _lock: threading.Lock
    _adjust: int
    _sent: int

    def __new__(cls, family: Counter, label_values: Tuple[str, ...],
                lock: threading.Lock) -> CounterChild:
        # A count from 0: the increments of 1 plus the readers' reads.
        self = cast(CounterChild, super().__new__(cls))
        self.family = family
        self._lock = lock
        # Every other increment less the readers' next() calls (under the lock): the total
        # is the count plus this.
        self._adjust = 0
        self._sent = 0  # the part of the total already handed to a collect; collector-owned
        self.label_values = label_values
        return self

    def __iter__(self) -> NoReturn:
        # A series is no sequence of numbers: iterating the count would never end.
        raise TypeError(f"a {type(self).__name__} is not iterable; read .value")

    if ATOMIC_C_CALLS:
        def inc(self, amount: int = 1) -> None:
            """Add ``amount`` (a non-negative int up to ``2**53 - 1``, default 1)."""
            # `is`: only the int 1 itself (CPython keeps one object for small ints), never
            # True or 1.0, which are refused below; a 1 that is another object (an IntEnum)
            # takes the checked path and counts the same.
            if amount is _ONE:
                next(self)  # one C call: atomic under the GIL (see the class)
                return
            # The bound is written out: a constant costs less than a global.
            if amount.__class__ is not int or amount < 0 or amount > (2**53 - 1):
                amount = _checked_increment(self.family.name, amount)
            # `with`, not acquire()/release(): a call between them is where CPython hands
            # the GIL over, so a thread could sleep holding the lock and every other
            # recorder would queue behind it. Nothing in this `with` body makes a call.
            with self._lock:
                self._adjust += amount
    else:  # free-threaded: every amount under the series lock
        def inc(self, amount: int = 1) -> None:
            """Add ``amount`` (a non-negative int up to ``2**53 - 1``, default 1)."""
            if amount.__class__ is not int or amount < 0 or amount > (2**53 - 1):
                amount = _checked_increment(self.family.name, amount)
            with self._lock:
                self._adjust += amount

    def _total(self) -> int:
        """Every increment so far (see the class docstring for why this is exact)."""
        with self._lock:
            # next() returns the increments of 1 made before it plus the earlier reads,
            # which _adjust takes away; this read is one more.
            total = next(self) + self._adjust
            self._adjust -= 1
            return total

    @property
    def value(self) -> int:
        """The cumulative count since the agent started (reading it changes nothing)."""
        return self._total()

    def count_exceptions(
        self, exception: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = Exception
    ) -> _ExceptionCounter:
        """Count exceptions of type ``exception`` raised in a block or decorated function."""
        return _ExceptionCounter(self.inc, exception)

    # Collector side: only the registry's collect/restore (serialised by its lock) call these.
    # The delta is a plain int, not a CounterDelta: a collect keeps it in a list next to
    # this series (see impactagent.core.snapshot), no object per series.
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
        """In a forked child, where only the forking thread runs: a new lock (the parent's
        may be held forever) and nothing recorded yet."""
        self._lock = lock
        # The count goes on (it is the series, which the family and the app may hold) and is
        # read once more: everything it counted is then taken away, and the total is 0.
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
    # What the family's own recording methods forward to (see MetricFamily.__init__; a
    # labelled counter's stand-in raises on every method).
    _target: CounterChild | _CounterInContext

    def _new_child(self, label_values: Tuple[str, ...], lock: threading.Lock) -> CounterChild:
        return CounterChild(self, label_values, lock)

    def _new_overflow_child(self) -> CounterChild:
        return _DroppedCounterChild(self, ("<dropped>",) * len(self.label_names), self._locks[0])

    def _in_flag_context(self) -> _CounterInContext:
        return _CounterInContext(self)

    def _create_series(self, key: Tuple[str, ...]) -> CounterChild:
        child = super()._create_series(key)
        if not key and ATOMIC_C_CALLS:
            # The unlabelled series, so that the family's own inc() of 1 advances its count
            # directly (one call where forwarding to the series would make two). The series
            # is never replaced (a fork resets it in place), so this stays its own.
            self._ticks = child
        return child

    @property
    def value(self) -> int:
        """The cumulative count of an unlabelled counter since the agent started."""
        return self._require_default().value

    #: The only series' count of an unlabelled counter on a GIL build, else None.
    _ticks: Optional[Iterator[int]] = None

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` to an unlabelled counter (or a counter labelled by flags only)."""
        if amount is _ONE:
            ticks = self._ticks
            if ticks is not None:
                next(ticks)  # as CounterChild.inc does, without a second call
                return
        self._target.inc(amount)

    def count_exceptions(
        self, exception: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = Exception
    ) -> _ExceptionCounter:
        """Count exceptions raised in a block or decorated function (unlabelled counters)."""
        return self._target.count_exceptions(exception)


class _CounterInContext:
    """The recording methods of a counter labelled by flags only: each call records into
    the series of the flags' states in the current context, looked up at that moment."""

    __slots__ = ("_labels",)

    def __init__(self, family: Counter) -> None:
        self._labels = family.labels

    def inc(self, amount: int = 1) -> None:
        self._labels().inc(amount)

    def count_exceptions(
        self, exception: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = Exception
    ) -> _ExceptionCounter:
        # The series is chosen when the exception is counted: the flag is decided inside.
        return _ExceptionCounter(self.inc, exception)


class _ExceptionCounter:
    """Context manager and decorator (sync and ``async def``) that counts exceptions."""

    __slots__ = ("_exception", "_inc")

    def __init__(self, inc: Callable[[], None], exception: Any) -> None:
        self._inc = inc
        self._exception = exception

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
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
