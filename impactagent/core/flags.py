"""Per-flag yes/no/variant counts, and the ``MetricBucket`` window they are reported in."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from ._gil import Count
from .flag_context import flag_state, note_flag
from .server_limits import MAX_VARIANT_COUNT, OBJECT_PROTOTYPE_PROPERTIES
from .statistics import DropCounter

#: Default number of distinct flag names counted before new names are dropped.
DEFAULT_MAX_FLAGS = 10_000


def utcnow() -> datetime:
    """The current time in UTC (the one place that reads the clock)."""
    return datetime.now(timezone.utc)


class ToggleDelta(NamedTuple):
    """One flag's counts for a window: ``yes``, ``no`` and counts per variant name."""

    yes: int
    no: int
    variants: dict[str, int]


def counted(counts: Iterator[int]) -> int:
    """How many times ``next()`` was called on a count, read from its ``repr``."""
    return int(repr(counts)[6:-1])


class FlagStats:
    """One flag's cumulative counts and sent marks; every method but the counts' ``next()``
    runs under the caller's lock. An evaluation advances exactly one count (``yes``, ``no``,
    or its variant's for its state), so a take never sees a variant without its yes or no."""

    __slots__ = ("_hour", "_hour_sent", "_hour_sent_evaluations", "_sent_no", "_sent_variants",
                 "_sent_yes", "disabled", "enabled", "no", "watched", "yes")

    def __init__(self, watched: bool = False) -> None:
        self.watched = watched  # the flag labels a metric: evaluations note their state
        self.yes = Count()  # enabled, without a variant
        self.no = Count()
        # A count per variant name and state: new dicts under the lock, never changed.
        self.enabled: dict[str, Iterator[int]] = {}
        self.disabled: dict[str, Iterator[int]] = {}
        self._sent_yes = 0
        self._sent_no = 0
        self._sent_variants: dict[str, int] = {}
        # The sent marks when ``_hour`` began (see fit_hour).
        self._hour = _NO_HOUR
        self._hour_sent: dict[str, int] = {}
        self._hour_sent_evaluations = 0

    def read(self) -> tuple[int, int, dict[str, int]]:
        """``(yes, no, variants)`` since start."""
        yes, no = counted(self.yes), counted(self.no)
        variants = {}
        disabled = self.disabled
        for variant, counts in self.enabled.items():
            on, off = counted(counts), counted(disabled[variant])
            yes += on
            no += off
            variants[variant] = on + off
        return yes, no, variants

    def pending(self) -> int:
        yes, no, _ = self.read()
        return yes + no - self._sent_yes - self._sent_no

    def take(self, hour: int) -> ToggleDelta | None:
        """The counts since the last take that fit the row of ``hour`` (see fit_hour)."""
        yes, no, variants = self.read()
        sent = self._sent_variants
        if hour > self._hour:  # sent before this hour: in no row of it
            self._hour, self._hour_sent = hour, sent
            self._hour_sent_evaluations = self._sent_yes + self._sent_no
        delta = ToggleDelta(yes - self._sent_yes, no - self._sent_no, {
            v: n - sent.get(v, 0) for v, n in variants.items() if n != sent.get(v, 0)})
        # No variant can have grown more than the evaluations since the hour began: while
        # those fit this process's share of a row, the whole window does.
        if yes + no - self._hour_sent_evaluations > HOUR_SHARE:
            base = self._hour_sent
            delta = fit_hour(delta, {v: max(sent.get(v, 0) - base.get(v, 0), 0)
                                     for v in delta.variants})
        if not (delta.yes or delta.no):  # what is not taken stays pending
            return None
        self._sent_yes += delta.yes
        self._sent_no += delta.no
        self._sent_variants = _added(sent, delta.variants)
        return delta

    def write_off(self) -> int:
        """Mark every evaluation sent, whatever its hour; returns how many were pending."""
        yes, no, variants = self.read()
        pending = yes + no - self._sent_yes - self._sent_no
        self._sent_yes, self._sent_no, self._sent_variants = yes, no, variants
        return pending

    def give_back(self, delta: ToggleDelta, hour: int) -> None:
        taken_back = {v: -n for v, n in delta.variants.items()}
        self._sent_yes -= delta.yes
        self._sent_no -= delta.no
        self._sent_variants = _added(self._sent_variants, taken_back)
        if hour < self._hour:  # taken before this hour: it frees no room in it
            self._hour_sent = _added(self._hour_sent, taken_back)
            self._hour_sent_evaluations -= delta.yes + delta.no
        else:  # its room comes back, but no more than the hour's takes filled
            base = self._hour_sent
            self._hour_sent = {v: min(base.get(v, 0), n) for v, n in self._sent_variants.items()}
            self._hour_sent_evaluations = min(self._hour_sent_evaluations,
                                              self._sent_yes + self._sent_no)


class FlagCounts:
    """Thread-safe counts of flag evaluations, windowed into buckets for Unleash.

    >>> flags = FlagCounts()
    >>> flags.record("new-checkout", True, "blue")
    >>> flags.record("new-checkout", False)
    >>> start, stop, toggles = flags.take()
    >>> toggles["new-checkout"]
    ToggleDelta(yes=1, no=1, variants={'blue': 1})

    A variant is counted *and* its evaluation as yes or no, as the Unleash SDKs do. A window
    never ends before it starts, whatever the wall clock does.
    """

    def __init__(self, *, max_flags: int = DEFAULT_MAX_FLAGS,
                 drops: DropCounter | None = None) -> None:
        if not isinstance(max_flags, int) or max_flags < 1:
            raise ValueError(f"max_flags must be a positive int, got {max_flags!r}")
        self.max_flags = max_flags
        self._drops = drops if drops is not None else DropCounter()
        self._lock = threading.Lock()
        self._flags: dict[str, FlagStats] = {}
        self._watched: frozenset[str] = frozenset()
        self._window_start = utcnow()

    def watch(self, names: Iterable[str]) -> None:
        """Note the state of each evaluation of these flags in the context from now on."""
        with self._lock:
            self._watched = self._watched.union(names)
            for name in self._watched:
                stats = self._flags.get(name)
                if stats is not None:
                    stats.watched = True

    def record(self, name: str, enabled: bool, variant: str | None = None) -> None:
        """Count one evaluation of flag ``name``: yes if ``enabled``, and its ``variant``.

        Its state is noted in the context when the flag labels a metric.
        """
        try:
            stats = self._flags[name]
        except (KeyError, TypeError):
            new = self._new_flag(name, variant)
            if new is None:  # past the flag limit: not counted, but its state holds
                if name in self._watched:
                    note_flag(name, flag_state(enabled, variant))
                return
            stats = new
        if variant is None:
            next(stats.yes if enabled else stats.no)
        else:
            try:
                counts = (stats.enabled if enabled else stats.disabled)[variant]
            except (KeyError, TypeError):  # new, or unhashable: not a variant name
                counts = self._new_variant(name, stats, variant, enabled)
            next(counts)
        if stats.watched:
            note_flag(name, flag_state(enabled, variant))

    def _new_variant(self, name: str, stats: FlagStats, variant: Any,
                     enabled: bool) -> Iterator[int]:
        _check_variant(name, variant)
        variant = str.__str__(variant)  # a str Enum counts as its plain text
        with self._lock:
            if variant not in stats.enabled:
                # ``disabled`` first: a reader walks ``enabled`` and looks each name up there.
                stats.disabled = {**stats.disabled, variant: Count()}
                stats.enabled = {**stats.enabled, variant: Count()}
            return (stats.enabled if enabled else stats.disabled)[variant]

    def _new_flag(self, name: Any, variant: Any) -> FlagStats | None:
        """The stats of a new flag name, or None past the flag limit (counted as dropped)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"flag name must be a non-empty str, got {name!r}")
        if variant is not None:
            _check_variant(name, variant)
        name = str.__str__(name)
        with self._lock:
            stats = self._flags.get(name)
            if stats is None:
                if len(self._flags) >= self.max_flags:
                    self._drops.add("flag_limit", detail=f"limit {self.max_flags} flags")
                    return None
                stats = self._flags[name] = FlagStats(name in self._watched)
            return stats

    def cumulative(self) -> dict[str, ToggleDelta]:
        """Every flag's counts since the agent started."""
        result = {}
        for name, stats in list(self._flags.items()):
            with self._lock:
                result[name] = ToggleDelta(*stats.read())
        return result

    # The collector's side, serialised by the recorder's collect lock.
    def take(self) -> tuple[datetime, datetime, dict[str, ToggleDelta]]:
        """``(start, stop, deltas)`` of the window ending now; the next one opens."""
        now = utcnow()
        with self._lock:
            start = self._window_start
            stop = self._window_start = now if now > start else start
            flags = list(self._flags.items())
        toggles: dict[str, ToggleDelta] = {}
        hour = _hour_of(stop)
        for name, stats in flags:
            with self._lock:  # one flag at a time, its sent totals with it
                delta = stats.take(hour)
            if delta is not None:
                toggles[name] = delta
        return start, stop, toggles

    def give_back(self, start: datetime, stop: datetime,
                  toggles: dict[str, ToggleDelta]) -> None:
        """Merge back a window that failed to send; its start wins if older, and its
        variant counts free their room in the row of its hour."""
        with self._lock:
            if start < self._window_start:
                self._window_start = start
        hour = _hour_of(stop)
        for name, delta in toggles.items():
            stats = self._flags[name]
            with self._lock:  # see take()
                stats.give_back(delta, hour)

    def reset_after_fork(self) -> None:
        """Start over in a forked child: the parent sends what it counted."""
        self._lock = threading.Lock()
        self._flags = {}
        self._window_start = utcnow()

    def pending_events(self) -> int:
        """Evaluations counted but not yet taken."""
        pending = 0
        for stats in list(self._flags.values()):
            with self._lock:
                pending += stats.pending()
        return pending

    def write_off(self) -> int:
        """Take every pending evaluation (see :meth:`Recorder.write_off`); returns how many."""
        written = 0
        for stats in list(self._flags.values()):
            with self._lock:
                written += stats.write_off()
        return written

    def names(self) -> list[str]:
        return list(self._flags)


#: Texts Unleash does not store as a variant's name (NUL is checked apart).
NOT_VARIANT_NAMES = frozenset({"", *OBJECT_PROTOTYPE_PROPERTIES})


def variant_name(answer: Any) -> str | None:
    """``answer`` as the variant to count, or None when it names none."""
    if (not isinstance(answer, str) or str.__str__(answer) in NOT_VARIANT_NAMES
            or "\x00" in answer):
        return None
    return answer


#: The most of one variant this process puts in the server's row of an hour: a quarter,
#: as a row filled whole would fail the next window of any other process of the app.
HOUR_SHARE = MAX_VARIANT_COUNT // 4


def fit_hour(delta: ToggleDelta, taken: Mapping[str, int]) -> ToggleDelta:
    """The part of ``delta`` that fits this process's share of an hour's row, ``taken``
    being what it put there already; yes and no keep back the evaluations the held variant
    counts need later. What is not given stays pending."""
    room = {v: min(n, max(HOUR_SHARE - taken.get(v, 0), 0)) for v, n in delta.variants.items()}
    if room == delta.variants:
        return delta
    evaluations = delta.yes + delta.no
    held = min(max(n - room[v] for v, n in delta.variants.items()), evaluations)
    # What goes now comes with evaluations too: no variant past those left after the held.
    variants = {v: min(n, evaluations - held) for v, n in room.items()}
    held_yes = held * delta.yes // evaluations if held else 0
    return ToggleDelta(delta.yes - held_yes, delta.no - (held - held_yes),
                       {v: n for v, n in variants.items() if n})


def _added(counts: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """A new dict (readers may hold the old one): ``counts`` plus ``more``."""
    result = dict(counts)
    for name, n in more.items():
        result[name] = result.get(name, 0) + n
    return result


_NO_HOUR = -(2**62)


def _hour_of(moment: datetime) -> int:
    """The hour the server files a window under, in hours since 1970."""
    return int(moment.timestamp()) // 3600


def _check_variant(name: str, variant: Any) -> None:
    if not isinstance(variant, str):
        raise TypeError(f"flag {name!r}: variant must be a variant name (str) or None, "
                        f"got {type(variant).__name__}")
    text = str.__str__(variant)
    if not text:
        raise ValueError(f"flag {name!r}: a variant needs a name (Unleash does not store a "
                         "variant named ''); pass variant=None for an evaluation without one")
    if "\x00" in text:
        raise ValueError(f"flag {name!r}: a variant name cannot hold NUL (\\x00): Unleash "
                         "loses every app's variant counts of a write window for it")
    if text in OBJECT_PROTOTYPE_PROPERTIES:
        raise ValueError(f"flag {name!r}: {text!r} cannot name a variant (Unleash drops "
                         "the names of JavaScript's Object.prototype properties, or loses "
                         "every app's counts of a write window for them); rename the "
                         "variant, or pass variant=None")
