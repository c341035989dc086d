"""An outage is visible in the log: one WARNING when it starts, a reminder at most every few
minutes while it lasts, an INFO when delivery recovers; never a line per failed POST."""

from __future__ import annotations

import logging

import impactagent
from impactagent.delivery.delivery import FlushResult
from impactagent.delivery.health import REMIND_SECONDS, Health
from tests.scripted_server import ScriptedServer

TOKEN = "default:production.h3alth-secret"


def health_lines(caplog):
    return [r for r in caplog.records if r.name == "impactagent.delivery.health"]


def test_a_real_outage_logs_one_warning_then_an_info_when_the_server_heals(caplog):
    with ScriptedServer() as server:
        server.default = 503
        agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN, register=False,
                                  request_timeout=2)
        jobs = agent.counter("jobs_total", "Jobs")
        with caplog.at_level(logging.INFO, logger="impactagent"):
            for _ in range(4):
                jobs.inc()
                agent.flush(timeout=0.5)
            server.default = 202
            jobs.inc()
            assert agent.flush(timeout=5).ok
            agent.close(timeout=2)
        lines = health_lines(caplog)
        assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO], lines
        warning, info = (r.getMessage() for r in lines)
        assert "failed (HTTP 503)" in warning and "kept in memory" in warning
        assert "recovered" in info and "5 events" in info
        assert server.counter_total("jobs_total") == 5
        assert TOKEN not in caplog.text


def test_a_long_outage_reminds_at_most_every_few_minutes_with_counts():
    records = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    now = [1000.0]
    health = Health("https://unleash.example/api/client/metrics", clock=lambda: now[0])
    handler = Keep()
    logger = logging.getLogger("impactagent.delivery.health")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        failed = FlushResult(kept_bodies=1)
        for _ in range(30):  # a flush a minute for 30 minutes
            health.after(failed, "connection refused", "spooled to '/var/spool/ia'")
            now[0] += 60
        health.after(FlushResult(delivered_bodies=2, delivered_events=40), "", "")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    levels = [r.levelno for r in records]
    assert levels.count(logging.WARNING) == 1 + 30 * 60 // int(REMIND_SECONDS) - 1
    assert levels[-1] == logging.INFO
    assert "over 5 flushes since the last line" in records[1].getMessage()
    assert "recovered after 1800 s" in records[-1].getMessage()
