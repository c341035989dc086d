"""A fork while another thread is writing a log line must not hang the child's logging.

The stream in the script below stands for a file's buffered writer: it has a lock of its
own, held while a line is written, and the write is slow. A thread logs through the agent's
logger; the main thread forks while that line is being written (a real ``os.fork()``); the
child logs a line of its own and exits. Each run is a fresh interpreter: one makes an
agent (whose fork hook holds the handlers across the fork), one does not (the
control: its child inherits the stream's lock held by a thread that does not exist there,
and waits until the bound). The model test found this hang at a forked child's exit.
"""

from __future__ import annotations

import logging
import os

import pytest

from impactagent.delivery import lifecycle as fork_logging
from tests import child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

SCRIPT = """
    import logging, os, signal, sys, threading, time
    if {with_agent}:
        import impactagent
        agent = impactagent.Agent("forky")  # an agent's delivery registers the fork hooks

    class SlowStream:
        def __init__(self):
            self.lock = threading.Lock()  # as io.BufferedWriter has
            self.writing = threading.Event()
        def write(self, text):
            with self.lock:
                self.writing.set()
                time.sleep(0.5)
        def flush(self):
            with self.lock:
                pass

    stream = SlowStream()
    logger = logging.getLogger("impactagent")
    logger.addHandler(logging.StreamHandler(stream))
    threading.Thread(target=logger.error, args=("another thread's line",)).start()
    stream.writing.wait(5)  # that thread is inside the handler now
    pid = os.fork()
    if pid == 0:
        logger.error("the child's own line")
        os._exit(0)
    deadline = time.monotonic() + {patience}
    while time.monotonic() < deadline:  # bounded wait for the child
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("child exited", os.waitstatus_to_exitcode(status))
            sys.exit(0)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("child hung")
"""


@pytest.mark.parametrize("with_agent, expected", [(True, "child exited 0"),
                                                  (False, "child hung")])
def test_a_fork_during_another_threads_log_line(with_agent, expected):
    # A child that should exit gets 30 s (it takes about 0.5 s, its one slow line; 3 s
    # could run out on a loaded machine); one expected to hang is called hung after 3 s:
    # it waits on a lock nobody will release, so more patience would change nothing.
    patience = 30 if with_agent else 3
    done = child.run(SCRIPT.format(with_agent=with_agent, patience=patience), timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected, (done.stdout, done.stderr)


def test_the_hook_reaches_the_handlers_of_the_agents_logger_and_its_ancestors():
    root_handler, own_handler = logging.NullHandler(), logging.NullHandler()
    logging.getLogger().addHandler(root_handler)
    logging.getLogger("impactagent").addHandler(own_handler)
    try:
        found = fork_logging.handlers_of(logging.getLogger("impactagent"))
        assert own_handler in found and root_handler in found
    finally:
        logging.getLogger().removeHandler(root_handler)
        logging.getLogger("impactagent").removeHandler(own_handler)
