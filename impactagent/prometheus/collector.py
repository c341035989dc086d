"""The agent as a Prometheus target: a ``prometheus_client`` collector over its cumulative view.

A scrape reads the running totals and never takes a delta, so scraping and sending to Unleash
never change what the other sees. Impact metrics get ``appName`` and ``environment`` first (as
the Unleash server re-exposes them); then the flag counts and the agent's health.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any, Iterator, Mapping, Protocol, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
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
from ..core.threads import start_thread

_IDENTITY = ("appName", "environment")
#: The agent's own families, named once here: the flag counters (by feature and one label),
#: the health counters by one label, the health totals (with their key in ``delivery``), and
#: the pending gauge.
_FLAGS = (("impactagent_flag_evaluations", "Feature flag evaluations, by result", "enabled"),
          ("impactagent_flag_variants", "Feature flag evaluations, by variant", "variant"))
_BY_LABEL = (
    ("impactagent_recorded_events", "Events recorded by the app, by kind", "kind"),
    ("impactagent_dropped_events", "Recorded events dropped, by reason", "reason"),
    ("impactagent_delivery_failures", "Failed metrics POSTs, by status or error", "status"),
)
_TOTALS = (
    ("impactagent_delivered_events", "delivered_events", "Events Unleash accepted"),
    ("impactagent_delivery_attempts", "attempts", "Metrics POSTs attempted"),
    ("impactagent_possibly_duplicated_events", "possibly_duplicated_events",
     "Events sent without an answer: a resend may have counted them twice"),
)
_PENDING = ("impactagent_pending_events", "Events recorded and not yet delivered")
#: The names the agent's own families take: an app family that claims one is left out.
_TAKEN = frozenset([*claimed_names(_PENDING[0], "gauge"), *(
    name for own in (*_FLAGS, *_BY_LABEL, *_TOTALS) for name in claimed_names(own[0], "counter"))])

AGENT_VIEW_MARK = "impactagent_agent_view"


def mark_agent_view(metric: Metric) -> Metric:
    """Mark ``metric`` as the agent's own view: a bridge reading it back would send every
    count again."""
    setattr(metric, AGENT_VIEW_MARK, True)
    return metric


def is_agent_view(metric: Any) -> bool:
    """Whether ``metric`` was marked by :func:`mark_agent_view`."""
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
        yield from map(mark_agent_view, itertools.chain(self.counts(), self.health()))

    def counts(self) -> Iterator[Metric]:
        """What the app counted: its impact metrics and the flag counts."""
        identity = (scrub(self.agent.identity.app_name), scrub(self.agent.identity.environment))
        # An app metric whose names clash with one shown before it is left out, or
        # OpenMetrics parsers would refuse the whole scrape.
        taken = set(_TAKEN)
        for family in self.agent.metrics.families():
            claims = claimed_names(family.name, family.kind)
            if taken.isdisjoint(claims):
                taken.update(claims)
                yield _family(family, identity)
        yield from self._flags()

    def _flags(self) -> Iterator[Metric]:
        evaluations, variants = (CounterMetricFamily(name, text, labels=("feature", label))
                                 for name, text, label in _FLAGS)
        for name, counts in sorted(self.agent.recorder.flags.cumulative().items()):
            name = scrub(name)
            evaluations.add_metric((name, "true"), counts.yes)
            evaluations.add_metric((name, "false"), counts.no)
            for variant, n in sorted(counts.variants.items()):
                variants.add_metric((name, scrub(variant)), n)
        yield evaluations
        yield variants

    def health(self) -> Iterator[Metric]:
        """The agent's own health (recorded, delivered, dropped...), never summed."""
        statistics = self.agent.statistics()
        delivery = statistics["delivery"]
        recorded = [(kind, n) for kind, n in statistics["recorded"].items()
                    if kind != "gauge_series"]
        by_label = (recorded, sorted(statistics["dropped"].items()),
                    sorted(delivery["failures"].items()))
        for (name, text, label), counts in zip(_BY_LABEL, by_label):
            family = CounterMetricFamily(name, text, labels=(label,))
            for value, n in counts:
                family.add_metric((value,), n)
            yield family
        for name, key, text in _TOTALS:
            yield CounterMetricFamily(name, text, value=delivery[key])
        yield GaugeMetricFamily(*_PENDING, value=statistics["pending_events"])


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
        # OpenMetrics forbids a negative _sum (and with it _count), as prometheus_client.
        total = child.sum if child.sum >= 0 else None
        histogram.add_metric(_values(identity, child), [(_le(le), n) for le, n in buckets], total)
    return histogram


def _values(identity: Tuple[str, str], child: Any) -> Tuple[str, ...]:
    return (*identity, *(scrub(value) for value in child.label_values))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def registry_of(collector: Any) -> CollectorRegistry:
    """A registry holding only ``collector`` (not the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def registry_for(agent: Scraped) -> CollectorRegistry:
    """A registry holding only this agent's collector."""
    return registry_of(AgentCollector(agent))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is no line on stderr."""


def serve_registry(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1"
                   ) -> Tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` as ``start_http_server`` does, from agent threads, which leave
    SIGTERM and SIGINT to the app."""
    family, _, _, _, address = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(str(address[0]), port, make_wsgi_app(registry), Server,
                         handler_class=_QuietHandler)
    return server, start_thread(server.serve_forever, "impactagent-prometheus")


def serve(agent: Scraped, port: int, addr: str = "127.0.0.1"
          ) -> Tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` for ``agent`` on ``addr:port`` (port 0 picks a free one)."""
    return serve_registry(registry_for(agent), port, addr)


def wsgi_app(agent: Scraped) -> Any:
    """A WSGI app serving the scrape, to mount in an existing server."""
    return make_wsgi_app(registry_for(agent))


def asgi_app(agent: Scraped) -> Any:
    """An ASGI app serving the scrape, to mount in an existing server."""
    return make_asgi_app(registry_for(agent))
