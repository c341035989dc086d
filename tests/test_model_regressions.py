"""Every failure the model test (``tests/test_model.py``) found, replayed step by step.

Hypothesis's ``@example`` does not apply to state machines, so each history is kept here as a
plain test that drives the same machine through the same rules and checks the same invariant
after every step. Each test is named after the issue-13 item it showed; the histories are the
shrunk ones the model printed (trimmed by hand where a step did not matter).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

from tests.model_server import Drawn
from tests.test_model import AgentModel

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the model forks")


@contextlib.contextmanager
def machine(spool: str = "none", max_payload: int = 95_000,
            capture_early: bool = False) -> Iterator[AgentModel]:
    state = AgentModel()
    try:
        state.configure(spool=spool, max_payload=max_payload, capture_early=capture_early)
        state.every_event_is_accounted_for()
        yield state
    finally:
        state.teardown()


def test_item01_a_child_stopped_by_sigterm_delivers_its_window():
    """Item 1: SIGTERM with the default disposition killed the child; its window was lost
    without a count."""
    with machine() as state:
        state.fork_child(how="sigterm", ops=[("hits", "/a", 21), ("hits", "/b", 38)])
        state.every_event_is_accounted_for()


def test_item02_close_while_a_flush_is_in_flight_leaves_nothing_in_the_closed_agent():
    """Item 2: the in-flight flush failed after close() returned and merged its window back
    into the closed agent: pending forever, never counted."""
    with machine() as state:
        state.record(ops=[("latency", 13.897), ("flag", "f-a", True, None), ("hits", "/b", 41)])
        state.every_event_is_accounted_for()
        state.close_while_a_flush_is_in_flight(answers=[Drawn("stall")] * 6)
        state.every_event_is_accounted_for()


@pytest.mark.parametrize("answer", ["redirect", "moved"])
def test_item03_a_redirect_is_neither_followed_nor_taken_for_a_delivery(answer):
    """Item 3: a 307 re-POSTed the body to another origin; a 301 to a login page answering
    200 was counted as delivered."""
    with machine(spool="big", max_payload=1_500) as state:
        state.plant_spool_file(kind="body", ops=[("flag", "f-a", False, "red"), ("latency", 8.1)])
        state.every_event_is_accounted_for()
        state.record(ops=[("jobs", 3)])
        state.every_event_is_accounted_for()
        state.flush(answers=[Drawn(answer), Drawn("limited"), Drawn(answer), Drawn("bad")])
        state.every_event_is_accounted_for()


def test_item05_a_spool_directory_removed_while_running_is_a_counted_drop():
    """Item 5: with the spool directory gone, close() raised FileNotFoundError from the spool
    write, and what it held was lost without a count."""
    with machine(spool="big") as state:
        state.record(ops=[("jobs", 3), ("checkout", 2)])
        state.every_event_is_accounted_for()
        state.remove_spool_dir()
        state.every_event_is_accounted_for()
        state.close_and_restart(answers=[Drawn("error")] * 4)
        state.every_event_is_accounted_for()


def test_item06_a_spool_file_that_is_json_but_not_a_body_is_set_aside():
    """Item 6: ``{"appName": ..., "bucket": "x"}`` in the spool made every flush raise
    AttributeError, and the file stayed claimed."""
    with machine(spool="small", max_payload=1_500) as state:
        state.plant_spool_file(kind="not_a_body", ops=[("jobs", 1)])
        state.every_event_is_accounted_for()
        state.record(ops=[("jobs", 922), ("latency", 3.963)])
        state.every_event_is_accounted_for()
        state.flush(answers=[])
        state.every_event_is_accounted_for()
        state.close_and_restart(answers=[])
        state.every_event_is_accounted_for()


def test_item11b_a_multiprocessing_child_delivers_its_last_window():
    """Item 11b: multiprocessing ends its (fork) children with os._exit, so their last
    window was lost without a count."""
    with machine(spool="big", max_payload=1_500) as state:
        state.fork_child(how="multiprocessing", ops=[("flag", "f-b", False, "red"),
                                                     ("jobs", 7)])
        state.every_event_is_accounted_for()


def test_item12_a_spool_symlink_to_another_apps_body_is_not_sent():
    """Item 12: a symlink in the spool was followed, and another app's body was sent with
    this agent's token."""
    with machine(spool="big", max_payload=1_500) as state:
        state.plant_spool_file(kind="foreign_link", ops=[("jobs", 315)])
        state.every_event_is_accounted_for()
        state.close_and_restart(answers=[Drawn("stall"), Drawn("accept")])
        state.every_event_is_accounted_for()


def test_item13_concurrent_tasks_label_their_own_checkouts():
    """Item 13: once the main thread noted a flag outside a scope, asyncio tasks shared its
    mapping in place, labelled each other's checkouts, and changed the main thread's state."""
    with machine() as state:
        state.record(ops=[("flag", "f-a", True, "blue"), ("checkout", 1)])
        state.every_event_is_accounted_for()
        state.tasks_label_their_own_checkouts(tasks=[(False, None), (True, "red")])
        state.every_event_is_accounted_for()


def test_item14_a_record_flag_reference_taken_early_notes_flag_states():
    """Item 14: ``agent.record_flag`` taken before a flag-labelled metric was defined never
    noted states, so checkouts were labelled not_evaluated."""
    with machine(spool="big", capture_early=True) as state:
        state.record(ops=[("flag", "f-a", True, None), ("checkout", 3),
                          ("flag", "f-a", False, "red"), ("checkout", 4)])
        state.every_event_is_accounted_for()


def test_item04_a_decimal_gauge_next_to_counts_loses_nothing():
    """Item 4: ``gauge.set(Decimal("1.5"))`` made the flush raise TypeError while encoding,
    after the window's counts were taken: 0 of them arrived, none counted."""
    with machine() as state:
        state.record_an_odd_value(kind="decimal_gauge")
        state.record(ops=[("jobs", 1000), ("flag", "f-a", True, None)])
        state.every_event_is_accounted_for()
        state.flush(answers=[])
        state.every_event_is_accounted_for()


@pytest.mark.parametrize("kind", ["bool_gauge", "past_safe", "huge_counter"])
def test_item07_values_the_server_discards_are_never_sent(kind):
    """Item 7: ``gauge.set(True)``, ``inc(2**53)``, ``inc(10**30)``: the server answers 202
    and throws away the body's whole impactMetrics array, counted as delivered."""
    with machine(spool="small") as state:
        state.record(ops=[("jobs", 183), ("hits", "/a", 9), ("latency", 5.421)])
        state.record_an_odd_value(kind=kind)
        state.every_event_is_accounted_for()
        state.close_and_restart(answers=[])
        state.every_event_is_accounted_for()


def test_item08_an_overflowing_histogram_sum_leaves_the_histogram_usable():
    """Item 8: ``observe(1e308)`` twice made the sum infinite; every later observation was
    dropped as ``non_finite_sum``, counted as one."""
    with machine() as state:
        state.record_an_odd_value(kind="huge_observations")
        state.every_event_is_accounted_for()
        state.flush(answers=[])
        state.every_event_is_accounted_for()
        state.record_an_odd_value(kind="huge_observations")
        state.flush(answers=[])
        state.every_event_is_accounted_for()


def test_item09_an_oversize_flag_is_counted_in_events():
    """Item 9: a flag with a 100 kB name evaluated three times counted ``oversize_item: 1``."""
    with machine() as state:
        state.record_an_odd_value(kind="huge_flag_name")
        state.flush(answers=[])
        state.every_event_is_accounted_for()


def test_a_sigterm_child_that_evicts_older_spooled_bodies_counts_them():
    """Found by the model's explore profile: a child of an agent stopped by a 401, ended by
    SIGTERM, spools its window at close and, with a small spool, evicts older bodies (counted
    as spool_full in the child). The model now counts what vanished as the child's drop."""
    with machine(spool="small", capture_early=True) as state:
        state.record(ops=[("jobs", 14), ("flag", "f-b", True, "red"), ("hits", "/a", 24),
                          ("latency", 14.02)])
        state.every_event_is_accounted_for()
        state.record(ops=[("flag", "f-a", False, None), ("hits", "/a", 28), ("jobs", 405),
                          ("checkout", 1), ("hits", "/b", 22), ("depth", 0.0)])
        state.every_event_is_accounted_for()
        state.flush_while_recording(
            answers=[Drawn("unauth"), Drawn("accept"), Drawn("limited", 1), Drawn("unauth")],
            per_thread=[[("latency", 16.62), ("jobs", 848), ("jobs", 509)]])
        state.every_event_is_accounted_for()
        state.record(ops=[("jobs", 34), ("flag", "f-b", False, "blue"), ("checkout", 4)])
        state.every_event_is_accounted_for()
        state.fork_child(how="sigterm", ops=[("jobs", 328), ("latency", 0.0),
                                             ("hits", "/a", 37), ("checkout", 2)])
        state.every_event_is_accounted_for()
