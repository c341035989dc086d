"""The recording hot path: impactagent against prometheus_client and Unleash's engine.

Run from the repository root:  python -m benchmarks.hot_path [--quick] [--json PATH]

Every operation is timed with ``timeit`` in this one process and run, several repeats each;
the table shows the median (and min-max) in nanoseconds per operation, and the ratio of
impactagent's median to the peer's. Memory per labelled series is measured with
``tracemalloc`` over 10,000 series whose label strings exist before measuring starts.
Installs nothing: needs ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import timeit
import tracemalloc
from typing import Callable, Dict, List, Optional, Tuple

import prometheus_client

import impactagent

try:
    from yggdrasil_engine.engine import UnleashEngine
except ImportError:  # UnleashClient not installed: the flag rows are skipped
    UnleashEngine = None


def time_ns(operation: Callable[[], object], number: int, repeat: int) -> List[float]:
    """Nanoseconds per call of ``operation``, one value per repeat."""
    timer = timeit.Timer(operation)
    return [t / number * 1e9 for t in timer.repeat(repeat=repeat, number=number)]


def _prometheus():
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("c", "h", ["route"], registry=registry)
    return {
        "counter": counter,
        "child": counter.labels(route="/cart"),
        "histogram": prometheus_client.Histogram("h", "h", registry=registry),
        "gauge": prometheus_client.Gauge("g", "h", registry=registry),
    }


def _impactagent():
    agent = impactagent.Agent(app_name="bench")
    counter = agent.counter("c", "h", labels=("route",))
    return {
        "agent": agent,
        "counter": counter,
        "child": counter.labels(route="/cart"),
        "histogram": agent.histogram("h", "h"),
        "gauge": agent.gauge("g", "h"),
    }


def operations() -> List[Tuple[str, Callable, str, Optional[Callable], float]]:
    """(name, impactagent op, peer name, peer op, target ratio) for each row."""
    ours, prom = _impactagent(), _prometheus()
    rows = [
        ("counter inc() pre-bound", ours["child"].inc, "prometheus_client",
         prom["child"].inc, 0.6),
        ("labels(route=...).inc()", lambda: ours["counter"].labels(route="/cart").inc(),
         "prometheus_client", lambda: prom["counter"].labels(route="/cart").inc(), 0.4),
        ("histogram observe()", lambda: ours["histogram"].observe(0.31),
         "prometheus_client", lambda: prom["histogram"].observe(0.31), 0.6),
        ("gauge set()", lambda: ours["gauge"].set(12.5), "prometheus_client",
         lambda: prom["gauge"].set(12.5), 0.6),
    ]
    record_flag = ours["agent"].record_flag
    if UnleashEngine is not None:
        engine = UnleashEngine()
        rows.append(("record_flag(name, True)", lambda: record_flag("new-checkout", True),
                     "yggdrasil count_toggle",
                     lambda: engine.count_toggle("new-checkout", True), 0.3))

        def engine_variant() -> None:
            engine.count_toggle("new-checkout", True)
            engine.count_variant("new-checkout", "blue")

        rows.append(("record_flag(name, True, 'blue')",
                     lambda: record_flag("new-checkout", True, "blue"),
                     "count_toggle + count_variant", engine_variant, 0.3))
    lock, cells = threading.Lock(), {"k": 0}

    def locked_floor() -> None:
        lock.acquire()
        cells["k"] += 1
        lock.release()

    def unlocked_floor() -> None:
        cells["k"] += 1

    rows.append(("floor: lock + dict += 1", locked_floor, "", None, 0))
    rows.append(("floor: dict += 1", unlocked_floor, "", None, 0))
    return rows


def bytes_per_series(make: Callable[[List[str]], object], n: int = 10_000) -> float:
    """Allocated bytes per series for ``make(values)``, label strings made beforehand."""
    values = [f"user-{i:06d}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = make(values)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del kept
    stats = after.compare_to(before, "filename")
    return sum(s.size_diff for s in stats) / n


def _ours_positional(values: List[str]) -> object:
    counter = impactagent.Counter("m", "h", labels=("user",), max_series=len(values))
    for value in values:
        counter.labels(value).inc()
    return counter


def _ours_keyword(values: List[str]) -> object:
    counter = impactagent.Counter("m", "h", labels=("user",), max_series=len(values))
    for value in values:
        counter.labels(user=value).inc()
    return counter


def _prometheus_series(values: List[str]) -> object:
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("m", "h", ["user"], registry=registry)
    for value in values:
        counter.labels(user=value).inc()
    return registry


def run(quick: bool = False) -> Dict[str, object]:
    number, repeat = (50_000, 5) if quick else (300_000, 9)
    results: Dict[str, object] = {"number": number, "repeat": repeat, "rows": [],
                                  "memory": {}}
    for name, ours, peer_name, peer, target in operations():
        ours_ns = time_ns(ours, number, repeat)
        row = {"operation": name, "ns": statistics.median(ours_ns), "min": min(ours_ns),
               "max": max(ours_ns), "peer": peer_name, "target": target}
        if peer is not None:
            peer_ns = time_ns(peer, number, repeat)
            row.update(peer_ns=statistics.median(peer_ns), ratio=row["ns"] /
                       statistics.median(peer_ns))
        results["rows"].append(row)  # type: ignore[attr-defined]
    results["memory"] = {
        "impactagent labels(value)": bytes_per_series(_ours_positional),
        "impactagent labels(user=value)": bytes_per_series(_ours_keyword),
        "prometheus_client labels(user=value)": bytes_per_series(_prometheus_series),
    }
    return results


def table(results: Dict[str, object]) -> str:
    lines = ["| operation | impactagent ns (median, min-max) | peer | peer ns | ratio | target "
             "| met |", "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:  # type: ignore[attr-defined]
        ours = f"{row['ns']:.0f} ({row['min']:.0f}-{row['max']:.0f})"
        if "ratio" in row:
            met = "yes" if row["ratio"] <= row["target"] else "no"
            lines.append(f"| {row['operation']} | {ours} | {row['peer']} | "
                         f"{row['peer_ns']:.0f} | {row['ratio']:.2f}x | <= {row['target']}x "
                         f"| {met} |")
        else:
            lines.append(f"| {row['operation']} | {ours} | | | | | |")
    lines += ["", "| memory per labelled series (10,000 series) | bytes | target |",
              "|---|---|---|"]
    for name, size in results["memory"].items():  # type: ignore[attr-defined]
        target = "<= 200" if name.startswith("impactagent") else ""
        lines.append(f"| {name} | {size:.0f} | {target} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
