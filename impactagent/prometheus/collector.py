"""The agent as a Prometheus target: a ``prometheus_client`` collector over its cumulative view.

The other way out of the process: Unleash is pushed windows of deltas
(:mod:`impactagent.delivery`), Prometheus pulls running totals from here. Both read the
recording core; neither changes what the other sees.

Scraping reads the running totals every series keeps for this purpose; it never takes a
delta, so a scrape changes nothing that is sent to Unleash, and Unleash delivery changes
nothing a scrape sees. What a scrape shows:

- every impact metric under its own name, with ``appName`` and ``environment`` labels first,
  as the Unleash server re-exposes what it ingested (without the server's ``origin`` and
  ``metric_type``): a dashboard can point at either;
- flag counts: ``impactagent_flag_evaluations_total{feature, enabled}`` (yes and no) and
  ``impactagent_flag_variants_total{feature, variant}``. Two families, because the agent
  counts as the Unleash protocol does, yes/no and variants apart: one family with both labels
  would have to invent how many "blue" answers were yes;
- the agent's own health: events recorded, delivered, dropped by reason, pending, delivery
  attempts and failures by status, and possibly duplicated events.

Every family the agent's views yield is marked (:func:`mark_agent_view`): a bridge reading
the same registry back into the agent (:mod:`impactagent.integrations.prometheus_bridge`)
skips marked families, which would otherwise be counted a second time.

Every endpoint here (:func:`serve`, :func:`wsgi_app`, :func:`asgi_app`) answers in the text
format, or in OpenMetrics 1.0.0 when the scraper's ``Accept`` asks for it, as
``prometheus_client`` negotiates. Both parse: an app metric whose names clash with one shown
before it is left out, a histogram whose sum is negative has no ``_sum``/``_count`` (the
``+Inf`` bucket is the count), and lone surrogates in label values become U+FFFD.

>>> from impactagent import Agent
>>> agent = Agent("shop", "production")
>>> agent.counter("checkout_total", "Checkouts").inc(3)
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(AgentCollector(agent))
>>> print(generate_latest(registry).decode().splitlines()[2])
checkout_total{appName="shop",environment="production"} 3.0
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Mapping, Optional, Protocol, Tuple

from prometheus_client import CollectorRegistry, make_asgi_app, make_wsgi_app, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..core.exposition_text import claimed_names, counter_base, scrub
from ..core.payload import Identity
from ..core.recorder import Recorder
from ..core.registry import MetricRegistry

_IDENTITY = ("appName", "environment")
#: The agent's own families, (kind, name): their names are never an app metric's.
_OWN_FAMILIES = (
    ("counter", "impactagent_flag_evaluations"), ("counter", "impactagent_flag_variants"),
    ("counter", "impactagent_recorded_events"), ("counter", "impactagent_dropped_events"),
    ("counter", "impactagent_delivery_failures"), ("counter", "impactagent_delivered_events"),
    ("counter", "impactagent_delivery_attempts"),
    ("counter", "impactagent_possibly_duplicated_events"),
    ("gauge", "impactagent_pending_events"),
)


#: The attribute that marks a family as one of the agent's own views (see
#: :func:`mark_agent_view`): an attribute rather than a subclass, so that any family type,
#: ours or one a merge of worker files builds, can carry it.
AGENT_VIEW_MARK = "impactagent_agent_view"


def mark_agent_view(metric: Metric) -> Metric:
    """Mark ``metric`` as produced by the agent's own view (returned, for ``yield``).

    A reader of the registry that feeds metrics into an agent (the prometheus_client
    bridge) skips marked families: they are the agent's totals already, and reading them
    back would send every count again.
    """
    setattr(metric, AGENT_VIEW_MARK, True)
    return metric


def is_agent_view(metric: Any) -> bool:
    """Whether ``metric`` was yielded by the agent's own view (:func:`mark_agent_view`)."""
    return getattr(metric, AGENT_VIEW_MARK, False) is True


class Scraped(Protocol):
    """What a scrape reads of an agent (:class:`impactagent.Agent` is one)."""

    metrics: MetricRegistry
    recorder: Recorder

    @property
    def identity(self) -> Identity: ...

    def statistics(self) -> Mapping[str, Any]: ...


class AgentCollector:
    """A ``prometheus_client`` collector; register it on any registry."""

    def __init__(self, agent: Scraped) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        for metric in self.counts():
            yield mark_agent_view(metric)
        for metric in self.health():
            yield mark_agent_view(metric)

    def counts(self) -> Iterator[Metric]:
        """What the app counted: its impact metrics and the flag counts. Across workers
        (:mod:`impactagent.prometheus.workers`) these are summed."""
        identity = (scrub(self.agent.identity.app_name), scrub(self.agent.identity.environment))
        # The agent's own families keep their names; an app metric whose names clash with
        # one shown before it (a gauge "x_total" after a counter "x") is left out, or
        # OpenMetrics parsers would refuse the whole scrape.
        taken = {name for kind, own in _OWN_FAMILIES for name in claimed_names(own, kind)}
        for family in self.agent.metrics.families():
            claims = claimed_names(family.name, family.kind)
            if taken.isdisjoint(claims):
                taken.update(claims)
                yield _family(family, identity)
        yield from self._flags()

    def _flags(self) -> Iterator[Metric]:
        evaluations = CounterMetricFamily(
            "impactagent_flag_evaluations", "Feature flag evaluations, by result",
            labels=("feature", "enabled"))
        variants = CounterMetricFamily(
            "impactagent_flag_variants", "Feature flag evaluations, by variant",
            labels=("feature", "variant"))
        for name, counts in sorted(self.agent.recorder.flags.cumulative().items()):
            name = scrub(name)
            evaluations.add_metric((name, "true"), counts.yes)
            evaluations.add_metric((name, "false"), counts.no)
            for variant, n in sorted(counts.variants.items()):
                variants.add_metric((name, scrub(variant)), n)
        yield evaluations
        yield variants

    def health(self) -> Iterator[Metric]:
        """The agent's own health (recorded, delivered, dropped, pending...): a worker's
        own, never summed across workers."""
        statistics = self.agent.statistics()
        delivery = statistics["delivery"]
        recorded = CounterMetricFamily(
            "impactagent_recorded_events", "Events recorded by the app, by kind",
            labels=("kind",))
        for kind, n in statistics["recorded"].items():
            if kind != "gauge_series":
                recorded.add_metric((kind,), n)
        yield recorded
        dropped = CounterMetricFamily(
            "impactagent_dropped_events", "Recorded events dropped, by reason",
            labels=("reason",))
        for reason, n in sorted(statistics["dropped"].items()):
            dropped.add_metric((reason,), n)
        yield dropped
        failures = CounterMetricFamily(
            "impactagent_delivery_failures", "Failed metrics POSTs, by status or error",
            labels=("status",))
        for status, n in sorted(delivery["failures"].items()):
            failures.add_metric((status,), n)
        yield failures
        for name, key, text in (
            ("impactagent_delivered_events", "delivered_events", "Events Unleash accepted"),
            ("impactagent_delivery_attempts", "attempts", "Metrics POSTs attempted"),
            ("impactagent_possibly_duplicated_events", "possibly_duplicated_events",
             "Events sent without an answer: a resend may have counted them twice"),
        ):
            yield CounterMetricFamily(name, text, value=delivery[key])
        yield GaugeMetricFamily("impactagent_pending_events",
                                "Events recorded and not yet delivered",
                                value=statistics["pending_events"])


def _family(family: Any, identity: Tuple[str, str]) -> Metric:
    labels = (*_IDENTITY, *family.label_names)
    help_text = scrub(family.help)
    if family.kind == "counter":
        # prometheus_client adds "_total" to the sample name; the family name goes without.
        counter = CounterMetricFamily(counter_base(family.name), help_text, labels=labels)
        for child in family.series():
            counter.add_metric(_values(identity, child), child.value)
        return counter
    if family.kind == "gauge":
        gauge = GaugeMetricFamily(family.name, help_text, labels=labels)
        for child in family.series():
            if child.value is not None:  # never set: nothing to show
                gauge.add_metric(_values(identity, child), child.value)
        return gauge
    histogram = HistogramMetricFamily(family.name, help_text, labels=labels)
    for child in family.series():
        buckets = child.cumulative_buckets()
        # A sum below zero is no counter: OpenMetrics forbids it (and with it _count; the
        # +Inf bucket still says how many), as prometheus_client already leaves both out
        # when a bucket bound is negative.
        total = child.sum if child.sum >= 0 else None
        histogram.add_metric(_values(identity, child), [(_le(le), n) for le, n in buckets],
                             total)
    return histogram


def _values(identity: Tuple[str, str], child: Any) -> Tuple[str, ...]:
    return (*identity, *(scrub(value) for value in child.label_values))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def registry_for(agent: Scraped) -> CollectorRegistry:
    """A registry holding only this agent's collector (not the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    return registry


def serve(agent: Scraped, port: int, addr: str = "127.0.0.1"
          ) -> Tuple[Any, Optional[threading.Thread]]:
    """Serve ``/metrics`` for ``agent`` on ``addr:port`` from a daemon thread (loopback by
    default: binding to all interfaces is a decision to make on purpose). Port 0 picks a
    free port: read it from ``server.server_port``. Returns ``(server, thread)``; call
    ``server.shutdown()`` to stop."""
    return start_http_server(port, addr=addr, registry=registry_for(agent))


def wsgi_app(agent: Scraped) -> Any:
    """A WSGI app serving the scrape, to mount in an existing server."""
    return make_wsgi_app(registry_for(agent))


def asgi_app(agent: Scraped) -> Any:
    """An ASGI app serving the scrape, to mount in an existing server."""
    return make_asgi_app(registry_for(agent))
