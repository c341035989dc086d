"""Cumulative readings of another library's counters and histograms, turned into deltas.

A bridge keeps the last reading of each source series and records the difference. A lower
total or a new start time is a restart: the reading counts in full, never negative. Counters
send whole units, the fraction carried until it completes one.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Generic, Hashable, Optional, Sequence, Tuple, TypeVar

_Last = TypeVar("_Last")
_Self = TypeVar("_Self", bound="_Readings[Any]")


def _whole(value: float) -> int:
    """The whole units of a total (0 for what no counter can hold: negative, NaN, inf)."""
    return math.floor(value) if math.isfinite(value) and value > 0 else 0


class _Readings(Generic[_Last]):
    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: Dict[Hashable, _Last] = {}

    def copy(self: _Self) -> _Self:
        """An independent copy (a forked child's starting point)."""
        other = type(self)()
        other._last = dict(self._last)
        return other


class CounterReadings(_Readings[Tuple[Any, float]]):
    """The last cumulative reading of each source counter series, by key."""

    __slots__ = ()

    def delta(self, key: Hashable, total: float, start: Any = None) -> int:
        """The whole units counted since the last reading of ``key`` (all for a new or
        restarted series); a different ``start`` is a restart whatever the total."""
        if not math.isfinite(total):
            return 0  # no counter holds this; keep the last good reading
        last = self._last.get(key)
        self._last[key] = (start, total)
        if last is None or last[0] != start or total < last[1]:
            return _whole(total)
        return _whole(total) - _whole(last[1])


class HistogramReadings(_Readings[Tuple[Any, Tuple[int, ...], float]]):
    """The last cumulative reading (per-bucket counts and sum) of each source histogram."""

    __slots__ = ()

    def delta(self, key: Hashable, counts: Sequence[int], total: float, start: Any = None
              ) -> Optional[Tuple[Tuple[int, ...], float]]:
        """The per-bucket counts and sum added since the last reading of ``key``, or None.
        A restart is a new ``start`` or a lower bucket (a sum may go down)."""
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
