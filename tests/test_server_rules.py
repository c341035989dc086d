"""The receiver and ``check`` answer and store as unleash-server 8.2.0 does, case by case:
each case in ``tests.server_rules`` is a body on which they once disagreed with the server
(found by reading its code and by the e2e differential test), with what the server did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from impactagent.devtools.receiver import Receiver
from impactagent.server_rules.jsvalues import joi_number, js_string, json_document, sanitize
from impactagent.server_rules.validation import check_body, check_request, outcome_of
from tests.server_rules import (
    APP,
    CANARY,
    CASES,
    FLAG,
    RAW_CASES,
    TRANSPORT_CASES,
    WINDOW_CASES,
    Case,
    labels,
    transport_request,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "default:development.secret"


def post(receiver: Receiver, raw: bytes) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(receiver.api_url + "/client/metrics", data=raw, timeout=10,
                            headers={"Authorization": TOKEN,
                                     "Content-Type": "application/json"})


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_receiver_answers_and_stores_as_the_server_does(name: str) -> None:
    case: Case = CASES[name]
    raw = json.dumps(case.body).encode()
    with Receiver() as receiver:
        assert post(receiver, raw).status_code == case.status, receiver.problems()
        totals = receiver.totals(APP)
        everything = receiver.received.metrics()
    assert totals == {"flags": case.flags, "counters": case.counters, "gauges": case.gauges,
                      "histograms": case.histograms}, receiver.problems()
    for kind, series in case.unattributed.items():
        assert {k: v for k, v in everything[kind].items() if not dict(k[1])} == series


@pytest.mark.parametrize("name", sorted(CASES))
def test_strict_mode_refuses_only_what_the_server_would_not_store_whole(name: str) -> None:
    case = CASES[name]
    with Receiver(strict=True) as receiver:
        assert post(receiver, json.dumps(case.body).encode()).status_code == \
            case.strict_status, receiver.problems()


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_raw_bodies_get_the_servers_status(name: str) -> None:
    raw, status = RAW_CASES[name]
    with Receiver() as receiver:
        assert post(receiver, raw).status_code == status


def test_the_json_limit_is_102400_bytes_for_the_receiver_and_check(tmp_path: Path) -> None:
    """express.json's 100kb is 102400 raw bytes: one more is 413, on the server (measured),
    the receiver and check alike."""
    def body_of(size: int) -> bytes:
        raw = json.dumps({"appName": APP, "bucket": None, "pad": ""}).encode()
        return raw.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(raw)) + b'"')

    at, over = body_of(102400), body_of(102401)
    assert (len(at), len(over)) == (102400, 102401)
    with Receiver() as receiver:
        assert post(receiver, at).status_code == 202
        assert post(receiver, over).status_code == 413
    assert outcome_of(check_request(at)) == "stored"
    assert outcome_of(check_request(over)) == "too large"
    big = tmp_path / "big.json"
    big.write_bytes(over)
    run = subprocess.run([sys.executable, "-m", "impactagent", "check", str(big)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 1
    assert run.stdout.splitlines()[0] == f"{big}: a real server answers 413 and stores nothing"


def test_check_says_a_null_bucket_is_stored_and_notes_older_servers(tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    path.write_text(json.dumps(CASES["empty_labels_are_a_series_of_no_app"].body))
    run = subprocess.run([sys.executable, "-m", "impactagent", "check", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stdout
    lines = run.stdout.splitlines()
    assert lines[0] == f"{path}: a real server stores all of it"
    assert any("servers before 8.0 answer 400" in line for line in lines)
    assert any("no appName label" in line for line in lines)


@pytest.mark.parametrize("name", sorted(TRANSPORT_CASES))
def test_the_receiver_reads_headers_and_encodings_as_the_server_does(name: str) -> None:
    headers, raw, status = transport_request(name, TOKEN)
    with Receiver() as receiver, requests.Session() as session:
        session.trust_env = False
        # requests adds a form Content-Type to bytes only when asked; none is added here.
        answer = session.post(receiver.api_url + "/client/metrics", data=raw, timeout=10,
                              headers=headers)
        stored = receiver.totals(APP)["counters"]
    assert answer.status_code == status, answer.text
    expected = {("rules_transport_total", labels()): 1} if status == 202 else {}
    assert stored == expected


@pytest.mark.parametrize("name", sorted(WINDOW_CASES))
def test_a_write_window_is_stored_or_lost_as_the_server_does(name: str) -> None:
    """Every body of the window is answered 202; once written, each app holds what the
    server holds, and a failed write is shown in /api/received and on the page."""
    case = WINDOW_CASES[name]
    with Receiver() as receiver:
        for body in case.bodies:
            assert post(receiver, json.dumps(body).encode()).status_code == 202
        stored = {app: receiver.totals(app)["flags"] for app in case.stored}
        with requests.Session() as session:
            session.trust_env = False
            shown = session.get(receiver.url + "/api/received", timeout=10).json()
            page = session.get(receiver.url + "/", timeout=10).text
    assert stored == case.stored
    assert bool(shown["failed_writes"]) == case.fails, shown["failed_writes"]
    assert ("lost every app" in page) == case.fails
    if case.fails:
        assert CANARY in shown["failed_writes"][0]["apps"]


@pytest.mark.parametrize("name", sorted(n for n, case in WINDOW_CASES.items() if case.fails))
def test_strict_mode_refuses_the_body_that_would_fail_the_window(name: str) -> None:
    """Alone or with the bodies before it in the window: 400, nothing of it stored, and the
    window the others wrote is whole."""
    case = WINDOW_CASES[name]
    with Receiver(strict=True) as receiver:
        answers = [post(receiver, json.dumps(body).encode()) for body in case.bodies]
        assert receiver.received.failures() == []
        canary = receiver.totals(CANARY)["flags"]
    assert 400 in [a.status_code for a in answers], [a.text for a in answers]
    assert canary == {FLAG: {"yes": 1, "no": 1, "variants": {"blue": 1}}}


@pytest.mark.parametrize("stop, hour", [
    ("0001-01-01T00:59:59Z", "0001-01-01T00:00:00Z"),
    ("9999-12-31T23:30:00+01:00", "9999-12-31T22:00:00Z"),
    (253402300800000, "+010000-01-01T00:00:00Z"),
    (8_640_000_000_000_000, "+275760-09-13T00:00:00Z"),
])
def test_far_dates_are_filed_under_their_own_hour(stop: object, hour: str) -> None:
    """Year 1 and years past 9999 were filed under the hour of arrival."""
    body = {"appName": APP, "bucket": {"start": stop, "stop": stop,
                                       "toggles": {FLAG: {"yes": 1, "no": 0}}}}
    with Receiver() as receiver:
        assert post(receiver, json.dumps(body).encode()).status_code == 202
        assert [row["hour"] for row in receiver.received.as_json()["flags"]] == [hour]


POISONED_BODIES = {
    "long_app_name": WINDOW_CASES["long_app_name_loses_every_apps_counts"].bodies[0],
    "nul_in_app_name": WINDOW_CASES["nul_in_app_name_loses_every_apps_counts"].bodies[0],
    "stop_before_year_one": WINDOW_CASES["stop_before_year_one_loses_every_apps_counts"
                                         ].bodies[0],
    "variant_over_int32": WINDOW_CASES["variant_over_int32_loses_every_apps_variants"
                                       ].bodies[0],
    # The server stores the label; its impact-metrics exposition then fails for every app.
    "label_named___name__": {"appName": APP, "impactMetrics": [
        {"name": "rules_poison_total", "help": "h", "type": "counter",
         "samples": [{"labels": {"__name__": "x"}, "value": 1}]}]},
    "label_named___": {"appName": APP, "impactMetrics": [
        {"name": "rules_poison_total", "help": "h", "type": "counter",
         "samples": [{"labels": {"--": "x"}, "value": 1}]}]},
}


def test_check_names_a_body_that_makes_the_server_lose_other_apps_data(tmp_path: Path
                                                                      ) -> None:
    """The worst verdict, above 413 and 400: the server answers 202 and the body costs every
    app its counts. Each file gets its verdict; exit 1."""
    files = []
    for name, body in sorted(POISONED_BODIES.items()):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        files.append(str(path))
    run = subprocess.run([sys.executable, "-m", "impactagent", "check", *files],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 1, run.stderr
    verdicts = [line for line in run.stdout.splitlines() if not line.startswith(" ")]
    assert verdicts == [f"{path}: a real server answers 202, then loses other apps' data "
                        "too" for path in files]


def test_the_receiver_lists_a_label_that_breaks_the_servers_exposition() -> None:
    with Receiver() as receiver:
        raw = json.dumps(POISONED_BODIES["label_named___name__"]).encode()
        assert post(receiver, raw).status_code == 202
        failures = receiver.received.as_json()["failed_writes"]
    assert len(failures) == 1 and "exposition" in failures[0]["reasons"][0]


def test_an_integer_app_name_past_2_53_is_the_double_javascript_reads() -> None:
    """JSON.parse reads 9007199254740993 as 9007199254740992, and that is the app's name."""
    raw = b'{"appName": 9007199254740993, "bucket": {"start": 0, "stop": 0, "toggles": ' \
          b'{"rules-flag": {"yes": 1, "no": 0}}}}'
    with Receiver() as receiver:
        assert post(receiver, raw).status_code == 202
        assert [row["appName"] for row in receiver.received.as_json()["flags"]] == \
            ["9007199254740992"]


def test_values_are_written_and_read_as_the_servers_javascript_does() -> None:
    assert [js_string(v) for v in (1e-7, 2.5, 3.0, True, 2**53 + 1)] == [
        "1e-7", "2.5", "3", "true", "9007199254740992"]
    assert [joi_number(v) for v in (" 1e3 ", "0x10", True)] == [1000.0, None, None]
    assert sanitize("émoji😀-x") == "_moji___x"
    assert json_document('{"a": [1, 2.5, "\\ud800"]}') == {"a": [1, 2.5, "\ufffd"]}
    assert [problem.message for problem in check_body(b'{"appName": "s", "x": NaN}')] == [
        "not JSON: NaN is not a JSON value (servers answer 400)"]
