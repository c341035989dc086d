"""A deadline holds over a whole request, and the status line decides what became of a body.

Servers here trickle their whole answer (one byte every 0.3 s, so that each socket read is
served in time), cut an answer after its status line, or hold it; every test uses a real
local server and the agent's real HTTP transport.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

import impactagent
from impactagent.core.payload import Identity
from impactagent.delivery.registration import Registration
from impactagent.delivery.transport import HttpTransport
from tests import child
from tests.scripted_server import Answer, ScriptedServer

TOKEN = "default:production.d3adline-secret"


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def make_agent(server, **options):
    options.setdefault("request_timeout", 1)
    return impactagent.Agent("shop", url=server.api_url, api_key=TOKEN, register=False,
                             **options)


@pytest.mark.parametrize("call", ["flush", "close"])
def test_a_trickling_answer_cannot_hold_flush_or_close_past_its_timeout(server, call):
    server.script(Answer(202, trickle=0.3))
    agent = make_agent(server)
    agent.counter("jobs_total", "Jobs").inc(7)
    started = time.monotonic()
    result = getattr(agent, call)(timeout=2)
    took = time.monotonic() - started
    assert took < 3.0, f"{call}(timeout=2) took {took:.1f} s"
    assert not result.ok
    # The server stored it before trickling. After a flush its answer is still awaited: a
    # 202 would settle it as delivered, once. close() cannot wait: it counts the body as
    # not delivered, and as possibly stored after all.
    agent.close(timeout=1)
    statistics = agent.statistics()
    assert statistics["delivery"]["possibly_duplicated_events"] == 7
    assert statistics["dropped"] == {"not_delivered_by_close": 7}


def test_a_trickling_registration_cannot_hold_the_flusher_thread(server):
    server.script_register(Answer(202, trickle=0.3))
    transport = HttpTransport(server.api_url + "/client/metrics", TOKEN,
                              Identity.create("shop"), flush_interval=60)
    registration = Registration(transport, identity=Identity.create("shop"), interval=60)
    started = time.monotonic()
    outcome = registration.attempt(1.0)
    assert time.monotonic() - started < 2.0
    assert outcome is not None and not registration.registered
    assert registration.due  # tried again at the next interval


@pytest.mark.parametrize("broken", ["short", "chunked", "gzip"])
def test_a_2xx_whose_answer_then_breaks_is_delivered_once(server, broken):
    server.script(Answer(202, broken=broken))
    agent = make_agent(server)
    agent.counter("jobs_total", "Jobs").inc(5)
    result = agent.flush(timeout=5)
    assert result.ok and result.delivered_events == 5
    agent.close(timeout=2)
    assert server.counter_total("jobs_total") == 5
    assert len(server.requests) == 1  # never resent
    delivery = agent.statistics()["delivery"]
    assert delivery["possibly_duplicated_events"] == 0 and delivery["failures"] == {}


SIGTERM_DURING_CLOSE = """
    import sys, time
    import impactagent
    agent = impactagent.Agent("shop", url={url!r}, api_key={token!r}, flush_interval=3600,
                              shutdown_timeout=2, request_timeout=30, register=False,
                              spool_dir={spool!r})
    agent.start()
    agent.counter("jobs_total", "Jobs").inc(42)
    print("ready", flush=True)
    time.sleep(60)
"""


def test_sigterm_during_close_s_own_post_spools_what_it_sends(server, tmp_path):
    """The close that SIGTERM runs is itself inside a POST that trickles: the deadline cuts
    it, and the body is spooled before the process ends, as SIGTERM would have ended it."""
    server.script(Answer(202, trickle=0.3))
    spool = tmp_path / "spool"
    process = child.popen(SIGTERM_DURING_CLOSE.format(url=server.api_url, token=TOKEN,
                                                      spool=str(spool)))
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == -signal.SIGTERM
    assert time.monotonic() - started < 5
    files = sorted(spool.glob("*.json"))
    assert len(files) == 1, process.stderr.read()
    spooled = json.loads(files[0].read_bytes())
    assert [s["value"] for m in spooled["impactMetrics"] for s in m["samples"]] == [42]
    assert TOKEN not in process.stderr.read()
