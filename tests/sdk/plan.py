"""The phased run every official SDK goes through, and the totals it must add up to.

One plan, executed the same way by each SDK runner (the Python one in-process, the Node one
from JSON on its command line), so that the expected totals are computed once, here, from
what the SDK was told to evaluate and record, never from what it sent:

- phase ``A``: windows with flag evaluations (``sdk-on`` is on, ``sdk-off`` off, ``sdk-colour``
  on with the one variant ``blue``) and impact metrics: a counter without flag labels, a
  counter with the flag label ``sdk-colour`` (the SDKs' flag context), a gauge, a histogram;
- phase ``B``: windows with impact metrics only. No flag is evaluated, so the Python SDK sends
  ``"bucket": null`` and the Node SDK a bucket with no toggles;
- phase ``C``: one more impact-only window, then shutdown at once (the SDK's flush on
  shutdown carries it; nothing else will).

Histogram observations and gauge values are binary fractions, so sums are exact in any order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

APP_NAME_PREFIX = "sdk-run"
#: The SDKs take the impact metrics' ``environment`` label from a token of this form.
ENVIRONMENT = "development"
TOKEN = f"default:{ENVIRONMENT}.sdk-run-token"

ON, OFF, COLOUR = "sdk-on", "sdk-off", "sdk-colour"
VARIANT = "blue"
JOBS = "sdk_jobs_total"  # a counter without flag labels
CHECKOUTS = "sdk_checkouts_total"  # a counter with the flag label ``sdk-colour``
QUEUE = "sdk_queue_depth"  # a gauge
LATENCY = "sdk_latency_seconds"  # a histogram
BOUNDARIES = (0.1, 0.5, 1.0, 5.0)


@dataclass(frozen=True)
class Window:
    """What the app does in one metrics interval."""

    phase: str
    on: int = 0  # is_enabled(ON) calls
    off: int = 0  # is_enabled(OFF) calls
    colour: int = 0  # get_variant(COLOUR) calls
    jobs: int = 0  # the JOBS counter's increment (one call)
    checkouts: int = 0  # the CHECKOUTS counter's increment, with COLOUR's flag label
    queue: Optional[float] = None  # the gauge's value, set once
    latencies: Tuple[float, ...] = ()  # histogram observations


PLAN: Tuple[Window, ...] = (
    Window("A", on=3, off=2, colour=2, jobs=2, checkouts=1, queue=4.5,
           latencies=(0.0625, 0.25, 0.75)),
    Window("A", on=1, off=1, colour=3, jobs=1, checkouts=2, queue=7.25,
           latencies=(2.5, 0.125)),
    Window("B", jobs=3, queue=6.0, latencies=(0.375, 12.0)),
    Window("B", jobs=1, queue=3.5, latencies=(0.5,)),
    Window("C", jobs=4, queue=2.75, latencies=(0.0625, 1.5, 4.0)),
)

FEATURES: Dict[str, Any] = {
    "version": 2,
    "query": {},
    "features": [
        {"name": name, "type": "release", "project": "default", "enabled": enabled,
         "stale": False, "impressionData": False,
         "strategies": [{"name": "default", "parameters": {}, "constraints": []}],
         "variants": variants}
        for name, enabled, variants in (
            (ON, True, []),
            (OFF, False, []),
            (COLOUR, True, [{"name": VARIANT, "weight": 1000, "weightType": "variable",
                             "stickiness": "default", "overrides": []}]),
        )
    ],
}


def plan_as_json() -> List[Dict[str, Any]]:
    """The plan for a runner in another language."""
    return [asdict(window) for window in PLAN]


def names() -> Dict[str, Any]:
    """The flag and metric names and the histogram boundaries, for a runner elsewhere."""
    return {"on": ON, "off": OFF, "colour": COLOUR, "jobs": JOBS, "checkouts": CHECKOUTS,
            "queue": QUEUE, "latency": LATENCY, "boundaries": list(BOUNDARIES)}


def _labels(app_name: str, **extra: str) -> FrozenSet[Tuple[str, str]]:
    return frozenset({"appName": app_name, "environment": ENVIRONMENT, **extra}.items())


def expected_totals(app_name: str) -> Dict[str, Any]:
    """What a receiver must hold for ``app_name`` after the whole plan ran, in the shape of
    ``Receiver.totals()``: every flag evaluation and every recorded value, exactly once."""
    windows = PLAN
    flags: Dict[str, Any] = {}
    on, off, colour = (sum(getattr(w, f) for w in windows) for f in ("on", "off", "colour"))
    if on:
        flags[ON] = {"yes": on, "no": 0, "variants": {}}
    if off:
        flags[OFF] = {"yes": 0, "no": off, "variants": {}}
    if colour:
        flags[COLOUR] = {"yes": colour, "no": 0, "variants": {VARIANT: colour}}
    base = _labels(app_name)
    observations = [value for w in windows for value in w.latencies]
    buckets: Dict[Any, int] = {le: sum(1 for v in observations if v <= le) for le in BOUNDARIES}
    buckets["+Inf"] = len(observations)
    gauge_values = [w.queue for w in windows if w.queue is not None]
    return {
        "flags": flags,
        "counters": {(JOBS, base): sum(w.jobs for w in windows),
                     # Stored as the server stores it: the label name sanitised.
                     (CHECKOUTS, _labels(app_name, **{COLOUR.replace("-", "_"): VARIANT})):
                         sum(w.checkouts for w in windows)},
        "gauges": {(QUEUE, base): gauge_values[-1]},
        "histograms": {(LATENCY, base): {"count": len(observations),
                                         "sum": sum(observations), "buckets": buckets}},
    }


def without_placeholders(totals: Dict[str, Any]) -> Dict[str, Any]:
    """``totals`` without the series the SDKs send for a metric defined but not used in a
    window: ``"labels": {}`` with value 0 (a histogram with count 0). They carry no count;
    whether a receiver files them under the sender's app (as today) or apart (as the real
    server does, issue 14) is the receiver's business, not the SDK's."""
    def is_placeholder(key: Tuple[str, FrozenSet[Any]], value: Any) -> bool:
        empty = value == 0 or (isinstance(value, dict) and value.get("count") == 0)
        return key[1] == frozenset() and empty
    return {kind: ({key: value for key, value in series.items()
                    if not is_placeholder(key, value)} if kind != "flags" else series)
            for kind, series in totals.items()}
