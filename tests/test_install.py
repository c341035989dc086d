"""What ``pip install impactagent`` brings into an app: the core and its three runtime
dependencies, nothing for the development tools (the receiver's rules are the package's own
code, no schema library)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RECORD = """
import impactagent
agent = impactagent.Agent("shop")
agent.counter("jobs_total", "Jobs").inc(3)
agent.record_flag("new-checkout", True, "blue")
(body,) = agent.build_payloads(agent.collect())
from impactagent.server_rules.validation import check_body
print(body.document["bucket"]["toggles"], check_body(body.body))
"""


def test_a_plain_install_brings_only_the_runtime_dependencies(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", str(ROOT)],
                               capture_output=True, text=True, timeout=600, env=env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120, env=env)
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"impactagent", "requests", "tenacity", "ulid-py"} <= names
    assert "jsonschema" not in names and "prometheus-client" not in names
    ran = subprocess.run([python, "-c", RECORD], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "{'new-checkout': {'yes': 1, 'no': 0, 'variants': {'blue': 1}}} []"
