"""A drop that the delivery explains in full (the server refused the token, or a body) is
logged once, as that error: not again as the drop counter's generic warning."""

from __future__ import annotations

import logging

import impactagent
from tests.scripted_server import Answer, ScriptedServer

TOKEN = "default:development.one-line"


def about(records, *words):
    return [r.getMessage() for r in records if any(w in r.getMessage() for w in words)]


def test_closing_after_a_401_says_it_in_one_line(caplog):
    with ScriptedServer(token="the-right-token") as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN,
                                  flush_interval=60, request_timeout=2)
        agent.counter("jobs_total", "Jobs").inc(3)
        with caplog.at_level(logging.INFO, logger="impactagent"):
            agent.flush()
            agent.close()
    assert agent.statistics()["dropped"] == {"not_delivered_by_close": 3}  # its value
    lines = about(caplog.records, "not_delivered_by_close", "closed with events")
    assert len(lines) == 1, lines
    assert "stopped by HTTP 401" in lines[0] and "spool_dir" in lines[0]
    assert caplog.records[-1].levelno == logging.ERROR


def test_a_400_is_one_line(caplog):
    with ScriptedServer() as server:
        server.script(Answer(400, body=b'{"error": "bad metric name"}'))
        agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN,
                                  flush_interval=60, request_timeout=2)
        agent.counter("jobs_total", "Jobs").inc()
        with caplog.at_level(logging.INFO, logger="impactagent"):
            agent.flush()
        agent.close()
    assert agent.statistics()["dropped"] == {"rejected_by_server": 1}
    lines = about(caplog.records, "rejected_by_server", "answered 400", "HTTP 400")
    assert len(lines) == 1, lines
    assert "bad metric name" in lines[0]
