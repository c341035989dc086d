"""A simulated web workload run through the public API, to see impactagent work offline.

It records flags with variants, counters, a gauge and a latency histogram, collects once,
builds the request bodies Unleash would receive, and compares what the bodies carry with
what was recorded, count for count.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Dict, List, TextIO, Tuple

from .agent import Agent
from .payload import Payload

ROUTES = ("/", "/cart", "/checkout", "/search")


def run_workload(agent: Agent, requests: int, seed: int = 1) -> Dict[str, int]:
    """Simulate ``requests`` web requests; return what was recorded, by kind."""
    rng = random.Random(seed)
    handled = agent.counter("http_requests_total", "Requests handled", labels=("route",))
    checkouts = agent.counter("checkout_total", "Completed checkouts", labels=("variant",))
    in_flight = agent.gauge("in_flight_requests", "Requests being handled")
    latency = agent.histogram("request_seconds", "Request latency", labels=("route",))
    recorded = {"requests": 0, "checkouts": 0, "flag_evaluations": 0, "observations": 0}
    for i in range(requests):
        route = rng.choice(ROUTES)
        in_flight.set(rng.randint(0, 20))
        handled.labels(route).inc()
        latency.labels(route).observe(rng.lognormvariate(-3, 1))
        variant = rng.choice(("blue", "green", None))
        agent.record_flag("new-checkout", enabled=variant is not None, variant=variant)
        agent.record_flag("dark-mode", enabled=i % 4 == 0)
        recorded["flag_evaluations"] += 2
        if route == "/checkout" and variant is not None:
            checkouts.labels(variant=variant).inc()
            recorded["checkouts"] += 1
        recorded["requests"] += 1
        recorded["observations"] += 1
    return recorded


def delivered_totals(payloads: List[Payload]) -> Dict[str, int]:
    """Add up what a list of request bodies carries, by the same kinds as the workload."""
    totals = {"requests": 0, "checkouts": 0, "flag_evaluations": 0, "observations": 0}
    for payload in payloads:
        for stats in payload.document["bucket"]["toggles"].values():
            totals["flag_evaluations"] += stats["yes"] + stats["no"]
        for metric in payload.document.get("impactMetrics", []):
            for sample in metric["samples"]:
                if metric["name"] == "http_requests_total":
                    totals["requests"] += sample["value"]
                elif metric["name"] == "checkout_total":
                    totals["checkouts"] += sample["value"]
                elif metric["name"] == "request_seconds":
                    totals["observations"] += sample["count"]
    return totals


def main(requests: int = 10_000, out: TextIO = sys.stdout, show_body: bool = False) -> int:
    """Run the demo; return 0 when the bodies carry exactly what was recorded."""
    agent = Agent(app_name="demo-shop", environment="development")
    recorded = run_workload(agent, requests)
    payloads = agent.build_payloads(agent.collect())
    delivered = delivered_totals(payloads)
    sizes = ", ".join(f"{len(p.body):,} B" for p in payloads)
    out.write(f"impactagent demo: {requests:,} simulated requests -> "
              f"{len(payloads)} request body/bodies ({sizes})\n\n")
    rows: List[Tuple[str, int, int]] = [(k, recorded[k], delivered[k]) for k in recorded]
    out.write(f"{'what':<20}{'recorded':>12}{'in bodies':>12}\n")
    for what, a, b in rows:
        out.write(f"{what:<20}{a:>12,}{b:>12,}{'' if a == b else '   MISMATCH'}\n")
    if show_body:
        out.write("\n" + json.dumps(payloads[0].document, indent=2)[:4000] + "\n")
    ok = all(a == b for _, a, b in rows)
    out.write("\nall counts accounted for\n" if ok else "\ncounts differ\n")
    return 0 if ok else 1
