"""Recording from 1, 2 and 4 threads at once: total throughput, impactagent vs prometheus_client.

Each run splits a fixed number of operations evenly over N threads that start together
(a barrier) and all record into the same counter: ``child.inc()`` on one pre-bound series,
or ``counter.labels(route="/cart").inc()`` (a lookup, then the increment). Throughput is the
total operations over the wall time from the barrier to the last join. Both libraries run
the same loop function (their APIs agree here), alternating, several repeats each; every run
checks that the series ends at exactly the number of increments, so a lost update under
contention would fail loudly.

On CPython with the GIL only one thread runs Python at a time, so more threads cannot add
throughput: the numbers show what contention costs (lock hand-offs, the GIL passing between
threads every ``sys.getswitchinterval()``), not parallel speed-up. impactagent's ``inc()`` of
1 takes no lock on a GIL build (one ``next()`` on an ``itertools.count``), prometheus_client
takes its series lock. On a free-threaded build impactagent takes its series lock too (one
per stripe of 8 series), so a single hot series would serialise there.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List

import prometheus_client

import impactagent
from benchmarks.timing import summary

THREADS = (1, 2, 4)
#: 4 threads on one pre-bound series: impactagent's ops/s over prometheus_client's.
TARGET = 3.0


def bound_loop(counter: Any, n: int) -> None:
    """``n`` increments of one pre-bound series."""
    inc = counter.labels(route="/cart").inc
    for _ in range(n):
        inc()


def labels_loop(counter: Any, n: int) -> None:
    """``n`` label lookups, each followed by an increment."""
    labels = counter.labels
    for _ in range(n):
        labels(route="/cart").inc()


OPERATIONS: Dict[str, Callable[[Any, int], None]] = {
    "counter child inc() (pre-bound)": bound_loop,
    'labels(route="/cart").inc()': labels_loop,
}


def run_threads(loop: Callable[[Any, int], None], counter: Any, threads: int,
                total: int) -> float:
    """Operations per second of ``threads`` threads sharing ``total`` operations."""
    per_thread = total // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        loop(counter, per_thread)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join(timeout=120)  # bounded: a stuck run fails below instead of hanging
    elapsed = time.perf_counter() - started
    if any(worker.is_alive() for worker in workers):
        raise RuntimeError("a recording thread did not finish in 120 s")
    return per_thread * threads / elapsed


def ours_counter() -> Any:
    return impactagent.Agent("bench-threads").counter("c", "h", labels=("route",))


def prom_total(prom: Any) -> float:
    """The /cart series' total, read through prometheus_client's public collect()."""
    return next(s.value for s in prom.collect()[0].samples
                if s.name == "c_total" and s.labels == {"route": "/cart"})


def prom_counter() -> Any:
    registry = prometheus_client.CollectorRegistry()
    return prometheus_client.Counter("c", "h", ["route"], registry=registry)


def check(name: str, value: float, expected: int) -> None:
    if value != expected:
        raise RuntimeError(f"{name} counted {value} increments, expected {expected}")


def thread_rows(quick: bool = False) -> List[Dict[str, Any]]:
    """One row per operation and thread count: ops/s of both libraries and their ratio."""
    repeat, total = (3, 60_000) if quick else (5, 400_000)
    rows = []
    for operation, loop in OPERATIONS.items():
        for threads in THREADS:
            ops: Dict[str, List[float]] = {"ours": [], "peer": []}
            for _ in range(repeat):
                # Fresh counters per repeat, so the count check is exact.
                ours, prom = ours_counter(), prom_counter()
                ops["ours"].append(run_threads(loop, ours, threads, total))
                ops["peer"].append(run_threads(loop, prom, threads, total))
                done = total // threads * threads
                check("impactagent", ours.labels(route="/cart").value, done)
                check("prometheus_client", prom_total(prom), done)
            result, peer = summary(ops["ours"]), summary(ops["peer"])
            rows.append({"operation": operation, "threads": threads, "unit": "ops/s",
                         "operations": total, "ours": result, "peer": "prometheus_client",
                         "peer_result": peer, "ratio": result["median"] / peer["median"]})
            if threads == 4 and operation == "counter child inc() (pre-bound)":
                rows[-1]["target"] = TARGET
                rows[-1]["met"] = rows[-1]["ratio"] >= TARGET
    return rows


def _ops(result: Dict[str, Any]) -> str:
    k = 1e6
    return f"{result['median'] / k:.2f} M/s ({result['min'] / k:.2f}-{result['max'] / k:.2f})"


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| operation | threads | impactagent ops/s (median, min-max) "
             "| prometheus_client ops/s (median, min-max) | impactagent / prometheus_client |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['operation']} | {row['threads']} | {_ops(row['ours'])} "
                     f"| {_ops(row['peer_result'])} | {row['ratio']:.2f}x |")
    return "\n".join(lines)
