"""Run a Python script in a child interpreter that imports *this* checkout's impactagent.

Subprocess tests start a real interpreter (to test signals, exits and forks as they happen
in production); the repository root goes first on its path so that the child imports the
code under test, whatever else is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Optional

ROOT = Path(__file__).resolve().parent.parent


def environment(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def popen(script: str, *, env: Optional[Dict[str, str]] = None, **options: Any
          ) -> subprocess.Popen:
    """Start ``script`` (dedented) with stdout and stderr piped as text."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                            env=environment(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def run(script: str, *, timeout: float = 60, env: Optional[Dict[str, str]] = None
        ) -> subprocess.CompletedProcess:
    """Run ``script`` to its end (bounded by ``timeout``)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                          env=environment(env), capture_output=True, text=True,
                          timeout=timeout)
