"""The recording hot path: impactagent against prometheus_client and Unleash's engine.

Run from the repository root::

    python -m benchmarks.hot_path [--quick] [--json PATH]

Every operation is timed with ``timeit`` in this one process and run. Each row's two sides
are timed in alternation (ours, peer, ours, peer, ...), several repeats each, so a slow
patch of the machine hits both; the table shows the median (and min-max) in nanoseconds per
operation and the ratio of impactagent's median to the peer's median.

The timed statements are source text, not lambdas: every object they use is a local of the
timing loop (bound in ``timeit``'s setup), so no extra function call is measured on either
side. The ``timeit`` loop itself costs a few ns per operation; the "empty statement" row
shows how much.

Memory per labelled series is measured with ``tracemalloc`` (bytes Python allocated and
still holds) over 10,000 series of a counter with one label; the label strings and the
metric family exist before tracing starts, so neither library is charged for them.

Installs nothing. Needs prometheus_client (in the ``dev`` and ``bench`` extras); the flag
rows need UnleashClient's engine (``yggdrasil-engine``) and are skipped without it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
import timeit
import tracemalloc
from importlib import metadata
from typing import Any, Callable, Dict, List, NamedTuple, Optional

try:
    import prometheus_client
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit('benchmarks.hot_path needs prometheus_client: pip install -e ".[dev]"')

import impactagent

try:
    from yggdrasil_engine.engine import UnleashEngine
except ImportError:  # pragma: no cover - UnleashClient not installed: no flag rows
    UnleashEngine = None

SERIES = 10_000  # series per memory measurement
MEMORY_TARGET = 200  # bytes per series, impactagent


class Case(NamedTuple):
    """One row: an impactagent statement, its peer's statement and the target ratio."""

    operation: str
    ours: str  # statement for timeit
    peer_name: str
    peer: Optional[str]
    target: Optional[float]  # impactagent median / peer median must be <= this
    names: Dict[str, Any]  # the objects the statements use, bound as loop locals


def make_timer(stmt: str, names: Dict[str, Any]) -> timeit.Timer:
    """A ``timeit.Timer`` for ``stmt`` whose names are locals of the timing function."""
    setup = "\n".join(f"{name} = _bench_{name}" for name in names) or "pass"
    return timeit.Timer(stmt, setup=setup,
                        globals={f"_bench_{name}": obj for name, obj in names.items()})


def calibrate(timer: timeit.Timer, seconds: float) -> int:
    """The number of loops that makes one repeat of ``timer`` take about ``seconds``."""
    number = 1000
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= 0.02 or number >= 10_000_000:
            break
        number *= 10
    return max(1000, int(number * seconds / elapsed))


def cases() -> List[Case]:
    """The rows of the table, with fresh objects for both libraries."""
    agent = impactagent.Agent(app_name="bench")
    ours_counter = agent.counter("c", "h", labels=("route",))
    registry = prometheus_client.CollectorRegistry()
    prom_counter = prometheus_client.Counter("c", "h", ["route"], registry=registry)
    names: Dict[str, Any] = {
        "ours_counter": ours_counter,
        "ours_child": ours_counter.labels(route="/cart"),
        "ours_histogram": agent.histogram("h", "h"),
        "ours_gauge": agent.gauge("g", "h"),
        "agent": agent,
        "prom_counter": prom_counter,
        "prom_child": prom_counter.labels(route="/cart"),
        "prom_histogram": prometheus_client.Histogram("h", "h", registry=registry),
        "prom_gauge": prometheus_client.Gauge("g", "h", registry=registry),
    }
    prom = "prometheus_client"
    rows = [
        Case("counter child inc() (pre-bound)", "ours_child.inc()", prom, "prom_child.inc()",
             0.6, names),
        Case('labels(route="/cart").inc()', 'ours_counter.labels(route="/cart").inc()', prom,
             'prom_counter.labels(route="/cart").inc()', 0.4, names),
        Case('labels("/cart").inc() (positional)', 'ours_counter.labels("/cart").inc()', prom,
             'prom_counter.labels("/cart").inc()', None, names),
        Case("histogram observe(0.31)", "ours_histogram.observe(0.31)", prom,
             "prom_histogram.observe(0.31)", 0.6, names),
        Case("gauge set(12.5)", "ours_gauge.set(12.5)", prom, "prom_gauge.set(12.5)", 0.6,
             names),
    ]
    if UnleashEngine is not None:
        flags = {"agent": agent, "engine": UnleashEngine()}
        record = 'agent.record_flag("new-checkout", True, "blue")'
        rows.append(Case('record_flag("new-checkout", True, "blue")', record,
                         "yggdrasil count_toggle",
                         'engine.count_toggle("new-checkout", True)', 0.3, flags))
        rows.append(Case('record_flag("new-checkout", True, "blue")', record,
                         "yggdrasil count_toggle + count_variant",
                         'engine.count_toggle("new-checkout", True); '
                         'engine.count_variant("new-checkout", "blue")', None, flags))
    floor = {"lock": threading.Lock(), "d": {"k": 0}, "k": "k"}
    rows += [
        Case("floor: lock.acquire(); d[k] += 1; lock.release()",
             "lock.acquire(); d[k] += 1; lock.release()", "", None, None, floor),
        Case("floor: d[k] += 1 (no lock)", "d[k] += 1", "", None, None, floor),
        Case("timeit loop overhead (empty statement)", "pass", "", None, None, {}),
    ]
    # One call each before timing: series and flags exist, so no row times a first call.
    for case in rows:
        for stmt in (case.ours, case.peer):
            if stmt is not None:
                make_timer(stmt, case.names).timeit(1)
    return rows


def summary(ns: List[float]) -> Dict[str, Any]:
    return {"median": statistics.median(ns), "min": min(ns), "max": max(ns), "all": ns}


def time_case(case: Case, repeat: int, seconds: float) -> Dict[str, Any]:
    """Time both sides of ``case``, alternating repeats; nanoseconds per operation."""
    sides = [("ours", case.ours)] + ([("peer", case.peer)] if case.peer is not None else [])
    timers = {side: make_timer(stmt, case.names) for side, stmt in sides}
    numbers = {side: calibrate(timer, seconds) for side, timer in timers.items()}
    ns: Dict[str, List[float]] = {side: [] for side in timers}
    for _ in range(repeat):
        for side, timer in timers.items():
            number = numbers[side]
            ns[side].append(timer.timeit(number) / number * 1e9)
    row: Dict[str, Any] = {
        "operation": case.operation, "ours_stmt": case.ours, "peer": case.peer_name,
        "peer_stmt": case.peer, "target": case.target, "unit": "ns",
        "number": numbers["ours"], "ours": summary(ns["ours"]),
    }
    if "peer" in ns:
        row["peer_number"] = numbers["peer"]
        row["peer_result"] = summary(ns["peer"])
        row["ratio"] = row["ours"]["median"] / row["peer_result"]["median"]
        if case.target is not None:
            row["met"] = row["ratio"] <= case.target
    return row


# -- memory per series ------------------------------------------------------------------------


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


def memory_rows(repeat: int) -> List[Dict[str, Any]]:
    """Bytes per labelled series, positional and keyword labels, both libraries."""
    rows = []
    agent = impactagent.Agent(app_name="bench-memory")
    for keyword in (False, True):
        call = "labels(route=v).inc()" if keyword else "labels(v).inc()"
        ours: List[float] = []
        peer: List[float] = []
        for attempt in range(repeat):
            # New strings per attempt, made before tracing starts.
            values = [f"/route/{keyword:d}/{attempt}/{i:05d}" for i in range(SERIES)]
            ours.append(ours_series(agent, f"m_{keyword:d}_{attempt}", values, keyword)
                        / SERIES)
            peer.append(prom_series(values, keyword) / SERIES)
            del values
        row: Dict[str, Any] = {
            "operation": f"memory per series, {SERIES:,} x {call}", "unit": "B",
            "peer": "prometheus_client", "target_bytes": MEMORY_TARGET,
            "ours": summary(ours), "peer_result": summary(peer),
        }
        row["ratio"] = row["ours"]["median"] / row["peer_result"]["median"]
        row["met"] = row["ours"]["median"] <= MEMORY_TARGET
        rows.append(row)
    return rows


# -- report -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> Dict[str, Any]:
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "implementation": platform.python_implementation(), "nproc": os.cpu_count(),
        "cpu": cpu_model(), "impactagent": impactagent.__version__,
        "prometheus_client": version("prometheus_client"),
        "UnleashClient": version("UnleashClient"),
        "yggdrasil-engine": version("yggdrasil-engine"),
    }


def run(quick: bool = False) -> Dict[str, Any]:
    repeat, seconds, memory_repeat = (5, 0.02, 1) if quick else (9, 0.15, 3)
    started = time.perf_counter()
    rows = [time_case(case, repeat, seconds) for case in cases()]
    rows += memory_rows(memory_repeat)
    return {
        "machine": machine(), "quick": quick, "repeat": repeat,
        "seconds_per_repeat": seconds, "memory_repeat": memory_repeat, "rows": rows,
        "elapsed_seconds": time.perf_counter() - started,
    }


def _cell(result: Dict[str, Any], unit: str) -> str:
    return f"{result['median']:.0f} {unit} ({result['min']:.0f}-{result['max']:.0f})"


def table(results: Dict[str, Any]) -> str:
    lines = [
        "| operation | impactagent ns (median, min-max) | peer | peer ns (median, min-max) "
        "| ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        unit = row["unit"]
        ours = _cell(row["ours"], unit)
        peer = _cell(row["peer_result"], unit) if "peer_result" in row else ""
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        if unit == "B":
            target = f"<= {row['target_bytes']} B"
        elif row.get("target") is not None:
            target = f"<= {row['target']}"
        else:
            target = "(context)" if "ratio" in row else ""
        met = {True: "yes", False: "**no**"}.get(row.get("met"), "")  # type: ignore[arg-type]
        lines.append(f"| {row['operation']} | {ours} | {row['peer']} | {peer} | {ratio} "
                     f"| {target} | {met} |")
    return "\n".join(lines)


def header(results: Dict[str, Any]) -> str:
    m = results["machine"]
    return (
        f"{m['platform']}, {m['implementation']} {m['python']}, {m['nproc']} cores "
        f"({m['cpu']}); impactagent {m['impactagent']}, prometheus_client "
        f"{m['prometheus_client']}, UnleashClient {m['UnleashClient']}, yggdrasil-engine "
        f"{m['yggdrasil-engine']}; {results['repeat']} repeats of ~"
        f"{results['seconds_per_repeat']} s per side and row"
        f"{' (--quick)' if results['quick'] else ''}; memory: {SERIES:,} series, "
        f"{results['memory_repeat']} repeat(s); took {results['elapsed_seconds']:.0f} s"
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
    if UnleashEngine is None:
        print("\n(flag rows skipped: yggdrasil_engine is not installed)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
