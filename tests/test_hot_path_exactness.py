"""Every recording path, hammered from 8 threads while collects, restores and a fork run.

The recording methods take no lock where one C call does the work (``itertools.count``
advanced by ``next()`` where :data:`impactagent.core._gil.ATOMIC_C_CALLS`; a gauge's new cell
stored by one attribute store), and readers count their own reads of those counts. This
test checks the totals that come out of that are exact: 8 threads record a known number of
events on each path, the main thread meanwhile collects in a loop and gives
every other snapshot back (a failed send, whole or body by body), and forks a child that
records on its own. What was delivered (the bodies of the snapshots kept, plus a final
collect) must be exactly what was recorded, and the child must count exactly its own
events, none of the parent's.
"""

from __future__ import annotations

import json
import os
import select
import threading
import warnings
from collections import Counter
from typing import Any, Dict, List

import pytest

import impactagent
from tests import child

THREADS = 8
# Fixed ids (not the host's name): the body sizes below do not depend on the machine.
IDENTITY = impactagent.Identity("hammer", "default", "pod-1", "connection-1")
ROUNDS = 4000
VALUES = (0.25, 0.5, 2.0, 8.0)  # binary fractions: their float sums are exact
BUCKETS = (0.3, 1.0, 4.0)


def _define(agent: impactagent.Agent) -> Dict[str, Any]:
    routes = agent.counter("routes_total", "Requests", labels=("route",))
    return {
        "routes": routes,
        "bound": routes.labels(route="/bound"),
        "plain": agent.counter("plain_total", "Jobs"),
        "by_three": agent.counter("by_three_total", "Batches"),
        "level": agent.gauge("level", "Up and down"),
        "last": agent.gauge("last", "Last value set", labels=("thread",)),
        "latency": agent.histogram("latency_seconds", "Latency", buckets=BUCKETS),
    }


def _record(agent: impactagent.Agent, m: Dict[str, Any], thread: int, start: int,
            stop: int) -> None:
    """One thread's share: every recording path, for rounds ``start`` to ``stop``."""
    bound_inc, plain_inc = m["bound"].inc, m["plain"].inc
    routes, level, latency = m["routes"], m["level"], m["latency"]
    last = m["last"].labels(thread=str(thread))
    for i in range(start, stop):
        bound_inc()  # a pre-bound series, inc() of 1
        plain_inc()  # the family's own inc() of an unlabelled counter
        m["by_three"].inc(3)  # another amount: the locked path
        routes.labels(route=f"/r{i % 4}").inc()  # labels by keyword
        routes.labels(f"/r{i % 4}").inc()  # labels by position
        level.inc(2)
        level.dec()
        last.set(i)
        latency.observe(VALUES[i % len(VALUES)])
        agent.record_flag("checkout", True, "blue")
        agent.record_flag("checkout", False)
        agent.record_flag("checkout", True)


def _expected(rounds: int, threads: int) -> Dict[str, Any]:
    per_route: Counter = Counter()
    observed: Counter = Counter()
    for i in range(rounds):
        per_route[f"/r{i % 4}"] += 2
        observed[VALUES[i % len(VALUES)]] += 1
    return {
        "counters": {("routes_total", ("/bound",)): rounds * threads,
                     ("plain_total", ()): rounds * threads,
                     ("by_three_total", ()): 3 * rounds * threads,
                     **{("routes_total", (route,)): n * threads
                        for route, n in per_route.items()}},
        "level": float(rounds * threads),
        "last": {(str(t),): rounds - 1 for t in range(threads)},
        "observations": rounds * threads,
        "sum": sum(value * n for value, n in observed.items()) * threads,
        "toggles": [2 * rounds * threads, rounds * threads, {"blue": rounds * threads}],
    }


class Ledger:
    """What the snapshots that were kept (delivered) added up to."""

    def __init__(self) -> None:
        self.counters: Counter = Counter()
        self.gauges: Dict[Any, Any] = {}
        self.observations = 0
        self.buckets: Counter = Counter()
        self.sum = 0.0
        self.yes = self.no = 0
        self.variants: Counter = Counter()

    def add(self, snapshot: Any) -> None:
        for metric in snapshot.metrics:
            for sample in metric.samples:
                key = (metric.family.name, sample.child.label_values)
                if metric.family.kind == "counter":
                    self.counters[key] += sample.value
                elif metric.family.kind == "gauge":
                    self.gauges[key] = sample.value  # the last one sent wins
                else:
                    self.observations += sample.count
                    self.sum += sample.sum
                    for index, n in enumerate(sample.counts):
                        self.buckets[index] += n
        for delta in snapshot.toggles.values():
            self.yes += delta.yes
            self.no += delta.no
            self.variants.update(delta.variants)


def _fork_child(agent: impactagent.Agent, m: Dict[str, Any]) -> Dict[str, Any]:
    """Fork now (threads are recording), record 5 of each in the child, report its view."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: only this thread exists; report and leave at once
        code = 1
        try:
            for _ in range(5):
                m["bound"].inc()
                m["plain"].inc()
                m["by_three"].inc(3)
                agent.record_flag("checkout", True, "blue")
            ledger = Ledger()
            ledger.add(agent.collect())
            os.write(write, json.dumps({
                "counters": {f"{name}{labels}": n for (name, labels), n in
                             ledger.counters.items()},
                "toggles": [ledger.yes, ledger.no, dict(ledger.variants)],
                "values": [m["bound"].value, m["plain"].value, m["by_three"].value],
            }).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 30)
        data = os.read(read, 65536) if ready else b""
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
    assert data, "the forked child reported nothing in 30 s"
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def _parts(snapshot: Any) -> List[Any]:
    """The slices of ``snapshot`` that its bodies carry, bodies small enough (650 bytes:
    a header and a unit or two) that a snapshot of more than one metric spans several."""
    parts = [body.part() for body in impactagent.build_payloads(snapshot, IDENTITY,
                                                                 max_bytes=650)]
    assert None not in parts
    return parts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_every_recording_path_is_exact_under_threads_collects_restores_and_fork():
    agent = impactagent.Agent("hammer")
    m = _define(agent)
    barrier = threading.Barrier(THREADS + 1)
    # Half-way, each thread waits until the main thread has forked and collected a few
    # times: the second half then records while it goes on collecting, so no thread can be
    # done before the collects and the fork began, however the threads are scheduled.
    halfway = threading.Event()
    errors: List[BaseException] = []

    def work(thread: int) -> None:
        try:
            barrier.wait()
            _record(agent, m, thread, 0, ROUNDS // 2)
            halfway.wait(60)
            _record(agent, m, thread, ROUNDS // 2, ROUNDS)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    barrier.wait()
    ledger = Ledger()
    collects = most_bodies = 0
    forked = None
    while any(worker.is_alive() for worker in workers) and collects < 100_000:
        snapshot = agent.collect()
        collects += 1
        if collects % 4 == 1:
            agent.restore(snapshot)  # a failed send: it must come back, exactly once
        elif collects % 4 == 3:
            # Bodies that failed one by one: each gives back its own slice of the columns.
            for part in _parts(snapshot):
                agent.restore(part)
        else:
            # Delivered body by body: what the bodies carry (Payload.part()), not the
            # snapshot, goes to the ledger, so the slices must add up to it exactly.
            parts = _parts(snapshot)
            most_bodies = max(most_bodies, len(parts))
            for part in parts:
                ledger.add(part)
        if collects == 1:
            forked = _fork_child(agent, m)  # the threads are recording: they were let go
        if collects == 10:
            halfway.set()
    halfway.set()  # (already set unless the threads all stopped early: an error)
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    assert not any(worker.is_alive() for worker in workers)
    ledger.add(agent.collect())
    assert agent.collect().metrics == ()  # nothing left over, nothing counted twice

    want = _expected(ROUNDS, THREADS)
    assert collects > 10
    assert most_bodies > 1  # a delivered snapshot spanned several bodies
    assert dict(ledger.counters) == want["counters"]
    assert ledger.gauges[("level", ())] == want["level"]
    assert {labels: value for (name, labels), value in ledger.gauges.items()
            if name == "last"} == want["last"]
    assert ledger.observations == want["observations"]
    assert ledger.sum == want["sum"]
    # 0.25, 0.5, 2.0 and 8.0 fall in the buckets <= 0.3, <= 1.0, <= 4.0 and +Inf.
    assert ledger.buckets == Counter({index: ROUNDS * THREADS // 4 for index in range(4)})
    assert [ledger.yes, ledger.no, dict(ledger.variants)] == want["toggles"]
    # The parent's own view agrees: what it counts is what it delivered.
    assert m["bound"].value == ROUNDS * THREADS
    assert m["plain"].value == ROUNDS * THREADS
    assert m["by_three"].value == 3 * ROUNDS * THREADS
    assert m["latency"].count == ROUNDS * THREADS

    # The child counted its 5 of each and nothing of the parent's.
    assert forked is not None
    assert forked["counters"] == {"routes_total('/bound',)": 5, "plain_total()": 5,
                                 "by_three_total()": 15}
    assert forked["toggles"] == [5, 0, {"blue": 5}]
    assert forked["values"] == [5, 5, 15]


def test_reading_a_counter_changes_no_total():
    # Readers advance the count too (one more next()), and count their reads: reading any
    # number of times, in any order with increments, leaves the totals exact.
    agent = impactagent.Agent("reads")
    jobs = agent.counter("jobs_total", "Jobs", labels=("queue",)).labels(queue="mail")
    for n in range(1, 50):
        jobs.inc()
        assert jobs.value == n
        assert f"value={n}>" in repr(jobs)
        assert jobs.value == n
    jobs.inc(7)
    snapshot = agent.collect()
    assert [s.value for metric in snapshot.metrics for s in metric.samples] == [56]
    agent.restore(snapshot)
    assert jobs.value == 56
    assert [s.value for metric in agent.collect().metrics for s in metric.samples] == [56]


def test_a_set_racing_in_place_increments_is_never_undone():
    # set() stores a fresh cell; inc() changes the current cell under the lock. However the
    # threads interleave, the last set() stays the base of every later increment: after all
    # threads stop, one set() and then N increments give exactly that value + N.
    agent = impactagent.Agent("gauge")
    gauge = agent.gauge("depth", "Depth")
    stop = threading.Event()

    def incrementer() -> None:
        while not stop.is_set():
            gauge.inc(1)

    threads = [threading.Thread(target=incrementer, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for value in range(2000):
        gauge.set(value * 1000)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    gauge.set(-5)
    for _ in range(10):
        gauge.inc()
    assert gauge.value == 5
    sent = [s.value for metric in agent.collect().metrics for s in metric.samples]
    assert sent == [5]
    assert agent.collect().metrics == ()


def test_a_free_threaded_build_takes_the_locked_paths_and_stays_exact():
    # Where Py_GIL_DISABLED is set (3.13t and later) one C call is no longer alone: every
    # counter increment takes the series lock and flags count on a locked count, chosen at
    # import. No free-threaded interpreter is at hand, so a child interpreter is told it is
    # one before the import: the locked paths then run, under threads, with collects.
    result = child.run("""
        import json, sysconfig, threading
        real = sysconfig.get_config_var
        sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
        import impactagent
        from impactagent.core import _gil
        agent = impactagent.Agent("free-threaded")
        jobs = agent.counter("jobs_total", "Jobs", labels=("queue",))
        plain = agent.counter("plain_total", "Plain")
        level = agent.gauge("level", "Level")
        def work():
            child = jobs.labels(queue="mail")
            for _ in range(2000):
                child.inc()
                plain.inc()
                plain.inc(2)
                level.inc()
                agent.record_flag("f", True, "blue")
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        delivered, collects = {}, 0
        while any(thread.is_alive() for thread in threads) or collects < 2:
            snapshot = agent.collect()
            collects += 1
            if collects % 2:
                agent.restore(snapshot)
                continue
            for metric in snapshot.metrics:
                for sample in metric.samples:
                    if metric.family.kind == "counter":
                        key = metric.family.name
                        delivered[key] = delivered.get(key, 0) + sample.value
            for name, delta in snapshot.toggles.items():
                delivered["yes"] = delivered.get("yes", 0) + delta.yes
                delivered["blue"] = delivered.get("blue", 0) + delta.variants.get("blue", 0)
        for thread in threads:
            thread.join()
        snapshot = agent.collect()
        for metric in snapshot.metrics:
            for sample in metric.samples:
                if metric.family.kind == "counter":
                    key = metric.family.name
                    delivered[key] = delivered.get(key, 0) + sample.value
        for name, delta in snapshot.toggles.items():
            delivered["yes"] = delivered.get("yes", 0) + delta.yes
            delivered["blue"] = delivered.get("blue", 0) + delta.variants.get("blue", 0)
        print(json.dumps({"atomic": _gil.ATOMIC_C_CALLS, "delivered": delivered,
                          "level": level.value}))
    """, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["atomic"] is False
    assert seen["delivered"] == {"jobs_total": 16000, "plain_total": 48000, "yes": 16000,
                                 "blue": 16000}
    assert seen["level"] == 16000
