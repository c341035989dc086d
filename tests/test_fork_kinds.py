"""Every kind of fork: a bare ``os.fork()`` of an agent without a url, ``multiprocessing``
children (``Process`` and ``Pool``, fork start method) that end with ``os._exit``, and the
import lock a flusher must never hold at the moment of a fork.

The multiprocessing cases run in a child interpreter (so that the SIGTERM handler a started
agent installs belongs to that interpreter, not to pytest), against a real server here.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

import impactagent
from tests import child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def test_a_child_of_an_agent_without_a_url_starts_empty():
    # A Prometheus-only app under gunicorn --preload: each worker counts only its own.
    agent = impactagent.Agent("shop")
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(5)
    agent.record_flag("new-checkout", True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            jobs.inc(2)
            agent.record_flag("new-checkout", False)
            snapshot = agent.collect()
            seen = {"jobs": jobs.value, "toggles": {k: [v.yes, v.no] for k, v in
                                                    snapshot.toggles.items()},
                    "dropped": agent.statistics()["dropped"]}
            os.write(write, json.dumps(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    seen = json.loads(os.read(read, 65536))
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == {"jobs": 2, "toggles": {"new-checkout": [0, 1]}, "dropped": {}}
    assert jobs.value == 5  # the parent keeps its own


MULTIPROCESSING = """
    import multiprocessing, os
    import impactagent

    agent = impactagent.Agent("shop", url={url!r}, api_key="t", flush_interval=3600,
                              shutdown_timeout=5).start()
    jobs = agent.counter("jobs_total", "Jobs")

    def work(n):
        jobs.inc(n)
        agent.record_flag("new-checkout", n % 2 == 0)
        return os.getpid()

    def process_body(n):
        work(n)

    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        jobs.inc(1000)  # the parent's own
{run}
        print("closed", agent.close().ok, flush=True)
"""

RUNS = {
    "process": """
        children = [context.Process(target=process_body, args=(n,)) for n in range(1, 5)]
        for c in children: c.start()
        for c in children: c.join(30)
        assert all(c.exitcode == 0 for c in children), [c.exitcode for c in children]
    """,
    "pool_close_join": """
        pool = context.Pool(2)
        pool.map(work, range(1, 41))
        pool.close(); pool.join()
    """,
}
EXPECTED = {"process": (1 + 2 + 3 + 4, 2, 2), "pool_close_join": (820, 20, 20)}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_multiprocessing_children_deliver_their_last_window(server, run):
    body = textwrap.indent(textwrap.dedent(RUNS[run]).strip(), " " * 8)
    done = child.run(MULTIPROCESSING.format(url=server.api_url, run=body), timeout=90)
    assert done.returncode == 0, done.stderr
    assert "closed True" in done.stdout
    total, yes, no = EXPECTED[run]
    assert server.counter_total("jobs_total") == 1000 + total
    assert server.totals()["flags"]["new-checkout"] == {"yes": yes, "no": no, "variants": {}}


WITH_BLOCK = """
        with context.Pool(2) as pool:  # __exit__ terminates the workers (SIGTERM)
            pool.map(work, range(1, 41))
"""


def test_a_pool_left_by_its_with_block_never_hangs(server):
    # Pool.__exit__ terminates the workers with SIGTERM. A Python handler there could wait
    # forever for a worker waiting on its queue's semaphore (seen about once in twenty runs),
    # so workers keep SIGTERM's default: they die at once, like kill, and what they recorded
    # since their last flush is lost with them; the parent's own counts are delivered.
    for _ in range(5):
        done = child.run(MULTIPROCESSING.format(
            url=server.api_url, run=textwrap.indent(textwrap.dedent(WITH_BLOCK).strip(), " " * 8)),
            timeout=60)
        assert done.returncode == 0, done.stderr
        assert "closed True" in done.stdout
    assert 5 * 1000 <= server.counter_total("jobs_total") <= 5 * 1820


IMPORTS = """
    import sys, time
    import impactagent
    from tests.scripted_server import Answer, ScriptedServer, refused_url

    with ScriptedServer() as server:
        server.script(500, Answer(drop=True), Answer(202, delay=1))
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  flush_interval=3600, request_timeout=0.3)
        down = impactagent.Agent("shop", url=refused_url(), api_key="t", flush_interval=3600)
        agent.start(); down.start()
        before = set(sys.modules)
        for _ in range(4):  # 500, reset, read timeout, 202
            agent.counter("jobs_total", "Jobs").inc()
            agent.flush(timeout=2)
        down.flush(timeout=1)
        print(sorted(set(sys.modules) - before))
        agent.close(); down.close(timeout=1)
"""


def test_after_start_a_flush_imports_nothing():
    # A flusher that imports lazily holds an import lock that a fork at that moment leaves
    # held forever in the child (whose flusher then hangs): start() imports all up front.
    done = child.run(IMPORTS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
