"""A known workload and the exact totals a server should hold after it is delivered.

Observed values are multiples of 1/8, so every sum is exact in binary floating point and
totals can be compared with ``==`` however the server adds them up.
"""

from __future__ import annotations

from typing import Any, Dict

ROUTES = ("/", "/cart", "/checkout")
LATENCY_BUCKETS = (0.25, 0.5, 1.0)
FLAGS = ("new-checkout", "search-ranking")


def empty() -> Dict[str, Any]:
    return {"flags": {}, "counters": {}, "gauges": {}, "histograms": {}}


def record(agent: Any, rounds: int, *, offset: int = 0, expected: Dict[str, Any] | None = None
           ) -> Dict[str, Any]:
    """Record ``rounds`` simulated requests; return (or extend) the expected totals.

    The totals use the shape of ``ScriptedServer.totals()``: flags by name; counters, gauges
    and histograms by ``(metric name, frozenset of labels)``, histograms as count, sum and
    cumulative counts by bucket (``"+Inf"`` included).
    """
    expected = expected if expected is not None else empty()
    base = {"appName": agent.identity.app_name, "environment": agent.identity.environment}
    requests = agent.counter("requests_total", "Requests", labels=("route",))
    latency = agent.histogram("latency_seconds", "Latency", buckets=LATENCY_BUCKETS)
    jobs = agent.counter("jobs_total", "Jobs")
    inflight = agent.gauge("inflight_requests", "Requests in flight")
    for i in range(offset, offset + rounds):
        route = ROUTES[i % len(ROUTES)]
        requests.labels(route=route).inc()
        _add(expected["counters"], ("requests_total", frozenset({**base, "route": route}.items())))
        jobs.inc(2)
        _add(expected["counters"], ("jobs_total", frozenset(base.items())), 2)
        value = (i % 7) / 8
        latency.observe(value)
        _observe(expected["histograms"], ("latency_seconds", frozenset(base.items())), value)
        inflight.set(i % 5)
        expected["gauges"][("inflight_requests", frozenset(base.items()))] = i % 5
        enabled = i % 3 != 0
        variant = ("blue", "green")[i % 2] if enabled else "disabled"
        agent.record_flag("new-checkout", enabled, variant)
        _count_flag(expected["flags"], "new-checkout", enabled, variant)
        agent.record_flag("search-ranking", i % 2 == 0)
        _count_flag(expected["flags"], "search-ranking", i % 2 == 0, None)
    return expected


def _add(totals: Dict[Any, int], key: Any, n: int = 1) -> None:
    totals[key] = totals.get(key, 0) + n


def _observe(histograms: Dict[Any, Dict[str, Any]], key: Any, value: float) -> None:
    total = histograms.setdefault(key, {"count": 0, "sum": 0.0, "buckets": {
        **{le: 0 for le in LATENCY_BUCKETS}, "+Inf": 0}})
    total["count"] += 1
    total["sum"] += value
    for le in total["buckets"]:
        if le == "+Inf" or value <= le:
            total["buckets"][le] += 1


def _count_flag(flags: Dict[str, Any], name: str, enabled: bool, variant: str | None) -> None:
    flag = flags.setdefault(name, {"yes": 0, "no": 0, "variants": {}})
    flag["yes" if enabled else "no"] += 1
    if variant is not None:
        flag["variants"][variant] = flag["variants"].get(variant, 0) + 1


def events(expected: Dict[str, Any]) -> int:
    """Flag evaluations, counter increments and histogram observations in ``expected``."""
    return (sum(f["yes"] + f["no"] for f in expected["flags"].values())
            + sum(expected["counters"].values())
            + sum(h["count"] for h in expected["histograms"].values()))


def delivered(totals: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of ``ScriptedServer.totals()`` that ``record`` predicts."""
    return {key: totals[key] for key in ("flags", "counters", "gauges", "histograms")}


def stored_twice(expected: Dict[str, Any]) -> Dict[str, Any]:
    """What a server holds when every body of ``expected`` reached it twice: counts double,
    gauges (last value wins) do not."""
    flags = {name: {"yes": 2 * f["yes"], "no": 2 * f["no"],
                    "variants": {v: 2 * n for v, n in f["variants"].items()}}
             for name, f in expected["flags"].items()}
    histograms = {key: {"count": 2 * h["count"], "sum": 2 * h["sum"],
                        "buckets": {le: 2 * n for le, n in h["buckets"].items()}}
                  for key, h in expected["histograms"].items()}
    return {"flags": flags, "counters": {k: 2 * v for k, v in expected["counters"].items()},
            "gauges": dict(expected["gauges"]), "histograms": histograms}


def flags_of(*expected: Dict[str, Any]) -> Dict[str, Any]:
    """The flag counts of several runs added up (the server keeps them across restarts)."""
    total: Dict[str, Any] = {}
    for part in expected:
        for name, f in part["flags"].items():
            flag = total.setdefault(name, {"yes": 0, "no": 0, "variants": {}})
            flag["yes"] += f["yes"]
            flag["no"] += f["no"]
            for variant, n in f["variants"].items():
                flag["variants"][variant] = flag["variants"].get(variant, 0) + n
    return total


def flush_until_delivered(agent: Any, attempts: int = 20) -> Any:
    """Flush until a flush sends everything and nothing is pending (bounded); its result."""
    for _ in range(attempts):
        result = agent.flush(timeout=10)
        if result.ok and agent.statistics()["pending_events"] == 0:
            return result
    raise AssertionError(f"not delivered after {attempts} flushes: {agent.statistics()}")


def series(totals: Dict[str, Any], kind: str, name: str) -> Dict[Any, Any]:
    """``{labels without appName/environment: value}`` of one metric in server totals
    (``ScriptedServer.totals()``, or the real server's as read back in tests/e2e)."""
    return {frozenset((k, v) for k, v in labels if k not in ("appName", "environment")): value
            for (metric, labels), value in totals[kind].items() if metric == name}


def in_process_ledger(agent: Any) -> Dict[str, Any]:
    """One agent's ledger from its own statistics: recorded, pending, delivered, dropped
    (by reason) and possibly duplicated events."""
    s = agent.statistics()
    return {"recorded": sum(s["recorded"].values()), "pending": s["pending_events"],
            "delivered": s["delivery"]["delivered_events"], "dropped": s["dropped"],
            "duplicated": s["delivery"]["possibly_duplicated_events"]}
