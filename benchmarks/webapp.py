"""The WSGI app the web benchmark serves, in three variants chosen by an environment variable.

``IMPACTAGENT_BENCH_VARIANT`` (read once, at import, in the gunicorn worker):

- ``off``: the app alone. Each request decides five flags (a hash of the user id) and
  renders a small JSON answer; nothing is measured.
- ``on``: the same app, and impactagent the way an app would use it: an ``Agent`` without
  a url (nothing is sent; recording is the whole cost), the five flag decisions counted
  with ``agent.record_flag``, three metrics per request (a counter with a label, a
  histogram observation, a gauge set) and
  ``impactagent.integrations.wsgi.ImpactMiddleware`` counting and timing every request.
- ``prometheus``: the same work on prometheus_client: the same three metrics, a counter
  labelled by flag and state for the five flag decisions, and the hand-written request
  middleware of :mod:`benchmarks.middleware` (prometheus_client ships none).

``GET /_stats`` answers what the variant recorded, so the benchmark can check that the
measured server really did the work.

    IMPACTAGENT_BENCH_VARIANT=on gunicorn -w 1 --threads 4 -b 127.0.0.1:8000 \\
        benchmarks.webapp:app
"""

from __future__ import annotations

import itertools
import json
import os
import time
import zlib
from typing import Any, Callable, Dict, List

VARIANT = os.environ.get("IMPACTAGENT_BENCH_VARIANT", "off")
VARIANTS = ("off", "on", "prometheus")
FLAGS = ("new-checkout", "dark-mode", "fast-search", "one-click", "beta-banner")
ROUTE = "/users/{id}"

if VARIANT not in VARIANTS:
    raise SystemExit(f"IMPACTAGENT_BENCH_VARIANT must be one of {VARIANTS}, not {VARIANT!r}")


def decide(user: str) -> List[bool]:
    """The app's own flag decisions: the same for every variant, so only recording differs."""
    h = zlib.crc32(user.encode())
    return [bool(h >> i & 1) for i in range(len(FLAGS))]


def render(user: str, flags: List[bool]) -> bytes:
    return json.dumps({"user": user, "flags": dict(zip(FLAGS, flags))}).encode()


StartResponse = Callable[..., Any]


def bare_app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
    user = environ.get("PATH_INFO", "/").rsplit("/", 1)[-1]
    body = render(user, decide(user))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def stats_answer(start_response: StartResponse, stats: Dict[str, Any],
                 served: int) -> List[bytes]:
    """What the variant recorded, the requests it served, and the CPU seconds the worker
    process has used (every thread: the app, gunicorn's, the agent's): the benchmark reads
    CPU per request from two of these, which the load generator's share of the cores does
    not blur as it blurs requests/s."""
    body = json.dumps(dict(stats, requests=served, cpu_seconds=time.process_time())).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


class Served:
    """Requests served, counted the same cheap way in every variant (an ``itertools.count``
    advanced once per request: exact under threads, the same cost for all three)."""

    def __init__(self) -> None:
        self._ticks = itertools.count()
        self.one = self._ticks.__next__
        self._reads = 0

    @property
    def count(self) -> int:
        self._reads += 1
        return next(self._ticks) - (self._reads - 1)


def off_app() -> Callable[..., List[bytes]]:
    served = Served()

    def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
        if environ.get("PATH_INFO") == "/_stats":
            return stats_answer(start_response, {}, served.count)
        served.one()
        return bare_app(environ, start_response)

    return app


def on_app() -> Any:
    import impactagent
    from impactagent.integrations.http_metrics import ROUTE_KEY
    from impactagent.integrations.wsgi import ImpactMiddleware

    agent = impactagent.Agent("bench-web")  # no url: records, never sends
    orders = agent.counter("orders", "Orders by plan", labels=("plan",))
    basket = agent.histogram("basket_value", "Basket value")
    active = agent.gauge("active_users", "Users seen recently")
    record_flag = agent.record_flag
    served = Served()

    def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
        if environ.get("PATH_INFO") == "/_stats":
            return stats_answer(start_response, agent.statistics()["recorded"], served.count)
        served.one()
        environ[ROUTE_KEY] = ROUTE
        user = environ.get("PATH_INFO", "/").rsplit("/", 1)[-1]
        flags = decide(user)
        for name, enabled in zip(FLAGS, flags):
            record_flag(name, enabled)
        orders.labels("pro" if flags[0] else "free").inc()
        basket.observe(len(user) * 3.5)
        active.set(len(user))
        body = render(user, flags)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return ImpactMiddleware(app, agent)


def prometheus_app() -> Any:
    import prometheus_client

    from benchmarks.middleware import PrometheusWSGI
    from impactagent.integrations.http_metrics import ROUTE_KEY

    registry = prometheus_client.CollectorRegistry()
    orders = prometheus_client.Counter("orders", "Orders by plan", ["plan"], registry=registry)
    basket = prometheus_client.Histogram("basket_value", "Basket value", registry=registry)
    active = prometheus_client.Gauge("active_users", "Users seen recently", registry=registry)
    evaluations = prometheus_client.Counter("feature_flag_evaluations", "Flag evaluations",
                                            ["flag", "enabled"], registry=registry)

    served = Served()

    def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
        if environ.get("PATH_INFO") == "/_stats":
            total = sum(s.value for m in registry.collect() for s in m.samples
                        if s.name == "feature_flag_evaluations_total")
            return stats_answer(start_response, {"flag_evaluations": total}, served.count)
        served.one()
        environ[ROUTE_KEY] = ROUTE
        user = environ.get("PATH_INFO", "/").rsplit("/", 1)[-1]
        flags = decide(user)
        for name, enabled in zip(FLAGS, flags):
            evaluations.labels(name, "true" if enabled else "false").inc()
        orders.labels("pro" if flags[0] else "free").inc()
        basket.observe(len(user) * 3.5)
        active.set(len(user))
        body = render(user, flags)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return PrometheusWSGI(app)


app = {"off": off_app, "on": on_app, "prometheus": prometheus_app}[VARIANT]()
