"""Adversarial tests of the prometheus_client / OpenTelemetry bridges and the workers' view.

Each test here shows a defect that hostile use found, and is marked
``xfail(strict=True)``: it fails on the current code, and will report XPASS (an error)
once the defect is fixed, so that the mark is removed with the fix.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

import impactagent
from tests.scripted_server import ScriptedServer
from tests.workload import flush_until_delivered, series

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, Counter, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from impactagent.integrations.prometheus_bridge import bridge_prometheus  # noqa: E402
from impactagent.prometheus.collector import AgentCollector  # noqa: E402


def make_agent(url):
    return impactagent.Agent("shop", url=url, api_key="t", flush_interval=60,
                             request_timeout=2)


def counter_series(server, name):
    """{frozenset of the app's own labels: total} of one counter the server accepted."""
    return series(server.totals(), "counters", name)


def test_the_agents_own_view_on_the_same_registry_is_not_bridged_back():
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        # The setup the bridge's docstring names: the agent's own view on the same registry.
        registry.register(AgentCollector(agent))
        bridge_prometheus(agent, families=["http_requests"], registry=registry)
        for _ in range(4):
            requests.inc(5)
            flush_until_delivered(agent)
        agent.close()
        assert server.counter_total("http_requests_total") == 20
        assert agent.statistics()["dropped"] == {}


def test_a_family_re_registered_with_its_labels_reordered_keeps_each_value_on_its_label():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", ["queue", "kind"], registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.labels(queue="mail", kind="send").inc(2)
        flush_until_delivered(agent)
        registry.unregister(jobs)  # a reload of the module that defines it
        jobs = Counter("jobs", "Jobs", ["kind", "queue"], registry=registry)
        jobs.labels(queue="mail", kind="send").inc(3)
        flush_until_delivered(agent)
        agent.close()
        assert counter_series(server, "jobs_total") == {
            frozenset({("queue", "mail"), ("kind", "send")}): 5}


def test_a_family_re_registered_with_fewer_labels_is_delivered_or_counted_as_dropped():
    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", ["queue", "kind"], registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.labels(queue="mail", kind="send").inc(2)
        flush_until_delivered(agent)
        registry.unregister(jobs)
        jobs = Counter("jobs", "Jobs", ["queue"], registry=registry)
        jobs.labels(queue="mail").inc(4)
        flush_until_delivered(agent)
        agent.close()
        delivered = server.counter_total("jobs_total")
        dropped = sum(agent.statistics()["dropped"].values())
        assert delivered + dropped == 6, (delivered, agent.statistics())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_bridge_in_a_child_forked_without_python_hooks_does_not_resend_the_parents_counts():
    import ctypes

    registry = CollectorRegistry()
    jobs = Counter("jobs", "Jobs", registry=registry)
    with ScriptedServer() as server:
        agent = make_agent(server.api_url)
        bridge_prometheus(agent, families=["jobs"], registry=registry)
        jobs.inc(10)  # counted before the fork, not yet collected: the parent's to send
        pid = ctypes.CDLL(None).fork()
        if pid == 0:
            code = 1
            try:
                agent.after_fork()  # what the app's post-fork hook does
                jobs.inc(5)
                flush_until_delivered(agent)
                agent.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        flush_until_delivered(agent)
        agent.close()
        assert server.counter_total("jobs_total") == 15  # 10 by the parent, 5 by the child


def scrape_total(view, name):
    total = 0.0
    for family in text_string_to_metric_families(generate_latest(view.registry()).decode()):
        total += sum(s.value for s in family.samples if s.name == name)
    return total


def test_the_workers_view_recovers_when_its_directory_is_removed(tmp_path):
    agent = impactagent.Agent("view", "test")
    jobs = agent.counter("jobs_total", "Jobs")
    view = agent.prometheus_workers(str(tmp_path / "shared"), publish_interval=0.05)
    try:
        jobs.inc(3)
        assert scrape_total(view, "jobs_total") == 3
        # Gone at once, as a cleaner's rm -rf leaves it: moved away, then removed. An
        # rmtree in place raced the view's thread (it publishes every 0.05 s): a file it
        # wrote between rmtree's listing and its rmdir failed the removal with ENOTEMPTY.
        (tmp_path / "shared").rename(tmp_path / "removed")
        shutil.rmtree(tmp_path / "removed")
        jobs.inc(2)
        time.sleep(0.2)  # a few publish intervals (no timing is asserted)
        assert scrape_total(view, "jobs_total") == 5
    finally:
        view.stop()
        agent.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_scrape_between_a_workers_death_and_its_replacement_never_shows_less(tmp_path):
    from impactagent.prometheus.workers import DirectoryCollector

    shared = tmp_path / "shared"
    master = CollectorRegistry(auto_describe=False)  # the master serving the directory
    master.register(DirectoryCollector(shared))

    def jobs_total():
        for family in text_string_to_metric_families(generate_latest(master).decode()):
            for s in family.samples:
                if s.name == "jobs_total":
                    return s.value
        return 0.0

    def worker():  # a worker of this (still running) master, which exits normally
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                agent = impactagent.Agent("view", "test")
                agent.counter("jobs_total", "Jobs").inc(3)
                agent.prometheus_workers(str(shared)).stop()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    worker()
    assert jobs_total() == 3  # the scrape folds the dead worker into departed.json
    worker()  # its replacement joins, counts 3 and exits
    assert jobs_total() == 6
