"""The framework integrations (impactagent.integrations), each through its real framework.

Each test checks exact counts labelled by the route *template* (never the raw path), and
that flags are scoped per request or task: two in flight at once never see each other's
flags, and one never sees the flags of the one before it on the same thread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

import impactagent
from impactagent.delivery.settings import SettingsError
from tests import child
from tests.loopback import wait_until
from tests.prometheus_text import samples

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("new-checkout",)


def counts(agent, metric):
    """{label values: count} of a counter (or a histogram's observation counts)."""
    family = agent.metrics.get(metric)
    return {series.label_values: getattr(series, "value", None) if family.kind == "counter"
            else series.count for series in family.series()}


def in_two_threads(first, second):
    """Run both calls at once; return their results (re-raising a failure)."""
    results, errors = {}, []

    def run(key, call):
        try:
            results[key] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(key, call))
               for key, call in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return results["first"], results["second"]


# -- Django -------------------------------------------------------------------------------


DJANGO_CHILD = """
import json, threading
import django
django.setup()
from django.core.wsgi import get_wsgi_application
from werkzeug.test import Client
from impactagent.integrations.django import get_agent

client = Client(get_wsgi_application())
statuses = []
def call(method, path):
    response = client.open(path, method=method)
    response.close()  # as a server does: only then is the request over
    statuses.append(response.status_code)

threads = [threading.Thread(target=call, args=("POST", f"/shop/checkout/{user}?together=1"))
           for user in ("beta-ann", "bob")]
for t in threads: t.start()
for t in threads: t.join(20)
call("POST", "/shop/checkout/beta-cat")  # this thread decides "blue"...
call("GET", "/health")                   # ...and the next request must not see it
call("GET", "/")                         # the root pattern, written "" in urls.py
call("GET", "/nowhere/42")
call("GET", "/shop/boom")
agent = get_agent()
def table(name):
    family = agent.metrics.get(name)
    return [[list(s.label_values), getattr(s, "value", None) if family.kind == "counter"
             else s.count] for s in family.series()]
print(json.dumps({
    "statuses": sorted(statuses),
    "requests": table("http_server_requests_total"),
    "durations": table("http_server_request_duration_seconds"),
    "checkouts": table("checkout_total"),
    "scrape": client.get("/metrics").get_data(as_text=True),
    "same_agent": agent is get_agent(),
}))
"""


def run_django(extra_env=None):
    env = {"DJANGO_SETTINGS_MODULE": "tests.apps.django_site.settings", **(extra_env or {})}
    done = child.run(DJANGO_CHILD, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_django_middleware_labels_by_url_pattern_and_scopes_flags_per_request():
    pytest.importorskip("django")
    result = run_django()
    assert result["statuses"] == [200, 200, 200, 200, 200, 404, 500]
    expected = {
        ("POST", "shop/checkout/<str:user>", "2xx", "blue"): 2,
        ("POST", "shop/checkout/<str:user>", "2xx", "disabled"): 1,
        ("GET", "health", "2xx", "not_evaluated"): 1,
        # The root pattern is "" in urls.py: "/", never "unmatched" (it did match).
        ("GET", "/", "2xx", "not_evaluated"): 1,
        ("GET", "unmatched", "4xx", "not_evaluated"): 1,
        ("GET", "shop/boom", "5xx", "not_evaluated"): 1,
    }
    assert {tuple(k): v for k, v in result["requests"]} == expected
    assert {tuple(k): v for k, v in result["durations"]} == expected
    # Both checkouts were in flight together; each counted under its own flag.
    assert {tuple(k): v for k, v in result["checkouts"]} == {("blue",): 2, ("disabled",): 1}
    assert result["same_agent"]
    scraped = {dict(k)["new_checkout"]: n for k, n in
               samples(result["scrape"], "checkout_total").items()}
    assert scraped == {"blue": 2, "disabled": 1}


def test_django_agent_from_settings_delivers_to_the_server(server):
    pytest.importorskip("django")
    run_django({"TEST_UNLEASH_URL": server.api_url})  # the child closes at exit (atexit)
    assert server.counter_total("checkout_total") == 3
    # Seven requests and the scrape of /metrics, itself a request (route "metrics").
    assert server.counter_total("http_server_requests_total") == 8
    assert server.totals()["flags"]["new-checkout"] == {"yes": 2, "no": 1,
                                                        "variants": {"blue": 2}}


def test_django_settings_are_checked():
    pytest.importorskip("django")
    done = child.run("""
        from django.conf import settings
        settings.configure(IMPACTAGENT={"app_name": "shop", "flgas": ["x"]})
        from impactagent.integrations.django import get_agent
        get_agent()
    """)
    assert done.returncode == 1
    assert "IMPACTAGENT: unknown setting 'flgas'" in done.stderr
    done = child.run("""
        from django.conf import settings
        settings.configure()
        from impactagent.integrations.django import get_agent
        get_agent()
    """)
    assert "ImproperlyConfigured: impactagent: set IMPACTAGENT = " in done.stderr


# -- Flask --------------------------------------------------------------------------------


def flask_shop(impact_or_factory):
    """A Flask app with a flag decided per request, built around the extension given."""
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    both_in_flight = threading.Barrier(2)
    state = {}

    @app.before_request
    def short_circuit():
        # Answers before any view: the route is still the matched rule.
        if flask.request.path == "/closed":
            return "closed", 503
        return None

    @app.post("/checkout/<user>")
    def checkout(user):
        agent = state["agent"]
        beta = user.startswith("beta-")
        agent.record_flag("new-checkout", beta, "blue" if beta else None)
        if flask.request.args.get("together"):
            both_in_flight.wait(timeout=10)
        state["checkouts"].inc()
        return {"user": user}

    @app.get("/health")
    def health():
        return "ok"

    @app.get("/closed")
    def closed():
        return "never"

    impact = impact_or_factory(app)
    state["agent"] = impact.agent
    state["checkouts"] = impact.agent.counter("checkout_total", "Checkouts", flags=FLAGS)
    return app, impact


def exercise_flask(app):
    client = app.test_client()

    def post(user, **query):
        response = client.post(f"/checkout/{user}", query_string=query)
        response.close()
        return response.status_code

    assert in_two_threads(lambda: post("beta-ann", together=1),
                          lambda: post("bob", together=1)) == (200, 200)
    assert post("beta-cat") == 200
    for path, status in (("/health", 200), ("/closed", 503), ("/nowhere/7", 404)):
        response = client.get(path)
        response.close()
        assert response.status_code == status
    response = client.delete("/checkout/x")  # no DELETE rule: 405, not matched
    response.close()
    assert response.status_code == 405
    return client


FLASK_EXPECTED = {
    ("POST", "/checkout/<user>", "2xx", "blue"): 2,
    ("POST", "/checkout/<user>", "2xx", "disabled"): 1,
    ("GET", "/health", "2xx", "not_evaluated"): 1,
    ("GET", "/closed", "5xx", "not_evaluated"): 1,
    ("GET", "unmatched", "4xx", "not_evaluated"): 1,
    ("DELETE", "unmatched", "4xx", "not_evaluated"): 1,
}


def test_flask_extension_labels_by_url_rule_and_scopes_flags_per_request():
    from impactagent.integrations.flask import ImpactAgent

    app, impact = flask_shop(lambda app: ImpactAgent(app, app_name="shop-flask", flags=FLAGS,
                                                     metrics_path="/metrics"))
    client = exercise_flask(app)
    agent = impact.agent
    assert app.extensions["impactagent"].agent is agent
    assert counts(agent, "http_server_requests_total") == FLASK_EXPECTED
    assert counts(agent, "http_server_request_duration_seconds") == FLASK_EXPECTED
    assert counts(agent, "checkout_total") == {("blue",): 2, ("disabled",): 1}
    scrape = client.get("/metrics")
    scrape.close()  # as a server does: the request's flag scope ends only then
    text = scrape.get_data(as_text=True)
    assert {dict(k)["new_checkout"]: n for k, n in samples(text, "checkout_total").items()
            } == {"blue": 2, "disabled": 1}


def test_flask_init_app_in_a_factory_reads_app_config_and_uses_the_given_agent():
    from impactagent.integrations.flask import ImpactAgent

    agent = impactagent.Agent("shop-flask")
    impact = ImpactAgent(agent=agent)

    def bind(app):
        app.config["IMPACTAGENT"] = {"flags": list(FLAGS), "prefix": "web"}
        impact.init_app(app)
        return impact

    app, _ = flask_shop(bind)
    exercise_flask(app)
    assert app.extensions["impactagent"].agent is agent
    assert counts(agent, "web_requests_total") == FLASK_EXPECTED
    with pytest.raises(RuntimeError, match="already called"):
        impact.init_app(app)
    flask = pytest.importorskip("flask")
    other = flask.Flask("other")
    other.config["IMPACTAGENT"] = {"app_name": "x", "flgas": []}
    with pytest.raises(SettingsError, match="unknown setting 'flgas'"):
        ImpactAgent(other)


# -- Starlette / FastAPI ------------------------------------------------------------------


def test_fastapi_integration_and_a_metrics_route_without_redirect():
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from impactagent.integrations.fastapi import ImpactMiddleware, metrics_route

    agent = impactagent.Agent("shop-fastapi")
    app = fastapi.FastAPI()
    app.add_middleware(ImpactMiddleware, agent=agent, flags=FLAGS)
    app.router.routes.append(metrics_route(agent))

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        agent.record_flag("new-checkout", item_id == 1)
        return {"id": item_id}

    with TestClient(app) as client:
        assert [client.get(f"/items/{i}").status_code for i in (1, 2)] == [200, 200]
        metrics = client.get("/metrics", follow_redirects=False)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert {dict(k)["new_checkout"]: n for k, n in
            samples(metrics.text, "http_server_requests_total").items()
            if dict(k)["route"] == "/items/{item_id}"} == {"enabled": 1, "disabled": 1}


# -- Celery -------------------------------------------------------------------------------


@pytest.fixture
def celery_app():
    celery = pytest.importorskip("celery")
    app = celery.Celery("shop-tests", set_as_current=False)
    app.conf.update(broker_url="memory://", result_backend="cache+memory://",
                    task_always_eager=False, worker_hijack_root_logger=False)
    # Celery's test worker sets the root logger to ERROR for the rest of the process, which
    # would hide every later test's warnings from caplog: put it back.
    root = logging.getLogger()
    level = root.level
    yield app
    root.setLevel(level)


def test_celery_tasks_get_a_flag_scope_each_and_are_counted_by_name(celery_app):
    from celery.contrib.testing.worker import start_worker

    from impactagent.integrations.celery import instrument_celery

    agent = impactagent.Agent("shop-worker")
    checkouts = agent.counter("checkout_total", "Checkouts", flags=FLAGS)
    both_in_flight = threading.Barrier(2)

    @celery_app.task(name="shop.checkout")
    def checkout(user, together=False):
        beta = user.startswith("beta-")
        agent.record_flag("new-checkout", beta, "blue" if beta else None)
        if together:
            both_in_flight.wait(timeout=10)  # the other task decided its flag by now
        checkouts.inc()
        return user

    @celery_app.task(name="shop.report")
    def report():
        checkouts.inc()  # decides no flag: must not see the one before it on this thread

    @celery_app.task(name="shop.broken")
    def broken():
        raise RuntimeError("broken")

    instrumentation = instrument_celery(agent, flags=FLAGS)
    try:
        with start_worker(celery_app, pool="threads", concurrency=2,
                          perform_ping_check=False):
            together = [checkout.delay("beta-ann", True), checkout.delay("bob", True)]
            assert sorted(r.get(timeout=20) for r in together) == ["beta-ann", "bob"]
            for _ in range(3):  # each pair runs one after the other
                assert checkout.delay("beta-cat").get(timeout=20) == "beta-cat"
                assert report.delay().get(timeout=20) is None
            with pytest.raises(RuntimeError):
                broken.delay().get(timeout=20)
    finally:
        instrumentation.disconnect()

    assert counts(agent, "checkout_total") == {("blue",): 4, ("disabled",): 1,
                                               ("not_evaluated",): 3}
    expected = {
        ("shop.checkout", "success", "blue"): 4,
        ("shop.checkout", "success", "disabled"): 1,
        ("shop.report", "success", "not_evaluated"): 3,
        ("shop.broken", "failure", "not_evaluated"): 1,
    }
    assert counts(agent, "celery_tasks_total") == expected
    assert counts(agent, "celery_task_duration_seconds") == expected


def test_celery_eager_tasks_nest_their_scopes(celery_app):
    from impactagent.integrations.celery import instrument_celery

    agent = impactagent.Agent("shop-worker")
    celery_app.conf.task_always_eager = True
    seen = []

    @celery_app.task(name="shop.inner")
    def inner():
        seen.append(impactagent.flag_states())

    @celery_app.task(name="shop.outer")
    def outer():
        agent.record_flag("new-checkout", True)
        inner.delay()
        seen.append(impactagent.flag_states())

    instrumentation = instrument_celery(agent, flags=FLAGS)
    try:
        outer.delay()
    finally:
        instrumentation.disconnect()
    # The inner task started with no flags; the outer one's came back after it.
    assert seen == [{}, {"new-checkout": "enabled"}]
    assert counts(agent, "celery_tasks_total") == {
        ("shop.inner", "success", "not_evaluated"): 1,
        ("shop.outer", "success", "enabled"): 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_celery_prefork_children_each_deliver_their_counts_when_they_exit(server, tmp_path):
    celery = pytest.importorskip("celery")
    broker = tmp_path / "broker"
    done = tmp_path / "done"
    broker.mkdir()
    done.mkdir()
    env = child.environment({"TEST_UNLEASH_URL": server.api_url,
                             "TEST_CELERY_BROKER_DIR": str(broker),
                             "TEST_CELERY_DONE_DIR": str(done)})
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.apps.celery_app", "worker",
         "-P", "prefork", "-c", "2", "--without-heartbeat", "--without-gossip",
         "--without-mingle", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        producer = celery.Celery("shop")
        producer.conf.update(broker_url="filesystem://", broker_transport_options={
            "data_folder_in": str(broker), "data_folder_out": str(broker),
            "control_folder": f"{broker}-control"})
        for n in range(40):
            producer.send_task("shop.job", args=(n,))
        # Bounded wait for every task to have run (each leaves a file).
        assert wait_until(lambda: len(list(done.iterdir())) == 40, timeout=60), "not run"
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: the children finish and leave
        output = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    # The flush interval is an hour: all of it came from each child's close on its way out.
    assert server.counter_total("jobs_total") == 40, output
    assert server.counter_total("celery_tasks_total") == 40
    assert server.totals()["flags"]["new-checkout"] == {"yes": 20, "no": 0,
                                                        "variants": {"blue": 20}}
    pids = {path.read_text() for path in done.iterdir()}
    assert str(worker.pid) not in pids  # the tasks ran in the forked children
    connections = {d["connectionId"] for d in server.accepted_documents()}
    assert len(connections) == len(pids)  # one connection id per child, none the master's


# -- gunicorn -----------------------------------------------------------------------------


def test_gunicorn_with_the_documented_config_delivers_every_request_once(server):
    pytest.importorskip("gunicorn")
    pytest.importorskip("flask")
    from tests.loopback import listening_socket

    with listening_socket() as listener:  # see listening_socket: no port race, no polling
        port = listener.getsockname()[1]
        env = child.environment({"TEST_UNLEASH_URL": server.api_url,
                                 "GUNICORN_BIND": f"fd://{listener.fileno()}",
                                 "GUNICORN_WORKERS": "2",
                                 "IMPACTAGENT_AGENT": "tests.apps.gunicorn_flask:agent"})
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "examples/gunicorn.conf.py",
             "tests.apps.gunicorn_flask:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()])
    base = f"http://127.0.0.1:{port}"
    pids = set()
    try:
        with requests.Session() as http:
            http.trust_env = False
            # Waits in the listen queue until a worker has imported the app and started:
            # one request, bounded by its timeout (a 1 s timeout per try, with only refused
            # connections tried again, failed on a worker slower than that to start).
            warm_up = http.get(base + "/checkout/warm-up", timeout=60,
                               headers={"Connection": "close"})
            assert warm_up.status_code == 200, warm_up.text
            for i in range(60):
                user = "beta-ann" if i % 3 == 0 else "bob"
                pids.add(http.get(f"{base}/checkout/{user}", timeout=5,
                                  headers={"Connection": "close"}).text)
    finally:
        master.send_signal(signal.SIGTERM)
        output = master.communicate(timeout=60)[0].decode(errors="replace")
    assert master.returncode == 0, output
    assert output.count("closed its agent: ok=True") == 2, output
    totals = server.totals()
    by_route = {(dict(labels)["route"], dict(labels)["new_checkout"]): n
                for (name, labels), n in totals["counters"].items()
                if name == "http_server_requests_total"}
    # 60 requests and the warm-up, by the Flask rule; each worker's flags its own.
    assert by_route == {("/checkout/<user>", "blue"): 20, ("/checkout/<user>", "disabled"): 41}
    assert totals["flags"]["new-checkout"] == {"yes": 20, "no": 41, "variants": {"blue": 20}}
    connections = {d["connectionId"] for d in server.accepted_documents()}
    # One connection id per worker that served (the kernel picks which), none the master's.
    assert len(connections) == len(pids)
