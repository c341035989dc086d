"""The prometheus_client bridge, with the real prometheus_client and a real local server.

Each test records with prometheus_client, ships through an agent to ``ScriptedServer`` and
compares what the server accepted with what prometheus_client itself reports.
"""

from __future__ import annotations

import os

import pytest

import impactagent
from tests.scripted_server import Answer, ScriptedServer
from tests.workload import flush_until_delivered, series

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
)

from impactagent.integrations.prometheus_bridge import bridge_prometheus  # noqa: E402


def make_agent(url, **kwargs):
    options = {"api_key": "t", "flush_interval": 60, "request_timeout": 2}
    options.update(kwargs)
    return impactagent.Agent("shop", url=url, **options)






def prom_value(registry, sample, **labels):
    return registry.get_sample_value(sample, labels) or 0


def test_only_chosen_families_are_sent_and_counter_totals_equal_prometheus_clients():
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", ["route"], registry=registry)
    other = Counter("not_chosen", "Never sent", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["http_requests"], registry=registry)
        for round_ in range(3):
            requests.labels("/cart").inc(round_ + 1)
            requests.labels("/home").inc(2)
            other.inc()
            flush_until_delivered(agent)
        requests.labels("/cart").inc(0.5)  # a fraction: sent once it completes a unit
        flush_until_delivered(agent)
        requests.labels("/cart").inc(0.5)
        agent.close()
        totals = server.totals()
    assert series(totals, "counters", "http_requests_total") == {
        frozenset({("route", "/cart")}): prom_value(registry, "http_requests_total", route="/cart"),
        frozenset({("route", "/home")}): prom_value(registry, "http_requests_total", route="/home"),
    }
    assert prom_value(registry, "http_requests_total", route="/cart") == 7
    assert {name for name, _ in totals["counters"]} == {"http_requests_total"}
    assert agent.statistics()["dropped"] == {}


def test_a_predicate_chooses_families_and_nothing_is_sent_unless_chosen():
    registry = CollectorRegistry()
    Counter("shop_orders", "Orders", registry=registry).inc(4)
    Counter("internal_ticks", "Ticks", registry=registry).inc(9)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=lambda name: name.startswith("shop_"),
                          registry=registry)
        flush_until_delivered(agent)
        agent.close()
        assert server.counter_total("shop_orders_total") == 4
        assert server.counter_total("internal_ticks_total") == 0


def test_a_counter_reset_counts_from_zero_and_is_never_sent_negative():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", registry=registry)
    recorded = 0
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.inc(10)
        recorded += 10
        flush_until_delivered(agent)
        # Re-created lower (a restart of the counter): 3 since the restart.
        registry.unregister(jobs)
        jobs = Counter("jobs", "Jobs", registry=registry)
        jobs.inc(3)
        recorded += 3
        flush_until_delivered(agent)
        # Re-created again and already past the last reading: its _created tells.
        registry.unregister(jobs)
        jobs = Counter("jobs", "Jobs", registry=registry)
        jobs.inc(25)
        recorded += 25
        flush_until_delivered(agent)
        agent.close()
        values = [s["value"] for d in server.accepted_documents()
                  for m in d.get("impactMetrics", []) for s in m["samples"]]
        assert values == [10, 3, 25]
        assert server.counter_total("jobs_total") == recorded == 38


def test_totals_survive_injected_failures_exactly():
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", ["route"], registry=registry)
    latency = Histogram("job_seconds", "Jobs", buckets=(0.1, 1.0), registry=registry)
    with ScriptedServer() as server:
        server.script(503, Answer(drop=True), 500, Answer(429, headers={"Retry-After": "0"}),
                      503)
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["http_requests", "job_seconds"], registry=registry)
        for i in range(8):
            requests.labels(f"/r{i % 3}").inc(i + 1)
            latency.observe(i / 4)
            agent.flush(timeout=10)
        flush_until_delivered(agent)
        agent.close()
        totals = server.totals()
    assert any(not r.accepted for r in server.requests)  # failures did happen
    for route in ("/r0", "/r1", "/r2"):
        assert series(totals, "counters", "http_requests_total")[
            frozenset({("route", route)})] == prom_value(registry, "http_requests_total",
                                                         route=route)
    (histogram,) = series(totals, "histograms", "job_seconds").values()
    assert histogram["count"] == prom_value(registry, "job_seconds_count") == 8
    assert histogram["sum"] == pytest.approx(prom_value(registry, "job_seconds_sum"))
    assert histogram["buckets"] == {
        0.1: prom_value(registry, "job_seconds_bucket", le="0.1"),
        1.0: prom_value(registry, "job_seconds_bucket", le="1.0"),
        "+Inf": 8,
    }
    assert agent.statistics()["dropped"] == {}


def test_histograms_keep_their_buckets_with_inf_as_the_string_and_restarts_detected():
    registry = CollectorRegistry()
    latency = Histogram("job_seconds", "Jobs", ["queue"], buckets=(0.5, 2), registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["job_seconds"], registry=registry)
        for value in (0.1, 1, 3):
            latency.labels("fast").observe(value)
        flush_until_delivered(agent)
        registry.unregister(latency)
        latency = Histogram("job_seconds", "Jobs", ["queue"], buckets=(0.5, 2),
                            registry=registry)
        latency.labels("fast").observe(0.2)
        flush_until_delivered(agent)
        agent.close()
        bodies = [m for d in server.accepted_documents() for m in d.get("impactMetrics", [])]
    buckets = [[b["le"] for b in m["samples"][0]["buckets"]] for m in bodies]
    assert buckets == [[0.5, 2.0, "+Inf"]] * 2
    assert [m["samples"][0]["count"] for m in bodies] == [3, 1]
    assert [[b["count"] for b in m["samples"][0]["buckets"]] for m in bodies] == [
        [1, 2, 3], [1, 1, 1]]


def test_gauges_send_their_value_when_it_changes():
    registry = CollectorRegistry()
    depth = Gauge("queue_depth", "Jobs waiting", ["queue"], registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["queue_depth"], registry=registry)
        depth.labels("mail").set(12)
        flush_until_delivered(agent)
        flush_until_delivered(agent)  # unchanged: nothing to send
        depth.labels("mail").set(3.5)
        agent.close()
        gauges = [s["value"] for d in server.accepted_documents()
                  for m in d.get("impactMetrics", []) for s in m["samples"]]
    assert gauges == [12.0, 3.5]
    assert agent.statistics()["dropped"] == {}


def test_names_and_labels_are_mapped_and_the_allowlist_adds_up_the_rest():
    registry = CollectorRegistry()
    requests = Counter("shop:requests", "Requests", ["route", "instance", "environment"],
                       registry=registry)
    requests.labels("/a", "i1", "prod").inc(2)
    requests.labels("/a", "i2", "prod").inc(5)
    requests.labels("/b", "i1", "prod").inc(1)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["shop:requests"], registry=registry,
                          labels=["route", "environment"], prefix="app_")
        agent.close()
        totals = server.totals()
    assert series(totals, "counters", "app_shop_requests_total") == {
        frozenset({("route", "/a"), ("exported_environment", "prod")}): 7,
        frozenset({("route", "/b"), ("exported_environment", "prod")}): 1,
    }


def test_the_native_series_limit_applies_and_drops_are_counted():
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", ["user"], registry=registry)
    for user, n in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
        requests.labels(user).inc(n)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["http_requests"], registry=registry, max_series=2)
        agent.close()
        assert server.counter_total("http_requests_total") == 3
    assert agent.statistics()["dropped"] == {"cardinality_limit": 7}


def test_summaries_and_names_the_agent_already_has_are_refused_not_double_counted():
    registry = CollectorRegistry()
    Summary("rpc_seconds", "RPC", registry=registry).observe(1)
    Counter("jobs", "Jobs", registry=registry).inc(5)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        agent.counter("jobs_total", "Jobs").inc(1)  # a native metric of that name
        bridge = bridge_prometheus(agent, families=["rpc_seconds", "jobs"], registry=registry)
        agent.close()
        assert server.counter_total("jobs_total") == 1
    assert set(bridge.refused) == {"rpc_seconds", "jobs"}
    assert "Histogram" in bridge.refused["rpc_seconds"]
    assert "already a metric of this agent" in bridge.refused["jobs"]


def test_close_stops_reading():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge = bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.inc(2)
        flush_until_delivered(agent)
        bridge.close()
        jobs.inc(5)
        agent.close()
        assert server.counter_total("jobs_total") == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_sends_only_what_it_counted_and_the_parent_the_rest():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.inc(4)
        flush_until_delivered(agent)
        jobs.inc(6)  # not yet sent at the fork: the parent's to send
        pid = os.fork()
        if pid == 0:  # the child: count 5 more and send them, then leave at once
            code = 1
            try:
                jobs.inc(5)
                flush_until_delivered(agent)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        agent.close()
        assert server.counter_total("jobs_total") == 4 + 6 + 5


def test_a_workers_view_on_the_bridged_registry_is_not_read_back(tmp_path):
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        view = agent.prometheus_workers(str(tmp_path / "view"), publish_interval=60)
        registry.register(view)  # the summed view on the registry the bridge reads
        bridge = bridge_prometheus(agent, families=["http_requests"], registry=registry)
        try:
            for _ in range(4):
                requests.inc(5)
                flush_until_delivered(agent)
        finally:
            view.stop()
        agent.close()
        assert server.counter_total("http_requests_total") == 20
    assert agent.statistics()["dropped"] == {}
    assert bridge.refused == {}


def test_families_re_registered_with_other_labels_are_counted_as_dropped_and_logged_once(
        caplog):
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", ["queue", "kind"], registry=registry)
    depth = Gauge("depth", "Depth", ["queue"], registry=registry)
    latency = Histogram("latency", "Latency", ["route"], buckets=(1, 2), registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs", "depth", "latency"], registry=registry)
        jobs.labels("mail", "send").inc(2)
        depth.labels("mail").set(5)
        latency.labels("/a").observe(0.5)
        flush_until_delivered(agent)
        for family in (jobs, depth, latency):
            registry.unregister(family)  # a reload of the module that defines them
        jobs = Counter("jobs", "Jobs", ["queue"], registry=registry)
        depth = Gauge("depth", "Depth", ["queue", "host"], registry=registry)
        latency = Histogram("latency", "Latency", buckets=(1, 2), registry=registry)
        with caplog.at_level("WARNING", logger="impactagent"):
            jobs.labels("mail").inc(4)
            jobs.labels("sms").inc(1)
            depth.labels("mail", "h1").set(7)
            latency.observe(1.5)
            latency.observe(3)
            flush_until_delivered(agent)
            flush_until_delivered(agent)  # nothing changed: nothing more dropped
            jobs.labels("mail").inc(3)
            depth.labels("mail", "h1").set(8)
            flush_until_delivered(agent)
        agent.close()
        assert server.counter_total("jobs_total") == 2
    statistics = agent.statistics()
    # jobs 4 + 1 + 3, depth two values set, latency two observations.
    assert statistics["dropped"] == {"bridged_labels_changed": 8 + 2 + 2}
    assert statistics["collect_hook_errors"] == 0
    logged = [r.getMessage() for r in caplog.records if "bridged_labels_changed" in r.getMessage()]
    assert len(logged) == 3  # once per metric
    assert any("'jobs' has labels ['queue'], bridged with ['queue', 'kind']" in m
               for m in logged)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_after_fork_by_hand_once_pythons_hook_ran_keeps_what_the_child_counted():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.inc(10)  # the parent's to send
        pid = os.fork()  # Python's hooks run: the bridge's baseline is taken at the fork
        if pid == 0:
            code = 1
            try:
                jobs.inc(5)
                agent.after_fork()  # a hook that also calls it by hand: must not re-baseline
                flush_until_delivered(agent)
                agent.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        agent.close()
        assert server.counter_total("jobs_total") == 15
