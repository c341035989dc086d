"""How a process ends, and the last window with it: SIGTERM, close() against a flush still
in flight, and interpreter exit while a POST hangs.

Each test runs the real thing: a child interpreter that gets a real signal, a real local
server that stalls, a real daemon thread that interpreter exit kills.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

import impactagent
from tests import child
from tests.loopback import wait_until
from tests.scripted_server import Answer, ScriptedServer

TOKEN = "default:production.sh0tdown-secret"

APP = """
    import signal, sys, time
    import impactagent
    {before}
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, flush_interval=3600,
                              shutdown_timeout=5{options})
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    for _ in range(1000):
        jobs.inc()
    agent.record_flag("new-checkout", True, "blue")
    print("ready", flush=True)
    time.sleep(60)
"""


def start_app(server, *, before="", options="", env=None):
    process = child.popen(APP.format(url=server.api_url, token=TOKEN, before=before,
                                     options=options), env=env)
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process


def jobs_delivered(server) -> int:
    return sum(v for (name, _), v in server.totals()["counters"].items() if name == "jobs_total")


def test_sigterm_flushes_the_last_window_and_ends_as_sigterm_would(server):
    process = start_app(server)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == -signal.SIGTERM  # the status a supervisor expects
    assert jobs_delivered(server) == 1000
    assert server.totals()["flags"]["new-checkout"]["variants"] == {"blue": 1}


def test_sigterm_is_left_to_a_handler_the_app_installed(server):
    # The app's own handler decides: here it exits normally, and atexit flushes.
    before = "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))"
    process = start_app(server, before=before)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 3
    assert jobs_delivered(server) == 1000


def test_an_ignored_sigterm_stays_ignored(server):
    process = start_app(server, before="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    process.send_signal(signal.SIGTERM)
    with pytest.raises(Exception, match="timed out"):
        process.wait(timeout=1)
    process.kill()
    process.wait(timeout=10)
    assert jobs_delivered(server) == 0


@pytest.mark.parametrize("switch", [{"options": ", handle_sigterm=False"},
                                    {"env": {"IMPACTAGENT_HANDLE_SIGTERM": "0"}}])
def test_the_sigterm_handler_can_be_turned_off(server, switch):
    process = start_app(server, **switch)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == -signal.SIGTERM
    assert jobs_delivered(server) == 0  # the default disposition: nothing runs


def test_an_agent_started_off_the_main_thread_installs_nothing():
    # signal.signal() only works in the main thread: starting elsewhere must still work.
    import threading

    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN,
                                  flush_interval=3600)
        before = signal.getsignal(signal.SIGTERM)
        thread = threading.Thread(target=agent.start)
        thread.start()
        thread.join(10)
        assert signal.getsignal(signal.SIGTERM) is before
        agent.close()


# -- close() while the flusher's POST is in flight ------------------------------------------


def in_flight_agent(server, **options):
    """An agent whose flush (on another thread, as the flusher's would be) is inside a POST
    that the server holds for a while; and that thread, which ends once the late answer has
    been settled (a withdrawn drop, a removed spool file)."""
    import threading

    agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN, request_timeout=10,
                              **options)
    jobs = agent.counter("jobs_total", "Jobs")
    for _ in range(500):
        jobs.inc()
    flushing = threading.Thread(target=agent.flush, kwargs={"timeout": 10}, daemon=True)
    flushing.start()
    deadline = time.monotonic() + 5
    while agent.statistics()["pending_events"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the flush has collected the window and is sending it
    assert agent.statistics()["pending_events"] == 0
    return agent, flushing


def settled(server, agent, flushing) -> None:
    """Wait (bounded) for the late answer to be heard: the server has answered the held
    POST, and the agent no longer counts its body as possibly duplicated (the answer is
    settled on the agent's sending thread, after close() returned)."""
    flushing.join(15)
    assert not flushing.is_alive(), "the flush cut short by close() never returned"
    assert server.wait_for(
        lambda s: any(r.body.count(b"jobs_total") for r in s.requests), 15)
    assert wait_until(
        lambda: agent.statistics()["delivery"]["possibly_duplicated_events"] == 0, 15)


@pytest.mark.parametrize("late_answer", [500, 202])
def test_close_takes_over_a_flush_still_in_flight(server, late_answer):
    server.script(Answer(late_answer, delay=1))
    agent, flushing = in_flight_agent(server)
    started = time.monotonic()
    result = agent.close(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert not result.ok
    # At the deadline the in-flight window is counted, not left to a thread.
    assert agent.statistics()["dropped"] == {"not_delivered_by_close": 500}
    assert agent.statistics()["pending_events"] == 0
    # When the POST comes back, nothing is merged back into the closed agent...
    # The late answer (close's own flush had an empty window: it sent nothing).
    settled(server, agent, flushing)
    assert agent.statistics()["pending_events"] == 0
    if late_answer == 202:
        # ...and a late success withdraws the drop: delivered once, counted once.
        assert jobs_delivered(server) == 500
        assert agent.statistics()["dropped"] == {}
        assert agent.statistics()["delivery"]["delivered_events"] == 500
    else:
        assert jobs_delivered(server) == 0
        assert agent.statistics()["dropped"] == {"not_delivered_by_close": 500}


@pytest.mark.parametrize("late_answer", [500, 202])
def test_close_spools_a_flush_still_in_flight(server, tmp_path, late_answer):
    server.script(Answer(late_answer, delay=1))
    agent, flushing = in_flight_agent(server, spool_dir=str(tmp_path))
    agent.close(timeout=0.5)
    assert agent.statistics()["dropped"] == {}
    assert agent.statistics()["spool"]["files"] == 1  # on disk at the deadline
    # The late answer (close's own flush had an empty window: it sent nothing).
    settled(server, agent, flushing)
    # Delivered late: the spooled copy is removed, so it is never sent twice.
    assert agent.statistics()["spool"]["files"] == (0 if late_answer == 202 else 1)
    assert agent.statistics()["pending_events"] == 0


def test_a_flush_after_close_sends_nothing(server):
    agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN)
    agent.close()
    agent.counter("late_total", "Late").inc()
    assert agent.flush().skipped == "the agent is closed"
    assert server.requests == []  # close's own flush had nothing to send


EXIT_APP = """
    import time
    import impactagent
    # A periodic flush may take one interval: its POST hangs that long at most.
    agent = impactagent.Agent("shop", url={url!r}, api_key="t", flush_interval=2,
                              request_timeout=30, shutdown_timeout=0.5{options})
    jobs = agent.counter("jobs_total", "Jobs")
    for _ in range(700):
        jobs.inc()
    agent.start()
    while agent.statistics()["pending_events"]:
        time.sleep(0.01)
    time.sleep(0.2)   # the flusher is inside its POST; the script ends here
"""


def test_interpreter_exit_during_a_hanging_post_spools_the_window(server, tmp_path):
    server.script(Answer(202, delay=20))
    started = time.monotonic()
    done = child.run(EXIT_APP.format(url=server.api_url,
                                     options=f", spool_dir={str(tmp_path)!r}"))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    bodies = [json.loads(p.read_bytes()) for p in sorted(tmp_path.glob("*.json"))]
    spooled = sum(s["value"] for b in bodies for m in b.get("impactMetrics", [])
                  for s in m["samples"] if m["name"] == "jobs_total")
    assert spooled == 700


def test_interpreter_exit_during_a_hanging_post_counts_the_window(server):
    server.script(Answer(202, delay=20))
    done = child.run(EXIT_APP.format(url=server.api_url, options=""))
    assert done.returncode == 0, done.stderr
    assert "closing with 700 events not delivered" in done.stderr


RECORDED_AFTER_CLOSE = """
    import os, signal, time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, flush_interval=3600,
                              spool_dir={spool!r} or None)
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(1000)
    agent.close(timeout=5)
    jobs.inc(5)  # after close(): no flush sends it any more
    print("pending", agent.statistics()["pending_events"], flush=True)
    if {sigterm}:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
"""


@pytest.mark.parametrize("sigterm", [False, True], ids=["exit", "sigterm"])
@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "no_spool"])
def test_what_is_recorded_after_close_is_settled_when_the_process_ends(
        server, tmp_path, spooled, sigterm):
    """close() has delivered everything; the app records 5 more and ends (normally, or by
    SIGTERM): the 5 are spooled for the next agent, or counted as not delivered and said so,
    never left to vanish with the process."""
    from impactagent.core.payload import count_events

    spool = tmp_path / "spool"
    done = child.run(RECORDED_AFTER_CLOSE.format(
        url=server.api_url, token=TOKEN, spool=str(spool) if spooled else "",
        sigterm=sigterm), timeout=30)
    assert done.returncode == (-signal.SIGTERM if sigterm else 0), done.stderr
    assert done.stdout.split() == ["pending", "5"]
    assert jobs_delivered(server) == 1000
    if spooled:
        spooled_events = [count_events(json.loads(p.read_bytes())) for p in spool.glob("*.json")]
        assert sum(spooled_events) == 5, spooled_events
    else:
        assert "closing with 5 events not delivered" in done.stderr, done.stderr
        assert "they were recorded after close()" in done.stderr
    assert TOKEN not in done.stderr


def test_a_second_close_settles_what_was_recorded_since_the_first():
    from impactagent.delivery.transport import Outcome

    class Refusing:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Refusing(), register=False)
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(3)
    agent.close(timeout=0.5)
    jobs.inc(4)
    assert agent.statistics()["pending_events"] == 4
    agent.close(timeout=0.5)
    stats = agent.statistics()
    assert stats["pending_events"] == 0
    assert stats["dropped"]["not_delivered_by_close"] == 7
