"""A transport supplied by the user (``Agent(..., transport=obj)``) instead of HTTP.

Each transport here is a real object of the kind an app or a test would write: bodies go
to a list, and the agent's real delivery (retries, merge-back, close, fork) runs on it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import List, Tuple

import pytest

import impactagent
from impactagent.delivery.transport import (
    DELIVERED,
    REJECTED,
    RETRY,
    BaseTransport,
    HttpTransport,
    Identity,
    Outcome,
)


class ToList:
    """The least a transport can be: ``post``, nothing else (not even a base class)."""

    def __init__(self) -> None:
        self.bodies: List[bytes] = []
        self.lock = threading.Lock()

    def post(self, body: bytes, timeout: float) -> Outcome:
        with self.lock:
            self.bodies.append(body)
        return Outcome(DELIVERED, 200)

    def counter_total(self, name: str) -> int:
        total = 0
        for body in self.bodies:
            for metric in json.loads(body).get("impactMetrics", []):
                if metric["name"] == name:
                    total += sum(sample["value"] for sample in metric["samples"])
        return total


def test_a_user_transport_gets_every_window_exactly_once():
    sink = ToList()
    agent = impactagent.Agent("shop", transport=sink, flush_interval=0.01).start()
    jobs = agent.counter("jobs_total", "Jobs")
    for i in range(2000):  # recorded while the flusher sends windows on its own
        jobs.inc()
        if i % 500 == 0:
            agent.flush(timeout=5)
    assert agent.close(timeout=5).ok
    assert len(sink.bodies) >= 2  # several windows, not one
    assert sink.counter_total("jobs_total") == 2000  # each counted once, none lost
    documents = [json.loads(body) for body in sink.bodies]
    assert {d["connectionId"] for d in documents} == {agent.identity.connection_id}
    assert agent.statistics()["dropped"] == {}
    # It has no register(): the agent does not try to register through it.
    assert agent.statistics()["delivery"]["registration"]["enabled"] is False


class Flaky(ToList):
    """Down (RETRY, a Retry-After of 0) until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.refused = 0

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.down:
            self.refused += 1
            return Outcome(RETRY, 503, retry_after=0.0, detail="down for a moment")
        return super().post(body, timeout)


def test_a_retryable_outcome_merges_the_window_back_and_a_later_flush_delivers_it():
    flaky = Flaky()
    agent = impactagent.Agent("shop", transport=flaky)
    agent.counter("jobs_total", "Jobs").inc(42)
    agent.record_flag("new-checkout", True)
    failed = agent.flush(timeout=0.3)
    assert not failed.ok and flaky.refused >= 1 and flaky.bodies == []
    assert agent.statistics()["pending_events"] == 43  # merged back, nothing dropped
    flaky.down = False
    assert agent.flush(timeout=5).ok
    assert flaky.counter_total("jobs_total") == 42
    assert json.loads(flaky.bodies[0])["bucket"]["toggles"]["new-checkout"]["yes"] == 1
    assert len(flaky.bodies) == 1 and agent.statistics()["pending_events"] == 0
    assert agent.statistics()["dropped"] == {}


class Named(BaseTransport):
    """A subclass of the base: it rejects every body, and is named in the drop's detail."""

    def post(self, body: bytes, timeout: float) -> Outcome:
        return Outcome(REJECTED, 400, detail="no thanks")


def test_a_rejected_body_is_counted_with_the_transport_named():
    agent = impactagent.Agent("shop", transport=Named())
    agent.counter("jobs_total", "Jobs").inc(3)
    agent.flush(timeout=2)
    assert agent.statistics()["dropped"] == {"rejected_by_server": 3}
    assert Named().metrics_url == "Named" and "Named" in repr(Named())


class ForkAware(ToList):
    """Remembers each reset: the pid it ran in, and the identity it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.resets: List[Tuple[int, str]] = []
        self.closed = 0

    def reset_after_fork(self, identity: Identity) -> None:
        self.resets.append((os.getpid(), identity.connection_id))

    def close(self) -> None:
        self.closed += 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_resets_the_user_transport_in_the_child():
    sink = ForkAware()
    agent = impactagent.Agent("shop", transport=sink)
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(100)  # the parent's
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: say what the transport saw, then leave
        code = 1
        try:
            os.close(read_end)
            jobs.inc(7)
            ok = agent.close(timeout=5).ok
            report = {"resets": sink.resets, "connection": agent.identity.connection_id,
                      "ok": ok, "jobs": sink.counter_total("jobs_total"),
                      "closed": sink.closed}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["resets"] == [[pid, report["connection"]]]  # once, in the child
    assert report["connection"] != agent.identity.connection_id
    assert report["ok"] and report["jobs"] == 7 and report["closed"] == 1  # only its own
    assert sink.resets == []  # the parent's transport was not reset
    assert agent.close(timeout=5).ok and sink.counter_total("jobs_total") == 100


@pytest.mark.parametrize("wrong", [object(), "http://example.com", type("NoPost", (), {
    "post": "not a method"})()])
def test_a_transport_without_post_is_refused_at_construction(wrong):
    with pytest.raises(TypeError, match=r"transport must have a method post\(body: bytes, "
                                        r"timeout: float\) -> Outcome"):
        impactagent.Agent("shop", transport=wrong)


def test_the_default_transport_is_http_and_satisfies_the_protocol():
    agent = impactagent.Agent("shop", url="http://127.0.0.1:9/api", api_key="t")
    transport = agent.lifecycle.delivery.transport
    assert isinstance(transport, HttpTransport)
    assert isinstance(transport, impactagent.delivery.transport.Transport)
    assert agent.statistics()["delivery"]["registration"]["enabled"] is True


class Registering(ForkAware):
    """Every hook, registration included: used as it is, and the agent registers through it."""

    metrics_url = "registering-transport"
    register_url = "registering-transport/register"

    def __init__(self) -> None:
        super().__init__()
        self.registrations: List[bytes] = []

    def register(self, body: bytes, timeout: float) -> Outcome:
        self.registrations.append(body)
        return Outcome(DELIVERED, 202)


def test_a_user_transport_with_register_gets_the_registration():
    sink = Registering()
    agent = impactagent.Agent("shop", transport=sink, flush_interval=60).start()
    assert agent.lifecycle.delivery.transport is sink  # complete: not wrapped
    for _ in range(500):  # the flusher registers first thing (bounded wait)
        if sink.registrations:
            break
        threading.Event().wait(0.01)
    agent.counter("jobs_total", "Jobs").inc(2)
    assert agent.close(timeout=5).ok
    assert [json.loads(b)["connectionId"] for b in sink.registrations] == [
        agent.identity.connection_id]
    assert agent.statistics()["delivery"]["registration"]["registered"] is True
    assert sink.counter_total("jobs_total") == 2 and sink.closed == 1


TOKEN = "default:production.a1b2c3d4e5f6secret"


class Leaky(ToList, BaseTransport):
    """A transport that puts its credentials in everything it says: an exception that
    quotes its headers, an outcome whose detail echoes them, an answer that is not an
    Outcome, and a registration that fails the same ways. What it says is not the agent's:
    the token must not reach a log line or a statistic in any of these forms."""

    register_url = "https://unleash.example/api/client/register"

    def __init__(self, headers: dict) -> None:
        super().__init__()
        self.headers = headers
        self.posts = 0
        self.registrations = 0

    def post(self, body: bytes, timeout: float) -> Outcome:
        self.posts += 1
        if self.posts == 1:
            raise RuntimeError(f"could not send with headers {self.headers}")
        if self.posts == 2:
            return f"garbage {self.headers}"  # type: ignore[return-value]
        if self.posts == 3:
            return Outcome(RETRY, 503, retry_after=0.0,
                           detail=f"proxy said: bad Authorization {self.headers['Authorization']}")
        if self.posts == 4:
            return Outcome(REJECTED, 400, detail=f"echo {json.dumps(self.headers)}")
        return super().post(body, timeout)

    def register(self, body: bytes, timeout: float) -> Outcome:
        self.registrations += 1
        if self.registrations == 1:
            raise RuntimeError(f"could not register with {self.headers}")
        if self.registrations == 2:
            return f"garbage {self.headers}"  # type: ignore[return-value]
        return Outcome(RETRY, 503, detail=f"said {self.headers['X-Secret']}")

    def reset_after_fork(self, identity: Identity) -> None:
        raise RuntimeError(f"cannot reconnect with {self.headers}")

    def close(self) -> None:
        raise RuntimeError(f"cannot close the session of {self.headers}")



def test_a_user_transport_that_echoes_the_token_never_gets_it_logged_or_counted(caplog):
    headers = {"Authorization": TOKEN, "X-Secret": "another-secret-value"}
    sink = Leaky(headers)
    agent = impactagent.Agent("shop", transport=sink, api_key=TOKEN, flush_interval=60,
                              headers={"X-Secret": "another-secret-value"})
    jobs = agent.counter("jobs_total", "Jobs")
    with caplog.at_level(logging.DEBUG, logger="impactagent"):
        agent.start()
        for _ in range(6):  # one failure of each kind, then delivered
            jobs.inc()
            agent.flush(timeout=5)
            agent.lifecycle.registration.attempt(1.0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child's reset_after_fork raises: what does the child log?
            try:
                os.write(write_end, "\n".join(r.getMessage() for r in caplog.records
                                              if "forked child" in r.getMessage()).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            in_child = pipe.read().decode()
        os.waitpid(pid, 0)
        assert agent.close(timeout=5).ok
    assert "reset_after_fork() failed in a forked child (RuntimeError: cannot reconnect" in (
        in_child)
    assert "the transport's close() failed (RuntimeError: cannot close the session" in (
        caplog.text)
    said = in_child + caplog.text + json.dumps(agent.statistics()) + "".join(
        str(record.args) + str(record.exc_info) for record in caplog.records)
    # What it said was told (so a user can debug their transport), with the secrets out.
    assert "the transport Leaky raised RuntimeError: could not send with headers" in caplog.text
    assert "the transport Leaky raised RuntimeError: could not register" in caplog.text
    assert "not an Outcome" in caplog.text and "[REDACTED]" in caplog.text
    for secret in (TOKEN, "a1b2c3d4e5f6secret", "another-secret-value"):
        assert secret not in said
    assert sink.posts >= 5 and sink.registrations >= 3


class OddKind(ToList):
    """Answers an Outcome whose kind is no str (a list: unhashable), then a good one."""

    def __init__(self) -> None:
        super().__init__()
        self.odd = True

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.odd:
            return Outcome(["delivered"], 200)  # type: ignore[arg-type]
        return super().post(body, timeout)


def test_an_outcome_whose_kind_is_not_a_str_is_a_retry_not_an_exception(caplog):
    # Its kind was looked up in a frozenset: TypeError (unhashable), raised out of flush().
    odd = OddKind()
    agent = impactagent.Agent("shop", transport=odd, handle_sigterm=False)
    agent.counter("jobs_total", "Jobs").inc(5)
    with caplog.at_level(logging.ERROR, logger="impactagent"):
        assert agent.flush(timeout=0.3).kept_bodies == 1
    assert "the transport OddKind returned Outcome(kind=['delivered']" in caplog.text
    assert agent.statistics()["pending_events"] == 5
    odd.odd = False
    assert agent.flush(timeout=5).ok and odd.counter_total("jobs_total") == 5
