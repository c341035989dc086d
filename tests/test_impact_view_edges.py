"""Edges of the receiver's impact view: each test here shows a defect
found by feeding the receiver what a hostile or careless user would, and is expected to fail
until the defect is fixed (``xfail(strict=True)``: a fix makes it pass, and then the marker
must go).

The independent computations are written out here, not taken from the library.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import requests

from impactagent.devtools.agent_reference import load_agent
from impactagent.devtools.cli_support import UsageError
from impactagent.devtools.receiver import Receiver
from impactagent.devtools.timeseries import SeriesStore

TOKEN = "default:development.attack-impact"
LABELS = {"appName": "shop", "environment": "development"}


class Clock:
    """The receiver's clock, held still by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def post(receiver: Receiver, document: Dict[str, Any]) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(receiver.api_url + "/client/metrics", data=json.dumps(document),
                            headers={"Authorization": TOKEN,
                                     "Content-Type": "application/json"}, timeout=10)


def get(url: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=30)


def body(metrics: List[Dict[str, Any]], toggles: Optional[Dict[str, Any]] = None
         ) -> Dict[str, Any]:
    return {"appName": "shop", "environment": "development", "instanceId": "i-1",
            "bucket": {"start": "2026-11-27T10:00:00Z", "stop": "2026-11-27T10:00:10Z",
                       "toggles": toggles or {}},
            "impactMetrics": metrics}


def prometheus_quantile(q: float, cumulative: Dict[float, float]) -> float:
    """histogram_quantile as Prometheus computes it (promql/quantile.go): buckets sorted by
    bound, counts forced monotonic (a count below the one before it is raised to it), rank
    q x the +Inf count, the first bucket reaching the rank, linear inside it."""
    bounds = sorted(cumulative)
    counts: List[float] = []
    for bound in bounds:
        counts.append(max(cumulative[bound], counts[-1] if counts else 0.0))
    rank = q * counts[-1]
    b = next(i for i, n in enumerate(counts) if n >= rank)
    if bounds[b] == float("inf"):
        return bounds[-2]
    lower, before = (0.0, 0.0) if b == 0 else (bounds[b - 1], counts[b - 1])
    return lower + (bounds[b] - lower) * (rank - before) / (counts[b] - before)


def test_percentiles_of_series_with_different_bounds_match_histogram_quantile():
    # Two routes of one histogram, in one body, with their own bucket bounds: the group
    # sums the cumulative buckets by bound, which makes them non-monotonic (4, 0, 6, 10).
    fast = {"labels": {**LABELS, "route": "/fast"}, "count": 4, "sum": 0.2,
            "buckets": [{"le": 0.1, "count": 4}, {"le": "+Inf", "count": 4}]}
    slow = {"labels": {**LABELS, "route": "/slow"}, "count": 6, "sum": 9,
            "buckets": [{"le": 1, "count": 0}, {"le": 2, "count": 6},
                        {"le": "+Inf", "count": 6}]}
    with Receiver(series=SeriesStore(clock=Clock(1_000_000.0))) as receiver:
        assert post(receiver, body([{"name": "lat_seconds", "help": "h", "type": "histogram",
                                     "samples": [fast, slow]}])).status_code == 202
        view = get(receiver.url + "/api/impact").json()
    group = view["metrics"][0]["groups"]["all"]
    summed = {0.1: 4.0, 1.0: 0.0, 2.0: 6.0, float("inf"): 10.0}
    assert group["count"] == 10
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert group[name] == pytest.approx(prometheus_quantile(q, summed)), name


def test_a_flood_of_variant_names_keeps_the_store_bounded():
    clock = Clock(1_000_000.0)
    store = SeriesStore(clock=clock)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for step in range(360):  # an hour of steps, each with 2000 new variants
            variants = {f"v{step}_{i}": 1 for i in range(2000)}
            store.add(("flag", "shop", "f"), "flag",
                      {"yes": 2000, "no": 0, "variants": variants})
            clock.now += 10
        del variants
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The module's bound for the whole store of 1000 series is 43 MB at most; one series
    # should hold a small fraction of it (a counter's ring is 5.8 kB).
    assert held < 5_000_000, f"one flag series holds {held / 1e6:.1f} MB"
    # What was left out is counted (every variant of every step after the first's bound of
    # names), and what is held is reported.
    size = store.size()
    assert size["variants_refused"] == 360 * 2000 - store.max_variants
    assert 0 < size["bytes"] < 5_000_000


def test_a_metric_is_shown_with_the_flag_whose_variants_it_carries():
    toggles = {"new-checkout": {"yes": 5, "no": 0, "variants": {"blue": 5}},
               "new.checkout": {"yes": 2, "no": 0, "variants": {"red": 2}}}
    counter = {"name": "checkout_total", "help": "c", "type": "counter",
               "samples": [{"labels": {**LABELS, "new_checkout": "blue"}, "value": 3}]}
    with Receiver(series=SeriesStore(clock=Clock(1_000_000.0))) as receiver:
        assert post(receiver, body([counter], toggles)).status_code == 202
        view = get(receiver.url + "/api/impact").json()
    flags_of_metric = {m["flag"] for m in view["metrics"] if m["name"] == "checkout_total"}
    assert "new-checkout" in flags_of_metric, flags_of_metric


def test_series_beyond_the_bound_are_not_dropped_silently_from_the_page():
    clock = Clock(1_000_000.0)
    with Receiver(series=SeriesStore(clock=clock, max_series=20)) as receiver:
        checkout = {"name": "checkout_total", "help": "c", "type": "counter",
                    "samples": [{"labels": {**LABELS, "new_checkout": v}, "value": 1}
                                for v in ("blue", "green")]}
        assert post(receiver, body([checkout])).status_code == 202
        noise = {"name": "noise_total", "help": "n", "type": "counter",
                 "samples": [{"labels": {**LABELS, "shard": str(i)}, "value": 1}
                             for i in range(30)]}
        assert post(receiver, body([noise])).status_code == 202
        toggles = {"new-checkout": {"yes": 4, "no": 0, "variants": {"blue": 2, "green": 2}}}
        assert post(receiver, body([checkout], toggles)).status_code == 202
        view = get(receiver.url + "/api/impact").json()
        page = get(receiver.url + "/").text
    assert view["memory"]["series_refused"] > 0  # holds: the API counts them
    metric = next(m for m in view["metrics"] if m["name"] == "checkout_total")
    assert metric["flag"] == "new-checkout" or "refused" in page.lower(), (
        metric["flag"], list(metric["groups"]))
    refused = view["memory"]["series_refused"]
    assert f"{refused:,} new series refused" in page


def test_a_late_histogram_sample_with_new_bounds_does_not_wipe_the_series():
    store = SeriesStore(clock=lambda: 0.0)
    key = ("metric", "shop", "lat_seconds", "histogram", frozenset())
    sample = {"count": 2, "sum": 0.3, "buckets": {0.1: 1, "+Inf": 2}}
    now = 1_000_000.0
    assert store.add(key, "histogram", sample, now)
    late = {"count": 1, "sum": 5.0, "buckets": {1.0: 0, "+Inf": 1}}
    store.add(key, "histogram", late, now - 2 * 3600)  # two hours before: not kept
    assert store.cells(key) == {100_000: sample}


def test_a_charts_reference_whose_import_exits_is_a_usage_error(tmp_path: Path,
                                                                 monkeypatch):
    (tmp_path / "attack_exiting_app.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UsageError,
                           match=r"^--charts attack_exiting_app:agent: .*sys\.exit\(3\)"):
            load_agent("attack_exiting_app:agent", "--charts")
    finally:
        sys.modules.pop("attack_exiting_app", None)


def test_a_series_keeps_its_last_steps_a_step_reusing_the_slot_of_one_a_ring_before():
    store = SeriesStore(step=10, steps=3, clock=lambda: 0)
    key = ("metric", "shop", "jobs_total", "counter", frozenset())
    for at in (0, 5, 12, 25, 31, 47):
        store.add(key, "counter", 1, at)
    assert store.cells(key) == {2: 1, 3: 1, 4: 1}
