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


def test_the_real_servers_csv_statistics_verify(unleash: RealServer) -> None:
    """The CSV form (``GET /api/admin/instance-admin/statistics/csv``) carries the same
    checksum over its values as text, through the client and through ``stats --format csv``,
    which prints the server's CSV as it came and the verdict on stderr."""
    assert unleash.stack.server is not None
    admin = AdminClient(unleash.url + "/api/", unleash.stack.server.admin_token)
    statistics = admin.instance_statistics_csv()
    assert statistics.verified, (statistics.checksum, statistics.recomputed)
    assert statistics.csv is not None and statistics.csv.startswith('"timestamp","instanceId"')
    assert statistics.data["versionOSS"] == admin.instance_statistics().data["versionOSS"]

    ran = subprocess.run(
        [sys.executable, "-m", "impactagent", "stats", "--format", "csv", "--url", unleash.url],
        env={**os.environ, "UNLEASH_ADMIN_TOKEN": unleash.stack.server.admin_token},
        capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    header, values = ran.stdout.splitlines()
    assert header == statistics.csv.splitlines()[0]
    assert values.startswith('"') and values.endswith(f'"{ran.stderr.split("(")[1][:-2]}"')
    assert ran.stderr.startswith("checksum        ok (")
    assert unleash.stack.server.admin_token not in ran.stdout + ran.stderr
