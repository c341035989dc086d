"""The main job against the real thing: ``impactagent demo --url`` reports to the real
unleash-server, and the server's stored flag counts are the ones the demo recorded."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.e2e.conftest import RealServer


def test_the_demo_reports_to_a_real_server_and_the_server_holds_its_counts(
        unleash: RealServer) -> None:
    unleash.wait_until_flags_are_known()
    ran = subprocess.run(
        [sys.executable, "-m", "impactagent", "demo", "--requests", "600", "--pace", "0.3",
         "--url", unleash.url + "/api", "--token", unleash.backend_token],
        capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "all counts accounted for" in ran.stdout
    # Against a real server the demo holds the agent's ledger to account: every event the
    # agent had was delivered.
    assert re.search(r"^events\s+([1-9][\d,]*)\s+\1$", ran.stdout, re.M), ran.stdout
    assert unleash.backend_token not in ran.stdout + ran.stderr

    # 600 users: a third get no variant ("disabled", a no), a quarter see dark mode.
    expected = {"new-checkout": {"yes": 400, "no": 200,
                                 "variants": {"blue": 200, "green": 200, "disabled": 200}},
                "dark-mode": {"yes": 150, "no": 450, "variants": {}}}
    stored = unleash.admin.settled_totals("demo-shop", tuple(expected),
                                          lambda totals: totals["flags"] == expected)
    assert stored["flags"] == expected
    requests = sum(n for (name, _labels), n in stored["counters"].items()
                   if name == "http_requests_total")
    assert requests == 600
