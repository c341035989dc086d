"""impactagent: report feature-flag usage and impact metrics to Unleash and Prometheus.

>>> import impactagent
>>> agent = impactagent.Agent(app_name="shop", environment="production")
>>> agent.counter("checkout_total", "Completed checkouts").inc()
"""

from ._version import __version__
from .agent import Agent
from .charts import Chart, ChartConfig
from .counter import Counter, CounterChild
from .flag_context import NOT_EVALUATED, flag_scope, flag_states
from .flags import FlagCounts, ToggleDelta
from .gauge import Gauge, GaugeChild
from .histogram import DEFAULT_BUCKETS, Histogram, HistogramChild
from .payload import (
    Identity,
    Payload,
    build_payloads,
    count_events,
    environment_from_token,
    split_payload,
)
from .recorder import Recorder
from .registry import MetricRegistry
from .snapshot import MetricDelta, Snapshot
from .statistics import DropCounter

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
    "ToggleDelta",
    "__version__",
    "build_payloads",
    "count_events",
    "environment_from_token",
    "flag_scope",
    "flag_states",
    "split_payload",
]
