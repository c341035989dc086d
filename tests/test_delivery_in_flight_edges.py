"""Attacks on the delivery's promise at its in-flight edges: bodies whose answer comes late
(or never), close and SIGTERM racing that answer, forks and other processes meeting such a
body, and the one backoff policy's ``Retry-After``. After each the ledger must balance:
``recorded == delivered + dropped + pending`` (plus what is on disk), with any excess inside
``possibly_duplicated_events``.

The servers are real (``ScriptedServer`` on loopback), and so are the users' transports, the
threads, the processes and the signals.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

import impactagent
from impactagent.delivery.transport import Outcome
from tests.scripted_server import Answer, ScriptedServer
from tests.workload import in_process_ledger


def balanced(ledger, on_disk=0):
    """recorded == delivered + dropped + pending + on disk, the excess inside duplicated."""
    accounted = (ledger["delivered"] + sum(ledger["dropped"].values()) + ledger["pending"]
                 + on_disk)
    return accounted - ledger["duplicated"] <= ledger["recorded"] <= accounted


# -- the status line decides, whatever a Retry-After says -------------------------------------

#: Dates whose year or zone overflows a C int when turned into a moment.
OVERFLOWING_DATES = ["Thu, 01 Jan 99999999999 00:00:00 GMT",
                     "Sun, 06 Nov 1994 08:49:37 +99999999999999999999"]


@pytest.mark.parametrize("retry_after", OVERFLOWING_DATES)
def test_a_2xx_with_an_overflowing_retry_after_date_is_delivered_once(retry_after):
    """The server stores the body and answers 202 with a Retry-After date that overflows
    (a proxy's garbage). The status line decides: delivered, once. The parse raised out of
    the transport, so the stored body counted as a failed send, was sent again until the
    flush's deadline, and stored several times with ``possibly_duplicated_events`` at 0."""
    with ScriptedServer() as server:
        server.default = Answer(202, headers={"Retry-After": retry_after})
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:development.x",
                                  register=False)
        agent.counter("jobs_total", "Jobs").inc(7)
        result = agent.flush(timeout=3)
        agent.close(timeout=1)
        assert server.counter_total("jobs_total") == 7, len(server.requests)
    assert result.ok and result.delivered_events == 7, result
    ledger = in_process_ledger(agent)
    assert ledger["delivered"] == 7 and ledger["duplicated"] == 0, ledger


# -- a late answer that is an exception proves nothing ----------------------------------------


class Timeout(BaseException):
    """gevent's and eventlet's Timeout derive from BaseException."""


class StoresThenRaises:
    """A user's transport that stores every body (the server's side), and whose first
    call, held until ``release``, raises ``error`` after storing: a client library that
    failed reading the answer, or a green thread's timeout."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.stored: list = []
        self.release = threading.Event()
        self.answered = threading.Event()

    def post(self, body, timeout):
        self.stored.append(body)
        if len(self.stored) > 1:
            return Outcome("delivered", 202)
        self.release.wait(10)
        try:
            raise self.error
        finally:
            self.answered.set()


@pytest.mark.parametrize("error", [RuntimeError("answer unreadable"), Timeout()],
                         ids=["RuntimeError", "BaseException"])
def test_a_late_exception_for_a_body_close_spooled_leaves_it_possibly_duplicated(
        tmp_path, error):
    """close() spools a body whose POST is still in flight (counted as possibly duplicated);
    the call then raises, after the server stored it. An exception says nothing about
    whether the body arrived, so the doubt must stay: it was withdrawn as if a 503 had
    answered, and the next agent on the spool sent the body again (stored twice, counted
    0 times as possibly duplicated in either process)."""
    spool = tmp_path / "spool"
    sink = StoresThenRaises(error)
    agent = impactagent.Agent("shop", transport=sink, register=False, spool_dir=str(spool))
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        agent.close(timeout=0.5)  # no answer by close's deadline: spooled
    finally:
        sink.release.set()
    assert sink.answered.wait(5)
    time.sleep(0.2)  # the late answer is settled on the sending thread
    first = in_process_ledger(agent)
    files = len(list(spool.glob("*.json")))
    assert files == 1, files

    successor = impactagent.Agent("shop", transport=sink, register=False,
                                  spool_dir=str(spool))
    successor.flush(timeout=2)  # replays the spooled body
    successor.close(timeout=1)
    assert len(sink.stored) == 2  # the server has the 7 twice
    assert first["duplicated"] + in_process_ledger(successor)["duplicated"] >= 7, first


# -- Retry-After: the least wait, never a reason to hang or to hammer --------------------------


@pytest.mark.parametrize("retry_after, posts", [
    ("0", 2), ("-5", 2), ("Wed, 21 Oct 2015 07:28:00 GMT", 2),  # no wait: retried at once
    ("3600", 1), ("1e309", 1), ("Fri, 31 Dec 9999 23:59:59 GMT", 1),  # past the deadline
])
def test_a_retry_after_inside_a_flush_is_its_least_wait(retry_after, posts):
    """A 503 with a Retry-After inside a flush the app asked for: a wait of none (0, a
    negative one, a date past) lets the retry come at once and deliver; one past the
    flush's deadline (huge, infinite, a date far ahead) is never undercut: the flush stops
    trying, keeps the body, and the next flush delivers it."""
    with ScriptedServer() as server:
        server.script(Answer(503, headers={"Retry-After": retry_after}))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:development.x",
                                  register=False)
        agent.counter("jobs_total", "Jobs").inc(7)
        first = agent.flush(timeout=5)
        assert len(server.requests) == posts, server.requests
        assert first.ok == (posts == 2), first
        agent.flush(timeout=2)
        agent.close(timeout=1)
        assert server.counter_total("jobs_total") == 7
    ledger = in_process_ledger(agent)
    assert ledger["delivered"] == 7 and ledger["duplicated"] == 0, ledger


def test_a_registration_never_undercuts_the_servers_retry_after():
    """The server answers the registration 429 with ``Retry-After: 3600``; the metrics go
    through. The flusher registers again before each flush: every 0.2 s it came back, an
    agent hammering the server that asked it to wait an hour (the metrics' own Retry-After is
    never undercut)."""
    with ScriptedServer() as server:
        server.script_register(Answer(429, headers={"Retry-After": "3600"}))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:development.x",
                                  flush_interval=0.2)
        counter = agent.counter("jobs_total", "Jobs")
        agent.start()
        try:
            for _ in range(10):  # bounded: a few intervals, with metrics going through
                counter.inc()
                time.sleep(0.2)
            assert server.wait_for(lambda s: s.counter_total("jobs_total") > 0)
        finally:
            agent.close(timeout=1)
        assert [r.status for r in server.registrations] == [429]


# -- a late answer of every kind, before, during and after close() ----------------------------


def events_in(body: bytes) -> int:
    """What a body of the ``jobs_total`` counter carries."""
    document = json.loads(body)
    return sum(s["value"] for m in document.get("impactMetrics", []) for s in m["samples"])


#: late answer -> (stored before answering, what the call then does)
LATE_ANSWERS = {
    "202": (True, Outcome("delivered", 202)),
    "400": (False, Outcome("rejected", 400, detail="bad body")),
    "401": (False, Outcome("unauthorized", 401)),
    "413": (False, Outcome("too_large", 413)),
    "503": (False, Outcome("retry", 503)),
    "cut": (True, Outcome("retry", detail="connection lost", maybe_delivered=True)),
    "raise": (True, RuntimeError("answer unreadable")),
    "base": (True, Timeout()),
}


class LateFirst:
    """A server behind a user's transport: the first POST is held until ``release``, then
    stored or not and answered as ``late`` says; every later one is stored and answered 202.
    ``stored`` is the server's truth: the events it has, duplicates included."""

    def __init__(self, late: str) -> None:
        self.store_first, self.answer = LATE_ANSWERS[late]
        self.stored = 0
        self.calls = 0
        self.release = threading.Event()
        self.answered = threading.Event()
        self.lock = threading.Lock()

    def post(self, body, timeout):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if not first:
            with self.lock:
                self.stored += events_in(body)
            return Outcome("delivered", 202)
        self.release.wait(10)
        try:
            if self.store_first:
                with self.lock:
                    self.stored += events_in(body)
            if isinstance(self.answer, BaseException):
                raise self.answer
            return self.answer
        finally:
            self.answered.set()


def spooled_events(spool) -> int:
    return sum(events_in(path.read_bytes()) for path in spool.glob("*.json"))


@pytest.mark.parametrize("late", sorted(LATE_ANSWERS))
@pytest.mark.parametrize("when", ["before_close", "during_close", "after_close"])
@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_a_late_answer_of_every_kind_leaves_the_ledger_balanced(tmp_path, late, when,
                                                                spooled):
    """A flush's deadline cuts the wait for a POST; its answer (of every kind) comes before
    close(), while close() waits, or after it returned. Once everything is settled: every
    event recorded is delivered, dropped with a reason, pending or on disk; an excess is
    inside ``possibly_duplicated_events``; and what the server stored (duplicates included)
    is delivered or possibly duplicated, never dropped while stored."""
    spool = tmp_path / "spool"
    server = LateFirst(late)
    agent = impactagent.Agent("shop", transport=server, register=False,
                              spool_dir=str(spool) if spooled else None)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline
        if when == "before_close":
            server.release.set()
            assert server.answered.wait(5)
            time.sleep(0.2)  # settled on the sending thread
        elif when == "during_close":
            threading.Timer(0.3, server.release.set).start()
        agent.close(timeout=1.5)
    finally:
        server.release.set()
    assert server.answered.wait(5)
    time.sleep(0.2)
    ledger = in_process_ledger(agent)
    on_disk = spooled_events(spool) if spooled else 0
    assert ledger["recorded"] == 7 and ledger["pending"] == 0, ledger
    assert balanced(ledger, on_disk), (ledger, on_disk)
    assert server.stored <= ledger["delivered"] + ledger["duplicated"], (server.stored, ledger)


# -- what the sending thread raises cannot end the flusher ------------------------------------


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()],
                         ids=["SystemExit", "KeyboardInterrupt"])
def test_a_transport_raising_systemexit_on_the_sending_thread_does_not_end_the_flusher(
        error):
    """A user's transport calls ``sys.exit()`` (or raises KeyboardInterrupt) once, on the
    agent's sending thread: no app decided to exit, no Ctrl-C came (signals reach the main
    thread only). It was handed to the flusher's thread, which ended for good and silently:
    nothing was sent again until close()."""
    class ExitsOnce:
        def __init__(self):
            self.calls = 0
            self.delivered = threading.Event()

        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                raise error
            self.delivered.set()
            return Outcome("delivered", 202)

    sink = ExitsOnce()
    agent = impactagent.Agent("shop", transport=sink, register=False, flush_interval=0.2)
    counter = agent.counter("jobs_total", "Jobs")
    agent.start()
    try:
        for _ in range(30):  # bounded: until the flusher delivers again
            counter.inc()
            if sink.delivered.wait(0.1):
                break
        assert sink.delivered.is_set(), "the flusher stopped after the transport's exit"
    finally:
        agent.close(timeout=1)
    ledger = in_process_ledger(agent)
    assert balanced(ledger), ledger


# -- fork while a body is in flight ------------------------------------------------------------

FORK_WHILE_IN_FLIGHT = """
    import json, os, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    def ledger(agent):
        s = agent.statistics()
        return {{"recorded": sum(s["recorded"].values()), "pending": s["pending_events"],
                "delivered": s["delivery"]["delivered_events"], "dropped": s["dropped"],
                "duplicated": s["delivery"]["possibly_duplicated_events"]}}

    class Server:
        # When spooling, every POST of the first flush fails (503: its retries too), so that
        # the body in flight is a spool file the parent has claimed; the first POST after
        # that is held until released.
        def __init__(self):
            self.failing = {spooled}
            self.held = False
            self.release = threading.Event()
        def post(self, body, timeout):
            if self.failing:
                return Outcome("retry", 503)
            if not self.held:
                self.held = True
                self.release.wait(10)
            with open({stored!r}, "a") as out:
                out.write(f"{{os.getpid()}} {{body.decode()}}\\n")
            return Outcome("delivered", 202)

    server = Server()
    agent = impactagent.Agent("shop", transport=server, register=False, flush_interval=3600,
                              spool_dir={spool!r} or None)
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(7)
    if {spooled}:
        agent.flush(timeout=1)  # 503: spooled
        server.failing = False
    agent.flush(timeout=0.3)  # no answer by the deadline: in flight
    pid = os.fork()
    if pid == 0:
        jobs.inc(5)
        agent.close(timeout=2)
        print("child", json.dumps(ledger(agent)), flush=True)
        os._exit(0)
    server.release.set()
    os.waitpid(pid, 0)
    time.sleep(0.3)  # the late answer is settled on the sending thread
    agent.close(timeout=2)
    print("parent", json.dumps(ledger(agent)), flush=True)
"""


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_fork_while_a_body_is_in_flight_leaves_it_to_the_parent(tmp_path, spooled):
    """A real fork() while the parent's POST is in flight (a collected body, or a spool file
    the parent claimed): the child neither sends nor counts the parent's body, and sends its
    own counts; the parent's late 2xx settles its body once. The server has 7 once and 5
    once; each process's ledger balances with nothing possibly duplicated."""
    from tests import child

    stored = tmp_path / "stored"
    spool = tmp_path / "spool"
    done = child.run(FORK_WHILE_IN_FLIGHT.format(
        spooled=spooled, stored=str(stored), spool=str(spool) if spooled else ""), timeout=30)
    assert done.returncode == 0, done.stderr
    ledgers = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    parent, forked = json.loads(ledgers["parent"]), json.loads(ledgers["child"])
    assert parent["delivered"] == 7 and parent["duplicated"] == 0, parent
    assert forked["recorded"] == 5 and forked["delivered"] == 5, forked
    assert forked["duplicated"] == 0 and forked["dropped"] == {}, forked
    bodies = [line.split(" ", 1)[1] for line in stored.read_text().splitlines()]
    assert sorted(events_in(body.encode()) for body in bodies) == [5, 7]
    if spooled:
        assert not list(spool.glob("*.json*")), list(spool.iterdir())


# -- close() and an answer due within its deadline ---------------------------------------------


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_close_hears_an_answer_that_comes_within_its_deadline(tmp_path, spooled):
    """A flush's deadline cut the wait for a POST; close(timeout=3) follows, and the answer
    (202: stored) comes 0.5 s into it. Close had the time to hear it. Without a spool it
    returned at once with the 7 counted as not delivered (an app that exits then never
    hears the 202: the server has the 7, the ledger says dropped); with one, it spooled the
    body, replayed it behind the POST in flight, and the server stored it twice."""
    spool = tmp_path / "spool"
    server = LateFirst("202")
    agent = impactagent.Agent("shop", transport=server, register=False,
                              spool_dir=str(spool) if spooled else None)
    agent.counter("jobs_total", "Jobs").inc(7)
    releasing = threading.Timer(0.5, server.release.set)
    try:
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline
        releasing.start()
        agent.close(timeout=3)
        ledger = in_process_ledger(agent)  # what the app sees as it exits
    finally:
        releasing.cancel()
        server.release.set()
    assert server.answered.wait(5)
    assert server.stored == 7
    assert ledger["delivered"] == 7 and ledger["dropped"] == {}, ledger
    assert ledger["duplicated"] == 0, ledger


# -- close while a late answer's body is being kept ----------------------------------------------


def test_close_waits_for_a_body_its_late_answer_is_keeping(tmp_path):
    """A flush's deadline cut the wait for a POST; close(timeout=2) follows, and the 503
    comes 0.2 s into it. The answer's thread settles the body by spooling it, on a slow
    disk. close went on as soon as the body was no longer sending, and returned (the
    process would end there) while the spool file was still a temporary: the 7 were neither
    delivered nor kept. A body being kept is now unsettled until it is kept."""
    spool = tmp_path / "spool"
    server = LateFirst("503")
    agent = impactagent.Agent("shop", transport=server, register=False, spool_dir=str(spool))
    agent.counter("jobs_total", "Jobs").inc(7)

    def slow_disk(frame, event, arg):  # picks the instant; the write is real
        if (event == "call" and frame.f_code.co_name == "_store"
                and threading.current_thread().name == "impactagent-sender"):
            time.sleep(0.6)

    releasing = threading.Timer(0.2, server.release.set)
    try:
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline: in flight
        threading.setprofile(slow_disk)
        releasing.start()
        agent.close(timeout=2)
        kept_or_stored = server.stored + spooled_events(spool)  # as the process would end
    finally:
        threading.setprofile(None)
        releasing.cancel()
        server.release.set()
    assert server.answered.is_set()
    assert kept_or_stored == 7, (server.stored, sorted(p.name for p in spool.iterdir()))
    assert in_process_ledger(agent)["delivered"] == server.stored


# -- SIGTERM while a POST is in flight ---------------------------------------------------------

SIGTERM_WHILE_IN_FLIGHT = """
    import os, signal
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key="default:development.x",
                              flush_interval=3600, shutdown_timeout=4, register=False,
                              spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(42)
    agent.flush(timeout=0.3)  # the server stores it and answers later: in flight
    os.kill(os.getpid(), signal.SIGTERM)
    print("survived SIGTERM", flush=True)
"""


@pytest.mark.parametrize("trickle, spooled", [
    (0.008, 0),  # the answer (88 bytes) ends in ~0.7 s, within the SIGTERM close's time
    (0.2, 42),  # it would end after ~18 s, long after the process: kept on disk
])
def test_sigterm_while_a_post_is_in_flight(tmp_path, trickle, spooled):
    """``docker stop`` while a real HTTP POST is in flight: the server stored the body and
    trickles its 202 (every read gets a byte in time, so only the flush's deadline cut the
    wait). An answer that ends within the shutdown's time settles the body, stored once and
    not spooled; one that would end after the process leaves it spooled for the next agent
    (the server, down meanwhile, took nothing else). The process ends as SIGTERM would."""
    import signal

    from tests import child

    spool = tmp_path / "spool"
    with ScriptedServer() as server:
        server.script(Answer(202, trickle=trickle))
        server.default = 503
        done = child.run(SIGTERM_WHILE_IN_FLIGHT.format(url=server.api_url, spool=str(spool)),
                         timeout=30)
        assert done.returncode == -signal.SIGTERM, done.stderr  # not the script's end
        assert server.counter_total("jobs_total") == 42, len(server.requests)
    assert sum(events_in(path.read_bytes()) for path in spool.glob("*.json*")) == spooled


# -- many flushes, several bodies in flight at once ---------------------------------------------


class HangsEach:
    """The first ``len(answers)`` POSTs each hang until released, then are stored (or not)
    and answered as ``answers`` says; later ones are stored and answered 202. Several bodies
    in many bodies (``max_payload_bytes`` small) go out per flush."""

    def __init__(self, answers):
        self.answers = answers
        self.held = [threading.Event() for _ in answers]
        self.lock = threading.Lock()
        self.calls = 0
        self.stored = 0
        self.finished = 0

    def post(self, body, timeout):
        with self.lock:
            index = self.calls
            self.calls += 1
        if index < len(self.answers):
            self.held[index].wait(20)
        stored, answer = LATE_ANSWERS[self.answers[index]] if index < len(self.answers) else (
            True, Outcome("delivered", 202))
        try:
            if stored:
                with self.lock:
                    self.stored += events_in(body)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        finally:
            with self.lock:
                self.finished += 1


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_many_flushes_with_bodies_hung_in_flight_balance_once_all_answer(tmp_path, spooled):
    """Three flushes, each leaving a POST hung (one per sending thread: the thread is
    retired and the next call gets a new one, until two are retired), with new counts
    recorded between them and several bodies per window; then the hung calls answer in
    reverse order (202, a cut, 503) and close() runs. The ledger balances, and what the
    server stored is delivered or possibly duplicated."""
    spool = tmp_path / "spool"
    server = HangsEach(["202", "cut", "503"])
    agent = impactagent.Agent("shop", transport=server, register=False,
                              max_payload_bytes=600,
                              spool_dir=str(spool) if spooled else None)
    counters = [agent.counter(f"jobs_{n}_total", "Jobs") for n in range(4)]
    try:
        for round_ in range(3):
            for counter in counters:
                counter.inc(round_ + 1)
            agent.flush(timeout=0.3)
            time.sleep(1.2)  # past the hung call's deadline and the time it may be stuck
        for held in reversed(server.held):
            held.set()
            time.sleep(0.1)
        agent.close(timeout=3)
    finally:
        for held in server.held:
            held.set()
    deadline = time.monotonic() + 5
    while server.finished < server.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the last late answer is settled on its thread
    ledger = in_process_ledger(agent)
    on_disk = (sum(events_in(p.read_bytes()) for p in spool.glob("*.json*")) if spooled
               else 0)
    assert ledger["recorded"] == 4 * (1 + 2 + 3), ledger
    assert balanced(ledger, on_disk), (ledger, on_disk)
    assert server.stored <= ledger["delivered"] + ledger["duplicated"], (server.stored, ledger)


# -- tokens in what a transport says, early or late ---------------------------------------------

TOKEN = "default:production.5ecre7t0ken5ecre7t0ken"


@pytest.mark.parametrize("late", [False, True], ids=["in_time", "late"])
@pytest.mark.parametrize("says", ["detail_400", "detail_503", "raises", "exits"])
def test_a_token_a_transport_says_is_never_logged(caplog, late, says):
    """A user's transport quotes the token (or its secret part) in an answer's detail, an
    exception's text, or a ``SystemExit`` on the flusher's thread; in time or after the
    flush's deadline, with close() following. No log line carries it."""
    import logging

    secret = TOKEN.split(".", 1)[1]
    release = threading.Event()
    said = {
        "detail_400": Outcome("rejected", 400, detail=f"bad body from {TOKEN}"),
        "detail_503": Outcome("retry", 503, detail=f"down; Authorization: {TOKEN}"),
        "raises": RuntimeError(f"refused {secret}"),
        "exits": SystemExit(f"fatal: token {TOKEN}"),
    }[says]
    answered = threading.Event()

    class Quoting:
        calls = 0

        def post(self, body, timeout):
            self.calls += 1
            if self.calls > 1:
                return Outcome("delivered", 202)
            if late:
                release.wait(10)
            answered.set()
            if isinstance(said, BaseException):
                raise said
            return said

    caplog.set_level(logging.DEBUG)
    agent = impactagent.Agent("shop", transport=Quoting(), register=False, api_key=TOKEN,
                              flush_interval=0.2 if says == "exits" else 3600)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        if says == "exits":
            agent.start()  # the flusher's thread meets it
            threading.Timer(0.8, release.set).start()
        else:
            agent.flush(timeout=0.3 if late else 2)
        release.set()
        assert answered.wait(5)
        time.sleep(0.3)
    finally:
        release.set()
        agent.close(timeout=1)
    assert secret not in caplog.text, caplog.text  # tracebacks included


# -- the status line decides, whatever follows it ------------------------------------------------


@pytest.mark.parametrize("status, headers, then", [
    (302, {"Location": "http://[::1"}, "kept"),  # a Location urljoin cannot parse
    (400, {"Content-Type": "text/plain; charset=no-such-codec"}, "rejected_by_server"),
    (401, {"Content-Type": "text/plain; charset=no-such-codec"}, "stopped"),
    (503, {"Content-Type": "text/plain; charset=no-such-codec"}, "kept"),
])
def test_what_follows_the_status_line_cannot_change_what_it_decided(caplog, status, headers,
                                                                    then):
    """A server (or a proxy) answers a status whose headers the transport then fails to
    read: a Location ``urljoin`` refuses, a charset no codec has. The status line decides:
    a 400 drops the body (counted), a 401 stops sending, a 3xx or 503 keeps it, and none of
    them is a body possibly stored. They were 'the transport raised': a 400 kept and resent
    forever, a 401 never stopping, each attempt counted as possibly duplicated."""
    with ScriptedServer() as server:
        server.default = Answer(status, headers=headers, body=b"not today")
        agent = impactagent.Agent("shop", url=server.api_url, api_key="default:development.x",
                                  register=False)
        agent.counter("jobs_total", "Jobs").inc(7)
        result = agent.flush(timeout=1)
        statistics = agent.statistics()
        agent.close(timeout=1)
    assert "raised" not in caplog.text, caplog.text
    assert statistics["delivery"]["possibly_duplicated_events"] == 0, statistics
    if then == "rejected_by_server":
        assert statistics["dropped"] == {"rejected_by_server": 7}, statistics
    elif then == "stopped":
        assert statistics["sending_stopped_by_status"] == 401, statistics
    else:
        assert result.kept_bodies == 1 and statistics["pending_events"] == 7, statistics


# -- close() racing a late answer at the moment it takes the body -------------------------------


@pytest.mark.parametrize("late", ["202", "cut", "503"])
@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_close_racing_a_late_answer_around_its_take_balances(tmp_path, late, spooled):
    """close(timeout=0.4) waits for the answer in flight until 0.2 s, then takes the body;
    the answer is released around that moment (0.15 to 0.25 s, seeded), so it lands before,
    during or after the take and the keeping (spool write or drop count) that follows. Each
    time, once settled, the ledger balances and what the server stored is delivered or
    possibly duplicated."""
    import random

    rng = random.Random(f"{late}-{spooled}")
    for attempt in range(8):
        spool = tmp_path / f"spool-{attempt}"
        server = LateFirst(late)
        agent = impactagent.Agent("shop", transport=server, register=False,
                                  spool_dir=str(spool) if spooled else None)
        agent.counter("jobs_total", "Jobs").inc(7)
        releasing = threading.Timer(0, server.release.set)
        try:
            agent.flush(timeout=0.1)  # no answer by the deadline
            releasing.interval = rng.uniform(0.15, 0.25)
            releasing.start()
            agent.close(timeout=0.4)
        finally:
            releasing.cancel()
            server.release.set()
        assert server.answered.wait(5)
        time.sleep(0.1)
        ledger = in_process_ledger(agent)
        on_disk = spooled_events(spool) if spooled else 0
        assert balanced(ledger, on_disk), (attempt, ledger, on_disk)
        assert server.stored <= ledger["delivered"] + ledger["duplicated"], (
            attempt, server.stored, ledger)


# -- a spooled body in flight whose file another process takes ----------------------------------

TAKES_EXPIRED_CLAIMS = """
    import sys
    from impactagent.delivery.spool import Spool

    # A process whose lease is 1 ms: every claim looks abandoned to it (a clock stepped
    # forward past the lease does the same), and its start-up puts them back in the queue.
    spool = Spool({spool!r}, lease_seconds=0.001)
    sent = 0
    for entry in spool.entries():
        claimed = spool.claim(entry)
        body = spool.read(claimed) if claimed is not None else None
        if body is None:
            continue
        with open({stored!r}, "ab") as out:
            out.write(body + b"\\n")
        spool.remove(claimed)
    print("done", flush=True)
"""


@pytest.mark.parametrize("late", ["202", "503", "cut", "raise"])
def test_a_late_answer_for_a_spool_file_another_process_took(tmp_path, late):
    """Process A replays a spooled body; its POST gets no answer by the flush's deadline.
    Another process (a real one) finds A's claim expired, takes the file and delivers it.
    Then A's late answer comes. Across both processes: every event is delivered, dropped,
    pending or on disk, the excess inside A's ``possibly_duplicated_events``, and what the
    server stored (A's POST and B's) is delivered or possibly duplicated."""
    from tests import child

    spool = tmp_path / "spool"
    stored_by_b = tmp_path / "stored"

    class DownThenLate(LateFirst):
        def post(self, body, timeout):
            if not self.calls_503:
                self.calls_503 = 1
                return Outcome("retry", 503)
            return super().post(body, timeout)

    server = DownThenLate(late)
    server.calls_503 = 0
    agent = impactagent.Agent("shop", transport=server, register=False,
                              spool_dir=str(spool))
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        assert agent.flush(timeout=1).kept_bodies == 1  # 503: spooled
        assert not agent.flush(timeout=0.3).ok  # replayed, no answer by the deadline
        done = child.run(TAKES_EXPIRED_CLAIMS.format(spool=str(spool),
                                                     stored=str(stored_by_b)), timeout=30)
        assert done.stdout.strip() == "done", done.stderr
    finally:
        server.release.set()
    assert server.answered.wait(5)
    time.sleep(0.2)
    agent.close(timeout=1)
    by_b = sum(events_in(line) for line in stored_by_b.read_bytes().splitlines() if line)
    assert by_b == 7  # B delivered the file it took
    ledger = in_process_ledger(agent)
    accounted = (ledger["delivered"] + sum(ledger["dropped"].values()) + ledger["pending"]
                 + spooled_events(spool) + by_b)
    assert accounted - ledger["duplicated"] <= 7 <= accounted, (ledger, by_b)
    assert server.stored + by_b <= ledger["delivered"] + ledger["duplicated"] + by_b, (
        server.stored, ledger)


# -- SIGTERM while close() waits for an answer in flight ----------------------------------------

SIGTERM_WHILE_CLOSE_WAITS = """
    import os, signal, threading
    import impactagent
    from impactagent.delivery.transport import Outcome

    class HungThenDown:
        def __init__(self):
            self.calls = 0
        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                threading.Event().wait()  # hangs for good: its thread is retired
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=HungThenDown(), register=False,
                              flush_interval=3600, shutdown_timeout=1, spool_dir={spool!r})
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(7)
    agent.flush(timeout=0.3)  # no answer, ever
    jobs.inc(5)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    agent.close(timeout=60)  # the app's own shutdown, generous: it waits for the answer
    print("close returned", flush=True)
"""


def test_sigterm_while_close_waits_for_an_answer_ends_within_the_shutdown_timeout(tmp_path):
    """The app closes with a generous timeout while a POST hangs for good; close waits for
    its answer, and SIGTERM comes meanwhile. The last flush close then runs must be bounded
    by ``shutdown_timeout`` like any SIGTERM'd close: it got close's own 60 s (hurried
    before it existed), retrying a server that answers 503 for a minute after SIGTERM.
    Both windows end up spooled, and the process ends as SIGTERM would."""
    import signal
    import subprocess

    from tests import child

    spool = tmp_path / "spool"
    try:
        done = child.run(SIGTERM_WHILE_CLOSE_WAITS.format(spool=str(spool)), timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the process outlived SIGTERM by more than 15 s")
    assert done.returncode == -signal.SIGTERM, done.stderr  # not the script's end
    assert spooled_events(spool) == 12, done.stderr


# -- a call that hangs for good ------------------------------------------------------------------


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_close_keeps_its_deadline_when_a_post_hangs_for_good(tmp_path, spooled):
    """A POST hangs for good (its thread is retired); close(timeout=1) waits for its answer
    only until halfway, then keeps the body (counted as not delivered, or spooled and sent
    again on a new thread once the hung one is retired) in doubt, and returns by its
    deadline. When the call finally answers 503, the doubt goes and the keeping stays:
    nothing is both stored and dropped."""
    spool = tmp_path / "spool"
    server = LateFirst("503")
    agent = impactagent.Agent("shop", transport=server, register=False,
                              spool_dir=str(spool) if spooled else None)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        agent.flush(timeout=0.3)
        started = time.monotonic()
        agent.close(timeout=1)
        took = time.monotonic() - started
        before = in_process_ledger(agent)
    finally:
        server.release.set()
    assert took < 2, took  # the deadline, plus the transport's close grace and a margin
    assert before["duplicated"] == 7, before
    assert server.answered.wait(5)
    time.sleep(0.2)
    after = in_process_ledger(agent)
    on_disk = spooled_events(spool) if spooled else 0
    assert after["duplicated"] == 0, after
    assert server.stored == after["delivered"], (server.stored, after)  # the spool's replay
    assert after["delivered"] + sum(after["dropped"].values()) + on_disk == 7, (after, on_disk)


# -- fork while another thread closes the agent --------------------------------------------------

FORK_WHILE_CLOSING = """
    import json, os, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    def ledger(agent):
        s = agent.statistics()
        return {{"recorded": sum(s["recorded"].values()), "pending": s["pending_events"],
                "delivered": s["delivery"]["delivered_events"], "dropped": s["dropped"],
                "duplicated": s["delivery"]["possibly_duplicated_events"]}}

    class SlowFirst:
        calls = 0
        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                time.sleep(1.0)  # in flight when close() begins: close waits for it
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=SlowFirst(), register=False,
                              flush_interval=3600)
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(7)
    agent.flush(timeout=0.3)
    threading.Thread(target=agent.close, args=(3,)).start()  # the app's shutdown thread
    time.sleep(0.2)
    pid = os.fork()  # a worker forked meanwhile
    if pid == 0:
        jobs.inc(5)
        agent.close(timeout=1)
        print("child", json.dumps(ledger(agent)), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(1.5)
    print("parent", json.dumps(ledger(agent)), flush=True)
"""


def test_a_child_forked_while_the_parent_closes_sends_its_own_counts():
    """A child forked while another thread of the parent runs close() (waiting for an
    answer in flight): that close is the parent's, as a SIGTERM the parent got is. The
    child inherited 'closing' and the close's 'interrupted' placeholder, so its close()
    returned at once and the 5 it recorded stayed pending for good: neither delivered nor
    counted."""
    from tests import child

    done = child.run(FORK_WHILE_CLOSING.format(), timeout=30)
    assert done.returncode == 0, done.stderr
    ledgers = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    parent, forked = json.loads(ledgers["parent"]), json.loads(ledgers["child"])
    assert parent["delivered"] == 7 and parent["pending"] == 0, parent
    assert forked["recorded"] == 5 and forked["pending"] == 0, forked
    assert forked["delivered"] + sum(forked["dropped"].values()) == 5, forked


# -- the next flush and an answer about to come ----------------------------------------------------


def test_the_next_flush_hears_an_answer_due_before_its_call_would_be_stuck():
    """A flush's deadline cut the wait for a POST whose 202 comes 0.3 s later; the app
    flushes again at once. That flush's own POST queues behind the one in flight anyway
    (one sending thread, until a call is stuck a second past its deadline), so it can hear
    the answer first. It took the body back at once instead and sent it again behind the
    first: the server stored the 7 twice (counted as possibly duplicated)."""
    server = LateFirst("202")
    agent = impactagent.Agent("shop", transport=server, register=False)
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(7)
    releasing = threading.Timer(0.6, server.release.set)
    try:
        releasing.start()
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline
        jobs.inc(5)
        result = agent.flush(timeout=3)
    finally:
        releasing.cancel()
        server.release.set()
    agent.close(timeout=1)
    assert result.ok, result
    assert server.stored == 12, server.stored
    ledger = in_process_ledger(agent)
    assert ledger["delivered"] == 12 and ledger["duplicated"] == 0, ledger


# -- a late answer's Retry-After -------------------------------------------------------------------


def test_a_late_429s_retry_after_is_not_undercut_by_the_next_flushes():
    """A periodic flush's POST gets its answer after the flush's deadline: 429 with
    ``Retry-After: 3600``. The server asked for an hour; the next periodic flushes sent the
    body (merged back) again within the second."""
    class LateTooMany:
        def __init__(self):
            self.calls = 0
            self.answered = threading.Event()

        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                time.sleep(0.5)  # past the periodic flush's deadline (its interval)
                self.answered.set()
                return Outcome("retry", 429, retry_after=3600.0)
            return Outcome("delivered", 202)

    sink = LateTooMany()
    agent = impactagent.Agent("shop", transport=sink, register=False, flush_interval=0.2)
    agent.counter("jobs_total", "Jobs").inc(7)
    agent.start()
    try:
        assert sink.answered.wait(10)
        time.sleep(1.5)  # several intervals, and backoffs of them
        calls = sink.calls
    finally:
        agent.close(timeout=1)
    assert calls == 1, calls
