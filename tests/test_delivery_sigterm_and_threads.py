"""The delivery's promise where SIGTERM, fork and threads meet: every count recorded is
delivered once, or kept (merged back, spooled), or counted as dropped with a reason; a body
that may be stored twice is inside ``possibly_duplicated_events``; no process hangs; SIGTERM ends
the process with the status SIGTERM gives.

Signals are real (``kill`` of a real child process, handled by the real handlers), and so
are the users' transports and the threads.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from tests import child
from tests.workload import in_process_ledger

# -- SIGTERM deferred by a main-thread flush, while another thread flushes too ----------------

SIGTERM_WHILE_TWO_THREADS_FLUSH = """
    import os, signal, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def __init__(self):
            self.calls = 0
        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                time.sleep(1.0)  # the other thread's flush is inside its POST
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    threading.Thread(target=agent.flush, args=(5,)).start()  # the app's worker flushes
    time.sleep(0.2)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    agent.flush(timeout=30)  # the main thread waits its turn: SIGTERM comes meanwhile
    print("the main thread went on after SIGTERM", flush=True)
    time.sleep(3)
"""


def test_sigterm_deferred_by_a_main_thread_flush_ends_the_process_whoever_ends_first(
        tmp_path):
    """SIGTERM comes while the main thread waits for its flush (queued behind a flush on
    the app's worker thread). The handler only starts the closing and returns (what it
    interrupts may hold a lock the closing needs), so the main thread may go on for a
    moment; the closing spools the body and ends the process as SIGTERM would, from
    whichever thread it finishes on (signal.signal works in the main thread only)."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_TWO_THREADS_FLUSH.format(spool=str(spool)), timeout=15)
    assert done.returncode == -signal.SIGTERM, done.stderr  # not the end of its sleep(3)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(list(spool.glob("*.json"))) == 1, done.stderr


# -- a late 2xx for a body merged back into the recorder ---------------------------------------


def test_a_late_2xx_for_a_body_in_flight_is_delivered_not_also_dropped_by_close():
    """No spool. A flush's deadline cuts the wait for a POST; its 2xx comes a moment later
    (the server stored it), then close() finds the server down. The 7 events were stored
    once: the ledger must not say delivered 7 and dropped 7 (and possibly duplicated 7, for
    a body the server has once), as it did when such a body went back into the recorder."""
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    release, answered = threading.Event(), threading.Event()

    class StoresLateThenDown:
        def __init__(self):
            self.calls = 0

        def post(self, body, timeout):
            self.calls += 1
            if self.calls > 1:
                return Outcome("retry", 503)
            release.wait(10)
            answered.set()
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=StoresLateThenDown(), register=False)
    agent.counter("jobs_total", "Jobs").inc(7)
    assert not agent.flush(timeout=0.3).ok  # no answer by the deadline: merged back
    release.set()
    assert answered.wait(5)
    time.sleep(0.2)  # the late answer is settled on the sending thread
    agent.close(timeout=0.5)
    ledger = in_process_ledger(agent)
    assert ledger["recorded"] == 7
    assert ledger["delivered"] + sum(ledger["dropped"].values()) == 7, ledger


@pytest.mark.parametrize("late_answer, delivered", [(503, 7), (202, 14)])
def test_a_body_whose_post_hangs_past_the_next_flush_is_sent_again(late_answer, delivered):
    """A POST hangs (no answer by its flush's deadline, nor by the next flush): the next
    flush takes the body back and sends it again, counted as possibly duplicated. The hung
    call's late answer settles the doubt: a 503 withdraws it; a 202 means the server has
    the body twice, which the ledger shows (delivered twice, possibly duplicated once)."""
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    hang, answered = threading.Event(), threading.Event()

    class HangsOnce:
        def __init__(self):
            self.calls = 0

        def post(self, body, timeout):
            self.calls += 1
            if self.calls > 1:
                return Outcome("delivered", 202)
            hang.wait(20)
            answered.set()
            if late_answer == 503:
                return Outcome("retry", 503)
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=HangsOnce(), register=False)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline: in flight
        assert in_process_ledger(agent)["duplicated"] == 0  # its answer is awaited
        time.sleep(1.5)  # past the hung call's deadline and the time a call may be stuck
        result = agent.flush(timeout=3)
        assert result.delivered_events == 7, result
        assert in_process_ledger(agent)["duplicated"] == 7
    finally:
        hang.set()
    assert answered.wait(5)
    time.sleep(0.2)  # the late answer is settled on the hung call's thread
    agent.close(timeout=1)
    ledger = in_process_ledger(agent)
    assert ledger["delivered"] == delivered and ledger["dropped"] == {}, ledger
    assert ledger["duplicated"] == delivered - 7, ledger


# -- SIGTERM while the main thread closes with a long timeout ----------------------------------

SIGTERM_WHILE_THE_MAIN_THREAD_CLOSES = """
    import os, signal, threading
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    agent.close(timeout=60)  # the app's own shutdown, generous; SIGTERM comes meanwhile
    print("close returned", flush=True)
"""


def test_sigterm_during_a_long_main_thread_close_ends_the_process_promptly(tmp_path):
    """The app closes the agent on the main thread with a generous timeout, retrying a
    server that is down; SIGTERM comes. The close is cut short like any flush SIGTERM
    comes during (it went on retrying until its own deadline, so the process outlived any
    grace period); what it holds is spooled, and the process ends as SIGTERM would, even
    though the app's main thread, its close returned, reached its end first."""
    spool = tmp_path / "spool"
    started = time.monotonic()
    done = child.run(SIGTERM_WHILE_THE_MAIN_THREAD_CLOSES.format(spool=str(spool)),
                     timeout=15)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert time.monotonic() - started < 15  # child.run's bound: far below the close's 60 s
    assert len(list(spool.glob("*.json"))) == 1, done.stderr


# -- a call queued behind one that gets stuck while it waits -----------------------------------


def test_a_post_queued_behind_a_stuck_one_is_sent_on_a_new_thread():
    """A user's transport hangs on one POST (a flush's deadline cuts the wait for it); the
    close that follows queues its POST (of what was recorded since) behind it on the
    sending thread. The hung call is retired a moment later, but the close's POST stayed
    queued on the retired thread until the close's deadline: it was never sent, and a
    server that answers every other POST at once got nothing from the close. The hung body
    itself is counted as not delivered by close, and its late 503 confirms that."""
    import threading

    import impactagent
    from impactagent.delivery.transport import Outcome

    hang = threading.Event()

    class HangsOnce:
        def __init__(self):
            self.calls = 0

        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                hang.wait(20)
                return Outcome("retry", 503)
            return Outcome("delivered", 202)

    transport = HangsOnce()
    agent = impactagent.Agent("shop", transport=transport, register=False)
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        assert not agent.flush(timeout=0.3).ok  # no answer by the deadline: in flight
        agent.counter("jobs_total", "Jobs").inc(3)
        result = agent.close(timeout=4)
    finally:
        hang.set()
    time.sleep(0.2)  # the hung call's late 503
    ledger = in_process_ledger(agent)
    assert transport.calls == 2 and result.delivered_bodies == 1, (result, ledger)
    assert ledger["delivered"] == 3, ledger
    assert ledger["dropped"] == {"not_delivered_by_close": 7}, ledger
    assert ledger["duplicated"] == 0, ledger


# -- a user's transport that raises a BaseException ------------------------------------------


def test_a_transport_s_gevent_style_timeout_does_not_end_the_flusher():
    """gevent's and eventlet's ``Timeout`` derive from BaseException, not Exception. A
    user's transport built on them that times out once raised it from the sending thread
    into the flusher's, which ended: nothing was ever sent again, without a word."""
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Timeout(BaseException):  # as gevent.Timeout and eventlet.Timeout are
        pass

    sent = threading.Event()

    class TimesOutOnce:
        def __init__(self):
            self.calls = 0

        def post(self, body, timeout):
            self.calls += 1
            if self.calls == 1:
                raise Timeout()
            sent.set()
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=TimesOutOnce(), register=False,
                              flush_interval=0.2)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    try:
        assert sent.wait(10), "the flusher never sent again"
        assert wait_for(lambda: in_process_ledger(agent)["delivered"] == 7)
    finally:
        agent.close(timeout=1)
    assert agent.statistics()["dropped"] == {}


def wait_for(condition, seconds=5.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- SIGTERM while the main thread waits for its turn behind a flush stuck in a log line -------

SIGTERM_WHILE_WAITING_BEHIND_A_STUCK_FLUSH = """
    import logging, os, signal, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    class HangingLog(logging.Handler):  # a log shipper whose endpoint hangs
        def emit(self, record):
            if threading.current_thread() is not threading.main_thread():
                time.sleep(30)

    logging.getLogger("impactagent").addHandler(HangingLog())
    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    threading.Thread(target=agent.flush, args=(0.5,), daemon=True).start()
    time.sleep(1)  # that flush has kept the body and is stuck telling the log so
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    agent.flush(timeout=60)  # the main thread waits its turn: SIGTERM comes meanwhile
    print("the main thread went on after SIGTERM", flush=True)
"""


def test_sigterm_while_the_main_thread_waits_for_its_turn_ends_the_process(tmp_path):
    """The main thread's flush waits for another thread's flush, stuck outside any POST (a
    log handler that hangs), as long as the app's timeout (60 s) allows. SIGTERM ends that
    wait (a flush waiting for its turn returns once the process is ending), the body kept
    by the stuck flush is spooled, and the process ends as SIGTERM would, within the
    shutdown timeout, not after the app's 60 s."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_WAITING_BEHIND_A_STUCK_FLUSH.format(spool=str(spool)),
                     timeout=15)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert len(list(spool.glob("*.json"))) == 1, done.stderr


# -- fork while a sending thread is retired ------------------------------------------------------

FORK_WHILE_RETIRED = """
    import json, os, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    parent = os.getpid()
    never = threading.Event()

    class HangsInTheParent:  # the parent's server hangs; the child's answers at once
        def post(self, body, timeout):
            if os.getpid() == parent:
                never.wait()
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=HangsInTheParent(), register=False,
                              flush_interval=3600, shutdown_timeout=0.5)
    agent.start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(1)
    agent.flush(timeout=0.4)  # hangs: the sending thread is stuck
    time.sleep(1.2)
    jobs.inc(2)
    agent.flush(timeout=0.4)  # the stuck thread is retired; the new one hangs too
    senders = [t for t in threading.enumerate() if t.name == "impactagent-sender"]
    pid = os.fork()
    if pid == 0:
        jobs.inc(5)
        result = agent.flush(timeout=3)
        print(json.dumps({"child": ledger(agent), "delivered_bodies": result.delivered_bodies}),
              flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    agent.close(timeout=0.5)
    print(json.dumps({"parent": ledger(agent), "senders": len(senders), "status": status}),
          flush=True)
"""

LEDGER = """
    def ledger(agent):
        s = agent.statistics()
        return {"recorded": sum(s["recorded"].values()), "pending": s["pending_events"],
                "delivered": s["delivery"]["delivered_events"], "dropped": s["dropped"],
                "duplicated": s["delivery"]["possibly_duplicated_events"]}
"""


def test_a_child_forked_while_a_sending_thread_is_retired_sends_on_its_own():
    """The parent's sending threads are stuck (one retired, one current); a child forked
    then has none of them: it must send on a thread of its own at once, count only its own
    events, and the parent must still account for all of its own."""
    import json

    done = child.run(LEDGER + FORK_WHILE_RETIRED, timeout=20)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    kid, parent = lines[0], lines[1]
    assert kid["delivered_bodies"] == 1 and kid["child"]["recorded"] == 5, kid
    assert kid["child"]["delivered"] == 5 and kid["child"]["duplicated"] == 0, kid
    assert parent["senders"] == 2 and parent["status"] == 0, parent
    ledger = parent["parent"]
    assert ledger["recorded"] == 3 and ledger["delivered"] == 0, ledger
    assert ledger["dropped"] == {"not_delivered_by_close": 3}, ledger
    assert ledger["duplicated"] >= 3, ledger  # every body it sent may be stored


# -- SIGTERM during the exit's close, with two agents --------------------------------------------

SIGTERM_DURING_THE_EXIT_S_CLOSE = """
    import atexit, os, signal, sys, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Slow:
        def post(self, body, timeout):
            time.sleep(0.6)
            return Outcome("retry", 503)

    agents = []
    for name, spool in (("first", {first!r}), ("second", {second!r})):
        agent = impactagent.Agent(name, transport=Slow(), register=False, flush_interval=3600,
                                  shutdown_timeout=2, spool_dir=spool)
        agent.start()
        agent.counter("jobs_total", "Jobs").inc(7)
        agents.append(agent)
    if {simulate!r}:  # Python 3.12's rule on an older one: no thread starts at exit
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        atexit.register(setattr, threading.Thread, "start", refuse)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True  # fires while the exit closes the second agent
    timer.start()
"""


def exit_interpreters():
    from tests.test_delivery_under_faults import interpreters_without_threads_at_exit

    return ["simulated"] + [python for python, _ in interpreters_without_threads_at_exit()]


@pytest.mark.parametrize("python", exit_interpreters())
def test_sigterm_during_the_exit_s_close_closes_the_other_agent_without_a_thread(tmp_path,
                                                                                python):
    """The script ends; the exit closes the agents one after the other, and SIGTERM (docker
    stop) comes during the first of those closes. It is deferred to that close's end, and
    then closes every other agent: on threads, which Python 3.12 does not start at exit.
    That raised out of the exit hook (a traceback, and the deferred end put off to the
    next hook's close); the others are now closed on the exiting thread."""
    import subprocess
    import sys
    import textwrap

    from tests.test_delivery_under_faults import interpreters_without_threads_at_exit

    first, second = tmp_path / "first", tmp_path / "second"
    script = textwrap.dedent(SIGTERM_DURING_THE_EXIT_S_CLOSE.format(
        first=str(first), second=str(second), simulate=python == "simulated"))
    paths = dict(interpreters_without_threads_at_exit())
    env = child.environment({"PYTHONPATH": paths[python]} if python in paths else None)
    done = subprocess.run([sys.executable if python == "simulated" else python, "-c", script],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(list(first.glob("*.json"))) == 1 and len(list(second.glob("*.json"))) == 1


# -- a signal while the main thread is inside the agent's own code ------------------------------

#: An agent that delivers 1,000 jobs to a file (it outlives the process) and a profile hook
#: that sends a real SIGTERM at a flag's first count, inside the flag table's lock.
SIGTERM_AT_A_NEW_FLAG = """
    import atexit, os, signal, sys, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class ToFile:  # what was delivered outlives the process
        def post(self, body, timeout):
            with open({delivered!r}, "ab") as out:
                out.write(body + b"\\n")
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=ToFile(), register=False, flush_interval=3600,
                              shutdown_timeout=2)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(1000)

    def at_a_new_flag(frame, event, arg):  # picks the instant; the signal is real
        if (event == "call" and frame.f_code.co_name == "__init__"
                and frame.f_code.co_filename.endswith("flags.py")):
            sys.setprofile(None)
            print("SIGTERM sent", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
"""


def delivered_jobs_and_flags(delivered):
    bodies = [json.loads(line) for line in delivered.read_text().splitlines()]
    jobs = sum(s["value"] for b in bodies for m in b.get("impactMetrics", [])
               for s in m["samples"] if m["name"] == "jobs_total")
    flags = sum(t["yes"] + t["no"] for b in bodies for t in b["bucket"]["toggles"].values())
    return jobs, flags


SIGTERM_WHILE_A_FLAG_IS_FIRST_COUNTED = SIGTERM_AT_A_NEW_FLAG + """

    sys.setprofile(at_a_new_flag)
    agent.record_flag("new-checkout", True)  # its first count holds the flag table's lock
    sys.setprofile(None)
    time.sleep(10)
"""


def test_sigterm_while_the_main_thread_holds_the_flag_table_s_lock_delivers_the_window(
        tmp_path):
    """SIGTERM comes while the main thread counts a flag for the first time, inside the
    lock of the flag table (as statistics() or a health check would hold it). The handler
    waited there for closes on other threads that needed that very lock: the process hung
    until its own deadline and ended with the window neither delivered nor counted. The
    handler now starts the closing and returns, so the main thread releases the lock."""
    delivered = tmp_path / "delivered"
    done = child.run(SIGTERM_WHILE_A_FLAG_IS_FIRST_COUNTED.format(delivered=str(delivered)),
                     timeout=30)
    assert "SIGTERM sent" in done.stdout, done.stderr  # the instant was reached
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert delivered_jobs_and_flags(delivered) == (1000, 1), done.stderr


CTRL_C_WHILE_A_MAIN_THREAD_FLUSH_COLLECTS = """
    import json, os, signal, sys, threading
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Counting:
        def __init__(self):
            self.events = 0
        def post(self, body, timeout):
            self.events += impactagent.count_events(json.loads(body))
            return Outcome("delivered", 202)

    transport = Counting()
    agent = impactagent.Agent("shop", transport=transport, register=False)
    for m in range(50):
        agent.counter(f"m{{m}}_total", "Hits").inc(3)
    for i in range(100):
        agent.record_flag(f"flag-{{i}}", True)
    fired = []

    def at_the_tenth_family(frame, event, arg):  # picks the instant; the signal is real
        if event == "call" and frame.f_code.co_name == "take_family":
            fired.append(1)
            if len(fired) == 10:
                os.kill(os.getpid(), signal.SIG{signal})

    if {signal!r} == "TERM":  # an app's own handler, as many servers install
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.setprofile(at_the_tenth_family)  # whichever thread collects
    sys.setprofile(at_the_tenth_family)
    try:
        agent.{call}(timeout=5)
        raised = None
    except BaseException as error:
        raised = type(error).__name__
    sys.setprofile(None)
    threading.setprofile(None)
    agent.close(timeout=5)
    s = agent.statistics()
    print(json.dumps({{"raised": raised, "fired": len(fired), "delivered": transport.events,
                      "dropped": s["dropped"], "pending": s["pending_events"]}}))
"""


@pytest.mark.parametrize("call", ["flush", "close"])
@pytest.mark.parametrize("sent", ["INT", "TERM"])
def test_ctrl_c_or_an_app_s_exit_while_a_main_thread_flush_collects_loses_nothing(call, sent):
    """Ctrl-C (or an app's SIGTERM handler calling sys.exit) while the main thread's
    flush() or close() takes the recorded counts family by family: the exception unwound
    through the take, and what it had taken but not yet handed to a body was lost, not
    counted. The take now runs on an agent thread, which signals do not interrupt: the
    exception ends the app's wait, and every count is delivered."""
    done = child.run(CTRL_C_WHILE_A_MAIN_THREAD_FLUSH_COLLECTS.format(call=call, signal=sent),
                     timeout=60)
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["fired"] >= 10, seen  # the instant was reached
    assert seen["raised"] == ("KeyboardInterrupt" if sent == "INT" else "SystemExit"), seen
    assert (seen["delivered"], seen["dropped"], seen["pending"]) == (250, {}, 0), seen


CTRL_C_DURING_A_LONG_APP_CALL = """
    import os, signal, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            time.sleep(min(timeout, 0.2))
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600,
                              shutdown_timeout=1)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        agent.{call}(timeout=3600)  # a server that is down, and the app's patience
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.parametrize("call", ["flush", "close"])
def test_ctrl_c_during_a_long_flush_or_close_ends_the_process_with_the_window_counted(call):
    """Ctrl-C ends the app's wait for a flush() or close() with an hour's timeout. The work
    goes on, on a thread the exit waits for, but is told to retry nothing more: the process
    ends within the shutdown timeout, not the hour, with the 7 counted as not delivered."""
    started = time.monotonic()
    done = child.run(CTRL_C_DURING_A_LONG_APP_CALL.format(call=call), timeout=30)
    assert time.monotonic() - started < 15
    assert done.stdout.strip() == "interrupted", done.stderr
    assert "closing with 7 events not delivered" in done.stderr, done.stderr


A_LOG_HANDLER_THAT_FLUSHES = """
    import logging
    import impactagent
    from impactagent.delivery.transport import Outcome

    class Down:
        def post(self, body, timeout):
            return Outcome("retry", 503)

    agent = impactagent.Agent("shop", transport=Down(), register=False, flush_interval=3600)
    agent.counter("jobs_total", "Jobs").inc(7)

    class FlushOnError(logging.Handler):  # holds its own lock while it emits
        def emit(self, record):
            if record.name == "app":
                print(agent.flush(timeout=0.5).skipped or "flushed", flush=True)

    logging.getLogger().addHandler(FlushOnError())
    logging.getLogger("app").error("payment failed")
    agent.close(timeout=3)
    print(impactagent.Agent.statistics(agent)["dropped"], flush=True)
"""


def test_a_log_handler_that_flushes_is_not_held_by_the_agent_s_own_log_line():
    """An app's log handler flushes the agent while it emits, holding its own lock; the
    flush, on the agent's thread, logs its failure through that handler and waits for the
    lock. The app's flush() stops waiting a moment past its deadline (it used to run on the
    app's thread, where the handler's lock is re-entrant), and the body is counted at close."""
    done = child.run(A_LOG_HANDLER_THAT_FLUSHES, timeout=30)  # it hung here for good
    lines = done.stdout.splitlines()
    assert lines[0].startswith("still running on its thread"), done.stdout + done.stderr
    assert lines[-1] == "{'not_delivered_by_close': 7}", done.stdout + done.stderr


SIGTERM_DURING_AN_APP_S_EXIT_HOOK = SIGTERM_AT_A_NEW_FLAG + """

    def app_exit_hook():  # registered after the agent's: it runs first
        sys.setprofile(at_a_new_flag)
        agent.record_flag("new-checkout", True)  # holds the flag table's lock
        sys.setprofile(None)
        time.sleep(10)

    atexit.register(app_exit_hook)
    if {simulate!r}:  # Python 3.12's rule on an older one: no thread starts at exit
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        atexit.register(setattr, threading.Thread, "start", refuse)
"""


@pytest.mark.parametrize("python", exit_interpreters())
def test_sigterm_during_an_app_s_exit_hook_that_holds_the_flag_lock_delivers_the_window(
        tmp_path, python):
    """The script ends; an app's exit hook counts a flag for the first time, and SIGTERM
    comes while it holds the flag table's lock. Where no thread starts at exit (3.12), the
    handler ran the whole closing itself, on top of that frame, and waited for the lock for
    good. The closing thread now starts with the handler and waits for SIGTERM."""
    import subprocess
    import sys
    import textwrap

    delivered = tmp_path / "delivered"
    script = textwrap.dedent(SIGTERM_DURING_AN_APP_S_EXIT_HOOK.format(
        delivered=str(delivered), simulate=python == "simulated"))
    from tests.test_delivery_under_faults import interpreters_without_threads_at_exit

    paths = dict(interpreters_without_threads_at_exit())
    env = child.environment({"PYTHONPATH": paths[python]} if python in paths else None)
    done = subprocess.run([sys.executable if python == "simulated" else python, "-c", script],
                          env=env, capture_output=True, text=True, timeout=30)
    assert "SIGTERM sent" in done.stdout, done.stderr
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert delivered_jobs_and_flags(delivered) == (1000, 1), done.stderr


SIGTERM_DURING_THE_EXIT_S_SLOW_POST = """
    import atexit, os, signal, threading, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class SlowToFile:  # stores the body, then answers a second later
        def post(self, body, timeout):
            with open({delivered!r}, "ab") as out:
                out.write(body + b"\\n")
            time.sleep(1.0)
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=SlowToFile(), register=False,
                              flush_interval=3600, shutdown_timeout=3, spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(1000)
    if {simulate!r}:  # Python 3.12's rule on an older one: no thread starts at exit
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        atexit.register(setattr, threading.Thread, "start", refuse)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True  # fires while the exit's close waits for the answer
    timer.start()
"""


@pytest.mark.parametrize("python", exit_interpreters())
def test_sigterm_while_the_exit_s_close_waits_for_an_answer_delivers_once(tmp_path, python):
    """The script ends; the exit's close sends the window and the server answers 202 a
    second later; SIGTERM comes meanwhile. Where no thread starts at exit, the handler ran
    the closing on top of that close: it spooled the body the server had just stored (sent
    again by the next agent). The closing thread waits for the exit's close instead, which
    hears the 202."""
    import subprocess
    import sys
    import textwrap

    from tests.test_delivery_under_faults import interpreters_without_threads_at_exit

    delivered, spool = tmp_path / "delivered", tmp_path / "spool"
    script = textwrap.dedent(SIGTERM_DURING_THE_EXIT_S_SLOW_POST.format(
        delivered=str(delivered), spool=str(spool), simulate=python == "simulated"))
    paths = dict(interpreters_without_threads_at_exit())
    env = child.environment({"PYTHONPATH": paths[python]} if python in paths else None)
    done = subprocess.run([sys.executable if python == "simulated" else python, "-c", script],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert len(delivered.read_text().splitlines()) == 1, done.stderr
    assert not list(spool.glob("*.json*")), done.stderr  # nothing to send again


SIGTERM_TO_A_CHILD_FORKED_WITHOUT_HOOKS = """
    import ctypes, os, signal, sys, time
    import impactagent
    from impactagent.delivery.transport import Outcome

    class ToFile:
        def post(self, body, timeout):
            with open({delivered!r}, "a") as out:
                out.write(f"{{os.getpid()}}\\n")
            return Outcome("delivered", 202)

    agent = impactagent.Agent("shop", transport=ToFile(), register=False, flush_interval=3600)
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(7)
    pid = ctypes.CDLL(None).fork()  # no Python fork hooks run (a C extension's fork)
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), pid, flush=True)
    agent.close(timeout=2)
"""


def test_sigterm_to_a_child_forked_without_hooks_ends_it_without_sending_the_parent_s_counts(
        tmp_path):
    """A C extension forks without Python's hooks; the child inherits the agent's SIGTERM
    handler but not its closing thread, and its agent's counts are the parent's. SIGTERM
    ends it as SIGTERM's default would: the parent alone sends the 7."""
    delivered = tmp_path / "delivered"
    done = child.run(SIGTERM_TO_A_CHILD_FORKED_WITHOUT_HOOKS.format(delivered=str(delivered)),
                     timeout=30)
    code, kid = done.stdout.split()
    assert int(code) == -signal.SIGTERM, done.stderr
    senders = delivered.read_text().split()
    assert kid not in senders and len(senders) == 1, (senders, done.stderr)
