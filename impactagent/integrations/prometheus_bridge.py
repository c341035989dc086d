"""Ship chosen ``prometheus_client`` metrics to Unleash as impact metrics::

    bridge_prometheus(agent, families=["http_requests"])        # by name
    bridge_prometheus(agent, families=lambda name: name.startswith("shop_"),
                      labels=["route"])                          # by predicate, one label

Every agent collect first records a counter's increase, a gauge's value when it changed and
a histogram's added counts; other types, the agent's own views and its names are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ..core.threads import weak_hook
from ..prometheus.collector import is_agent_view
from ._bridged import Bridged, BridgedFamilies, CounterReadings, GaugeReadings, HistogramReadings

if TYPE_CHECKING:
    from ..agent import Agent

logger = logging.getLogger(__name__)

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
    """Reads chosen families of a ``prometheus_client`` registry into an agent's metrics at
    the start of every collect, until :meth:`close`."""

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
        self._gauges = GaugeReadings()
        self._pid = os.getpid()
        self._fork_baseline: Optional[Tuple[CounterReadings, HistogramReadings]] = None
        agent.recorder.add_collect_hook(self.read)
        agent.follow_fork(self)
        os.register_at_fork(before=weak_hook(self._before_fork),
                            after_in_parent=weak_hook(self._after_fork),
                            after_in_child=weak_hook(self._in_child))

    @property
    def refused(self) -> Dict[str, str]:
        """Chosen families that are not sent, by name, with the reason."""
        return dict(self._native.refused)

    def read(self) -> None:
        """Record what changed in the chosen families since the last read."""
        with self._lock:
            self._read(self._counters, self._histograms, record=True)

    def close(self) -> None:
        """Stop reading: what was read is still sent; later changes are not."""
        with contextlib.suppress(ValueError):  # already closed
            self._agent.recorder.remove_collect_hook(self.read)

    def _read(self, counters: CounterReadings, histograms: HistogramReadings, *,
              record: bool) -> None:
        gauges: Dict[Any, float] = {}
        for metric in self._registry.collect():
            if is_agent_view(metric):
                # The agent's own totals: reading them back would send them again.
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
                self._native.refuse(name, _REFUSED_TYPES.get(metric.type, f"type {metric.type!r}"))
        self._gauges.set_changed(gauges)

    def _counter(self, metric: Any, readings: CounterReadings, record: bool) -> None:
        names, series = _by_series(metric)
        if names is None:
            return  # no series yet
        bridged = self._native.family("counter", metric.name, metric.documentation, names,
                                      native=metric.name + "_total") if record else None
        for key, found in series.items():
            if "_total" not in found:
                continue
            delta = readings.delta((metric.name, key), found["_total"], found.get("_created"))
            if bridged is not None and delta:
                self._native.count(metric.name, bridged, dict(key), delta)

    def _histogram(self, metric: Any, readings: HistogramReadings, record: bool) -> None:
        names, series = _by_series(metric, without="le")
        if names is None:
            return
        bridged: Optional[Bridged] = None
        for key, found in series.items():
            cumulative = sorted(found.get("_bucket", ()))
            if not cumulative:
                continue
            bounds = tuple(le for le, _ in cumulative if not math.isinf(le))
            counts = _per_bucket([c for _, c in cumulative])
            added = readings.delta((metric.name, key), counts, found.get("_sum", 0.0),
                                   found.get("_created"))
            if not record:
                continue
            if bridged is None:
                bridged = self._native.family("histogram", metric.name,
                                              metric.documentation, names, buckets=bounds)
                if bridged is None:
                    return
            values = tuple(value for _, value in key)
            if self._native.fits(metric.name, bridged, bounds, f"series {values}") and added:
                self._native.add_counts(metric.name, bridged, dict(key), added)

    def _gauge(self, metric: Any, gauges: Dict[Any, float]) -> None:
        names: Optional[List[str]] = None
        bridged: Optional[Bridged] = None
        for sample in metric.samples:
            if names is None:
                names = list(sample.labels)
                bridged = self._native.family("gauge", metric.name, metric.documentation, names)
            if bridged is None:
                return
            key = _label_key(sample.labels)
            self._gauges.add(self._native, metric.name, bridged, (metric.name, key), dict(key),
                             sample.value, gauges)

    def _before_fork(self) -> None:
        # Held across the fork (released in both processes after it): no read in between.
        self._lock.acquire()
        try:
            self._fork_baseline = self._baseline()
        except Exception:  # the fork goes on; the child then starts from the last read
            self._fork_baseline = None

    def _after_fork(self) -> None:
        self._fork_baseline = None
        self._lock.release()

    def _in_child(self) -> None:
        baseline, self._fork_baseline = self._fork_baseline, None
        self._start_child()
        if baseline is not None:
            self._counters, self._histograms = baseline

    def _start_child(self) -> None:
        # A new lock (a parent thread may have held the old one at the fork); gauges unset.
        self._lock = threading.Lock()
        self._gauges = GaugeReadings()
        self._pid = os.getpid()

    def after_fork(self) -> None:
        """In a child forked without Python's hooks: start from the registry's totals now
        (a no-op where the fork hook ran)."""
        if os.getpid() == self._pid:
            return
        self._fork_baseline = None
        self._start_child()
        with self._lock:
            try:
                self._counters, self._histograms = self._baseline()
            except Exception:  # the child then starts from the parent's last read
                logger.exception("reading the prometheus_client registry after fork failed")

    def _baseline(self) -> Tuple[CounterReadings, HistogramReadings]:
        """The readings as of the registry's totals now, recording nothing."""
        counters, histograms = CounterReadings(self._counters), HistogramReadings(self._histograms)
        self._read(counters, histograms, record=False)
        return counters, histograms


def bridge_prometheus(agent: Agent, *, families: Choice, registry: Any = None,
                      labels: Optional[Iterable[str]] = None, prefix: str = "",
                      max_series: Optional[int] = None) -> PrometheusBridge:
    """Ship the chosen families of ``registry`` (the default one unless given) through
    ``agent``: ``families`` are names or a predicate, ``labels`` an allowlist of label names,
    ``prefix`` goes before every name."""
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


def _label_key(labels: Dict[str, Any], without: str = "") -> LabelKey:
    """A sample's labels (all but ``without``) as a key independent of their order."""
    return tuple(sorted((name, str(value)) for name, value in labels.items() if name != without))


def _by_series(metric: Any, without: str = "") -> Tuple[Optional[List[str]], Dict[LabelKey, Any]]:
    """A family's label names (its first sample's) and its samples by series, then suffix."""
    names: Optional[List[str]] = None
    series: Dict[LabelKey, Dict[str, Any]] = {}
    for sample in metric.samples:
        if names is None:
            names = [n for n in sample.labels if n != without]
        found = series.setdefault(_label_key(sample.labels, without), {})
        suffix = sample.name[sample.name.rfind("_"):]
        if suffix == "_bucket":
            found.setdefault(suffix, []).append((float(sample.labels["le"]), sample.value))
        else:
            found[suffix] = sample.value
    return names, series


def _per_bucket(cumulative: List[float]) -> List[int]:
    """Cumulative bucket counts (``le`` order, +Inf last) as counts per bucket."""
    result, previous = [], 0
    for count in cumulative:
        now = int(count)
        result.append(max(now - previous, 0))
        previous = max(now, previous)
    return result
