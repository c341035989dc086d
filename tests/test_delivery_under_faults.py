"""The delivery's promise under signals, exits, faulty transports and servers: every count
recorded is delivered once, or kept (merged back, spooled), or counted as dropped with a
reason; a body that may be stored twice is inside ``possibly_duplicated_events``.

Signals are real (``signal.raise_signal`` or ``kill`` of a real child process, handled by
the real handlers), interpreters are real (including Python 3.12 and later where a pyenv
has them), and so are the servers (a local HTTP server) and the users' transports.
"""

from __future__ import annotations

import functools
import json
import signal
import time

import pytest

from tests import child
from tests.workload import in_process_ledger

#: Prints what the agent's statistics say became of what it recorded, as one JSON line.
LEDGER = """
    def ledger(agent):
        s = agent.statistics()
        return {"recorded": sum(s["recorded"].values()), "pending": s["pending_events"],
                "delivered": s["delivery"]["delivered_events"], "dropped": s["dropped"],
                "duplicated": s["delivery"]["possibly_duplicated_events"]}
"""


def accounted(ledger):
    """recorded = delivered + kept (pending) + dropped, for a process that did not lose any."""
    return ledger["delivered"] + ledger["pending"] + sum(ledger["dropped"].values())


# -- a signal while the agent tells the log what it did -------------------------------------

CTRL_C_WHILE_LOGGING = """
    import json, logging, os, signal, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Answering:
        def post(self, body, timeout):
            return Outcome({kind!r}, {status})

    class CtrlCNow(logging.Handler):
        # Ctrl-C while the line is written (a slow stderr, a full pipe): a real SIGINT to
        # the process, handled by Python's own handler on the main thread.
        fired = False
        def emit(self, record):
            if record.levelno >= logging.ERROR and not CtrlCNow.fired:
                CtrlCNow.fired = True
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)

    logging.getLogger("impactagent").addHandler(CtrlCNow())
    agent = impactagent.Agent("shop", transport=Answering(), register=False)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        agent.{call}(timeout=2)
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted")
    agent.close(timeout=5)  # waits for the work Ctrl-C did not stop
    print(json.dumps(ledger(agent)))
"""


@pytest.mark.parametrize("kind, status, call", [
    ("unauthorized", 401, "flush"),  # the body must be kept: sending stops, recording goes on
    ("rejected", 400, "flush"),  # the body's events must be counted as rejected_by_server
    ("retry", 503, "close"),  # no spool: counted as not_delivered_by_close
])
def test_ctrl_c_while_an_answer_is_logged_loses_nothing(kind, status, call):
    """Ctrl-C while the agent logs what became of a body: it ends the app's wait (flush()
    or close() raises KeyboardInterrupt), never the agent's work, which runs on a thread
    of its own; that work ends and the body is accounted for."""
    done = child.run(LEDGER + CTRL_C_WHILE_LOGGING.format(kind=kind, status=status, call=call))
    lines = done.stdout.splitlines()
    assert lines[0] == "interrupted", done.stderr
    ledger = json.loads(lines[1])
    assert ledger["recorded"] == 7
    assert accounted(ledger) == 7, ledger


SIGTERM_WHILE_LOGGING_A_REFUSAL = """
    import logging, os, signal
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Refusing:
        def post(self, body, timeout):
            return Outcome("unauthorized", 401)

    class TerminateNow(logging.Handler):
        def emit(self, record):
            if "401" in record.getMessage():
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))

    logging.getLogger("impactagent").addHandler(TerminateNow())
    agent = impactagent.Agent("shop", transport=Refusing(), register=False,
                              flush_interval=3600, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    agent.flush(timeout=2)  # on the main thread, where SIGTERM's handler runs
    print("survived SIGTERM")
"""


def test_sigterm_while_a_refusal_is_logged_spools_the_refused_body(tmp_path):
    """``docker stop`` while a flush on the main thread logs the server's 401: the handler
    closes the agent and ends the process from inside that line, so the body must already
    be in the spool (sending stopped; a restart with a valid token sends it)."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_LOGGING_A_REFUSAL.format(spool=str(spool)), timeout=30)
    assert done.returncode == -signal.SIGTERM, done.stderr
    files = sorted(spool.glob("*.json"))
    assert len(files) == 1, done.stderr
    body = json.loads(files[0].read_bytes())
    assert [s["value"] for m in body["impactMetrics"] for s in m["samples"]] == [7]


# -- SIGTERM, then Ctrl-C ---------------------------------------------------------------------

SLOW_SERVER_AGENT = """
    import time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:production.x",
                              flush_interval=3600, shutdown_timeout=3, request_timeout=30,
                              register=False, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(42)
    print("ready", flush=True)
    time.sleep(60)
"""


def spooled_values(spool):
    return sorted(s["value"] for path in spool.glob("*.json")
                  for m in json.loads(path.read_bytes()).get("impactMetrics", [])
                  for s in m["samples"])


def test_ctrl_c_after_sigterm_still_settles_what_the_close_holds(tmp_path):
    """SIGTERM's handler closes the agent on a thread of its own; a Ctrl-C while it waits
    (an impatient operator, a supervisor that sends both) ends the main thread with
    KeyboardInterrupt, and the exit's close must then wait for that close rather than
    take it for done: the interpreter would end it, daemon thread and all, mid-way."""
    from tests.scripted_server import Answer, ScriptedServer

    spool = tmp_path / "spool"
    with ScriptedServer() as server:
        server.script(Answer(503, delay=20))  # holds close's POST past its deadline
        process = child.popen(SLOW_SERVER_AGENT.format(url=server.api_url, spool=str(spool)))
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        stored = server.counter_total("jobs_total")
    assert stored + sum(spooled_values(spool)) == 42, process.stderr.read()


# -- the interpreter's exit, where no thread can be started ------------------------------------

EXIT_WITH_A_TRICKLING_SERVER = """
    import atexit, sys, threading
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:production.x",
                              flush_interval=3600, shutdown_timeout=2, request_timeout=1,
                              register=False)
    agent.start()  # its first flush is due at a random point of the hour: not before exit
    agent.counter("jobs_total", "Jobs").inc(42)
    if {simulate!r}:
        # Python 3.12's rule, on an older one: at exit no thread can be started. Runs before
        # the agent's own exit hook (atexit runs hooks last registered first).
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        atexit.register(setattr, threading.Thread, "start", refuse)
    print(sys.version_info[:2], flush=True)
"""


@functools.cache
def interpreters_without_threads_at_exit():
    """Python 3.12 and later from a pyenv, with this interpreter's pure-Python dependencies
    (requests, tenacity, ulid-py) on their path."""
    import glob
    import os
    import subprocess
    import sysconfig

    found = []
    for python in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python"))):
        path = os.pathsep.join([str(child.ROOT), sysconfig.get_paths()["purelib"]])
        probe = subprocess.run([python, "-c", "import requests, tenacity, ulid"],
                               env={**os.environ, "PYTHONPATH": path}, capture_output=True)
        if probe.returncode == 0:
            found.append((python, path))
    return tuple(found)


@pytest.mark.parametrize("python", ["simulated"] + [p for p, _ in
                                                    interpreters_without_threads_at_exit()])
def test_close_at_exit_keeps_its_deadline_where_no_thread_can_start(python):
    """An agent that has not flushed yet closes at exit: its POST must still run on the
    sending thread (started with the flusher), not on the exiting thread, where a
    trickling answer holds the exit for as long as the server likes."""
    import subprocess
    import sys
    import textwrap

    from tests.scripted_server import Answer, ScriptedServer

    paths = dict(interpreters_without_threads_at_exit())
    with ScriptedServer() as server:
        server.script(Answer(202, trickle=0.3))  # about 30 s for the whole answer
        script = textwrap.dedent(EXIT_WITH_A_TRICKLING_SERVER.format(
            url=server.api_url, simulate=python == "simulated"))
        command = [sys.executable if python == "simulated" else python, "-c", script]
        env = child.environment({"PYTHONPATH": paths[python]} if python in paths else None)
        started = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 5, f"the exit took {took:.1f} s with shutdown_timeout=2"
    assert "42 events not delivered" in done.stderr  # and counted as not_delivered_by_close


# -- a user's transport that answers garbage ---------------------------------------------------


@pytest.mark.parametrize("garbage", [
    dict(kind="delivered", status=200, detail=b"stored"),  # bytes, not text
    dict(kind="retry", status="503"),  # the status as text
    dict(kind="retry", status=503.5, detail=["busy"]),
    dict(kind="unauthorized", status=object()),
], ids=["bytes-detail", "text-status", "float-status-list-detail", "object-status"])
def test_an_outcome_with_malformed_fields_is_held_to_its_kind(garbage):
    """The README: a ``post`` that answers something other than an ``Outcome`` is a failed
    send, logged once, and never escapes ``flush()``. An ``Outcome`` of a known kind whose
    status or detail is malformed is taken for its kind (a delivered body is never sent
    again), with the malformed parts left out, and flush() does not raise."""
    import impactagent
    from impactagent.delivery.transport import Outcome

    sent = []

    class Sloppy:
        def post(self, body, timeout):
            sent.append(body)
            return Outcome(**garbage)

    agent = impactagent.Agent("shop", transport=Sloppy(), register=False)
    agent.counter("jobs_total", "Jobs").inc(5)
    agent.flush(timeout=1)
    agent.flush(timeout=1)
    ledger = in_process_ledger(agent)
    assert accounted(ledger) == 5 and ledger["duplicated"] == 0, ledger
    if garbage["kind"] == "delivered":
        assert len(sent) == 1 and ledger["delivered"] == 5
    json.dumps(agent.statistics())  # still plain values
    agent.close(timeout=1)


# -- one endless answer ---------------------------------------------------------------------


def test_one_endless_answer_does_not_stop_delivery_for_good():
    """A proxy that trickles one answer without end (each read in time, so the socket's
    timeout never fires): the flush's deadline cuts the wait, and that body is kept and
    counted as possibly duplicated. The server answers every later POST at once: the next
    flushes must deliver."""
    import impactagent
    from tests.scripted_server import Answer, ScriptedServer

    with ScriptedServer() as server:
        # Every read in time; the whole answer would take more than two minutes.
        server.script(Answer(202, trickle=0.3, body=b" " * 500))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:production.x",
                                  register=False, request_timeout=1)
        jobs = agent.counter("jobs_total", "Jobs")
        jobs.inc(7)
        assert not agent.flush(timeout=1.5).ok
        jobs.inc(3)
        results = [agent.flush(timeout=1.5) for _ in range(3)]
        assert any(result.delivered_bodies for result in results), results
        ledger = in_process_ledger(agent)
        assert ledger["delivered"] == 10 and ledger["duplicated"] == 7, ledger
        agent.close(timeout=1)


# -- close takes a snapshot whose bodies are still being built ---------------------------------


def test_a_build_that_fails_after_close_took_its_snapshot_does_not_give_it_back_twice():
    """close() takes over a flush stuck building its bodies: the snapshot goes back to the
    recorder and close's own flush sends it. When the stuck build then fails, the flush must
    see that its snapshot was taken, and not give it back a second time: that would leave
    phantom counts pending after close (and a later flush would send them again)."""
    import threading

    from impactagent.core.payload import Identity, build_payloads
    from impactagent.core.recorder import Recorder
    from impactagent.core.statistics import DeliveryLedger
    from impactagent.delivery.delivery import Delivery
    from impactagent.delivery.transport import HttpTransport
    from tests.scripted_server import ScriptedServer

    building, fail_now, calls = threading.Event(), threading.Event(), []

    def build(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the stuck flush's build: held until close is done
            building.set()
            fail_now.wait(10)
            raise MemoryError("building the bodies ran out of memory")
        return build_payloads(*args, **kwargs)

    with ScriptedServer() as server:
        recorder, identity = Recorder(), Identity.create("shop")
        transport = HttpTransport(server.api_url + "/client/metrics", "t", identity,
                                  flush_interval=60)
        delivery = Delivery(recorder, transport, identity=identity, request_timeout=2,
                            max_payload_bytes=95_000, ledger=DeliveryLedger(),
                            drops=recorder.drops, build=build)
        recorder.metrics.counter("jobs_total", "Jobs").inc(1000)
        stuck = threading.Thread(target=delivery.flush, args=(time.monotonic() + 10,))
        stuck.start()
        assert building.wait(5)
        closed = delivery.close(time.monotonic() + 2)
        fail_now.set()
        stuck.join(10)
        assert server.counter_total("jobs_total") == 1000, closed
        assert delivery.ledger.as_dict()["delivered_events"] == 1000
        assert recorder.pending_events() == 0  # after close() nothing is pending


def _delivery_with(server, build, max_payload_bytes=95_000):
    """A Delivery of a fresh Recorder to ``server`` whose bodies ``build`` makes."""
    from impactagent.core.payload import Identity
    from impactagent.core.recorder import Recorder
    from impactagent.core.statistics import DeliveryLedger
    from impactagent.delivery.delivery import Delivery
    from impactagent.delivery.transport import HttpTransport

    recorder, identity = Recorder(), Identity.create("shop")
    transport = HttpTransport(server.api_url + "/client/metrics", "t", identity,
                              flush_interval=60)
    return recorder, Delivery(recorder, transport, identity=identity, request_timeout=2,
                              max_payload_bytes=max_payload_bytes, ledger=DeliveryLedger(),
                              drops=recorder.drops, build=build)


def _record_an_oversize_flag_and_jobs(recorder):
    """2,000 evaluations of one flag whose variants alone outgrow a 20 kB body
    (``oversize_item``), and 1,000 jobs that fit: 3,000 events."""
    for variant in range(2000):
        recorder.flags.record("huge", True, f"variant-number-{variant}")
    recorder.metrics.counter("jobs_total", "Jobs").inc(1000)
    return 3000


def _close_during_the_first_build(server, record, max_payload_bytes=95_000):
    """A flush on a thread builds its bodies and holds them until ``close()``, begun
    meanwhile, has returned; the recorder and delivery, after ``record(recorder)``."""
    import threading

    from impactagent.core.payload import build_payloads

    built, close_done, calls = threading.Event(), threading.Event(), []

    def build(*args, **kwargs):
        payloads = build_payloads(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # the flush's build: done, but not handed over until close is
            built.set()
            close_done.wait(10)
        return payloads

    recorder, delivery = _delivery_with(server, build, max_payload_bytes)
    record(recorder)
    flushing = threading.Thread(target=delivery.flush, args=(time.monotonic() + 10,))
    flushing.start()
    assert built.wait(5)
    delivery.close(time.monotonic() + 2)
    close_done.set()
    flushing.join(10)
    assert not flushing.is_alive()
    return recorder, delivery


def test_a_drop_made_by_a_build_close_took_over_is_counted_once(caplog):
    """close() takes back the snapshot of a flush still building its bodies and builds it
    again. The drops the taken build made (``oversize_item``) must not count: close's own
    build counts them, once, and logs the first of them once."""
    import logging

    from tests.scripted_server import ScriptedServer

    caplog.set_level(logging.WARNING, logger="impactagent")
    with ScriptedServer() as server:
        recorder, _ = _close_during_the_first_build(
            server, _record_an_oversize_flag_and_jobs, max_payload_bytes=20_000)
        received = server.counter_total("jobs_total")
    dropped = recorder.drops.as_dict()
    assert received == 1000
    assert dropped == {"oversize_item": 2000}
    assert received + sum(dropped.values()) == 3000
    assert sum("too large for any request body" in record.getMessage()
               for record in caplog.records) == 1


def test_an_empty_window_close_took_over_is_counted_once():
    """The empty window a taken build saw is close's to count (its build sees it again)."""
    from tests.scripted_server import ScriptedServer

    with ScriptedServer() as server:
        _, delivery = _close_during_the_first_build(server, lambda recorder: None)
    assert delivery.ledger.as_dict()["empty_windows"] == 1


def test_a_drop_made_by_a_build_that_then_failed_is_counted_once_by_the_next_flush():
    """A build that counted a drop and then raised gives the whole snapshot back: the next
    flush builds it again and counts that drop, once."""
    from impactagent.core.payload import build_payloads
    from tests.scripted_server import ScriptedServer

    calls = []

    def build(*args, **kwargs):
        payloads = build_payloads(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("building the bodies ran out of memory")
        return payloads

    with ScriptedServer() as server:
        recorder, delivery = _delivery_with(server, build, max_payload_bytes=20_000)
        recorded = _record_an_oversize_flag_and_jobs(recorder)
        failed = delivery.flush(time.monotonic() + 5)
        assert failed.skipped.startswith("building bodies failed"), failed
        assert recorder.pending_events() == recorded  # given back whole
        assert delivery.flush(time.monotonic() + 5).ok
        received = server.counter_total("jobs_total")
        dropped = recorder.drops.as_dict()
        delivery.close(time.monotonic() + 2)
    assert received == 1000
    assert dropped == {"oversize_item": 2000}
    assert received + sum(dropped.values()) == recorded


def test_drops_made_by_close_s_failing_builds_are_not_counted_beside_what_it_held():
    """close's builds count drops and then raise: everything it held is counted once, as
    not delivered, and none of it again under the reason the failed build had for it."""
    from impactagent.core.payload import build_payloads
    from tests.scripted_server import ScriptedServer

    def build(*args, **kwargs):
        build_payloads(*args, **kwargs)
        raise MemoryError("building the bodies ran out of memory")

    with ScriptedServer() as server:
        recorder, delivery = _delivery_with(server, build, max_payload_bytes=20_000)
        recorded = _record_an_oversize_flag_and_jobs(recorder)
        delivery.close(time.monotonic() + 2)
        assert server.accepted_documents() == []
    assert recorder.drops.as_dict() == {"not_delivered_by_close": recorded}


def test_ctrl_c_from_the_first_drop_s_log_line_loses_none_of_the_bodies():
    """The drops of a build are counted (and the first logged) as its bodies replace the
    snapshot: a Ctrl-C raised by a log handler then must leave those bodies kept (merged
    back), not lost between the snapshot and its bodies."""
    import logging

    from impactagent.core.payload import build_payloads
    from tests.scripted_server import ScriptedServer

    class CtrlC(logging.Handler):
        def emit(self, record):
            if "too large for any request body" in record.getMessage():
                raise KeyboardInterrupt

    handler = CtrlC()
    logging.getLogger("impactagent").addHandler(handler)
    try:
        with ScriptedServer() as server:
            recorder, delivery = _delivery_with(server, build_payloads,
                                                max_payload_bytes=20_000)
            recorded = _record_an_oversize_flag_and_jobs(recorder)
            with pytest.raises(KeyboardInterrupt):
                delivery.flush(time.monotonic() + 5)
            dropped = recorder.drops.as_dict()
            assert dropped == {"oversize_item": 2000}
            assert recorder.pending_events() + sum(dropped.values()) == recorded
            delivery.close(time.monotonic() + 2)
            assert server.counter_total("jobs_total") == 1000
    finally:
        logging.getLogger("impactagent").removeHandler(handler)


# -- Ctrl-C while close keeps what a stuck flush held ------------------------------------------

CTRL_C_WHILE_CLOSE_KEEPS = """
    import json, logging, os, signal, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class HangsFirst:
        def __init__(self):
            self.posted, self.release = threading.Event(), threading.Event()
        def post(self, body, timeout):
            if not self.posted.is_set():
                self.posted.set()
                self.release.wait(20)
                return Outcome("retry", 503)
            return Outcome("delivered", 202)

    class CtrlCOnce(logging.Handler):
        fired = False
        def emit(self, record):
            if "not delivered" in record.getMessage() and not self.fired:
                CtrlCOnce.fired = True
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)

    transport = HangsFirst()
    agent = impactagent.Agent("shop", transport=transport, register=False,
                              max_payload_bytes=2000)
    for i in range(60):  # sixty series: several bodies of at most 2000 bytes
        agent.counter(f"jobs_{i}_total", "Jobs").inc(1)
    flushing = threading.Thread(target=agent.flush, kwargs={"timeout": 30})
    flushing.start()
    assert transport.posted.wait(10)
    logging.getLogger("impactagent").addHandler(CtrlCOnce())
    try:
        agent.close(timeout=1)
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted")
    transport.release.set()
    flushing.join(10)
    agent.close(timeout=5)  # waits for the close Ctrl-C did not stop
    print(json.dumps(ledger(agent)))
"""


def test_ctrl_c_while_close_keeps_a_stuck_flush_s_bodies_loses_none():
    """close() takes every body a stuck flush holds (one in flight, the rest not yet sent)
    and keeps each (no spool: counted as not_delivered_by_close). A Ctrl-C while it does
    so ends the app's wait, not the close: every body is kept, none lost half-way."""
    done = child.run(LEDGER + CTRL_C_WHILE_CLOSE_KEEPS, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[:1] == ["interrupted"], done.stderr
    ledger = json.loads(lines[1])
    assert ledger["recorded"] == 60
    assert accounted(ledger) == 60, ledger


# -- what close() says ---------------------------------------------------------------------------


def test_close_is_not_ok_when_the_flush_it_waited_for_could_not_deliver():
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    posted = threading.Event()

    class SlowFailure:
        def post(self, body, timeout):
            posted.set()
            time.sleep(0.2)
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=SlowFailure(), register=False)
    agent.counter("jobs_total", "Jobs").inc(10)
    flushing = threading.Thread(target=agent.flush, kwargs={"timeout": 30})
    flushing.start()
    assert posted.wait(5)
    result = agent.close(timeout=2)  # the flush's POST fails after close began
    flushing.join(5)
    assert agent.statistics()["dropped"] == {"not_delivered_by_close": 10}
    assert not result.ok, result


# -- an answer that arrives while close is keeping its body ----------------------------------


def test_a_2xx_heard_while_close_keeps_the_body_withdraws_the_keeping():
    """close() takes a body whose POST is in flight and keeps it (no spool: counted as
    not_delivered_by_close). The 2xx arrives while that keeping is being logged: the
    body is delivered, once, and nothing is dropped or possibly duplicated."""
    import logging
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    posted, keeping = threading.Event(), threading.Event()

    class AnswersWhileKept:
        def post(self, body, timeout):
            posted.set()
            keeping.wait(10)
            return Outcome("delivered", 202)

    class SlowLine(logging.Handler):  # the keeping's log line takes a moment to write
        def emit(self, record):
            if "not delivered" in record.getMessage():
                keeping.set()
                time.sleep(0.3)

    handler = SlowLine()
    logging.getLogger("impactagent").addHandler(handler)
    try:
        agent = impactagent.Agent("shop", transport=AnswersWhileKept(), register=False)
        agent.counter("jobs_total", "Jobs").inc(10)
        flushing = threading.Thread(target=agent.flush, kwargs={"timeout": 30})
        flushing.start()
        assert posted.wait(5)
        agent.close(timeout=2)
        flushing.join(5)
        time.sleep(0.5)  # the late answer, if it comes late
    finally:
        logging.getLogger("impactagent").removeHandler(handler)
    ledger = in_process_ledger(agent)
    assert ledger["delivered"] == 10 and ledger["dropped"] == {}, ledger
    assert ledger["duplicated"] == 0, ledger


# -- a slow registration ---------------------------------------------------------------------


def test_a_slow_registration_does_not_hold_close_s_last_post():
    """The server is slow to answer /client/register (5 s, within request_timeout) and
    answers /client/metrics at once. A short-lived process (a job, a CLI run) closes right
    after start: its last window must go out, as the registration's own log line promises
    ('Sending metrics does not depend on it'), not be counted as not_delivered_by_close
    because both POSTs waited for one thread."""
    import impactagent
    from tests.scripted_server import Answer, ScriptedServer

    with ScriptedServer() as server:
        server.script_register(Answer(202, delay=5))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:production.x",
                                  request_timeout=10, flush_interval=60).start()
        agent.counter("jobs_total", "Jobs").inc(5)
        time.sleep(0.2)  # the flusher's registration is in flight
        result = agent.close(timeout=2)
        assert server.counter_total("jobs_total") == 5, result
        assert in_process_ledger(agent)["dropped"] == {}


# -- SIGTERM while the app closes the agent on a thread of its own ----------------------------

CLOSING_ON_A_THREAD = """
    import threading, time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:production.x",
                              flush_interval=3600, shutdown_timeout=3, request_timeout=30,
                              register=False, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(42)
    threading.Thread(target=agent.close, args=(3,)).start()  # the app's own shutdown path
    print("closing", flush=True)
    time.sleep(60)
"""


def test_sigterm_while_another_thread_closes_waits_for_that_close(tmp_path):
    """The app closes the agent on a thread of its own; SIGTERM comes while that close
    waits for the server. The handler closes every agent before it ends the process: the
    one being closed too, which means waiting for that close (within its deadline), not
    ending the process under it with the body neither sent nor spooled."""
    from tests.scripted_server import Answer, ScriptedServer

    spool = tmp_path / "spool"
    with ScriptedServer() as server:
        server.script(Answer(503, delay=20))  # holds close's POST past its deadline
        process = child.popen(CLOSING_ON_A_THREAD.format(url=server.api_url, spool=str(spool)))
        assert process.stdout.readline().strip() == "closing", process.stderr.read()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
        stored = server.counter_total("jobs_total")
    assert stored + sum(spooled_values(spool)) == 42, process.stderr.read()


SLOW_SERVER_AGENT_MANY_BODIES = """
    import threading, time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:production.x",
                              flush_interval=3600, shutdown_timeout=2, request_timeout=30,
                              register=False, spool_dir={spool!r}, max_payload_bytes=2000)
    agent.start()
    for i in range(40):
        agent.counter(f"jobs_{{i}}_total", "Jobs").inc(1)
    if {app_close!r}:
        threading.Thread(target=agent.close, args=({app_close!r},)).start()
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("app_close, second_sigterm", [
    (None, 0.005),  # SIGTERM twice (a group kill and a forwarded one), 5 ms apart
    (10, None),  # the app closes on its own thread with a longer timeout than shutdown's
], ids=["sigterm-twice", "app-close-outlasts-shutdown-timeout"])
def test_sigterm_ends_the_process_only_after_every_close_has_settled(tmp_path, app_close,
                                                                     second_sigterm):
    """SIGTERM's handler waits shutdown_timeout for each agent's close, then settles at
    once (spooled or counted) what a close still running holds, and ends the process.
    A close that was already running when the handler's own gave up waiting for it (begun
    by a first SIGTERM, or by the app with a longer timeout) is one of those: the process
    must not end under it with 40 events neither sent nor spooled."""
    from tests.scripted_server import Answer, ScriptedServer

    spool = tmp_path / "spool"
    with ScriptedServer() as server:
        server.default = Answer(503, delay=20)  # holds every POST
        process = child.popen(SLOW_SERVER_AGENT_MANY_BODIES.format(
            url=server.api_url, spool=str(spool), app_close=app_close))
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        if second_sigterm is not None:
            time.sleep(second_sigterm)
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
        stored = sum(server.totals()["counters"].values())
    assert stored == 0 and sum(spooled_values(spool)) == 40, process.stderr.read()


# -- a claim stamped by a clock far ahead ----------------------------------------------------


def test_a_claim_stamped_far_in_the_future_is_taken_back_within_a_lease(tmp_path):
    """A process claimed a spooled body while its clock was a day ahead (a VM restored
    from a snapshot, a board that booted with a bad clock), then died; the clock was set
    right. No owner on a clock that agrees within the lease (the spool's stated condition)
    can have made that claim: it must go back in the queue, not wait a day and a lease."""
    from impactagent.delivery.spool import Spool

    spool = Spool(tmp_path, lease_seconds=0.5)
    entry = spool.write(b'{"appName": "shop", "bucket": {"start": "2026-11-25T10:00:00Z", '
                        b'"stop": "2026-11-25T10:01:00Z", "toggles": {"f": {"yes": 3, '
                        b'"no": 0, "variants": {}}}}}')
    assert entry is not None
    ahead_ms = int((time.time() + 86400) * 1000)
    claimed = entry.path.with_name(f"{entry.path.name}.0123456789abcdef.{ahead_ms}.sending")
    entry.path.rename(claimed)
    time.sleep(0.7)  # more than a lease after the claim was made, on the right clock
    later = Spool(tmp_path, lease_seconds=0.5)
    assert [e.path.name for e in later.entries()] == [entry.path.name]


# -- the process ends while a flush keeps a body it settled --------------------------------------

SIGTERM_WHILE_A_FLUSH_KEEPS = """
    import json, logging, os, signal
    import impactagent
    from impactagent.delivery.spool import Spool
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    class TerminateNow(logging.Handler):  # SIGTERM while the spool's eviction is logged
        def emit(self, record):
            if "spool_full" in record.getMessage():
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))

    toggles = {{f"old_flag_{{i}}": {{"yes": 1, "no": 0, "variants": {{}}}} for i in range(12)}}
    old = json.dumps({{"appName": "shop", "bucket": {{"start": "2026-11-25T10:00:00Z",
                      "stop": "2026-11-25T10:01:00Z", "toggles": toggles}}}}).encode()
    assert 700 < len(old) < 1000, len(old)
    Spool({spool!r}).write(old)  # an older body: keeping the new one evicts it
    logging.getLogger("impactagent").addHandler(TerminateNow())
    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1, spool_dir={spool!r}, spool_max_bytes=1200)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    snapshot = agent.collect()
    body = agent.build_payloads(snapshot)[0].body
    assert len(body) + len(old) > 1200 > len(body), (len(body), len(old))  # alone it fits
    agent.restore(snapshot)
    agent.flush(timeout=2)  # on the main thread, where SIGTERM's handler runs
    print("survived SIGTERM")
"""


def test_sigterm_while_a_flush_keeps_its_body_still_spools_it(tmp_path):
    """The body was collected, not delivered, and is being written to the spool (which
    first evicts an older body, and logs that) when SIGTERM arrives."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_A_FLUSH_KEEPS.format(spool=str(spool)), timeout=30)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert spooled_values(spool) == [7], done.stderr


# -- a failure's status line at once, its body a trickle ---------------------------------------


def head_first_server():
    """A ScriptedServer whose ``trickle`` answers send the status line and headers at once
    and then trickle the body (the scripted one trickles the status line too)."""
    from tests.scripted_server import ScriptedServer

    def write_head_first(handler, answer):
        handler.close_connection = True
        head, _, body = answer.raw().partition(b"\r\n\r\n")
        try:
            handler.wfile.write(head + b"\r\n\r\n")
            handler.wfile.flush()
            for i in range(len(body)):
                handler.wfile.write(body[i:i + 1])
                handler.wfile.flush()
                if handler.stall(answer.trickle):
                    return
        except OSError:  # the client gave up
            pass

    class HeadFirst(ScriptedServer):
        @property
        def handler_class(self):
            return type("HeadFirstHandler", (super().handler_class,),
                        {"_write_raw": write_head_first})

    return HeadFirst()


@pytest.mark.parametrize("status", [503, 400])
def test_a_failure_whose_answer_body_trickles_is_decided_by_its_status_line(status):
    """The status line says the body was not stored (503: kept; 400: dropped, counted);
    reading the answer's text for the log must not outlast the deadline, turn that status
    into 'no answer' (possibly duplicated, and a 400 sent again), or hold the sending thread
    so that the next flush cannot send."""
    import impactagent
    from tests.scripted_server import Answer

    with head_first_server() as server:
        server.script(Answer(status, trickle=0.3, body=b'{"error": "' + b"x" * 300 + b'"}'))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:production.x",
                                  register=False, request_timeout=1)
        jobs = agent.counter("jobs_total", "Jobs")
        jobs.inc(7)
        first = agent.flush(timeout=2)
        delivery = agent.statistics()["delivery"]
        assert delivery["possibly_duplicated_events"] == 0, first
        assert delivery["failures"] == {str(status): 1}
        jobs.inc(3)
        assert agent.flush(timeout=2).delivered_bodies == 1  # the server takes it now
        expected = 3 if status == 400 else 10
        assert server.counter_total("jobs_total") == expected
        if status == 400:
            assert agent.statistics()["dropped"] == {"rejected_by_server": 7}
        agent.close(timeout=1)


# -- SIGTERM while a flush on the main thread collects ----------------------------------------

SIGTERM_WHILE_COLLECTING = """
    import os, signal
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    fired = []

    def bridge():  # a collect hook reading another registry; SIGTERM comes while it runs
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))

    agent.recorder.add_collect_hook(bridge)
    agent.flush(timeout=2)  # on the main thread, where SIGTERM's handler runs
    print("survived SIGTERM")
"""


def test_sigterm_while_a_main_thread_flush_collects_spools_the_window(tmp_path):
    """A batch job or a CLI that calls flush() on its main thread; SIGTERM arrives while
    the flush collects (a bridge's collect hook runs, or 100k series are read)."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_COLLECTING.format(spool=str(spool)), timeout=30)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert spooled_values(spool) == [7], done.stderr


# -- a user's transport whose close() blocks ---------------------------------------------------


def test_close_keeps_its_deadline_when_the_transport_s_close_blocks():
    """A user's transport drains its own queue in close() (to a broker that is down, say):
    the agent's close(timeout=1) must still return by its deadline, at exit above all,
    with what it did."""
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    released = threading.Event()

    class Stubborn:
        def post(self, body, timeout):
            return Outcome("delivered", 202)

        def close(self):
            released.wait(10)

    agent = impactagent.Agent("shop", transport=Stubborn(), register=False)
    agent.counter("jobs_total", "Jobs").inc(3)
    started = time.monotonic()
    result = agent.close(timeout=1)
    took = time.monotonic() - started
    released.set()
    assert result.ok and result.delivered_events == 3
    assert took < 2, f"close(timeout=1) took {took:.1f} s"


def test_a_failure_s_answer_cut_by_the_deadline_inside_an_echoed_token_shows_none_of_it():
    """A gateway echoes the request's token in its 503 page and trickles it: the deadline
    cuts the answer inside the token. The detail (which is logged) must not end with the
    token's first characters: a secret cut short is still a secret."""
    from impactagent.core.payload import Identity
    from impactagent.delivery.transport import HttpTransport
    from tests.scripted_server import Answer

    secret = "5ecr" + "e7" * 150  # 304 characters: the deadline cuts inside it
    token = f"default:production.{secret}"
    with head_first_server() as server:
        server.script(Answer(503, trickle=0.005, body=b'{"echo": "' + token.encode() + b'"}'))
        transport = HttpTransport(server.api_url + "/client/metrics", token,
                                  Identity.create("shop"), flush_interval=60)
        outcome = transport.post(b'{"appName": "shop"}', 0.5)
        transport.close()
    assert outcome.status == 503
    assert "5ecr" not in outcome.detail and "e7e7" not in outcome.detail, outcome.detail


CATCHES_CTRL_C = """
    import time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:production.x",
                              flush_interval=3600, shutdown_timeout=2, request_timeout=30,
                              register=False)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(1)  # close waits for the server with it
    print("ready", flush=True)
    until = time.monotonic() + 60
    while time.monotonic() < until:  # a service that takes Ctrl-C as 'stop what you do'
        try:
            while time.monotonic() < until:
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
"""


def test_sigterm_still_ends_the_process_after_a_ctrl_c_cut_its_first_handling():
    """SIGTERM, then Ctrl-C while the handler waits for the close: the app catches the
    KeyboardInterrupt and goes on. A later SIGTERM must still end the process (as SIGTERM),
    not be taken for a repeat of one being handled."""
    from tests.scripted_server import Answer, ScriptedServer

    with ScriptedServer() as server:
        server.default = Answer(503, delay=20)
        process = child.popen(CATCHES_CTRL_C.format(url=server.api_url))
        try:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
            time.sleep(0.3)  # in its loop
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            assert process.stdout.readline().strip() == "interrupted"
            time.sleep(3)  # the first close has ended by now
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == -signal.SIGTERM
        finally:
            process.kill()
            process.wait()


# -- timeouts a caller may pass ---------------------------------------------------------------


@pytest.mark.parametrize("call", ["flush", "close"])
@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 1e12, "2", True])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused_clearly(call, timeout):
    """flush(timeout=inf) ('as long as it takes') raised OverflowError: timestamp out of
    range for platform time_t; NaN, a str or a bool raised from deep inside. The call must
    say what is wrong with the timeout, and leave the agent as it was."""
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Sink:
        def post(self, body, timeout):
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=Sink(), register=False)
    agent.counter("jobs_total", "Jobs").inc(3)
    with pytest.raises((TypeError, ValueError), match="timeout must be"):
        getattr(agent, call)(timeout=timeout)
    assert agent.close(timeout=1).delivered_events == 3  # nothing was taken or lost


def test_counts_recorded_while_the_last_bodies_are_built_are_counted_once():
    """A thread records while close's last step (abandon) builds its bodies: what it
    records after the take is left in the recorder. abandon counted it as not delivered and
    left it there, so the next abandon (SIGTERM's closing does one more, as does a second
    close) counted it again: 7 recorded, 14 accounted. What is written off is taken."""
    from impactagent.core.payload import build_payloads
    from tests.scripted_server import Answer, ScriptedServer

    jobs = []

    def build(*args, **kwargs):  # another thread records right after the take, once
        if len(jobs) == 1:
            jobs[0].inc(7)
            jobs.append("recorded")
        return build_payloads(*args, **kwargs)

    with ScriptedServer() as server:
        server.script(*[Answer(503)] * 10)
        recorder, delivery = _delivery_with(server, build)
        jobs.append(recorder.metrics.counter("jobs_total", "Jobs"))
        jobs[0].inc(10)
        delivery.abandon()  # the 10 are kept (no spool: counted), the 7 come after the take
        delivery.abandon()
        assert recorder.pending_events() == 0
        assert delivery.drops.as_dict() == {"not_delivered_by_close": 17}
