"""Flag states label the metrics of the request or task that decided them, and no other.

Outside a scope, notes are copy-on-write: each thread and asyncio task sees only its own.
Inside a scope the mapping is shared by the scope's threads and child tasks. And no method
is rebound on an instance: a reference taken at any time behaves like the attribute.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import impactagent
from impactagent.core.counter import Counter
from impactagent.core.flag_context import flag_scope, flag_states, note_flag
from impactagent.core.gauge import Gauge
from impactagent.core.histogram import Histogram


@pytest.fixture
def fresh_context():
    """Run each test's body in a context of its own, as a process starting up would."""
    context = contextvars.Context()
    return context.run


def series_counts(counter):
    return {child.label_values: child.value for child in counter.series()}


def test_concurrent_tasks_outside_a_scope_label_their_own_metrics(fresh_context):
    def main():
        agent = impactagent.Agent("shop")
        checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))

        @agent.flag("new-checkout")
        def decide(variant):
            return variant

        decide("green")  # at start-up, outside any scope

        async def request(variant):
            decide(variant)
            await asyncio.sleep(0)  # the other task decides its own flag here
            checkouts.inc()

        async def both():
            await asyncio.gather(request("blue"), request("red"))

        asyncio.run(both())
        assert series_counts(checkouts) == {("blue",): 1, ("red",): 1}
        assert flag_states() == {"new-checkout": "green"}  # the tasks' notes stayed theirs

    fresh_context(main)


def test_threads_running_copies_of_one_context_keep_their_notes_apart(fresh_context):
    def main():
        agent = impactagent.Agent("shop")
        checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))
        agent.record_flag("new-checkout", True, "green")  # at start-up, outside any scope
        decided = threading.Barrier(2)

        def request(variant):
            agent.record_flag("new-checkout", True, variant)
            decided.wait(timeout=10)  # both have decided before either records
            checkouts.inc()

        # What asyncio.to_thread and contextvars-aware pools do: run in a copy of the
        # caller's context, which holds the caller's mapping.
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(request, v))
                   for v in ("blue", "red")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert series_counts(checkouts) == {("blue",): 1, ("red",): 1}
        assert flag_states() == {"new-checkout": "green"}

    fresh_context(main)


def test_a_scope_is_shared_with_its_threads_and_child_tasks(fresh_context):
    def main():
        note_flag("theme", "dark")  # outside: not part of the scope
        with flag_scope():
            def in_thread():
                note_flag("a", "enabled")

            thread = threading.Thread(target=contextvars.copy_context().run, args=(in_thread,))
            thread.start()
            thread.join(timeout=10)

            async def child():
                note_flag("b", "disabled")

            async def parent():
                await asyncio.gather(child())

            contextvars.copy_context().run(asyncio.run, parent())
            assert flag_states() == {"a": "enabled", "b": "disabled"}
        assert flag_states() == {"theme": "dark"}

    fresh_context(main)


def test_a_note_outside_a_scope_never_changes_a_mapping_another_context_holds(fresh_context):
    def main():
        note_flag("beta", "enabled")
        copied = contextvars.copy_context()  # e.g. a task created now
        note_flag("beta", "disabled")
        note_flag("other", "enabled")
        assert copied.run(flag_states) == {"beta": "enabled"}
        assert flag_states() == {"beta": "disabled", "other": "enabled"}

    fresh_context(main)


# -- no rebinding: references behave like the attribute ------------------------------------


def test_a_record_flag_reference_taken_before_a_flag_labelled_metric_notes_states(
        fresh_context):
    def main():
        agent = impactagent.Agent("shop")
        record_flag = agent.record_flag  # e.g. handed to a framework at start-up
        checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))
        with flag_scope():
            record_flag("new-checkout", True, "blue")
            checkouts.inc()
        assert series_counts(checkouts) == {("blue",): 1}
        assert agent.collect().toggles["new-checkout"].yes == 1

    fresh_context(main)


def test_record_flag_notes_only_flags_that_label_a_metric(fresh_context):
    def main():
        agent = impactagent.Agent("shop")
        agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))
        with flag_scope():
            agent.record_flag("new-checkout", False)
            agent.record_flag("unrelated", True)
            assert flag_states() == {"new-checkout": "disabled"}

    fresh_context(main)


def test_a_flag_past_the_flag_limit_is_not_counted_but_still_labels_metrics(fresh_context):
    def main():
        agent = impactagent.Agent("shop", max_flags=1)
        checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))
        agent.record_flag("first", True)
        with flag_scope():
            agent.record_flag("new-checkout", True, "blue")
            checkouts.inc()
        assert series_counts(checkouts) == {("blue",): 1}
        assert agent.statistics()["dropped"] == {"flag_limit": 1}

    fresh_context(main)


@pytest.mark.parametrize("define", [
    lambda a: a.counter("c", "C"),
    lambda a: a.counter("c", "C", flags=("beta",)),
    lambda a: a.counter("c", "C", labels=("route",)),
    lambda a: a.gauge("g", "G"),
    lambda a: a.gauge("g", "G", flags=("beta",)),
    lambda a: a.histogram("h", "H"),
    lambda a: a.histogram("h", "H", labels=("route",), flags=("beta",)),
])
def test_no_method_is_rebound_on_an_agent_or_a_metric(define):
    agent = impactagent.Agent("shop")
    family = define(agent)
    assert [name for name, value in vars(family).items() if callable(value)
            and not name.startswith("_")] == []
    assert [name for name, value in vars(agent).items() if callable(value)
            and not name.startswith("_")] == []


def test_family_methods_called_through_the_class_behave_like_the_attribute(fresh_context):
    def main():
        agent = impactagent.Agent("shop")
        jobs = agent.counter("jobs_total", "Jobs")
        depth = agent.gauge("depth", "Depth")
        latency = agent.histogram("latency", "Latency", buckets=(1.0,))
        served = agent.counter("served_total", "Served", flags=("beta",))
        Counter.inc(jobs, 2)
        Gauge.set(depth, 3)
        Gauge.dec(depth)
        Histogram.observe(latency, 0.5)
        with Histogram.time(latency):
            pass
        with pytest.raises(KeyError), Counter.count_exceptions(jobs):
            raise KeyError("boom")
        with flag_scope():
            agent.record_flag("beta", True)
            Counter.inc(served)
        assert (jobs.value, depth.value, latency.count) == (3, 2, 2)
        assert series_counts(served) == {("enabled",): 1}

    fresh_context(main)


def test_recording_on_a_labelled_family_still_says_to_call_labels():
    agent = impactagent.Agent("shop")
    checkouts = agent.counter("checkout_total", "Checkouts", labels=("route",), flags=("b",))
    latency = agent.histogram("latency", "Latency", labels=("route",))
    with pytest.raises(ValueError, match=r"has labels \('route',\): call .labels\(...\).inc"):
        checkouts.inc()
    with pytest.raises(ValueError, match=r"call .labels\(...\).time\(\)"):
        latency.time()
    with pytest.raises(ValueError, match=r"call .labels\(...\).set\(\)"):
        agent.gauge("g", "G", labels=("x",)).set(1)


def test_a_family_labelled_by_flags_only_records_each_call_into_the_states_of_that_moment():
    agent = impactagent.Agent("shop")
    failures = agent.counter("failures_total", "Failures", flags=("beta",))
    depth = agent.gauge("depth", "Depth", flags=("beta",))
    latency = agent.histogram("latency", "Latency", buckets=(1.0,), flags=("beta",))
    with flag_scope():
        counting = failures.count_exceptions(KeyError)  # the series is chosen at the raise
        with pytest.raises(KeyError), counting:
            note_flag("beta", "on")
            raise KeyError("boom")
        depth.set(3)
        depth.inc(2)
        note_flag("beta", "off")
        depth.dec(1)
        latency.add_counts([1, 1], 2.5)
    assert series_counts(failures) == {("on",): 1}
    assert {c.label_values: c.value for c in depth.series()} == {("on",): 5, ("off",): -1}
    assert {c.label_values: c.count for c in latency.series()} == {("off",): 2}
