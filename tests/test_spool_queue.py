"""The spool as a queue shared by processes: forks, clock steps, containers, leases, and a
close() that comes while a spooled body is in flight. Real forks, real processes in PID
namespaces of their own (as containers have), a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

import impactagent
from impactagent.delivery.spool import Spool
from tests import child
from tests.loopback import wait_until
from tests.scripted_server import Answer, ScriptedServer
from tests.test_spool import body

TOKEN = "default:production.qu3ue-secret"


def spooled_yes(spool: Spool) -> list:
    return sorted(json.loads(spool.read(e) or b"{}")["bucket"]["toggles"]["f"]["yes"]
                  for e in spool.entries())


def stored_yes(server: ScriptedServer) -> list:
    return sorted(d["bucket"]["toggles"]["f"]["yes"] for d in server.accepted_documents())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_and_its_parent_never_write_the_same_name_even_after_a_clock_step(
        tmp_path):
    spool = Spool(tmp_path)
    spool.write(body(1))
    past = datetime.now(timezone.utc) - timedelta(seconds=30)  # the clock steps back
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            spool.reset_after_fork()
            with freeze_time(past):
                code = 0 if spool.write(body(100)) is not None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with freeze_time(past):
        spool.write(body(10))
    assert spooled_yes(spool) == [1, 10, 100]  # nothing replaced


def test_a_live_claim_is_left_alone_and_an_expired_one_is_taken_back(tmp_path):
    mine, theirs = Spool(tmp_path, lease_seconds=0.5), Spool(tmp_path, lease_seconds=0.5)
    claim = mine.claim(mine.write(body(3)))
    assert claim is not None
    assert theirs.entries() == []  # a live lease: not theirs to send
    renewed = mine.renew(claim)
    assert renewed is not None
    time.sleep(0.7)  # the owner stalls past its lease
    (expired,) = theirs.entries()
    taken = theirs.claim(expired)
    assert taken is not None and spooled_yes(theirs) == []
    assert mine.renew(renewed) is None  # the stalled owner learns it lost the file
    assert mine.remove(renewed) is False
    assert theirs.remove(taken) is True


HOLDER = """
    import sys
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, spool_dir={spool!r},
                              request_timeout=10, register=False)
    print("flushing", flush=True)
    result = agent.flush(timeout=10)
    print(result.delivered_bodies, flush=True)
    agent.close(timeout=5)
"""

LATECOMER = """
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, spool_dir={spool!r},
                              request_timeout=10, register=False)
    result = agent.flush(timeout=2)
    print(result.delivered_bodies, len(agent.lifecycle.spool), flush=True)
    agent.close(timeout=2)
"""


def _in_own_pid_namespace(script: str) -> list:
    unshare = shutil.which("unshare")
    return [unshare, "--pid", "--fork", "--kill-child", sys.executable, "-c", script]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None
                    or subprocess.run(["unshare", "--pid", "--fork", "true"],
                                      capture_output=True).returncode != 0,
                    reason="needs unshare --pid (root) to run processes as containers do")
def test_two_containers_sharing_a_spool_never_send_one_body_twice(tmp_path):
    """Both processes are pid 1 in their own PID namespace, as in two containers: the
    latecomer must not take the holder's live claim for a dead process's."""
    import textwrap

    spool_dir = tmp_path / "spool"
    Spool(spool_dir).write(body(8))
    with ScriptedServer() as server:
        server.script(Answer(202, delay_after=3))  # stored, then answered late
        options = dict(url=server.api_url, token=TOKEN, spool=str(spool_dir))
        holder = subprocess.Popen(
            _in_own_pid_namespace(textwrap.dedent(HOLDER.format(**options))),
            env=child.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.wait_for(lambda s: s.arrivals >= 1, 20)  # A's claim is live
            late = subprocess.run(
                _in_own_pid_namespace(textwrap.dedent(LATECOMER.format(**options))),
                env=child.environment(), capture_output=True, text=True, timeout=60)
            assert late.stdout.split() == ["0", "0"], late.stderr
            holder_out, holder_err = holder.communicate(timeout=60)
        finally:
            holder.kill()
        assert holder_out.split() == ["flushing", "1"], holder_err
        assert stored_yes(server) == [8]  # once


def _agent_with_one_spooled_body(server, spool_dir, **options):
    Spool(spool_dir).write(body(5))
    return impactagent.Agent("shop", url=server.api_url, api_key=TOKEN,
                             spool_dir=str(spool_dir), request_timeout=10, register=False,
                             **options)


def test_close_while_a_spooled_body_is_in_flight_removes_it_when_the_answer_comes(tmp_path):
    with ScriptedServer() as server:
        server.script(Answer(202, delay_after=1.0))
        agent = _agent_with_one_spooled_body(server, tmp_path)
        flushing = threading.Thread(target=agent.flush, kwargs={"timeout": 10}, daemon=True)
        flushing.start()
        assert server.wait_for(lambda s: s.arrivals >= 1)
        agent.close(timeout=0.5)
        delivery = lambda: agent.statistics()["delivery"]  # noqa: E731
        assert wait_until(lambda: delivery()["possibly_duplicated_events"] == 0, 15)
        assert delivery()["delivered_events"] == 5
        assert Spool(tmp_path).entries() == []  # the late answer removed the spooled copy
        assert stored_yes(server) == [5]


CLOSING_BEFORE_THE_ANSWER = """
    import threading, time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, spool_dir={spool!r},
                              request_timeout=10, register=False)
    threading.Thread(target=agent.flush, kwargs={{"timeout": 10}}, daemon=True).start()
    time.sleep(0.5)
    agent.close(timeout=0.5)
    print(agent.statistics()["delivery"]["possibly_duplicated_events"], flush=True)
"""


def test_a_process_that_ends_before_the_answer_counts_the_body_as_possibly_duplicated(
        tmp_path):
    with ScriptedServer() as server:
        server.script(Answer(202, delay_after=3))
        Spool(tmp_path).write(body(5))
        ended = child.run(CLOSING_BEFORE_THE_ANSWER.format(
            url=server.api_url, token=TOKEN, spool=str(tmp_path)), timeout=60)
        assert ended.stdout.split() == ["5"], ended.stderr
        # The next process sends the spooled copy again: stored twice, and said so above.
        agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN,
                                  spool_dir=str(tmp_path), register=False)
        agent.close(timeout=5)
        assert wait_until(lambda: len(server.accepted_documents()) == 2, 10)
        assert stored_yes(server) == [5, 5]
