"""What the real server stored, in the shape of ``tests.workload`` totals so that a test can
compare them with ``==``.

- Flag counts: read from the server's own tables (``client_metrics_env`` and its variants),
  as its admin API would sum them. Not through ``/api/admin/client-metrics/features/{flag}/raw``:
  that answer holds at most 100 apps per flag (which 100 depends on the table's order: a
  long differential run saw whole windows "lost" that the table held), and only rows stamped
  within ``hoursBack`` of now (a row is stamped with the start of its hour: at 11:15,
  ``hoursBack=1`` hides the 10:00 row). The server buffers counts and writes them about every
  5 s, so reads poll until the numbers stop moving.
- Impact metrics: ``GET /internal-backstage/impact/metrics``, Prometheus text of what the
  server ingested, with its own labels ``origin`` and ``metric_type`` added to ours.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Tuple

import requests

from tests.prometheus_text import impact_totals

if TYPE_CHECKING:
    from tests.e2e.stack import Postgres

#: The server's flush of buffered flag counts to the database runs every 5 s.
SERVER_WRITE_PERIOD = 5.0
SERVER_LABELS = {"origin", "metric_type"}


_STORED_FLAGS = """
select coalesce(json_agg(r), '[]') from (
  select m.app_name as app, m.feature_name as flag, m.environment as env, m.timestamp as ts,
         m.yes, m.no, v.variant, v.count
  from client_metrics_env m left join client_metrics_env_variants v
    on v.feature_name = m.feature_name and v.app_name = m.app_name
   and v.environment = m.environment and v.timestamp = m.timestamp
  where m.feature_name in ({flags})) r
"""


def stored_flags(postgres: Postgres, flags: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    """Every app's stored counts of ``flags``: {app: {flag: {yes, no, variants}}}. An hourly
    row's yes and no count once, however many variant rows join it (as the admin API sums)."""
    quoted = ", ".join("'" + flag.replace("'", "''") + "'" for flag in flags)
    held: Dict[str, Dict[str, Any]] = {}
    rows_seen = set()
    for row in postgres.query_json(_STORED_FLAGS.format(flags=quoted)):
        total = held.setdefault(row["app"], {}).setdefault(
            row["flag"], {"yes": 0, "no": 0, "variants": {}})
        key = (row["app"], row["flag"], row["env"], row["ts"])
        if key not in rows_seen:
            rows_seen.add(key)
            total["yes"] += row["yes"]
            total["no"] += row["no"]
        if row["variant"] is not None:
            variants = total["variants"]
            variants[row["variant"]] = variants.get(row["variant"], 0) + row["count"]
    return held


class UnleashAdmin:
    """The admin API calls the tests need, with the admin token, and the stored counts."""

    def __init__(self, url: str, admin_token: str, postgres: Postgres) -> None:
        self.url = url
        self.postgres = postgres
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: no proxy from the environment
        self.session.headers["Authorization"] = admin_token

    def create_flag(self, name: str) -> None:
        response = self.session.post(f"{self.url}/api/admin/projects/default/features",
                                     json={"name": name, "type": "release"}, timeout=10)
        response.raise_for_status()

    def flag_counts(self, flag: str, app_name: str) -> Dict[str, Any]:
        """The yes, no and variant counts the server holds for ``flag`` from ``app_name``."""
        stored = stored_flags(self.postgres, [flag]).get(app_name, {})
        return stored.get(flag, {"yes": 0, "no": 0, "variants": {}})

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
