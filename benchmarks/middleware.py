"""What the web middlewares add to a request, against the bare app and a prometheus_client twin.

Each row times one request through a trivial app three ways, in alternation in one process:
the bare app, the app inside impactagent's middleware, and the app inside the same
middleware written with ``prometheus_client`` (a Counter and a Histogram with the same
labels, looked up per request, as such middlewares are usually written). The overhead is
the wrapped median minus the bare median, in nanoseconds per request; the target is under
5 microseconds.

WSGI requests are a call plus iterating and closing the body, as a server does. ASGI
requests are driven without an event loop: the app never suspends, so one ``send(None)``
runs the whole request, and no loop cost hides the middleware's.

    python -m benchmarks.middleware            # full run, ~20 s
    python -m benchmarks.middleware --quick    # smoke run
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional

import prometheus_client

import impactagent
from benchmarks.timing import make_timer, summary
from impactagent.integrations import asgi, wsgi
from impactagent.integrations.http_metrics import HTTP_BUCKETS, ROUTE_KEY

TARGET_NS = 5000
LABELS = ("method", "route", "status_class")


def wsgi_app(environ: dict, start_response: Any) -> List[bytes]:
    environ[ROUTE_KEY] = "/users/{id}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_app(scope: dict, receive: Any, send: Any) -> None:
    scope[ROUTE_KEY] = "/users/{id}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class PrometheusWSGI:
    """The same middleware on prometheus_client: the peer people write by hand."""

    def __init__(self, app: Any) -> None:
        registry = prometheus_client.CollectorRegistry()
        self.app = app
        self.requests = prometheus_client.Counter("http_server_requests", "Requests", LABELS,
                                                  registry=registry)
        self.duration = prometheus_client.Histogram(
            "http_server_request_duration_seconds", "Duration", LABELS, buckets=HTTP_BUCKETS,
            registry=registry)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        start = time.perf_counter()
        status: List[str] = ["500"]

        def recording(line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = line[:3]
            return start_response(line, headers, exc_info)

        body = self.app(environ, recording)
        labels = (environ["REQUEST_METHOD"], environ.get(ROUTE_KEY, "unmatched"),
                  status[0][0] + "xx")
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(time.perf_counter() - start)
        return body


class PrometheusASGI:
    """The ASGI twin of :class:`PrometheusWSGI`."""

    def __init__(self, app: Any) -> None:
        self.inner = PrometheusWSGI(None)
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        start = time.perf_counter()
        status = 500

        async def recording(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, recording)
        labels = (scope["method"], scope.get(ROUTE_KEY, "unmatched"), f"{status // 100}xx")
        self.inner.requests.labels(*labels).inc()
        self.inner.duration.labels(*labels).observe(time.perf_counter() - start)


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    return None


WSGI_REQUEST = """\
body = app(environ, start_response)
for chunk in body:
    pass
close = getattr(body, "close", None)
if close is not None:
    close()
"""

ASGI_REQUEST = """\
try:
    app(scope, receive, send).send(None)
except StopIteration:
    pass
"""


def rows() -> List[Dict[str, Any]]:
    """Each row: a name, the request statement, and the apps to put through it."""
    agent = impactagent.Agent("bench")
    flag_agent = impactagent.Agent("bench-flags")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/7"}
    scope = {"type": "http", "method": "GET", "path": "/users/7"}
    return [
        {"name": "WSGI", "stmt": WSGI_REQUEST,
         "names": {"environ": environ, "start_response": _start_response},
         "apps": {"bare app": wsgi_app,
                  "impactagent": wsgi.ImpactMiddleware(wsgi_app, agent),
                  "impactagent, flags=(1 flag,)": wsgi.ImpactMiddleware(
                      wsgi_app, flag_agent, flags=("new-checkout",)),
                  "prometheus_client twin": PrometheusWSGI(wsgi_app)}},
        {"name": "ASGI", "stmt": ASGI_REQUEST,
         "names": {"scope": scope, "receive": _receive, "send": _send},
         "apps": {"bare app": asgi_app,
                  "impactagent": asgi.ImpactMiddleware(asgi_app, agent),
                  "impactagent, flags=(1 flag,)": asgi.ImpactMiddleware(
                      asgi_app, flag_agent, flags=("new-checkout",)),
                  "prometheus_client twin": PrometheusASGI(asgi_app)}},
    ]


def run(quick: bool = False) -> Dict[str, Any]:
    repeat, number = (5, 2_000) if quick else (9, 20_000)
    started = time.perf_counter()
    results = []
    for row in rows():
        timers = {side: make_timer(row["stmt"], {**row["names"], "app": app})
                  for side, app in row["apps"].items()}
        for timer in timers.values():
            timer.timeit(10)  # series exist before timing
        ns: Dict[str, List[float]] = {side: [] for side in timers}
        for _ in range(repeat):
            for side, timer in timers.items():  # alternate: noise hits every side alike
                ns[side].append(timer.timeit(number) / number * 1e9)
        bare = summary(ns["bare app"])["median"]
        for side, values in ns.items():
            result = summary(values)
            results.append({
                "interface": row["name"], "side": side, "ns": result,
                "overhead_ns": None if side == "bare app" else result["median"] - bare,
            })
    return {"repeat": repeat, "number": number, "rows": results,
            "elapsed_seconds": time.perf_counter() - started}


def table(results: Dict[str, Any]) -> str:
    lines = ["| interface | app | ns per request (median, min-max) | overhead over bare app "
             f"| impactagent under {TARGET_NS} ns? |", "|---|---|---|---|---|"]
    for row in results["rows"]:
        ns = row["ns"]
        cell = f"{ns['median']:.0f} ({ns['min']:.0f}-{ns['max']:.0f})"
        overhead = row["overhead_ns"]
        shown = "" if overhead is None else f"{overhead:.0f} ns"
        met = ""
        if row["side"].startswith("impactagent"):
            met = "yes" if overhead < TARGET_NS else "**no**"
        lines.append(f"| {row['interface']} | {row['side']} | {cell} | {shown} | {met} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.middleware",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args(argv)
    results = run(args.quick)
    print(header_line(results))
    print()
    print(table(results))
    return 0


def header_line(results: Dict[str, Any]) -> str:
    return (f"{results['repeat']} alternating repeats of {results['number']:,} requests per "
            f"side; took {results['elapsed_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
