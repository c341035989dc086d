"""The receiver's impact view in numbers (``GET /api/impact``): the demo runs against a real
receiver through a recording proxy, and every aggregation the receiver answers is checked
against one computed here, independently, from the bodies that went through.

The checks below do not call the receiver's code: the quantile estimate is written out again
from Prometheus' definition of ``histogram_quantile`` (bisect over cumulative counts).
"""

from __future__ import annotations

import bisect
import io
import json
import math
from typing import Any, Dict, List, Tuple

import pytest
import requests

from impactagent.devtools import demo
from impactagent.devtools.impact import impact
from impactagent.devtools.receiver import Receiver
from impactagent.devtools.timeseries import SeriesStore
from tests.loopback import LoopbackHandler, LoopbackServer

TOKEN = "default:development.impact-test"


class RecordingProxy(LoopbackServer):
    """Forwards every POST to a receiver and keeps each body with the receiver's answer."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.bodies: List[Tuple[int, bytes]] = []
        super().__init__()


class _ProxyHandler(LoopbackHandler):
    server_ref: RecordingProxy

    def do_POST(self) -> None:
        body = self.read_body()
        with requests.Session() as session:
            session.trust_env = False
            answer = session.post(self.server_ref.target + self.path, data=body, timeout=10,
                                  headers={k: v for k, v in self.headers.items()
                                           if k.lower() in ("authorization", "content-type")})
        if self.path.endswith("/client/metrics"):
            with self.server_ref.lock:
                self.server_ref.bodies.append((answer.status_code, body))
        self.answer(answer.status_code, answer.content)


RecordingProxy.handler_class = _ProxyHandler


def get(url: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=10)


# -- the independent computation ----------------------------------------------------------------

def prometheus_quantile(q: float, cumulative: Dict[float, float]) -> Any:
    """histogram_quantile: rank q*total; first bucket whose cumulative count reaches it;
    linear between the bucket's lower bound (0 for the first) and its upper bound; in the
    +Inf bucket, the highest finite bound."""
    uppers = sorted(cumulative)
    counts = [cumulative[u] for u in uppers]
    if not counts or uppers[-1] != math.inf or counts[-1] == 0:
        return None
    rank = q * counts[-1]
    b = bisect.bisect_left(counts, rank)
    if uppers[b] == math.inf:
        return uppers[-2]
    lower, before = (0.0, 0.0) if b == 0 else (uppers[b - 1], counts[b - 1])
    return lower + (uppers[b] - lower) * (rank - before) / (counts[b] - before)


def close(got: Any, expected: Any) -> bool:
    """Equal, floats to 1e-9 relative (sums added up in another order), nested."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            close(got[k], expected[k]) for k in expected)
    if isinstance(expected, (tuple, list)):
        return len(got) == len(expected) and all(map(close, got, expected))
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    return got == expected


def expected_from(bodies: List[bytes], window: float) -> Dict[str, Any]:
    """What the impact view must say, from the bodies alone (all of them in the window)."""
    exposure: Dict[str, Dict[str, int]] = {}
    counters: Dict[Tuple[str, str], float] = {}
    gauges: Dict[Tuple[str, str], List[float]] = {}
    gauge_lasts: Dict[Tuple[str, str], Dict[Any, float]] = {}
    histograms: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for raw in bodies:
        document = json.loads(raw)
        for flag, t in document["bucket"]["toggles"].items():
            groups = exposure.setdefault(flag, {})
            real = {v: n for v, n in t.get("variants", {}).items() if v != "disabled"}
            for v, n in real.items():
                groups[v] = groups.get(v, 0) + n
            if t["yes"] - sum(real.values()):
                groups["enabled"] = groups.get("enabled", 0) + t["yes"] - sum(real.values())
            if t["no"]:
                groups["disabled"] = groups.get("disabled", 0) + t["no"]
        for metric in document.get("impactMetrics", []):
            for sample in metric["samples"]:
                group = sample["labels"].get("new_checkout", "all")
                key = (metric["name"], group)
                if metric["type"] == "counter":
                    counters[key] = counters.get(key, 0) + sample["value"]
                elif metric["type"] == "gauge":
                    gauges.setdefault(key, []).append(sample["value"])
                    series = frozenset(sample["labels"].items())
                    gauge_lasts.setdefault(key, {})[series] = sample["value"]
                else:
                    h = histograms.setdefault(key, {"count": 0, "sum": 0.0, "buckets": {}})
                    h["count"] += sample["count"]
                    h["sum"] += sample["sum"]
                    for b in sample["buckets"]:
                        le = math.inf if b["le"] == "+Inf" else float(b["le"])
                        h["buckets"][le] = h["buckets"].get(le, 0) + b["count"]
    result: Dict[str, Any] = {"flags": {}, "metrics": {}}
    for flag, groups in exposure.items():
        total = sum(groups.values())
        result["flags"][flag] = {g: (n, n / total) for g, n in groups.items()}
    for (name, group), increase in counters.items():
        result["metrics"].setdefault(name, {})[group] = {"increase": increase,
                                                         "rate": increase / window}
    for (name, group), values in gauges.items():
        result["metrics"].setdefault(name, {})[group] = {
            "last": values[-1], "average": sum(values) / len(values), "samples": len(values),
            "total": sum(gauge_lasts[(name, group)].values())}
    for (name, group), h in histograms.items():
        result["metrics"].setdefault(name, {})[group] = {
            "count": h["count"], "sum": h["sum"], "mean": h["sum"] / h["count"],
            **{p: prometheus_quantile(q, h["buckets"])
               for p, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}}
    return result


def test_the_demo_s_impact_view_matches_an_independent_computation_from_the_bodies():
    with Receiver(strict=True) as receiver, RecordingProxy(receiver.url) as proxy:
        out = io.StringIO()
        assert demo.main(900, out, url=proxy.api_url, token=TOKEN, pace=0.05) == 0, \
            out.getvalue()
        answer = get(receiver.url + "/api/impact")
    assert answer.status_code == 200
    view = answer.json()
    bodies = [body for status, body in proxy.bodies if status == 202]
    assert len(bodies) >= 2 and len(bodies) == len(proxy.bodies)
    expected = expected_from(bodies, view["window_seconds"])
    assert view["step_seconds"] == 10 and view["window_seconds"] == 3600

    flags = {f["flag"]: f for f in view["flags"] if f["app"] == demo.APP_NAME}
    assert set(flags) == set(expected["flags"]) == {"new-checkout", "dark-mode"}
    for name, groups in expected["flags"].items():
        got = flags[name]["exposure"]
        assert close({g: (e["evaluations"], e["share"]) for g, e in got.items()}, groups)
    assert set(flags["new-checkout"]["exposure"]) == {"blue", "green", "disabled"}

    by_flag = {(m["name"], m["flag"]): m for m in view["metrics"]}
    # Labelled by new-checkout: grouped by variant; the others: one group, "all".
    assert set(by_flag) == {("checkout_total", "new-checkout"),
                            ("checkout_seconds", "new-checkout"),
                            ("http_requests_total", None), ("in_flight_requests", None),
                            ("request_seconds", None)}
    for (name, _flag), metric in by_flag.items():
        groups = {g: {k: v for k, v in a.items() if k != "points"}
                  for g, a in metric["groups"].items()}
        assert close(groups, expected["metrics"][name]), (name, groups)
        # The steps add up to the window (each body went into exactly one step).
        for aggregation in metric["groups"].values():
            points = aggregation["points"]
            assert len(points) == 360
            if metric["type"] == "counter":
                assert sum(p["increase"] for p in points) == aggregation["increase"]
            elif metric["type"] == "histogram":
                assert sum(p["count"] for p in points) == aggregation["count"]
            else:
                assert sum(p["samples"] for p in points) == aggregation["samples"]
    assert set(by_flag[("checkout_seconds", "new-checkout")]["groups"]) == {
        "blue", "green", "disabled"}


# -- steps, windows, the bound ------------------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def post(receiver: Receiver, document: Dict[str, Any]) -> int:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(receiver.api_url + "/client/metrics", json=document,
                            headers={"Authorization": TOKEN}, timeout=10).status_code


def body(checkouts: Dict[str, int], depth: float, seconds: Dict[str, List[float]],
         toggles: Dict[str, Any]) -> Dict[str, Any]:
    labels = {"appName": "shop", "environment": "development"}
    histogram = []
    for variant, observed in seconds.items():
        bounds = [0.1, 0.5, 1.0]
        histogram.append({"labels": {**labels, "new_checkout": variant},
                          "count": len(observed), "sum": sum(observed),
                          "buckets": [{"le": b, "count": sum(o <= b for o in observed)}
                                      for b in bounds] + [{"le": "+Inf",
                                                           "count": len(observed)}]})
    return {"appName": "shop", "environment": "development",
            "bucket": {"start": "2026-11-27T10:00:00Z", "stop": "2026-11-27T10:00:10Z",
                       "toggles": toggles},
            "impactMetrics": [
                {"name": "checkout_total", "help": "c", "type": "counter",
                 "samples": [{"labels": {**labels, "new_checkout": v, "route": r}, "value": n}
                             for v, n in checkouts.items() for r in ("/a", "/b")]},
                {"name": "queue_depth", "help": "q", "type": "gauge",
                 "samples": [{"labels": {**labels, "new_checkout": "blue"}, "value": depth}]},
                {"name": "checkout_seconds", "help": "s", "type": "histogram",
                 "samples": histogram}]}


def test_each_step_holds_what_arrived_in_it_and_the_window_param_narrows():
    clock = Clock(1_000_000.0)  # a step boundary: 100000 x 10 s
    with Receiver(series=SeriesStore(clock=clock)) as receiver:
        flags = {"new-checkout": {"yes": 3, "no": 1, "variants": {"blue": 2, "green": 1}}}
        assert post(receiver, body({"blue": 2, "green": 1}, 4, {"blue": [0.05, 0.3]},
                                   flags)) == 202
        clock.now += 3  # same step
        assert post(receiver, body({"blue": 1}, 8, {"blue": [0.7]}, flags)) == 202
        clock.now += 20  # two steps later
        assert post(receiver, body({"green": 5}, 6, {"green": [2.0]},
                                   {"new-checkout": {"yes": 0, "no": 4, "variants": {}}})) == 202
        view = get(receiver.url + "/api/impact?window=30").json()
        whole = get(receiver.url + "/api/impact").json()

    # now is 1_000_023: the window is the steps starting at 1_000_000, _010 and _020.
    assert view["window_seconds"] == 30
    assert (view["from"], view["to"]) == (1_000_000, 1_000_030)
    metrics = {m["name"]: m["groups"] for m in view["metrics"]}
    blue = metrics["checkout_total"]["blue"]
    # Two routes each: 2x2 then 2x1 in the first step, nothing since.
    assert [(p["t"], p["increase"]) for p in blue["points"]] == [
        (1_000_000, 6), (1_000_010, 0), (1_000_020, 0)]
    assert blue["increase"] == 6 and blue["rate"] == 6 / 30
    assert [p["rate"] for p in blue["points"]] == [0.6, 0, 0]
    green = metrics["checkout_total"]["green"]
    assert [p["increase"] for p in green["points"]] == [2, 0, 10]
    assert green["increase"] == 12
    assert {m["name"]: m["groups"] for m in whole["metrics"]}["checkout_total"]["green"][
        "increase"] == 12
    assert whole["window_seconds"] == 3600 and len(whole["metrics"][0]["groups"]["blue"][
        "points"]) == 360

    depth = metrics["queue_depth"]["blue"]
    assert depth["last"] == 6 and depth["average"] == 6 and depth["samples"] == 3
    assert depth["total"] == 6  # one series: its last value
    assert [p["last"] for p in depth["points"]] == [8, None, 6]
    assert [p["average"] for p in depth["points"]] == [6, None, 6]

    seconds = metrics["checkout_seconds"]["blue"]
    # Buckets 0.1: 1, 0.5: 2, 1.0: 3, +Inf: 3. p50: rank 1.5 in (0.1, 0.5] -> 0.1+0.4*0.5.
    assert seconds["count"] == 3 and seconds["p50"] == pytest.approx(0.3)
    assert seconds["p99"] == pytest.approx(0.5 + 0.5 * (2.97 - 2))
    assert seconds["mean"] == pytest.approx(1.05 / 3)

    exposure = {f["flag"]: f for f in view["flags"]}["new-checkout"]
    # In the 30 s window: blue 4, green 2, disabled 2; then 4 more disabled.
    assert {g: e["evaluations"] for g, e in exposure["exposure"].items()} == {
        "blue": 4, "green": 2, "disabled": 6}
    assert exposure["exposure"]["disabled"]["share"] == 0.5
    assert [p["evaluations"] for p in exposure["points"]] == [8, 0, 4]
    assert exposure["points"][1]["exposure"] == {}


def test_the_store_is_bounded_in_steps_per_series_and_in_series():
    clock = Clock(0.0)
    store = SeriesStore(step=10, steps=360, max_series=3, clock=clock)
    for second in range(0, 2 * 3600, 5):  # two hours, a delta every 5 seconds
        assert store.add(("metric", "a"), "counter", 1, second)
    cells = store.cells(("metric", "a"))
    assert len(cells) == 360 and min(cells) == (2 * 3600 - 3600) // 10
    assert store.add(("metric", "b"), "gauge", 1.5, 7190)
    assert store.add(("metric", "c"), "counter", 1, 7190)
    assert not store.add(("metric", "d"), "counter", 1, 7190)  # full: a, b, c are recent
    # Rings of 360 slots: 8 bytes for the step held, 8 per float of the cell (a counter 1,
    # a gauge 4).
    assert store.size() == {"series": 3, "cells": 362, "max_series": 3, "max_cells": 1080,
                            "series_refused": 1, "variants_refused": 0,
                            "bytes": 360 * (8 + 8) * 2 + 360 * (8 + 4 * 8)}
    # An hour later "b" and "c" have received nothing for an hour: a new series takes a place.
    assert store.add(("metric", "a"), "counter", 1, 7190 + 3600)
    assert store.add(("metric", "e"), "counter", 1, 7190 + 3600)
    assert store.size()["series"] == 3
    assert store.cells(("metric", "b")) == {}


def test_a_cell_does_not_grow_with_the_samples_in_its_step():
    store = SeriesStore(clock=Clock(0.0))
    for value in range(1000):
        store.add(("gauge",), "gauge", value, 5.0)
        store.add(("flag",), "flag", {"yes": 1, "no": 0, "variants": {"blue": 1}}, 5.0)
    assert store.cells(("gauge",)) == {0: {"last": [1000, 999], "sum": 499500, "samples": 1000}}
    assert store.cells(("flag",)) == {0: {"yes": 1000, "no": 0, "variants": {"blue": 1000},
                                          "refused": 0}}


def test_a_histogram_s_ring_is_sized_by_its_boundaries_and_new_ones_start_it_afresh():
    store = SeriesStore(clock=Clock(0.0))
    key = ("metric", "shop", "checkout_seconds", "histogram", frozenset())
    sample = {"count": 2, "sum": 0.3, "buckets": {0.1: 1, 0.5: 2, "+Inf": 2}}
    for second in range(0, 7200, 10):
        store.add(key, "histogram", sample, second)
    assert store.size()["bytes"] == 360 * (8 + (2 + 3) * 8)  # whatever arrived: 2 hours
    assert store.cells(key)[719] == sample
    store.add(key, "histogram", {"count": 1, "sum": 2.0, "buckets": {1.0: 0, "+Inf": 1}},
              7200)
    assert store.cells(key) == {720: {"count": 1, "sum": 2.0, "buckets": {1.0: 0, "+Inf": 1}}}
    assert store.size()["bytes"] == 360 * (8 + (2 + 2) * 8)


def test_the_default_bound_is_an_hour_of_10_second_steps_for_1000_series():
    store = SeriesStore()
    assert (store.step, store.steps, store.max_series) == (10.0, 360, 1000)
    assert store.size()["max_cells"] == 360_000


@pytest.mark.parametrize("window", ["0", "-5", "abc", "inf", "nan"])
def test_a_bad_window_is_a_400(window):
    with Receiver() as receiver:
        answer = get(receiver.url + f"/api/impact?window={window}")
    assert answer.status_code == 400 and "window" in answer.json()["error"]


def test_the_impact_view_asks_for_the_token_as_the_other_views_do():
    with Receiver(token="secret") as receiver:
        assert get(receiver.url + "/api/impact").status_code == 401
        assert get(receiver.url + "/api/impact?token=secret").status_code == 200


def test_variants_beyond_the_bound_of_names_are_counted_and_not_shown_as_enabled():
    store = SeriesStore(clock=Clock(0.0), max_variants=2)
    store.add(("flag", "shop", "f"), "flag",
              {"yes": 10, "no": 1, "variants": {"a": 3, "b": 3, "c": 4}}, 5.0)
    store.add(("flag", "shop", "f"), "flag", {"yes": 2, "no": 0, "variants": {"a": 2}}, 5.0)
    assert store.cells(("flag", "shop", "f")) == {
        0: {"yes": 12, "no": 1, "variants": {"a": 5, "b": 3}, "refused": 4}}
    assert store.size()["variants_refused"] == 4
    view = impact(store, now=5.0)
    assert view["flags"][0]["exposure"].keys() == {"a", "b", "disabled"}  # no "enabled": c's
