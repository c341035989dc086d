"""The recording core: metrics and flag counts, collected and restored as one snapshot.

No threads and no sockets live here; delivery builds on ``collect`` and ``restore``.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

from ._family import DEFAULT_MAX_SERIES
from .flags import DEFAULT_MAX_FLAGS, FlagCounts
from .registry import MetricRegistry
from .snapshot import Snapshot
from .statistics import DropCounter


class Recorder:
    """Metrics and flags that are collected together into one :class:`Snapshot`.

    ``collect()`` takes everything recorded since the last collect and ``restore(snapshot)``
    merges a snapshot that failed to send back in, so that

    - a failed send loses nothing (the next collect carries it again),
    - a successful send is never counted twice (collect moves a per-series "sent" mark),
    - recording threads are never blocked by a collect for more than one series read.
    """

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES,
                 max_flags: int = DEFAULT_MAX_FLAGS,
                 drops: Optional[DropCounter] = None) -> None:
        self.drops = drops if drops is not None else DropCounter()
        self.metrics = MetricRegistry(max_series=max_series, drops=self.drops)
        self.flags = FlagCounts(max_flags=max_flags, drops=self.drops)
        self._collect_lock = threading.Lock()

    def collect(self) -> Snapshot:
        """Take the deltas since the last collect and the flag window ending now."""
        with self._collect_lock:
            start, stop, toggles = self.flags.take()
            return Snapshot(start, stop, toggles, self.metrics.take())

    def restore(self, snapshot: Snapshot) -> None:
        """Merge a snapshot that was not delivered back in (add deltas, keep newer gauges)."""
        with self._collect_lock:
            self.flags.give_back(snapshot.start, snapshot.toggles)
            self.metrics.give_back(snapshot.metrics)

    def reset_after_fork(self) -> None:
        """Start a forked child empty, with new locks; the parent sends what it recorded."""
        self._collect_lock = threading.Lock()
        self.drops.reset_after_fork()
        self.flags.reset_after_fork()
        self.metrics.reset_after_fork()

    def pending_events(self) -> int:
        """Events recorded but not yet handed to a collect (or given back after a failure)."""
        pending = 0
        for family in self.metrics.families():
            for child in family.series():
                pending += child.pending_events()
        return pending + self.flags.pending_events()

    def recorded(self) -> Dict[str, int]:
        """Totals recorded since start: counter increments, observations, flag evaluations."""
        totals = {"counter_increments": 0, "histogram_observations": 0, "gauge_series": 0,
                  "flag_evaluations": 0}
        for family in self.metrics.families():
            for child in family.series():
                if family.kind == "counter":
                    totals["counter_increments"] += child.value
                elif family.kind == "histogram":
                    totals["histogram_observations"] += child.count
                else:
                    totals["gauge_series"] += 1
        for stats in self.flags.cumulative().values():
            totals["flag_evaluations"] += stats.yes + stats.no
        return totals
