"""The shape of :meth:`impactagent.Agent.statistics`: plain values, ready for JSON."""

from __future__ import annotations

from typing import Dict, Optional, TypedDict


class RecordedStatistics(TypedDict):
    """What was recorded since the agent was made."""

    counter_increments: int
    """The sum of every counter's increments (``inc(5)`` adds 5)."""
    histogram_observations: int
    gauge_series: int
    flag_evaluations: int
    """Flag evaluations counted (yes and no)."""


class RegistrationStatistics(TypedDict):
    """How the instance's registration (``POST {url}/client/register``) went."""

    enabled: bool
    """Whether the agent registers at all (``register=True`` and a transport that can)."""
    registered: bool
    attempts: int
    """Registration POSTs made."""
    failures: Dict[str, int]
    """Failed registrations, by HTTP status (``"404"``) or error."""
    stopped_by_status: Optional[int]
    """The status (400, 401 or 403) after which registering was given up, or ``None``."""
    last_error_detail: Optional[str]


class DeliveryStatistics(TypedDict):
    """How sending went."""

    attempts: int
    """Metrics POSTs made."""
    retries: int
    """POSTs that repeated a failed one."""
    delivered_bodies: int
    """Bodies a server acknowledged (2xx)."""
    delivered_events: int
    """Events (increments, observations, evaluations) in the acknowledged bodies."""
    possibly_duplicated_events: int
    """Events sent again after a POST got no answer: a server may have counted them twice."""
    empty_windows: int
    """Flushes whose window held nothing, so sent nothing."""
    failures: Dict[str, int]
    """Failed POSTs, by HTTP status (``"503"``) or error (``"connection refused"``)."""
    last_success: Optional[str]
    """When a body was last delivered (ISO 8601, UTC), or ``None``."""
    last_error: Optional[str]
    """When a POST last failed (ISO 8601, UTC), or ``None``."""
    last_error_detail: Optional[str]
    """The last failure (``"HTTP 503"``, ``"connection refused"``), or ``None``."""
    registration: RegistrationStatistics


class SpoolStatistics(TypedDict):
    """The unsent bodies kept on disk (with a ``spool_dir``)."""

    files: int
    """Bodies in the spool."""
    bytes: int


class _EveryAgent(TypedDict):
    recorded: RecordedStatistics
    pending_events: int
    """Events recorded and not yet taken by a flush, or given back by one that failed."""
    dropped: Dict[str, int]
    """Events dropped, by reason (every reason is in
    :data:`impactagent.core.statistics.DROP_REASONS`); empty when nothing was lost."""
    series: int
    """Impact-metric series that exist now."""
    flags: int
    collect_hook_errors: int
    """Times a collect hook (a bridge) raised; each is logged, the collect goes on."""
    delivery: DeliveryStatistics


class Statistics(_EveryAgent, total=False):
    """What :meth:`impactagent.Agent.statistics` returns; the last two keys only for an
    agent that has what they describe."""

    sending_stopped_by_status: Optional[int]
    """With a url or a transport: the status (401 or 403) that stopped sending, or None."""
    spool: SpoolStatistics


__all__ = ["DeliveryStatistics", "RecordedStatistics", "RegistrationStatistics",
           "SpoolStatistics", "Statistics"]
