"""The gunicorn hook from the package: ``gunicorn -c python:impactagent.integrations.gunicorn``
closes each worker's agent as it leaves, under real gunicorn, and says what is missing."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests

from tests import child
from tests.child import ROOT
from tests.loopback import listening_socket


def run_gunicorn(server, agent_reference: str | None, requests_to_send: int) -> str:
    """Serve tests/apps/gunicorn_flask.py with the package's hook as the whole config, send
    requests, stop the master with SIGTERM; return gunicorn's output."""
    with listening_socket() as listener:
        port = listener.getsockname()[1]
        variables = {"TEST_UNLEASH_URL": server.api_url}
        if agent_reference is not None:
            variables["IMPACTAGENT_AGENT"] = agent_reference
        env = child.environment(variables)
        if agent_reference is None:
            env.pop("IMPACTAGENT_AGENT", None)
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:impactagent.integrations.gunicorn",
             "--bind", f"fd://{listener.fileno()}", "--workers", "1",
             "tests.apps.gunicorn_flask:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()])
    try:
        with requests.Session() as http:
            http.trust_env = False
            for i in range(requests_to_send):  # the first waits in the listen queue
                answer = http.get(f"http://127.0.0.1:{port}/checkout/u{i}", timeout=60,
                                  headers={"Connection": "close"})
                assert answer.status_code == 200, answer.text
    finally:
        master.send_signal(signal.SIGTERM)
        output = master.communicate(timeout=60)[0].decode(errors="replace")
    assert master.returncode == 0, output
    return output


def test_the_packages_hook_closes_the_workers_agent(server):
    pytest.importorskip("gunicorn")
    pytest.importorskip("flask")
    output = run_gunicorn(server, "tests.apps.gunicorn_flask:agent", 3)
    assert output.count("closed its agent: ok=True") == 1, output
    assert server.totals()["flags"]["new-checkout"] == {"yes": 0, "no": 3, "variants": {}}


def test_the_hook_without_its_variable_says_what_to_set(server):
    pytest.importorskip("gunicorn")
    pytest.importorskip("flask")
    output = run_gunicorn(server, None, 1)
    assert "set IMPACTAGENT_AGENT to where your agent is, as module:attribute" in output
    assert "closed its agent" not in output


def test_the_hook_naming_something_else_says_so_in_one_line(server):
    pytest.importorskip("gunicorn")
    pytest.importorskip("flask")
    output = run_gunicorn(server, "tests.apps.gunicorn_flask:app", 1)
    assert "Traceback" not in output, output
    warning = [line for line in output.splitlines() if "IMPACTAGENT_AGENT=" in line]
    assert len(warning) == 1, output
    assert "tests.apps.gunicorn_flask:app is a Flask, not an impactagent.Agent" in warning[0]
