"""``impactagent run`` itself: its mistakes, ``--dry-run``, the bootstrap, the switches, and
an instrumentation that fails. Each test starts real interpreters (the bootstrap is a
``sitecustomize``: only a new interpreter shows what it does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

from impactagent.autoinstrument.cli import BOOTSTRAP, INSTRUMENTATIONS
from impactagent.autoinstrument.instrumentations import INSTALLERS

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "default:development.5ecret-never-shown"


def clean_env(**extra: str) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNLEASH_", "IMPACTAGENT_")) and key != "PYTHONPATH"}
    env.update(extra)
    return env


def run(args: List[str], env: Dict[str, str], timeout: float = 60
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "impactagent", "run", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def python(script: str) -> List[str]:
    return ["--", sys.executable, "-c", textwrap.dedent(script)]


@pytest.mark.parametrize("args, env, says", [
    ([], {}, "give the command to start after --"),
    (["--"], {}, "give the command to start after --"),
    (["--", "no-such-program-here"], {}, "no-such-program-here: command not found"),
    (["--", __file__], {}, f"{__file__} is not executable; run it with its interpreter"),
    (["--", "python"], {"IMPACTAGENT_DISABLED": "flask,djnago"},
     "IMPACTAGENT_DISABLED: unknown instrumentation 'djnago'"),
    (["--", "python"], {"UNLEASH_URL": "http://127.0.0.1:9/api"},
     "UNLEASH_API_TOKEN is not set"),
    (["--", "python"], {"UNLEASH_URL": "ftp://x", "UNLEASH_API_TOKEN": TOKEN},
     "url must be an http(s) URL"),
    (["--", "python"], {"IMPACTAGENT_FLUSH_INTERVAL": "soon"},
     "IMPACTAGENT_FLUSH_INTERVAL='soon' is not a valid number"),
    (["--", "python"], {"IMPACTAGENT_FLAGS": "new-checkout,route"},
     "IMPACTAGENT_FLAGS: 'route' cannot label the metrics"),
    (["--", "python"], {"IMPACTAGENT_FLAGS": "new-checkout,new_checkout"},
     "IMPACTAGENT_FLAGS: 'new_checkout' cannot label the metrics"),
])
def test_a_mistake_is_one_line_and_exit_2(args, env, says):
    result = run(args, clean_env(**env))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("impactagent run: ") and says in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert TOKEN not in result.stderr


def test_dry_run_says_what_would_be_instrumented_and_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    result = run(["--dry-run", *python(f"open({str(marker)!r}, 'w')")],
                 clean_env(UNLEASH_URL="http://user:pa55@127.0.0.1:9/api",
                           UNLEASH_API_TOKEN=TOKEN,
                           UNLEASH_APP_NAME="shop", IMPACTAGENT_FLAGS="new-checkout, dark-mode",
                           IMPACTAGENT_DISABLED="celery"))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    out = result.stdout
    assert TOKEN not in out and "api_key = set (not shown)" in out
    assert "pa55" not in out
    assert "app_name = shop" in out
    assert "report to http://127.0.0.1:9/api/client/metrics every 60 s" in out
    assert "flags = new-checkout, dark-mode (IMPACTAGENT_FLAGS)" in out
    states = {line.split()[0]: line.split()[1] for line in out.splitlines()
              if line.startswith("  ") and line.split()[0] in INSTRUMENTATIONS}
    assert states == {**{name: "on" for name in INSTRUMENTATIONS}, "celery": "off"}


def test_dry_run_without_a_url_records_only_and_names_the_command():
    result = run(["--dry-run", "--", sys.executable, "app.py"], clean_env())
    assert result.returncode == 0, result.stderr
    assert "mode = record only (no UNLEASH_URL)" in result.stdout
    assert f"app_name = {Path(sys.executable).name}" in result.stdout  # UNLEASH_APP_NAME unset


def test_the_bootstrap_watches_each_installer_module():
    text = (Path(BOOTSTRAP) / "sitecustomize.py").read_text()
    for module in INSTALLERS:
        assert f'"{module}"' in text
    assert {name for name, _ in INSTALLERS.values()} == set(INSTRUMENTATIONS)


def test_a_process_importing_none_of_the_libraries_gets_nothing_but_the_hook():
    result = run(python("""
        import json, sys
        print(json.dumps({
            "impactagent": sorted(m for m in sys.modules if m.startswith("impactagent")),
            "finder": [type(f).__name__ for f in sys.meta_path][:1],
            "threads": __import__("threading").active_count()}))
    """), clean_env(UNLEASH_URL="http://127.0.0.1:9/api", UNLEASH_API_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"impactagent": [], "finder": ["_Finder"],
                                         "threads": 1}


def test_the_command_exits_as_it_would_without_it():
    result = run(python("import sys; print('out'); sys.exit(7)"), clean_env())
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "")


def test_another_sitecustomize_on_the_path_still_runs(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['THEIRS'] = 'ran'\n")
    result = run(python("""
        import os, sys
        print(os.environ.get("THEIRS"), type(sys.meta_path[0]).__name__)
    """), clean_env(PYTHONPATH=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran", "_Finder"]


FLASK_APP = """
    import flask
    app = flask.Flask("shop")

    @app.get("/items/<item>")
    def item(item):
        return {"item": item}

    client = app.test_client()
    statuses = [client.get(path, buffered=True).status_code
                for path in ("/items/1", "/items/2", "/nope")]
    from impactagent.autoinstrument.instrumentations import PROCESS
    series = {child.label_values: child.value for family in PROCESS.agent().metrics.families()
              if family.name == "http_server_requests_total" for child in family.series()}
    print(statuses, sorted(series.items()))
"""


def test_flask_counts_by_rule_without_a_url():
    pytest.importorskip("flask")
    result = run(python(FLASK_APP), clean_env(UNLEASH_APP_NAME="shop"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("[200, 200, 404] [(('GET', '/items/<item>', '2xx'), 2), "
                                     "(('GET', 'unmatched', '4xx'), 1)]")
    assert result.stderr == ""


def test_a_disabled_instrumentation_leaves_the_library_alone():
    pytest.importorskip("flask")
    result = run(python(FLASK_APP), clean_env(UNLEASH_APP_NAME="shop",
                                              IMPACTAGENT_DISABLED="flask"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[200, 200, 404] []"


def test_an_instrumentation_that_fails_is_logged_once_and_the_app_runs_on():
    pytest.importorskip("flask")
    # Set another way than through `impactagent run` (which refuses it): the agent cannot
    # be built, so the Flask instrumentation fails at the first request.
    env = clean_env(UNLEASH_APP_NAME="shop", IMPACTAGENT_FLUSH_INTERVAL="-1",
                    PYTHONPATH=os.pathsep.join([BOOTSTRAP, str(ROOT)]))
    script = """
        import flask
        app = flask.Flask("shop")
        app.get("/items/<item>")(lambda item: {"item": item})
        client = app.test_client()
        print([client.get("/items/1").status_code for _ in range(3)])
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[200, 200, 200]"
    assert result.stderr.count("the flask instrumentation failed and is off") == 1
    assert "flush_interval must be positive" in result.stderr


def test_a_failure_in_the_sdk_wrapper_never_reaches_the_app():
    pytest.importorskip("UnleashClient")
    # A client that sends no metrics has its evaluations counted by the agent, which
    # cannot be built here: the answers still come back, and it is said once.
    env = clean_env(UNLEASH_APP_NAME="shop", IMPACTAGENT_MAX_FLAGS="0",
                    PYTHONPATH=os.pathsep.join([BOOTSTRAP, str(ROOT)]))
    script = """
        from UnleashClient import UnleashClient
        client = UnleashClient("http://127.0.0.1:9/api", "shop", disable_metrics=True,
                               disable_registration=True)
        print([client.is_enabled("dark-mode") for _ in range(3)],
              client.get_variant("new-checkout")["name"])
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[False, False, False] disabled"
    assert result.stderr.count("the unleash instrumentation failed and is off") == 1


def test_an_app_with_its_own_middleware_is_counted_once():
    pytest.importorskip("flask")
    result = run(python("""
        from fastapi import FastAPI
        from starlette.testclient import TestClient
        import impactagent
        from impactagent.integrations.asgi import ImpactMiddleware

        agent = impactagent.Agent("own")
        app = FastAPI()
        app.add_middleware(ImpactMiddleware, agent=agent)
        app.get("/items/{item}")(lambda item: {})
        with TestClient(app) as client:
            client.get("/items/1")
        from impactagent.autoinstrument.instrumentations import PROCESS
        def requests(a):
            return sum(child.value for family in a.metrics.families()
                       if family.name == "http_server_requests_total"
                       for child in family.series())
        print(requests(agent), requests(PROCESS.agent()))
    """), clean_env(UNLEASH_APP_NAME="shop"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0"]


def test_concurrent_first_requests_make_the_middleware_once_and_serve_each_request():
    import threading

    from impactagent.autoinstrument.instrumentations import DeferredWSGI

    made: List[int] = []
    served: List[str] = []
    gate = threading.Barrier(8)

    def app(environ: dict, start_response: object) -> List[bytes]:
        served.append(environ["PATH_INFO"])
        return [b""]

    def wrap(inner: object) -> object:
        made.append(1)
        return inner

    deferred = DeferredWSGI(app, "flask", wrap)

    def first_request(n: int) -> None:
        gate.wait(5)
        deferred({"PATH_INFO": f"/{n}"}, None)

    threads = [threading.Thread(target=first_request, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert made == [1]
    assert sorted(served) == [f"/{n}" for n in range(8)]


def test_flags_whose_label_is_taken_are_left_out_not_fatal():
    from impactagent.autoinstrument.cli import usable_flags

    assert usable_flags(["state", "new-checkout", "new_checkout", "dark-mode", "route"]) == (
        ("new-checkout", "dark-mode"), ("state", "new_checkout", "route"))


def test_a_python_without_impactagent_says_so_once_and_runs(tmp_path):
    # The bootstrap on the path of an interpreter that cannot import impactagent (here:
    # isolated from site-packages, and impactagent hidden): one line, then the app runs.
    fake = tmp_path / "flask"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (tmp_path / "UnleashClient.py").write_text("")
    (tmp_path / "impactagent").mkdir()
    (tmp_path / "impactagent" / "__init__.py").write_text("raise ImportError('not here')\n")
    env = clean_env(PYTHONPATH=os.pathsep.join([BOOTSTRAP, str(tmp_path)]))
    result = subprocess.run([sys.executable, "-c", "import flask, UnleashClient; print('ran')"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran\n"
    assert result.stderr.count("impactagent: cannot instrument") == 1, result.stderr


def test_instrumenting_one_library_imports_no_other():
    pytest.importorskip("UnleashClient")
    result = run(python("""
        import json, sys
        import UnleashClient  # instrumented: impactagent is imported now, the agent built
        libraries = ("flask", "django", "starlette", "fastapi", "celery", "gunicorn",
                     "prometheus_client", "opentelemetry")
        instrumented = "impactagent.autoinstrument.instrumentations" in sys.modules
        print(json.dumps({"instrumented": instrumented,
                          "others": [name for name in libraries if name in sys.modules]}))
    """), clean_env(UNLEASH_APP_NAME="shop"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"instrumented": True, "others": []}
