"""Hypothesis strategies for the generated differential test: metrics requests drawn by
category, around the edges where the receiver once disagreed with unleash-server 8.2.0.

Each strategy takes the app name the request is sent as (unique per request, so that what
each app holds can be compared) and draws a list of :class:`Sent` requests: one for most
categories, several for ``window`` (bodies that meet in one write window).

Categories: ``numbers``, ``dates``, ``toggles`` (and variants), ``identity`` (appName and
the other string fields), ``impact`` (impact metrics), ``headers`` (and encodings),
``window`` (several bodies in one write window) and ``mutation`` (random mutations of a
valid body).
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional

from hypothesis import strategies as st

from tests.e2e.differential_corpus import FLAGS, mutations_by_name

#: Alone, each of these is a count or value somewhere near an edge of the server's rules.
EDGE_NUMBERS: List[Any] = [
    0, 1, 2, 7, 0.5, 1.5, 2.5, 1e-7, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 1e300, -1, -0.5,
    True, False, None, "3", " 4 ", "0x10", "0b11", "0o7", " ", "", "1e3", "1.50", "1_000",
    "\u0661\u0660", "Infinity", "1.0000000000000001", "-0", "+5", ".5", "5.", [], {},
]
VARIANT_NAMES = ["blue", "green", "", "__proto__", "constructor", "toString", "valueOf",
                 "hasOwnProperty", "é", "v" * 300, "a\u0000b", "a\ud800b", "😀"]
LABEL_NAMES = ["route", "", "new-checkout", "é", "1x", "a", "b", "appName"]
LABEL_VALUES: List[Any] = ["x", "1", 1, "x,b:y", "p,route:q", 1.5, 2.50, 1e21, "", "é",
                           "1.0000000000000001", True, None, "a\ud800"]
HEADER_VARIANTS: Dict[str, Dict[str, Any]] = {
    "plain": {},
    "no_content_type": {"content_type": None},
    "text_plain": {"content_type": "text/plain"},
    "form": {"content_type": "application/x-www-form-urlencoded"},
    "vnd_api_json": {"content_type": "application/vnd.api+json"},
    "charset_utf8": {"content_type": "application/json; charset=utf-8"},
    "charset_UTF8": {"content_type": "application/json; charset=UTF-8"},
    "charset_latin1": {"content_type": "application/json; charset=latin1"},
    "charset_utf16": {"content_type": "application/json; charset=utf-16", "charset": "utf-16"},
    "upper_case_type": {"content_type": "APPLICATION/JSON"},
    "gzip": {"encoding": "gzip"},
    "deflate": {"encoding": "deflate"},
    "br": {"encoding": "br"},
    "identity": {"encoding": "identity"},
    "chunked": {"chunked": True},
    "bearer": {"auth": "Bearer {token}"},
    "bearer_lower": {"auth": "bearer {token}"},
    "trailing_space": {"auth": "{token} "},
}


@dataclass
class Sent:
    """One request: its category, app, document (or raw bytes), and how it is sent."""

    category: str
    app: str
    document: Any
    headers: Dict[str, Any] = field(default_factory=dict)  # a HEADER_VARIANTS entry
    variant: str = "plain"

    def request(self, token: str) -> Dict[str, Any]:
        """``requests.post`` keyword arguments: ``data`` and ``headers`` (with the token)."""
        charset = self.headers.get("charset", "utf-8")
        # Escaped: a lone surrogate travels as "\ud800", as JSON writes it.
        raw = json.dumps(self.document).encode(charset)
        encoding = self.headers.get("encoding")
        if encoding == "gzip":
            raw = gzip.compress(raw)
        elif encoding in ("deflate", "br"):  # br: a body the server never reads (415)
            raw = zlib.compress(raw)
        headers = {"Authorization": self.headers.get("auth", "{token}").format(token=token)}
        content_type = self.headers.get("content_type", "application/json")
        if content_type is not None:
            headers["Content-Type"] = content_type
        if encoding:
            headers["Content-Encoding"] = encoding
        data: Any = raw
        if self.headers.get("chunked"):
            data = iter([raw[: len(raw) // 2], raw[len(raw) // 2:]])  # requests chunks it
        return {"data": data, "headers": headers}

    def describe(self) -> str:
        """The request in a line, without the token."""
        shown = json.dumps(self.document, ensure_ascii=True)
        return f"[{self.category}/{self.variant}] {shown[:600]}"


def now_bucket(toggles: Dict[str, Any], **dates: Any) -> Dict[str, Any]:
    stop = datetime.now(timezone.utc)
    return {"start": (stop - timedelta(seconds=10)).isoformat(), "stop": stop.isoformat(),
            "toggles": toggles, **dates}


def _counter(name: str, app: str, value: Any, **labels: Any) -> Dict[str, Any]:
    return {"name": name, "help": "h", "type": "counter",
            "samples": [{"labels": {"appName": app, "environment": "development", **labels},
                         "value": value}]}


def _metric_name(app: str, kind: str) -> str:
    return f"{app.replace('-', '_')}_{kind}"


@st.composite
def numbers(draw: Any, app: str) -> List[Sent]:
    edge = st.one_of(st.sampled_from(EDGE_NUMBERS), st.integers(0, 2**40),
                     st.floats(0, 1e6, allow_nan=False))
    toggle = {"yes": draw(edge), "no": draw(edge),
              "variants": {draw(st.sampled_from(["blue", "green"])): draw(edge)}}
    document: Dict[str, Any] = {"appName": app, "bucket": now_bucket({FLAGS[0]: toggle})}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["counter", "gauge"]))
        metric = _counter(_metric_name(app, kind), app, draw(edge))
        metric["type"] = kind
        document["impactMetrics"] = [metric]
    return [Sent("numbers", app, document)]


@st.composite
def dates(draw: Any, app: str) -> List[Sent]:
    now = datetime.now(timezone.utc)
    base = now.strftime("%Y-%m-%dT%H:%M:%S")
    ms = int(now.timestamp() * 1000)
    stop = draw(st.sampled_from([
        base + "Z", base + "z", base + ".123456Z", base.replace("T", " ") + "Z",
        base.replace("T", "t") + "Z", base + "+00:00", base + "+0000", base + "+00",
        base + "-00:00", base + "+24:00", base + "+23:59", base, base[:17] + "60Z",
        base[:11] + "24:00:00Z", ms, str(ms), float(ms), ms + 0.5, f" {ms} ", hex(ms),
        8_640_000_000_000_000, 8_640_000_000_000_001, -8_640_000_000_000_000,
        "0001-01-01T00:00:00Z", "0000-12-31T23:00:00Z", "9999-12-31T23:59:59Z",
        "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", True, None, "", "today",
    ]))
    start = draw(st.sampled_from([stop, base + "Z", ms - 10_000]))
    toggles = {FLAGS[1]: {"yes": 1, "no": 0, "variants": {}}}
    return [Sent("dates", app, {"appName": app,
                                "bucket": {"start": start, "stop": stop, "toggles": toggles}})]


@st.composite
def toggles(draw: Any, app: str) -> List[Sent]:
    chosen = draw(st.lists(st.sampled_from(FLAGS), min_size=1, max_size=3, unique=True))
    drawn: Dict[str, Any] = {}
    for flag in chosen:
        variants: Any = draw(st.one_of(
            st.dictionaries(st.sampled_from(VARIANT_NAMES), st.integers(0, 5), max_size=3),
            st.sampled_from(["", 0, False, None, [], "x"])))
        drawn[flag] = {"yes": draw(st.integers(0, 3)), "no": draw(st.integers(0, 3)),
                       "variants": variants}
        if draw(st.integers(0, 5)) == 0:
            del drawn[flag][draw(st.sampled_from(["yes", "no", "variants"]))]
    bucket: Any = now_bucket(drawn)
    if draw(st.integers(0, 7)) == 0:
        bucket = draw(st.sampled_from(["", 0, False, None, [], "x"]))
    return [Sent("toggles", app, {"appName": app, "bucket": bucket})]


@st.composite
def identity(draw: Any, app: str) -> List[Sent]:
    name: Any = draw(st.sampled_from([
        app, app + "x" * (255 - len(app)), app + "x" * (256 - len(app)), app + "\u0000",
        app + "\ud800", app + " ", app + "😀", app + "é" * 200, "", None]))
    document: Dict[str, Any] = {"appName": name,
                                "bucket": now_bucket({FLAGS[2]: {"yes": 1, "no": 1}})}
    for key in draw(st.lists(st.sampled_from([
            "instanceId", "environment", "sdkVersion", "platformName", "platformVersion",
            "yggdrasilVersion", "specVersion", "sdkFlavor", "sdkFlavorVersion",
            "connectionId"]), max_size=2, unique=True)):
        document[key] = draw(st.sampled_from(["", None, 5, True, {}, [], "x" * 33,
                                              "x" * 257, "\u0000", "ok"]))
    return [Sent("identity", app, document)]


@st.composite
def impact(draw: Any, app: str) -> List[Sent]:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram"]))
    samples = []
    for _ in range(draw(st.integers(1, 3))):
        labels = {"appName": app, "environment": "development"}
        labels.update(draw(st.dictionaries(st.sampled_from(LABEL_NAMES),
                                           st.sampled_from(LABEL_VALUES), max_size=2)))
        value = draw(st.one_of(st.integers(0, 100), st.sampled_from(EDGE_NUMBERS[:20])))
        if kind == "histogram":
            le = draw(st.sampled_from([1, "1", 0.5, "0.5", "1.0000000000000001", -1, 1e300]))
            samples.append({"labels": labels, "count": value, "sum": draw(
                st.sampled_from([0, 1.5, "2", True])), "buckets": [
                {"le": le, "count": value}, {"le": "+Inf", "count": value}]})
        else:
            samples.append({"labels": labels, "value": value})
    name = draw(st.sampled_from([_metric_name(app, kind), _metric_name(app, kind) + "-x",
                                 "1" + _metric_name(app, kind), _metric_name(app, kind) + "é"]))
    document = {"appName": app, "impactMetrics": [
        {"name": name, "help": draw(st.sampled_from(["h", ""])), "type": kind,
         "samples": samples}]}
    return [Sent("impact", app, document)]


@st.composite
def headers(draw: Any, app: str) -> List[Sent]:
    variant = draw(st.sampled_from(sorted(HEADER_VARIANTS)))
    document = {"appName": app, "bucket": now_bucket({FLAGS[0]: {"yes": 2, "no": 1}}),
                "impactMetrics": [_counter(_metric_name(app, "counter"), app, 1)]}
    return [Sent("headers", app, document, HEADER_VARIANTS[variant], variant)]


@st.composite
def window(draw: Any, app: str) -> List[Sent]:
    """Two or three bodies for one app and flag, meant to meet in one write window."""
    kind = draw(st.sampled_from(["sum", "prototype", "fraction"]))
    bodies = []
    for _ in range(draw(st.integers(2, 3))):
        if kind == "sum":
            toggle = {"yes": 1, "no": 0, "variants": {"blue": draw(st.sampled_from(
                [1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1]))}}
        elif kind == "prototype":
            toggle = {"yes": 1, "no": 0, "variants": {draw(st.sampled_from(
                ["toString", "valueOf", "hasOwnProperty", "constructor", "__proto__",
                 "blue"])): 1}}
        else:
            toggle = {"yes": draw(st.sampled_from([0.25, 0.5, 0.75, 1.5])), "no": 0}
        bodies.append(Sent("window", app, {"appName": app,
                                           "bucket": now_bucket({FLAGS[1]: toggle})}))
    return bodies


@st.composite
def mutation(draw: Any, app: str) -> List[Sent]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    document: Dict[str, Any] = {
        "appName": app, "instanceId": "gen", "environment": "development",
        "bucket": now_bucket({FLAGS[0]: {"yes": 3, "no": 1, "variants": {"blue": 2}}}),
        "impactMetrics": [_counter(_metric_name(app, "counter"), app, 2, route="/a"),
                          {"name": _metric_name(app, "histogram"), "help": "h",
                           "type": "histogram", "samples": [
                               {"labels": {"appName": app, "environment": "development"},
                                "count": 2, "sum": 0.7, "buckets": [
                                    {"le": 0.5, "count": 1}, {"le": "+Inf", "count": 2}]}]}]}
    mutations = mutations_by_name()
    names = sorted(set(mutations) - {"oversize", "app_name"})  # the app must stay ours
    applied = []
    for _ in range(draw(st.integers(1, 3))):
        chosen = rng.choice(names)
        if mutations[chosen](rng, document):
            applied.append(chosen)
    if not isinstance(document.get("appName"), str):
        document["appName"] = app
    return [Sent("mutation", app, document, variant="+".join(applied) or "none")]


CATEGORIES: Dict[str, Callable[[str], Any]] = {
    "numbers": numbers, "dates": dates, "toggles": toggles, "identity": identity,
    "impact": impact, "headers": headers, "window": window, "mutation": mutation,
}


def canary(app: str) -> Sent:
    """A body whose counts survive unless the server fails the whole write window."""
    return Sent("canary", app, {"appName": app, "bucket": now_bucket(
        {FLAGS[0]: {"yes": 1, "no": 1, "variants": {"blue": 1}}})})


def deep_copy(sent: Sent) -> Sent:
    return Sent(sent.category, sent.app, copy.deepcopy(sent.document), dict(sent.headers),
                sent.variant)


def stop_ms(document: Any) -> Optional[int]:
    """The bucket's stop as the server reads it, or None."""
    from impactagent.server_rules.jsvalues import js_date_ms

    bucket = document.get("bucket") if isinstance(document, dict) else None
    return js_date_ms(bucket.get("stop")) if isinstance(bucket, dict) else None
