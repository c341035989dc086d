"""What a development receiver holds: bodies stored as unleash-server 8.2.0 stores them.

Flag counts in hourly bins per app, environment and flag; impact metrics as the server's
registry holds them, one per sanitised name, whoever sent it (recreated empty when its label
names grow or its boundaries change); and a log of the last requests. Flag counts wait in a
write window, as the server holds them and writes every app's at once about every 5 s: some
counts fail that write, losing the window for every app.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Deque, Dict, FrozenSet, List, Optional, Set, Tuple

from ..core.server_limits import (
    DROPPED_VARIANT_NAMES,
    MAX_APP_NAME_LENGTH,
    MAX_VARIANT_COUNT,
    OBJECT_PROTOTYPE_PROPERTIES,
)
from ..server_rules.jsvalues import (
    YEAR_ONE_MS,
    ajv_null,
    ajv_number,
    hour_of,
    joi_number,
    js_date_ms,
    js_string,
    sanitize,
    valid_name,
)
from ..server_rules.validation import CUT, DISCARDED, POISONED, REJECTED, Problem, cut
from .timeseries import SeriesStore

Labels = FrozenSet[Tuple[str, str]]
LOG_SIZE = 200
_KINDS = ("counter", "gauge", "histogram")


@dataclass
class Request:
    """One POST as the receiver saw it."""

    at: float
    app_name: str
    status: int
    size: int
    problems: List[str] = field(default_factory=list)


@dataclass
class _Registered:
    """A metric in the server's registry."""

    type: str
    help: str
    labels: Set[str]  # the label names it was created with
    series: Dict[Any, List[Any]] = field(default_factory=dict)  # key -> [labels, value]
    boundaries: Set[Any] = field(default_factory=set)  # a histogram's le values seen

    def new_boundaries(self, first: Dict[str, Any]) -> bool:
        """True when the server recreates the histogram: boundaries other than the ones
        seen."""
        les = [_le(b["le"]) for b in first["buckets"]]
        return len(self.boundaries) != len(les) or any(le not in self.boundaries for le in les)

    def add(self, key: Any, labels: Labels, sample: Dict[str, Any]) -> Any:
        """Add a sample to its series (a counter keeps the labels first seen, a gauge the
        last); return what the store files, None for a counter going down."""
        if self.type == "gauge":
            value = joi_number(sample["value"])
            self.series[key] = [labels, value]
            return value
        if self.type == "counter":
            value = joi_number(sample["value"])
            assert value is not None  # the schema check let only numbers through
            if value < 0:
                return None
            self.series.setdefault(key, [labels, 0])[1] += value
            return value
        total = self.series.setdefault(key, [labels, {"count": 0, "sum": 0, "buckets": {}}])[1]
        buckets: Dict[Any, Any] = {}
        delta = {"count": joi_number(sample["count"]), "sum": joi_number(sample["sum"]),
                 "buckets": buckets}
        total["count"] += delta["count"]
        total["sum"] += delta["sum"]
        for bucket in sample["buckets"]:
            le, n = _le(bucket["le"]), joi_number(bucket["count"])
            total["buckets"][le] = total["buckets"].get(le, 0) + n
            buckets[le] = buckets.get(le, 0) + n
            self.boundaries.add(le)
        return delta


class ReceivedMetrics:
    """Thread-safe aggregates of every accepted body; every view is a copy made under the
    lock, so a reader never sees half a body."""

    def __init__(self, series: Optional[SeriesStore] = None) -> None:
        self._lock = threading.Lock()
        self._series = series if series is not None else SeriesStore()
        # (app, environment, flag, hour) -> {"yes", "no", "variants"}
        self._flags: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
        self._metrics: Dict[str, _Registered] = {}  # the server's registry, by sanitised name
        self._log: Deque[Request] = deque(maxlen=LOG_SIZE)
        self._bodies_accepted = 0
        self._window = WriteWindow()
        self._failures: Deque[WindowFailure] = deque(maxlen=LOG_SIZE)

    @property
    def series(self) -> SeriesStore:
        """The last hour in 10-second steps, for the impact view (the open window written
        first)."""
        self.write()
        return self._series

    @property
    def log(self) -> List[Request]:
        """The last requests, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def bodies_accepted(self) -> int:
        """How many bodies were answered 202."""
        with self._lock:
            return self._bodies_accepted

    def problems(self) -> List[str]:
        """Every problem found in the logged requests, oldest first."""
        with self._lock:
            return [p for request in self._log for p in request.problems]

    def note(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)

    def add(self, document: Dict[str, Any], environment: str,
            problems: Optional[List[Problem]] = None) -> List[Problem]:
        """Store one accepted body as the server would, given what ``check_document`` found
        in it; return the problems that depend on earlier bodies (a name taken by another
        type)."""
        problems = problems or []
        if any(p.outcome == REJECTED for p in problems):
            return []
        app = js_string(document["appName"])
        at = self._series.clock()
        with self._lock:
            self._bodies_accepted += 1
            if self._window.opened is not None and at - self._window.opened >= WRITE_PERIOD:
                self._write()
            for arrival in _arrivals(document, environment, at):
                self._window.add(arrival)
            for problem in problems:
                if problem.outcome == POISONED and problem.where.startswith("impactMetrics"):
                    self._failures.append(WindowFailure(at, [problem.message], [app]))
            if any(p.outcome == DISCARDED for p in problems) or not document.get("impactMetrics"):
                return []  # one bad metric: the server drops the whole array
            for index, metric in enumerate(document["impactMetrics"]):
                refused = self._add_metric(metric, app, at)
                if any(p.outcome == CUT and p.where.startswith(f"impactMetrics/{index}/")
                       for p in problems):
                    return []
                if refused:
                    return [cut(f"impactMetrics/{index}/type", refused)]
        return []

    def window_problems(self, document: Dict[str, Any], environment: str) -> List[Problem]:
        """Why the open write window would fail with this body's flag counts in it, where
        neither fails alone."""
        with self._lock:
            reasons = self._window.failing_with(
                _arrivals(document, environment, self._series.clock()))
        return [Problem(POISONED, "bucket/toggles", f"{reason}: should the server write its "
                        "window now, with the bodies already in it, the write fails and "
                        "every app's counts in it are lost") for reason in reasons]

    def write(self) -> None:
        """Write the open window's flag counts now, as the server does every few seconds."""
        with self._lock:
            self._write()

    def failures(self) -> List[WindowFailure]:
        """The writes the server would have failed, oldest first."""
        with self._lock:
            self._write()
            return list(self._failures)

    def _write(self) -> None:
        arrivals = self._window.arrivals
        written, failure = self._window.write()
        for key, counts in written.items():
            _add_counts(self._flags.setdefault(key, _no_counts()), counts)
        if failure is not None:
            self._failures.append(failure)
        for arrival in arrivals:
            if failure is None or failure.variants_only:
                variants = {} if failure is not None else (arrival.variants or {})
                self._series.add(("flag", arrival.app, arrival.flag), "flag",
                                {"yes": arrival.yes, "no": arrival.no, "variants": variants},
                                arrival.at)

    def _add_metric(self, metric: Dict[str, Any], app: str, at: float) -> Optional[str]:
        """Translate one metric into the registry; a reason when the registry refuses it."""
        name, kind, samples = sanitize(metric["name"]), metric["type"], metric["samples"]
        if not valid_name(name) or kind not in _KINDS or (kind == "histogram" and not samples):
            return None  # skipped
        entry = self._metrics.get(name)
        if entry is not None and entry.type != kind:
            return f"{name!r} is registered as a {entry.type} already"
        label_names = {k for k in (sanitize(k) for s in samples for k in (s.get("labels") or {}))
                       if valid_name(k)}
        if entry is None or not label_names <= entry.labels or (
                kind == "histogram" and entry.new_boundaries(samples[0])):
            entry = self._metrics[name] = _Registered(kind, metric["help"], label_names)
        for sample in samples:
            key, labels = _series_key(sample, kind)
            delta = entry.add(key, labels, sample)
            if delta is None:
                return None  # a counter going down: check_document reported it
            self._series.add(("metric", app, name, kind, labels), kind, delta, at)
        return None

    def flags(self, app_name: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """Flag counts summed over hours and environments (of one app, if given)."""
        with self._lock:
            self._write()
            return self._flag_totals(app_name)

    def metrics(self, app_name: Optional[str] = None) -> Dict[str, Dict[Any, Any]]:
        """Impact metric totals as ``{"counters", "gauges", "histograms"}``, each keyed by
        ``(metric name, frozenset of labels)`` (of one app, if given)."""
        with self._lock:
            return self._metric_totals(app_name)

    def totals(self, app_name: Optional[str] = None) -> Dict[str, Any]:
        """Flags and impact metrics together, read at one moment."""
        with self._lock:
            self._write()
            return {"flags": self._flag_totals(app_name), **self._metric_totals(app_name)}

    def _flag_totals(self, app_name: Optional[str]) -> Dict[str, Dict[str, Any]]:
        totals: Dict[str, Dict[str, Any]] = {}
        for (app, _env, flag, _hour), counts in self._flags.items():
            if app_name is not None and app != app_name:
                continue
            _add_counts(totals.setdefault(flag, _no_counts()), counts)
        return totals

    def _metric_totals(self, app_name: Optional[str]) -> Dict[str, Dict[Any, Any]]:
        result: Dict[str, Dict[Any, Any]] = {"counters": {}, "gauges": {}, "histograms": {}}
        for name, entry in self._metrics.items():
            kind = entry.type + "s"
            # Two series that print alike (a histogram's 1 and "1") read back as the later.
            for labels, value in entry.series.values():
                if app_name is None or dict(labels).get("appName") == app_name:
                    result[kind][(name, labels)] = _copy(value)
        return result

    def _entries(self) -> List[Tuple[Tuple[str, str, str], Dict[str, Any]]]:
        """``((app, environment, name), {"type", "help", "series"})``, sorted."""
        grouped: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
        for name, entry in self._metrics.items():
            for labels, value in entry.series.values():
                named = dict(labels)
                key = (named.get("appName", ""), named.get("environment", ""), name)
                group = grouped.setdefault(key, {"type": entry.type, "help": entry.help,
                                                 "series": {}})
                group["series"][labels] = _copy(value)
        return sorted(grouped.items())

    def as_json(self) -> Dict[str, Any]:
        """Everything, JSON-ready: hourly flag bins, metrics, the request log and the failed
        writes."""
        with self._lock:
            self._write()
            flags = [{"appName": app, "environment": env, "flag": flag, "hour": hour,
                      **{k: (dict(v) if isinstance(v, dict) else v) for k, v in c.items()}}
                     for (app, env, flag, hour), c in sorted(self._flags.items())]
            metrics = []
            for (app, env, name), entry in self._entries():
                for labels, value in sorted(entry["series"].items(), key=lambda i: sorted(i[0])):
                    sample: Dict[str, Any] = {"appName": app, "environment": env, "name": name,
                                              "type": entry["type"], "labels": dict(labels)}
                    if entry["type"] == "histogram":
                        buckets = sorted(value["buckets"].items(), key=lambda item: (
                            float("inf") if item[0] == "+Inf" else item[0]))
                        sample.update(count=value["count"], sum=value["sum"], buckets=[
                            {"le": le, "count": n} for le, n in buckets])
                    else:
                        sample["value"] = value
                    metrics.append(sample)
            log = [{"at": _iso(r.at), "appName": r.app_name, "status": r.status,
                    "bytes": r.size, "problems": list(r.problems)} for r in reversed(self._log)]
            failed = [{**asdict(f), "at": _iso(f.at)} for f in reversed(self._failures)]
            return {"bodies_accepted": self._bodies_accepted, "flags": flags,
                    "metrics": metrics, "requests": log, "failed_writes": failed}

    def metric_entries(self) -> List[Tuple[Tuple[str, str, str], Dict[str, Any]]]:
        """Each metric's series (copies) by app and environment, for the Prometheus view."""
        with self._lock:
            return self._entries()

    def flag_bins(self) -> List[Tuple[Tuple[str, str, str, str], Dict[str, Any]]]:
        """Each hourly flag bin (copies), for the Prometheus view."""
        with self._lock:
            self._write()
            return [(key, {**c, "variants": dict(c["variants"])})
                    for key, c in sorted(self._flags.items())]


def _arrivals(document: Dict[str, Any], environment: str, at: float) -> List[Arrival]:
    """The flag counts of an accepted body as the server buffers them."""
    app = js_string(document["appName"])
    bucket = document.get("bucket")
    bucket = bucket if isinstance(bucket, dict) else {}
    stop = js_date_ms(bucket.get("stop"))
    arrivals = []
    for flag, toggle in (bucket.get("toggles") or {}).items():
        yes, no = ajv_number(toggle.get("yes")), ajv_number(toggle.get("no"))
        if not (yes or no):
            continue  # skipped by the server, variants included
        given = toggle.get("variants")
        variants = None if ajv_null(given) else {
            variant: ajv_number(n) for variant, n in given.items()
            if variant != "" and variant not in DROPPED_VARIANT_NAMES}
        arrivals.append(Arrival(at, app, environment, flag,
                                int(at * 1000) if stop is None else stop,
                                yes or 0, int(no or 0), variants))  # type: ignore[arg-type]
    return arrivals


def _no_counts() -> Dict[str, Any]:
    return {"yes": 0, "no": 0, "variants": {}}


def _add_counts(total: Dict[str, Any], counts: Dict[str, Any]) -> None:
    total["yes"] += counts["yes"]
    total["no"] += counts["no"]
    for variant, n in counts["variants"].items():
        total["variants"][variant] = total["variants"].get(variant, 0) + n


def _copy(value: Any) -> Any:
    return {**value, "buckets": dict(value["buckets"])} if isinstance(value, dict) else value


def _series_key(sample: Dict[str, Any], kind: str) -> Tuple[Any, Labels]:
    """The registry's key of a sample's series, and the labels it shows. Counters and gauges
    are keyed as prom-client keys them, ``name:value,`` joined, so ``{a: "x,b:y"}`` is
    ``{a: "x", b: "y"}``; a histogram's tells 1 from "1"."""
    named: Dict[str, Any] = {}
    for key, value in (sample.get("labels") or {}).items():
        name = sanitize(key)
        if valid_name(name):
            named[name] = value
    ordered = sorted(named.items())
    labels = frozenset((name, js_string(value)) for name, value in ordered)
    if kind == "histogram":
        return tuple((name, isinstance(value, str), js_string(value))
                     for name, value in ordered), labels
    return "".join(f"{name}:{js_string(value)}," for name, value in ordered), labels


def _le(le: Any) -> Any:
    return le if le == "+Inf" else float(joi_number(le))  # type: ignore[arg-type]


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


#: The names a plain JavaScript object answers from its prototype.
_PROTOTYPE = OBJECT_PROTOTYPE_PROPERTIES - DROPPED_VARIANT_NAMES

WRITE_PERIOD = 5.0

Row = Tuple[str, str, str, str]  # app, environment, flag, hour


@dataclass(frozen=True)
class Arrival:
    """One flag's counts from one accepted body."""

    at: float
    app: str
    environment: str
    flag: str
    stop_ms: int  # the bucket's stop, milliseconds since 1970
    yes: float
    no: int
    variants: Optional[Dict[str, int]]  # None: the body has none (or null, "", 0, false)

    @property
    def row(self) -> Row:
        return (self.app, self.environment, self.flag, hour_of(self.stop_ms))


@dataclass
class WindowFailure:
    """A write the server fails: when, why, whose, and what was lost."""

    at: float
    reasons: List[str]
    apps: List[str]  # every app with counts in the window
    lost: Dict[str, int] = field(default_factory=dict)  # "yes", "no", "variants": counts
    variants_only: bool = False  # the yes/no rows were written


class WriteWindow:
    """Flag counts arrived since the last write (not thread-safe: the caller's lock)."""

    def __init__(self) -> None:
        self.arrivals: List[Arrival] = []
        self.opened: Optional[float] = None

    def add(self, arrival: Arrival) -> None:
        if self.opened is None:
            self.opened = arrival.at
        self.arrivals.append(arrival)

    def failing_with(self, arrivals: List[Arrival]) -> List[str]:
        """Why the window would fail once ``arrivals`` join it, where neither fails alone."""
        before = set(_failures(self.arrivals, _sums(self.arrivals))[0])
        alone = set(_failures(arrivals, _sums(arrivals))[0])
        joined = self.arrivals + arrivals
        return [reason for reason in _failures(joined, _sums(joined))[0]
                if reason not in before and reason not in alone]

    def write(self) -> Tuple[Dict[Row, Dict[str, Any]], Optional[WindowFailure]]:
        """Empty the window: the rows the server writes, and the failure, if any."""
        arrivals, self.arrivals, self.opened = self.arrivals, [], None
        rows = _sums(arrivals)
        failing, variants_only = _failures(arrivals, rows)
        if not failing:
            return rows, None
        failure = WindowFailure(arrivals[-1].at, failing,
                                sorted({a.app for a in arrivals}), variants_only=variants_only)
        failure.lost["variants"] = sum(n or 0 for row in rows.values()
                                       for n in row["variants"].values())
        if variants_only:
            for row in rows.values():
                row["variants"] = {}
            return rows, failure
        failure.lost["yes"] = sum(row["yes"] for row in rows.values())
        failure.lost["no"] = sum(row["no"] for row in rows.values())
        return {}, failure


def _sums(arrivals: List[Arrival]) -> Dict[Row, Dict[str, Any]]:
    """The rows the arrivals add up to, yes rounded, merged as 8.2.0 merges them. A name of
    ``Object.prototype`` not held adds its count to the prototype's function, whose text
    (``None`` here) fails the write unless a later arrival without the name drops it."""
    rows: Dict[Row, Dict[str, Any]] = {}
    for arrival in arrivals:
        row = rows.get(arrival.row)
        later = arrival.variants or {}
        if row is None:
            rows[arrival.row] = {"yes": arrival.yes, "no": arrival.no, "variants": dict(later)}
            continue
        row["yes"] += arrival.yes
        row["no"] += arrival.no
        held = row["variants"]
        merged: Dict[str, Optional[int]] = {}
        for name, n in later.items():
            if name in held:
                merged[name] = None if held[name] is None else held[name] + n
            else:
                merged[name] = None if name in _PROTOTYPE else n
        for name, n in held.items():
            if name not in merged and name not in _PROTOTYPE:
                merged[name] = n
        row["variants"] = merged
    for row in rows.values():
        row["yes"] = _rounded(row["yes"])
    return rows


def _failures(arrivals: List[Arrival], rows: Dict[Row, Dict[str, Any]]) -> Tuple[List[str], bool]:
    """Why the write of these arrivals fails, and whether only the variant rows fail."""
    failing = _row_failures(arrivals)
    if failing:
        return failing, False
    return _variant_failures(rows), True


def _row_failures(arrivals: List[Arrival]) -> List[str]:
    reasons = []
    for app in sorted({a.app for a in arrivals}):
        if len(app) > MAX_APP_NAME_LENGTH or "\0" in app:
            shown = f"{app[:40]!r}..." if len(app) > 40 else repr(app)
            reasons.append(f"appName {shown} is longer than {MAX_APP_NAME_LENGTH} characters "
                           "or holds NUL")
    if any(a.stop_ms < YEAR_ONE_MS for a in arrivals):
        reasons.append("a bucket's stop is before year 1")
    return reasons


def _variant_failures(rows: Dict[Row, Dict[str, Any]]) -> List[str]:
    reasons = []
    for (app, _env, flag, _hour), row in sorted(rows.items()):
        for name, n in sorted(row["variants"].items()):
            if "\0" in name:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} holds NUL, which "
                               "PostgreSQL text cannot")
            if n is None:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} came in a later "
                               "body of the window than the counts held for it, which lack "
                               f"it: the server added a count to Object.prototype.{name} "
                               "and cannot write the text that makes")
                continue
            if n > MAX_VARIANT_COUNT:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} counts {n} in one "
                               f"window, over {MAX_VARIANT_COUNT}")
    return reasons


def _rounded(count: float) -> int:
    """PostgreSQL's cast of a fractional count to an integer column: half away from 0."""
    return math.floor(count + 0.5) if count >= 0 else -math.floor(-count + 0.5)
