"""The recording hot path: impactagent against prometheus_client, OpenTelemetry and Unleash.

Run from the repository root::

    python -m benchmarks.hot_path [--quick] [--json PATH]

(``python -m benchmarks`` runs these rows too, with threads, collect and a web app.)

Every operation is timed with ``timeit`` in this one process and run. A row has impactagent's
statement and one or more peers doing the same work; all sides of a row are timed in
alternation (ours, peer 1, peer 2, ours, ...), several repeats each, so a slow patch of the
machine hits every side; the table shows the median (and min-max) in nanoseconds per
operation and the ratio of impactagent's median to each peer's median
(:mod:`benchmarks.timing`).

The timed statements are source text, not lambdas: every object they use is a local of the
timing loop (bound in ``timeit``'s setup), so no extra function call is measured on any
side. The ``timeit`` loop itself costs a few ns per operation; the "empty statement" row
shows how much. How the peers are set up (offline, in memory) is in :mod:`benchmarks.peers`.

Memory per labelled series is measured with ``tracemalloc`` over 10,000 series of a counter
with one label (:mod:`benchmarks.memory`).

Installs nothing. Needs prometheus_client (in the ``dev`` and ``bench`` extras); the
OpenTelemetry and UnleashClient peers are left out when those are not installed.
"""

from __future__ import annotations

import argparse
import itertools
import operator
import sys
import threading
import time
from bisect import bisect_left
from typing import Any, Dict, List, Optional, Tuple

try:
    import prometheus_client  # peers needs it: say so before its ImportError
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit('benchmarks.hot_path needs prometheus_client: pip install -e ".[bench]"')

import impactagent
from benchmarks import peers
from benchmarks.machine import describe, machine, write_json
from benchmarks.memory import memory_rows
from benchmarks.timing import Case, Peer, make_timer, peer_table, summary, time_case, warm

__all__ = ["cases", "main", "make_timer", "run", "summary", "table"]

SERIES = 10_000  # series per memory measurement
PROM, OTEL, UNLEASH = "prometheus_client", "OpenTelemetry", "UnleashClient impact_metrics"
_ONE = 1


def cases() -> List[Case]:
    """The rows of the table, with fresh objects for every library.

    Peers whose library is missing are left out of their rows. OpenTelemetry has no bound
    series, so its "pre-bound" peer passes a prebuilt attributes dict; UnleashClient's
    impact-metrics API takes no labels but the flags of a ``MetricFlagContext``, so it is a
    peer only where no label is set.
    """
    agent = impactagent.Agent(app_name="bench")
    ours_counter = agent.counter("c", "h", labels=("route",))
    agent.define_counter("c2", "h")
    ours_plain = agent.counter("plain", "h")
    prom = peers.prometheus()
    otel = peers.otel()
    impact = peers.unleash_impact()
    three = ("method", "route", "status")
    prom_counter3 = prometheus_client.Counter("c3", "h", three,
                                              registry=prometheus_client.CollectorRegistry())
    names: Dict[str, Any] = {
        "ours_counter3": agent.counter("c3", "h", labels=three),
        "floor_family": MinimalFamily(three), "prom_counter3": prom_counter3,
        "agent": agent, "ours_counter": ours_counter,
        "ours_child": ours_counter.labels(route="/cart"), "ours_plain": ours_plain,
        "prom_plain": prom["plain"],
        "ours_histogram": agent.histogram("h", "h"), "ours_gauge": agent.gauge("g", "h"),
        "prom_counter": prom["counter"], "prom_child": prom["counter"].labels(route="/cart"),
        "prom_histogram": prom["histogram"], "prom_gauge": prom["gauge"],
        "attrs": {"route": "/cart"}, "impact": impact,
    }
    if otel is not None:
        names.update(otel_counter=otel["counter"], otel_histogram=otel["histogram"],
                     otel_gauge=otel["gauge"])

    def some(*candidates: Optional[Peer]) -> tuple:
        return tuple(peer for peer in candidates if peer is not None)

    def if_otel(stmt: str, target: Optional[float] = 0.1) -> Optional[Peer]:
        return Peer(OTEL + " " + stmt.split(".", 1)[1], stmt, target) if otel else None

    def if_impact(stmt: str) -> Optional[Peer]:
        return Peer(UNLEASH + " " + stmt.split(".", 1)[1], stmt) if impact else None

    rows = [
        Case("counter child inc() (pre-bound)", "ours_child.inc()", some(
            Peer(PROM, "prom_child.inc()", 0.35),
            if_otel("otel_counter.add(1, attrs)"),
            if_impact('impact.increment_counter("c")')), names),
        Case("counter inc() (unlabelled)", "ours_plain.inc()",
             (Peer(PROM, "prom_plain.inc()", 0.35),), names),
        Case('labels(route="/cart").inc()', 'ours_counter.labels(route="/cart").inc()', some(
            Peer(PROM, 'prom_counter.labels(route="/cart").inc()', 0.25),
            if_otel('otel_counter.add(1, {"route": "/cart"})')), names),
        Case('labels("/cart").inc() (positional)', 'ours_counter.labels("/cart").inc()',
             (Peer(PROM, 'prom_counter.labels("/cart").inc()'),), names),
        Case("histogram observe(0.31)", "ours_histogram.observe(0.31)", some(
            Peer(PROM, "prom_histogram.observe(0.31)", 0.35),
            if_otel("otel_histogram.record(0.31)"),
            if_impact('impact.observe_histogram("h", 0.31)')), names),
        Case(LABELS_3KW, 'ours_counter3.labels(method="GET", route="/cart", status="2xx").inc()',
             (Peer(MINIMAL_FAMILY, 'floor_family.labels(method="GET", route="/cart", '
                                   'status="2xx").inc()', 1.2),
              Peer(PROM, 'prom_counter3.labels(method="GET", route="/cart", status="2xx")'
                         '.inc()')), names),
        Case("gauge set(12.5)", "ours_gauge.set(12.5)", some(
            Peer(PROM, "prom_gauge.set(12.5)", 0.2),
            if_otel("otel_gauge.set(12.5)"),
            if_impact('impact.update_gauge("g", 12.5)')), names),
    ]
    if impact is not None:
        rows.append(Case('agent.increment_counter("c2") (the SDK\'s API names)',
                         'agent.increment_counter("c2")',
                         (Peer(f'{UNLEASH} increment_counter("c")',
                               'impact.increment_counter("c")'),), names))
    flags: Dict[str, Any] = {"agent": agent, "bare": _decide,
                             "decorated": agent.flag("checkout-v2")(_decide)}
    rows.append(Case(DECORATOR, 'decorated("ann")', (
        Peer("the bare function", 'bare("ann")'),
        Peer("record_flag alone", 'agent.record_flag("checkout-v2", False)')), flags))
    engine = peers.engine()
    if engine is not None:
        flags = {"agent": agent, "engine": engine}
        rows.append(Case('record_flag("new-checkout", True, "blue")',
                         'agent.record_flag("new-checkout", True, "blue")', (
            Peer("yggdrasil count_toggle", 'engine.count_toggle("new-checkout", True)', 0.15),
            Peer("yggdrasil count_toggle + count_variant",
                 'engine.count_toggle("new-checkout", True); '
                 'engine.count_variant("new-checkout", "blue")')), flags))
    floor = {"lock": threading.Lock(), "d": {"k": 0}, "k": "k",
             "histogram_floor": HistogramFloor(names["ours_histogram"].buckets).observe,
             "gauge_floor": GaugeFloor()}
    rows += [
        Case(HISTOGRAM_FLOOR, "histogram_floor(0.31)", (), floor),
        Case(GAUGE_FLOOR, "gauge_floor.set(12.5)", (), floor),
        Case("floor: lock.acquire(); d[k] += 1; lock.release()",
             "lock.acquire(); d[k] += 1; lock.release()", (), floor),
        Case("floor: d[k] += 1 (no lock)", "d[k] += 1", (), floor),
        Case("timeit loop overhead (empty statement)", "pass", (), {}),
    ]
    for case in rows:
        warm(case)
    return rows


HISTOGRAM_FLOOR = "floor: a histogram's least work (method call, bisect, lock, 2 stores)"
GAUGE_FLOOR = "floor: a gauge's least work (method call, the range checks, 1 attribute store)"
LABELS_3KW = 'labels(method=, route=, status=).inc()'
MINIMAL_FAMILY = "floor: a minimal family (count check, itemgetter key, 1 lookup, next())"
DECORATOR = '@agent.flag: decorated("ann") (a 1-line function)'
DECORATOR_TARGET = 1.5  # (decorated - bare) / record_flag alone


def _decide(user: str) -> bool:
    """The flag function of the decorator row: as cheap as a function gets."""
    return user == "beta"


def decorator_overhead(row: Dict[str, Any]) -> Dict[str, Any]:
    """What ``@agent.flag`` adds to a call (decorated minus bare, medians of the same run),
    over what ``record_flag`` alone costs, against :data:`DECORATOR_TARGET`."""
    bare, alone = (peer["result"]["median"] for peer in row["peers"])
    overhead = row["ours"]["median"] - bare
    ratio = overhead / alone
    return {"overhead_ns": overhead, "record_flag_ns": alone, "bare_ns": bare,
            "ratio": ratio, "target": DECORATOR_TARGET, "met": ratio <= DECORATOR_TARGET}


class _MinimalSeries:
    __slots__ = ("_ticks",)

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def inc(self, amount: int = 1) -> None:
        if amount is _ONE:
            next(self._ticks)
            return
        raise ValueError(amount)


class MinimalFamily:
    """The least a correct ``labels(**names).inc()`` does in pure Python: a method call that
    takes keywords, a check of their number, their values as a key in the family's order
    (one ``itemgetter`` call, which also refuses a missing name), one dict lookup, and the
    series' ``inc()`` of 1 (one ``next()``). No flags, no aliases, no series limit."""

    __slots__ = ("_count", "_key", "_lookup")

    def __init__(self, names: Tuple[str, ...]) -> None:
        self._count = len(names)
        self._key = operator.itemgetter(*names)
        self._lookup = {("GET", "/cart", "2xx"): _MinimalSeries()}

    def labels(self, **kwvalues: Any) -> _MinimalSeries:
        if len(kwvalues) != self._count:
            raise ValueError(kwvalues)
        return self._lookup[self._key(kwvalues)]


class GaugeFloor:
    """The least a gauge's ``set()`` does: a method call, the checks every number needs (an
    exact int or float within the range the server takes) and one attribute store. Nothing
    makes it safe against a racing ``inc()``: the floor, not a design."""

    __slots__ = ("_value",)

    def set(self, value: Any) -> None:
        if value.__class__ is float:
            if not -9007199254740991.0 <= value <= 9007199254740991.0:
                return
        elif value.__class__ is not int or not -9007199254740991 <= value <= 9007199254740991:
            return
        self._value = value


class HistogramFloor:
    """The least any exact, thread-safe histogram must do per observation in pure Python:
    a method call, ``bisect`` for the bucket, a lock (the count and the sum must change
    together for a collector), one count and one sum stored. No value checks, no window:
    what observe() costs above this is impactagent's own."""

    __slots__ = ("_bounds", "_counts", "_lock", "_sum")

    def __init__(self, bounds: Any) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._lock = threading.Lock()
        self._sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value


# -- report -----------------------------------------------------------------------------------


def run(quick: bool = False, memory: bool = True) -> Dict[str, Any]:
    """Every row, timed; ``memory=False`` leaves the memory rows to :mod:`benchmarks.memory`."""
    repeat, seconds, memory_repeat = (5, 0.02, 1) if quick else (9, 0.15, 3)
    started = time.perf_counter()
    rows = [time_case(case, repeat, seconds) for case in cases()]
    for row in rows:
        if row["operation"] == DECORATOR:
            row["derived"] = decorator_overhead(row)
    if memory:
        rows += memory_rows((SERIES,), {SERIES: memory_repeat}, keyword_styles=(False, True))
    return {
        "machine": machine(), "quick": quick, "repeat": repeat,
        "seconds_per_repeat": seconds, "memory_repeat": memory_repeat, "rows": rows,
        "elapsed_seconds": time.perf_counter() - started,
    }


def table(results: Dict[str, Any]) -> str:
    return peer_table(results["rows"])


def header(results: Dict[str, Any]) -> str:
    return (
        f"{describe(results['machine'])}; {results['repeat']} alternating repeats of ~"
        f"{results['seconds_per_repeat']} s per side and row"
        f"{' (--quick)' if results['quick'] else ''}; took {results['elapsed_seconds']:.0f} s"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hot_path",
        description="Time impactagent's recording hot path against its peers in one run.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter repeats (a smoke run, a few seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(header(results))
    print()
    print(table(results))
    if peers.UnleashEngine is None:
        print("\n(flag rows skipped: yggdrasil_engine is not installed)")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
