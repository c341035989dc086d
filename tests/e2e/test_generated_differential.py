"""The receiver against the real server on generated requests: same status, same stored
totals, same lost write windows.

Each Hypothesis example is one of the server's write windows: requests drawn from the
categories of :mod:`tests.e2e.generated_bodies` (each as its own app), then a canary app,
all sent right after the server wrote its buffer (the previous window's canary appearing
says when), to the server and to a receiver holding the same token. Compared:

- the status of every request;
- impact metrics after every request (the server translates them before it answers);
- flag counts of every app once the window is written, the canary's included: a body that
  makes the server fail its write costs the canary its counts, and the receiver must show
  the same loss.

Bounded for CI (``IMPACTAGENT_GENERATED_WINDOWS``, 20 by default: about two minutes). A
longer run before a release, with a seed of its own::

    IMPACTAGENT_GENERATED_WINDOWS=300 python -m pytest \\
        tests/e2e/test_generated_differential.py --hypothesis-seed=20261205 -s

Requests whose impact metrics would break the server's exposition for every app (a label
named ``__name__`` or ``__``) are withheld: the session's server is shared with the other
e2e tests. A disagreement found here becomes a named rule in ``tests/server_rules.py``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Dict, List, Set, Tuple

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from impactagent.devtools.receiver import Receiver
from impactagent.server_rules.jsvalues import hour_of, js_string, sanitize
from impactagent.server_rules.validation import POISONED, check_document
from tests.e2e.conftest import FLAG_CACHE_SECONDS, RealServer
from tests.e2e.differential_corpus import FLAGS
from tests.e2e.generated_bodies import CATEGORIES, Sent, canary, stop_ms
from tests.e2e.readback import SERVER_WRITE_PERIOD, stored_flags
from tests.e2e.test_differential import differences, ensure_flag, only_series, server_series
from tests.server_rules import FLAG as RULES_FLAG
from tests.server_rules import TRANSPORT_CASES, WINDOW_CASES, transport_request

WINDOWS = int(os.environ.get("IMPACTAGENT_GENERATED_WINDOWS", "20"))
#: Requests per window, at most (each category drawn once or more).
PER_WINDOW = 8


class Differential:
    """Both sides of the comparison, and what was tried and found."""

    def __init__(self, unleash: RealServer, receiver: Receiver,
                 flags: Tuple[str, ...] = FLAGS) -> None:
        self.unleash = unleash
        self.flags = flags
        self.receiver = receiver
        self.session = requests.Session()
        self.session.trust_env = False
        self.tried: Counter = Counter()
        self.withheld: Counter = Counter()
        self.found: Dict[str, List[str]] = {}
        self.windows = 0
        self.lost_windows = 0
        # The session's earlier tests left series on the server, under names the corpus may
        # draw again (a mutation's fixed name): those series are not this comparison's.
        self.earlier = self.exposition()

    def exposition(self) -> str:
        return self.session.get(f"{self.unleash.url}/internal-backstage/impact/metrics",
                                timeout=10).text

    def post(self, url: str, sent: Sent) -> int:
        return self.session.post(f"{url}/api/client/metrics", timeout=10,
                                 **sent.request(self.unleash.backend_token)).status_code

    def disagree(self, sent: Sent, what: str) -> None:
        self.found.setdefault(sent.category, []).append(f"{what}: {sent.describe()}")

    def server_flags(self) -> Dict[str, Dict[str, Any]]:
        """Every app's stored counts per known flag: {app: {flag: counts}}."""
        held = stored_flags(self.unleash.stack.postgres, sorted({*self.flags, FLAGS[0]}))
        return {app: {f: c for f, c in flags.items() if c["yes"] or c["no"]}
                for app, flags in held.items()}

    def written(self, app: str, deadline: float) -> bool:
        """Wait (bounded) until the server has written ``app``'s counts."""
        while time.monotonic() < deadline:
            if self.server_flags().get(app):
                return True
            time.sleep(0.2)
        return False

    def align(self, app: str) -> None:
        """Return just after the server wrote its buffer: a probe's counts appear."""
        probe = canary(app)
        self.post(self.unleash.url, probe)
        self.written(app, time.monotonic() + 2 * SERVER_WRITE_PERIOD + 2)

    def window(self, number: int, batch: List[Sent]) -> None:
        """Send one window's requests to both, then compare."""
        self.receiver.received.write()  # the receiver's window opens with the server's
        names: Set[str] = set()
        readable: Set[str] = set()
        unreadable: Set[str] = set()
        hour = hour_of(int(datetime.now(timezone.utc).timestamp() * 1000))
        for sent in batch:
            if any(p.outcome == POISONED and p.where.startswith("impactMetrics")
                   for p in _problems(sent.document)):
                self.withheld[sent.category] += 1
                continue
            self.tried[sent.category] += 1
            theirs = self.post(self.unleash.url, sent)
            ours = self.post(self.receiver.url, sent)
            if theirs != ours:
                self.disagree(sent, f"status: server {theirs}, receiver {ours}")
            app = _app(sent)
            stop = stop_ms(sent.document)
            same_hour = stop is None or hour_of(stop) == hour
            (readable if same_hour else unreadable).add(app)
            names |= _metric_names(sent.document)
            earlier = server_series(self.earlier, names)
            for line in differences(
                    new_series(server_series(self.exposition(), names), earlier),
                    new_series(only_series(self.receiver.received.metrics(), names), earlier)):
                self.disagree(sent, line)
                names.discard(line.split(" ")[1])  # one report per metric
        guard = canary(f"gen{number}-canary")
        self.post(self.unleash.url, guard)
        self.post(self.receiver.url, guard)
        self.windows += 1
        if not self.written(guard.app, time.monotonic() + 2 * SERVER_WRITE_PERIOD + 1):
            self.lost_windows += 1
            self.align(f"gen{number}-probe")  # the next window starts after a write
        stored = self.server_flags()
        if stored.get(guard.app, {}) != self.receiver.received.flags(guard.app):
            # A window lost on one side only: every request in it, to make a rule of.
            for sent in batch:
                self.disagree(sent, f"in window {number}, whose canary differs")
        for app in sorted((readable - unreadable) | {guard.app}):
            held = {flag: c for flag, c in self.receiver.received.flags(app).items()
                    if flag in {*self.flags, FLAGS[0]}}
            if stored.get(app, {}) != held:
                sent = next((s for s in batch if _app(s) == app), guard)
                self.disagree(sent, f"flags of {app[:60]!r}: server {stored.get(app, {})}, "
                                    f"receiver {held}")


def test_generated_requests_get_the_servers_answer_and_totals(unleash: RealServer) -> None:
    for flag in FLAGS:
        assert ensure_flag(unleash, flag)
    time.sleep(max(0.0, FLAG_CACHE_SECONDS - 1))
    numbers = itertools.count()
    with Receiver(token=unleash.backend_token) as receiver:
        differential = Differential(unleash, receiver)
        differential.align("gen-probe")

        @settings(max_examples=WINDOWS, deadline=None, database=None,
                  phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def one_window(data: Any) -> None:
            number = next(numbers)
            chosen = data.draw(st.lists(st.sampled_from(sorted(CATEGORIES)), min_size=1,
                                        max_size=PER_WINDOW))
            batch: List[Sent] = []
            for index, category in enumerate(chosen):
                batch += data.draw(CATEGORIES[category](f"gen{number}-{index}"))
            differential.window(number, batch)

        started = time.monotonic()
        one_window()
        took = time.monotonic() - started

    found = differential.found
    print(f"\ngenerated differential: {differential.windows} windows in {took:.0f} s "
          f"({differential.lost_windows} lost by the server); requests per category: "
          + ", ".join(f"{c} {n}" for c, n in sorted(differential.tried.items()))
          + f"; withheld {sum(differential.withheld.values())}; disagreements per category: "
          + (", ".join(f"{c} {len(v)}" for c, v in sorted(found.items())) or "none"))
    assert not found, "\n".join(line for lines in found.values() for line in lines[:40])


def _problems(document: Any) -> List[Any]:
    return check_document(document) if isinstance(document, dict) else []


def new_series(found: Dict[str, Dict[Any, Any]], earlier: Dict[str, Dict[Any, Any]]
               ) -> Dict[str, Dict[Any, Any]]:
    """``found`` without the series the server held before the comparison began."""
    return {kind: {key: value for key, value in series.items() if key not in earlier[kind]}
            for kind, series in found.items()}


def _app(sent: Sent) -> str:
    document = sent.document
    name = document.get("appName") if isinstance(document, dict) else None
    return js_string(name) if name is not None else sent.app


def _metric_names(document: Any) -> Set[str]:
    metrics = document.get("impactMetrics") if isinstance(document, dict) else None
    return {sanitize(m["name"]) for m in (metrics if isinstance(metrics, list) else ())
            if isinstance(m, dict) and isinstance(m.get("name"), str)}


__all__: Tuple[str, ...] = ()


def test_the_named_window_and_transport_rules_hold_on_the_server(unleash: RealServer) -> None:
    """The evidence for ``tests.server_rules``' WINDOW_CASES and TRANSPORT_CASES: each
    window case in a write window of its own (apps renamed per case: the server keeps
    every app's counts of the hour), each transport case once; the receiver must agree, and
    the server must store what the case says."""
    assert ensure_flag(unleash, RULES_FLAG) and ensure_flag(unleash, FLAGS[0])
    time.sleep(max(0.0, FLAG_CACHE_SECONDS - 1))
    with Receiver(token=unleash.backend_token) as receiver:
        differential = Differential(unleash, receiver, flags=(RULES_FLAG,))
        differential.align("rules-probe")
        evidence: List[str] = []
        for number, (name, case) in enumerate(sorted(WINDOW_CASES.items())):
            # Unique per case; a name over 255 characters keeps its length.
            renamed = {app: f"w{number}-{app}"[:len(app) if len(app) > 255 else None]
                       for app in case.stored}
            batch = [Sent("window-rule", renamed[body["appName"]],
                          {**body, "appName": renamed[body["appName"]]})
                     for body in case.bodies]
            differential.window(1000 + number, batch)
            stored = differential.server_flags()
            for app, expected in case.stored.items():
                if stored.get(renamed[app], {}) != expected:
                    evidence.append(f"{name}: server holds {stored.get(renamed[app], {})} for "
                                    f"{app[:40]!r}, the rule says {expected}")
        for name in sorted(TRANSPORT_CASES):
            headers, raw, status = transport_request(name, unleash.backend_token)
            answers = [differential.session.post(f"{url}/api/client/metrics", data=raw,
                                                 headers=headers, timeout=10).status_code
                       for url in (unleash.url, receiver.url)]
            if answers != [status, status]:
                evidence.append(f"{name}: server {answers[0]}, receiver {answers[1]}, the "
                                f"rule says {status}")
    disagreements = [line for lines in differential.found.values() for line in lines]
    assert not evidence and not disagreements, "\n".join(evidence + disagreements)
