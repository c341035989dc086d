"""What counters, gauges and histograms share: label lookup and the series limit.

A *family* is one metric name with its help text and label names; each set of label values
is a *series*. ``labels(...)`` looks the caller's tuple up in one dict; canonicalisation
(string conversion, validation, the series limit) runs only the first time a key is seen.
"""

from __future__ import annotations

import operator
import threading
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    NamedTuple,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
)

from ._naming import check_help, check_label_names, check_metric_name, flag_label_name, label_value
from ._numbers import MAX_SAFE_FLOAT, Number, is_finite, to_number
from .flag_context import state_of
from .statistics import DropCounter

#: Default number of distinct label sets per metric before new ones are dropped.
DEFAULT_MAX_SERIES = 1000

# Raw keys that differ from the canonical one (``labels(status=200)``) are cached too, up to
# this multiple of the series limit.
_ALIAS_FACTOR = 4

Child = TypeVar("Child", bound="Series")


class Definition(NamedTuple):
    """What makes two definitions of a metric the same (see :meth:`MetricFamily.describe`)."""

    type: str
    help: str
    labels: Tuple[str, ...]
    buckets: Tuple[float, ...]
    flags: Tuple[str, ...]


class RecordingRules:
    """What a family's series consult on their slow paths: the number rules of
    :mod:`impactagent.core._numbers` and the drop counter, both naming the metric."""

    __slots__ = ("_drops", "_what")

    def __init__(self, kind: str, name: str, drops: DropCounter) -> None:
        self._what = f"{kind} {name!r}"
        self._drops = drops

    def drop(self, reason: str, events: int = 1) -> None:
        """Count ``events`` recorded events (increments, observations, values) as dropped."""
        self._drops.add(reason, events, detail=self._what)

    def number(self, value: Any, method: str) -> Number:
        """``value`` as an exact int or float (the recording methods' slow path), or a
        TypeError that names this metric (see :mod:`impactagent.core._numbers`)."""
        return to_number(value, f"{self._what}: {method}")

    def drop_value(self, value: Number, beyond_range: str) -> None:
        """Count a value that cannot be sent: NaN or infinite, else out of the safe range
        (counted under ``beyond_range``)."""
        self.drop("non_finite_value" if not is_finite(value) else beyond_range)

    def drop_past_limit(self, value: Any, method: str) -> None:
        """What a stand-in series past the series limit records: ``value`` checked as the
        real series would (an error it would raise still raises), then counted as dropped."""
        value = self.number(value, method)
        if -MAX_SAFE_FLOAT <= value <= MAX_SAFE_FLOAT:
            self.drop("cardinality_limit")
        else:
            self.drop_value(value, "unsafe_value")


class Series(Protocol):
    """What a family, its registry and a collect need of each series (a "child"); the app
    records through each kind's own methods (``inc``, ``set``, ``observe``), never these."""

    label_values: Tuple[str, ...]

    @property
    def family(self) -> MetricFamily[Any]:
        """The family the series belongs to."""

    def take_delta(self) -> Any:
        """What changed since the last take, or None; the collector's only. Plain numbers (a
        counter's increment, a gauge's value, a histogram's ``(bucket counts, sum)``)."""

    def give_back_delta(self, delta: Any) -> None:
        """Merge a taken delta back (a send failed or was never tried)."""

    def pending_events(self) -> int:
        """Events recorded and not yet taken."""

    def reset_after_fork(self, lock: threading.Lock) -> None:
        """In a forked child: use ``lock`` and forget what the parent recorded."""


class MetricFamily(Generic[Child]):
    """Base class of :class:`Counter`, :class:`Gauge` and :class:`Histogram`."""

    #: ``"counter"``, ``"gauge"`` or ``"histogram"``: the ``type`` sent to Unleash.
    kind: str = ""
    _reserved_labels: Tuple[str, ...] = ()
    # Each kind names its classes: a series, the stand-in past the series limit, and an
    # object with the family's recording methods that records into the series of the
    # flags' current states (a family labelled by flags only).
    _series_class: Callable[[Any, Tuple[str, ...], threading.Lock], Child]
    _dropped_class: Callable[[Any, Tuple[str, ...], threading.Lock], Child]
    _in_context_class: Callable[[Any], Any]

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        drops: DropCounter | None = None,
        flags: Sequence[str] = (),
    ) -> None:
        self.name = check_metric_name(name)
        self.help = check_help(name, help)
        if isinstance(flags, str):
            raise TypeError(f"flags of {name!r} must be a sequence of flag names, not the "
                            f"string {flags!r}; write flags=({flags!r},)")
        #: Flags whose state in the current request labels every sample (see flag_context).
        self.flags: Tuple[str, ...] = tuple(flags)
        flag_labels = tuple(flag_label_name(name, flag) for flag in self.flags)
        self.label_names: Tuple[str, ...] = check_label_names(
            name, labels if isinstance(labels, str) else tuple(labels) + flag_labels,
            extra_reserved=self._reserved_labels
        )
        #: The label names the caller passes values for (the flags' are filled in).
        self.caller_label_names = self.label_names[: len(self.label_names) - len(flag_labels)]
        # The name of a family's only label: labels(name=value) keys on (kwvalues[name],).
        self._sole_label = self.label_names[0] if len(self.label_names) == 1 else ""
        # For two labels or more, the keyword values in declaration order as a tuple: one C
        # call, a KeyError for a missing name (an itemgetter of one name returns no tuple).
        self._label_count = len(self.label_names)
        self._keyword_key = (operator.itemgetter(*self.label_names)
                             if len(self.label_names) > 1 else None)
        if not isinstance(max_series, int) or max_series < 1:
            raise ValueError(f"max_series of {name!r} must be a positive int, got {max_series!r}")
        self.max_series = max_series
        #: The number rules and the drop counter its series consult on their slow paths.
        self.rules = RecordingRules(self.kind, self.name,
                                    drops if drops is not None else DropCounter())
        self._create_lock = threading.Lock()
        # Recording takes a lock shared by a few series (striping keeps memory per series at
        # one reference while spreading contention on free-threaded builds).
        self._locks = tuple(threading.Lock() for _ in range(8))
        # Canonical keys only (tuples of exact str): the hot path's one dict lookup.
        self._lookup: Dict[Tuple[Any, ...], Child] = {}
        # Every other raw key seen (ints, enums, label sets past the limit), by type and value.
        self._aliases: Dict[Any, Child] = {}
        self._series: List[Child] = []
        self._overflow: Child | None = None
        # What the family's own recording methods (``checkouts.inc()``) forward to, chosen
        # once so that they stay plain class attributes: the only series of an unlabelled
        # metric, the flags' current series, else a stand-in that says to call labels().
        self._target: Any
        if not self.label_names:
            self._default = self._create_series(())
            self._target = self._default
        elif self.flags and not self.caller_label_names:
            self._target = self._in_context_class(self)
        else:
            self._target = _LabelsFirst(self)

    def _require_default(self) -> Child:
        """The only series of an unlabelled metric; a labelled one says to call labels()."""
        try:
            return self._default
        except AttributeError:
            raise ValueError(
                f"{self.kind} {self.name!r} has labels {self.label_names}: "
                "call .labels(...) first"
            ) from None

    # -- label lookup ----------------------------------------------------------------------

    def labels(self, *values: Any, **kwvalues: Any) -> Child:
        """Return the series for these label values, by position or by name (cached).

        ``checkouts.labels("/cart")`` and ``checkouts.labels(route="/cart")`` return the same
        object; keep it in a variable when you record into it in a loop. A metric defined
        with ``flags=`` takes the values of its own labels only: each flag's state in the
        current request or task is read now and filled in.
        """
        if self.flags:  # one test on the plain path; flag-aware metrics add their states
            values, kwvalues = self._with_flag_states(values, kwvalues)
        if kwvalues:
            # Keyword calls, in any order, share the positional cache entry. A name that is
            # missing, or one too many, goes to _resolve, which explains.
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
        """The series for a full set of label values, flag labels included, as given: what
        :meth:`labels` looks up once it has read the flag states, for callers that read
        them themselves (the web middlewares read them once for two metrics)."""
        try:
            child = self._lookup.get(values)
        except TypeError:  # an unhashable label value: let _resolve explain
            child = None
        if child is None:
            child = self._resolve(values, {})
        return child

    def _with_flag_states(self, values: Tuple[Any, ...], kwvalues: Dict[str, Any]
                          ) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        """The caller's label values followed by each flag's state in the current request
        or task (read now, when the series is looked up)."""
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
            raise ValueError(
                f"{self.kind} {self.name!r} takes {len(self.caller_label_names)} label values "
                f"{self.caller_label_names} (its flags' states are filled in), got "
                f"{len(values)}: {values!r}")
        return values + states, kwvalues

    def _resolve(self, values: Tuple[Any, ...], kwvalues: Dict[str, Any]) -> Child:
        names = self.label_names
        if not names:
            raise ValueError(f"{self.kind} {self.name!r} has no labels; record on it directly")
        if kwvalues:
            if values:
                raise TypeError(
                    f"{self.kind} {self.name!r}: pass label values by position or by name, "
                    "not both"
                )
            missing = [n for n in names if n not in kwvalues]
            unexpected = sorted(set(kwvalues) - set(names))
            if missing or unexpected:
                raise ValueError(
                    f"{self.kind} {self.name!r} takes labels {names}; "
                    f"missing {missing}, unexpected {unexpected}"
                )
            values = tuple(kwvalues[n] for n in names)
        elif len(values) != len(names):
            raise ValueError(
                f"{self.kind} {self.name!r} takes {len(names)} label values {names}, "
                f"got {len(values)}: {values!r}"
            )
        # Raw keys that are not the canonical strings are cached apart, keyed with their
        # types: 1, 1.0 and True are equal as dict keys but are different label values.
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

    def _create_series(self, key: Tuple[str, ...]) -> Child:
        with self._create_lock:
            child = self._lookup.get(key)
            if child is not None:
                return child
            if len(self._series) >= self.max_series:
                return self._overflow_child()
            child = self._series_class(self, key,
                                       self._locks[len(self._series) % len(self._locks)])
            # The list before the dict: a collect never misses a series being recorded into.
            self._series.append(child)
            self._lookup[key] = child
            return child

    def _overflow_child(self) -> Child:
        if self._overflow is None:
            self._overflow = self._dropped_class(self, ("<dropped>",) * len(self.label_names),
                                                 self._locks[0])
        return self._overflow

    # -- introspection ---------------------------------------------------------------------

    def series(self) -> List[Child]:
        """Return every series of this metric (a copy; new series may appear at any time)."""
        return list(self._series)

    def series_table(self) -> Sequence[Child]:
        """Every series, as the family's own append-only list (read it, never change it):
        position ``i`` names the same series for the family's whole life, so a collect
        keeps positions instead of references (:mod:`impactagent.core.snapshot`)."""
        return self._series

    def describe(self) -> Definition:
        """What makes two definitions the same: kind, help, labels, buckets, flags."""
        return Definition(self.kind, self.help, self.label_names, (), self.flags)

    def reset_after_fork(self) -> None:
        """In a forked child (only the forking thread runs): new locks, zero counts."""
        self._create_lock = threading.Lock()
        self._locks = tuple(threading.Lock() for _ in range(len(self._locks)))
        for index, child in enumerate(self._series):
            child.reset_after_fork(self._locks[index % len(self._locks)])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} labels={self.label_names}>"


class _LabelsFirst:
    """Stands in for the series of a labelled metric: recording on the family itself
    (``checkouts.inc()``) raises a ValueError that says to call ``labels(...)`` first."""

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
