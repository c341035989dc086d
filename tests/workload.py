"""A known workload and the exact totals a server should hold after it is delivered."""

from __future__ import annotations

from typing import Any, Dict

ROUTES = ("/", "/cart", "/checkout")


def record(agent: Any, rounds: int, *, offset: int = 0, expected: Dict[str, Any] | None = None
           ) -> Dict[str, Any]:
    """Record ``rounds`` simulated requests; return (or extend) the expected totals.

    The totals use the shape of ``ScriptedServer.totals()``: flags by name, counters and
    histogram counts by ``(metric name, frozenset of labels)``.
    """
    expected = expected if expected is not None else {"flags": {}, "counters": {},
                                                      "histogram_counts": {}}
    base = {"appName": agent.identity.app_name, "environment": agent.identity.environment}
    requests = agent.counter("requests_total", "Requests", labels=("route",))
    latency = agent.histogram("latency_seconds", "Latency", buckets=(0.01, 0.1, 1))
    jobs = agent.counter("jobs_total", "Jobs")
    for i in range(offset, offset + rounds):
        route = ROUTES[i % len(ROUTES)]
        requests.labels(route=route).inc()
        key = ("requests_total", frozenset({**base, "route": route}.items()))
        expected["counters"][key] = expected["counters"].get(key, 0) + 1
        jobs.inc(2)
        key = ("jobs_total", frozenset(base.items()))
        expected["counters"][key] = expected["counters"].get(key, 0) + 2
        latency.observe((i % 7) / 10)
        key = ("latency_seconds", frozenset(base.items()))
        expected["histogram_counts"][key] = expected["histogram_counts"].get(key, 0) + 1
        enabled = i % 3 != 0
        variant = ("blue", "green")[i % 2] if enabled else "disabled"
        agent.record_flag("new-checkout", enabled, variant)
        flag = expected["flags"].setdefault("new-checkout",
                                            {"yes": 0, "no": 0, "variants": {}})
        flag["yes" if enabled else "no"] += 1
        flag["variants"][variant] = flag["variants"].get(variant, 0) + 1
    return expected


def delivered(totals: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of ``ScriptedServer.totals()`` that ``record`` predicts."""
    return {
        "flags": totals["flags"],
        "counters": totals["counters"],
        "histogram_counts": {k: v["count"] for k, v in totals["histograms"].items()},
    }
