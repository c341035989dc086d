"""impactagent: report feature-flag usage and impact metrics to Unleash and Prometheus.

>>> import impactagent
>>> agent = impactagent.Agent(app_name="shop", environment="production")
>>> agent.counter("checkout_total", "Completed checkouts").inc()
"""

from typing import TYPE_CHECKING, Any

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
_WHERE = {name: module for module, names in {
    ".agent": "Agent", ".agent_statistics": "Statistics", ".core.charts": "Chart ChartConfig",
    ".core.counter": "Counter CounterChild", ".core.flags": "FlagCounts ToggleDelta",
    ".core.flag_context": "NOT_EVALUATED flag_scope flag_states", ".core.gauge": "Gauge GaugeChild",
    ".core.histogram": "DEFAULT_BUCKETS Histogram HistogramChild", ".core.payload":
        "Identity Payload build_payloads count_events environment_from_token split_payload",
    ".core.recorder": "Recorder", ".core.registry": "MetricRegistry",
    ".core.snapshot": "MetricDelta Snapshot", ".core.statistics": "DropCounter",
}.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'impactagent' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # the next use is a plain global lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "DEFAULT_BUCKETS", "NOT_EVALUATED", "Agent", "Chart", "ChartConfig", "Counter", "CounterChild",
    "DropCounter", "FlagCounts", "Gauge", "GaugeChild", "Histogram", "HistogramChild", "Identity",
    "MetricDelta", "MetricRegistry", "Payload", "Recorder", "Snapshot", "Statistics", "ToggleDelta",
    "__version__", "build_payloads", "count_events", "environment_from_token", "flag_scope",
    "flag_states", "split_payload"]
