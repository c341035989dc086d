"""Registration: the agent POSTs {url}/client/register when its flusher starts, as an SDK does.

Against a real HTTP server on 127.0.0.1 (tests/scripted_server.py), with real threads and a
real fork(). The body's required fields are the ones unleash-server 8.2.0's
clientRegisterSchema requires (appName, started, interval); tests/e2e/test_registration.py
checks the same against the real server's admin API.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import datetime

import pytest

import impactagent
from impactagent.delivery.settings import Settings, SettingsError
from impactagent.delivery.transport_api import (
    DELIVERED,
    RETRY,
    UNAUTHORIZED,
    BaseTransport,
    Outcome,
)
from tests.loopback import wait_until
from tests.scripted_server import Answer, ScriptedServer, refused_url

TOKEN = "default:production.s3cr3t-t0ken-do-not-log"
#: Identification headers: a registration carries exactly those of a metrics POST.
IDENTIFYING = ("authorization", "content-type", "user-agent", "unleash-appname",
               "unleash-instanceid", "unleash-connection-id", "unleash-sdk",
               "unleash-interval", "unleash-client-spec", "x-team")


def make_agent(url, **kwargs):
    options = {"api_key": TOKEN, "flush_interval": 60, "request_timeout": 2,
               "handle_sigterm": False}
    options.update(kwargs)
    return impactagent.Agent("shop", "production", url=url, **options)


def registration(agent):
    return agent.statistics()["delivery"]["registration"]


def test_start_registers_once_with_the_body_an_sdk_sends(server):
    agent = make_agent(server.api_url, flush_interval=15, headers={"X-Team": "checkout"})
    before = time.time()
    agent.start()
    assert server.wait_for(lambda s: len(s.registrations) == 1)
    assert agent.close().ok
    (received,) = server.registrations
    body = json.loads(received.body)
    identity = agent.identity
    assert body == {
        "appName": "shop",
        "instanceId": identity.instance_id,
        "connectionId": identity.connection_id,
        "sdkVersion": f"impactagent:{impactagent.__version__}",
        "strategies": [],
        "started": body["started"],
        "interval": 15000,
        "environment": "production",
        "platformName": identity.platform_name,
        "platformVersion": identity.platform_version,
        "yggdrasilVersion": None,
        "specVersion": identity.spec_version,
    }
    assert body["started"].endswith("Z")  # ISO-8601 UTC, as the metrics bodies' dates
    started = datetime.fromisoformat(body["started"].replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= started <= time.time()
    uuid.UUID(body["connectionId"])
    assert registration(agent) == {"enabled": True, "registered": True, "attempts": 1,
                                   "failures": {}, "stopped_by_status": None,
                                   "last_error_detail": None}


def test_a_registration_has_the_headers_of_a_metrics_post(server):
    agent = make_agent(server.api_url, headers={"X-Team": "checkout"}).start()
    assert server.wait_for(lambda s: len(s.registrations) == 1)
    agent.record_flag("beta", True)
    assert agent.flush().delivered_bodies == 1
    agent.close()
    (metrics,) = server.requests
    (registered,) = server.registrations
    assert {h: registered.headers.get(h) for h in IDENTIFYING} == {
        h: metrics.headers.get(h) for h in IDENTIFYING}
    assert registered.headers["authorization"] == TOKEN


def test_start_does_not_wait_for_the_registration(server):
    """The registration is the flusher thread's: start() returns while the server holds
    the answer back."""
    server.script_register(Answer(202, delay=2))
    agent = make_agent(server.api_url, request_timeout=8)
    agent.start()
    assert registration(agent)["registered"] is False
    assert wait_until(lambda: registration(agent)["registered"])
    agent.close()


def test_a_failed_registration_is_tried_again_at_the_next_interval(server):
    server.script_register(503, Answer(drop=True), 202)
    agent = make_agent(server.api_url, flush_interval=0.2, request_timeout=1).start()
    assert server.wait_for(lambda s: any(r.accepted for r in s.registrations))
    # Several more intervals pass (empty windows counted): no registration after success.
    assert server.wait_for(lambda s: agent.statistics()["delivery"]["empty_windows"] >= 8)
    agent.close()
    assert [r.status for r in server.registrations] == [503, 0, 202]
    stats = registration(agent)
    assert stats["registered"] is True and stats["attempts"] == 3
    assert stats["failures"] == {"503": 1, "connection error": 1}
    # Registration is not a metrics POST: the metrics ledger does not count it.
    assert agent.statistics()["delivery"]["attempts"] == 0


@pytest.mark.parametrize("status", [401, 403, 400])
def test_a_refused_registration_is_not_tried_again(server, status, caplog):
    server.script_register(status)
    agent = make_agent(server.api_url, flush_interval=0.2)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        agent.start()
        assert server.wait_for(lambda s: agent.statistics()["delivery"]["empty_windows"] >= 5)
        agent.record_flag("beta", True)
        assert agent.flush().delivered_bodies == 1  # metrics go on
    agent.close()
    assert [r.status for r in server.registrations] == [status]
    stats = registration(agent)
    assert stats["registered"] is False and stats["stopped_by_status"] == status
    assert stats["failures"] == {str(status): 1}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"HTTP {status} to the registration" in logged
    assert "s3cr3t" not in logged


def test_a_refused_token_is_explained_once_when_the_registration_meets_it_first(
        server, caplog):
    # The same token goes with the registration and the metrics: a server that refuses it
    # refuses both. The first refusal explains at length; the other says "too", in one line.
    server.script_register(Answer(401))
    server.script(401)
    agent = make_agent(server.api_url)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        agent.start()
        assert server.wait_for(lambda s: registration(agent)["stopped_by_status"] == 401)
        agent.record_flag("beta", True)
        assert agent.flush().delivered_bodies == 0
        agent.close()
    refusals = [r for r in caplog.records if "answered HTTP 401" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.ERROR, logging.WARNING], refusals
    first, second = (r.getMessage() for r in refusals)
    assert "to the registration" in first
    assert "token" in first and "too" in second
    assert "s3cr3t" not in " ".join(r.getMessage() for r in caplog.records)


def test_metrics_refused_first_stop_the_registration_too(server, caplog):
    # One request at a time per agent: when the metrics meet the refusal first, the
    # registration is not attempted at all, so the refusal is explained once.
    server.script(401)
    agent = make_agent(server.api_url)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        agent.record_flag("beta", True)
        assert agent.flush().delivered_bodies == 0
        agent.start()
        agent.close()
    refusals = [r for r in caplog.records if "answered HTTP 401" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.ERROR], refusals
    assert "to the registration" not in refusals[0].getMessage()
    assert server.registrations == []
    assert "s3cr3t" not in " ".join(r.getMessage() for r in caplog.records)


def test_no_server_is_retried_and_never_raises():
    agent = make_agent(refused_url(), flush_interval=0.2).start()
    try:
        assert wait_until(lambda: registration(agent)["attempts"] >= 3)
    finally:
        agent.close(timeout=1)
    stats = registration(agent)
    assert stats["registered"] is False and stats["stopped_by_status"] is None
    assert stats["failures"]["connection refused"] >= 3
    assert stats["last_error_detail"] == "connection refused"


def test_a_redirect_is_a_failure_and_is_not_followed(server):
    with ScriptedServer() as elsewhere:
        server.script_register(Answer(307, headers={"Location": elsewhere.api_url
                                                    + "/client/register"}), 202)
        agent = make_agent(server.api_url, flush_interval=0.2).start()
        assert server.wait_for(lambda s: any(r.accepted for r in s.registrations))
        agent.close()
        assert elsewhere.registrations == [] and elsewhere.requests == []
    assert [r.status for r in server.registrations] == [307, 202]
    assert registration(agent)["failures"] == {"307": 1}


def test_register_false_sends_no_registration(server):
    agent = make_agent(server.api_url, flush_interval=0.2, register=False).start()
    assert server.wait_for(lambda s: agent.statistics()["delivery"]["empty_windows"] >= 3)
    agent.close()
    assert server.registrations == []
    assert registration(agent)["enabled"] is False


def test_an_agent_without_a_url_says_it_does_not_register():
    agent = impactagent.Agent("shop")
    assert registration(agent) == {"enabled": False, "registered": False, "attempts": 0,
                                   "failures": {}, "stopped_by_status": None,
                                   "last_error_detail": None}


def test_flush_by_hand_does_not_register(server):
    """Registration belongs to start(): an app that only calls flush() has no flusher."""
    agent = make_agent(server.api_url)
    agent.record_flag("beta", True)
    agent.flush()
    agent.close()
    assert server.registrations == []


@pytest.mark.parametrize("raw, expected", [("0", False), ("false", False), ("1", True),
                                           ("on", True)])
def test_impactagent_register_turns_it_off(raw, expected):
    settings = Settings.from_env({"UNLEASH_URL": "http://127.0.0.1:9/api",
                                  "UNLEASH_API_TOKEN": "t", "UNLEASH_APP_NAME": "shop",
                                  "IMPACTAGENT_REGISTER": raw})
    assert settings.register is expected
    assert impactagent.Agent.from_env({"UNLEASH_URL": "http://127.0.0.1:9/api",
                                       "UNLEASH_API_TOKEN": "t", "UNLEASH_APP_NAME": "shop",
                                       "IMPACTAGENT_REGISTER": raw}).settings.register is expected


def test_a_bad_register_setting_names_the_variable():
    with pytest.raises(SettingsError, match="IMPACTAGENT_REGISTER"):
        Settings.from_env({"UNLEASH_URL": "http://127.0.0.1:9/api", "UNLEASH_API_TOKEN": "t",
                           "UNLEASH_APP_NAME": "shop", "IMPACTAGENT_REGISTER": "maybe"})
    with pytest.raises(SettingsError, match="register must be True or False"):
        impactagent.Agent("shop", register="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_registers_again_with_its_own_connection_id(server):
    agent = make_agent(server.api_url, flush_interval=0.2).start()
    assert server.wait_for(lambda s: len(s.registrations) == 1)
    parent_connection = agent.identity.connection_id
    pid = os.fork()
    if pid == 0:  # the child: its flusher starts, and registers, on its own
        code = 1
        try:
            # (The server's threads live in the parent: the child asks its own agent.)
            ok = wait_until(lambda: registration(agent)["registered"])
            code = 0 if ok and registration(agent)["attempts"] == 1 else 2
            agent.close(timeout=2)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    agent.close()
    first, second = (json.loads(r.body) for r in server.registrations)
    assert first["connectionId"] == parent_connection
    assert second["connectionId"] != parent_connection
    assert second["instanceId"] == first["instanceId"]
    assert server.registrations[1].headers["unleash-connection-id"] == second["connectionId"]
    assert registration(agent)["attempts"] == 1  # the parent registered once


class _Registrar(BaseTransport):
    """A user's transport that registers too, and answers the registration with what
    ``answers`` holds, one at a time: the same protocol checks as its ``post`` gets."""

    register_url = "https://unleash.example/api/client/register"

    def __init__(self, *answers):
        self.answers = list(answers)

    def post(self, body, timeout):
        return Outcome(DELIVERED, 202)

    def register(self, body, timeout):
        return self.answers.pop(0)


def test_a_registration_answer_out_of_protocol_is_held_to_it_as_a_metrics_answer(caplog):
    # A detail that is not a str went into the redactor and raised out of attempt() (on
    # the flusher's thread, before its loop); a status that is not an int became the
    # statistics' stopped_by_status.
    sink = _Registrar(Outcome(RETRY, detail=b"bytes, not a str"),
                      Outcome(UNAUTHORIZED, status="401", retry_after=float("inf")))
    agent = impactagent.Agent("shop", transport=sink, api_key=TOKEN, handle_sigterm=False)
    registering = agent.lifecycle
    with caplog.at_level(logging.ERROR, logger="impactagent"):
        agent.start()
        try:
            assert wait_until(lambda: registering.registration is not None
                              and registering.registration.attempts >= 1)
            assert registering.registration.attempt(1.0).status == 401
        finally:
            agent.close(timeout=2)
    stats = registration(agent)
    assert stats["stopped_by_status"] == 401 and stats["registered"] is False
    assert stats["failures"] == {"error": 1, "401": 1}
    assert "returned an Outcome whose status (NoneType) or detail (bytes)" in caplog.text
