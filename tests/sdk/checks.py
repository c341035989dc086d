"""What every SDK run must show, whichever SDK made it: the phases happened, every body got
the answer a real unleash-server 8.2.0 gives it, and the receiver holds exactly the plan."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from impactagent.devtools.receiver import Receiver
from tests.sdk import plan
from tests.sdk.front import Exchange, SdkFront


def bodies_by_phase(front: SdkFront) -> Dict[str, List[Dict[str, Any]]]:
    """The metrics bodies the SDK sent, parsed, by the phase they arrived in."""
    phases: Dict[str, List[Dict[str, Any]]] = {}
    for exchange in front.metrics_posts():
        phases.setdefault(exchange.phase, []).append(json.loads(exchange.body))
    return phases


def _answer(exchange: Exchange) -> Any:
    try:
        return json.loads(exchange.answer)
    except ValueError:
        return exchange.answer


def assert_answered_as_a_real_server(front: SdkFront) -> None:
    """Every body an SDK sends in the plan is one unleash-server 8.2.0 answers 202 and
    stores (``"bucket": null`` included: its schema marks the bucket nullable). Strict mode
    may say more in its problems; it must not refuse what the server stores."""
    refused = [(e.phase, e.path, e.status, _answer(e)) for e in front.exchanges
               if e.status != 202]
    assert refused == []


def assert_phases_ran(front: SdkFront) -> Dict[str, List[Dict[str, Any]]]:
    """The run did what the plan says: bodies with flag counts in phase A, impact-only
    bodies in phase B, and the shutdown flush (phase C) last, carrying phase C's values."""
    phases = bodies_by_phase(front)
    counts = {phase: len(bodies) for phase, bodies in phases.items()}
    assert set(phases) == {"A", "B", "C"}, f"bodies by phase: {counts}"
    assert any((body.get("bucket") or {}).get("toggles") for body in phases["A"])
    assert not any((body.get("bucket") or {}).get("toggles") for body in phases["B"])
    assert front.metrics_posts()[-1].phase == "C"
    # The window ends in its runner right after a body arrived, so the next tick is an
    # interval away and the shutdown flush carries it; summed over phase C all the same.
    assert sum(_counter_value(body, plan.JOBS) for body in phases["C"]) >= plan.PLAN[-1].jobs
    return phases


def _counter_value(body: Dict[str, Any], name: str) -> float:
    return sum(sample["value"] for metric in body.get("impactMetrics") or []
               if metric["name"] == name for sample in metric["samples"])


def assert_totals_exact(receiver: Receiver, app_name: str) -> None:
    """Flag yes/no/variants, both counters, the last gauge, the histogram's count, sum and
    buckets: each exactly what the plan evaluated and recorded, nothing lost or doubled."""
    held = plan.without_placeholders(receiver.totals(app_name))
    assert held == plan.expected_totals(app_name)
