"""The impact view's drawing: units and rounding for people, the SVG's structure at the
edges (no values, negative values, gaps), and a page that shows what apps send without
letting it become markup."""

from __future__ import annotations

import json
import math
import re

import pytest
import requests

from impactagent.devtools.receiver import Receiver
from impactagent.devtools.svg import colours, human, line_chart, nice, unit_of


@pytest.mark.parametrize(("value", "name", "options", "text"), [
    (0.009612923994609446, "request_seconds", {}, "9.61 ms"),
    (0.25, "request_seconds", {}, "250 ms"),
    (1.0, "request_seconds", {}, "1 s"),
    (-0.002, "drift_seconds", {}, "-2 ms"),
    (0.0, "request_seconds", {}, "0 s"),
    (512, "body_bytes", {}, "512 B"),
    (2_048_000, "body_bytes", {}, "2.05 MB"),
    (3.5, "checkout_total", {"rate": True}, "3.5/s"),
    (0.00123, "checkout_total", {"rate": True}, "0.00123/s"),
    (1234.5, "checkout_total", {}, "1,234"),
    (0.5, "", {"percent": True}, "50%"),
    (0.3333, "", {"percent": True}, "33.3%"),
    (0.0000042, "request_seconds", {}, "4.2 µs"),
    (95, "request_seconds", {}, "1.58 min"),
    (1536000, "body_bytes", {}, "1.54 MB"),
    (12345.6, "queue_depth", {}, "12,346"),
    (999.95, "queue_depth", {}, "1,000"),
    (0.000123456, "queue_depth", {}, "0.000123"),
    (None, "request_seconds", {}, "-"),
    (math.nan, "request_seconds", {}, "-"),
])
def test_values_read_as_people_write_them(value, name, options, text):
    assert human(value, name, **options) == text


def test_the_unit_comes_from_the_name_s_suffix():
    assert [unit_of(n) for n in ("a_seconds", "a_bytes", "a_total", "queue_depth",
                                 "seconds_total")] == ["seconds", "bytes", "count", "", "count"]


def test_axis_steps_are_round():
    assert [nice(s) for s in (0.7, 2.1, 0.0024, 30, 1)] == [1.0, 2.5, 0.0025, 50.0, 1.0]


def test_a_chart_without_values_still_has_its_axes_and_no_points():
    svg = line_chart({"blue": [(0, None), (10, None)]}, (0, 20), {"blue": "#000"}, str)
    assert svg.count("<circle") == 0 and svg.count("<polyline") == 0
    assert svg.count('class="grid"') >= 2 and 'data-series="blue"' in svg


def test_negative_values_lower_the_axis_and_gaps_break_the_line():
    svg = line_chart({"x": [(0, -3.0), (10, 2.0), (20, None), (30, 1.0), (40, 4.0)]},
                     (0, 50), {"x": "#000"}, str)
    assert float(re.search(r'data-y-min="([^"]+)"', svg).group(1)) <= -3
    assert float(re.search(r'data-y-max="([^"]+)"', svg).group(1)) >= 4
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4
    auto = line_chart({"x": [(0, 100.0), (10, 120.0)]}, (0, 20), {}, str, y_min="auto")
    assert float(re.search(r'data-y-min="([^"]+)"', auto).group(1)) > 0  # fitted, not zero


def test_disabled_is_grey_whatever_else_is_on_the_page():
    assert colours(["disabled", "blue"])["disabled"] == colours(["disabled", "z"])["disabled"]
    assert len(set(colours(["a", "b", "c", "d"]).values())) == 4


def test_an_empty_receiver_says_nothing_has_arrived():
    with Receiver() as receiver, requests.Session() as session:
        session.trust_env = False
        text = session.get(receiver.url + "/", timeout=10).text
        view = session.get(receiver.url + "/api/impact", timeout=10).json()
    assert "Nothing received in this window yet." in text
    assert view["flags"] == [] and view["metrics"] == []


def test_names_from_bodies_are_shown_as_text_never_as_markup():
    evil = '"><script>alert(1)</script>'
    labels = {"appName": "shop", "environment": "development", "x_flag": evil}
    body = {"appName": "shop", "environment": "development",
            "bucket": {"start": "2026-11-27T10:00:00Z", "stop": "2026-11-27T10:00:10Z",
                       "toggles": {"x-flag": {"yes": 1, "no": 0, "variants": {evil: 1}}}},
            "impactMetrics": [{"name": "checkout_total", "help": "c", "type": "counter",
                               "samples": [{"labels": labels, "value": 1}]}]}
    with Receiver() as receiver, requests.Session() as session:
        session.trust_env = False
        assert session.post(receiver.api_url + "/client/metrics", data=json.dumps(body),
                            headers={"Authorization": "default:development.x",
                                     "Content-Type": "application/json"},
                            timeout=10).status_code == 202
        text = session.get(receiver.url + "/", timeout=10).text
    assert "<script>alert(1)" not in text
    assert 'data-series="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in text
