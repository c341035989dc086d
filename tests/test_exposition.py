"""Every ``/metrics`` output, the receiver's and the agent's, in the text format and in
OpenMetrics, parsed by both of ``prometheus_client``'s parsers, with hostile names and values;
the values parsed back equal what was sent.

The receiver's names follow unleash-server 8.x's re-exposition (``MetricsTranslator`` in
``dist/lib/features/metrics/impact/metrics-translator.js``): see
:mod:`impactagent.devtools.received_exposition`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

import pytest
import requests
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

import impactagent
from impactagent.devtools.received import ReceivedMetrics
from impactagent.devtools.received_exposition import (
    openmetrics_format,
    text_format,
    wants_openmetrics,
)
from impactagent.devtools.receiver import Receiver
from impactagent.prometheus.collector import registry_for
from impactagent.server_rules.jsvalues import js_number

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
#: What Prometheus 2.x sends when it scrapes (OpenMetrics first, then the text format).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
TEXT_ACCEPTS = [None, "text/plain", "text/plain; version=0.0.4", "*/*",
                "application/openmetrics-text; version=0.0.1"]
OPENMETRICS_ACCEPTS = [OPENMETRICS, "application/openmetrics-text", PROMETHEUS_ACCEPT]

Key = Tuple[str, FrozenSet[Tuple[str, str]]]

#: Label names a sender may use, and what the server's sanitising makes of them.
HOSTILE_NAMES = {
    "new-checkout": "new_checkout",
    "dotted.name": "dotted_name",
    "with space": "with_space",
    "ünïcode": "_n_code",
    "emoji😀": "emoji__",  # two UTF-16 code units: two underscores, as in JavaScript
    "line\nbreak": "line_break",
    "forged\nevil_total 1000\n# x": "forged_evil_total_1000___x",
}
#: Label values with every character the formats escape, and some they do not.
HOSTILE_VALUE = 'say "hi"\\ to\nme\r\u2028 # {a="b"} ünï😀'


# -- reading a scrape -----------------------------------------------------------------------


def parse(text: str, openmetrics: bool) -> Dict[Key, float]:
    """Every sample in ``text``, parsed by the parser of its format (OpenMetrics output by
    both: the text parser reads it too). Raises if a parser refuses it."""
    found = _samples(text_families(text))
    if openmetrics:
        assert text.endswith("# EOF\n")
        found = _samples(openmetrics_families(text))
    else:
        assert "# EOF" not in text
    return found


def _samples(families: Iterator[Any]) -> Dict[Key, float]:
    found: Dict[Key, float] = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"one series twice: {key}"
            found[key] = sample.value
    return found


def families_of(text: str, openmetrics: bool) -> Dict[str, Any]:
    parser = openmetrics_families if openmetrics else text_families
    return {family.name: family for family in parser(text)}


def scrape(url: str, accept: Optional[str], *, exact: bool = True) -> Tuple[str, bool]:
    """GET ``url`` with this Accept header: the text and whether it came as OpenMetrics."""
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        headers = {"Accept": accept} if accept is not None else {}
        response = session.get(url, headers=headers, timeout=5)
    assert response.status_code == 200
    content_type = response.headers["Content-Type"]
    openmetrics = content_type.startswith("application/openmetrics-text")
    expected = ("application/openmetrics-text; version=1.0.0; charset=utf-8" if openmetrics
                else "text/plain; version=0.0.4; charset=utf-8")
    # prometheus_client (the agent's endpoint) may add "; escaping=underscores".
    assert content_type == expected if exact else content_type.startswith(expected)
    return response.content.decode("utf-8"), openmetrics


def labels(**more: str) -> FrozenSet[Tuple[str, str]]:
    return frozenset(more.items())


def server_labels(kind: str, **more: str) -> FrozenSet[Tuple[str, str]]:
    """The labels the server gives every series, and the sample's own."""
    return frozenset({"origin": "sdk", "metric_type": kind, **more}.items())


# -- the receiver -----------------------------------------------------------------------------


def body(app: str, metrics: List[Dict[str, Any]], toggles: Optional[Dict[str, Any]] = None
         ) -> Dict[str, Any]:
    return {"appName": app, "environment": "production", "instanceId": "i-1",
            "bucket": {"start": "2026-11-25T10:15:00.000Z", "stop": "2026-11-25T10:16:00.000Z",
                       "toggles": toggles or {}},
            "impactMetrics": metrics}


def post(receiver: Receiver, document: Dict[str, Any]) -> None:
    with requests.Session() as session:
        session.trust_env = False
        answer = session.post(receiver.api_url + "/client/metrics", json=document, timeout=5,
                              headers={"Authorization": "default:production.secret"})
    assert answer.status_code == 202, answer.text


def scrape_receiver(receiver: Receiver, accept: Optional[str]) -> Tuple[Dict[Key, float], bool]:
    text, openmetrics = scrape(receiver.url + "/metrics", accept)
    return parse(text, openmetrics), openmetrics


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.mark.parametrize("accept", TEXT_ACCEPTS + OPENMETRICS_ACCEPTS)
def test_the_receiver_sanitises_label_names_and_escapes_values_as_the_server(receiver, accept):
    sample_labels = {name: HOSTILE_VALUE + name for name in HOSTILE_NAMES}
    sample_labels["9lives"] = "a label the server drops: a digit first"
    post(receiver, body("shop", [
        {"name": "checkouts", "help": 'Checkouts\nby "variant" \\ route', "type": "counter",
         "samples": [{"labels": sample_labels, "value": 3}]},
        {"name": "queue_depth", "help": "Jobs\nwaiting", "type": "gauge",
         "samples": [{"labels": {"status": "200"}, "value": -2.5}]},
    ], toggles={'we"ird\nflag\\': {"yes": 2, "no": 1, "variants": {}}}))

    found, openmetrics = scrape_receiver(receiver, accept)

    assert openmetrics == (accept in OPENMETRICS_ACCEPTS)
    expected_labels = {sanitised: HOSTILE_VALUE + name for name, sanitised in
                       HOSTILE_NAMES.items()}
    assert found[("checkouts_total", server_labels("counter", **expected_labels))] == 3
    assert found[("queue_depth", server_labels("gauge", status="200"))] == -2.5
    flag = labels(appName="shop", environment="production", feature='we"ird\nflag\\')
    assert found[("impactagent_received_flag_evaluations_total",
                  frozenset({*flag, ("enabled", "true")}))] == 2
    assert found[("impactagent_received_flag_evaluations_total",
                  frozenset({*flag, ("enabled", "false")}))] == 1
    # The newline in a label name forged nothing: every sample is one we sent.
    assert {name for name, _ in found} == {"checkouts_total", "queue_depth",
                                          "impactagent_received_flag_evaluations_total"}


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_help_text_with_newlines_quotes_and_backslashes_reads_back_whole(receiver, accept):
    help_text = 'line one\nline "two" \\ three\r four'
    post(receiver, body("shop", [{"name": "jobs", "help": help_text, "type": "gauge",
                                  "samples": [{"labels": {}, "value": 1}]}]))
    text, openmetrics = scrape(receiver.url + "/metrics", accept)
    assert openmetrics == bool(accept)
    assert families_of(text, openmetrics)["jobs"].documentation == help_text


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_label_names_that_collide_after_sanitising_are_one_label(receiver, accept):
    # The server keeps the key that comes last in the sample, and so does the receiver
    # ("a b" is the last key of the third sample).
    post(receiver, body("shop", [{"name": "hits", "help": "Hits", "type": "counter", "samples": [
        {"labels": {"a-b": "1", "a.b": "2"}, "value": 1},
        {"labels": {"a-b": "3", "a.b": "2"}, "value": 10},  # the same series, exposed
        {"labels": {"a-b": "4", "a_b": "5", "a b": "6"}, "value": 100},
    ]}]))
    found, _ = scrape_receiver(receiver, accept)
    hits = {key: value for key, value in found.items() if key[0] == "hits_total"}
    assert hits == {("hits_total", server_labels("counter", a_b="2")): 11,
                    ("hits_total", server_labels("counter", a_b="6")): 100}


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_same_series_from_two_apps_is_one_series(receiver, accept):
    # As on the server, which adds no appName label: samples without one (what the SDKs send
    # for metrics defined but unused) are one series; an appName label keeps apps apart.
    for app, n, depth in (("shop", 2, 7), ("web", 3, 9)):
        post(receiver, body(app, [
            {"name": "orders", "help": "Orders", "type": "counter", "samples": [
                {"labels": {}, "value": n},
                {"labels": {"appName": app, "environment": "production"}, "value": n}]},
            {"name": "depth", "help": "Depth", "type": "gauge", "samples": [
                {"labels": {}, "value": depth}]},
            {"name": "latency", "help": "Latency", "type": "histogram", "samples": [
                {"labels": {}, "count": n, "sum": 0.5 * n, "buckets": [
                    {"le": 0.1, "count": 1}, {"le": 1, "count": n}, {"le": "+Inf", "count": n}]}]},
        ]))
    found, _ = scrape_receiver(receiver, accept)

    assert found[("orders_total", server_labels("counter"))] == 5
    for app, n in (("shop", 2), ("web", 3)):
        kept_apart = server_labels("counter", appName=app, environment="production")
        assert found[("orders_total", kept_apart)] == n
    # A gauge set by two apps: the one that sorts last (the store keeps no order across apps).
    assert [v for (name, _), v in found.items() if name == "depth"] == [9]
    histogram = server_labels("histogram")
    assert found[("latency_bucket", frozenset({*histogram, ("le", "0.1")}))] == 2
    assert found[("latency_bucket", frozenset({*histogram, ("le", "1.0" if accept else "1")}))
                 ] == 5
    assert found[("latency_bucket", frozenset({*histogram, ("le", "+Inf")}))] == 5
    assert found[("latency_count", histogram)] == 5
    assert found[("latency_sum", histogram)] == 2.5


def test_the_receiver_answers_openmetrics_exactly_when_prometheus_client_would():
    # The fact copied: prometheus_client.exposition.choose_encoder, as of the releases that
    # know OpenMetrics 1.0.0 (older ones, such as the 0.20 lower bound, answer 0.0.1 with
    # the same choice of format: the expectations are written out, not asked of it).
    expected = {**{accept: False for accept in TEXT_ACCEPTS},
                **{accept: True for accept in OPENMETRICS_ACCEPTS},
                "text/html, application/openmetrics-text": True,
                "application/openmetrics-text;version=2.0.0": True,
                "application/json": False,
                " application/openmetrics-text ; version=1.0.0 ; q=0.1": True}
    for accept, openmetrics in expected.items():
        assert wants_openmetrics(accept) == openmetrics, accept
        chosen = choose_encoder(accept or "")[1]
        if accept and "version=0.0.1" not in accept:  # the one case releases disagree on
            assert chosen.startswith("application/openmetrics-text") == openmetrics, accept


# -- names the receiver cannot be sent today (validation discards them), held all the same --


def hold(*documents: Dict[str, Any]) -> ReceivedMetrics:
    """A store holding these bodies as if accepted (the exposition must cope with whatever a
    store holds, even names today's validation refuses)."""
    received = ReceivedMetrics()
    for document in documents:
        received.add(document, "production")
    return received


def both_formats(received: ReceivedMetrics) -> Iterator[Tuple[Dict[Key, float], bool]]:
    yield parse(text_format(received), False), False
    yield parse(openmetrics_format(received), True), True


def test_metric_names_are_sanitised_and_a_leading_digit_is_not_exposed():
    received = hold(body("shop", [
        {"name": "new-checkout.count", "help": "h", "type": "gauge",
         "samples": [{"labels": {}, "value": 4}]},
        {"name": "ünï😀", "help": "h", "type": "gauge", "samples": [{"labels": {}, "value": 5}]},
        {"name": "9lives", "help": "h", "type": "gauge", "samples": [{"labels": {}, "value": 6}]},
        {"name": "bad\nname 7", "help": "h", "type": "gauge",
         "samples": [{"labels": {}, "value": 8}]},
    ]))
    for found, _ in both_formats(received):
        assert found == {("new_checkout_count", server_labels("gauge")): 4,
                         ("_n___", server_labels("gauge")): 5,
                         ("bad_name_7", server_labels("gauge")): 8}


def test_names_that_collide_are_one_family_and_clashing_suffixes_are_shown_once():
    received = hold(
        body("a", [
            {"name": "x-y", "help": "h", "type": "counter",
             "samples": [{"labels": {}, "value": 1}]},
            {"name": "runs", "help": "h", "type": "counter",
             "samples": [{"labels": {}, "value": 2}]},
            # "runs" is "runs_total" in OpenMetrics: this gauge would clash with it.
            {"name": "runs_total", "help": "h", "type": "gauge",
             "samples": [{"labels": {}, "value": 9}]},
            {"name": "lat", "help": "h", "type": "gauge", "samples": [{"labels": {}, "value": 1}]},
            {"name": "lat_bucket", "help": "h", "type": "gauge",
             "samples": [{"labels": {}, "value": 1}]},
        ]),
        body("b", [{"name": "x.y", "help": "h", "type": "counter",
                    "samples": [{"labels": {}, "value": 4}]}]))
    for found, _ in both_formats(received):
        assert found[("x_y_total", server_labels("counter"))] == 5
        assert found[("runs_total", server_labels("counter"))] == 2
        assert ("runs_total", server_labels("gauge")) not in found


def test_a_histogram_label_named_le_is_exported_le_and_negative_buckets_have_no_sum_in_om():
    received = hold(body("shop", [{"name": "temp", "help": "h", "type": "histogram", "samples": [
        {"labels": {"le": "mine"}, "count": 3, "sum": -4.5, "buckets": [
            {"le": -1, "count": 2}, {"le": 2.5, "count": 3}, {"le": "+Inf", "count": 3}]}]}]))
    own = server_labels("histogram", exported_le="mine")
    text = parse(text_format(received), False)
    assert text[("temp_bucket", frozenset({*own, ("le", "-1")}))] == 2
    assert text[("temp_sum", own)] == -4.5 and text[("temp_count", own)] == 3
    om = parse(openmetrics_format(received), True)
    assert om[("temp_bucket", frozenset({*own, ("le", "-1.0")}))] == 2
    assert om[("temp_bucket", frozenset({*own, ("le", "+Inf")}))] == 3  # the count, still
    assert ("temp_sum", own) not in om and ("temp_count", own) not in om


def test_a_histogram_openmetrics_cannot_state_is_left_out_of_it_only():
    received = hold(body("shop", [{"name": "odd", "help": "h", "type": "histogram", "samples": [
        {"labels": {"k": "decreasing"}, "count": 1, "sum": 1, "buckets": [
            {"le": 1, "count": 5}, {"le": "+Inf", "count": 1}]}]}]))
    assert ("odd_count", server_labels("histogram", k="decreasing")) in parse(
        text_format(received), False)
    assert not [key for key in parse(openmetrics_format(received), True) if key[0] != (
        "impactagent_received_flag_evaluations_total")]


def test_label_values_sent_as_numbers_are_written_as_javascript_writes_them():
    # The server's Joi schema takes a string or a number; prom-client writes `${value}`.
    received = hold(body("shop", [{"name": "g", "help": "h", "type": "gauge", "samples": [
        {"labels": {"status": 200, "ratio": 0.5, "big": 1e21, "whole": 3.0}, "value": 1}]}]))
    for found, _ in both_formats(received):
        assert found == {("g", server_labels("gauge", status="200", ratio="0.5", big="1e+21",
                                             whole="3")): 1}


def test_lone_surrogates_become_the_replacement_character():
    received = hold(json.loads('{"appName": "shop", "impactMetrics": [{"name": "g", '
                               '"help": "h\\ud800", "type": "gauge", "samples": [{"labels": '
                               '{"k\\udc00": "v\\ud83d"}, "value": 1}]}]}'))
    for found, _ in both_formats(received):
        assert found == {("g", server_labels("gauge", k_="v\ufffd")): 1}


@pytest.mark.parametrize("number, written", [
    (0, "0"), (5, "5"), (100.0, "100"), (-2.5, "-2.5"), (0.1, "0.1"), (1e21, "1e+21"),
    (1.5e-6, "0.0000015"), (1e-7, "1e-7"), (123456789012345680000.0, "123456789012345680000"),
    (2 ** 53 - 1, "9007199254740991"), (1.25e-300, "1.25e-300")])
def test_numbers_are_written_as_javascript_writes_them(number, written):
    assert js_number(number) == written


# -- the agent's own endpoint ----------------------------------------------------------------


def hostile_agent() -> Tuple[impactagent.Agent, Dict[Key, float]]:
    """An agent with hostile label values and help, a negative histogram sum, and a gauge
    whose name clashes with a counter's in OpenMetrics; and what a scrape must show."""
    agent = impactagent.Agent("shop", "production")
    identity = {"appName": "shop", "environment": "production"}
    counter = agent.counter("checkouts", 'Checkouts\nby "route" \\ here', labels=("route",))
    counter.labels(HOSTILE_VALUE).inc(3)
    counter.labels("lone \udc80 surrogate").inc(2)
    agent.gauge("checkouts_total", "Clashes with the counter's OpenMetrics sample").set(1)
    temp = agent.histogram("temp", "Temperature", buckets=(0, 10))
    temp.observe(-5)
    temp.observe(3)
    agent.record_flag('we"ird\nflag', True)
    expected = {
        ("checkouts_total", labels(**identity, route=HOSTILE_VALUE)): 3,
        ("checkouts_total", labels(**identity, route="lone \ufffd surrogate")): 2,
        ("temp_bucket", labels(**identity, le="0.0")): 1,
        ("temp_bucket", labels(**identity, le="10.0")): 2,
        ("temp_bucket", labels(**identity, le="+Inf")): 2,
        ("impactagent_flag_evaluations_total", labels(feature='we"ird\nflag', enabled="true")): 1,
    }
    return agent, expected


def check_agent_scrape(text: str, openmetrics: bool, expected: Dict[Key, float]) -> None:
    found = parse(text, openmetrics)
    for key, value in expected.items():
        assert found[key] == value, key
    assert not [key for key in found if key[0] in ("temp_sum", "temp_count")]  # sum < 0
    # The clashing gauge (no route label) is left out; the counter keeps the name.
    assert not [key for key in found if key[0] == "checkouts_total" and
                "route" not in dict(key[1])]
    assert families_of(text, openmetrics)["checkouts"].documentation == \
        'Checkouts\nby "route" \\ here'


@pytest.mark.parametrize("accept", [None, "text/plain; version=0.0.4", *OPENMETRICS_ACCEPTS])
def test_the_agents_http_endpoint_parses_in_both_formats(accept):
    agent, expected = hostile_agent()
    http = agent.serve_prometheus(0)
    try:
        assert http.server_address[0] == "127.0.0.1"
        text, openmetrics = scrape(f"http://127.0.0.1:{http.server_port}/metrics", accept,
                                   exact=False)
    finally:
        http.shutdown()
        http.server_close()
        agent.close()
    assert openmetrics == (accept in OPENMETRICS_ACCEPTS)
    check_agent_scrape(text, openmetrics, expected)


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_agents_wsgi_app_parses_in_both_formats(accept):
    agent, expected = hostile_agent()
    app = agent.prometheus_wsgi_app()
    answer: List[Any] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    if accept:
        environ["HTTP_ACCEPT"] = accept
    text = b"".join(app(environ, lambda status, headers, exc=None: answer.extend(
        [status, dict(headers)]))).decode()
    agent.close()
    assert answer[0] == "200 OK"
    openmetrics = answer[1]["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics == bool(accept)
    check_agent_scrape(text, openmetrics, expected)


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_agents_asgi_app_parses_in_both_formats(accept):
    agent, expected = hostile_agent()
    app = agent.prometheus_asgi_app()
    sent: List[Dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [(b"accept", accept.encode())] if accept else []
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": headers}
    asyncio.run(app(scope, receive, send))
    agent.close()
    assert sent[0]["status"] == 200
    content_type = {k.lower(): v for k, v in sent[0]["headers"]}[b"content-type"].decode()
    openmetrics = content_type.startswith("application/openmetrics-text")
    assert openmetrics == bool(accept)
    check_agent_scrape(b"".join(m.get("body", b"") for m in sent[1:]).decode(), openmetrics,
                       expected)


def test_a_histogram_with_a_negative_bound_keeps_its_buckets_in_both_formats():
    agent = impactagent.Agent("shop", "production")
    agent.histogram("delta", "Change", buckets=(-1, 1)).observe(0)
    app = agent.prometheus_wsgi_app()
    for accept in ("", OPENMETRICS):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                   "HTTP_ACCEPT": accept}
        text = b"".join(app(environ, lambda *args: None)).decode()
        found = parse(text, bool(accept))
        plus_inf = labels(appName="shop", environment="production", le="+Inf")
        assert found[("delta_bucket", plus_inf)] == 1
    agent.close()


def test_an_app_family_named_as_one_of_the_agents_own_is_left_out():
    # Every name the agent's own families show (pending gauge and counters alike) is taken.
    own = families_of(generate_latest(registry_for(impactagent.Agent("shop"))).decode(), False)
    agent = impactagent.Agent("shop")
    for name, family in own.items():
        agent.gauge(name, "Clashes with the agent's own family").set(7)
        if family.type == "counter":
            agent.gauge(name + "_total", "Clashes with its sample").set(7)
    for encode, openmetrics in ((generate_latest, False), (openmetrics_latest, True)):
        found = parse(encode(registry_for(agent)).decode(), openmetrics)
        assert not [key for key in found if ("appName", "shop") in key[1]], openmetrics
    agent.close()
