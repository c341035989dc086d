"""impactagent: report feature-flag usage and impact metrics to Unleash and Prometheus.

>>> import impactagent
>>> agent = impactagent.Agent(app_name="shop", environment="production")
>>> agent.counter("checkout_total", "Completed checkouts").inc()
"""

from typing import TYPE_CHECKING, Any, Dict, List

from ._version import __version__

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on use
    from .agent import Agent
    from .agent_statistics import Statistics
    from .core.charts import Chart, ChartConfig
    from .core.counter import Counter, CounterChild
    from .core.flag_context import NOT_EVALUATED, flag_scope, flag_states
    from .core.flags import FlagCounts, ToggleDelta
    from .core.gauge import Gauge, GaugeChild
    from .core.histogram import DEFAULT_BUCKETS, Histogram, HistogramChild
    from .core.payload import (
        Identity,
        Payload,
        build_payloads,
        count_events,
        environment_from_token,
        split_payload,
    )
    from .core.recorder import Recorder
    from .core.registry import MetricRegistry
    from .core.snapshot import MetricDelta, Snapshot
    from .core.statistics import DropCounter

# Where each public name lives, imported on first use: the ``impactagent`` command starts
# without the agent, its delivery and ``requests``.
_WHERE: Dict[str, str] = {
    "Agent": ".agent",
    "Statistics": ".agent_statistics",
    "Chart": ".core.charts", "ChartConfig": ".core.charts",
    "Counter": ".core.counter", "CounterChild": ".core.counter",
    "NOT_EVALUATED": ".core.flag_context", "flag_scope": ".core.flag_context",
    "flag_states": ".core.flag_context",
    "FlagCounts": ".core.flags", "ToggleDelta": ".core.flags",
    "Gauge": ".core.gauge", "GaugeChild": ".core.gauge",
    "DEFAULT_BUCKETS": ".core.histogram", "Histogram": ".core.histogram",
    "HistogramChild": ".core.histogram",
    "Identity": ".core.payload", "Payload": ".core.payload",
    "build_payloads": ".core.payload", "count_events": ".core.payload",
    "environment_from_token": ".core.payload", "split_payload": ".core.payload",
    "Recorder": ".core.recorder",
    "MetricRegistry": ".core.registry",
    "MetricDelta": ".core.snapshot", "Snapshot": ".core.snapshot",
    "DropCounter": ".core.statistics",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'impactagent' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # the next use is a plain global lookup
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "DEFAULT_BUCKETS", "NOT_EVALUATED", "Agent", "Chart", "ChartConfig", "Counter", "CounterChild",
    "DropCounter", "FlagCounts", "Gauge", "GaugeChild", "Histogram", "HistogramChild", "Identity",
    "MetricDelta", "MetricRegistry", "Payload", "Recorder", "Snapshot", "Statistics",
    "ToggleDelta", "__version__", "build_payloads", "count_events", "environment_from_token",
    "flag_scope", "flag_states", "split_payload"
]
