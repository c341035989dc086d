"""Impact-metric charts as code, declared where the metric is defined and created or updated
by ``impactagent charts apply``. Every field is checked when the chart is made (a typo fails in
your code, not as a 400 at deploy time); the id is derived from what the chart is (scope,
metric, title), not how it is drawn, so applying twice updates the same chart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import ulid

from ._family import MetricFamily

TIME_RANGES = ("hour", "day", "week", "month")
AGGREGATIONS = ("rps", "count", "avg", "sum", "p50", "p95", "p99")
Y_AXIS_MINS = ("auto", "zero")
SOURCES = ("internal", "external")
STEPS = ("1m", "15m", "3h", "1d")
MODES = ("read", "write")
_PERCENTILES = ("p50", "p95", "p99")
#: Labels every sample carries (the agent's) or the server adds; selectable on any metric.
_ALWAYS_SELECTABLE = ("appName", "environment", "origin")


def _choice(field_name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"chart {field_name} must be one of {', '.join(allowed)}; "
                         f"got {value!r}")
    chosen: str = value
    return chosen


@dataclass(frozen=True)
class Chart:
    """How to draw one metric: ``agent.counter(..., chart=Chart(...))``.

    >>> Chart(time_range="day", aggregation="p95").aggregation
    'p95'
    >>> Chart(time_range="year", aggregation="rps")
    Traceback (most recent call last):
    ValueError: chart time_range must be one of hour, day, week, month; got 'year'

    ``flag`` (with ``project``) puts the chart next to that flag.
    """

    time_range: str = "day"
    aggregation: str = "rps"
    y_axis_min: str = "auto"
    label_selectors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    title: str | None = None
    source: str = "internal"
    flag: str | None = None
    project: str = "default"

    def __post_init__(self) -> None:
        _choice("time_range", self.time_range, TIME_RANGES)
        _choice("aggregation", self.aggregation, AGGREGATIONS)
        _choice("y_axis_min", self.y_axis_min, Y_AXIS_MINS)
        _choice("source", self.source, SOURCES)
        if not isinstance(self.label_selectors, Mapping) or not all(
                isinstance(k, str) and not isinstance(v, str)
                and all(isinstance(x, str) for x in v)
                for k, v in self.label_selectors.items()):
            raise ValueError("chart label_selectors must map label names to lists of "
                             f"values, e.g. {{'environment': ['production']}}; "
                             f"got {self.label_selectors!r}")
        if self.title is not None and not isinstance(self.title, str):
            raise TypeError(f"chart title must be a str, got {type(self.title).__name__}")
        if self.flag is not None and (not isinstance(self.flag, str) or not self.flag):
            raise TypeError(f"chart flag must be a flag name, got {self.flag!r}")

    def for_metric(self, metric: MetricFamily[Any]) -> ChartConfig:
        """The configuration of this chart for ``metric``; raises if it cannot draw it."""
        if self.aggregation in _PERCENTILES and metric.kind != "histogram":
            raise ValueError(f"chart of {metric.kind} {metric.name!r}: {self.aggregation} is a "
                             "percentile, which only a histogram has; use rps or count for a "
                             "counter, avg or sum for a gauge")
        selectable = set(metric.label_names) | set(_ALWAYS_SELECTABLE)
        unknown = sorted(set(self.label_selectors) - selectable)
        if unknown:
            raise ValueError(f"chart of {metric.kind} {metric.name!r} selects unknown labels "
                             f"{unknown}; it has {sorted(selectable)}")
        scope = ChartScope(self.project, self.flag) if self.flag else INSTANCE
        metric_name = f"unleash_{metric.kind}_{metric.name}"
        return ChartConfig(
            metric_name=metric_name, time_range=self.time_range, aggregation=self.aggregation,
            y_axis_min=self.y_axis_min,
            label_selectors={k: list(v) for k, v in sorted(self.label_selectors.items())},
            title=self.title, source=self.source, scope=scope,
            id=stable_id(scope, metric_name, self.title))


@dataclass(frozen=True)
class ChartScope:
    """Where a chart lives: the instance (``flag`` None) or next to one flag."""

    project: str | None = None
    flag: str | None = None

    @property
    def path(self) -> str:
        if self.flag is None:
            return "/api/admin/impact-metrics/config"
        return f"/api/admin/projects/{self.project}/features/{self.flag}/impact-metrics/config"

    def __str__(self) -> str:
        return "instance" if self.flag is None else f"flag {self.project}/{self.flag}"


INSTANCE = ChartScope()


@dataclass(frozen=True)
class ChartConfig:
    """One chart configuration: the request the admin API takes, and what it answers."""

    metric_name: str
    time_range: str
    aggregation: str
    y_axis_min: str = "auto"
    label_selectors: Mapping[str, list[str]] = field(default_factory=dict)
    title: str | None = None
    source: str = "internal"
    id: str | None = None
    scope: ChartScope = INSTANCE
    # Only in answers:
    display_name: str | None = None
    step: str | None = None
    mode: str | None = None

    def request(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "metricName": self.metric_name, "timeRange": self.time_range,
            "yAxisMin": self.y_axis_min, "aggregationMode": self.aggregation,
            "labelSelectors": {k: list(v) for k, v in self.label_selectors.items()},
            "source": self.source,
        }
        if self.id is not None:
            body["id"] = self.id
        if self.title is not None:
            body["title"] = self.title
        return body

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], scope: ChartScope = INSTANCE
                    ) -> ChartConfig:
        """Read one configuration as the server returns it, checking every enum."""
        try:
            return cls(
                metric_name=str(answer["metricName"]),
                time_range=_choice("timeRange", answer["timeRange"], TIME_RANGES),
                aggregation=_choice("aggregationMode", answer["aggregationMode"],
                                    AGGREGATIONS),
                y_axis_min=_choice("yAxisMin", answer.get("yAxisMin", "auto"), Y_AXIS_MINS),
                label_selectors={k: list(v) for k, v in
                                 (answer.get("labelSelectors") or {}).items()},
                title=answer.get("title"), source=_choice(
                    "source", answer.get("source", "internal"), SOURCES),
                id=answer.get("id"), scope=scope,
                display_name=answer.get("displayName"),
                step=None if answer.get("step") is None else _choice(
                    "step", answer["step"], STEPS),
                mode=None if answer.get("mode") is None else _choice(
                    "mode", answer["mode"], MODES),
            )
        except KeyError as missing:
            raise ValueError(f"chart configuration without {missing}: {dict(answer)!r}"
                             ) from None

    def differences(self, other: ChartConfig) -> list[tuple[str, Any, Any]]:
        """``(field, ours, theirs)`` for every request field that differs from ``other``."""
        ours, theirs = self.request(), other.request()
        return [(key, ours.get(key), theirs.get(key)) for key in ours
                if key != "id" and ours.get(key) != theirs.get(key)]


def stable_id(scope: ChartScope, metric_name: str, title: str | None) -> str:
    """A ULID computed from what a chart is: the same chart gets the same id every time."""
    what = json.dumps([scope.project, scope.flag, metric_name, title or ""])
    digest = hashlib.sha256(what.encode()).digest()
    return str(ulid.from_bytes(digest[:16]))
