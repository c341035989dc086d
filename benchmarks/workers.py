"""The shared view across workers against ``prometheus_client``'s multiprocess mode.

``python -m benchmarks.workers [--quick]``. Both sides run in one child process started with
``PROMETHEUS_MULTIPROC_DIR`` set (the mode needs it before ``prometheus_client`` is
imported), in the same run, alternating, so machine noise hits both:

- **Recording**: a pre-bound labelled counter's ``inc()``: impactagent's (unchanged by the
  shared view: recording stays in memory) against a multiprocess-mode ``prometheus_client``
  counter's (a write into its memory-mapped file, under a lock). ``timeit``, ns per call.
- **Publish** (impactagent only: the mode has no such step): one worker's ``publish()``
  with S series changed since the last, what its thread pays every ``publish_interval``.
- **Scrape**: W = 4 live worker processes, each with S series of one labelled counter and
  one histogram; the time for one ``generate_latest`` of the sum, from a fifth process:
  impactagent's :class:`~impactagent.prometheus.workers.DirectoryCollector` (lock, check the
  writers live, read and add JSON files) against ``MultiProcessCollector`` (read every
  ``.db`` file). Each run checks that both show the same total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
from typing import Any, Callable, Dict, List

WORKERS = 4
SIZES = (10, 1_000)


def _ns_per_call(stmt: Callable[[], Any], number: int) -> float:
    """ns per call (the call through timeit costs both sides the same)."""
    return timeit.timeit(stmt, number=number) / number * 1e9


def _median(values: List[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def _child(quick: bool) -> Dict[str, Any]:
    """Runs with PROMETHEUS_MULTIPROC_DIR set; returns every measurement."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.parser import text_string_to_metric_families

    import impactagent
    from impactagent.prometheus.workers import DirectoryCollector

    repeat, number = (3, 20_000) if quick else (7, 200_000)
    results: Dict[str, Any] = {"repeat": repeat}

    # -- recording ---------------------------------------------------------------------------
    agent = impactagent.Agent("bench-workers")
    ours = agent.counter("hits_total", "Hits", labels=("route",)).labels("/cart")
    theirs = Counter("hits", "Hits", ("route",), registry=None).labels("/cart")
    samples: Dict[str, List[float]] = {"impactagent": [], "prometheus_client multiprocess": []}
    for _ in range(repeat):  # alternating
        samples["impactagent"].append(_ns_per_call(ours.inc, number))
        samples["prometheus_client multiprocess"].append(_ns_per_call(theirs.inc, number))
    results["record_ns"] = {k: _median(v) for k, v in samples.items()}

    # -- publish and scrape, per size --------------------------------------------------------
    results["sizes"] = []
    for size in SIZES:
        view_dir = tempfile.mkdtemp(prefix="bench-view-")
        # Each size starts from an empty directory on both sides (the mode's files of
        # earlier workers would otherwise be read too).
        multiproc = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for name in os.listdir(multiproc):
            if not name.endswith(f"_{os.getpid()}.db"):
                os.unlink(os.path.join(multiproc, name))
        row: Dict[str, Any] = {"series": size}
        pipes = []
        for _ in range(WORKERS):  # live workers, each with its own counts, both libraries
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                os.close(go_w)
                worker = impactagent.Agent("bench-workers")
                c = worker.counter("jobs_total", "Jobs", labels=("route",))
                h = worker.histogram("work_seconds", "Work", labels=("route",))
                pc = Counter("jobs", "Jobs", ("route",), registry=None)
                ph = Histogram("work_seconds", "Work", ("route",), registry=None)
                for i in range(size):
                    c.labels(f"/r{i}").inc(2)
                    h.labels(f"/r{i}").observe(0.3)
                    pc.labels(f"/r{i}").inc(2)
                    ph.labels(f"/r{i}").observe(0.3)
                view = worker.prometheus_workers(view_dir, publish_interval=3600)
                times = []
                for _ in range(repeat):
                    for i in range(size):
                        c.labels(f"/r{i}").inc()
                    began = time.perf_counter()
                    view.publish()
                    times.append((time.perf_counter() - began) * 1e3)
                os.write(ready_w, json.dumps(times).encode())
                os.close(ready_w)
                os.read(go_r, 1)  # alive until the scrapes are done
                os._exit(0)
            os.close(ready_w)
            os.close(go_r)
            pipes.append((pid, ready_r, go_w))
        publish_ms: List[float] = []
        for _, ready_r, _ in pipes:
            publish_ms += json.loads(os.read(ready_r, 1 << 20).decode())
            os.close(ready_r)
        row["publish_ms"] = _median(publish_ms)

        ours_registry = CollectorRegistry(auto_describe=False)
        ours_registry.register(DirectoryCollector(view_dir))
        theirs_registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(theirs_registry)
        scrape: Dict[str, List[float]] = {"impactagent": [], "prometheus_client multiprocess": []}
        texts: Dict[str, str] = {}
        for _ in range(repeat):
            for name, registry in (("impactagent", ours_registry),
                                   ("prometheus_client multiprocess", theirs_registry)):
                began = time.perf_counter()
                texts[name] = generate_latest(registry).decode()
                scrape[name].append((time.perf_counter() - began) * 1e3)
        for _pid, _, go_w in pipes:
            os.write(go_w, b"x")
            os.close(go_w)
        for pid, _, _ in pipes:
            os.waitpid(pid, 0)
        row["scrape_ms"] = {k: _median(v) for k, v in scrape.items()}
        totals = {}
        for name, text in texts.items():
            totals[name] = sum(s.value for f in text_string_to_metric_families(text)
                               for s in f.samples if s.name == "jobs_total")
        expected = WORKERS * size * (2 + repeat)
        if totals["impactagent"] != expected:
            raise RuntimeError(f"the shared view summed {totals}, expected {expected}")
        if totals["prometheus_client multiprocess"] != WORKERS * size * 2:
            raise RuntimeError(f"prometheus_client summed {totals}")
        results["sizes"].append(row)
    return results


def run(quick: bool) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-multiproc-") as multiproc:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=multiproc)
        done = subprocess.run([sys.executable, "-m", "benchmarks.workers", "--child",
                               *(["--quick"] if quick else [])], env=env,
                              capture_output=True, text=True, timeout=900, check=True)
    return json.loads(done.stdout)


def table(results: Dict[str, Any]) -> str:
    record = results["record_ns"]
    ours, theirs = record["impactagent"], record["prometheus_client multiprocess"]
    out = ["| measured | impactagent | prometheus_client multiprocess | ratio |",
           "|---|---|---|---|",
           f"| `child.inc()`, ns | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |"]
    for row in results["sizes"]:
        s = row["scrape_ms"]
        a, b = s["impactagent"], s["prometheus_client multiprocess"]
        out.append(f"| scrape of {WORKERS} workers x {row['series']:,} series "
                   f"(counter + histogram), ms | {a:.2f} | {b:.2f} | {a / b:.2f}x |")
        out.append(f"| one worker's publish, {row['series']:,} series, ms | "
                   f"{row['publish_ms']:.2f} | (none: writes on every inc) | |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.quick)))
        return
    print(table(run(args.quick)))


if __name__ == "__main__":
    main()
