"""What a real server can store, kept by construction (``impactagent.core.server_limits``).

unleash-server 8.2.0 answers 202 to each of these and then fails the write of a whole write
window, losing every app's counts in it (``tests/e2e/test_server_limits.py`` shows it):

- a variant count that takes its row (app, flag, variant, hour) past 2**31 - 1: the
  recorder takes at most the room left in its share of the hour, the rest waits;
- an app name over 255 characters or with NUL (``tests/test_settings.py``);
- variant names that are properties of JavaScript's ``Object.prototype``: refused.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from enum import Enum
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import impactagent
from impactagent.core import flags as flags_module
from impactagent.core.flag_decorator import evaluation
from impactagent.core.flags import HOUR_SHARE as SHARE
from impactagent.core.flags import ToggleDelta
from impactagent.core.server_limits import MAX_VARIANT_COUNT, OBJECT_PROTOTYPE_PROPERTIES
from impactagent.core.snapshot import Snapshot

MAX = MAX_VARIANT_COUNT
#: One day of an outage at 25,000 evaluations a second, merged back: what the issue saw.
DAY = 25_000 * 86_400


def backlog(agent: impactagent.Agent, blue: int, red: int = 0) -> None:
    """Leave ``blue`` + 2 evaluations of variant blue (and ``red`` + 1 of red) pending, as
    failed flushes merged back leave them: collects whose snapshots were restored
    (recording 2**31 evaluations one by one would take minutes)."""
    agent.record_flag("checkout", True, "blue")
    if red:
        agent.record_flag("checkout", True, "red")
    failed = agent.collect()
    agent.recorder.restore(failed)
    variants = {"blue": blue, **({"red": red} if red else {})}
    agent.recorder.restore(Snapshot(failed.start, failed.stop,
                                    {"checkout": ToggleDelta(blue + red, 0, variants)}, ()))
    agent.record_flag("checkout", False, "blue")  # and one more after, as traffic goes on


def sent_variants(agent: impactagent.Agent, snapshot: Snapshot) -> list:
    """Each body's variant counts of the flag, as sent."""
    return [body.document["bucket"]["toggles"].get("checkout", {}).get("variants")
            for body in agent.build_payloads(snapshot)]


def at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(flags_module, "utcnow", lambda: moment)


# -- variant counts: at most what the server's row of the hour can still hold -----------------

def test_a_day_of_backlog_is_sent_a_share_of_an_hour_row_at_a_time_and_nothing_is_lost(
        monkeypatch):
    hour = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
    at(monkeypatch, hour + timedelta(minutes=1))
    agent = impactagent.Agent("limits")
    backlog(agent, DAY)
    pending = agent.recorder.pending_events()
    assert pending == DAY + 2

    first = agent.collect()  # the old agent sent all 2,160,000,002 here: the window failed
    assert first.toggles["checkout"].variants == {"blue": SHARE}
    assert sent_variants(agent, first) == [{"blue": SHARE}]
    taken = first.toggles["checkout"].yes + first.toggles["checkout"].no
    assert taken >= SHARE  # every variant count comes with its evaluation

    at(monkeypatch, hour + timedelta(minutes=2))  # the same hour: its share is used
    assert "checkout" not in agent.collect().toggles
    agent.record_flag("checkout", True, "red")  # other variants still go
    assert agent.collect().toggles["checkout"].variants == {"red": 1}
    taken += 1

    hours = 1
    while agent.recorder.pending_events():  # one share an hour, until none is left
        hours += 1
        at(monkeypatch, hour + timedelta(hours=hours - 1, minutes=1))
        window = agent.collect().toggles["checkout"]
        blue = window.variants["blue"]
        assert 0 < blue <= SHARE and window.yes + window.no >= blue
        taken += window.yes + window.no
    assert hours == 5 and taken == pending + 1  # 2,160,000,002 over 536,870,911 an hour


def test_a_window_given_back_frees_its_room_in_the_hour(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 5, 8, 30, tzinfo=timezone.utc))
    agent = impactagent.Agent("limits")
    backlog(agent, SHARE + 10)
    failed = agent.collect()
    assert failed.toggles["checkout"].variants == {"blue": SHARE}
    agent.recorder.restore(failed)  # the server never stored it: the room is still there
    assert agent.collect().toggles["checkout"].variants == {"blue": SHARE}


def test_a_window_of_an_earlier_hour_given_back_frees_no_room_in_this_one(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 5, 8, 59, tzinfo=timezone.utc))
    agent = impactagent.Agent("limits")
    backlog(agent, 3 * SHARE)
    late = agent.collect()  # in flight across the hour
    assert late.toggles["checkout"].variants == {"blue": SHARE}
    at(monkeypatch, datetime(2026, 12, 5, 9, 1, tzinfo=timezone.utc))
    assert agent.collect().toggles["checkout"].variants == {"blue": SHARE}  # 9:00's share
    agent.recorder.restore(late)  # 8:00's row did not get it; 9:00's is still full
    assert "checkout" not in agent.collect().toggles
    at(monkeypatch, datetime(2026, 12, 5, 10, 1, tzinfo=timezone.utc))
    assert agent.collect().toggles["checkout"].variants == {"blue": SHARE}


def test_a_spooled_window_keeps_its_room_taken(monkeypatch):
    # Not given back (spooled, or delivered): the server has it, or will, in that hour.
    at(monkeypatch, datetime(2026, 12, 5, 8, 30, tzinfo=timezone.utc))
    agent = impactagent.Agent("limits")
    backlog(agent, SHARE - 5)
    assert agent.collect().toggles["checkout"].variants == {"blue": SHARE - 3}
    for _ in range(10):
        agent.record_flag("checkout", True, "blue")
    assert agent.collect().toggles["checkout"].variants == {"blue": 3}


def test_every_variant_has_a_row_of_its_own(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 5, 8, 30, tzinfo=timezone.utc))
    agent = impactagent.Agent("limits")
    backlog(agent, SHARE + 7, red=SHARE + 3)
    first = agent.collect().toggles["checkout"]
    assert first.variants == {"blue": SHARE, "red": SHARE}
    at(monkeypatch, datetime(2026, 12, 5, 9, 30, tzinfo=timezone.utc))
    assert agent.collect().toggles["checkout"].variants == {"blue": 9, "red": 4}


def test_a_clock_stepped_back_into_an_earlier_hour_gets_no_new_room(monkeypatch):
    at(monkeypatch, datetime(2026, 12, 5, 9, 1, tzinfo=timezone.utc))
    agent = impactagent.Agent("limits")
    backlog(agent, SHARE + 1)
    assert agent.collect().toggles["checkout"].variants == {"blue": SHARE}
    at(monkeypatch, datetime(2026, 12, 5, 8, 59, tzinfo=timezone.utc))
    assert "checkout" not in agent.collect().toggles


def test_recorders_racing_collects_past_the_share_lose_and_split_nothing(monkeypatch):
    import sys
    import threading

    evaluations = 100_000  # per thread
    hour = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
    at(monkeypatch, hour)
    agent = impactagent.Agent("limits")
    backlog(agent, SHARE)  # the hour's share is used by the first collect
    go, threads = threading.Event(), []

    def evaluate(index: int) -> None:
        go.wait()
        for i in range(evaluations):
            agent.record_flag("checkout", (i + index) % 3 != 0, "blue" if i % 2 else "red")

    for index in range(2):
        threads.append(threading.Thread(target=evaluate, args=(index,)))
        threads[-1].start()
    windows = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        go.set()
        while any(thread.is_alive() for thread in threads):
            windows.append(agent.collect().toggles.get("checkout"))
    finally:
        sys.setswitchinterval(old)
    at(monkeypatch, hour + timedelta(hours=1))
    windows.append(agent.collect().toggles.get("checkout"))
    windows = [w for w in windows if w is not None]
    assert all(w.yes + w.no >= max(w.variants.values(), default=0) for w in windows)
    assert sum(w.variants.get("blue", 0) for w in windows[:-1]) <= SHARE
    assert sum(w.yes + w.no for w in windows) == SHARE + 2 + 2 * evaluations
    assert sum(w.variants.get("blue", 0) for w in windows) == SHARE + 2 + evaluations
    assert sum(w.variants.get("red", 0) for w in windows) == evaluations
    assert len(windows) > 3  # collects did race the recorders
    assert agent.recorder.pending_events() == 0


def test_a_snapshot_made_otherwise_is_dropped_and_counted_never_sent():
    agent = impactagent.Agent("limits")
    now = datetime.now(timezone.utc)
    snapshot = Snapshot(now, now, {"checkout": ToggleDelta(MAX + 1, 2, {"blue": MAX + 1}),
                                   "other": ToggleDelta(1, 0, {"blue": MAX})}, ())
    [body] = agent.build_payloads(snapshot)
    assert body.document["bucket"]["toggles"] == {
        "other": {"yes": 1, "no": 0, "variants": {"blue": MAX}}}
    assert agent.statistics()["dropped"]["variant_count_limit"] == MAX + 3


def test_close_settles_what_waits_for_a_later_hour():
    from impactagent.devtools.receiver import Receiver

    with Receiver() as receiver:
        agent = impactagent.Agent("limits", url=receiver.api_url, register=False,
                                  api_key="default:development.unused")
        backlog(agent, SHARE + 100)
        agent.close(timeout=5)
        held = receiver.received.flags("limits")["checkout"]
    dropped = agent.statistics()["dropped"].get("not_delivered_by_close", 0)
    assert held["yes"] + held["no"] + dropped == SHARE + 102


@st.composite
def deltas(draw):
    """A flag's window as the recorder makes them (each variant count is of evaluations
    counted in yes or no), and what the hour's row holds already."""
    big = st.integers(0, 3 * MAX)
    variants = draw(st.dictionaries(st.sampled_from("abcd"), st.integers(1, 3 * MAX),
                                    max_size=4))
    floor = max(variants.values(), default=1)
    total = draw(st.integers(floor, floor + 3 * MAX))
    yes = draw(st.integers(0, total))
    taken = draw(st.dictionaries(st.sampled_from("abcde"), big))
    return ToggleDelta(yes, total - yes, variants), taken


@given(deltas())
def test_what_fits_the_hour_is_whole_and_what_waits_can_still_be_sent(case):
    from impactagent.core.flags import fit_hour

    delta, taken = case
    now = fit_hour(delta, taken)
    rest = ToggleDelta(delta.yes - now.yes, delta.no - now.no,
                       {v: n - now.variants.get(v, 0) for v, n in delta.variants.items()})
    for part in (now, rest):
        assert part.yes >= 0 and part.no >= 0 and all(n >= 0 for n in part.variants.values())
        # a variant count never travels without evaluations (the server would ignore it)
        assert all(part.yes + part.no >= n for n in part.variants.values())
    for variant, n in now.variants.items():
        assert n > 0 and taken.get(variant, 0) + n <= SHARE
    if all(taken.get(v, 0) + n <= SHARE for v, n in delta.variants.items()):
        assert now == delta  # room for all: all of it goes
    if not taken:  # a new hour: each variant gives as much as its share can hold
        assert all(now.variants.get(v, 0) == min(n, SHARE) for v, n in delta.variants.items())


# -- variant names that are Object.prototype's properties ----------------------------------------

class Variant(str, Enum):
    TO_STRING = "toString"


@pytest.mark.parametrize("name", [*sorted(OBJECT_PROTOTYPE_PROPERTIES), Variant.TO_STRING])
def test_an_object_prototype_variant_name_is_refused_and_counts_nothing(name):
    agent = impactagent.Agent("limits", max_flags=1)
    agent.record_flag("checkout", True, "blue")
    with pytest.raises(ValueError, match=r"Object\.prototype"):
        agent.record_flag("checkout", True, name)
    with pytest.raises(ValueError, match=r"Object\.prototype"):  # past the flag limit too
        agent.record_flag("another", False, name)
    [body] = agent.build_payloads(agent.collect())
    assert body.document["bucket"]["toggles"] == {
        "checkout": {"yes": 1, "no": 0, "variants": {"blue": 1}}}
    assert agent.statistics()["dropped"] == {}


def test_names_that_only_look_alike_are_variants():
    agent = impactagent.Agent("limits")
    for name in ("tostring", "toString ", "prototype", "__proto", "Constructor", "valueOf2"):
        agent.record_flag("checkout", True, name)
    assert len(agent.collect().toggles["checkout"].variants) == 6


@pytest.mark.parametrize("answer", [
    "toString", {"name": "constructor", "enabled": True},
    SimpleNamespace(name="__proto__", enabled=True), Variant.TO_STRING,
])
def test_a_flag_function_answering_such_a_name_counts_its_evaluation_without_a_variant(answer):
    agent = impactagent.Agent("limits")

    @agent.flag("checkout")
    def decide():
        return answer

    assert decide() is answer
    assert evaluation(answer) == (True, None)
    [body] = agent.build_payloads(agent.collect())
    assert json.loads(body.body)["bucket"]["toggles"] == {
        "checkout": {"yes": 1, "no": 0, "variants": {}}}


def test_an_openfeature_evaluation_with_such_a_variant_counts_no_variant():
    pytest.importorskip("openfeature")
    from openfeature import api
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from impactagent.integrations.openfeature import ImpactHook

    agent = impactagent.Agent("limits")
    api.set_provider(InMemoryProvider({
        "checkout": InMemoryFlag("toString", {"toString": True, "blue": False}),
        "theme": InMemoryFlag("blue", {"blue": "dark"}),
    }))
    api.clear_hooks()
    api.add_hooks([ImpactHook(agent)])
    try:
        client = api.get_client()
        assert client.get_boolean_value("checkout", False) is True
        assert client.get_string_value("theme", "light") == "dark"
    finally:
        api.clear_hooks()
    toggles = agent.collect().toggles
    assert toggles["checkout"] == ToggleDelta(1, 0, {})
    assert toggles["theme"] == ToggleDelta(1, 0, {"blue": 1})


# -- identities: see tests/test_settings.py for the refusals --------------------------------------

@pytest.mark.parametrize("app_name", ["\u20acshop", "\u30b7\u30e7\u30c3\u30d7"])
def test_an_app_name_outside_latin_1_is_delivered(app_name):
    from impactagent.devtools.receiver import Receiver

    with Receiver() as receiver:
        agent = impactagent.Agent(app_name, url=receiver.api_url, register=False,
                                  api_key="default:development.unused")
        agent.record_flag("checkout", True)
        try:
            assert agent.flush(timeout=2).delivered_events == 1
        finally:
            agent.close(timeout=0.5)


def test_a_variant_name_with_nul_is_refused_or_counted_without_a_variant():
    """unleash-server 8.2.0 loses every app's variant counts of a write window for a
    variant named with NUL (found by the generated differential, probed with a canary)."""
    agent = impactagent.Agent("limits")
    with pytest.raises(ValueError, match="NUL"):
        agent.record_flag("checkout", True, "blue\x00")

    @agent.flag("checkout")
    def checkout() -> str:
        return "blue\x00"

    assert checkout() == "blue\x00"  # the app's answer is untouched
    window = agent.collect().toggles["checkout"]
    assert (window.yes, window.no, window.variants) == (1, 0, {})
