"""What counters, gauges and histograms share: a *family* (one metric name, its help and label
names) and its *series* (one per set of label values), looked up in one dict; canonicalisation
and the series limit run only the first time a key is seen."""

from __future__ import annotations

import functools
import inspect
import operator
import threading
import time
from typing import Any, Callable, Generic, Literal, NamedTuple, Protocol, Sequence, TypeVar

from ._naming import check_help, check_label_names, check_metric_name, flag_label_name, label_value
from ._numbers import MAX_SAFE_FLOAT, Number, is_finite, to_number
from .flag_context import state_of
from .statistics import DropCounter

#: Default number of distinct label sets per metric before new ones are dropped.
DEFAULT_MAX_SERIES = 1000

# Raw keys other than the canonical one (``labels(status=200)``) are cached up to this
# multiple of the series limit.
_ALIAS_FACTOR = 4

Child = TypeVar("Child", bound="Series")
F = TypeVar("F", bound=Callable[..., Any])


class Definition(NamedTuple):
    """What makes two definitions of a metric the same."""

    type: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    flags: tuple[str, ...]


class RecordingRules:
    """The number rules and drop counter a family's series consult on their slow paths."""

    __slots__ = ("_drops", "_what")

    def __init__(self, kind: str, name: str, drops: DropCounter) -> None:
        self._what = f"{kind} {name!r}"
        self._drops = drops

    def drop(self, reason: str, events: int = 1) -> None:
        self._drops.add(reason, events, detail=self._what)

    def number(self, value: Any, method: str) -> Number:
        return to_number(value, f"{self._what}: {method}")

    def drop_value(self, value: Number, beyond_range: str) -> None:
        """Count a value that cannot be sent: NaN or infinite, else ``beyond_range``."""
        self.drop("non_finite_value" if not is_finite(value) else beyond_range)

    def drop_past_limit(self, value: Any, method: str) -> None:
        """Past the series limit: ``value`` checked as a real series would, then dropped."""
        value = self.number(value, method)
        if -MAX_SAFE_FLOAT <= value <= MAX_SAFE_FLOAT:
            self.drop("cardinality_limit")
        else:
            self.drop_value(value, "unsafe_value")


class Series(Protocol):
    """What a family, its registry and a collect need of each series (a "child")."""

    label_values: tuple[str, ...]

    @property
    def family(self) -> MetricFamily[Any]: ...

    def take_delta(self) -> Any:
        """What changed since the last take, or None (the collector's only)."""

    def give_back_delta(self, delta: Any) -> None: ...

    def pending_events(self) -> int: ...

    def reset_after_fork(self, lock: threading.Lock) -> None: ...


class MetricFamily(Generic[Child]):
    """Base class of :class:`Counter`, :class:`Gauge` and :class:`Histogram`."""

    #: ``"counter"``, ``"gauge"`` or ``"histogram"``: the ``type`` sent to Unleash.
    kind: str = ""
    #: The histogram's bucket bounds; a counter or a gauge has none.
    buckets: tuple[float, ...] = ()
    _reserved_labels: tuple[str, ...] = ()
    # A series, and the stand-in past the series limit.
    _series_class: Callable[[Any, tuple[str, ...], threading.Lock], Child]
    _dropped_class: Callable[[Any, tuple[str, ...], threading.Lock], Child]
    #: The one series of an unlabelled family.
    _default: Child | None = None

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), *,
                 max_series: int = DEFAULT_MAX_SERIES, drops: DropCounter | None = None,
                 flags: Sequence[str] = ()) -> None:
        self.name = check_metric_name(name)
        self.help = check_help(name, help)
        if isinstance(flags, str):
            raise TypeError(f"flags of {name!r} must be a sequence of flag names, not the "
                            f"string {flags!r}; write flags=({flags!r},)")
        #: Flags whose state in the current request labels every sample (see flag_context).
        self.flags: tuple[str, ...] = tuple(flags)
        flag_labels = tuple(flag_label_name(name, flag) for flag in self.flags)
        self.label_names: tuple[str, ...] = check_label_names(
            name, labels if isinstance(labels, str) else tuple(labels) + flag_labels,
            extra_reserved=self._reserved_labels)
        #: The label names the caller passes values for (the flags' are filled in).
        self.caller_label_names = self.label_names[: len(self.label_names) - len(flag_labels)]
        self._sole_label = self.label_names[0] if len(self.label_names) == 1 else ""
        # Two labels or more: the keyword values in declaration order as a tuple, in one C
        # call (an itemgetter of one name returns no tuple).
        self._label_count = len(self.label_names)
        self._keyword_key = (operator.itemgetter(*self.label_names)
                             if len(self.label_names) > 1 else None)
        if not isinstance(max_series, int) or max_series < 1:
            raise ValueError(f"max_series of {name!r} must be a positive int, got {max_series!r}")
        self.max_series = max_series
        self.rules = RecordingRules(self.kind, self.name,
                                    drops if drops is not None else DropCounter())
        self._create_lock = threading.Lock()
        # Striped: one reference per series, contention spread on free-threaded builds.
        self._locks = tuple(threading.Lock() for _ in range(8))
        # Canonical keys only (tuples of exact str): the hot path's one dict lookup.
        self._lookup: dict[tuple[Any, ...], Child] = {}
        # Every other raw key seen (ints, enums, label sets past the limit), by type and value.
        self._aliases: dict[Any, Child] = {}
        self._series: list[Child] = []
        self._overflow: Child | None = None
        # What the family's own recording methods (``checkouts.inc()``) forward to.
        self._target: Any
        if not self.label_names:
            self._default = self._create_series(())
            self._target = self._default
        elif self.flags and not self.caller_label_names:
            self._target = InContext(self)
        else:
            self._target = _LabelsFirst(self)

    def _require_default(self) -> Child:
        if self._default is None:
            raise ValueError(f"{self.kind} {self.name!r} has labels {self.label_names}: "
                             "call .labels(...) first")
        return self._default

    def labels(self, *values: Any, **kwvalues: Any) -> Child:
        """The series for these label values, by position or by name (cached; keep it); the
        states of a metric's ``flags=`` in the current request or task are filled in."""
        if self.flags:
            values, kwvalues = self._with_flag_states(values, kwvalues)
        if kwvalues:
            # Keyword calls, in any order, share the positional cache entry.
            if values or len(kwvalues) != self._label_count:
                return self._resolve(values, kwvalues)
            try:
                key = (self._keyword_key(kwvalues) if self._keyword_key is not None
                       else (kwvalues[self._sole_label],))
            except KeyError:
                return self._resolve(values, kwvalues)
        else:
            key = values
        try:
            child = self._lookup.get(key)
        except TypeError:  # an unhashable label value: let _resolve explain
            child = None
        if child is None:
            child = self._resolve(values, kwvalues)
        return child

    def series_of(self, *values: Any) -> Child:
        """The series for a full set of label values, flag states included, as given."""
        try:
            child = self._lookup.get(values)
        except TypeError:  # an unhashable label value: let _resolve explain
            child = None
        if child is None:
            child = self._resolve(values, {})
        return child

    def _with_flag_states(self, values: tuple[Any, ...], kwvalues: dict[str, Any]
                          ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        states = tuple(state_of(flag) for flag in self.flags)
        if kwvalues:
            names = self.label_names[len(self.caller_label_names):]
            for name in names:
                if name in kwvalues:
                    raise ValueError(f"{self.kind} {self.name!r}: label {name!r} is the state "
                                     "of a flag and is filled in from the current context")
            kwvalues.update(zip(names, states))
            return values, kwvalues
        if len(values) != len(self.caller_label_names):
            raise ValueError(f"{self.kind} {self.name!r} takes {len(self.caller_label_names)} label"
                             f" values {self.caller_label_names} (its flags' states are filled "
                             f"in), got {len(values)}: {values!r}")
        return values + states, kwvalues

    def _resolve(self, values: tuple[Any, ...], kwvalues: dict[str, Any]) -> Child:
        names = self.label_names
        if not names:
            raise ValueError(f"{self.kind} {self.name!r} has no labels; record on it directly")
        if kwvalues:
            if values:
                raise TypeError(f"{self.kind} {self.name!r}: pass label values by position or "
                                "by name, not both")
            missing = [n for n in names if n not in kwvalues]
            unexpected = sorted(set(kwvalues) - set(names))
            if missing or unexpected:
                raise ValueError(f"{self.kind} {self.name!r} takes labels {names}; "
                                 f"missing {missing}, unexpected {unexpected}")
            values = tuple(kwvalues[n] for n in names)
        elif len(values) != len(names):
            raise ValueError(f"{self.kind} {self.name!r} takes {len(names)} label values "
                             f"{names}, got {len(values)}: {values!r}")
        # Keyed with their types: 1, 1.0 and True are equal keys but different label values.
        alias: Any = (tuple(map(type, values)), values)
        try:
            child = self._aliases.get(alias)
        except TypeError:  # an unhashable value that converts to a string: no alias
            alias = child = None
        if child is not None:
            return child
        key = tuple(label_value(self.name, n, v) for n, v in zip(names, values))
        child = self._lookup.get(key)
        if child is None:
            child = self._create_series(key)
        cacheable = child is self._overflow or values != key
        if alias is not None and cacheable and len(self._aliases) < _ALIAS_FACTOR * self.max_series:
            self._aliases[alias] = child
        return child

    def _create_series(self, key: tuple[str, ...]) -> Child:
        with self._create_lock:
            child = self._lookup.get(key)
            if child is not None:
                return child
            if len(self._series) >= self.max_series:
                if self._overflow is None:
                    self._overflow = self._dropped_class(
                        self, ("<dropped>",) * len(self.label_names), self._locks[0])
                return self._overflow
            child = self._series_class(self, key,
                                       self._locks[len(self._series) % len(self._locks)])
            # The list before the dict: a collect never misses a series being recorded into.
            self._series.append(child)
            self._lookup[key] = child
            return child

    def series(self) -> list[Child]:
        """Every series of this metric (a copy)."""
        return list(self._series)

    def series_table(self) -> Sequence[Child]:
        """The family's own append-only list of series (read only): a position names a series
        for the family's whole life."""
        return self._series

    def describe(self) -> Definition:
        return Definition(self.kind, self.help, self.label_names, self.buckets, self.flags)

    def reset_after_fork(self) -> None:
        """In a forked child (only the forking thread runs): new locks, zero counts."""
        self._create_lock = threading.Lock()
        self._locks = tuple(threading.Lock() for _ in range(len(self._locks)))
        for index, child in enumerate(self._series):
            child.reset_after_fork(self._locks[index % len(self._locks)])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} labels={self.label_names}>"


class _LabelsFirst:
    """Recording on a labelled family itself raises: call ``labels(...)`` first."""

    __slots__ = ("_family",)

    _RECORDING = frozenset({"inc", "dec", "set", "observe", "time", "count_exceptions",
                            "add_counts"})

    def __init__(self, family: MetricFamily[Any]) -> None:
        self._family = family

    def __getattr__(self, method: str) -> Any:
        if method not in _LabelsFirst._RECORDING:
            raise AttributeError(method)
        family = self._family
        raise ValueError(f"{family.kind} {family.name!r} has labels {family.caller_label_names}"
                         f": call .labels(...).{method}()")


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class InContext:
    """The recording methods of a family labelled by flags only: each call records into the
    series of the flags' states in the current context, looked up at that moment."""

    __slots__ = ("_labels",)

    def __init__(self, family: MetricFamily[Any]) -> None:
        self._labels: Callable[[], Any] = family.labels

    def inc(self, amount: Number = 1) -> None:
        self._labels().inc(amount)

    def dec(self, amount: Number = 1) -> None:
        self._labels().dec(amount)

    def set(self, value: Number) -> None:
        self._labels().set(value)

    def observe(self, value: Number) -> None:
        self._labels().observe(value)

    def add_counts(self, counts: Sequence[int], sum: Number) -> None:
        self._labels().add_counts(counts, sum)

    # The series is chosen when the exception is counted or the timing ends: the flag is
    # usually decided inside.
    def count_exceptions(self, exception: ExceptionTypes = Exception) -> ExceptionCounter:
        return ExceptionCounter(self.inc, exception)

    def time(self) -> Timer:
        return Timer(self.observe)


class ExceptionCounter:
    """Context manager and decorator (sync and ``async def``) that counts exceptions."""

    __slots__ = ("_exception", "_inc")

    def __init__(self, inc: Callable[[], None], exception: ExceptionTypes) -> None:
        if not (isinstance(exception, type) and issubclass(exception, BaseException)) and not (
                isinstance(exception, tuple) and all(
                    isinstance(kind, type) and issubclass(kind, BaseException)
                    for kind in exception)):
            raise TypeError("count_exceptions() takes an exception class or a tuple of them, "
                            f"got {exception!r}")
        self._inc = inc
        self._exception = exception

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> Literal[False]:
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


class Timer:
    """``with histogram.time():`` or ``@histogram.time()`` (``def`` or ``async def``): each
    block or call observes its seconds."""

    __slots__ = ("_observe", "_start")

    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._observe(time.perf_counter() - self._start)

    def __call__(self, func: F) -> F:
        # The clock is read inline: a Timer made per call would cost each call an object
        # and two method calls more.
        observe = self._observe
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    observe(time.perf_counter() - start)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return wrapper  # type: ignore[return-value]

