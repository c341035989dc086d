"""What a real unleash-server answers to bad requests, and how the agent recovers from each.

The first half sends raw requests, so that ``docs/protocol.md`` is checked against the server
itself rather than against our reading of its source. The second half puts a full agent in
front of each answer and checks, through the server, that the agent does what the protocol
says: drop and count a 400 and go on; stop on 401 and keep the data (spooled, or counted at
close); split on 413 until every part fits.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Dict

import requests

from tests import workload
from tests.e2e.conftest import REPORT, RealServer, ReportRow
from tests.e2e.fault_proxy import CORRUPT, FaultProxy


def post(unleash: RealServer, body: Any, token: str | None, *, raw: bytes | None = None
         ) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        return session.post(f"{unleash.url}/api/client/metrics", headers=headers, timeout=10,
                            data=raw if raw is not None else json.dumps(body))


def valid_body(app_name: str, impact_metrics: Any = ()) -> Dict[str, Any]:
    stop = datetime.now(timezone.utc)
    return {
        "appName": app_name, "instanceId": "raw", "environment": "development",
        "bucket": {"start": (stop - timedelta(seconds=10)).isoformat(), "stop": stop.isoformat(),
                   "toggles": {workload.FLAGS[0]: {"yes": 3, "no": 1, "variants": {}}}},
        "impactMetrics": list(impact_metrics),
    }


COUNTER = {"name": "raw_total", "help": "Raw", "type": "counter",
           "samples": [{"labels": {"appName": "e2e-raw-mixed"}, "value": 5}]}


# -- raw answers ------------------------------------------------------------------------------


def test_the_server_answers_400_to_invalid_json_and_to_a_body_without_app_name(
        unleash: RealServer) -> None:
    assert post(unleash, None, unleash.backend_token, raw=b'{"appName": "x",').status_code == 400
    body = valid_body("e2e-raw-400")
    del body["appName"]
    assert post(unleash, body, unleash.backend_token).status_code == 400
    assert post(unleash, valid_body("e2e-raw-ok"), unleash.backend_token).status_code == 202


def test_the_server_answers_401_without_a_valid_token_and_403_to_a_frontend_token(
        unleash: RealServer) -> None:
    body = valid_body("e2e-raw-auth")
    assert post(unleash, body, None).status_code == 401
    assert post(unleash, body, "default:development.not-a-real-token").status_code == 401
    assert unleash.stack.server is not None
    assert post(unleash, body, unleash.stack.server.frontend_token).status_code == 403


def test_the_server_answers_413_past_its_100_kb_json_limit(unleash: RealServer) -> None:
    samples = [{"labels": {"appName": "e2e-raw-413", "user": f"user-{i:06d}"}, "value": 1}
               for i in range(2000)]
    body = valid_body("e2e-raw-413", [{**COUNTER, "samples": samples}])
    size = len(json.dumps(body))
    assert size > 100 * 1024
    assert post(unleash, body, unleash.backend_token).status_code == 413


def test_one_invalid_impact_metric_discards_the_whole_array_yet_the_server_says_202(
        unleash: RealServer) -> None:
    """The reason the agent validates every metric before it sends: the server's 202 does not
    mean the impact metrics were stored. Flag counts in the same body are stored."""
    invalid = {"name": "raw_broken", "help": "Broken", "type": "counter",
               "samples": [{"labels": None, "value": 1}]}
    body = valid_body("e2e-raw-mixed", [COUNTER, invalid])
    unleash.wait_until_flags_are_known()
    assert post(unleash, body, unleash.backend_token).status_code == 202
    stored = unleash.admin.settled_totals(
        "e2e-raw-mixed", workload.FLAGS, lambda s: bool(s["flags"]))
    assert stored["flags"] == {workload.FLAGS[0]: {"yes": 3, "no": 1, "variants": {}}}
    assert stored["counters"] == {}  # the valid counter went with the invalid one

    assert post(unleash, valid_body("e2e-raw-mixed", [COUNTER]),
                unleash.backend_token).status_code == 202
    stored = unleash.admin.totals("e2e-raw-mixed", workload.FLAGS)
    assert stored["counters"] == {
        ("raw_total", frozenset({"appName": "e2e-raw-mixed"}.items())): 5}


# -- the agent's recovery ------------------------------------------------------------------


def test_after_a_400_the_agent_drops_that_body_counts_it_and_delivers_the_next(
        unleash: RealServer) -> None:
    with FaultProxy(unleash.url) as proxy:
        proxy.script(CORRUPT)  # the body cut in half: invalid JSON, the server says 400
        agent = unleash.agent("e2e-400", url=proxy.url)
        rejected = workload.record(agent, 10)
        first = agent.flush()
        expected = workload.record(agent, 20, offset=10)
        second = agent.flush()
        agent.close()
        statistics = agent.statistics()

    assert [p.relayed_status for p in proxy.passages[:2]] == [400, 202]
    assert first.dropped_bodies == 1 and second.ok
    gauge_samples = len(rejected["gauges"])
    assert statistics["dropped"] == {
        "rejected_by_server": workload.events(rejected) + gauge_samples}
    stored = unleash.admin.settled_totals("e2e-400", workload.FLAGS,
                                          lambda s: s == expected)
    report_row("400 (corrupt body), then recovery", rejected, expected, stored, statistics)
    assert stored == expected


def test_after_a_401_a_spooled_agent_keeps_everything_for_an_agent_with_a_valid_token(
        unleash: RealServer, tmp_path: Any) -> None:
    spool = str(tmp_path / "spool")
    wrong = unleash.agent("e2e-401-spool", api_key="default:development.revoked",
                          spool_dir=spool).start()
    expected = workload.record(wrong, 30)
    wrong.close()
    assert wrong.statistics()["sending_stopped_by_status"] == 401
    assert wrong.statistics()["dropped"] == {}
    assert wrong.statistics()["spool"]["files"] >= 1

    fixed = unleash.agent("e2e-401-spool", spool_dir=spool)
    assert fixed.close().ok
    stored = unleash.admin.settled_totals("e2e-401-spool", workload.FLAGS,
                                          lambda s: s == expected)
    report_row("401, spooled, resent with a valid token", workload.empty(), expected, stored,
               fixed.statistics())
    assert stored == expected
    assert fixed.statistics()["spool"]["files"] == 0


def test_after_a_401_without_a_spool_the_close_counts_what_was_not_sent(
        unleash: RealServer) -> None:
    agent = unleash.agent("e2e-401", api_key=unleash.stack.server.frontend_token)  # type: ignore
    lost = workload.record(agent, 10)
    agent.close()
    statistics = agent.statistics()
    assert statistics["sending_stopped_by_status"] == 403
    gauge_samples = len(lost["gauges"])
    assert statistics["dropped"] == {
        "not_delivered_by_close": workload.events(lost) + gauge_samples}
    assert unleash.admin.totals("e2e-401", workload.FLAGS) == workload.empty()
    report_row("403 (frontend token), no spool", lost, workload.empty(),
               workload.empty(), statistics)


def test_a_413_is_split_until_every_part_fits_and_all_of_it_is_stored(
        unleash: RealServer) -> None:
    agent = unleash.agent("e2e-413", max_payload_bytes=1_000_000,
                          max_series_per_metric=5000)
    users = agent.counter("logins_total", "Logins", labels=("user",))
    expected = workload.empty()
    for i in range(2000):
        users.labels(user=f"user-{i:06d}").inc(i % 3 + 1)
        labels = {"appName": "e2e-413", "environment": agent.identity.environment,
                  "user": f"user-{i:06d}"}
        expected["counters"][("logins_total", frozenset(labels.items()))] = i % 3 + 1
    result = agent.flush()
    agent.close()
    statistics = agent.statistics()

    assert result.ok, result
    assert statistics["delivery"]["failures"] == {"413": 1}
    stored = unleash.admin.settled_totals("e2e-413", workload.FLAGS, lambda s: s == expected)
    report_row("413 (2000 series, 1 MB limit), split", workload.empty(), expected, stored,
               statistics)
    assert stored == expected


def report_row(scenario: str, dropped_part: Dict[str, Any], expected: Dict[str, Any],
               stored: Dict[str, Any], statistics: Dict[str, Any]) -> None:
    REPORT.append(ReportRow(
        scenario, workload.events(dropped_part) + workload.events(expected),
        workload.events(stored), statistics["delivery"]["possibly_duplicated_events"],
        statistics["dropped"]))
