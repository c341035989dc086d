"""The transport at its edges, against real servers on 127.0.0.1: redirects are never
followed, and no secret (the token, its secret part, custom header values, a password in a
URL) reaches a log, a statistic or a flush result, whatever the server echoes back."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
import requests

import impactagent
from impactagent.core.payload import Identity
from impactagent.delivery.redaction import Redactor
from impactagent.delivery.settings import SettingsError
from impactagent.delivery.transport import RETRY, HttpTransport
from tests import workload
from tests.loopback import LoopbackHandler, LoopbackServer, refused_url
from tests.scripted_server import Answer, ScriptedServer

TOKEN = "default:production.s3cr3t-t0ken-do-not-log"
SECRET = "s3cr3t-t0ken-do-not-log"
CUSTOM = {"X-Api-Key": "hush-custom-value", "X-Team": "checkout-team"}


class _Recorder(LoopbackHandler):
    """Answers every method with the owner's status and page; records what it was asked."""

    server_ref: PageServer

    def _any(self) -> None:
        body = self.read_body()
        with self.server_ref.lock:
            self.server_ref.requests.append((self.command, self.path, body))
        self.answer(self.server_ref.status, self.server_ref.page(self), content_type="text/html")

    do_GET = do_POST = do_PUT = _any


class PageServer(LoopbackServer):
    """A login page (200 to anything) that records every request it gets."""

    handler_class = _Recorder
    status = 200

    def __init__(self) -> None:
        self.requests: list = []
        super().__init__()

    def page(self, handler: LoopbackHandler) -> bytes:
        return b"<html><form>log in</form></html>"


class EchoServer(PageServer):
    """Answers ``status`` with every request header echoed back in common forms."""

    def page(self, handler: LoopbackHandler) -> bytes:
        headers = dict(handler.headers.items())
        raw = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return "\n".join([
            "bad request; you sent:", raw,
            json.dumps({"error": "bad", "headers": {k.lower(): v for k, v in headers.items()}}),
            json.dumps(list(sum(headers.items(), ()))),  # Node's rawHeaders
            "&".join(f"{k.lower()}={quote(v, safe='')}" for k, v in headers.items()),
            repr(headers),
        ]).encode()


@pytest.fixture
def metrics():
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def elsewhere():
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def login():
    with PageServer() as running:
        yield running


def make_agent(url, **kwargs):
    options = {"api_key": TOKEN, "flush_interval": 60, "request_timeout": 1}
    options.update(kwargs)
    return impactagent.Agent("shop", url=url, **options)


def _logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_to_a_login_page_is_not_delivered_and_the_data_is_kept(
        metrics, login, status, caplog):
    metrics.default = Answer(status, headers={"Location": login.url + "/login"})
    agent = make_agent(metrics.api_url)
    expected = workload.record(agent, 5)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        result = agent.flush(timeout=1)
    assert not result.ok and result.kept_bodies == 1
    assert login.requests == []  # not followed: the page got nothing, not even a GET
    statistics = agent.statistics()
    assert statistics["delivery"]["delivered_events"] == 0
    assert statistics["pending_events"] > 0
    # A redirect will not go away within the flush: one POST, no retries.
    assert statistics["delivery"]["failures"] == {str(status): 1}
    assert statistics["delivery"]["retries"] == 0
    # Fixed: everything that was kept arrives, exactly once.
    metrics.default = 202
    assert agent.close().ok
    assert metrics.totals() == expected


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_never_sends_the_body_to_the_other_origin(metrics, elsewhere, status):
    metrics.default = Answer(status, headers={"Location": elsewhere.api_url + "/client/metrics"})
    agent = make_agent(metrics.api_url)
    expected = workload.record(agent, 5)
    result = agent.flush(timeout=1)
    assert not result.ok and result.kept_bodies == 1
    assert elsewhere.requests == []
    metrics.default = 202
    assert agent.close().ok
    assert metrics.totals() == expected


def test_a_redirect_is_logged_once_with_its_location_redacted_and_how_to_fix_it(
        metrics, caplog):
    location = "https://admin:hunter2@127.0.0.1:9/api/client/metrics?sso_token=abc123xyz#top"
    metrics.default = Answer(301, headers={"Location": location})
    agent = make_agent(metrics.api_url)
    with caplog.at_level(logging.DEBUG, logger="impactagent"):
        for _ in range(3):
            workload.record(agent, 2)
            agent.flush(timeout=0.5)
    assert len(metrics.requests) >= 3
    redirects = [r for r in caplog.records if "redirect" in r.getMessage()
                 and r.name == "impactagent.delivery.transport"]
    assert len(redirects) == 1
    (record,) = redirects
    assert record.levelno >= logging.WARNING
    message = record.getMessage()
    assert "HTTP 301" in message and "https://127.0.0.1:9/api/client/metrics" in message
    assert "fix the agent's url" in message.lower()
    logged = _logged(caplog) + str(agent.statistics())
    for secret in ("hunter2", "admin", "abc123xyz"):
        assert secret not in logged
    agent.close(timeout=0.5)


def test_a_relative_location_suggests_the_url_to_use(metrics, caplog):
    metrics.default = Answer(308, headers={"Location": "/unleash/api/client/metrics"})
    agent = make_agent(metrics.api_url)
    agent.record_flag("beta", True)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        agent.flush(timeout=0.5)
    assert f"url='{metrics.url}/unleash/api'" in _logged(caplog)
    agent.close(timeout=0.5)


# -- secrets in what the server answers ----------------------------------------------------


@pytest.mark.parametrize("status", [400, 500, 502])
def test_an_answer_echoing_every_header_never_puts_a_secret_anywhere(status, caplog):
    secrets = (TOKEN, SECRET, quote(TOKEN, safe=""), *CUSTOM.values())
    with EchoServer() as echo:
        echo.status = status
        agent = make_agent(echo.api_url, headers=CUSTOM)
        with caplog.at_level(logging.DEBUG):
            results = []
            for _ in range(2):
                workload.record(agent, 3)
                results.append(agent.flush(timeout=1))
            results.append(agent.close(timeout=1))
        assert echo.requests, "the server was asked"
        # The echo really carries them: this test would see a leak.
        page = requests.post(echo.url, headers={"Authorization": TOKEN, **CUSTOM},
                             timeout=5).text
        assert all(secret in page for secret in secrets)
    shown = "\n".join([_logged(caplog), str(agent.statistics()), repr(results), repr(agent)])
    if status == 400:
        assert "rejected_by_server" in shown and "[REDACTED]" in shown  # the detail was logged
    for secret in secrets:
        assert secret not in shown


def test_outcome_details_are_redacted_at_the_source():
    with EchoServer() as echo:
        echo.status = 500
        transport = HttpTransport(echo.api_url + "/client/metrics", TOKEN, Identity.create(
            "shop", "production", None), flush_interval=60, headers=CUSTOM)
        outcome = transport.post(b"{}", timeout=2)
        transport.close()
    assert outcome.kind == RETRY and outcome.status == 500
    assert "authorization" in outcome.detail.lower()  # the echo is there...
    for secret in (TOKEN, SECRET, *CUSTOM.values()):
        assert secret not in outcome.detail  # ...without what it echoed
    assert len(outcome.detail) <= 503


def test_exception_texts_and_reprs_never_carry_a_password_or_the_token():
    # A proxy with a password that refuses connections: requests quotes it in its error.
    transport = HttpTransport(
        "http://user:url-pass-word@127.0.0.1:9/api/client/metrics", TOKEN,
        Identity.create("shop", "production", None), flush_interval=60,
        proxies={"http": "http://proxyuser:proxy-pass-word@127.0.0.1:9"})
    outcome = transport.post(b"{}", timeout=1)
    transport.close()
    assert outcome.kind == RETRY
    shown = f"{outcome!r} {transport!r} {transport} {transport.metrics_url}"
    for secret in ("url-pass-word", "proxy-pass-word", TOKEN, SECRET):
        assert secret not in shown


def test_a_netrc_entry_does_not_replace_the_token(metrics, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    agent = make_agent(metrics.api_url)
    workload.record(agent, 1)
    assert agent.close().ok
    assert [r.headers["authorization"] for r in metrics.requests] == [TOKEN]


def test_the_redactor_catches_an_echo_cut_short_and_encoded_forms():
    redact = Redactor([TOKEN, SECRET], ["Authorization", "X-Api-Key"])
    cut = f"Authorization: {TOKEN[:20]}"  # the server cut the echo: caught by its name
    assert TOKEN[:20] not in redact(cut)
    for form in (TOKEN, quote(TOKEN, safe=""), quote(TOKEN, safe="").lower(),
                 json.dumps(json.dumps(TOKEN)), f"Bearer {SECRET}"):
        assert SECRET not in redact(f"...{form}...")
    assert redact.cut("plain text", 500) == "plain text"


def test_a_huge_answer_cut_through_a_long_secret_does_not_show_its_start():
    secret = "".join(f"{i:05d}" for i in range(1000))  # 5,000 characters, say a JWT
    redact = Redactor([secret], ["X-Session"])
    # Only the first 64 kB are looked at; that window ends inside the 14th copy, and the
    # 13 copies before it shrink to "[REDACTED]" each, so its start would be shown.
    shown = redact.cut(secret * 14, 1000)
    assert "[REDACTED]" in shown and secret[:50] not in shown


def test_a_proxy_set_to_none_keeps_that_scheme_off_the_environments_proxy(
        metrics, monkeypatch):
    # requests reads {"http": None} as "no proxy for http, whatever HTTP_PROXY says".
    monkeypatch.setenv("HTTP_PROXY", refused_url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    through_the_proxy = make_agent(metrics.api_url)
    workload.record(through_the_proxy, 1)
    assert not through_the_proxy.flush(timeout=2).ok and not metrics.requests
    through_the_proxy.close(timeout=0.5)
    direct = make_agent(metrics.api_url, proxies={"http": None})
    workload.record(direct, 1)
    assert direct.close().ok and len(metrics.requests) == 1


def test_a_header_value_that_is_not_a_string_is_named_by_its_type_only():
    with pytest.raises(SettingsError, match=r"headers must map names \(str\) to values "
                                            r"\(str\), got a NoneType value") as caught:
        impactagent.Agent("shop", headers={"authorization": None})
    with pytest.raises(SettingsError, match=r"got a bytes value") as caught:
        impactagent.Agent("shop", proxies={"https": b"http://user:pw@proxy"})
    assert "pw" not in str(caught.value)
