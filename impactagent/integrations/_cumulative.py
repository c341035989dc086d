"""Cumulative readings of another library's counters and histograms, turned into deltas.

``prometheus_client`` (and OpenTelemetry with cumulative temporality) report totals since a
series started. Unleash takes what changed since the last send, so a bridge keeps the last
reading of each source series and records the difference into a native series, which then
delivers it exactly once. A total lower than the last reading, or a new start time, means the
series restarted (the counter was re-created, the process restarted under the same bridge):
the new reading then counts in full from zero and nothing is ever sent negative. What the
old series counted after the last reading and before the restart is not seen by anyone, and
is lost (no reader of cumulative totals can tell it).

Counters are whole numbers in Unleash: a source counter that counts fractions
(``inc(0.5)``) is sent as the whole units of its total, so the total delivered is
``floor(total)`` at every moment, the fraction carried until it completes a unit.

>>> readings = CounterReadings()
>>> readings.delta("a", 3.0), readings.delta("a", 5.5), readings.delta("a", 6.0)
(3, 2, 1)
>>> readings.delta("a", 2.0)  # lower: restarted, so 2 since the restart
2
>>> readings.delta("a", 4.0, start=99.0), readings.delta("a", 4.0, start=99.0)
(4, 0)
"""

from __future__ import annotations

import math
from typing import Any, Dict, Hashable, Optional, Sequence, Tuple


def _whole(value: float) -> int:
    """The whole units of a total (0 for what no counter can hold: negative, NaN, inf)."""
    return math.floor(value) if math.isfinite(value) and value > 0 else 0


class CounterReadings:
    """The last cumulative reading of each source counter series, by key."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: Dict[Hashable, Tuple[Any, float]] = {}

    def delta(self, key: Hashable, total: float, start: Any = None) -> int:
        """The whole units counted since the last reading of ``key`` (all of them for a
        series seen first or restarted), remembering ``total`` as the new last reading.

        ``start`` is when the series started (prometheus_client's ``_created``,
        OpenTelemetry's start time) where the source says: a different start is a restart
        even when the total has already climbed past the last reading.
        """
        if not math.isfinite(total):
            return 0  # no counter holds this; keep the last good reading
        last = self._last.get(key)
        self._last[key] = (start, total)
        if last is None or last[0] != start or total < last[1]:
            return _whole(total)
        return _whole(total) - _whole(last[1])

    def copy(self) -> CounterReadings:
        """An independent copy (a forked child's starting point)."""
        other = CounterReadings()
        other._last = dict(self._last)
        return other


class HistogramReadings:
    """The last cumulative reading (per-bucket counts and sum) of each source histogram."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: Dict[Hashable, Tuple[Any, Tuple[int, ...], float]] = {}

    def delta(self, key: Hashable, counts: Sequence[int], total: float, start: Any = None
              ) -> Optional[Tuple[Tuple[int, ...], float]]:
        """The per-bucket counts and sum observed since the last reading of ``key`` (the
        whole reading for a series seen first or restarted), or None for nothing new.

        ``counts`` are per bucket, not cumulative. A restart shows as a new ``start`` or as
        any bucket lower than before (a sum can go down: observations may be negative).
        """
        now = tuple(counts)
        last = self._last.get(key)
        self._last[key] = (start, now, total)
        if (last is None or last[0] != start or len(last[1]) != len(now)
                or any(n < o for n, o in zip(now, last[1]))):
            added, added_sum = now, total
        else:
            added = tuple(n - o for n, o in zip(now, last[1]))
            added_sum = total - last[2]
        if not any(added):
            return None
        return added, added_sum

    def copy(self) -> HistogramReadings:
        """An independent copy (a forked child's starting point)."""
        other = HistogramReadings()
        other._last = dict(self._last)
        return other
