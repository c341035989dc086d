"""The receiver's short-term memory: what each series received, in 10-second steps (a body
filed when it arrived, not by its ``bucket``), for the last hour, bounded. A metric series is a
ring of ``steps`` slots of floats, allocated whole; a flag series keeps at most ``steps`` small
dicts and ``max_variants`` variant names (the others' evaluations count in ``refused``). At most
``max_series`` series: a new one evicts one silent for an hour, else it is refused and counted.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from array import array
from typing import Any, Callable, Hashable


class SeriesStore:
    """Cells per series and step, thread-safe; see the module for the bound."""

    def __init__(self, *, step: float = 10.0, steps: int = 360, max_series: int = 1000,
                 max_variants: int = 32, clock: Callable[[], float] = time.time) -> None:
        if step <= 0 or steps < 1 or max_series < 1 or max_variants < 1:
            raise ValueError("step must be above 0 seconds, steps, max_series and "
                             "max_variants 1 or more")
        self.step = float(step)
        self.steps = steps
        self.max_series = max_series
        self.max_variants = max_variants
        self.clock = clock
        self._lock = threading.Lock()
        self._series: dict[Hashable, dict[str, Any]] = {}
        self.series_refused = 0
        self.variants_refused = 0
        self._arrivals = 0

    def step_of(self, at: float) -> int:
        """The index of the step that the moment ``at`` (seconds since 1970) falls in."""
        return math.floor(at / self.step)

    def add(self, key: Hashable, kind: str, value: Any, at: float | None = None) -> bool:
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
                series = self._series[key] = {"kind": kind, "newest": index, "bounds": (),
                                              "cells": {}}
                if kind != "flag":
                    self._allocate(series, ())
            if index <= max(series["newest"], index) - self.steps:
                return True  # older than what is kept: first, so it recreates nothing
            if kind == "histogram" and set(value["buckets"]) != set(series["bounds"]):
                # New bucket boundaries: the server recreates the series, so does the store.
                self._allocate(series, tuple(value["buckets"]))
            series["newest"] = max(series["newest"], index)
            if kind == "flag":
                cells: dict[int, Any] = series["cells"]
                for old in [i for i in cells if i <= index - self.steps]:
                    del cells[old]
                cells[index] = _merge_flag(cells.get(index), self._bounded(series, value))
                return True
            if kind == "gauge":
                self._arrivals += 1
            self._merge(series, index, kind, value)
        return True

    def _bounded(self, series: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
        """A flag's ``value``, the variants past ``max_variants`` names moved to ``refused``."""
        names = series.setdefault("variant_names", set())
        kept: dict[str, Any] = {}
        refused = 0
        for name, n in value.get("variants", {}).items():
            if name not in names and len(names) >= self.max_variants:
                refused += n
                continue
            names.add(name)
            kept[name] = n
        self.variants_refused += refused
        return {**value, "variants": kept, "refused": value.get("refused", 0) + refused}

    def _allocate(self, series: dict[str, Any], bounds: tuple[Any, ...]) -> None:
        width = {"counter": 1, "gauge": 4}.get(series["kind"], 2 + len(bounds))
        series.update(bounds=bounds, width=width, held=array("q", [_EMPTY]) * self.steps,
                      values=array("d", [0.0]) * (self.steps * width))

    def _merge(self, series: dict[str, Any], index: int, kind: str, value: Any) -> None:
        """Add ``value`` into the slot of step ``index``, emptied if it held an older step."""
        slot, width = index % self.steps, series["width"]
        values, base = series["values"], slot * width
        if series["held"][slot] != index:
            series["held"][slot] = index
            values[base:base + width] = array("d", [0.0]) * width
        if kind == "counter":
            values[base] += value
        elif kind == "gauge":
            values[base:base + 4] = array("d", [self._arrivals, value,
                                                values[base + 2] + value,
                                                values[base + 3] + 1])
        else:
            values[base] += value["count"]
            values[base + 1] += value["sum"]
            for offset, le in enumerate(series["bounds"], start=base + 2):
                values[offset] += value["buckets"].get(le, 0)

    def _evict(self, now: int) -> bool:
        """Forget one series that received nothing within the kept steps; False if none."""
        for key, series in self._series.items():
            if series["newest"] <= now - self.steps:
                del self._series[key]  # the loop ends here: the dict is not read after
                return True
        return False

    def cells(self, key: Hashable) -> dict[int, Any]:
        """A copy of ``key``'s cells by step index (empty for an unknown series)."""
        with self._lock:
            series = self._series.get(key)
            return {} if series is None else self._cells(series)

    def snapshot(self, first: int, last: int) -> list[tuple[Hashable, str, dict[int, Any]]]:
        """``(key, kind, {step index: cell})`` of every series for steps ``first`` to ``last``."""
        with self._lock:
            return [(key, s["kind"], self._cells(s, first, last))
                    for key, s in self._series.items()]

    def _cells(self, series: dict[str, Any], first: float = -math.inf,
               last: float = math.inf) -> dict[int, Any]:
        first = max(first, series["newest"] - self.steps + 1)
        if series["kind"] == "flag":
            return {i: _merge_flag(None, c) for i, c in sorted(series["cells"].items())
                    if first <= i <= last}
        width, found = series["width"], {}
        for slot, index in enumerate(series["held"]):
            if first <= index <= last:
                cell = series["values"][slot * width:(slot + 1) * width]
                found[index] = _expanded(series["kind"], cell, series["bounds"])
        return dict(sorted(found.items()))

    def size(self) -> dict[str, int]:
        """What is held (``series``, ``cells``, ``bytes``), the bounds and what they refused."""
        with self._lock:
            cells = sum(len(self._cells(s)) for s in self._series.values())
            rings = sum(len(s["values"]) * 8 + len(s["held"]) * 8
                        for s in self._series.values() if "values" in s)
            flags = sum(sys.getsizeof(c) + sys.getsizeof(c["variants"])
                        + sum(sys.getsizeof(n) + 32 for n in c["variants"])
                        for s in self._series.values() if s["kind"] == "flag"
                        for c in s["cells"].values())
            return {"series": len(self._series), "cells": cells, "bytes": rings + flags,
                    "max_series": self.max_series, "max_cells": self.max_series * self.steps,
                    "series_refused": self.series_refused,
                    "variants_refused": self.variants_refused}


#: The step index of a slot that holds none.
_EMPTY = -(2 ** 62)


def _merge_flag(cell: dict[str, Any] | None, value: dict[str, Any]) -> dict[str, Any]:
    cell = cell or {"yes": 0, "no": 0, "variants": {}, "refused": 0}
    variants = dict(cell["variants"])
    for name, n in value.get("variants", {}).items():
        variants[name] = variants.get(name, 0) + n
    return {"yes": cell["yes"] + value.get("yes", 0), "no": cell["no"] + value.get("no", 0),
            "variants": variants, "refused": cell["refused"] + value.get("refused", 0)}


def _expanded(kind: str, cell: Any, bounds: tuple[Any, ...]) -> Any:
    """A slot's floats as readers take them, whole numbers as ints: a counter's increase; a
    gauge's ``{"last": [arrival, value], "sum", "samples"}``; a histogram's ``{"count",
    "sum", "buckets"}``."""
    numbers = [int(v) if v.is_integer() else v for v in cell]
    if kind == "counter":
        return numbers[0]
    if kind == "gauge":
        return {"last": [numbers[0], numbers[1]], "sum": numbers[2], "samples": numbers[3]}
    return {"count": numbers[0], "sum": numbers[1], "buckets": dict(zip(bounds, numbers[2:]))}
