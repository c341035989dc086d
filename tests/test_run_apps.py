"""``impactagent run`` against unmodified apps (tests/apps/zero_code: none imports
impactagent), each a real server in real processes, with a real UnleashClient fetching its
flags from the development receiver (``Receiver(features=...)``), which it and impactagent
both report to, as they would to one Unleash server.

Each test sends a known mix of requests (or tasks), stops the app as an operator would,
and holds the receiver's totals, by route, status class and flag state, to the mix the
test itself tallied from the app's answers; the flags' yes/no counts must be the SDK's
alone (each evaluation once, not twice).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from impactagent.devtools.receiver import Receiver
from tests.apps.zero_code.features import FEATURES

# The apps are real Flask, FastAPI/uvicorn, Django/gunicorn and Celery apps asking the real
# UnleashClient: where one is not installed (the lower-bounds job), there is nothing to run.
for _library in ("flask", "fastapi", "uvicorn", "django", "gunicorn", "celery",
                 "UnleashClient"):
    pytest.importorskip(_library)

ROOT = Path(__file__).resolve().parent.parent
USERS = ("ann", "bob", "cat", "dan", "eve", "fay")
REQUESTS = "http_server_requests_total"
DURATION = "http_server_request_duration_seconds"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver(features=FEATURES) as receiver:
        yield receiver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(receiver: Receiver, app_name: str, tmp_path: Path, **extra: str
                ) -> Dict[str, str]:
    """What the apps and impactagent read: the receiver as Unleash, for both."""
    return environment_for(receiver.api_url, "default:development.token", app_name,
                           tmp_path, **extra)


def environment_for(url: str, token: str, app_name: str, tmp_path: Path, **extra: str
                    ) -> Dict[str, str]:
    """The test process's environment without its Unleash and impactagent settings, and
    these: one Unleash (``url``) for the app's SDK and for impactagent, which sends only when
    the app ends (an hour's flush interval), and does not register (the SDK does)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNLEASH_", "IMPACTAGENT_"))}
    env.update(UNLEASH_URL=url, UNLEASH_API_TOKEN=token,
               UNLEASH_APP_NAME=app_name, SHOP_CACHE_DIR=str(tmp_path / "sdk-cache"),
               IMPACTAGENT_FLUSH_INTERVAL="3600", IMPACTAGENT_REGISTER="0",
               PYTHONPATH=str(ROOT), **extra)
    return env


@pytest.fixture
def launch() -> Iterator[Any]:
    """``launch(command, env, port)``: :func:`start`, and whatever a failed test left
    running killed at its end (each command is in a process group of its own)."""
    started: List[subprocess.Popen] = []

    def launch(command: List[str], env: Dict[str, str], port: int) -> subprocess.Popen:
        started.append(start(command, env, port))
        return started[-1]

    yield launch
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)


def start(command: List[str], env: Dict[str, str], port: int) -> subprocess.Popen:
    """``impactagent run -- command``, started and answering on ``port`` (bounded wait)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "impactagent", "run", "--", *command], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{command[0]} exited early:\n{process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    stop(process, signal.SIGKILL)
    pytest.fail(f"{command[0]} did not listen on {port} within 30 s")


def stop(process: subprocess.Popen, how: int = signal.SIGTERM) -> str:
    """Stop the command as an operator would; its output (bounded wait)."""
    # A WSGI request is recorded when the server closes its body, just after the client
    # has the whole answer; Flask's development server does not wait for that on Ctrl-C.
    time.sleep(0.3)
    process.send_signal(how)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        pytest.fail(f"did not stop within 30 s:\n{output}")
    return output


def call(port: int, method: str, path: str) -> Tuple[int, Dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {}


def send_mix(port: int, routes: Dict[str, str], rounds: int = 2
             ) -> Tuple[collections.Counter, collections.Counter]:
    """Every user through each route, ``rounds`` times, and two crashes; the expected
    request counts by (method, route, status class, dark_mode, new_checkout), and the
    expected evaluations by (flag, answer), both tallied from the app's answers."""
    requests: collections.Counter = collections.Counter()
    evaluations: collections.Counter = collections.Counter()
    for _ in range(rounds):
        for user in USERS:
            status, body = call(port, "GET", f"/hello/{user}")
            assert status == 200
            requests["GET", routes["hello"], "2xx", body["dark_mode"], "not_evaluated"] += 1
            evaluations["dark-mode", body["dark_mode"]] += 1
            status, body = call(port, "POST", f"/checkout/{user}")
            variant = body.get("new_checkout", "disabled")
            assert (status, variant != "disabled") in ((200, True), (402, False))
            requests["POST", routes["checkout"], f"{status // 100}xx", "not_evaluated",
                     variant] += 1
            evaluations["new-checkout", variant] += 1
    for _ in range(2):
        assert call(port, "GET", "/boom")[0] == 500
        requests["GET", routes["boom"], "5xx", "not_evaluated", "not_evaluated"] += 1
    assert {v for (flag, v) in evaluations if flag == "new-checkout"} >= {"blue", "green",
                                                                          "disabled"}
    return requests, evaluations


def received_requests(receiver: Receiver, app: str) -> collections.Counter:
    """The receiver's request counts, by the labels ``send_mix`` tallies."""
    return request_counts(receiver.totals(app)["counters"])


def request_counts(counters: Dict[Any, int]) -> collections.Counter:
    """Request counts by the labels ``send_mix`` tallies, from ``(name, labels): value``."""
    counts: collections.Counter = collections.Counter()
    for (name, labels), value in counters.items():
        if name == REQUESTS:
            label = dict(labels)
            counts[label["method"], label["route"], label["status_class"],
                   label.get("dark_mode"), label.get("new_checkout")] += value
    return counts


def received_durations(receiver: Receiver, app: str) -> int:
    return sum(h["count"] for (name, _), h in receiver.totals(app)["histograms"].items()
               if name == DURATION)


def expected_flags(evaluations: collections.Counter) -> Dict[str, Dict[str, Any]]:
    flags: Dict[str, Dict[str, Any]] = {}
    for (flag, answer), n in evaluations.items():
        counts = flags.setdefault(flag, {"yes": 0, "no": 0, "variants": {}})
        counts["no" if answer == "disabled" else "yes"] += n
        if answer not in ("enabled", "disabled"):
            counts["variants"][answer] = counts["variants"].get(answer, 0) + n
    return flags


def flag_totals(receiver: Receiver, app: str) -> Dict[str, Dict[str, Any]]:
    return without_disabled(receiver.totals(app)["flags"])


def without_disabled(flags: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Flag counts without the 'disabled' variant the SDK reports for evaluations that got
    no variant (a server stores it; the test's tally has none)."""
    for counts in flags.values():
        counts["variants"].pop("disabled", None)
    return flags


def wait_for_the_sdk(receiver: Receiver, app: str, evaluations: collections.Counter) -> None:
    """Let the app's UnleashClient send its counts (every second): uvicorn's workers and
    Celery's children end without the SDK's last send, which is the SDK's loss, not ours."""
    receiver.wait_for(lambda r: flag_totals(r, app) == expected_flags(evaluations),
                      timeout=15)


def assert_reported(receiver: Receiver, app: str, requests: collections.Counter,
                    evaluations: collections.Counter) -> None:
    """Every request counted once, by its labels; every evaluation counted once (by the SDK,
    or by impactagent for a client that sends no metrics; never by both)."""
    expected = sum(requests.values())
    receiver.wait_for(lambda r: sum(received_requests(r, app).values()) >= expected,
                      timeout=15)
    assert received_requests(receiver, app) == requests
    assert received_durations(receiver, app) == expected
    assert flag_totals(receiver, app) == expected_flags(evaluations)
    assert receiver.problems() == []


FLASK_ROUTES = {"hello": "/hello/<user>", "checkout": "/checkout/<user>", "boom": "/boom"}


def test_flask_under_flask_run(receiver, tmp_path, launch):
    port = free_port()
    env = environment(receiver, "zero-flask", tmp_path)
    process = launch([sys.executable, "-m", "flask", "--app", "tests.apps.zero_code.flask_shop",
                     "run", "--port", str(port)], env, port)
    requests, evaluations = send_mix(port, FLASK_ROUTES)
    output = stop(process, signal.SIGINT)
    assert "impactagent:" not in output, output  # nothing failed, nothing was lost
    assert_reported(receiver, "zero-flask", requests, evaluations)


def test_fastapi_under_uvicorn_with_two_workers(receiver, tmp_path, launch):
    port = free_port()
    env = environment(receiver, "zero-fastapi", tmp_path)
    process = launch([sys.executable, "-m", "uvicorn", "tests.apps.zero_code.fastapi_shop:app",
                     "--port", str(port), "--workers", "2", "--log-level", "warning"],
                    env, port)
    requests, evaluations = send_mix(port, {"hello": "/hello/{user}",
                                            "checkout": "/checkout/{user}", "boom": "/boom"})
    wait_for_the_sdk(receiver, "zero-fastapi", evaluations)
    output = stop(process)
    assert "impactagent:" not in output, output  # nothing failed, nothing was lost
    assert_reported(receiver, "zero-fastapi", requests, evaluations)


def test_django_under_gunicorn_with_preload_and_two_workers(receiver, tmp_path, launch):
    port = free_port()
    env = environment(receiver, "zero-django", tmp_path,
                      DJANGO_SETTINGS_MODULE="tests.apps.zero_code.django_shop.settings")
    process = launch([sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                     "-b", f"127.0.0.1:{port}", "-c",
                     "tests/apps/zero_code/django_shop/gunicorn_conf.py",
                     "tests.apps.zero_code.django_shop.wsgi"], env, port)
    requests, evaluations = send_mix(port, {"hello": "hello/<str:user>",
                                            "checkout": "checkout/<str:user>",
                                            "boom": "boom"})
    output = stop(process)
    assert "impactagent:" not in output, output  # nothing failed, nothing was lost
    assert_reported(receiver, "zero-django", requests, evaluations)



def run_celery_worker(env: Dict[str, str], tmp_path: Path, before_stop: Any
                      ) -> Tuple[collections.Counter, str]:
    """18 tasks through a prefork worker (2 children) under ``impactagent run``; the
    variants the tasks decided, and the worker's output. ``before_stop(evaluations)`` runs
    once every task has run, before the warm shutdown."""
    broker, done = tmp_path / "broker", tmp_path / "done"
    broker.mkdir()
    done.mkdir()
    env = dict(env, SHOP_BROKER_DIR=str(broker), SHOP_DONE_DIR=str(done))
    worker = subprocess.Popen(
        [sys.executable, "-m", "impactagent", "run", "--", sys.executable, "-m", "celery",
         "-A", "tests.apps.zero_code.celery_shop", "worker", "-P", "prefork", "-c", "2",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        return _tasks_through(worker, broker, done, before_stop)
    finally:
        if worker.poll() is None:  # a failed test's worker
            os.killpg(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=10)


def _tasks_through(worker: subprocess.Popen, broker: Path, done: Path, before_stop: Any
                   ) -> Tuple[collections.Counter, str]:
    from celery import Celery

    producer = Celery("zero-shop-producer", set_as_current=False)
    producer.conf.update(broker_url="filesystem://", broker_transport_options={
        "data_folder_in": str(broker), "data_folder_out": str(broker),
        "control_folder": f"{broker}-control"})
    tasks = [(user, n) for n, user in enumerate(USERS * 3)]
    for user, n in tasks:
        producer.send_task("shop.checkout", args=(user, n))
    deadline = time.monotonic() + 60
    while len(list(done.iterdir())) < len(tasks) and time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"the worker exited early:\n{worker.stdout.read()}")
        time.sleep(0.1)
    if len(list(done.iterdir())) < len(tasks):
        stop(worker, signal.SIGKILL)
        pytest.fail("not every task ran within 60 s")
    variants = collections.Counter(path.read_text() for path in done.iterdir())
    before_stop(collections.Counter({("new-checkout", v): n for v, n in variants.items()}))
    output = stop(worker)  # warm shutdown: each child closes its agent on its way out
    assert worker.returncode == 0, output
    assert "impactagent:" not in output, output
    return variants, output


def expected_tasks(variants: collections.Counter) -> collections.Counter:
    return collections.Counter({("shop.checkout", "failure" if v == "disabled" else "success",
                                 v): n for v, n in variants.items()})


def test_celery_prefork_worker(receiver, tmp_path):
    env = environment(receiver, "zero-celery", tmp_path)
    variants, _ = run_celery_worker(
        env, tmp_path, lambda evaluations: wait_for_the_sdk(receiver, "zero-celery",
                                                            evaluations))
    evaluations = collections.Counter({("new-checkout", v): n for v, n in variants.items()})
    receiver.wait_for(lambda r: sum(received_tasks(r).values()) >= sum(variants.values()),
                      timeout=15)
    assert received_tasks(receiver) == expected_tasks(variants)
    assert flag_totals(receiver, "zero-celery") == expected_flags(evaluations)
    assert receiver.problems() == []


def received_tasks(receiver: Receiver) -> collections.Counter:
    return task_counts(receiver.totals("zero-celery")["counters"])


def task_counts(counters: Dict[Any, int]) -> collections.Counter:
    """Task counts by name, state and new-checkout's state, from ``(name, labels): value``."""
    counts: collections.Counter = collections.Counter()
    for (name, labels), value in counters.items():
        if name == "celery_tasks_total":
            label = dict(labels)
            counts[label["task"], label["state"], label["new_checkout"]] += value
    return counts


def test_a_client_that_sends_no_metrics_has_its_flags_counted_by_impactagent(
        receiver, tmp_path, launch):
    port = free_port()
    env = environment(receiver, "zero-flask-quiet-sdk", tmp_path, SHOP_SDK_METRICS="off")
    process = launch([sys.executable, "-m", "flask", "--app", "tests.apps.zero_code.flask_shop",
                     "run", "--port", str(port)], env, port)
    requests, evaluations = send_mix(port, FLASK_ROUTES, rounds=1)
    output = stop(process, signal.SIGINT)
    assert "impactagent:" not in output, output
    assert_reported(receiver, "zero-flask-quiet-sdk", requests, evaluations)


def test_a_plain_wsgi_app_under_gunicorn(receiver, tmp_path, launch):
    port = free_port()
    env = environment(receiver, "zero-wsgi", tmp_path)
    process = launch([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                     "tests.apps.zero_code.plain_wsgi:application"], env, port)
    statuses = collections.Counter(call(port, "GET", path)[0]
                                   for path in ("/items/1", "/items/2", "/", "/items/3"))
    output = stop(process)
    assert "impactagent:" not in output, output
    assert statuses == {200: 3, 404: 1}
    receiver.wait_for(lambda r: sum(received_requests(r, "zero-wsgi").values()) >= 4)
    # No framework names the route, and no client knows a flag: no flag label.
    assert received_requests(receiver, "zero-wsgi") == {
        ("GET", "unmatched", "2xx", None, None): 3, ("GET", "unmatched", "4xx", None, None): 1}


def test_the_receiver_serves_features_behind_its_token(tmp_path):
    with Receiver(features=FEATURES, token="secret") as guarded:
        url = guarded.api_url + "/client/features"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "secret"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.loads(answer.read()) == FEATURES
    (tmp_path / "features.json").write_text("[1, 2]")
    ran = subprocess.run([sys.executable, "-m", "impactagent", "receive", "--features",
                          str(tmp_path / "features.json")], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode == 2
    assert ran.stderr.startswith("impactagent receive: --features ") and "features document" \
        in ran.stderr and ran.stderr.count("\n") == 1


def test_django_runserver_through_its_autoreloader(receiver, tmp_path, launch):
    # The child the autoreloader starts serves; the flags are named, as the client is
    # made at the first request (after the middleware that labels it).
    port = free_port()
    env = environment(receiver, "zero-runserver", tmp_path,
                      IMPACTAGENT_FLAGS="dark-mode,new-checkout")
    process = launch([sys.executable, "tests/apps/zero_code/django_shop/manage.py",
                     "runserver", f"127.0.0.1:{port}"], env, port)
    requests, evaluations = send_mix(port, {"hello": "hello/<str:user>",
                                            "checkout": "checkout/<str:user>",
                                            "boom": "boom"}, rounds=1)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the reloader and its child
    output = stop(process, signal.SIGINT)
    assert "impactagent:" not in output, output
    assert_reported(receiver, "zero-runserver", requests, evaluations)


def test_flask_run_stopped_by_sigterm_still_sends_its_last_window(receiver, tmp_path, launch):
    # The development server has no SIGTERM handler: the agent's, installed when it was
    # built in the main thread, closes it (the SDK, which has none, loses its last counts).
    port = free_port()
    env = environment(receiver, "zero-flask-sigterm", tmp_path)
    process = launch([sys.executable, "-m", "flask", "--app", "tests.apps.zero_code.flask_shop",
                     "run", "--port", str(port)], env, port)
    requests, _ = send_mix(port, FLASK_ROUTES, rounds=1)
    output = stop(process, signal.SIGTERM)
    assert process.returncode == -signal.SIGTERM, output  # ended as SIGTERM would end it
    assert "impactagent:" not in output, output
    receiver.wait_for(lambda r: sum(received_requests(r, "zero-flask-sigterm").values())
                      >= sum(requests.values()))
    assert received_requests(receiver, "zero-flask-sigterm") == requests


def test_flask_under_gunicorn_is_counted_once_by_its_rule(receiver, tmp_path, launch):
    # gunicorn's own instrumentation leaves a Flask app to Flask's, which knows the route.
    port = free_port()
    env = environment(receiver, "zero-flask-gunicorn", tmp_path)
    process = launch([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                     "tests.apps.zero_code.flask_shop:app"], env, port)
    requests, _ = send_mix(port, FLASK_ROUTES, rounds=1)
    output = stop(process)
    assert "impactagent:" not in output, output
    receiver.wait_for(lambda r: sum(received_requests(r, "zero-flask-gunicorn").values())
                      >= sum(requests.values()))
    assert received_requests(receiver, "zero-flask-gunicorn") == requests
