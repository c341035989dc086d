"""Number for number: what a real unleash-server stores equals what the app recorded.

Each test records a known workload (``tests.workload``) through a full agent with its flusher
running, closes the agent, and reads the totals back through the server's own APIs. The
comparison is ``==`` on flag yes/no/variant counts, counter totals, last gauge values and
whole histograms (count, sum and every bucket).
"""

from __future__ import annotations

import time
from typing import Any, Dict

from tests import workload
from tests.e2e.conftest import REPORT, RealServer, ReportRow
from tests.e2e.fault_proxy import RESET, FaultProxy, stall, stall_after, status

#: Tests with stalls give up on a request after FAULTY_TIMEOUT; a stall outlasts it.
FAULTY_TIMEOUT = 2.0
STALL_SECONDS = 3.5


def matches(expected: Dict[str, Any]):
    return lambda stored: stored == expected


def report(scenario: str, expected: Dict[str, Any], stored: Dict[str, Any],
           statistics: Dict[str, Any], proxy: FaultProxy | None = None) -> None:
    REPORT.append(ReportRow(
        scenario=scenario,
        recorded=workload.events(expected),
        stored=workload.events(stored),
        possibly_duplicated=statistics["delivery"]["possibly_duplicated_events"],
        dropped=statistics["dropped"],
        faults={k: v for k, v in (proxy.faults_seen() if proxy else {}).items()
                if k != "forward"},
    ))


def record_in_batches(agent: Any, batches: int, rounds: int, pause: float
                      ) -> Dict[str, Any]:
    """Record while the flusher runs, so that windows are cut between and during batches."""
    expected = workload.empty()
    for batch in range(batches):
        workload.record(agent, rounds, offset=batch * rounds, expected=expected)
        time.sleep(pause)
    return expected


def test_a_clean_run_is_stored_exactly(unleash: RealServer) -> None:
    agent = unleash.agent("e2e-clean").start()
    expected = record_in_batches(agent, batches=3, rounds=40, pause=1.2)
    result = agent.close()
    assert result.ok, result

    stored = unleash.admin.settled_totals("e2e-clean", workload.FLAGS, matches(expected))
    report("clean run", expected, stored, agent.statistics())
    assert stored == expected
    assert agent.statistics()["dropped"] == {}


def test_a_faulty_run_is_stored_exactly(unleash: RealServer) -> None:
    """Bursts of 500 and 503, 429 and 503 with Retry-After, resets, stalls past the request
    timeout and a bad gateway: every body is eventually stored once, nothing twice."""
    with FaultProxy(unleash.url) as proxy:
        proxy.script(
            status(500), status(500), status(500),
            RESET,
            status(503), status(503),
            status(429, retry_after="1"),
            stall(STALL_SECONDS),
            status(503, retry_after="1"),
            status(502), status(504),
            RESET, stall(STALL_SECONDS), status(500),
        )
        agent = unleash.agent("e2e-faulty", url=proxy.url,
                              request_timeout=FAULTY_TIMEOUT).start()
        expected = record_in_batches(agent, batches=6, rounds=25, pause=0.8)
        # A flush that meets a fault keeps its bodies for the next; flush until the script
        # is used up and nothing is pending, then close.
        for _ in range(30):
            if proxy.pending_faults() == 0 and agent.statistics()["pending_events"] == 0:
                break
            agent.flush()
        result = agent.close()
        statistics = agent.statistics()

    assert result.ok, result
    assert proxy.pending_faults() == 0, "the script was not used up: not every fault was met"
    stored = unleash.admin.settled_totals("e2e-faulty", workload.FLAGS, matches(expected))
    report("faulty run (no late answers)", expected, stored, statistics, proxy)
    assert stored == expected
    assert statistics["dropped"] == {}
    assert statistics["delivery"]["retries"] > 0
    assert statistics["delivery"]["failures"]["500"] == 4


def test_a_late_answer_is_the_one_fault_that_counts_twice_and_the_agent_says_so(
        unleash: RealServer) -> None:
    """The server stores the body but its answer is held past the request timeout: the agent
    cannot tell this from a lost request, resends, and the server counts the body twice. The
    agent's ``possibly_duplicated_events`` says exactly how many events that was."""
    with FaultProxy(unleash.url) as proxy:
        proxy.script(stall_after(STALL_SECONDS))
        agent = unleash.agent("e2e-late-answer", url=proxy.url,  # no flusher: one flush
                              request_timeout=FAULTY_TIMEOUT)
        expected = workload.record(agent, 30)
        result = agent.flush()
        passages = list(proxy.passages)
        agent.close()
        statistics = agent.statistics()

    assert result.ok and result.retries == 1, result
    assert [p.upstream_status for p in passages] == [202, 202]  # stored twice
    twice = workload.stored_twice(expected)
    stored = unleash.admin.settled_totals("e2e-late-answer", workload.FLAGS, matches(twice))
    report("late answer (stall after 202)", expected, stored, statistics, proxy)
    assert stored == twice
    gauge_samples = len(expected["gauges"])  # a gauge sample counts as one event
    duplicated = workload.events(stored) - workload.events(expected)
    assert statistics["delivery"]["possibly_duplicated_events"] == duplicated + gauge_samples


def test_a_server_restart_mid_run_loses_nothing(unleash: RealServer) -> None:
    """Flag counts survive a restart in the database; impact metrics live in the server's
    memory, so after the restart it holds what was sent since. Either way nothing the agent
    recorded is missing: what it could not send while the server was down, it sent after."""
    # A server just started can take over a second to answer its first metrics POST; a
    # request timeout shorter than that makes the agent resend a body the server stored.
    agent = unleash.agent("e2e-restart", request_timeout=10).start()
    before = workload.record(agent, 30)
    assert agent.flush().ok
    # The server buffers flag counts ~5 s before writing them and does not write the buffer
    # on shutdown; a real deployment would lose them too. Wait until they are in the database.
    stored_before = unleash.admin.settled_totals("e2e-restart", workload.FLAGS,
                                                 matches(before))
    assert stored_before == before

    assert unleash.stack.server is not None
    unleash.stack.server.stop()
    during = workload.record(agent, 30, offset=30)
    down = agent.flush(timeout=3)
    assert down.kept_bodies and not down.delivered_bodies, down
    unleash.stack.server.start()
    after = workload.record(agent, 30, offset=60, expected=during)  # adds to `during`
    result = agent.close()
    statistics = agent.statistics()

    assert result.ok, result
    expected = {**after, "flags": workload.flags_of(before, after)}
    stored = unleash.admin.settled_totals("e2e-restart", workload.FLAGS, matches(expected))
    # For the report, count the impact metrics the server held before it forgot them too.
    forgotten = {**stored_before, "flags": {}}
    REPORT.append(ReportRow(
        "server restart mid-run",
        workload.events(before) + workload.events(after),
        workload.events(stored) + workload.events(forgotten),
        statistics["delivery"]["possibly_duplicated_events"], statistics["dropped"],
        {"server down": 1}))
    assert stored == expected
    assert statistics["dropped"] == {}
    assert statistics["delivery"]["failures"]
