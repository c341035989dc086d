"""The receiver against the real server, body for body: same status, same stored totals.

Every body of the corpus (``tests.e2e.differential_corpus``: impactagent's own, the named
regression cases, the generated and mutated ones, the official SDKs' captured ones) is
POSTed, in one order, to unleash-server 8.2.0 and to a receiver. Compared:

- the status of every body;
- impact metrics after every body: the server's registry (read back from
  ``/internal-backstage/impact/metrics``) and the receiver's, every series of every metric
  the corpus names, whichever app sent it. The server translates impact metrics before it
  answers, so the read needs no wait; comparing after each body names the body that made
  them differ;
- flag counts once at the end (the server writes them every 5 s): per app, for every flag
  the server knows.

What the test changes in a body before sending it: dates in ``bucket.start``/``stop`` are
moved to now (the server files counts under the hour of ``stop``, and the read-back looks
one hour back), keeping their format. Nothing else.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Set, Tuple

import requests
from prometheus_client.parser import text_string_to_metric_families

from impactagent.devtools.receiver import Receiver
from impactagent.server_rules.jsvalues import (
    YEAR_ONE_MS,
    js_date_ms,
    js_string,
    json_document,
    sanitize,
)
from tests.e2e.conftest import FLAG_CACHE_SECONDS, RealServer
from tests.e2e.differential_corpus import FLAGS, corpus
from tests.e2e.readback import SERVER_LABELS, SERVER_WRITE_PERIOD
from tests.server_rules import FLAG as RULES_FLAG

_DATE = re.compile(r"\d{4}-\d\d-\d\d[tT ]\d\d:\d\d:\d\d")


def redated(raw: bytes) -> bytes:
    """``raw`` with its bucket dates moved to now, in the same format (bytes unchanged when
    the body is not a JSON object with a bucket of dates)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's limit
        return raw
    bucket = document.get("bucket") if isinstance(document, dict) else None
    if not isinstance(bucket, dict):
        return raw
    now = datetime.now(timezone.utc)
    for key, moment in (("start", now - timedelta(seconds=10)), ("stop", now)):
        value = bucket.get(key)
        # A date the server refuses, or one it cannot write (before year 1), stays as it is.
        ms = js_date_ms(value) if isinstance(value, (str, int)) else None
        if ms is None or ms < YEAR_ONE_MS:
            continue
        if isinstance(value, str) and _DATE.match(value):
            bucket[key] = moment.strftime("%Y-%m-%dT%H:%M:%S") + value[19:]
        elif isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
            bucket[key] = int(moment.timestamp() * 1000)
    return json.dumps(document, ensure_ascii=False).encode()


def metric_names(raw: bytes) -> Set[str]:
    """The sanitised metric names a body mentions."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return set()
    metrics = document.get("impactMetrics") if isinstance(document, dict) else None
    return {sanitize(m["name"]) for m in (metrics if isinstance(metrics, list) else ())
            if isinstance(m, dict) and isinstance(m.get("name"), str)}


def flag_names(bodies: List[Tuple[str, bytes]]) -> Set[str]:
    """Every flag name in the corpus's buckets."""
    names: Set[str] = set()
    for _, raw in bodies:
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        bucket = document.get("bucket") if isinstance(document, dict) else None
        toggles = bucket.get("toggles") if isinstance(bucket, dict) else None
        names.update(toggles if isinstance(toggles, dict) else ())
    return names


def ensure_flag(unleash: RealServer, flag: str) -> bool:
    """Create ``flag`` on the server unless it exists; False for a name it refuses (counts
    for it are dropped by the server and not compared)."""
    features = f"{unleash.url}/api/admin/projects/default/features"
    session = unleash.admin.session
    if session.get(f"{features}/{flag}", timeout=10).status_code == 200:
        return True
    return session.post(features, json={"name": flag, "type": "release"},
                        timeout=10).status_code in (200, 201)


def server_series(text: str, names: Set[str]) -> Dict[str, Dict[Any, Any]]:
    """Every series of the metrics in ``names`` in the server's exposition, in the shape of
    the receiver's ``metrics()``: ``{kind: {(name, labels): value}}``."""
    found: Dict[str, Dict[Any, Any]] = {"counters": {}, "gauges": {}, "histograms": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = family.name
            if family.type == "counter" and sample.name in names:
                # The parser names a counter "x" family "x" with a sample "x_total", and
                # a counter "x_total" family "x" too: the corpus's names tell them apart.
                name = sample.name
            if name not in names or sample.name.endswith("_created"):
                continue
            labels = {k: v for k, v in sample.labels.items() if k not in SERVER_LABELS}
            le = labels.pop("le", None)
            key = (name, frozenset(labels.items()))
            if family.type == "histogram":
                entry = found["histograms"].setdefault(key, {"count": 0, "sum": 0,
                                                             "buckets": {}})
                if sample.name.endswith("_bucket"):
                    entry["buckets"]["+Inf" if le == "+Inf" else float(le)] = sample.value
                else:
                    entry[sample.name.rsplit("_", 1)[1]] = sample.value
            elif family.type in ("counter", "gauge"):
                found[family.type + "s"][key] = sample.value
    return found


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return bool(a == b)


def differences(server: Dict[str, Dict[Any, Any]], receiver: Dict[str, Dict[Any, Any]]
                ) -> List[str]:
    found = []
    for kind in ("counters", "gauges", "histograms"):
        for key in sorted(server[kind].keys() | receiver[kind].keys(), key=repr):
            s, r = server[kind].get(key), receiver[kind].get(key)
            if s is None or r is None or not same(s, r):
                found.append(f"{kind} {key[0]} {dict(key[1])}: server {s}, receiver {r}")
    return found


#: Seconds of sending after a server write, well inside its write period: the bodies sent
#: then are written together, on the server as in the receiver.
WINDOW_BUDGET = 3.0


def just_written(unleash: RealServer, probe: str, receiver: Receiver) -> float:
    """Return (the monotonic time) just after the server wrote its buffered flag counts: a
    probe app's count appears. The receiver writes its window at the same moment, so that
    both windows hold the same bodies (what one window stores can depend on the others)."""
    body = {"appName": probe, "bucket": {"start": _now(-10), "stop": _now(0),
                                         "toggles": {FLAGS[0]: {"yes": 1, "no": 0}}}}
    unleash.admin.session.post(f"{unleash.url}/api/client/metrics", json=body, timeout=10,
                               headers={"Authorization": unleash.backend_token})
    deadline = time.monotonic() + 2 * SERVER_WRITE_PERIOD + 2
    while time.monotonic() < deadline:
        if unleash.admin.flag_counts(FLAGS[0], probe)["yes"]:
            break
        time.sleep(0.1)
    receiver.received.write()
    return time.monotonic()


def _now(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def test_the_receiver_answers_and_stores_every_body_as_the_server_does(
        unleash: RealServer) -> None:
    bodies = [(name, redated(raw)) for name, raw in corpus()]
    names: Set[str] = set().union(*(metric_names(raw) for _, raw in bodies))
    session = requests.Session()
    session.trust_env = False
    before = server_series(session.get(f"{unleash.url}/internal-backstage/impact/metrics",
                                       timeout=10).text, names)
    # Metrics another test registered under the same name would make the two differ.
    names -= {key[0] for kind in before.values() for key in kind}
    known = [flag for flag in sorted({*FLAGS, RULES_FLAG, *flag_names(bodies)})
             if ensure_flag(unleash, flag)]
    time.sleep(FLAG_CACHE_SECONDS)  # the server's list of known flags is cached 10 s

    disagreements: List[str] = []
    diverged: Set[str] = set()  # report a metric's first difference only
    apps: Set[str] = set()
    headers = {"Authorization": unleash.backend_token, "Content-Type": "application/json"}
    started = time.monotonic()
    with Receiver() as receiver:
        aligned = just_written(unleash, "diff-probe-0", receiver)
        for name, raw in bodies:
            if time.monotonic() - aligned > WINDOW_BUDGET:  # the next write is near
                aligned = just_written(unleash, f"diff-probe-{name}", receiver)
            theirs = session.post(f"{unleash.url}/api/client/metrics", data=raw,
                                  headers=headers, timeout=10).status_code
            ours = session.post(f"{receiver.api_url}/client/metrics", data=raw,
                                headers=headers, timeout=10).status_code
            if theirs != ours:
                problems = receiver.received.log[-1].problems if receiver.received.log else []
                disagreements.append(f"{name}: status: server {theirs}, receiver {ours} "
                                     f"{problems}")
            if theirs == 202:
                apps.add(js_string(json_document(raw.decode("utf-8", "replace").lstrip(
                    "\ufeff"))["appName"]))
            text = session.get(f"{unleash.url}/internal-backstage/impact/metrics",
                               timeout=10).text
            for line in differences(server_series(text, names - diverged),
                                    only_series(receiver.received.metrics(), names - diverged)):
                disagreements.append(f"{name}: {line}")
                diverged.add(line.split(" ")[1])
        sent = time.monotonic() - started

        series = sum(len(v) for v in only_series(receiver.received.metrics(), names).values())
        time.sleep(SERVER_WRITE_PERIOD + 2)
        flag_rows = 0
        for app in sorted(apps):
            stored = {flag: unleash.admin.flag_counts(flag, app) for flag in known}
            stored = {flag: c for flag, c in stored.items() if c["yes"] or c["no"]}
            held = {flag: c for flag, c in receiver.received.flags(app).items()
                    if flag in known}
            flag_rows += len(stored)
            if stored != held:
                disagreements.append(f"flags of {app!r}: server {stored}, receiver {held}")
        if disagreements:  # what the receiver says it lost, and why
            disagreements += [f"receiver lost a write: {f.reasons} (apps {f.apps})"
                              for f in receiver.received.failures()]

    print(f"\ndifferential: {len(bodies)} bodies, {len(names)} metric names, {series} series,"
          f" {flag_rows} flag totals of {len(apps)} apps; sent and compared in {sent:.1f} s")
    assert not disagreements, "\n".join(disagreements)
    assert series > 100 and flag_rows > 10  # the comparison was not of two empty sets


def only_series(metrics: Dict[str, Dict[Any, Any]], names: Set[str]) -> Dict[str, Dict[Any, Any]]:
    return {kind: {key: value for key, value in series.items() if key[0] in names}
            for kind, series in metrics.items()}


__all__: Tuple[str, ...] = ()
