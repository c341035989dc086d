"""What a development receiver holds: metrics bodies aggregated as Unleash Edge does.

- Flag counts in hourly bins per app, environment and flag, keyed by the hour the body's
  ``bucket.start`` falls in (Edge bins by start; the server by stop): yes, no and variant
  counts summed.
- Impact metrics per app, environment, name and label set: counters summed, gauges last,
  histograms summed bucket by bucket (by ``le``).
- A log of the last requests: when, from which app, the answer, and every problem found.

What a real server would drop is dropped here too: the whole ``impactMetrics`` array of a
body with one invalid metric, and flags with ``yes == no == 0``. The environment is the
token's (``project:environment.secret``), as the server takes it, else the body's.

>>> received = ReceivedMetrics()
>>> received.add({"appName": "shop", "bucket": {"start": "2026-11-25T10:59:00Z",
...     "stop": "2026-11-25T11:00:30Z", "toggles": {"beta": {"yes": 2, "no": 1,
...     "variants": {"v2": 2}}}}}, environment="production")
>>> received.flags("shop")
{'beta': {'yes': 2, 'no': 1, 'variants': {'v2': 2}}}
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Deque, Dict, FrozenSet, List, Optional, Tuple

from .validation import DISCARDED, Problem

Labels = FrozenSet[Tuple[str, str]]
#: Requests kept in the log for the page and the JSON view.
LOG_SIZE = 200


@dataclass
class Request:
    """One POST as the receiver saw it."""

    at: float
    app_name: str
    status: int
    size: int
    problems: List[str] = field(default_factory=list)


class ReceivedMetrics:
    """Thread-safe aggregates of every accepted body, and a log of recent requests.

    Every view returns a copy made under the lock: a test may read while the receiver's
    threads are adding bodies (iterating the live log then would raise "deque mutated
    during iteration", and a total read in two steps could mix two moments).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (app, environment, flag, hour) -> {"yes", "no", "variants"}
        self._flags: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
        # (app, environment, name) -> {"type", "help", "series": {labels: value}}
        self._metrics: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
        self._log: Deque[Request] = deque(maxlen=LOG_SIZE)
        self._bodies_accepted = 0

    @property
    def log(self) -> List[Request]:
        """The last requests, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def bodies_accepted(self) -> int:
        """How many bodies were taken (answered 202) so far."""
        with self._lock:
            return self._bodies_accepted

    def problems(self) -> List[str]:
        """Every problem found in the logged requests, oldest first, as text."""
        with self._lock:
            return [p for request in self._log for p in request.problems]

    def note(self, request: Request) -> None:
        """Log one request, whatever was answered."""
        with self._lock:
            self._log.append(request)

    def add(self, document: Dict[str, Any], environment: str,
            problems: Optional[List[Problem]] = None) -> None:
        """Aggregate one accepted body (its problems decide what a server would keep)."""
        problems = problems or []
        app = document["appName"]
        bucket = document.get("bucket") or {}
        hour = _hour(bucket.get("start"))
        with self._lock:
            self._bodies_accepted += 1
            for flag, toggle in (bucket.get("toggles") or {}).items():
                if not (toggle.get("yes") or toggle.get("no")):
                    continue  # ignored by the server, variants included
                total = self._flags.setdefault((app, environment, flag, hour),
                                               {"yes": 0, "no": 0, "variants": {}})
                total["yes"] += toggle.get("yes", 0)
                total["no"] += toggle.get("no", 0)
                for variant, n in (toggle.get("variants") or {}).items():
                    total["variants"][variant] = total["variants"].get(variant, 0) + n
            if any(p.outcome == DISCARDED for p in problems):
                return  # one bad metric: the server drops the whole array
            for metric in document.get("impactMetrics") or []:
                self._add_metric(app, environment, metric)

    def _add_metric(self, app: str, environment: str, metric: Dict[str, Any]) -> None:
        entry = self._metrics.setdefault((app, environment, metric["name"]), {
            "type": metric["type"], "help": metric.get("help", ""), "series": {}})
        if entry["type"] != metric["type"]:
            entry.update(type=metric["type"], series={})  # the server recreates it too
        series = entry["series"]
        for sample in metric["samples"]:
            labels: Labels = frozenset((sample.get("labels") or {}).items())
            if metric["type"] == "counter":
                series[labels] = series.get(labels, 0) + sample["value"]
            elif metric["type"] == "gauge":
                series[labels] = sample["value"]
            else:
                total = series.setdefault(labels, {"count": 0, "sum": 0.0, "buckets": {}})
                total["count"] += sample["count"]
                total["sum"] += sample["sum"]
                for bucket in sample["buckets"]:
                    le = bucket["le"] if bucket["le"] == "+Inf" else float(bucket["le"])
                    total["buckets"][le] = total["buckets"].get(le, 0) + bucket["count"]

    # -- reading ------------------------------------------------------------------------------

    def flags(self, app_name: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """Flag counts summed over hours and environments (of one app, if given)."""
        with self._lock:
            return self._flag_totals(app_name)

    def metrics(self, app_name: Optional[str] = None) -> Dict[str, Dict[Any, Any]]:
        """Impact metric totals as ``{"counters", "gauges", "histograms"}``, each keyed by
        ``(metric name, frozenset of labels)`` (of one app, if given)."""
        with self._lock:
            return self._metric_totals(app_name)

    def totals(self, app_name: Optional[str] = None) -> Dict[str, Any]:
        """Flags and impact metrics together (the shape tests compare with ``==``), read at
        one moment: no body is half counted in them."""
        with self._lock:
            return {"flags": self._flag_totals(app_name), **self._metric_totals(app_name)}

    def _flag_totals(self, app_name: Optional[str]) -> Dict[str, Dict[str, Any]]:
        totals: Dict[str, Dict[str, Any]] = {}
        for (app, _env, flag, _hour), counts in self._flags.items():
            if app_name is not None and app != app_name:
                continue
            total = totals.setdefault(flag, {"yes": 0, "no": 0, "variants": {}})
            total["yes"] += counts["yes"]
            total["no"] += counts["no"]
            for variant, n in counts["variants"].items():
                total["variants"][variant] = total["variants"].get(variant, 0) + n
        return totals

    def _metric_totals(self, app_name: Optional[str]) -> Dict[str, Dict[Any, Any]]:
        result: Dict[str, Dict[Any, Any]] = {"counters": {}, "gauges": {}, "histograms": {}}
        for (app, _env, name), entry in self._metrics.items():
            if app_name is not None and app != app_name:
                continue
            kind = entry["type"] + "s"
            for labels, value in entry["series"].items():
                result[kind][(name, labels)] = _copy(value)
        return result

    def as_json(self) -> Dict[str, Any]:
        """Everything, in JSON-ready form: hourly flag bins, metrics, the request log."""
        with self._lock:
            flags = [{"appName": app, "environment": env, "flag": flag, "hour": hour,
                      **{k: (dict(v) if isinstance(v, dict) else v) for k, v in c.items()}}
                     for (app, env, flag, hour), c in sorted(self._flags.items())]
            metrics = []
            for (app, env, name), entry in sorted(self._metrics.items()):
                for labels, value in sorted(entry["series"].items(), key=lambda i: sorted(i[0])):
                    sample: Dict[str, Any] = {"appName": app, "environment": env, "name": name,
                                              "type": entry["type"], "labels": dict(labels)}
                    if entry["type"] == "histogram":
                        sample.update(count=value["count"], sum=value["sum"], buckets=[
                            {"le": le, "count": n} for le, n in _sorted_buckets(value)])
                    else:
                        sample["value"] = value
                    metrics.append(sample)
            log = [{"at": _iso(r.at), "appName": r.app_name, "status": r.status,
                    "bytes": r.size, "problems": list(r.problems)} for r in reversed(self._log)]
            return {"bodies_accepted": self._bodies_accepted, "flags": flags,
                    "metrics": metrics, "requests": log}

    def metric_entries(self) -> List[Tuple[Tuple[str, str, str], Dict[str, Any]]]:
        """Each metric with its series (copies), for the Prometheus view."""
        with self._lock:
            return [(key, {**entry, "series": {labels: _copy(value) for labels, value
                                               in entry["series"].items()}})
                    for key, entry in sorted(self._metrics.items())]

    def flag_bins(self) -> List[Tuple[Tuple[str, str, str, str], Dict[str, Any]]]:
        """Each hourly flag bin (copies), for the Prometheus view and the page."""
        with self._lock:
            return [(key, {**c, "variants": dict(c["variants"])})
                    for key, c in sorted(self._flags.items())]


def _copy(value: Any) -> Any:
    """A series' value that the caller may read while bodies keep arriving."""
    return {**value, "buckets": dict(value["buckets"])} if isinstance(value, dict) else value


def _sorted_buckets(histogram: Dict[str, Any]) -> List[Tuple[Any, int]]:
    return sorted(histogram["buckets"].items(),
                  key=lambda item: float("inf") if item[0] == "+Inf" else item[0])


def _hour(start: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.now(timezone.utc)
    moment = moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
