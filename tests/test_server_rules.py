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

from impactagent.core.validation import check_request, outcome_of
from impactagent.devtools.receiver import Receiver
from tests.server_rules import APP, CASES, RAW_CASES, Case

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
