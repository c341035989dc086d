"""Metrics and flag counts, collected and restored as one snapshot (no threads, no I/O)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ._family import DEFAULT_MAX_SERIES
from .flags import DEFAULT_MAX_FLAGS, FlagCounts
from .registry import MetricRegistry
from .snapshot import Snapshot
from .statistics import DropCounter

logger = logging.getLogger(__name__)

CollectHook = Callable[[], None]


class Recorder:
    """Metrics and flags collected together into one :class:`Snapshot`, and restored when
    it was not delivered: nothing lost or counted twice."""

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES,
                 max_flags: int = DEFAULT_MAX_FLAGS, drops: DropCounter | None = None) -> None:
        self.drops = drops if drops is not None else DropCounter()
        self.metrics = MetricRegistry(max_series=max_series, drops=self.drops)
        self.flags = FlagCounts(max_flags=max_flags, drops=self.drops)
        self._collect_lock = threading.Lock()
        self._hooks: list[CollectHook] = []
        self.collect_hook_errors = 0
        self._hook_errors_logged: set[tuple[int, str]] = set()

    def add_collect_hook(self, hook: CollectHook) -> None:
        """Run ``hook()`` at the start of every :meth:`collect`, under its lock: the seam for
        bridged metrics. One that raises is logged, counted and skipped."""
        if not callable(hook):
            raise TypeError(f"a collect hook must be callable, got {type(hook).__name__}")
        with self._collect_lock:
            self._hooks.append(hook)

    def remove_collect_hook(self, hook: CollectHook) -> None:
        """Stop running ``hook``."""
        with self._collect_lock:
            self._hooks.remove(hook)

    def _run_hooks(self) -> None:
        for hook in self._hooks:
            try:
                hook()
            except Exception as error:  # a broken bridge must not stop delivery
                self.collect_hook_errors += 1
                key = (id(hook), type(error).__name__)
                if key not in self._hook_errors_logged:
                    self._hook_errors_logged.add(key)
                    logger.exception("collect hook %r raised; the collect goes on without it "
                                     "(later errors like it are only counted)", hook)

    def collect(self) -> Snapshot:
        """Run the hooks, then take the deltas and the flag window ending now."""
        with self._collect_lock:
            self._run_hooks()
            start, stop, toggles = self.flags.take()
            return Snapshot(start, stop, toggles, self.metrics.take())

    def restore(self, snapshot: Snapshot) -> None:
        """Merge back a snapshot that was not delivered."""
        with self._collect_lock:
            self.flags.give_back(snapshot.start, snapshot.stop, snapshot.toggles)
            self.metrics.give_back(snapshot.metrics)

    def write_off(self) -> int:
        """Take everything still pending and return its events, for a closing agent to count
        as not delivered: what no body carries any more (recorded since the last collect, or
        flag counts held for a later hour). Taken, it is never counted twice."""
        with self._collect_lock:
            return sum(delta.events for delta in self.metrics.take()) + self.flags.write_off()

    def reset_after_fork(self) -> None:
        """Start a forked child empty, with new locks; the parent sends what it recorded."""
        self._collect_lock = threading.Lock()
        self.drops.reset_after_fork()
        self.flags.reset_after_fork()
        self.metrics.reset_after_fork()

    def pending_events(self) -> int:
        """Events recorded and not yet taken."""
        pending: int = sum(child.pending_events() for family in self.metrics.families()
                           for child in family.series())
        return pending + self.flags.pending_events()

    def recorded(self) -> dict[str, int]:
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
        totals["flag_evaluations"] = sum(t.yes + t.no for t in self.flags.cumulative().values())
        return totals
