"""fork(): a child starts empty with its own connection id and flusher; nothing is sent twice.

Uses a real ``os.fork()`` and a real gunicorn with ``--preload``, against a real HTTP server
on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import impactagent
from tests.loopback import listening_socket

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_parent_and_forked_child_each_deliver_only_their_own_counts(server):
    agent = impactagent.Agent("forky", url=server.api_url, api_key="t", flush_interval=0.2,
                              request_timeout=2).start()
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(100)  # recorded before the fork: the parent's alone
    agent.record_flag("f", True)
    parent_connection = agent.identity.connection_id

    pid = os.fork()
    if pid == 0:  # the child: record its own, then leave through a normal close
        code = 1
        try:
            assert agent.identity.connection_id != parent_connection
            assert jobs.value == 0  # starts empty
            assert agent.lifecycle.flusher.running  # its own flusher
            jobs.inc(7)
            agent.record_flag("f", False)
            code = 0 if agent.close(timeout=5).ok else 2
        finally:
            os._exit(code)
    jobs.inc(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert agent.close(timeout=5).ok
    assert server.counter_total("jobs_total") == 112
    assert server.totals()["flags"]["f"] == {"yes": 1, "no": 1, "variants": {}}
    connections = {d["connectionId"] for d in server.accepted_documents()}
    assert len(connections) == 2 and parent_connection in connections


def test_gunicorn_preload_with_two_workers_delivers_exactly_what_requests_recorded(server):
    pytest.importorskip("gunicorn")
    env = dict(os.environ, TEST_UNLEASH_URL=server.api_url, PYTHONPATH=str(ROOT))
    with listening_socket() as listener:  # see listening_socket: no port race, no polling
        port = listener.getsockname()[1]
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
             "-b", f"fd://{listener.fileno()}", "--graceful-timeout", "10",
             "tests.apps.preload_app:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    try:
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.trust_env = False
        # Waits in the listen queue until a worker has started (bounded by the timeout).
        session.get(base + "/warmup", timeout=60, headers={"Connection": "close"})
        pids = set()
        for i in range(300):
            path = "/on" if i % 3 else "/off"
            pids.add(session.get(base + path, timeout=5, headers={"Connection": "close"})
                     .text.split()[0])
    finally:
        master.send_signal(signal.SIGTERM)
        output = master.communicate(timeout=30)[0].decode(errors="replace")
    assert master.returncode == 0, output
    assert len(pids) == 2, f"expected both workers to serve requests: {pids}"
    totals = server.totals()
    assert server.counter_total("hits_total") == 301  # 300 + the warm-up request
    assert totals["flags"]["new-checkout"] == {"yes": 200, "no": 101,
                                               "variants": {"blue": 200}}
    assert totals["flags"]["booted"] == {"yes": 1, "no": 0, "variants": {}}  # the master's
    connections = {d["connectionId"] for d in server.accepted_documents()}
    assert len(connections) == 3  # the master and two workers
