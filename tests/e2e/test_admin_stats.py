"""Instance statistics from the real server: the checksum it signs them with is the one
impactagent recomputes, through the client and through ``impactagent stats``."""

from __future__ import annotations

import os
import subprocess
import sys

from impactagent.admin.client import AdminClient
from tests.e2e.conftest import RealServer
from tests.workload import FLAGS


def test_the_real_servers_statistics_verify(unleash: RealServer) -> None:
    assert unleash.stack.server is not None
    statistics = AdminClient(unleash.url, unleash.stack.server.admin_token).instance_statistics()
    assert statistics.verified, (statistics.checksum, statistics.recomputed)
    assert statistics.data["featureToggles"] >= len(FLAGS)  # the session's flags
    assert statistics.data["versionOSS"].startswith("8.2.")

    ran = subprocess.run(
        [sys.executable, "-m", "impactagent", "stats", "--url", unleash.url + "/api"],
        env={**os.environ, "UNLEASH_ADMIN_TOKEN": unleash.stack.server.admin_token},
        capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert f"checksum        ok ({statistics.checksum})" in ran.stdout
    assert unleash.stack.server.admin_token not in ran.stdout + ran.stderr
