"""``impactagent run`` with the unmodified apps of ``tests/apps/zero_code`` against the real
unleash-server: their UnleashClient fetches the session's flags from it, and the server
stores, per route, status class and flag state, exactly the requests each test sent, and
each evaluation once (the SDK's count; impactagent adds none)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from tests.apps.zero_code.features import FEATURES
from tests.e2e.conftest import RealServer
from tests.test_run_apps import (
    environment_for,
    expected_flags,
    expected_tasks,
    free_port,
    launch,  # noqa: F401  (a fixture: the apps a failed test leaves are killed)
    request_counts,
    run_celery_worker,
    send_mix,
    stop,
    task_counts,
    without_disabled,
)

FLAGS = ("dark-mode", "new-checkout")
APPS: Dict[str, Dict[str, Any]] = {
    "flask": {
        "command": [sys.executable, "-m", "flask", "--app",
                    "tests.apps.zero_code.flask_shop", "run", "--port", "{port}"],
        "routes": {"hello": "/hello/<user>", "checkout": "/checkout/<user>", "boom": "/boom"},
        "stop": signal.SIGINT},
    "fastapi": {
        "command": [sys.executable, "-m", "uvicorn", "tests.apps.zero_code.fastapi_shop:app",
                    "--port", "{port}", "--workers", "2", "--log-level", "warning"],
        "routes": {"hello": "/hello/{user}", "checkout": "/checkout/{user}", "boom": "/boom"},
        "stop": signal.SIGTERM},
    "django": {
        "command": [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                    "-b", "127.0.0.1:{port}", "-c",
                    "tests/apps/zero_code/django_shop/gunicorn_conf.py",
                    "tests.apps.zero_code.django_shop.wsgi"],
        "routes": {"hello": "hello/<str:user>", "checkout": "checkout/<str:user>",
                   "boom": "boom"},
        "stop": signal.SIGTERM},
}


@pytest.fixture(scope="module")
def configured(unleash: RealServer) -> Iterator[RealServer]:
    """The session's flags, given the strategies and variants of the tests' features
    document in the backend token's environment, and on; served to SDKs (bounded wait)."""
    project = f"{unleash.url}/api/admin/projects/default/features"
    for feature in FEATURES["features"]:
        name = feature["name"]
        strategy = feature["strategies"][0]
        users = strategy["parameters"]["userIds"].split(",")
        answer = unleash.admin.session.post(
            f"{project}/{name}/environments/development/strategies", timeout=10, json={
                "name": "flexibleRollout",
                "parameters": {"rollout": "100", "stickiness": "default", "groupId": name},
                "constraints": [{"contextName": "userId", "operator": "IN", "values": users}],
                "variants": feature.get("variants", [])})
        answer.raise_for_status()
        unleash.admin.session.post(f"{project}/{name}/environments/development/on",
                                   timeout=10).raise_for_status()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        served = requests.get(f"{unleash.url}/api/client/features", timeout=10,
                              headers={"Authorization": unleash.backend_token}).json()
        enabled = {f["name"] for f in served["features"] if f.get("enabled")}
        if enabled >= set(FLAGS):
            break
        time.sleep(0.5)
    yield unleash


@pytest.mark.parametrize("kind", sorted(APPS))
def test_an_unmodified_app_reports_to_the_real_server(kind: str, configured: RealServer,
                                                      tmp_path: Path,
                                                      launch: Any) -> None:  # noqa: F811
    unleash = configured
    app = APPS[kind]
    app_name = f"zero-code-{kind}"
    port = free_port()
    unleash.wait_until_flags_are_known()
    env = environment_for(unleash.url + "/api", unleash.backend_token, app_name, tmp_path)
    command: List[str] = [part.format(port=port) for part in app["command"]]
    process = launch(command, env, port)
    requests, evaluations = send_mix(port, app["routes"], rounds=1)
    # The SDK sends every second; uvicorn's workers end without its last send.
    wait_until(lambda: without_disabled(unleash.admin.totals(app_name, FLAGS)["flags"])
               == expected_flags(evaluations))
    output = stop(process, app["stop"])
    assert "impactagent:" not in output, output
    assert unleash.backend_token not in output
    stored = unleash.admin.settled_totals(
        app_name, FLAGS,
        lambda t: sum(request_counts(t["counters"]).values()) >= sum(requests.values()),
        timeout=20)
    assert request_counts(stored["counters"]) == requests
    assert without_disabled(stored["flags"]) == expected_flags(evaluations)


def test_an_unmodified_celery_worker_reports_to_the_real_server(configured: RealServer,
                                                               tmp_path: Path) -> None:
    unleash = configured
    app_name = "zero-code-celery"
    env = environment_for(unleash.url + "/api", unleash.backend_token, app_name, tmp_path)

    def sdk_sent(evaluations: Any) -> None:  # a child's SDK loses what it has not sent
        wait_until(lambda: without_disabled(unleash.admin.totals(app_name, FLAGS)["flags"])
                   == expected_flags(evaluations))

    variants, output = run_celery_worker(env, tmp_path, sdk_sent)
    assert unleash.backend_token not in output
    evaluations = {("new-checkout", v): n for v, n in variants.items()}
    stored = unleash.admin.settled_totals(
        app_name, FLAGS,
        lambda t: sum(task_counts(t["counters"]).values()) >= sum(variants.values()),
        timeout=20)
    assert task_counts(stored["counters"]) == expected_tasks(variants)
    assert without_disabled(stored["flags"]) == expected_flags(evaluations)


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)
