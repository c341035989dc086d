"""What the real server stored, read back through its own APIs, in the shape of
``tests.workload`` totals so that a test can compare them with ``==``.

- Flag counts: ``GET /api/admin/client-metrics/features/{flag}/raw?hoursBack=2`` (admin
  token), hourly rows per app and environment. Two hours back, because a row is stamped with
  the start of its hour and ``hoursBack=1`` keeps rows stamped within the last 60 minutes: at
  11:15 the 10:00 row, written at 10:59, is not shown. The server buffers counts and writes
  them to the database about every 5 s, so reads poll until the numbers stop moving.
- Impact metrics: ``GET /internal-backstage/impact/metrics``, Prometheus text of what the
  server ingested, with its own labels ``origin`` and ``metric_type`` added to ours.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Tuple

import requests

from tests.prometheus_text import impact_totals

#: The server's flush of buffered flag counts to the database runs every 5 s.
SERVER_WRITE_PERIOD = 5.0
SERVER_LABELS = {"origin", "metric_type"}


class UnleashAdmin:
    """The admin API calls the tests need, with the admin token."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: no proxy from the environment
        self.session.headers["Authorization"] = admin_token

    def create_flag(self, name: str) -> None:
        response = self.session.post(f"{self.url}/api/admin/projects/default/features",
                                     json={"name": name, "type": "release"}, timeout=10)
        response.raise_for_status()

    def flag_counts(self, flag: str, app_name: str) -> Dict[str, Any]:
        """The yes, no and variant counts the server holds for ``flag`` from ``app_name``."""
        response = self.session.get(
            f"{self.url}/api/admin/client-metrics/features/{flag}/raw",
            params={"hoursBack": 2}, timeout=10)
        response.raise_for_status()
        total: Dict[str, Any] = {"yes": 0, "no": 0, "variants": {}}
        answer = response.json()
        rows = answer["data"] if isinstance(answer, dict) else answer  # 8.x wraps the rows
        for row in rows:
            if row["appName"] != app_name:
                continue
            total["yes"] += row["yes"]
            total["no"] += row["no"]
            for variant, n in (row.get("variants") or {}).items():
                total["variants"][variant] = total["variants"].get(variant, 0) + n
        return total

    def impact_totals(self, app_name: str) -> Dict[str, Dict[Any, Any]]:
        """Counters, gauges and histograms the server ingested from ``app_name``."""
        response = self.session.get(f"{self.url}/internal-backstage/impact/metrics", timeout=10)
        response.raise_for_status()
        return impact_totals(response.text, app_name, ignore_labels=SERVER_LABELS)

    def totals(self, app_name: str, flags: Tuple[str, ...]) -> Dict[str, Any]:
        """Everything stored for ``app_name``, as ``tests.workload.record`` predicts it."""
        stored: Dict[str, Any] = {"flags": {}}
        for flag in flags:
            counts = self.flag_counts(flag, app_name)
            if counts["yes"] or counts["no"]:
                stored["flags"][flag] = counts
        stored.update(self.impact_totals(app_name))
        return stored

    def settled_totals(self, app_name: str, flags: Tuple[str, ...],
                       until: Callable[[Dict[str, Any]], bool], timeout: float = 30.0
                       ) -> Dict[str, Any]:
        """Poll ``totals`` until ``until(totals)`` holds, then once more a write period later,
        so that counts still in the server's buffer (a late duplicate, say) are seen too."""
        deadline = time.monotonic() + timeout
        stored = self.totals(app_name, flags)
        while not until(stored) and time.monotonic() < deadline:
            time.sleep(0.5)
            stored = self.totals(app_name, flags)
        time.sleep(SERVER_WRITE_PERIOD + 1)
        return self.totals(app_name, flags)
