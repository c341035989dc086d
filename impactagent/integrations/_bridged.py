"""The native side of a bridge: each source metric becomes a native family, defined at first
sight; a reserved label name (or a histogram's ``le``) is sent as ``exported_<name>``. A metric
that cannot be mapped is refused, logged once; a series with other label names or an empty kept
label has its events dropped and counted. Cumulative readings become deltas: a lower total or a
new start is a restart, counted in full; counters send whole units, carrying the fraction.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from ..core._family import MetricFamily
from ..core._naming import RESERVED_LABELS
from ..core._numbers import MAX_SAFE

if TYPE_CHECKING:
    from ..agent import Agent

logger = logging.getLogger(__name__)

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def native_name(name: str, prefix: str = "") -> str:
    """``name`` as a metric or label name the server takes (``[a-zA-Z0-9_]``, no leading
    digit, ``prefix`` first)."""
    mapped = _INVALID.sub("_", prefix + name) or "_"
    return "_" + mapped if mapped[0].isdigit() else mapped


def native_label(name: str, histogram: bool = False) -> str:
    """A source label name as one the agent may send (reserved names are renamed)."""
    mapped = native_name(name).lstrip("_") or "label"
    if mapped in RESERVED_LABELS or (histogram and mapped == "le"):
        return "exported_" + mapped
    return mapped


def same(last: Optional[float], value: float) -> bool:
    """Whether ``value`` is the one last seen (NaN is the same as NaN)."""
    return last is not None and (last == value or (last != last and value != value))


def _whole(value: float) -> int:
    """The whole units of a total (0 for what no counter can hold: negative, NaN, inf)."""
    return math.floor(value) if math.isfinite(value) and value > 0 else 0


class CounterReadings(dict[Hashable, tuple[Any, float]]):
    """The last cumulative reading of each source counter series, by key
    (``CounterReadings(other)`` is an independent copy)."""

    def delta(self, key: Hashable, total: float, start: Any = None) -> int:
        """The whole units counted since the last reading of ``key`` (all for a new or
        restarted series); a different ``start`` is a restart whatever the total."""
        if not math.isfinite(total):
            return 0  # no counter holds this; keep the last good reading
        last = self.get(key)
        self[key] = (start, total)
        if last is None or last[0] != start or total < last[1]:
            return _whole(total)
        return _whole(total) - _whole(last[1])


class HistogramReadings(dict[Hashable, tuple[Any, tuple[int, ...], float]]):
    """The last cumulative reading (per-bucket counts and sum) of each source histogram."""

    def delta(self, key: Hashable, counts: Sequence[int], total: float, start: Any = None
              ) -> Optional[tuple[tuple[int, ...], float]]:
        """The per-bucket counts and sum added since the last reading of ``key``, or None.
        A restart is a new ``start`` or a lower bucket (a sum may go down)."""
        now = tuple(counts)
        last = self.get(key)
        self[key] = (start, now, total)
        if (last is None or last[0] != start or len(last[1]) != len(now)
                or any(n < o for n, o in zip(now, last[1]))):
            added, added_sum = now, total
        else:
            added = tuple(n - o for n, o in zip(now, last[1]))
            added_sum = total - last[2]
        return (added, added_sum) if any(added) else None


class GaugeReadings:
    """The value last set on each native gauge series and the last one dropped for each
    source series: a gauge read again unchanged is no new event, set or dropped (NaN is the
    same as NaN), whichever bridge reads it."""

    def __init__(self) -> None:
        self._set: dict[Any, float] = {}
        self._dropped: dict[Hashable, float] = {}

    def add(self, native: BridgedFamilies, name: str, bridged: Bridged, key: Hashable,
            labels: Mapping[str, str], value: float, values: dict[Any, float]) -> None:
        """Add source series ``key``'s ``value`` to its native series' sum in ``values``; a
        series that cannot be mapped counts one dropped event per new value."""
        new = not same(self._dropped.get(key), value)
        child = native.series(name, bridged, labels, int(new))
        if child is not None:
            values[child] = values.get(child, 0.0) + value
        elif new:
            self._dropped[key] = value

    def set_changed(self, values: Mapping[Any, float]) -> None:
        """Set each native series whose summed value changed since it was last set."""
        for child, value in values.items():
            if not same(self._set.get(child), value):
                self._set[child] = value
                child.set(value)


class Bridged(NamedTuple):
    """One source metric as a native family, and the positions of its kept labels."""

    family: MetricFamily[Any]
    source_labels: tuple[str, ...]
    keep: tuple[int, ...]


class BridgedFamilies:
    """The native families of one bridge, by source name and kind; ``labels`` is an
    allowlist (the series that differ only in the rest are added up)."""

    def __init__(self, agent: Agent, *, source: str, prefix: str = "",
                 labels: Optional[Iterable[str]] = None,
                 max_series: Optional[int] = None) -> None:
        if isinstance(labels, str):
            raise TypeError(f"labels must be a collection of label names, not the string "
                            f"{labels!r}; write labels=[{labels!r}]")
        self._agent = agent
        self._source = source
        self._prefix = prefix
        self._allowed = None if labels is None else frozenset(labels)
        self._max_series = max_series
        self._known: dict[tuple[str, str], Optional[Bridged]] = {}
        #: Source metrics that are not sent, by name, with the reason (each logged once).
        self.refused: dict[str, str] = {}

    def refuse(self, name: str, reason: str) -> None:
        """Note (and log once) that source metric ``name`` is not sent, and why."""
        if name not in self.refused:
            self.refused[name] = reason
            logger.warning("%s metric %r is not sent to Unleash: %s", self._source, name, reason)

    def series(self, name: str, bridged: Bridged, labels: Mapping[str, str], events: int
               ) -> Optional[Any]:
        """The native series of a source series ``{label name: value}``, or None with its
        ``events`` counted as dropped: other label names, or an empty kept label."""
        names = bridged.source_labels
        if len(labels) != len(names) or any(label not in labels for label in names):
            self._drop("bridged_labels_changed", events,
                       f"{self._source} metric {name!r} has labels {sorted(labels)}, "
                       f"bridged with {list(names)}")
            return None
        values = [labels[names[i]] for i in bridged.keep]
        if "" not in values:
            return bridged.family.series_of(*values)
        self._drop("empty_label_value", events,
                   f"{self._source} metric {name!r} has series with an empty "
                   f"{names[bridged.keep[values.index('')]]!r}, which Unleash refuses: give "
                   f"it a value at the source, or leave the label out with labels=[...]")
        return None

    def _drop(self, reason: str, events: int, detail: str) -> None:
        if events > 0:
            self._agent.recorder.drops.add(reason, events, detail=detail)

    def count(self, name: str, bridged: Bridged, labels: Mapping[str, str], amount: int) -> None:
        """Add ``amount`` to a native counter series (in steps of at most ``MAX_SAFE``), or
        count it dropped."""
        child = self.series(name, bridged, labels, amount)
        while child is not None and amount > 0:
            step = min(amount, MAX_SAFE)
            child.inc(step)
            amount -= step

    def add_counts(self, name: str, bridged: Bridged, labels: Mapping[str, str],
                   added: tuple[tuple[int, ...], float]) -> None:
        """Add per-bucket counts and a sum to a native histogram series, or count them dropped."""
        child = self.series(name, bridged, labels, sum(added[0]))
        if child is not None:
            child.add_counts(*added)

    def fits(self, name: str, bridged: Bridged, bounds: Sequence[float], what: str) -> bool:
        """Whether ``bounds`` are the native histogram's buckets; else ``name`` is refused."""
        expected = bridged.family.buckets
        if tuple(float(b) for b in bounds) == expected:
            return True
        self.refuse(name, f"{what} has buckets {bounds}, not {expected}")
        return False

    def family(self, kind: str, name: str, help: str, label_names: Sequence[str], *,
               buckets: Sequence[float] = (), native: Optional[str] = None
               ) -> Optional[Bridged]:
        """The native ``kind`` family of a source metric (None when refused); a histogram
        has the source's finite ``buckets``."""
        key = (kind, name)
        if key in self._known:
            return self._known[key]
        keep = tuple(i for i, label in enumerate(label_names)
                     if self._allowed is None or label in self._allowed)
        mapped = [native_label(label_names[i], kind == "histogram") for i in keep]
        bridged: Optional[Bridged] = None
        try:
            if len(set(mapped)) != len(mapped):
                raise ValueError(f"its label names {list(label_names)} map to repeated "
                                 f"names {mapped}")
            target = native_name(native or name, self._prefix)
            if self._agent.metrics.get(target) is not None:
                # Defined by the app: bridging it would count it twice.
                raise ValueError(f"{target!r} is already a metric of this agent")
            help_text = help.strip() or f"{name} (from {self._source})"
            if kind == "histogram":
                family: MetricFamily[Any] = self._agent.histogram(
                    target, help_text, mapped, buckets=buckets, max_series=self._max_series)
            else:
                define = self._agent.counter if kind == "counter" else self._agent.gauge
                family = define(target, help_text, mapped, max_series=self._max_series)
            bridged = Bridged(family, tuple(label_names), keep)
        except (TypeError, ValueError) as error:
            self.refuse(name, str(error))
        self._known[key] = bridged
        return bridged
