"""What a development receiver holds: bodies stored as unleash-server 8.2.0 stores them.

Flag counts in hourly bins per app, environment and flag, written from a window that the
server fills for about 5 s and writes in one statement for every app (some counts fail that
write, and the window is lost); impact metrics as the server's registry holds them, one per
sanitised name, whoever sent it (recreated empty when its label names grow or its boundaries
change); and a log of the last requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core import server_limits as limits
from ..server_rules import jsvalues as js
from ..server_rules.validation import CUT, DISCARDED, POISONED, REJECTED, Problem, cut
from .timeseries import SeriesStore

Labels = frozenset[tuple[str, str]]
Row = tuple[str, str, str, str]  # app, environment, flag, hour
LOG_SIZE = 200
WRITE_PERIOD = 5.0
_KINDS = ("counter", "gauge", "histogram")
#: The names a plain JavaScript object answers from its prototype.
_PROTOTYPE = limits.OBJECT_PROTOTYPE_PROPERTIES - limits.DROPPED_VARIANT_NAMES


@dataclass
class Request:
    """One POST as the receiver saw it."""

    at: float
    app_name: str
    status: int
    size: int
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Arrival:
    """One flag's counts from one accepted body, waiting in the write window."""

    at: float
    app: str
    environment: str
    flag: str
    stop_ms: int  # the bucket's stop, milliseconds since 1970
    yes: float
    no: int
    variants: dict[str, int] | None  # None: the body has none (or null, "", 0, false)

    @property
    def row(self) -> Row:
        return (self.app, self.environment, self.flag, js.hour_of(self.stop_ms))


@dataclass
class WindowFailure:
    """A write the server fails: when, why, whose, and what was lost."""

    at: float
    reasons: list[str]
    apps: list[str]  # every app with counts in the window
    lost: dict[str, int] = field(default_factory=dict)  # "yes", "no", "variants": counts
    variants_only: bool = False  # the yes/no rows were written


@dataclass
class _Registered:
    """A metric in the server's registry."""

    type: str
    help: str
    labels: set[str]  # the label names it was created with
    series: dict[Any, list[Any]] = field(default_factory=dict)  # key -> [labels, value]
    boundaries: set[Any] = field(default_factory=set)  # a histogram's le values seen

    def add(self, key: Any, labels: Labels, sample: dict[str, Any]) -> Any:
        """Add a sample to its series (a counter keeps the labels first seen, a gauge the
        last); return what the store files, None for a counter going down."""
        if self.type != "histogram":
            value = js.joi_number(sample["value"])
            if self.type == "gauge":
                self.series[key] = [labels, value]
                return value
            assert value is not None  # the schema check let only numbers through
            if value < 0:
                return None
            self.series.setdefault(key, [labels, 0])[1] += value
            return value
        total = self.series.setdefault(key, [labels, {"count": 0, "sum": 0, "buckets": {}}])[1]
        delta: dict[str, Any] = {"count": js.joi_number(sample["count"]),
                                 "sum": js.joi_number(sample["sum"]), "buckets": {}}
        total["count"] += delta["count"]
        total["sum"] += delta["sum"]
        for bucket in sample["buckets"]:
            le, n = _le(bucket["le"]), js.joi_number(bucket["count"])
            for buckets in (total["buckets"], delta["buckets"]):
                buckets[le] = buckets.get(le, 0) + n
            self.boundaries.add(le)
        return delta


class ReceivedMetrics:
    """Thread-safe aggregates of every accepted body; every view a copy made at one moment."""

    def __init__(self, series: SeriesStore | None = None) -> None:
        self._lock = threading.Lock()
        self._series = series if series is not None else SeriesStore()
        self._flags: dict[Row, dict[str, Any]] = {}  # {"yes", "no", "variants"}
        self._metrics: dict[str, _Registered] = {}  # the server's registry, by sanitised name
        self._log: deque[Request] = deque(maxlen=LOG_SIZE)
        self._bodies_accepted = 0
        self._window: list[Arrival] = []  # flag counts arrived since the last write
        self._failures: deque[WindowFailure] = deque(maxlen=LOG_SIZE)

    @property
    def series(self) -> SeriesStore:
        """The last hour in 10-second steps (the open window written first)."""
        self.write()
        return self._series

    @property
    def log(self) -> list[Request]:
        """The last requests, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def bodies_accepted(self) -> int:
        """How many bodies were answered 202."""
        with self._lock:
            return self._bodies_accepted

    def problems(self) -> list[str]:
        """Every problem found in the logged requests, oldest first."""
        with self._lock:
            return [p for request in self._log for p in request.problems]

    def note(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)

    def add(self, document: dict[str, Any], environment: str,
            problems: list[Problem] | None = None) -> list[Problem]:
        """Store one accepted body as the server would, given what ``check_document`` found
        in it; return the problems that depend on earlier bodies (a name taken by another
        type)."""
        problems = problems or []
        if any(p.outcome == REJECTED for p in problems):
            return []
        app = js.js_string(document["appName"])
        at = self._series.clock()
        with self._lock:
            self._bodies_accepted += 1
            if self._window and at - self._window[0].at >= WRITE_PERIOD:
                self._write()
            self._window += _arrivals(document, environment, at)
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

    def window_problems(self, document: dict[str, Any], environment: str) -> list[Problem]:
        """Why the write window would fail with this body's flag counts (neither failing alone)."""
        with self._lock:
            arrivals = _arrivals(document, environment, self._series.clock())
            known = set(_failures(self._window)[0]) | set(_failures(arrivals)[0])
            reasons = _failures(self._window + arrivals)[0]
        return [Problem(POISONED, "bucket/toggles", f"{reason}: should the server write its "
                        "window now, with the bodies already in it, the write fails and "
                        "every app's counts in it are lost") for reason in reasons
                if reason not in known]

    def write(self) -> None:
        """Write the open window's flag counts now, as the server does every few seconds."""
        with self._lock:
            self._write()

    def failures(self) -> list[WindowFailure]:
        """The writes the server would have failed, oldest first."""
        with self._lock:
            self._write()
            return list(self._failures)

    def _write(self) -> None:
        arrivals, self._window = self._window, []
        rows = _sums(arrivals)
        failing, variants_only = _failures(arrivals, rows)
        failure = None
        if failing:
            failure = WindowFailure(arrivals[-1].at, failing, sorted({a.app for a in arrivals}),
                                    variants_only=variants_only)
            self._failures.append(failure)
            failure.lost["variants"] = sum(n or 0 for row in rows.values()
                                           for n in row["variants"].values())
            if not variants_only:
                failure.lost["yes"] = sum(row["yes"] for row in rows.values())
                failure.lost["no"] = sum(row["no"] for row in rows.values())
                return
            for row in rows.values():
                row["variants"] = {}
        for key, counts in rows.items():
            _add_counts(self._flags.setdefault(key, _no_counts()), counts)
        for arrival in arrivals:
            variants = {} if failure is not None else (arrival.variants or {})
            self._series.add(("flag", arrival.app, arrival.flag), "flag",
                             {"yes": arrival.yes, "no": arrival.no, "variants": variants},
                             arrival.at)

    def _add_metric(self, metric: dict[str, Any], app: str, at: float) -> str | None:
        """Translate one metric into the registry; a reason when the registry refuses it."""
        name, kind, samples = js.sanitize(metric["name"]), metric["type"], metric["samples"]
        if not js.valid_name(name) or kind not in _KINDS or (kind == "histogram" and not samples):
            return None  # skipped
        entry = self._metrics.get(name)
        if entry is not None and entry.type != kind:
            return f"{name!r} is registered as a {entry.type} already"
        label_names = {k for k in (js.sanitize(k) for s in samples
                                   for k in (s.get("labels") or {})) if js.valid_name(k)}
        if entry is None or not label_names <= entry.labels or (
                kind == "histogram" and _new_boundaries(entry.boundaries, samples[0])):
            entry = self._metrics[name] = _Registered(kind, metric["help"], label_names)
        for sample in samples:
            key, labels = _series_key(sample, kind)
            delta = entry.add(key, labels, sample)
            if delta is None:
                return None  # a counter going down: check_document reported it
            self._series.add(("metric", app, name, kind, labels), kind, delta, at)
        return None

    # The public readers take the lock once and call the private ones, which never lock.

    def flags(self, app_name: str | None = None) -> dict[str, dict[str, Any]]:
        """Flag counts summed over hours and environments (of one app, if given)."""
        with self._lock:
            self._write()
            return self._flag_totals(app_name)

    def metrics(self, app_name: str | None = None) -> dict[str, dict[Any, Any]]:
        """Impact metric totals as ``{"counters", "gauges", "histograms"}``, each keyed by
        ``(metric name, frozenset of labels)`` (of one app, if given)."""
        with self._lock:
            return self._metric_totals(app_name)

    def totals(self, app_name: str | None = None) -> dict[str, Any]:
        """Flags and impact metrics together, read at one moment."""
        with self._lock:
            self._write()
            return {"flags": self._flag_totals(app_name), **self._metric_totals(app_name)}

    def flag_rows(self) -> list[dict[str, Any]]:
        """Each written flag row (app, environment, flag, hour), sorted, counts copied."""
        with self._lock:
            self._write()
            return self._flag_rows()

    def metric_entries(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        """``((app, environment, name), {"type", "help", "series"})``, sorted, series copied."""
        with self._lock:
            return self._metric_entries()

    def as_json(self) -> dict[str, Any]:
        """Everything, JSON-ready: flag bins, metrics, the request log, the failed writes."""
        with self._lock:
            self._write()
            flags = self._flag_rows()
            metrics = [_sample_json(app, env, name, entry["type"], labels, value)
                       for (app, env, name), entry in self._metric_entries()
                       for labels, value in sorted(entry["series"].items(),
                                                   key=lambda i: sorted(i[0]))]
            log = [{"at": _iso(r.at), "appName": r.app_name, "status": r.status,
                    "bytes": r.size, "problems": list(r.problems)} for r in reversed(self._log)]
            failed = [{**asdict(f), "at": _iso(f.at)} for f in reversed(self._failures)]
            return {"bodies_accepted": self._bodies_accepted, "flags": flags,
                    "metrics": metrics, "requests": log, "failed_writes": failed}

    def _flag_totals(self, app_name: str | None) -> dict[str, dict[str, Any]]:
        flags: dict[str, dict[str, Any]] = {}
        for (app, _env, flag, _hour), counts in self._flags.items():
            if app_name is None or app == app_name:
                _add_counts(flags.setdefault(flag, _no_counts()), counts)
        return flags

    def _metric_totals(self, app_name: str | None) -> dict[str, dict[Any, Any]]:
        result: dict[str, dict[Any, Any]] = {"counters": {}, "gauges": {}, "histograms": {}}
        for name, entry in self._metrics.items():
            # Two series that print alike (a histogram's 1 and "1") read back as the later.
            for labels, value in entry.series.values():
                if app_name is None or dict(labels).get("appName") == app_name:
                    result[entry.type + "s"][(name, labels)] = _copy(value)
        return result

    def _flag_rows(self) -> list[dict[str, Any]]:
        return [{"appName": app, "environment": env, "flag": flag, "hour": hour,
                 **{k: (dict(v) if isinstance(v, dict) else v) for k, v in c.items()}}
                for (app, env, flag, hour), c in sorted(self._flags.items())]

    def _metric_entries(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
        for name, entry in self._metrics.items():
            for labels, value in entry.series.values():
                named = dict(labels)
                key = (named.get("appName", ""), named.get("environment", ""), name)
                group = grouped.setdefault(key, {"type": entry.type, "help": entry.help,
                                                 "series": {}})
                group["series"][labels] = _copy(value)
        return sorted(grouped.items())


def _sample_json(app: str, env: str, name: str, kind: str, labels: Labels,
                 value: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {"appName": app, "environment": env, "name": name, "type": kind,
                              "labels": dict(labels)}
    if kind != "histogram":
        return {**sample, "value": value}
    buckets = sorted(value["buckets"].items(),
                     key=lambda item: float("inf") if item[0] == "+Inf" else item[0])
    return {**sample, "count": value["count"], "sum": value["sum"],
            "buckets": [{"le": le, "count": n} for le, n in buckets]}


def _arrivals(document: dict[str, Any], environment: str, at: float) -> list[Arrival]:
    """The flag counts of an accepted body as the server buffers them."""
    app = js.js_string(document["appName"])
    bucket = document.get("bucket")
    bucket = bucket if isinstance(bucket, dict) else {}
    stop = js.js_date_ms(bucket.get("stop"))
    arrivals = []
    for flag, toggle in (bucket.get("toggles") or {}).items():
        yes, no = js.ajv_number(toggle.get("yes")), js.ajv_number(toggle.get("no"))
        if not (yes or no):
            continue  # skipped by the server, variants included
        given = toggle.get("variants")
        variants = None if js.ajv_null(given) else {
            variant: js.ajv_number(n) for variant, n in given.items()
            if variant != "" and variant not in limits.DROPPED_VARIANT_NAMES}
        arrivals.append(Arrival(at, app, environment, flag,
                                int(at * 1000) if stop is None else stop,
                                yes or 0, int(no or 0), variants))  # type: ignore[arg-type]
    return arrivals


def _sums(arrivals: list[Arrival]) -> dict[Row, dict[str, Any]]:
    """The rows the arrivals add up to, yes rounded, merged as 8.2.0 merges them. A name of
    ``Object.prototype`` not held adds its count to the prototype's function, whose text
    (``None`` here) fails the write unless a later arrival without the name drops it."""
    rows: dict[Row, dict[str, Any]] = {}
    for arrival in arrivals:
        row = rows.get(arrival.row)
        later = arrival.variants or {}
        if row is None:
            rows[arrival.row] = {"yes": arrival.yes, "no": arrival.no, "variants": dict(later)}
            continue
        row["yes"] += arrival.yes
        row["no"] += arrival.no
        held = row["variants"]
        merged: dict[str, int | None] = {}
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
        # PostgreSQL's cast of a fractional count to an integer column: half away from 0.
        count = row["yes"]
        row["yes"] = math.floor(count + 0.5) if count >= 0 else -math.floor(-count + 0.5)
    return rows


def _failures(arrivals: list[Arrival], rows: dict[Row, dict[str, Any]] | None = None
              ) -> tuple[list[str], bool]:
    """Why the write of these arrivals fails, and whether only the variant rows fail;
    ``rows``: their ``_sums``, when the caller has them."""
    reasons = []
    for app in sorted({a.app for a in arrivals}):
        if len(app) > limits.MAX_APP_NAME_LENGTH or "\0" in app:
            shown = f"{app[:40]!r}..." if len(app) > 40 else repr(app)
            reasons.append(f"appName {shown} is longer than {limits.MAX_APP_NAME_LENGTH} "
                           "characters or holds NUL")
    if any(a.stop_ms < js.YEAR_ONE_MS for a in arrivals):
        reasons.append("a bucket's stop is before year 1")
    if reasons:
        return reasons, False
    if rows is None:
        rows = _sums(arrivals)
    for (app, _env, flag, _hour), row in sorted(rows.items()):
        for name, n in sorted(row["variants"].items()):
            whose = f"variant {name!r} of {flag!r} from {app!r}"
            if "\0" in name:
                reasons.append(f"{whose} holds NUL, which PostgreSQL text cannot")
            if n is None:
                reasons.append(f"{whose} came in a later body of the window than the counts "
                               "held for it, which lack it: the server added a count to "
                               f"Object.prototype.{name} and cannot write the text that makes")
            elif n > limits.MAX_VARIANT_COUNT:
                reasons.append(f"{whose} counts {n} in one window, over "
                               f"{limits.MAX_VARIANT_COUNT}")
    return reasons, True


def _no_counts() -> dict[str, Any]:
    return {"yes": 0, "no": 0, "variants": {}}


def _add_counts(total: dict[str, Any], counts: dict[str, Any]) -> None:
    total["yes"] += counts["yes"]
    total["no"] += counts["no"]
    for variant, n in counts["variants"].items():
        total["variants"][variant] = total["variants"].get(variant, 0) + n


def _copy(value: Any) -> Any:
    return {**value, "buckets": dict(value["buckets"])} if isinstance(value, dict) else value


def _series_key(sample: dict[str, Any], kind: str) -> tuple[Any, Labels]:
    """The registry's key of a sample's series, and the labels it shows. Counters and gauges
    are keyed as prom-client keys them, ``name:value,`` joined, so ``{a: "x,b:y"}`` is
    ``{a: "x", b: "y"}``; a histogram's tells 1 from "1"."""
    named = {js.sanitize(k): v for k, v in (sample.get("labels") or {}).items()}
    ordered = sorted((k, v) for k, v in named.items() if js.valid_name(k))
    labels = frozenset((name, js.js_string(value)) for name, value in ordered)
    if kind == "histogram":
        return tuple((name, isinstance(value, str), js.js_string(value))
                     for name, value in ordered), labels
    return "".join(f"{name}:{js.js_string(value)}," for name, value in ordered), labels


def _new_boundaries(seen: set[Any], first: dict[str, Any]) -> bool:
    """True when the server recreates the histogram: boundaries other than the ones seen."""
    les = [_le(b["le"]) for b in first["buckets"]]
    return len(seen) != len(les) or any(le not in seen for le in les)


def _le(le: Any) -> Any:
    return le if le == "+Inf" else float(js.joi_number(le))  # type: ignore[arg-type]


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
