"""The receiver's token guards every endpoint it serves, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket

import pytest
import requests

import impactagent
from impactagent.devtools.receiver import Receiver

TOKEN = "default:production.receiver-s3cr3t"
VIEWS = ("/", "/index.html", "/api/received", "/metrics")
POSTS = ("/api/client/metrics", "/api/client/register")
BODY = json.dumps({
    "appName": "shop", "instanceId": "i-1", "environment": "production",
    "bucket": {"start": "2026-01-01T00:00:00.000Z", "stop": "2026-01-01T00:01:00.000Z",
               "toggles": {"beta": {"yes": 2, "no": 0, "variants": {}}}},
}).encode()
REGISTER = json.dumps({"appName": "shop", "instanceId": "i-1", "sdkVersion": "x:1",
                       "strategies": [], "started": "2026-01-01T00:00:00.000Z",
                       "interval": 60000}).encode()


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False  # no proxy between the test and 127.0.0.1
        yield session


@pytest.fixture
def guarded():
    with Receiver(token=TOKEN) as receiver:
        yield receiver


def post(http, receiver, path, headers=None):
    body = REGISTER if path.endswith("register") else BODY
    return http.post(receiver.url + path, data=body, timeout=5,
                     headers={"Content-Type": "application/json", **(headers or {})})


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("authorization", [None, "default:production.wrong",
                                           f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN[:-1]])
def test_a_post_without_the_exact_token_gets_401(http, guarded, path, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = post(http, guarded, path, headers)
    assert answer.status_code == 401
    assert guarded.received.as_json()["flags"] == []  # nothing taken


@pytest.mark.parametrize("path", POSTS)
def test_a_post_with_the_token_is_taken(http, guarded, path):
    assert post(http, guarded, path, {"Authorization": TOKEN}).status_code == 202


def test_the_register_of_a_wrong_token_is_refused_and_an_agent_says_so(guarded):
    """The case of the issue: a registration with a wrong token used to get 202."""
    agent = impactagent.Agent("shop", url=guarded.api_url, api_key="default:production.nope",
                              flush_interval=0.2, handle_sigterm=False).start()
    try:
        assert guarded.wait_for(
            lambda r: agent.statistics()["delivery"]["registration"]["stopped_by_status"]
            == 401)
    finally:
        agent.close(timeout=1)


@pytest.mark.parametrize("path", VIEWS)
def test_a_view_without_the_token_gets_401_and_a_browser_is_asked_for_it(http, guarded, path):
    post(http, guarded, "/api/client/metrics", {"Authorization": TOKEN})
    for headers in ({}, {"Authorization": "default:production.wrong"},
                    {"Authorization": "Bearer wrong"}):
        answer = http.get(guarded.url + path, headers=headers, timeout=5)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
        assert b"beta" not in answer.content
    assert http.get(guarded.url + path + "?token=wrong", timeout=5).status_code == 401


@pytest.mark.parametrize("path", VIEWS)
@pytest.mark.parametrize("how", ["header", "bearer", "basic", "query"])
def test_a_view_with_the_token_is_served(http, guarded, path, how):
    post(http, guarded, "/api/client/metrics", {"Authorization": TOKEN})
    url, options = guarded.url + path, {}
    if how == "header":
        options["headers"] = {"Authorization": TOKEN}
    elif how == "bearer":
        options["headers"] = {"Authorization": f"Bearer {TOKEN}"}
    elif how == "basic":
        options["auth"] = ("anyone", TOKEN)  # what a browser sends after its prompt
    else:
        options["params"] = {"token": TOKEN}
    answer = http.get(url, timeout=5, **options)
    assert answer.status_code == 200
    assert b"beta" in answer.content


def test_an_unknown_path_is_guarded_too(http, guarded):
    assert http.get(guarded.url + "/nothing", timeout=5).status_code == 401
    assert http.get(guarded.url + "/nothing", headers={"Authorization": TOKEN},
                    timeout=5).status_code == 404
    assert http.post(guarded.url + "/api/nothing", data=b"{}", timeout=5).status_code == 401


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}",
                                           f"BEARER {TOKEN} ", TOKEN + " "])
def test_a_post_takes_the_token_after_bearer_as_the_server_does(http, guarded, path,
                                                                 authorization):
    """unleash-server strips a "Bearer " prefix (any case) and a trailing space: 202 there,
    where the receiver answered 401."""
    assert post(http, guarded, path, {"Authorization": authorization}).status_code == 202


def test_without_a_token_everything_is_open(http):
    with Receiver() as receiver:
        assert post(http, receiver, "/api/client/register").status_code == 202
        for path in VIEWS:
            assert http.get(receiver.url + path, timeout=5).status_code == 200


def test_a_token_in_the_query_is_not_logged(http, guarded, caplog):
    with caplog.at_level(logging.DEBUG, logger="impactagent.devtools.receiver"):
        assert http.get(guarded.url + "/", params={"token": TOKEN},
                        timeout=5).status_code == 200
        assert guarded.wait_for(lambda r: any("GET /" in m.getMessage()
                                              for m in caplog.records), 5)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "receiver-s3cr3t" not in logged and "token=[REDACTED]" in logged


@pytest.mark.parametrize("query", ["%74oken={}", "t%6Fken={}", "%2574oken={}", "TOKEN={}",
                                   "tok%65n={}", "a=1%26token%3D{}", "x=%253Ftoken%253D{}"])
def test_a_token_under_an_encoded_name_is_not_logged(guarded, caplog, query):
    """The server reads ``?%74oken=`` as ``token``: the log must not show it either, nor a
    token hidden in another parameter's encoded value."""
    secret = TOKEN.replace(":", "%3A")
    with caplog.at_level(logging.DEBUG, logger="impactagent.devtools.receiver"):
        answer = raw_request(guarded, f"GET /api/received?{query.format(secret)} HTTP/1.1")
        assert guarded.wait_for(lambda r: any("/api/received" in m.getMessage()
                                              for m in caplog.records), 5)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 401"))
    assert "receiver-s3cr3t" not in logged and "=[REDACTED]" in logged


def test_a_token_in_a_malformed_request_line_is_not_logged(guarded, caplog):
    """The error for a request line it cannot parse quotes the line: the token is cut there
    too."""
    with caplog.at_level(logging.DEBUG, logger="impactagent.devtools.receiver"):
        answer = raw_request(guarded, f"GET /?%74oken={TOKEN} HTTP/1.1 extra")
        assert guarded.wait_for(lambda r: len(caplog.records) > 0, 5)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert b"Bad request" in answer
    assert "receiver-s3cr3t" not in logged and "=[REDACTED]" in logged


def raw_request(receiver, line):
    """Send one request line as written (no client re-encodes it); the whole answer."""
    with socket.create_connection((receiver.host, receiver.port), timeout=5) as sock:
        sock.sendall(f"{line}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_an_agent_delivers_through_the_guard(guarded):
    agent = impactagent.Agent("shop", url=guarded.api_url, api_key=TOKEN,
                              flush_interval=0.2, handle_sigterm=False).start()
    agent.record_flag("beta", True)
    try:
        assert guarded.wait_for(lambda r: r.received.flags("shop") != {})
        assert guarded.wait_for(
            lambda r: agent.statistics()["delivery"]["registration"]["registered"])
    finally:
        agent.close(timeout=2)
    assert guarded.received.flags("shop")["beta"]["yes"] == 1
