"""A second round of attacks on the delivery's promise: every count recorded is delivered
once, or kept (merged back, spooled), or counted as dropped with a reason; a body that may
be stored twice is inside ``possibly_duplicated_events``; no process hangs; SIGTERM ends
the process with the status SIGTERM gives.

Signals are real (``kill`` of a real child process, handled by the real handlers), and so
are the users' transports and the threads.
"""

from __future__ import annotations

import signal

from tests import child

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
    """SIGTERM interrupts a flush on the main thread (waiting for its turn behind a flush
    on the app's worker thread): the end is deferred to when the main thread's flush ends.
    The worker's flush, cut short, ends first: it must neither try to end the process from
    its thread (signal.signal works in the main thread only) nor swallow the deferred end,
    which left the app running on after SIGTERM."""
    spool = tmp_path / "spool"
    done = child.run(SIGTERM_WHILE_TWO_THREADS_FLUSH.format(spool=str(spool)), timeout=15)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "the main thread went on" not in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert len(list(spool.glob("*.json"))) == 1, done.stderr
