"""``python -m benchmarks``: impactagent against every peer, side by side, in one run.

Five parts, each its own module, each printed as a markdown table of medians with min-max
and impactagent's ratio to each peer; then every target, met or not met:

1. the recording hot path (:mod:`benchmarks.hot_path`): prometheus_client, OpenTelemetry's
   SDK, UnleashClient's impact-metrics API and its engine's flag counting, and the floors;
2. 1, 2 and 4 threads recording at once (:mod:`benchmarks.threads`);
3. memory per labelled series at 10k and 100k series (:mod:`benchmarks.memory`);
4. collect + build_payloads at 1k, 10k and 100k series, and the pauses a recording thread
   sees meanwhile (:mod:`benchmarks.collect`);
5. a real WSGI app under gunicorn and a load generator: agent off, on, and
   prometheus_client doing the same work (:mod:`benchmarks.web`).

Every ratio compares measurements made in this one run. Installs nothing: the peers it
cannot import are left out, and the web part needs gunicorn (``wrk`` if present).

    python -m benchmarks                  # full run, under 5 minutes
    python -m benchmarks --quick          # smoke run (CI), under a minute
    python -m benchmarks --json out.json  # also write every measurement as JSON
    python -m benchmarks --python ../venv-3.12/bin/python --python ../venv-3.13/bin/python
                                          # the hot path and memory targets per version
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks import collect, hot_path, memory, threads, versions, web
from benchmarks.machine import describe, machine, write_json
from benchmarks.timing import met_cell, peer_table

PARTS = ("hot_path", "threads", "memory", "collect", "web")


def run(quick: bool, parts: Tuple[str, ...] = PARTS) -> Dict[str, Any]:
    """Run the chosen parts in order; each one's results under its name."""
    runners: Dict[str, Callable[[], Any]] = {
        "hot_path": lambda: hot_path.run(quick, memory=False),
        "threads": lambda: threads.thread_rows(quick),
        # --quick leaves out the 100k sizes: they are most of the time and add no new code path.
        "memory": lambda: memory.memory_rows(
            (1_000, 10_000) if quick else (1_000, 10_000, 100_000),
            {1_000: 3, 10_000: 1 if quick else 3, 100_000: 2}),
        "collect": lambda: collect.collect_rows(
            quick, collect.SIZES[:2] if quick else collect.SIZES),
        "web": lambda: web.web_rows(quick),
    }
    results: Dict[str, Any] = {"machine": machine(), "quick": quick, "seconds": {}}
    started = time.perf_counter()
    for part in parts:
        began = time.perf_counter()
        print(f"running {part} ...", file=sys.stderr, flush=True)
        results[part] = runners[part]()
        if part == "memory":
            results["memory_breakdown"] = memory.series_breakdown()
        results["seconds"][part] = time.perf_counter() - began
    results["elapsed_seconds"] = time.perf_counter() - started
    return results


def targets(results: Dict[str, Any]) -> List[Tuple[str, str, Optional[bool]]]:
    """(target, what was measured, met) for every target this run can judge."""
    found: List[Tuple[str, str, Optional[bool]]] = []
    rows = results.get("hot_path", {}).get("rows", [])
    floors = {row["operation"]: row["ours"]["median"] for row in rows if not row["peers"]}
    for row in rows:
        if "derived" in row:  # the decorator: what it adds to a call, over record_flag's cost
            d = row["derived"]
            found.append((f"@agent.flag overhead (decorated - bare) <= {d['target']}x "
                          "record_flag alone",
                          f"{d['ratio']:.2f}x ({row['ours']['median']:.0f} - {d['bare_ns']:.0f}"
                          f" ns over {d['record_flag_ns']:.0f} ns)", d["met"]))
        for peer in row["peers"]:
            if peer["target"] is not None:
                measured = f"{peer['ratio']:.2f}x ({row['ours']['median']:.0f} ns)"
                if not peer["met"]:
                    measured += cause_of(row, peer, floors)
                found.append((f"{row['operation']} <= {peer['target']}x {peer['name']}",
                              measured, peer["met"]))
    for row in results.get("threads", []):
        if "target" in row:
            found.append((f"{row['threads']} threads, {row['operation']}: ops/s >= "
                          f"{row['target']:g}x prometheus_client, every total exact",
                          f"{row['ratio']:.2f}x", row["met"]))
    breakdown = results.get("memory_breakdown", {})
    for row in results.get("memory", []):
        measured = f"{row['ours']['median']:.0f} B"
        if not row["met"]:
            measured += memory.cause(row, breakdown)
        found.append((f"{row['operation']} <= {row['target_bytes']} B", measured, row["met"]))
    for row in results.get("collect", []):
        if row["series"] == 10_000 and row["default_switch_interval"]:
            found.append((f"collect + build_payloads of 10,000 series < {collect.TARGET_MS:g} ms",
                          f"{row['total_ms']['median']:.1f} ms", row["met_cost"]))
        if row["default_switch_interval"] and row["series"] == max(
                r["series"] for r in results["collect"]):
            found.append((f"recorder's longest pause while {row['series']:,} series are "
                          f"collected and encoded <= {collect.PAUSE_TARGET_FACTOR:g}x the GIL "
                          "control", f"{row['pause_collect_ms']['median']:.2f} ms (control "
                          f"{row['pause_gil_control_ms']['median']:.2f} ms)"
                          + ("" if row["met_pause"] else
                             f"; cause: {collect.pause_causes(row)}"), row["met_pause"]))
    if "web" in results:
        w = results["web"]
        found.append((f"web throughput, agent on >= {web.TARGET}x agent off",
                      f"{w['ratio_on_off']:.3f}x"
                      + ("" if w["met"] else f"; cause: {web.throughput_cause(w)}"), w["met"]))
        found.append((f"web p99 latency, agent on <= {web.P99_TARGET}x agent off",
                      f"{w['p99_on_off']:.3f}x"
                      + ("" if w["met_p99"] else f"; cause: {web.throughput_cause(w)}"),
                      w["met_p99"]))
    return found


def cause_of(row: Dict[str, Any], peer: Dict[str, Any], floors: Dict[str, float]) -> str:
    """Why a hot-path target was not met, from this run's floors: what the least work of
    the same kind costs against the same peer, and what impactagent adds to it."""
    ours = row["ours"]["median"]
    against = peer["result"]["median"]
    floor_name = {"histogram": hot_path.HISTOGRAM_FLOOR,
                  "gauge": hot_path.GAUGE_FLOOR}.get(row["operation"].split()[0])
    floor = floors.get(floor_name or "")
    if floor and floor_name:
        return (f"; cause: the floor, {floor_name.split(': ', 1)[1]}, is {floor:.0f} ns, "
                f"already {floor / against:.2f}x {peer['name']}; impactagent adds "
                f"{ours - floor:.0f} ns to it")
    if peer["name"] == hot_path.MINIMAL_FAMILY:
        return (f"; cause: {ours - against:.0f} ns over the minimal family: the flags= test "
                "and the one-keyword branch it does not have")
    return ""


def report(results: Dict[str, Any]) -> str:
    seconds = results["seconds"]
    out = [f"Machine: {describe(results['machine'])}.",
           f"Run: python -m benchmarks{' --quick' if results['quick'] else ''}, "
           f"{results['elapsed_seconds']:.0f} s in all ("
           + ", ".join(f"{part} {s:.0f} s" for part, s in seconds.items()) + ")."]
    if "hot_path" in results:
        h = results["hot_path"]
        out += ["", f"### 1. Hot path (ns per operation; {h['repeat']} alternating repeats of "
                f"~{h['seconds_per_repeat']} s per side)", "", peer_table(h["rows"])]
    if "threads" in results:
        out += ["", "### 2. Threads recording at once (total throughput)", "",
                threads.table(results["threads"])]
    if "memory" in results:
        out += ["", "### 3. Memory per labelled series (tracemalloc)", "",
                peer_table(results["memory"])]
    if "collect" in results:
        out += ["", "### 4. Collect + serialise, and recorder pauses", "",
                collect.table(results["collect"])]
    if "web" in results:
        w = results["web"]
        out += ["", f"### 5. Web app: gunicorn -w 1 --threads 4, {w['generator']}, "
                f"{w['connections']} connections, {w['rounds']} rounds of {w['seconds']:g} s "
                "per variant", "", web.table(w)]
    if results.get("versions"):
        out += ["", "### Per Python version: the hot path and memory targets", "",
                versions.table(versions.columns(results, results["versions"], targets))]
    out += ["", "### Targets", "", "| target | measured | |", "|---|---|---|"]
    out += [f"| {name} | {measured} | {met_cell(met)} |"
            for name, measured, met in targets(results)]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: fewer, shorter repeats (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    parser.add_argument("--only", metavar="PART", action="append", choices=PARTS,
                        help="run only this part (repeatable)")
    parser.add_argument("--python", metavar="PATH", action="append",
                        help="also run the hot path and memory parts in this interpreter, a "
                             "column per version (repeatable; default: "
                             "$IMPACTAGENT_BENCH_PYTHONS)")
    args = parser.parse_args(argv)
    others = versions.interpreters(args.python)
    for python in others:
        if not os.access(python, os.X_OK):
            parser.error(f"--python {python}: no such interpreter; give the path of a venv's "
                         "python with impactagent[bench] installed")
    results = run(args.quick, tuple(args.only) if args.only else PARTS)
    if others:
        results["versions"] = {python: versions.run_in(python, args.quick) for python in others}
    print(report(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
