"""What a collect costs: ``agent.collect()`` + ``agent.build_payloads()``, and the pauses
recording threads see while it runs.

For 1k, 10k and 100k series of one labelled counter:

- **Cost**: before each repeat every series is incremented once (a collect takes deltas, so
  each repeat must find something to take), then ``collect()`` and
  ``build_payloads(snapshot)`` are timed separately with ``perf_counter``; no other thread
  runs. Each run checks that the snapshot holds every series and that the bodies (split
  under 95 kB) carry every increment.
- **Pause**: a recorder thread loops ``child.inc()`` over series of the collected metric and
  notes every gap between consecutive ``perf_counter()`` readings. Its longest gap is
  reported in three windows of the same length, in this order: the main thread idle
  (the baseline), the main thread running ``collect()`` + ``build_payloads()``, and the main
  thread running a pure-Python loop that touches no lock of the agent (the GIL control).

On CPython with the GIL, any thread that runs Python keeps the others waiting until the
interpreter hands the GIL over, every ``sys.getswitchinterval()`` (5 ms by default). So a
recorder's pause during a collect is bounded below by the switch interval, whatever the
collector does; the GIL control shows that floor. A collect pause equal to the control
means the agent's locks add nothing: the recorder waits for the GIL, not for a series
lock. The 10k row is also run with a 0.5 ms switch interval to show the same from the other
side.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import impactagent
from benchmarks.timing import summary

SIZES = (1_000, 10_000, 100_000)
TARGET_MS = 50.0  # collect + build_payloads of 10k series
#: The recorder's longest pause while 100k series are collected and encoded, at most this
#: multiple of its longest pause while the main thread runs pure Python for as long (the
#: GIL control: what any Python work costs a recorder, agent or not). Medians over repeats.
PAUSE_TARGET_FACTOR = 2.0
RECORDER_SERIES = 64  # the recorder cycles over this many series of the collected metric


def make_series(size: int) -> Tuple[impactagent.Agent, List[Any]]:
    agent = impactagent.Agent("bench-collect", max_series_per_metric=size)
    counter = agent.counter("c", "h", labels=("route",), max_series=size)
    return agent, [counter.labels(f"/route/{i:06d}") for i in range(size)]


def record_all(children: List[Any]) -> None:
    for child in children:
        child.inc()


def collect_once(agent: impactagent.Agent, size: int) -> Tuple[float, float, int]:
    """Seconds of ``collect()``, of ``build_payloads()``, and the number of bodies."""
    started = time.perf_counter()
    snapshot = agent.collect()
    collected = time.perf_counter()
    payloads = agent.build_payloads(snapshot)
    built = time.perf_counter()
    samples = sum(len(metric.children) for metric in snapshot.metrics)
    sent = sum(sample["value"] for payload in payloads
               for metric in payload.document.get("impactMetrics", ())
               for sample in metric["samples"])
    if samples != size or sent < size:
        raise RuntimeError(f"collect took {samples} series carrying {sent}, expected {size}")
    if any(len(payload.body) > agent.settings.max_payload_bytes for payload in payloads):
        raise RuntimeError("a body is over the size limit")
    return collected - started, built - collected, len(payloads)


class Recorder(threading.Thread):
    """Loops ``inc()`` over a few series, noting every gap over 20 µs with its end time."""

    def __init__(self, children: List[Any], seconds: float) -> None:
        super().__init__(daemon=True)
        self.incs = [child.inc for child in children[:RECORDER_SERIES]]
        self.seconds = seconds  # bounded: the loop ends by itself
        self.gaps: List[Tuple[float, float]] = []  # (start, end) of each long gap
        self.running = threading.Event()
        self.stop: List[bool] = []  # non-empty: leave the loop (a list: the cheapest test)

    def run(self) -> None:
        incs, gaps, clock, stop = self.incs, self.gaps, time.perf_counter, self.stop
        count = len(incs)
        last = clock()
        until = last + self.seconds
        i = 0
        self.running.set()
        while last < until and not stop:
            incs[i % count]()
            now = clock()
            if now - last > 20e-6:
                gaps.append((last, now))
            last = now
            i += 1

    def longest(self, start: float, stop: float, inside: bool = False) -> float:
        """Longest gap (seconds) overlapping ``[start, stop]`` (or, with ``inside``, wholly
        within it); 0 if none was over 20 µs."""
        return max((end - begin for begin, end in self.gaps
                    if (begin >= start and end <= stop if inside
                        else end >= start and begin <= stop)), default=0.0)


def busy(seconds: float) -> None:
    """Pure Python for ``seconds``, touching no lock: what the GIL alone costs a recorder."""
    until = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < until:
        x += 1


class GcWatch:
    """Times every cyclic GC collection while active (``gc.callbacks``): how many of each
    generation ran, and the longest, in whichever thread set it off."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]  # seconds
        self._started = 0.0

    def _callback(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        self.longest[generation] = max(self.longest[generation],
                                       time.perf_counter() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self._callback)


def pauses(agent: impactagent.Agent, children: List[Any], work: float) -> Dict[str, float]:
    """A recorder's longest gap idle, during a collect, and during pure Python (seconds).

    ``work`` is about how long a collect takes; each window is at least that long.
    """
    window = max(work, 0.02)
    record_all(children)
    # Long enough for every window below on a loaded machine (nine windows, one re-record
    # of every series, and collects slower than ``work``): a recorder that already stopped
    # would show no pause at all in the last ones (a 0.00 ms "freeing the bodies").
    recorder = Recorder(children, seconds=20 * window + 2.0)
    recorder.start()
    recorder.running.wait(5)
    time.sleep(window)  # the recorder is in its loop

    def timed(action: Callable[[], Any]) -> Tuple[float, float]:
        start = time.perf_counter()
        action()
        return start, time.perf_counter()

    # Sleeps between the windows let the recorder run again, so no gap spans two windows.
    idle = timed(lambda: time.sleep(window))
    time.sleep(window)
    with GcWatch() as watch:
        collect = timed(lambda: agent.build_payloads(agent.collect()))
    time.sleep(window)
    control = timed(lambda: busy(collect[1] - collect[0]))
    # Where a collect's pause comes from: the same work with the cyclic GC held off and the
    # bodies kept (what is left is the agent's own code), then freeing those bodies alone.
    time.sleep(window)
    record_all(children)  # the collect above took every delta: give the next one as many
    kept: List[Any] = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        bare = timed(lambda: kept.append(agent.build_payloads(agent.collect())))
    finally:
        if was_enabled:
            gc.enable()
    time.sleep(window)
    freeing = timed(kept.clear)
    time.sleep(window)  # the recorder notes the gap that ends after the freeing
    recorder.stop.append(True)
    recorder.join(timeout=30)
    # Idle: only gaps wholly inside the window; one that began before it is the main
    # thread's waking up, not the recorder's own.
    return {"idle": recorder.longest(*idle, inside=True),
            "collect": recorder.longest(*collect),
            "gil_control": recorder.longest(*control),
            "collect_without_gc_or_free": recorder.longest(*bare),
            "free_bodies": recorder.longest(*freeing),
            "collect_window": collect[1] - collect[0],
            **{f"gc{g}_collections": float(n) for g, n in enumerate(watch.collections)},
            **{f"gc{g}_longest": t for g, t in enumerate(watch.longest)}}


def collect_rows(quick: bool = False, sizes: Sequence[int] = SIZES) -> List[Dict[str, Any]]:
    """Cost and pauses per size; the 10k size again with a 0.5 ms switch interval."""
    rows = []
    runs: List[Tuple[int, Optional[float]]] = [(size, None) for size in sizes]
    if 10_000 in sizes:
        runs.append((10_000, 0.0005))
    default_switch = sys.getswitchinterval()
    for size, switch in runs:
        repeat = (2 if size >= 100_000 else 3) if quick else (5 if size >= 100_000 else 9)
        agent, children = make_series(size)
        record_all(children)
        agent.collect()  # the first collect pays one-off costs; it is not measured
        took: Dict[str, List[float]] = {"collect": [], "build": [], "total": []}
        gaps: Dict[str, List[float]] = {"idle": [], "collect": [], "gil_control": [],
                                        "collect_without_gc_or_free": [], "free_bodies": []}
        gcs: Dict[str, List[float]] = {f"gc{g}_{what}": [] for g in range(3)
                                       for what in ("collections", "longest")}
        bodies = 0
        try:
            sys.setswitchinterval(switch or default_switch)
            for _ in range(repeat):
                if switch is None:  # the cost is measured once, at the default interval
                    record_all(children)
                    collect_s, build_s, bodies = collect_once(agent, size)
                    took["collect"].append(collect_s * 1e3)
                    took["build"].append(build_s * 1e3)
                    took["total"].append((collect_s + build_s) * 1e3)
                work = summary(took["total"])["median"] / 1e3 if took["total"] else 0.05
                for key, value in pauses(agent, children, work).items():
                    if key in gaps:
                        gaps[key].append(value * 1e3)
                    elif key in gcs:  # a count, or seconds
                        gcs[key].append(value if key.endswith("collections") else value * 1e3)
        finally:
            sys.setswitchinterval(default_switch)
        row: Dict[str, Any] = {
            "series": size, "switch_interval_ms": (switch or default_switch) * 1e3,
            "default_switch_interval": switch is None,
            "repeat": repeat, "bodies": bodies,
            **{f"{key}_ms": summary(values) for key, values in took.items() if values},
            **{f"pause_{key}_ms": summary(values) for key, values in gaps.items()},
            # The cyclic GC during the collect window: collections of each generation and
            # the longest one (ms), medians over the repeats.
            **{key if key.endswith("collections") else f"{key}_ms": summary(values)
               for key, values in gcs.items()},
        }
        if size == 10_000 and switch is None:
            row["met_cost"] = row["total_ms"]["median"] < TARGET_MS
        row["met_pause"] = (row["pause_collect_ms"]["median"]
                            <= PAUSE_TARGET_FACTOR * row["pause_gil_control_ms"]["median"])
        rows.append(row)
    return rows


def _ms(result: Optional[Dict[str, Any]], digits: int = 1) -> str:
    if result is None:
        return ""
    return f"{result['median']:.{digits}f} ({result['min']:.{digits}f}-{result['max']:.{digits}f})"


def gc_in_window(row: Dict[str, Any]) -> str:
    """The cyclic GC collections timed during the collect window (medians over repeats)."""
    return "; ".join(
        f"gen{g} x{row[f'gc{g}_collections']['median']:g} (longest "
        f"{row[f'gc{g}_longest_ms']['median']:.2f} ms)" for g in range(3))


def pause_causes(row: Dict[str, Any]) -> str:
    """Where a collect's pause goes, from the two extra windows of :func:`pauses` and the
    cyclic GC collections timed in the collect window."""
    return (f"without the cyclic GC and without freeing the bodies "
            f"{row['pause_collect_without_gc_or_free_ms']['median']:.2f} ms; freeing the "
            f"bodies alone {row['pause_free_bodies_ms']['median']:.2f} ms; cyclic GC in "
            f"the collect window: {gc_in_window(row)}")


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| series | switch interval | collect() ms | build_payloads() ms | total ms "
             "| bodies | recorder's longest gap, idle ms | during collect ms "
             "| during pure Python (GIL control) ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['series']:,} | {row['switch_interval_ms']:g} ms "
            f"| {_ms(row.get('collect_ms'))} | {_ms(row.get('build_ms'))} "
            f"| {_ms(row.get('total_ms'))} | {row['bodies'] or ''} "
            f"| {_ms(row['pause_idle_ms'], 3)} | {_ms(row['pause_collect_ms'], 2)} "
            f"| {_ms(row['pause_gil_control_ms'], 2)} |")
    return "\n".join(lines)
