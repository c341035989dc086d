"""impactagent: report feature-flag usage and impact metrics to Unleash and Prometheus.

>>> import impactagent
>>> agent = impactagent.Agent(app_name="shop", environment="production")
>>> agent.counter("checkout_total", "Completed checkouts").inc()
"""

from ._version import __version__
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

__all__ = [
    "DEFAULT_BUCKETS",
    "NOT_EVALUATED",
    "Agent",
    "Chart",
    "ChartConfig",
    "Counter",
    "CounterChild",
    "DropCounter",
    "FlagCounts",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "Identity",
    "MetricDelta",
    "MetricRegistry",
    "Payload",
    "Recorder",
    "Snapshot",
    "Statistics",
    "ToggleDelta",
    "__version__",
    "build_payloads",
    "count_events",
    "environment_from_token",
    "flag_scope",
    "flag_states",
    "split_payload",
]
