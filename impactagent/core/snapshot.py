"""What one collect hands to delivery: a flag window and the impact-metric deltas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, NamedTuple, Tuple

from .flags import ToggleDelta


class MetricDelta(NamedTuple):
    """The samples of one metric in a snapshot (series with nothing new are left out)."""

    family: Any  # Counter | Gauge | Histogram
    samples: Tuple[Any, ...]  # CounterDelta | GaugeValue | HistogramDelta, one per series

    @property
    def name(self) -> str:
        return self.family.name


class Snapshot(NamedTuple):
    """Everything recorded since the last successful send, as deltas.

    Build request bodies from it with :func:`impactagent.build_payloads`; if sending fails,
    give it back with ``restore`` so its counts go out with the next one.
    """

    start: datetime
    stop: datetime
    toggles: Dict[str, ToggleDelta]
    metrics: Tuple[MetricDelta, ...]

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to send."""
        return not self.toggles and not self.metrics
