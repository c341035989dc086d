"""The WSGI and ASGI middlewares, through a real HTTP server and the example apps.

Each checks the exact request counts by method, route template, status class and the state
of a flag decided inside the request, and that one request's flags never reach the next.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
import requests

import impactagent
from impactagent.integrations import asgi, wsgi
from impactagent.integrations.http_metrics import ROUTE_KEY
from tests.prometheus_text import samples


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


def request_counts(agent, metric="http_server_requests_total"):
    """{label values: value} of a counter, from its cumulative view (collect not needed)."""
    return {child.label_values: child.value for child in agent.metrics.get(metric).series()}


def duration_counts(agent):
    family = agent.metrics.get("http_server_request_duration_seconds")
    return {child.label_values: child.count for child in family.series()}


def test_wsgi_middleware_through_a_real_server():
    agent = impactagent.Agent("shop")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path.startswith("/users/"):
            environ[ROUTE_KEY] = "/users/{id}"
            agent.record_flag("beta", path.endswith("7"), "v2" if path.endswith("7") else None)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"user"]
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (chunk for chunk in (b"a", b"b", b"c"))
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here"]

    server = make_server("127.0.0.1", 0, wsgi.ImpactMiddleware(app, agent, flags=("beta",)),
                         handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with requests.Session() as http:
            http.trust_env = False
            answers = [http.request(method, base + path, timeout=5) for method, path in (
                ("GET", "/users/1"), ("GET", "/users/7"), ("GET", "/users/2"),
                ("BREW", "/users/3"), ("GET", "/missing"), ("GET", "/boom"),
                ("GET", "/stream"))]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404, 500, 200]
    assert answers[-1].text == "abc"
    expected = {
        ("GET", "/users/{id}", "2xx", "disabled"): 2,
        ("GET", "/users/{id}", "2xx", "v2"): 1,
        ("other", "/users/{id}", "2xx", "disabled"): 1,
        # One thread served them all: a request that decided no flag sees none.
        ("GET", "unmatched", "4xx", "not_evaluated"): 1,
        ("GET", "unmatched", "5xx", "not_evaluated"): 1,
        ("GET", "unmatched", "2xx", "not_evaluated"): 1,
    }
    assert request_counts(agent) == expected
    assert duration_counts(agent) == expected


def test_wsgi_route_callable_and_no_flags():
    agent = impactagent.Agent("shop")

    def app(environ, start_response):
        start_response("201 Created", [])
        return [b""]

    middleware = wsgi.ImpactMiddleware(app, agent, route=lambda environ: "/things")
    for _ in range(3):
        body = middleware({"REQUEST_METHOD": "POST", "PATH_INFO": "/things/9"},
                          lambda status, headers, exc_info=None: None)
        # A whole body comes back as the app made it (a server can still size it), and the
        # request is already recorded.
        assert body == [b""] and type(body) is list
    assert request_counts(agent) == {("POST", "/things", "2xx"): 3}


def test_asgi_middleware_labels_requests_and_passes_other_traffic():
    agent = impactagent.Agent("shop")
    lifespan_seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            lifespan_seen.append(scope["type"])
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        scope[ROUTE_KEY] = "/orders/{id}" if scope["path"].startswith("/orders/") else None
        if scope["path"] == "/orders/1":
            agent.record_flag("beta", True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = asgi.ImpactMiddleware(app, agent, flags=("beta",))

    async def main():
        await middleware({"type": "lifespan"}, None, None)
        transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(
                client.get("/orders/1"), client.get("/orders/2"), client.delete("/orders/3"),
                client.get("/boom"), client.get("/elsewhere"))
        return [a.status_code for a in answers]

    assert asyncio.run(main()) == [200, 200, 200, 500, 200]
    assert lifespan_seen == ["lifespan"]
    assert request_counts(agent) == {
        ("GET", "/orders/{id}", "2xx", "enabled"): 1,
        ("GET", "/orders/{id}", "2xx", "not_evaluated"): 1,
        ("DELETE", "/orders/{id}", "2xx", "not_evaluated"): 1,
        ("GET", "unmatched", "5xx", "not_evaluated"): 1,
        ("GET", "unmatched", "2xx", "not_evaluated"): 1,
    }


# -- the examples, through their frameworks' own test clients -------------------------------


def checkout_results(text):
    return {dict(labels)["new_checkout"]: n
            for labels, n in samples(text, "checkout_total").items()}


def served(response):
    """A test client's response, closed as a real WSGI server closes it: only then is the
    request over (and recorded, with the time its body took to stream)."""
    response.close()
    return response


def test_the_flask_example():
    flask_app = pytest.importorskip("examples.flask_app")
    client = flask_app.app.test_client()
    for user in ("beta-ann", "bob", "carl"):
        assert served(client.post(f"/checkout/{user}")).status_code == 200
    assert served(client.get("/nowhere")).status_code == 404
    text = client.get("/metrics").get_data(as_text=True)

    assert checkout_results(text) == {"blue": 1, "disabled": 2}
    requests_by = {(dict(k)["route"], dict(k)["status_class"], dict(k)["new_checkout"]): n
                   for k, n in samples(text, "http_server_requests_total").items()}
    assert requests_by == {("/checkout/<user>", "2xx", "blue"): 1,
                           ("/checkout/<user>", "2xx", "disabled"): 2,
                           ("unmatched", "4xx", "not_evaluated"): 1}
    # What goes to Unleash is the same, once: the scrape took nothing.
    snapshot = flask_app.agent.collect()
    toggle = snapshot.toggles["new-checkout"]
    assert (toggle.yes, toggle.no, toggle.variants) == (1, 2, {"blue": 1})


def test_the_fastapi_example():
    fastapi_app = pytest.importorskip("examples.fastapi_app")
    from fastapi.testclient import TestClient

    with TestClient(fastapi_app.app) as client:
        for user in ("beta-ann", "beta-bo", "carl"):
            assert client.post(f"/checkout/{user}").json()["user"] == user
        assert client.get("/health").status_code == 200
        text = client.get("/metrics/").text

    assert checkout_results(text) == {"blue": 2, "disabled": 1}
    requests_by = {(dict(k)["method"], dict(k)["route"], dict(k)["new_checkout"]): n
                   for k, n in samples(text, "http_server_requests_total").items()}
    # The sync endpoint ran in a worker thread; its flag still labels its request.
    assert requests_by == {("POST", "/checkout/{user}", "blue"): 2,
                           ("POST", "/checkout/{user}", "disabled"): 1,
                           ("GET", "/health", "not_evaluated"): 1}


def test_the_django_example():
    django_app = pytest.importorskip("examples.django_app")
    from werkzeug.test import Client

    client = Client(django_app.application)
    for user in ("beta-ann", "bob"):
        assert served(client.post(f"/checkout/{user}")).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert checkout_results(text) == {"blue": 1, "disabled": 1}
    routes = {dict(k)["route"] for k in samples(text, "http_server_requests_total")}
    assert routes == {"checkout/<str:user>"}


def test_a_body_that_fails_while_streaming_counts_as_a_5xx():
    agent = impactagent.Agent("shop")

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"partial"
            raise RuntimeError("the database went away mid-response")

        return body()

    middleware = wsgi.ImpactMiddleware(app, agent, route=lambda environ: "/report")
    response = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/report"},
                          lambda status, headers, exc_info=None: None)
    with pytest.raises(RuntimeError):
        try:
            for _chunk in response:
                pass
        finally:
            response.close()  # as a server does, in its own finally
    assert request_counts(agent) == {("GET", "/report", "5xx"): 1}


def test_a_streamed_body_closed_twice_is_one_request_even_when_its_close_raises():
    agent = impactagent.Agent("shop")
    closes = []

    class Body:
        def __iter__(self):
            yield b"ok"

        def close(self):
            closes.append(1)
            if len(closes) == 1:
                raise OSError("the client went away")

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    middleware = wsgi.ImpactMiddleware(app, agent, route=lambda environ: "/feed")
    response = middleware({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)
    assert list(response) == [b"ok"]
    with pytest.raises(OSError):
        response.close()
    response.close()
    assert closes == [1, 1]  # each close reaches the app's body
    assert request_counts(agent) == {("GET", "/feed", "5xx"): 1}


def test_asgi_route_callable_for_apps_without_a_router():
    agent = impactagent.Agent("shop")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = asgi.ImpactMiddleware(app, agent, route=lambda scope: scope["path"][:6])

    async def send(message):
        pass

    scope = {"type": "http", "method": "PATCH", "path": "/items/42"}
    asyncio.run(middleware(scope, None, send))
    assert request_counts(agent) == {("PATCH", "/items", "4xx"): 1}
