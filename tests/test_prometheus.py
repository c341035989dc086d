"""The Prometheus endpoint, scraped over real HTTP and parsed with prometheus_client's parser:
exact values after a known workload, and nothing taken from what goes to Unleash."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

import impactagent
from impactagent.prometheus.collector import serve_registry
from impactagent.prometheus.workers import serve_directory
from tests import workload
from tests.prometheus_text import impact_totals, samples

TOKEN = "default:production.prometheus-test"


def scrape(url: str) -> str:
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        response = session.get(url, timeout=5)
    response.raise_for_status()
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def flag_totals(text: str):
    """The flag counts in a scrape, in the shape of ``workload.record``'s ``flags``."""
    flags = {}
    for labels, n in samples(text, "impactagent_flag_evaluations_total").items():
        labels = dict(labels)
        flag = flags.setdefault(labels["feature"], {"yes": 0, "no": 0, "variants": {}})
        flag["yes" if labels["enabled"] == "true" else "no"] += n
    for labels, n in samples(text, "impactagent_flag_variants_total").items():
        labels = dict(labels)
        flags[labels["feature"]]["variants"][labels["variant"]] = n
    return flags


def test_a_scrape_over_http_shows_exactly_what_was_recorded(server):
    agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN)
    expected = workload.record(agent, 40)
    http = agent.serve_prometheus(0)
    try:
        url = f"http://127.0.0.1:{http.server_port}/metrics"
        first = scrape(url)
        second = scrape(url)
    finally:
        http.shutdown()
        http.server_close()

    assert http.server_address[0] == "127.0.0.1"
    assert first == second  # reading changes nothing
    assert {**impact_totals(first, "shop"), "flags": flag_totals(first)} == expected

    # ...and Unleash still gets every count, once: the scrapes took nothing from it.
    assert agent.close().ok
    assert workload.delivered(server.totals()) == expected


def test_the_scrape_keeps_cumulative_totals_across_sends(server):
    agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN)
    app = agent.prometheus_wsgi_app()
    expected = workload.record(agent, 10)
    assert agent.flush().ok
    workload.record(agent, 10, offset=10, expected=expected)
    text = _call_wsgi(app)
    assert {**impact_totals(text, "shop"), "flags": flag_totals(text)} == expected
    assert agent.close().ok
    assert workload.delivered(server.totals()) == expected


def test_the_agents_own_health_is_in_the_scrape(server):
    agent = impactagent.Agent("shop", url=server.api_url, api_key=TOKEN)
    depth = agent.gauge("queue_depth", "Jobs waiting")
    depth.set(math.nan)  # dropped and counted
    expected = workload.record(agent, 5)
    server.script(500)
    agent.flush()  # one 500, then delivered on retry
    text = _call_wsgi(agent.prometheus_wsgi_app())

    def value(name, **labels):
        return samples(text, name)[frozenset(labels.items())]

    assert value("impactagent_dropped_events_total", reason="non_finite_value") == 1
    assert value("impactagent_delivery_failures_total", status="500") == 1
    assert value("impactagent_delivery_attempts_total") == 2
    assert value("impactagent_delivered_events_total") == workload.events(expected) + 1
    assert value("impactagent_recorded_events_total", kind="flag_evaluations") == 10
    assert value("impactagent_pending_events") == 0


def test_the_asgi_app_serves_the_same_text():
    import asyncio

    agent = impactagent.Agent("shop")
    expected = workload.record(agent, 7)
    app = agent.prometheus_asgi_app()
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    assert {**impact_totals(text, "shop"), "flags": flag_totals(text)} == expected


def _call_wsgi(app) -> str:
    status = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    assert status == ["200 OK"]
    return body.decode()


def _blocks_sigterm_and_sigint(native_id: int) -> bool:
    """Whether the kernel has SIGTERM and SIGINT blocked on thread ``native_id`` (/proc)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("SigBlk:")), 16)
    wanted = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    return mask & wanted == wanted


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_every_scrape_server_and_each_scrape_leave_sigterm_and_sigint_to_the_app(tmp_path):
    # The kernel hands a process's SIGTERM to any thread that does not block it: handed to
    # a scrape server's thread while the main thread waits on a lock, the app's handler
    # never runs.
    agent = impactagent.Agent("shop")
    view = agent.prometheus_workers(str(tmp_path / "view"), publish_interval=60)
    starts = [lambda: agent.serve_prometheus(0), lambda: view.serve(0),
              lambda: serve_directory(str(tmp_path / "view"), 0)]
    for start in starts:
        before = set(threading.enumerate())
        server = start()
        try:
            started = [t for t in threading.enumerate() if t not in before and t.is_alive()]
            assert started and all(_blocks_sigterm_and_sigint(t.native_id) for t in started)
        finally:
            server.shutdown()
            server.server_close()

    class Probe:
        """A collector that notes, during a scrape, the mask of the thread answering it."""

        def __init__(self):
            self.blocked = []

        def collect(self):
            self.blocked.append(_blocks_sigterm_and_sigint(threading.get_native_id()))
            return iter(())

    probe = Probe()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(probe)
    server, _thread = serve_registry(registry, 0)
    try:
        scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert probe.blocked == [True]


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_the_scrape_server_listens_on_an_ipv6_address_and_logs_no_scrape(capfd):
    agent = impactagent.Agent("shop")
    agent.counter("checkout_total", "Checkouts").inc(2)
    server = agent.serve_prometheus(0, "::1")
    try:
        text = scrape(f"http://[::1]:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert samples(text, "checkout_total") == {
        frozenset({("appName", "shop"), ("environment", "default")}): 2}
    assert capfd.readouterr().err == ""  # a scrape is no line on stderr
