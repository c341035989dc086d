"""The receiver's page in a real browser: headless Chromium renders what was received, and
a screenshot is kept as a CI artifact (``$IMPACTAGENT_ARTIFACTS``, default ``.ci-artifacts``).

Chromium comes from Debian's ``chromium`` package; ``.ci/run`` installs it and sets
``IMPACTAGENT_REQUIRE_CHROMIUM=1``, so that in CI a missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

import impactagent
from impactagent.devtools import demo
from impactagent.devtools.receiver import Receiver
from impactagent.devtools.timeseries import SeriesStore
from tests import workload

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("IMPACTAGENT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("IMPACTAGENT_REQUIRE_CHROMIUM=1 but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *arguments],
        capture_output=True, text=True, timeout=120, check=True)


def table_rows(dom: str, table: str) -> list:
    """The text of each cell of each body row of ``<table id=table>`` in ``dom``."""
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_the_page_shows_what_was_received_in_headless_chromium(tmp_path):
    with Receiver() as receiver:
        agent = impactagent.Agent("shop", url=receiver.api_url,
                                  api_key="default:production.page-test")
        expected = workload.record(agent, 30)
        assert agent.close().ok

        dom = chromium(tmp_path, "--dump-dom", receiver.url + "/").stdout
        artifacts = Path(os.environ.get("IMPACTAGENT_ARTIFACTS", ROOT / ".ci-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "receiver-page.png"
        screenshot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,900",
                 receiver.url + "/")

    flags = {row[3]: (int(row[4]), int(row[5])) for row in table_rows(dom, "flags")}
    assert flags == {name: (f["yes"], f["no"]) for name, f in expected["flags"].items()}
    metrics = {row[1] for row in table_rows(dom, "metrics")}
    assert metrics == {"requests_total", "jobs_total", "latency_seconds", "inflight_requests"}
    assert table_rows(dom, "requests")[0][2] == "202"
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# -- the impact view ------------------------------------------------------------------------------

class Clock:
    """The receiver's clock, moved by the test: each round of bodies lands in its own step."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def figures(dom: str) -> dict:
    """Each chart of the page by (flag, metric, aggregation): its series, each with its
    stroke colour and its points' values, and the rows of its table."""
    found = {}
    for attributes, inside in re.findall(r'<figure class="chart"([^>]*)>(.*?)</figure>', dom,
                                         re.S):
        data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attributes))
        series = {}
        for name, stroke, group in re.findall(
                r'<g class="series" data-series="([^"]*)" stroke="([^"]*)"[^>]*>(.*?)</g>',
                inside, re.S):
            values = [(float(t), float(v)) for t, v in
                      re.findall(r'<circle [^>]*data-t="([^"]*)" data-value="([^"]*)"', group)]
            series[name] = {"stroke": stroke, "points": values,
                            "polylines": group.count("<polyline")}
        rows = {name: re.findall(r"<td class=\"?n\"?>(.*?)</td>", row)
                for name, row in re.findall(r'<tr data-series="([^"]*)">(.*?)</tr>', inside,
                                            re.S)}
        found[(data["flag"], data["metric"], data["aggregation"])] = {"series": series,
                                                                      "rows": rows}
    return found


def test_the_impact_view_draws_one_chart_per_metric_with_one_line_per_variant(tmp_path):
    clock = Clock(1_000_000.0)
    with Receiver(series=SeriesStore(clock=clock)) as receiver:
        agent = impactagent.Agent(demo.APP_NAME, url=receiver.api_url,
                                  api_key="default:development.page-test")
        shop = demo.Shop(agent)
        for round_ in range(3):
            for user in range(round_ * 150, (round_ + 1) * 150):
                shop.handle(user)
            assert agent.flush().ok
            clock.now += 10  # the next round in the next step
        dom = chromium(tmp_path, "--dump-dom", receiver.url + "/?window=300").stdout
        with requests.Session() as session:
            session.trust_env = False
            view = session.get(receiver.url + "/api/impact?window=300", timeout=10).json()
        artifacts = Path(os.environ.get("IMPACTAGENT_ARTIFACTS", ROOT / ".ci-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "receiver-impact-view.png"
        screenshot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1500",
                 receiver.url + "/?window=300")
        assert agent.close().ok

    charts = figures(dom)
    variants = {"blue", "green", "disabled"}
    assert {key: set(chart["series"]) for key, chart in charts.items()} == {
        ("dark-mode", "", "share"): {"enabled", "disabled"},
        ("new-checkout", "", "share"): variants,
        ("new-checkout", "checkout_total", "rate"): variants,
        ("new-checkout", "checkout_seconds", "p95"): variants,
        ("", "http_requests_total", "rate"): {"all"},
        ("", "in_flight_requests", "average"): {"all"},
        ("", "request_seconds", "p95"): {"all"},
    }
    # One colour per variant on every chart.
    for variant in variants:
        assert len({c["series"][variant]["stroke"] for c in charts.values()
                    if variant in c["series"]}) == 1
    assert len({charts[("new-checkout", "checkout_total", "rate")]["series"][v]["stroke"]
                for v in variants}) == 3
    # Every point drawn is the JSON's, step by step: three steps with bodies.
    metrics = {(m["flag"] or "", m["name"]): m for m in view["metrics"]}
    for (flag, name, aggregation), chart in charts.items():
        if not name:
            continue
        for group, series in chart["series"].items():
            expected = [(p["t"], p[aggregation]) for p in
                        metrics[(flag, name)]["groups"][group]["points"]
                        if p[aggregation] is not None]
            assert series["points"] == expected, (name, group)
    seconds = charts[("new-checkout", "checkout_seconds", "p95")]["series"]
    assert all(len(s["points"]) == 3 and s["polylines"] == 1 for s in seconds.values())
    # Tables for people: the durations in ms with at most three significant digits.
    for row in charts[("new-checkout", "checkout_seconds", "p95")]["rows"].values():
        for cell in row[:4]:  # p50, p95, p99, mean
            number, unit = cell.split(" ")
            assert unit in ("ms", "s") and len(number.replace(".", "").lstrip("0")) <= 3, cell
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_the_page_reload_keeps_its_scroll_position(tmp_path):
    with Receiver() as receiver:
        agent = impactagent.Agent("shop", url=receiver.api_url,
                                  api_key="default:production.page-test")
        workload.record(agent, 30)
        assert agent.close().ok
        # The reload puts the position in the fragment; the next load scrolls back to it.
        dom = chromium(tmp_path, "--window-size=1280,500", "--dump-dom",
                       receiver.url + "/#scroll=300").stdout
        fresh = chromium(tmp_path, "--window-size=1280,500", "--dump-dom",
                         receiver.url + "/").stdout
    assert re.search(r'<html [^>]*data-restored-scroll="300"', dom)
    assert not re.search(r"<html [^>]*data-restored-scroll", fresh)
    # Without JavaScript, a <meta> refresh reloads the page.
    assert re.search(r'<noscript><meta http-equiv="refresh" content="\d+"></noscript>', fresh)
