"""``impactagent demo``: a simulated web shop reporting to a receiver, checked count for count.

Simulated requests go through the public API (flags with variants, counters, a gauge and
histograms labelled by the flag's state) to a receiver in this process, or with ``--url`` to
a real server or Edge, held to the agent's own ledger. Exit 0: every count arrived, once.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from ..agent import Agent
from ..agent_statistics import Statistics
from ..core.flag_context import flag_scope
from ..delivery.redaction import redact_url
from ..delivery.settings import SettingsError
from .cli_support import UsageError
from .receiver import Receiver

ROUTES = ("/", "/cart", "/checkout", "/search")
APP_NAME = "demo-shop"
CHECKOUT_SECONDS = {"blue": 0.08, "green": 0.3, "disabled": 0.15}
STEPS = 10
#: How long a close cut short by Ctrl-C may take: the user asked to stop.
INTERRUPTED_CLOSE_SECONDS = 1.0


class Shop:
    """The simulated app: its metrics, its flags, and a tally of what it recorded."""

    def __init__(self, agent: Agent, seed: int = 1) -> None:
        self.agent = agent
        self.rng = random.Random(seed)
        self.requests = agent.counter("http_requests_total", "Requests handled", labels=("route",))
        self.checkouts = agent.counter("checkout_total", "Completed checkouts",
                                       flags=("new-checkout",))
        self.in_flight = agent.gauge("in_flight_requests", "Requests being handled")
        self.latency = agent.histogram("request_seconds", "Request latency", labels=("route",))
        self.checkout_time = agent.histogram("checkout_seconds", "Checkout duration (simulated)",
                                             flags=("new-checkout",))
        self.new_checkout = agent.flag("new-checkout")(self._decide_checkout)
        self.tally: dict[str, Any] = {"new-checkout": [0, 0], "dark-mode": [0, 0],
                                      "requests": 0, "checkouts": 0, "in_flight": None}

    def _decide_checkout(self, user: int) -> dict[str, Any]:
        """What an Unleash SDK's get_variant would answer."""
        variant = ("blue", "green", "disabled")[user % 3]
        return {"name": variant, "enabled": variant != "disabled",
                "feature_enabled": variant != "disabled"}

    def handle(self, user: int) -> None:
        """One simulated request, in its own flag scope."""
        with flag_scope():
            route = self.rng.choice(ROUTES)
            depth = self.rng.randint(0, 20)
            self.in_flight.set(depth)
            self.tally["in_flight"] = depth
            with self.latency.labels(route).time():
                self.requests.labels(route).inc()
                variant = self.new_checkout(user)
                self.tally["new-checkout"][0 if variant["feature_enabled"] else 1] += 1
                dark = user % 4 == 0
                self.agent.record_flag("dark-mode", dark)
                self.tally["dark-mode"][0 if dark else 1] += 1
                if route == "/checkout":
                    self.checkouts.inc()  # labelled new_checkout="blue"/"green"/"disabled"
                    self.tally["checkouts"] += 1
                    typical = CHECKOUT_SECONDS[variant["name"]]
                    self.checkout_time.observe(typical * self.rng.uniform(0.4, 1.8))
            self.tally["requests"] += 1  # and a latency observation; a checkout, a duration


def compare(tally: dict[str, Any], totals: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Rows of (what, recorded, received) from the shop's tally and a receiver's totals."""
    flags = totals["flags"]

    def counted(flag: str, key: str) -> int:
        return int(flags.get(flag, {}).get(key, 0))

    def summed(kind: str, name: str, field: str | None = None) -> Any:
        values = [v if field is None else v[field]
                  for (metric, _labels), v in totals[kind].items() if metric == name]
        return sum(values) if values else None

    return [
        *((f"{flag} {key}", tally[flag][index], counted(flag, key))
          for flag in ("new-checkout", "dark-mode") for index, key in enumerate(("yes", "no"))),
        ("requests", tally["requests"], summed("counters", "http_requests_total")),
        ("checkouts", tally["checkouts"], summed("counters", "checkout_total")),
        ("latency observations", tally["requests"],
         summed("histograms", "request_seconds", "count")),
        ("checkout durations", tally["checkouts"],
         summed("histograms", "checkout_seconds", "count")),
        ("in-flight gauge (last)", tally["in_flight"],
         summed("gauges", "in_flight_requests")),
    ]


def main(requests: int = 10_000, out: TextIO = sys.stdout, *, url: str | None = None,
         token: str | None = None, pace: float = 0.2) -> int:
    """Run the demo; 0 when exactly what was recorded arrived. Raises :class:`UsageError`."""
    if requests < 1:
        raise UsageError(f"--requests must be 1 or more, got {requests}")
    if not pace >= 0:
        raise UsageError(f"--pace must be 0 seconds or more, got {pace}")
    if url is not None:
        _reachable(url)
        if not token:
            print("impactagent demo: warning: --url without $UNLEASH_API_TOKEN (or --token): "
                  "sending with a placeholder token, which a real server answers with 401",
                  file=sys.stderr, flush=True)
    receiver = Receiver(strict=True).start() if url is None else None
    try:
        target = receiver.api_url if receiver is not None else url
        try:
            agent = Agent(APP_NAME, url=target, api_key=token or "default:development.demo",
                          flush_interval=max(pace, 0.1) * 2, request_timeout=5,
                          shutdown_timeout=10)
        except SettingsError as error:  # a malformed --url or --token
            raise UsageError(str(error)) from None
        try:
            return _run(agent, receiver, url, requests, pace, out)
        finally:  # closed already, unless Ctrl-C or an error came first
            agent.close(INTERRUPTED_CLOSE_SECONDS)
    finally:  # after the agent's close, which delivers to it
        if receiver is not None:
            receiver.stop()


def _run(agent: Agent, receiver: Receiver | None, url: str | None, requests: int,
         pace: float, out: TextIO) -> int:
    """Record, report, close and compare; the caller closes the agent on every way out."""
    where = (f"the built-in receiver at {receiver.url}" if receiver
             else redact_url(agent.settings.url or ""))
    out.write(f"impactagent demo: {requests:,} simulated requests to {where}\n")
    shop = Shop(agent)
    agent.start()
    for step in range(STEPS):
        for user in range(step * requests // STEPS, (step + 1) * requests // STEPS):
            shop.handle(user)
        delivery = agent.statistics()["delivery"]
        bar = "#" * (step + 1) + "." * (STEPS - step - 1)
        sent = delivery["delivered_bodies"]
        out.write(f"  [{bar}] {(step + 1) * requests // STEPS:>9,} requests recorded, "
                  f"{sent} bod{'y' if sent == 1 else 'ies'} delivered\n")
        out.flush()
        time.sleep(pace)
    result = agent.close()
    statistics = agent.statistics()
    delivery = statistics["delivery"]
    out.write(f"closed: {_count(delivery['delivered_bodies'], 'body', 'bodies')}, "
              f"{_count(delivery['delivered_events'], 'event', 'events')} delivered, "
              f"{sum(statistics['dropped'].values()):,} dropped\n\n")
    if receiver is not None:
        rows = compare(shop.tally, receiver.totals(APP_NAME))
        problems = receiver.problems()
    else:
        # A real server is not ours to read back: the agent's ledger is (what it took to
        # send, and what the server accepted).
        taken = (delivery["delivered_events"] + statistics["pending_events"]
                 + sum(statistics["dropped"].values()))
        rows = [("events", taken, delivery["delivered_events"])]
        problems = []
    code = report(rows, result.ok and not statistics["dropped"], problems, out)
    if url is not None and not delivery["delivered_bodies"]:
        out.flush()
        raise UsageError(f"{redact_url(url)} took nothing: {_why_nothing(statistics)}")
    return code


def _reachable(url: str) -> None:
    """Connect once, so that a server that is down is said so before the run, not after."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UsageError(f"--url {redact_url(url)!r} is malformed ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be an http(s) URL such as "
                         f"http://localhost:4242/api, got {redact_url(url)!r}")
    if getproxies().get(parts.scheme) and not proxy_bypass(parts.hostname):
        return  # requests goes through the proxy: connecting directly would prove nothing
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except ConnectionRefusedError:
        why = "connection refused"
    except socket.gaierror:
        why = f"cannot resolve {parts.hostname!r}"
    except TimeoutError:
        why = "no answer within 5 seconds"
    except OSError as error:
        why = (error.strerror or str(error)).lower()
    else:
        return
    raise UsageError(f"cannot reach {redact_url(url)}: {why}; is the server running, "
                     "and --url right?")


def _why_nothing(statistics: Statistics) -> str:
    status = statistics["sending_stopped_by_status"]
    if status in (401, 403):
        return (f"it answered HTTP {status} (the token is missing, unknown or not a client "
                "or backend token); set $UNLEASH_API_TOKEN to one")
    detail = statistics["delivery"]["last_error_detail"]
    return f"{detail}; is --url the Unleash server (with or without /api)?" if detail else (
        "no body was delivered before the close deadline")


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def report(rows: list[tuple[str, Any, Any]], delivered: bool, problems: list[str],
           out: TextIO) -> int:
    """Write what was recorded beside what arrived; 0 when all matched and was delivered."""
    out.write(f"{'what':<26}{'recorded':>12}{'received':>12}\n")
    for what, recorded, received in rows:
        mark = ("" if recorded == received
                else f"   MISMATCH: {_difference(what, recorded, received)}")
        shown = ["-" if value is None else f"{value:,}" for value in (recorded, received)]
        out.write(f"{what:<26}{shown[0]:>12}{shown[1]:>12}{mark}\n")
    for problem in problems:
        out.write(f"problem: {problem}\n")
    ok = delivered and not problems and all(a == b for _, a, b in rows)
    out.write("\nall counts accounted for\n" if ok else "\ncounts differ\n")
    return 0 if ok else 1


def _difference(what: str, recorded: Any, received: Any) -> str:
    if received is None:
        return "nothing of it arrived"
    if recorded is None:
        return "it arrived but was never recorded"
    if what.endswith("(last)"):
        return f"the last value set was {recorded!r}, {received!r} arrived"
    if isinstance(recorded, int) and isinstance(received, int):
        if received == 0:
            return "nothing of it arrived"
        if received < recorded:
            return f"{recorded - received:,} recorded did not arrive"
        return f"{received - recorded:,} more arrived than were recorded (sent twice?)"
    return f"{received!r} arrived, {recorded!r} was recorded"
