"""Memory per labelled series: impactagent, prometheus_client and OpenTelemetry.

Each library fills a counter with one label with N series (one ``inc()``/``add(1)`` each);
``tracemalloc.get_traced_memory()`` before and after (after a ``gc.collect()``), divided by N,
is what one series costs. These are bytes Python allocated and still holds (objects, tuples,
dict and list storage), not RSS, and not memory a C extension allocates on its own (none of
the three libraries records in C). The label strings and the metric family exist before
tracing starts, so no library is charged for them; each run checks that the library really
holds N series of value 1, so a library that dropped or folded series would fail loudly.
"""

from __future__ import annotations

import gc
import itertools
import sys
import tracemalloc
from typing import Any, Callable, Dict, List, Sequence

import prometheus_client

import impactagent
from benchmarks import peers
from benchmarks.timing import summary

TARGET_BYTES = 175  # bytes per series, impactagent
FLOOR = "floor: a dict from a one-tuple key to an itertools.count"


def traced_bytes(fill: Callable[[], Any]) -> int:
    """Bytes allocated by ``fill()`` and still held afterwards, per ``tracemalloc``."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def fill_bytes(labels: Any, values: List[str], keyword: bool) -> int:
    """Bytes allocated by one ``labels(...).inc()`` per value, by keyword or by position."""

    def fill() -> None:
        if keyword:
            for value in values:
                labels(route=value).inc()
        else:
            for value in values:
                labels(value).inc()

    return traced_bytes(fill)


def ours_series(agent: impactagent.Agent, name: str, values: List[str],
                keyword: bool) -> int:
    counter = agent.counter(name, "h", labels=("route",), max_series=len(values))
    size = fill_bytes(counter.labels, values, keyword)
    series = counter.series()
    if len(series) != len(values) or any(child.value != 1 for child in series):
        raise RuntimeError(f"impactagent did not create {len(values)} series of value 1")
    return size


def prom_series(values: List[str], keyword: bool) -> int:
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("m", "h", ["route"], registry=registry)
    size = fill_bytes(counter.labels, values, keyword)
    samples = [s for m in registry.collect() for s in m.samples if s.name == "m_total"]
    if len(samples) != len(values) or any(s.value != 1 for s in samples):
        raise RuntimeError(f"prometheus_client did not create {len(values)} series of value 1")
    return size


def otel_series(values: List[str]) -> int:
    """OpenTelemetry has no bound series: ``add(1, {"route": v})`` is how a series is made."""
    meter = peers.otel()
    assert meter is not None
    counter = meter["counter"]

    def fill() -> None:
        for value in values:
            counter.add(1, {"route": value})

    size = traced_bytes(fill)
    if peers.otel_series(meter["reader"], "c") != len(values):
        raise RuntimeError(f"OpenTelemetry did not hold {len(values)} series")
    meter["provider"].shutdown()
    return size


def floor_series(values: List[str]) -> int:
    """The same design at its least: each series a one-tuple key in a dict, its value an
    ``itertools.count`` advanced once (no series object, no list of series)."""

    def fill() -> Dict[Any, Any]:
        lookup = {}
        for value in values:
            ticks = itertools.count()
            next(ticks)
            lookup[(value,)] = ticks
        return lookup

    held: List[Any] = []
    size = traced_bytes(lambda: held.append(fill()))
    if len(held[0]) != len(values):
        raise RuntimeError(f"the floor did not hold {len(values)} series")
    return size


def series_breakdown() -> Dict[str, Any]:
    """What a labelled series holds beyond the floor's bare ``itertools.count``: its slots
    (``sys.getsizeof`` of a series less that of a count) and their names. The rest of what
    it costs over the floor is its place in the family's list of series."""
    agent = impactagent.Agent(app_name="bench-memory-breakdown")
    series = agent.counter("m_breakdown", "h", labels=("route",)).labels("/breakdown")
    names = [name for cls in type(series).__mro__ for name in getattr(cls, "__slots__", ())]
    return {"slot_bytes": sys.getsizeof(series) - sys.getsizeof(itertools.count()),
            "slots": names}


def cause(row: Dict[str, Any], breakdown: Dict[str, Any]) -> str:
    """Why a memory row is over its target: the floor, and what a series adds to it."""
    floor = [p["result"]["median"] for p in row["peers"] if p["name"] == FLOOR]
    if not floor or not breakdown:
        return ""
    added = row["ours"]["median"] - floor[0]
    slots = breakdown["slot_bytes"]
    return (f"; cause: the floor alone is {floor[0]:.0f} B; a series adds {added:.0f} B to "
            f"it: {slots} B for its {len(breakdown['slots'])} slots over a bare count "
            f"({', '.join(breakdown['slots'])}) and {added - slots:.0f} B for its place in "
            "the family's list of series")


def memory_rows(sizes: Sequence[int], repeat: Dict[int, int],
                keyword_styles: Sequence[bool] = (False,)) -> List[Dict[str, Any]]:
    """Bytes per series for each size (``repeat[size]`` fills each) and label style."""
    rows = []
    agent = impactagent.Agent(app_name="bench-memory")
    with_otel = peers.MeterProvider is not None
    for size in sizes:
        for keyword in keyword_styles:
            call = "labels(route=v).inc()" if keyword else "labels(v).inc()"
            measured: Dict[str, List[float]] = {"impactagent": [], FLOOR: [],
                                                "prometheus_client": []}
            if with_otel and not keyword:
                measured["OpenTelemetry add(1, {route: v})"] = []
            for attempt in range(repeat[size]):
                # New strings per attempt, made before tracing starts.
                values = [f"/route/{keyword:d}/{attempt}/{i:06d}" for i in range(size)]
                measured["impactagent"].append(ours_series(
                    agent, f"m_{size}_{keyword:d}_{attempt}", values, keyword) / size)
                measured[FLOOR].append(floor_series(values) / size)
                measured["prometheus_client"].append(prom_series(values, keyword) / size)
                if len(measured) == 4:
                    measured["OpenTelemetry add(1, {route: v})"].append(
                        otel_series(values) / size)
                del values
            ours = summary(measured.pop("impactagent"))
            results = {name: summary(values) for name, values in measured.items()}
            rows.append({
                "operation": f"memory per series, {size:,} x {call}", "unit": "B",
                "series": size, "ours": ours, "target_bytes": TARGET_BYTES,
                "met": ours["median"] <= TARGET_BYTES,
                "peers": [{"name": name, "result": result,
                           "ratio": ours["median"] / result["median"], "target": None,
                           "met": None} for name, result in results.items()],
            })
    return rows

