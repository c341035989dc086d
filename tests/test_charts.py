"""Charts as code against a local server implementing the seed's chart API contract, and the
instance statistics checksum against a server that tampers with it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import impactagent
from impactagent import Chart
from impactagent.admin.client import (
    AdminClient,
    AdminError,
    apply,
    describe,
    plan,
    statistics_checksum,
)
from impactagent.core.charts import ChartConfig
from tests.chart_server import ChartServer
from tests.loopback import LoopbackHandler, LoopbackServer

ADMIN = "*:*.charts-test-admin-token"


@pytest.fixture
def server():
    with ChartServer(ADMIN) as running:
        yield running


def shop(aggregation="rps"):
    agent = impactagent.Agent("shop")
    agent.counter("checkout_total", "Checkouts", labels=("route",),
                  chart=Chart(time_range="day", aggregation=aggregation,
                              label_selectors={"environment": ["production"]}))
    agent.histogram("checkout_seconds", "Checkout latency", chart=[
        Chart(time_range="week", aggregation="p95", title="Checkout p95", y_axis_min="zero"),
        Chart(time_range="hour", aggregation="p99", flag="new-checkout")])
    return agent


# -- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"time_range": "year"}, "time_range must be one of hour, day, week, month"),
    ({"aggregation": "median"}, "aggregation must be one of rps, count, avg, sum, p50"),
    ({"y_axis_min": "0"}, "y_axis_min must be one of auto, zero"),
    ({"source": "grafana"}, "source must be one of internal, external"),
    ({"label_selectors": {"environment": "production"}}, "lists of values"),
])
def test_a_bad_chart_fails_where_it_is_written(options, message):
    with pytest.raises(ValueError, match=message):
        Chart(**options)


def test_a_chart_must_fit_its_metric():
    agent = impactagent.Agent("shop")
    with pytest.raises(ValueError, match="p95 is a percentile, which only a histogram has"):
        agent.counter("a_total", "A", chart=Chart(aggregation="p95"))
    with pytest.raises(ValueError, match=r"selects unknown labels \['region'\]"):
        agent.gauge("b", "B", labels=("route",),
                    chart=Chart(aggregation="avg", label_selectors={"region": ["eu"]}))


def test_the_servers_answer_is_read_with_every_enum_checked():
    answer = {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
              "metricName": "unleash_counter_feature_toggle_usage_total", "timeRange": "day",
              "aggregationMode": "rps", "labelSelectors": {"environment": ["development"]},
              "displayName": "feature_toggle_usage_total", "yAxisMin": "auto",
              "source": "internal", "step": "15m", "title": "Feature Toggle Usage",
              "mode": "write"}  # the seed's example response, as it is
    config = ChartConfig.from_answer(answer)
    assert (config.display_name, config.step, config.mode) == (
        "feature_toggle_usage_total", "15m", "write")
    with pytest.raises(ValueError, match="step must be one of 1m, 15m, 3h, 1d"):
        ChartConfig.from_answer({**answer, "step": "5m"})
    with pytest.raises(ValueError, match="without 'timeRange'"):
        ChartConfig.from_answer({k: v for k, v in answer.items() if k != "timeRange"})


# -- plan and apply ---------------------------------------------------------------------------


def test_plan_apply_and_a_second_apply_that_changes_nothing(server):
    admin = AdminClient(server.url, ADMIN)
    declared = shop().chart_configs()
    first = plan(admin, declared)
    assert [c.action for c in first] == ["create", "create", "create"]
    saved = apply(admin, first)
    assert [c.id for c in saved] == [c.id for c in declared]  # the ids are ours
    assert {c.step for c in saved} == {"15m", "3h", "1m"} and {c.mode for c in saved} == {
        "write"}
    stored = {c["id"]: c for c in server.all_configs()}
    assert len(stored) == 3

    # A second run of the same code: the same ids, nothing to do, nothing duplicated.
    again = shop().chart_configs()
    assert [c.id for c in again] == [c.id for c in declared]
    second = plan(admin, again)
    assert [c.action for c in second] == ["unchanged"] * 3
    posts = sum(method == "POST" for method, _ in server.requests)
    assert apply(admin, second) == []
    assert sum(method == "POST" for method, _ in server.requests) == posts
    assert {c["id"]: c for c in server.all_configs()} == stored
    assert describe(second).splitlines()[-1] == (
        "0 to create, 0 to update, 3 unchanged, 0 unmanaged")


def test_a_changed_chart_is_updated_in_place_and_charts_made_by_hand_are_left_alone(server):
    admin = AdminClient(server.url, ADMIN)
    apply(admin, plan(admin, shop().chart_configs()))
    by_hand = admin.save_chart(ChartConfig("unleash_gauge_queue_depth", "day", "avg"))

    changed = plan(admin, shop(aggregation="count").chart_configs())
    assert [c.action for c in changed] == ["update", "unchanged", "unmanaged", "unchanged"]
    assert changed[0].differences == [("aggregationMode", "count", "rps")]
    assert "aggregationMode: 'rps' -> 'count'" in describe(changed)
    apply(admin, changed)
    stored = {c["id"]: c for c in server.all_configs()}
    assert len(stored) == 4 and stored[by_hand.id]["metricName"] == "unleash_gauge_queue_depth"
    assert stored[changed[0].config.id]["aggregationMode"] == "count"


def test_the_admin_api_refuses_a_wrong_token(server):
    with pytest.raises(AdminError, match="HTTP 401") as raised:
        AdminClient(server.url, "default:production.client-token").charts(
            shop().chart_configs()[0].scope)
    assert "client-token" not in str(raised.value)


def test_the_charts_command(server, tmp_path):
    (tmp_path / "shop_metrics.py").write_text(textwrap.dedent("""
        import impactagent
        from impactagent import Chart

        agent = impactagent.Agent("shop")
        agent.counter("checkout_total", "Checkouts", chart=Chart(aggregation="rps"))
        agent.histogram("checkout_seconds", "Latency", chart=Chart(aggregation="p99"))
    """))
    env = {**os.environ, "UNLEASH_ADMIN_TOKEN": ADMIN}

    def charts(action):
        return subprocess.run(
            [sys.executable, "-m", "impactagent", "charts", action, "--url", server.url + "/api",
             "--agent", "shop_metrics:agent"], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=60)

    planned = charts("plan")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[-1] == "2 to create, 0 to update, 0 unchanged, 0 unmanaged"
    assert server.all_configs() == []  # plan changes nothing
    applied = charts("apply")
    assert applied.returncode == 0 and "applied: 2 chart(s) saved" in applied.stdout
    assert charts("apply").stdout.splitlines()[-2] == (
        "0 to create, 0 to update, 2 unchanged, 0 unmanaged")
    assert len(server.all_configs()) == 2
    assert ADMIN not in planned.stdout + planned.stderr + applied.stdout + applied.stderr


# -- instance statistics ----------------------------------------------------------------------


STATS = {"instanceId": "7d3a9c1e-0b1f-4c7e-9d2a-5b6c7d8e9f00", "users": 12,
         "featureToggles": 47, "projects": 3, "roles": 5, "groups": 12, "environments": 3,
         "segments": 19, "versionOSS": "8.2.0"}


class StatsServer(LoopbackServer):
    def __init__(self, document):
        self.document = document
        super().__init__()

    @property
    def handler_class(self):
        server = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                if self.headers.get("Authorization") != ADMIN:
                    return self.answer(401, b"{}")
                self.answer(200, json.dumps(server.document).encode())

        return Handler


def test_the_checksum_is_the_servers_formula():
    # instanceId, users, featureToggles, projects, roles, groups, environments, segments
    joined = "7d3a9c1e-0b1f-4c7e-9d2a-5b6c7d8e9f00" + "12" + "47" + "3" + "5" + "12" + "3" + "19"
    expected = hashlib.sha256(joined.encode()).hexdigest()
    assert statistics_checksum(STATS) == expected
    # Older answers give projects per mode: the checksum uses their total.
    by_mode = {**STATS, "projects": [{"mode": "open", "count": 2}, {"mode": "private",
                                                                    "count": 1}]}
    assert statistics_checksum(by_mode) == expected


@pytest.mark.parametrize(("tamper", "code"), [(0, 0), (1, 1)])
def test_the_stats_command_verifies_the_checksum(tamper, code):
    document = {**STATS, "sum": statistics_checksum(STATS)}
    document["users"] += tamper  # edited after the server signed it
    with StatsServer(document) as server:
        ran = subprocess.run([sys.executable, "-m", "impactagent", "stats", "--url",
                              server.url], env={**os.environ, "UNLEASH_ADMIN_TOKEN": ADMIN},
                             capture_output=True, text=True, timeout=60)
    assert ran.returncode == code, ran.stderr
    if code == 0:
        assert f"checksum        ok ({document['sum']})" in ran.stdout
    else:
        assert document["sum"] in ran.stderr
        assert statistics_checksum(document) in ran.stderr
        assert "MISMATCH" in ran.stderr
