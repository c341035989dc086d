"""The charts declared in code, previewed by the receiver (``receive --charts MODULE:NAME``):
each with its own time range (and Unleash's step), aggregation, label selectors, y axis and
title, checked against numbers computed here from what the agent recorded; a chart whose
metric has not arrived says so; the command's mistakes are one line and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

import impactagent
from impactagent import Chart
from impactagent.core.flag_context import flag_scope
from impactagent.devtools.receiver import Receiver
from impactagent.devtools.timeseries import SeriesStore
from tests.test_cli import assert_mistake
from tests.test_cli import impactagent as run_impactagent
from tests.test_receiver_page import ROOT, chromium

TOKEN = "default:development.charts-test"
#: A minute boundary (16667 x 60 s): the hour chart's 1-minute points start here.
MINUTE = 1_000_020.0
#: Per round: (variant, checkouts, each checkout's seconds).
ROUNDS = [[("blue", 3, 0.2), ("green", 1, 0.8), ("disabled", 2, 0.4)],
          [("blue", 1, 0.2), ("green", 4, 0.8)],
          [("green", 2, 3.0), ("blue", 5, 0.05)]]
#: When each round's body arrives: two in the first minute, one in the next.
ARRIVALS = [MINUTE + 5, MINUTE + 35, MINUTE + 70]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def declare(agent: impactagent.Agent):
    checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",), chart=[
        Chart(time_range="hour", aggregation="rps",
              label_selectors={"new_checkout": ["blue", "green"]}, title="Checkouts/s"),
        Chart(time_range="hour", aggregation="count", y_axis_min="zero")])
    seconds = agent.histogram("checkout_seconds", "Checkout time", flags=("new-checkout",),
                              buckets=(0.1, 0.5, 1.0), chart=Chart(
                                  time_range="day", aggregation="p95", title="Checkout p95"))
    agent.gauge("queue_depth", "Jobs queued", chart=Chart(time_range="hour",
                                                          aggregation="avg"))
    return checkouts, seconds


def test_declared_charts_are_previewed_with_their_own_range_aggregation_and_selectors(
        tmp_path):
    clock = Clock(ARRIVALS[0])
    agent = impactagent.Agent("shop", url="http://127.0.0.1:9/api", api_key=TOKEN)
    checkouts, seconds = declare(agent)
    configs = agent.chart_configs()
    with Receiver(series=SeriesStore(clock=clock), charts=configs) as receiver:
        agent = impactagent.Agent("shop", url=receiver.api_url, api_key=TOKEN)
        checkouts, seconds = declare(agent)
        for arrival, rounds in zip(ARRIVALS, ROUNDS):
            clock.now = arrival
            for variant, n, duration in rounds:
                for _ in range(n):
                    with flag_scope():
                        agent.record_flag("new-checkout", variant != "disabled", variant)
                        checkouts.inc()
                        seconds.observe(duration)
            assert agent.flush().ok
        with requests.Session() as session:
            session.trust_env = False
            answer = session.get(receiver.url + "/api/charts", timeout=10).json()
        dom = chromium(tmp_path, "--dump-dom", receiver.url + "/").stdout
        artifacts = Path(os.environ.get("IMPACTAGENT_ARTIFACTS", ROOT / ".ci-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "receiver-declared-charts.png"
        screenshot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1400",
                 receiver.url + "/")
        assert agent.close().ok

    charts = {(c["metric_name"], c["aggregation"]): c for c in answer["charts"]}
    assert set(charts) == {("unleash_counter_checkout_total", "rps"),
                           ("unleash_counter_checkout_total", "count"),
                           ("unleash_histogram_checkout_seconds", "p95"),
                           ("unleash_gauge_queue_depth", "avg")}

    # Counted here, by minute and variant, from the rounds.
    by_minute: dict = {}
    for arrival, rounds in zip(ARRIVALS, ROUNDS):
        minute = (arrival - MINUTE) // 60
        for variant, n, _ in rounds:
            by_minute[(minute, variant)] = by_minute.get((minute, variant), 0) + n

    rps = charts[("unleash_counter_checkout_total", "rps")]
    assert rps["title"] == "Checkouts/s" and rps["step_seconds"] == 60
    assert rps["arrived"] and rps["flag"] == "new-checkout"
    assert set(rps["groups"]) == {"blue", "green"}  # the selectors leave "disabled" out
    for variant, group in rps["groups"].items():
        points = dict((t, v) for t, v in group["points"])
        assert len(group["points"]) == 60  # an hour of minutes
        assert points[MINUTE] == by_minute.get((0, variant), 0) / 60
        assert points[MINUTE + 60] == by_minute.get((1, variant), 0) / 60
        assert group["value"] == sum(by_minute.get((m, variant), 0) for m in (0, 1)) / 3600

    count = charts[("unleash_counter_checkout_total", "count")]
    assert set(count["groups"]) == {"blue", "green", "disabled"}
    assert {v: dict(map(tuple, g["points"]))[MINUTE] for v, g in count["groups"].items()} == {
        "blue": 4, "green": 5, "disabled": 2}

    p95 = charts[("unleash_histogram_checkout_seconds", "p95")]
    # A day: Unleash's 15-minute step; the receiver shows the last hour of it.
    assert p95["step_seconds"] == 900 and p95["window_seconds"] == 86_400
    assert p95["shown_seconds"] == 3600 and len(p95["groups"]["green"]["points"]) == 4
    # green: 0.8 x5 and 3.0 x2 -> buckets 0.5: 0, 1.0: 5, +Inf: 7; rank 6.65 in +Inf -> 1.0.
    assert p95["groups"]["green"]["value"] == 1.0
    # blue: 0.2 x4, 0.05 x5 -> 0.1: 5, 0.5: 9; rank 8.55 -> 0.1 + 0.4 x 3.55/4.
    assert abs(p95["groups"]["blue"]["value"] - (0.1 + 0.4 * 3.55 / 4)) < 1e-12

    depth = charts[("unleash_gauge_queue_depth", "avg")]
    assert depth["arrived"] is False and depth["groups"] == {}

    figures = dict(re.findall(
        r'<figure class="chart"[^>]*data-metric-name="([^"]*)"[^>]*'
        r'data-aggregation-mode="(?:rps|p95|avg)"[^>]*>(.*?)</figure>', dom, re.S))
    assert set(figures) == {"unleash_counter_checkout_total",
                            "unleash_histogram_checkout_seconds", "unleash_gauge_queue_depth"}
    assert set(re.findall(r'data-series="([^"]*)" stroke',
                          figures["unleash_counter_checkout_total"])) == {"blue", "green"}
    assert "Checkouts/s: rps" in figures["unleash_counter_checkout_total"]
    assert "Checkout p95: p95" in figures["unleash_histogram_checkout_seconds"]
    assert "shown in 15-minute steps" in figures["unleash_histogram_checkout_seconds"]
    assert "<svg" not in figures["unleash_gauge_queue_depth"]
    assert "no sample of gauge 'queue_depth' has arrived yet" in figures[
        "unleash_gauge_queue_depth"]
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# -- the command line ---------------------------------------------------------------------------

APP = """
    import impactagent
    from impactagent import Chart

    agent = impactagent.Agent("shop", url="http://127.0.0.1:9/api", api_key="x:y.z")
    agent.counter("jobs_total", "Jobs", chart=Chart(time_range="hour", aggregation="rps"))
    plain = impactagent.Agent("plain", url="http://127.0.0.1:9/api", api_key="x:y.z")
    not_an_agent = 3
"""


def test_receive_charts_previews_an_agent_s_charts(tmp_path):
    (tmp_path / "shop_metrics.py").write_text(textwrap.dedent(APP))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("UNLEASH_API_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "impactagent", "receive", "--port", "0", "--duration", "20",
         "--charts", "shop_metrics:agent"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        url = re.search(r"on (http://\S+):", first).group(1)
        assert process.stdout.readline().startswith("previewing 1 declared chart(s)")
        deadline = time.monotonic() + 10
        with requests.Session() as session:
            session.trust_env = False
            while True:  # bounded: the server is up once it printed its URL
                try:
                    charts = session.get(url + "/api/charts", timeout=5).json()["charts"]
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        assert [(c["metric_name"], c["arrived"]) for c in charts] == [
            ("unleash_counter_jobs_total", False)]
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_receive_charts_mistakes_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "shop_metrics.py").write_text(textwrap.dedent(APP))
    (tmp_path / "broken.py").write_text("raise RuntimeError('no config')\n")
    (tmp_path / "script.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "lazy.py").write_text("def __getattr__(name):\n    raise OSError('no db')\n")
    (tmp_path / "exits.py").write_text("import sys\ndef __getattr__(name):\n    sys.exit(3)\n")
    cases = [
        ("shop_metrics", "MODULE:NAME"),
        (".shop_metrics:agent", "absolute module name"),
        ("nowhere:agent", "no module named 'nowhere'"),
        ("broken:agent", "RuntimeError: no config"),
        ("script:agent", "called sys.exit(3)"),
        ("shop_metrics:missing", "has no 'missing'"),
        ("shop_metrics:not_an_agent", "is a int, not an impactagent.Agent"),
        ("shop_metrics:plain", "declares no chart"),
        ("lazy:agent", "reading agent from module lazy failed: OSError: no db"),
        ("exits:agent", "reading agent from module exits failed: SystemExit: 3"),
    ]
    for reference, words in cases:
        ran = run_impactagent("receive", "--port", "0", "--duration", "0", "--charts",
                              reference, cwd=tmp_path,
                              env={"PYTHONPATH": str(ROOT)})
        line = assert_mistake(ran, "--charts", words)
        assert line.startswith("impactagent receive: --charts"), line
