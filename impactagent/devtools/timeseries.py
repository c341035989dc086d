"""The receiver's short-term memory: what each series received, in 10-second steps, for the
last hour, bounded.

The hourly bins of :class:`~impactagent.devtools.received.ReceivedMetrics` answer "how many
in total"; a chart needs "how many when". So every accepted body is also filed here, at the
moment it arrived (the receiver's clock, not the body's ``bucket``: a development session
watches what arrives now), into the *step* that moment falls in::

    step index = floor(arrival time / step seconds)

A *cell* is what one series received in one step, as the server would add it up:

- a counter: the sum of its deltas (``increase``);
- a gauge: the last value set with its arrival number (counted across the whole store, it
  says which came last among a flag variant's several series), the sum of the values set
  and how many (for the average);
- a histogram: the sum of its ``count``, ``sum`` and of each bucket's cumulative count;
- a flag: ``yes``, ``no`` and each variant's count.

The memory bound. A series keeps the cells of at most ``steps`` steps (360: an hour of 10 s
steps); a cell older than that is dropped when the series gets a newer one, and never read.
At most ``max_series`` series (1000) are kept: a new series beyond that first evicts one
that received nothing for an hour, else it is not stored and counted in
:attr:`SeriesStore.series_refused`. So the store holds at most ``steps x max_series``
cells (360,000). A counter cell is one number, a gauge cell four, a flag cell two plus one
per variant, a histogram cell two plus one per bucket boundary (those the bodies sent,
bounded by the 100 kB body limit).

>>> store = SeriesStore(step=10, steps=3, clock=lambda: 0)
>>> for at in (0, 5, 12, 25, 31, 47):
...     _ = store.add(("metric", "shop", "jobs_total", "counter", frozenset()), "counter", 1, at)
>>> sorted(store.cells(("metric", "shop", "jobs_total", "counter", frozenset())))
[2, 3, 4]
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple

#: Seconds per step.
STEP = 10.0
#: Steps kept per series: one hour of 10-second steps.
STEPS = 360
#: Series kept at most (flags and metrics together).
MAX_SERIES = 1000

Cell = Any


class SeriesStore:
    """Cells per series and step, thread-safe; see the module for the bound."""

    def __init__(self, *, step: float = STEP, steps: int = STEPS,
                 max_series: int = MAX_SERIES,
                 clock: Callable[[], float] = time.time) -> None:
        if step <= 0 or steps < 1 or max_series < 1:
            raise ValueError("step must be above 0 seconds, steps and max_series 1 or more")
        self.step = float(step)
        self.steps = steps
        self.max_series = max_series
        self.clock = clock
        self._lock = threading.Lock()
        self._series: Dict[Hashable, Dict[str, Any]] = {}  # key -> {"kind", "cells"}
        self.series_refused = 0
        self._arrivals = 0

    def step_of(self, at: float) -> int:
        """The index of the step that the moment ``at`` (seconds since 1970) falls in."""
        return math.floor(at / self.step)

    def add(self, key: Hashable, kind: str, value: Any, at: Optional[float] = None) -> bool:
        """File ``value`` (a counter's delta, a gauge's value, a histogram sample
        ``{"count", "sum", "buckets": {le: n}}``, a flag's ``{"yes", "no", "variants"}``) for
        series ``key`` of ``kind`` at ``at`` (default: now); False if the store is full."""
        index = self.step_of(self.clock() if at is None else at)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series and not self._evict(index):
                    self.series_refused += 1
                    return False
                series = self._series[key] = {"kind": kind, "cells": {}, "newest": index}
            cells: Dict[int, Cell] = series["cells"]
            if index not in cells:
                for old in [i for i in cells if i <= index - self.steps]:
                    del cells[old]
            series["newest"] = max(series["newest"], index)
            if index > series["newest"] - self.steps:  # a late arrival older than kept: gone
                if kind == "gauge":
                    self._arrivals += 1
                    value = [self._arrivals, value]
                cells[index] = _merge(kind, cells.get(index), value)
        return True

    def _evict(self, now: int) -> bool:
        """Forget one series that received nothing within the kept steps; False if none."""
        for key, series in self._series.items():
            if series["newest"] <= now - self.steps:
                del self._series[key]
                return True
        return False

    # -- reading ------------------------------------------------------------------------------

    def cells(self, key: Hashable) -> Dict[int, Cell]:
        """A copy of ``key``'s cells by step index (empty for an unknown series)."""
        with self._lock:
            series = self._series.get(key)
            return {} if series is None else {i: _copy(c) for i, c in series["cells"].items()}

    def snapshot(self, first: int, last: int
                 ) -> List[Tuple[Hashable, str, Dict[int, Cell]]]:
        """Every series with its cells of steps ``first`` to ``last`` (inclusive), copied at
        one moment: ``(key, kind, {step index: cell})``."""
        with self._lock:
            return [(key, s["kind"], {i: _copy(c) for i, c in s["cells"].items()
                                      if first <= i <= last})
                    for key, s in self._series.items()]

    def size(self) -> Dict[str, int]:
        """How much is held: ``series``, ``cells``, and the bounds ``max_series`` and
        ``max_cells`` (``steps x max_series``); ``series_refused`` beyond the bound."""
        with self._lock:
            return {"series": len(self._series),
                    "cells": sum(len(s["cells"]) for s in self._series.values()),
                    "max_series": self.max_series, "max_cells": self.max_series * self.steps,
                    "series_refused": self.series_refused}


def _merge(kind: str, cell: Optional[Cell], value: Any) -> Cell:
    """``cell`` with ``value`` added, as the series' kind adds."""
    if kind == "counter":
        return (cell or 0) + value
    if kind == "gauge":
        cell = cell or {"last": None, "sum": 0, "samples": 0}  # value: [arrival, value]
        return {"last": value, "sum": cell["sum"] + value[1], "samples": cell["samples"] + 1}
    if kind == "histogram":
        cell = cell or {"count": 0, "sum": 0, "buckets": {}}
        buckets = dict(cell["buckets"])
        for le, n in value["buckets"].items():
            buckets[le] = buckets.get(le, 0) + n
        return {"count": cell["count"] + value["count"], "sum": cell["sum"] + value["sum"],
                "buckets": buckets}
    cell = cell or {"yes": 0, "no": 0, "variants": {}}
    variants = dict(cell["variants"])
    for name, n in value.get("variants", {}).items():
        variants[name] = variants.get(name, 0) + n
    return {"yes": cell["yes"] + value.get("yes", 0), "no": cell["no"] + value.get("no", 0),
            "variants": variants}


def _copy(cell: Cell) -> Cell:
    if isinstance(cell, dict):
        return {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
                for k, v in cell.items()}
    return cell
