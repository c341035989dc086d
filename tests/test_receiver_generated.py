"""The generated differential's requests against the receiver alone, over real HTTP: every
request of every category gets an answer (never a dropped connection or a 500), the answer
is the verdict ``check`` gives the same body, and every view still renders.

The e2e test (``tests/e2e/test_generated_differential.py``) sends the same requests to a
real server; this one runs without it, so a receiver that breaks on a generated request
fails here first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from impactagent.devtools.receiver import Receiver
from impactagent.server_rules.validation import check_request, outcome_of
from tests.e2e.generated_bodies import CATEGORIES, canary

TOKEN = "default:development.generated"
STATUS_OF = {"too large": 413, "rejected": 400}


@pytest.fixture(scope="module")
def receiver():
    with Receiver(token=TOKEN) as running:
        yield running


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_every_generated_request_gets_the_answer_check_gives(receiver, category):
    with requests.Session() as session:
        session.trust_env = False

        @settings(max_examples=25, derandomize=True, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.data())
        def one(data: Any) -> None:
            for sent in data.draw(CATEGORIES[category](f"fuzz-{category}")):
                answer = session.post(f"{receiver.url}/api/client/metrics", timeout=10,
                                      **sent.request(TOKEN))
                assert answer.status_code in (202, 400, 413, 415), sent.describe()
                if sent.variant == "plain":
                    raw = json.dumps(sent.document).encode()
                    expected = STATUS_OF.get(outcome_of(check_request(raw)), 202)
                    assert answer.status_code == expected, (sent.describe(), answer.text)
            session.post(f"{receiver.url}/api/client/metrics", timeout=10,
                         **canary(f"fuzz-{category}-canary").request(TOKEN))
            for view in ("/", "/api/received", "/metrics", "/api/impact"):
                shown = session.get(receiver.url + view, timeout=10,
                                    headers={"Authorization": f"Bearer {TOKEN}"})
                assert shown.status_code == 200, (view, shown.text[:300])

        one()
