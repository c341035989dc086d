"""Ship chosen ``prometheus_client`` metrics to Unleash as impact metrics.

Most apps already count their requests, errors and latencies with ``prometheus_client``.
:func:`bridge_prometheus` reads the families you choose from a registry (the default one
unless given) at the start of every agent collect, and records what changed into native
agent metrics, which delivery then sends like any other (merge-back on failure, the spool,
drops counted, the series limit)::

    from prometheus_client import Counter
    from impactagent.integrations.prometheus_bridge import bridge_prometheus

    REQUESTS = Counter("http_requests", "Requests served", ["route", "status"])
    bridge_prometheus(agent, families=["http_requests"])        # by name
    bridge_prometheus(agent, families=lambda name: name.startswith("shop_"),
                      labels=["route"])                          # by predicate, one label

What is sent, per family type:

- **counter**: the increase of each series' total since the last collect, as a counter
  named like the sample (``http_requests_total``). A total lower than the last reading, or a
  new ``_created`` time, is a restart: the new total counts from zero, never negative.
  Fractions (``inc(0.5)``) are sent as whole units as they complete.
- **gauge**: the current value, at each collect where it changed (Unleash keeps the last).
- **histogram**: the bucket counts and sum added since the last collect, under the same
  boundaries (``+Inf`` last, as the string the server takes), restarts detected as for
  counters.
- **summary, info, enum, stateset, gaugehistogram, unknown**: refused (logged once, listed in
  :attr:`PrometheusBridge.refused`): a summary's quantiles cannot be added up across
  instances (use a Histogram), and the others are no impact metrics.

Nothing is sent unless chosen. The families of the agent's own Prometheus view (an
``AgentCollector`` or a workers view registered on the same registry) are marked as such
and always skipped, and a chosen family whose name is already a native metric of the agent
(defined by the app) is refused: neither is counted twice. Names, label names and the
``labels`` allowlist are mapped as :mod:`impactagent.integrations._bridged` says.

Bridged metrics are aggregated before the agent sees them, so they cannot carry the
request's flag state (``flags=``): record a native metric with ``flags=`` for that.

After ``fork()`` the child starts from the totals at the fork (the parent sends what was
counted before it), as the agent's own metrics do; the totals are read in the parent just
before the fork, so that no lock another thread holds can be copied into the child half
taken. An increment another thread records between that read and the fork itself is sent
by both processes (a window of microseconds; single-threaded forks, such as a gunicorn
master's, have none). A server that forks without Python's hooks (uWSGI without
``py-call-osafterfork``) calls ``Agent.after_fork()`` in the child, which reaches
:meth:`PrometheusBridge.after_fork`: the child then starts from the totals it reads there.

Series are matched by label name, never by position (see :mod:`._bridged`): a family
re-registered with its labels reordered keeps each value on its label, and one
re-registered with other label names has what it counts dropped under
``bridged_labels_changed``, counted in ``Agent.statistics()["dropped"]``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ..prometheus.collector import is_agent_view
from ._bridged import Bridged, BridgedFamilies, increment
from ._cumulative import CounterReadings, HistogramReadings

if TYPE_CHECKING:
    from ..agent import Agent

logger = logging.getLogger(__name__)

#: Which families to ship: their names, or a predicate on the family name.
Choice = Union[Iterable[str], Callable[[str], bool]]
#: A source series' labels, by name, in name order: ``(("kind", "send"), ("queue", "mail"))``.
LabelKey = Tuple[Tuple[str, str], ...]

_REFUSED_TYPES = {
    "summary": "a summary's quantiles cannot be added up across instances; use a Histogram",
    "info": "an info metric is no impact metric",
    "stateset": "a state set is no impact metric",
    "enum": "an enum is no impact metric",
    "gaugehistogram": "a gauge histogram has no total to take deltas of",
    "unknown": "an untyped metric cannot be told a counter or a gauge",
}


class PrometheusBridge:
    """Reads chosen families of a ``prometheus_client`` registry into an agent's metrics.

    Made by :func:`bridge_prometheus`; :meth:`read` runs at the start of every agent
    collect. :meth:`close` stops it.
    """

    def __init__(self, agent: Agent, *, families: Choice, registry: Any = None,
                 labels: Optional[Iterable[str]] = None, prefix: str = "",
                 max_series: Optional[int] = None) -> None:
        if registry is None:
            from prometheus_client import REGISTRY
            registry = REGISTRY
        self._registry = registry
        self._chosen = _chooser(families)
        self._agent = agent
        self._native = BridgedFamilies(agent, source="prometheus_client", prefix=prefix,
                                       labels=labels, max_series=max_series)
        self._counters = CounterReadings()
        self._histograms = HistogramReadings()
        self._lock = threading.Lock()
        self._gauges_set: Dict[Any, float] = {}  # the value last set on each native gauge
        # The value last counted as dropped, per gauge series that cannot be mapped.
        self._gauges_dropped: Dict[Tuple[str, LabelKey], float] = {}
        self._pid = os.getpid()  # the process whose readings these are (see after_fork)
        self._fork_baseline: Optional[Tuple[CounterReadings, HistogramReadings]] = None
        agent.recorder.add_collect_hook(self.read)
        agent.follow_fork(self)  # Agent.after_fork() by hand reaches after_fork() below
        me = weakref.ref(self)
        os.register_at_fork(before=lambda: _call(me, PrometheusBridge._before_fork),
                            after_in_parent=lambda: _call(me, PrometheusBridge._after_fork),
                            after_in_child=lambda: _call(me, PrometheusBridge._in_child))

    @property
    def refused(self) -> Dict[str, str]:
        """Chosen families that are not sent, by name, with the reason."""
        return dict(self._native.refused)

    def read(self) -> None:
        """Record what changed in the chosen families since the last read (the collect
        hook; reading by hand only moves what is sent to the next collect)."""
        with self._lock:
            self._read(self._counters, self._histograms, record=True)

    def close(self) -> None:
        """Stop reading: what was read is still sent; later changes are not."""
        with contextlib.suppress(ValueError):  # already closed
            self._agent.recorder.remove_collect_hook(self.read)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, counters: CounterReadings, histograms: HistogramReadings, *,
              record: bool) -> None:
        gauges: Dict[Any, float] = {}
        for metric in self._registry.collect():
            if is_agent_view(metric):
                # The agent's own view on the same registry: its totals are the agent's
                # already (bridged ones included); reading them back would send them again.
                continue
            name = metric.name
            if not self._chosen(name) and not (metric.type == "counter"
                                                and self._chosen(name + "_total")):
                continue
            if metric.type == "counter":
                self._counter(metric, counters, record)
            elif metric.type == "histogram":
                self._histogram(metric, histograms, record)
            elif metric.type == "gauge":
                if record:
                    self._gauge(metric, gauges)
            else:
                self._native.refuse(name, _REFUSED_TYPES.get(metric.type,
                                                             f"type {metric.type!r}"))
        for child, value in gauges.items():
            # Only a changed value: Unleash keeps the last one, and an unchanged gauge read
            # again at close must not count as an event that close could not deliver.
            last = self._gauges_set.get(child)
            if not _same(last, value):
                self._gauges_set[child] = value
                child.set(value)

    def _counter(self, metric: Any, readings: CounterReadings, record: bool) -> None:
        totals: Dict[LabelKey, float] = {}
        created: Dict[LabelKey, float] = {}
        names: Optional[List[str]] = None
        for sample in metric.samples:
            if names is None:
                names = list(sample.labels)
            key = _label_key(sample.labels)
            if sample.name.endswith("_created"):
                created[key] = sample.value
            elif sample.name.endswith("_total"):
                totals[key] = sample.value
        if names is None:
            return  # no series yet
        bridged = self._native.counter(metric.name, metric.documentation, names,
                                       native=metric.name + "_total") if record else None
        for key, total in totals.items():
            delta = readings.delta((metric.name, key), total, created.get(key))
            if bridged is None or not delta:
                continue
            child = bridged.series_for(dict(key))
            if child is None:
                self._native.drop_unmapped(metric.name, delta, dict(key), bridged)
            else:
                increment(child, delta)

    def _histogram(self, metric: Any, readings: HistogramReadings, record: bool) -> None:
        buckets: Dict[LabelKey, List[Tuple[float, float]]] = {}
        sums: Dict[LabelKey, float] = {}
        created: Dict[LabelKey, float] = {}
        names: Optional[List[str]] = None
        for sample in metric.samples:
            if names is None:
                names = [n for n in sample.labels if n != "le"]
            key = _label_key(sample.labels, without="le")
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets.setdefault(key, []).append((le, sample.value))
            elif sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_created"):
                created[key] = sample.value
        if names is None:
            return
        bridged: Optional[Bridged] = None
        for key, cumulative in buckets.items():
            cumulative.sort()
            bounds = tuple(le for le, _ in cumulative if not math.isinf(le))
            counts = _per_bucket([c for _, c in cumulative])
            added = readings.delta((metric.name, key), counts, sums.get(key, 0.0),
                                   created.get(key))
            if not record:
                continue
            if bridged is None:
                bridged = self._native.histogram(metric.name, metric.documentation, names,
                                                 bounds)
                if bridged is None:
                    return
            expected = getattr(bridged.family, "buckets", ())
            if expected != bounds:
                values = tuple(value for _, value in key)
                self._native.refuse(metric.name, f"series {values} has buckets {bounds}, "
                                                 f"not {expected}")
                continue
            if added is None:
                continue
            child = bridged.series_for(dict(key))
            if child is None:
                self._native.drop_unmapped(metric.name, sum(added[0]), dict(key), bridged)
            else:
                child.add_counts(*added)

    def _gauge(self, metric: Any, gauges: Dict[Any, float]) -> None:
        names: Optional[List[str]] = None
        bridged: Optional[Bridged] = None
        for sample in metric.samples:
            if names is None:
                names = list(sample.labels)
                bridged = self._native.gauge(metric.name, metric.documentation, names)
            if bridged is None:
                return
            key = _label_key(sample.labels)
            child = bridged.series_for(dict(key))
            if child is not None:
                gauges[child] = gauges.get(child, 0.0) + sample.value
            elif not _same(self._gauges_dropped.get((metric.name, key)), sample.value):
                # Each new value that cannot be set is one dropped event (as a set would be).
                self._gauges_dropped[(metric.name, key)] = sample.value
                self._native.drop_unmapped(metric.name, 1, dict(key), bridged)

    # -- fork ------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        # Held across the fork (released in both processes after it): no read in between.
        self._lock.acquire()
        try:
            counters, histograms = self._counters.copy(), self._histograms.copy()
            self._read(counters, histograms, record=False)
            self._fork_baseline = (counters, histograms)
        except Exception:  # the fork goes on; the child then starts from the last read
            self._fork_baseline = None

    def _after_fork(self) -> None:
        self._fork_baseline = None
        self._lock.release()

    def _in_child(self) -> None:
        self._lock = threading.Lock()
        self._gauges_set = {}  # the child's gauges start unset
        self._gauges_dropped = {}
        self._pid = os.getpid()
        if self._fork_baseline is not None:
            self._counters, self._histograms = self._fork_baseline
        self._fork_baseline = None

    def after_fork(self) -> None:
        """In a child forked without Python's fork hooks (``Agent.after_fork()`` calls it):
        take the registry's totals now as where the child starts, so that what the parent
        counted before the fork and had not collected yet is sent by the parent alone.

        A no-op when Python's fork hook already ran in this process (its baseline, read
        just before the fork, is the better one). An increment the child records before
        this call is taken as the parent's and not sent: call it first thing in the child.
        """
        if os.getpid() == self._pid:
            return
        # A lock some parent thread held at the fork would stay held here forever.
        self._lock = threading.Lock()
        self._gauges_set = {}
        self._gauges_dropped = {}
        self._fork_baseline = None
        self._pid = os.getpid()
        with self._lock:
            counters, histograms = self._counters.copy(), self._histograms.copy()
            try:
                self._read(counters, histograms, record=False)
            except Exception:  # the child then starts from the parent's last read
                logger.exception("reading the prometheus_client registry "
                                  "after fork failed")
                return
            self._counters, self._histograms = counters, histograms


def bridge_prometheus(agent: Agent, *, families: Choice, registry: Any = None,
                      labels: Optional[Iterable[str]] = None, prefix: str = "",
                      max_series: Optional[int] = None) -> PrometheusBridge:
    """Ship the chosen families of ``registry`` (prometheus_client's default one unless
    given) through ``agent``: ``families`` is a list of family names or a predicate on the
    name; ``labels`` an allowlist of label names (the rest are added up); ``prefix`` goes in
    front of every name; ``max_series`` limits each metric's series as for native metrics
    (the agent's limit unless given). See the module docstring for what each type becomes.
    """
    return PrometheusBridge(agent, families=families, registry=registry, labels=labels,
                            prefix=prefix, max_series=max_series)


def _chooser(families: Choice) -> Callable[[str], bool]:
    if callable(families):
        return families
    if isinstance(families, str):
        raise TypeError(f"families must be a list of names or a predicate, not the string "
                        f"{families!r}; write families=[{families!r}]")
    names = frozenset(families)
    return names.__contains__


def _same(last: Optional[float], value: float) -> bool:
    """Whether ``value`` is the one last seen (NaN is the same as NaN)."""
    return last is not None and (last == value or (last != last and value != value))


def _label_key(labels: Dict[str, Any], without: str = "") -> LabelKey:
    """A sample's labels (all but ``without``) as a key that does not depend on the order
    the source declared them in: the same series re-declared is the same key."""
    return tuple(sorted((name, str(value)) for name, value in labels.items()
                        if name != without))


def _per_bucket(cumulative: List[float]) -> List[int]:
    """Cumulative bucket counts (``le`` order, +Inf last) as counts per bucket."""
    result, previous = [], 0
    for count in cumulative:
        now = int(count)
        result.append(max(now - previous, 0))
        previous = max(now, previous)
    return result


def _call(ref: Callable[[], Optional[PrometheusBridge]],
          method: Callable[[PrometheusBridge], None]) -> None:
    bridge = ref()
    if bridge is not None:
        method(bridge)
