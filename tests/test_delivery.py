"""Delivery against a real HTTP server on 127.0.0.1: retries, statuses, deadlines, logs.

Nothing here mocks ``requests`` or impactagent: the agent talks HTTP to a scripted server
and the tests compare what the server accepted with what was recorded, count for count.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

import impactagent
from tests import workload
from tests.scripted_server import Answer, ScriptedServer, refused_url
from tests.workload import flush_until_delivered

TOKEN = "default:production.s3cr3t-t0ken-do-not-log"


def make_agent(url, **kwargs):
    options = {"api_key": TOKEN, "flush_interval": 60, "request_timeout": 2}
    options.update(kwargs)
    return impactagent.Agent("shop", url=url, **options)




# -- headers and bodies --------------------------------------------------------------------


def test_headers_and_body_follow_the_protocol(server):
    from tests.schema import validate_client_metrics

    agent = make_agent(server.api_url, flush_interval=15,
                       headers={"unleash-appname": "spoofed", "X-Team": "checkout",
                                "UNLEASH-CONNECTION-ID": "spoofed"})
    workload.record(agent, 10)
    assert agent.flush().ok
    (request,) = server.requests
    headers = request.headers
    assert request.method == "POST" and request.path == "/api/client/metrics"
    assert headers["authorization"] == TOKEN
    assert headers["content-type"] == "application/json"
    assert headers["unleash-appname"] == "shop"
    assert headers["unleash-instanceid"] == agent.identity.instance_id
    assert str(uuid.UUID(headers["unleash-connection-id"])) == agent.identity.connection_id
    assert headers["unleash-sdk"] == f"impactagent:{impactagent.__version__}"
    assert headers["unleash-interval"] == "15000"
    assert headers["unleash-client-spec"] == agent.identity.spec_version
    assert headers["x-team"] == "checkout"
    document = server.accepted_documents()[0]
    validate_client_metrics(document)
    assert document["environment"] == "production"  # from the token
    assert document["connectionId"] == agent.identity.connection_id


def test_an_empty_window_is_counted_not_sent(server):
    agent = make_agent(server.api_url)
    result = agent.flush()
    assert result.ok and result.empty_window and result.delivered_bodies == 0
    assert server.requests == []  # liveness is what registration is for
    assert agent.statistics()["delivery"]["empty_windows"] == 1
    assert agent.statistics()["delivery"]["attempts"] == 0


def test_a_flag_counted_zero_times_and_an_untouched_metric_make_no_body(server):
    agent = make_agent(server.api_url)
    agent.counter("jobs_total", "Jobs", labels=("queue",)).labels(queue="a")  # never inc()
    agent.histogram("job_seconds", "Job time")  # defined, never observed
    assert agent.flush().empty_window
    assert server.requests == []


def test_the_body_after_an_empty_window_starts_where_that_window_ended(server):
    """Nothing is carried over: the next bucket covers exactly the time its counts were
    recorded in (the server files them under bucket.stop, Edge under bucket.start)."""
    agent = make_agent(server.api_url)
    before = time.time()
    assert agent.flush().empty_window
    after = time.time()
    agent.record_flag("beta", True)
    result = agent.flush()
    assert result.ok and not result.empty_window and result.delivered_bodies == 1
    (document,) = server.accepted_documents()
    start = _epoch(document["bucket"]["start"])
    assert before - 0.001 <= start <= after + 0.001
    assert document["bucket"]["toggles"] == {"beta": {"yes": 1, "no": 0, "variants": {}}}
    assert agent.statistics()["delivery"]["empty_windows"] == 1


def test_an_impact_metric_alone_is_sent(server):
    agent = make_agent(server.api_url)
    agent.gauge("queue_depth", "Depth").set(3)
    result = agent.flush()
    assert result.ok and not result.empty_window
    (document,) = server.accepted_documents()
    assert document["bucket"]["toggles"] == {}
    assert document["impactMetrics"][0]["samples"][0]["value"] == 3


def _epoch(iso):
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- exact totals through failures ---------------------------------------------------------


def test_exact_totals_through_500s_429s_and_resets(server):
    server.script(500, 503, Answer(429, headers={"Retry-After": "0.2"}), Answer(drop=True),
                  502, Answer(drop=True), 504)
    agent = make_agent(server.api_url, request_timeout=0.5)
    expected = None
    for round_ in range(8):
        expected = workload.record(agent, 50, offset=round_ * 50, expected=expected)
        agent.flush(timeout=3)
    flush_until_delivered(agent)
    assert workload.delivered(server.totals()) == expected
    stats = agent.statistics()
    assert stats["delivery"]["failures"] == {"500": 1, "503": 1, "429": 1, "502": 1,
                                             "504": 1, "connection error": 2}
    # Each failure is retried inside its flush unless the jittered wait would pass the
    # deadline; then the next flush sends it. Either way no more retries than failures.
    assert 1 <= stats["delivery"]["retries"] <= 7
    assert stats["dropped"] == {}
    assert stats["pending_events"] == 0


def _events(documents):
    return sum(impactagent.count_events(d) for d in documents)


def test_a_stall_after_the_server_stored_a_body_is_the_measured_double_count(server):
    """The server stores the body, then stalls past the client's timeout: the client
    cannot know, keeps the data, and resends. The agent counts exactly those events."""
    server.script(Answer(202, delay_after=2), Answer(202, delay=2))
    agent = make_agent(server.api_url, request_timeout=0.5)
    workload.record(agent, 40)
    recorded = agent.statistics()["pending_events"]
    flush_until_delivered(agent)
    at_risk = agent.statistics()["delivery"]["possibly_duplicated_events"]
    assert at_risk == 2 * recorded  # two read timeouts, each on a body with everything
    server.wait_for(lambda s: len(s.accepted_documents()) == 3, 5)
    # The body stored before the stall and the one stored late were both counted.
    assert _events(server.accepted_documents()) == recorded + at_risk
    assert agent.statistics()["delivery"]["failures"] == {"read timeout": 2}


def test_exact_totals_when_the_server_is_down_and_comes_back(server):
    agent = make_agent(server.api_url, request_timeout=0.5)
    expected = workload.record(agent, 100)
    assert agent.flush(timeout=3).ok
    server.stop()
    for round_ in range(3):
        expected = workload.record(agent, 100, offset=100 + round_ * 100, expected=expected)
        result = agent.flush(timeout=1)
        assert not result.ok and result.kept_bodies == 1
    failures = agent.statistics()["delivery"]["failures"]
    assert failures.get("connection refused", 0) >= 3
    assert agent.statistics()["pending_events"] > 0
    server.restart()
    flush_until_delivered(agent)
    assert workload.delivered(server.totals()) == expected
    assert agent.statistics()["delivery"]["possibly_duplicated_events"] == 0


def test_refused_connections_keep_everything(server):
    agent = make_agent(refused_url(), request_timeout=0.5)
    workload.record(agent, 30)
    before = agent.statistics()["pending_events"]
    result = agent.flush(timeout=1.5)
    assert result.kept_bodies == 1 and result.delivered_bodies == 0
    assert agent.statistics()["pending_events"] == before


def test_retry_after_is_honoured_within_a_flush(server):
    server.script(Answer(429, headers={"Retry-After": "1"}))
    agent = make_agent(server.api_url)
    workload.record(agent, 5)
    started = time.monotonic()
    assert agent.flush(timeout=5).ok
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in server.requests] == [429, 202]


def test_retry_after_longer_than_the_deadline_keeps_the_data(server):
    server.script(Answer(503, headers={"Retry-After": "30"}))
    agent = make_agent(server.api_url)
    expected = workload.record(agent, 5)
    started = time.monotonic()
    result = agent.flush(timeout=2)
    assert time.monotonic() - started < 2.5
    assert result.kept_bodies == 1
    assert 28 < agent.lifecycle.delivery.not_before - time.monotonic() <= 30
    flush_until_delivered(agent)
    assert workload.delivered(server.totals()) == expected


# -- statuses that end a body's journey ----------------------------------------------------


def test_400_drops_the_body_counts_it_and_keeps_going(server, caplog):
    server.script(Answer(400, body=b'{"error": "bad metric name"}'))
    agent = make_agent(server.api_url)
    expected = workload.record(agent, 10)
    with caplog.at_level(logging.ERROR, logger="impactagent"):
        result = agent.flush()
    assert result.dropped_bodies == 1
    events = workload.events(expected) + 1  # and the gauge's one sample
    assert events == 10 * 6 + 1  # per round: a request, two jobs, a latency, two flags
    assert agent.statistics()["dropped"]["rejected_by_server"] == events
    assert any("bad metric name" in r.getMessage() and "HTTP 400" in r.getMessage()
               for r in caplog.records)
    expected = workload.record(agent, 5)
    assert agent.flush().ok
    assert workload.delivered(server.totals()) == expected


def test_401_stops_sending_keeps_recording_and_says_so_once(caplog):
    with ScriptedServer(token="the-right-token") as server:
        agent = make_agent(server.api_url)
        expected = workload.record(agent, 10)
        with caplog.at_level(logging.ERROR, logger="impactagent"):
            first = agent.flush()
            second = agent.flush()
        assert first.kept_bodies == 1
        assert second.skipped == "stopped after HTTP 401"
        assert len(server.requests) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "HTTP 401" in errors[0] and server.api_url in errors[0]
        workload.record(agent, 10, offset=10, expected=expected)  # recording goes on
        # Every event is pending: 20 rounds of 6, and the gauge's one unsent value.
        assert agent.statistics()["pending_events"] == workload.events(expected) + 1 == 121
        assert agent.statistics()["sending_stopped_by_status"] == 401


def test_403_also_stops_sending(server):
    server.script(403)
    agent = make_agent(server.api_url)
    agent.record_flag("beta", True)
    agent.flush()
    assert agent.flush().skipped == "stopped after HTTP 403"


def test_closing_unsent_without_a_spool_counts_it_as_dropped_and_says_why(caplog):
    with ScriptedServer(token="the-right-token") as server:
        agent = make_agent(server.api_url)
        expected = workload.record(agent, 10)
        with caplog.at_level(logging.ERROR, logger="impactagent"):
            agent.close()
        statistics = agent.statistics()
    assert statistics["dropped"] == {"not_delivered_by_close": workload.events(expected) + 1}
    assert statistics["pending_events"] == 0
    errors = " ".join(r.getMessage() for r in caplog.records)
    assert "stopped by HTTP 401" in errors and "not_delivered_by_close" in errors
    assert TOKEN not in errors


def test_closing_unsent_against_a_down_server_counts_it_too():
    agent = make_agent(refused_url(), request_timeout=0.2)
    expected = workload.record(agent, 5)
    assert not agent.close(timeout=1).ok
    assert agent.statistics()["dropped"] == {
        "not_delivered_by_close": workload.events(expected) + 1}


def test_closing_unsent_with_a_spool_leaves_it_for_the_next_agent(tmp_path):
    with ScriptedServer(token="the-right-token") as server:
        agent = make_agent(server.api_url, spool_dir=str(tmp_path))
        expected = workload.record(agent, 10)
        agent.flush()  # 401: kept in the spool, and sending stops
        workload.record(agent, 10, offset=10, expected=expected)
        agent.close()  # what came after the 401 goes to the spool too
        assert agent.statistics()["dropped"] == {}
        assert agent.statistics()["spool"]["files"] == 2

        fixed = make_agent(server.api_url, api_key="the-right-token", spool_dir=str(tmp_path))
        assert fixed.close().ok
        assert workload.delivered(server.totals()) == expected
        assert fixed.statistics()["spool"]["files"] == 0


def test_413_splits_and_resends_until_it_fits():
    with ScriptedServer(max_body=4000) as server:
        agent = make_agent(server.api_url)
        users = agent.counter("logins_total", "Logins", labels=("user",))
        for i in range(300):
            users.labels(f"user-{i:04d}").inc(i + 1)
            agent.record_flag(f"flag-{i}", i % 2 == 0)
        result = agent.flush(timeout=10)
        assert result.ok, result
        assert 413 in [r.status for r in server.requests]
        totals = server.totals()
        assert sum(totals["counters"].values()) == sum(range(1, 301))
        assert sum(f["yes"] + f["no"] for f in totals["flags"].values()) == 300
        assert all(len(r.body) <= 4000 for r in server.requests if r.accepted)


# -- the flusher thread and shutdown -------------------------------------------------------


def test_background_flusher_delivers_on_its_interval(server):
    agent = make_agent(server.api_url, flush_interval=0.2).start()
    try:
        expected = workload.record(agent, 20)
        assert server.wait_for(lambda s: workload.delivered(s.totals()) == expected, 10)
    finally:
        agent.close(timeout=2)


def test_close_flushes_the_last_window(server):
    agent = make_agent(server.api_url, flush_interval=60).start()
    expected = workload.record(agent, 25)
    result = agent.close()
    assert result.ok
    assert workload.delivered(server.totals()) == expected


def test_close_returns_within_its_deadline_against_a_server_that_never_answers(server):
    server.default = Answer(202, delay=30)
    agent = make_agent(server.api_url, flush_interval=0.1, request_timeout=10).start()
    workload.record(agent, 10)
    time.sleep(0.3)  # let the flusher get stuck in a request
    started = time.monotonic()
    result = agent.close(timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert not result.ok


def test_close_is_idempotent_and_thread_safe(server):
    agent = make_agent(server.api_url).start()
    workload.record(agent, 5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(agent.close(2)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert len(server.accepted_documents()) == 1
    assert agent.close() is results[0]


def test_context_manager_starts_and_closes(server):
    with make_agent(server.api_url) as agent:
        expected = workload.record(agent, 7)
        assert agent.lifecycle.flusher.running
    assert workload.delivered(server.totals()) == expected


def test_exit_without_close_still_flushes(server, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(
        "import impactagent\n"
        f"agent = impactagent.Agent('shop', url={server.api_url!r}, api_key='t').start()\n"
        "c = agent.counter('exits_total', 'Exits')\n"
        "for _ in range(42): c.inc()\n"
        "agent.record_flag('f', True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
    totals = server.totals()
    assert sum(v for (name, _), v in totals["counters"].items() if name == "exits_total") == 42
    assert totals["flags"]["f"]["yes"] == 1


# -- secrets -------------------------------------------------------------------------------


def test_the_token_never_appears_in_logs(server, caplog):
    server.script(500, Answer(drop=True), 400, 413, Answer(429, headers={"Retry-After": "0"}),
                  401)
    agent = make_agent(server.api_url, request_timeout=0.5)
    with caplog.at_level(logging.DEBUG):
        for _ in range(4):
            workload.record(agent, 5)
            agent.flush(timeout=3)
        bad = make_agent(refused_url())
        bad.flush(timeout=1)
        try:
            make_agent("not a url")
        except ValueError as error:
            logging.getLogger("test").error("%s", error)
    assert caplog.records, "expected log output to check"
    for record in caplog.records:
        assert "s3cr3t" not in record.getMessage()
        assert "s3cr3t" not in str(record.args)
    assert "s3cr3t" not in str(agent.statistics())


# -- bounded memory and TLS ----------------------------------------------------------------


def test_memory_stays_bounded_through_a_long_outage():
    """Failed windows merge back into the same series: 100 failed flushes hold no more
    objects than one, and every event is still pending, none lost."""
    import gc
    import tracemalloc

    agent = make_agent(refused_url(), request_timeout=0.2)
    users = agent.counter("logins_total", "Logins", labels=("user",))

    def outage(flushes):
        for _ in range(flushes):
            for i in range(50):
                users.labels(f"user-{i}").inc()
                agent.record_flag(f"flag-{i % 10}", True, "blue")
            agent.lifecycle.delivery.flush(time.monotonic() + 0.02)  # one attempt each

    outage(10)  # warm up: series, flags and the session exist
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    outage(100)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over 100 failed flushes"
    assert agent.statistics()["pending_events"] == 110 * 100


def test_tls_is_verified_by_default(tmp_path):
    """A self-signed certificate is refused unless its CA bundle is configured, even when
    REQUESTS_CA_BUNDLE points elsewhere (requests lets it override session settings)."""
    import http.server
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    class Accept(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Accept)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/api"
        strict = make_agent(url, request_timeout=1)
        strict.record_flag("beta", True)
        assert strict.flush(timeout=2).kept_bodies == 1
        assert "TLS error" in strict.statistics()["delivery"]["failures"]
        trusting = make_agent(url, verify=str(cert))
        trusting.record_flag("beta", True)
        result = trusting.flush(timeout=5)
        assert result.ok and result.delivered_bodies == 1, trusting.statistics()["delivery"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_unexpected_error_while_sending_loses_nothing(server, caplog):
    """A bug in sending (here: the transport raising what it never should) is a failed send:
    logged once, naming the transport and the error, and what the failed flush had collected
    goes out with the next one."""
    agent = make_agent(server.api_url, flush_interval=0.1)
    transport = agent.lifecycle.delivery.transport
    real_post = transport.post
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in sending")
        return real_post(*args, **kwargs)

    transport.post = broken_once
    expected = workload.record(agent, 20)
    with caplog.at_level(logging.ERROR, logger="impactagent"):
        agent.start()
        assert server.wait_for(lambda s: workload.delivered(s.totals()) == expected, 10)
    agent.close(timeout=2)
    assert "the transport HttpTransport raised RuntimeError: a bug in sending" in caplog.text
    assert agent.statistics()["dropped"] == {}
