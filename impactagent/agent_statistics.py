"""The shape of :meth:`impactagent.Agent.statistics`: plain values, ready for JSON."""

from __future__ import annotations

from typing import Dict, Optional, TypedDict


class RecordedStatistics(TypedDict):
    """What was recorded since the agent was made."""

    counter_increments: int  # the sum of every counter's increments (inc(5) adds 5)
    histogram_observations: int
    gauge_series: int
    flag_evaluations: int  # flag evaluations counted (yes and no)


class RegistrationStatistics(TypedDict):
    """How the instance's registration (``POST {url}/client/register``) went."""

    enabled: bool  # register=True and a transport that can
    registered: bool
    attempts: int  # registration POSTs made
    failures: Dict[str, int]  # failed registrations, by HTTP status ("404") or error
    stopped_by_status: Optional[int]  # the 400, 401 or 403 that ended registering, or None
    last_error_detail: Optional[str]


class DeliveryStatistics(TypedDict):
    """How sending went."""

    attempts: int  # metrics POSTs made
    retries: int  # POSTs that repeated a failed one
    delivered_bodies: int  # bodies a server acknowledged (2xx)
    delivered_events: int  # increments, observations and evaluations in those bodies
    #: Events sent again after a POST got no answer: a server may have counted them twice.
    possibly_duplicated_events: int
    empty_windows: int  # flushes whose window held nothing, so sent nothing
    #: Failed POSTs, by HTTP status (``"503"``) or error (``"connection refused"``).
    failures: Dict[str, int]
    last_success: Optional[str]  # when a body was last delivered (ISO 8601, UTC), or None
    last_error: Optional[str]  # when a POST last failed (ISO 8601, UTC), or None
    last_error_detail: Optional[str]  # the last failure ("HTTP 503"), or None
    registration: RegistrationStatistics


class SpoolStatistics(TypedDict):
    """The unsent bodies kept on disk (with a ``spool_dir``)."""

    files: int
    bytes: int


class _EveryAgent(TypedDict):
    recorded: RecordedStatistics
    pending_events: int  # recorded and not yet taken by a flush, or given back by one
    #: Events dropped, by reason (each one of :data:`impactagent.core.statistics.DROP_REASONS`).
    dropped: Dict[str, int]
    series: int  # impact-metric series that exist now
    flags: int
    collect_hook_errors: int  # times a collect hook (a bridge) raised; each is logged
    delivery: DeliveryStatistics


class Statistics(_EveryAgent, total=False):
    """What :meth:`impactagent.Agent.statistics` returns; the last two keys only for an
    agent that has what they describe."""

    sending_stopped_by_status: Optional[int]  # the 401 or 403 that stopped sending, or None
    spool: SpoolStatistics


__all__ = ["DeliveryStatistics", "RecordedStatistics", "RegistrationStatistics",
           "SpoolStatistics", "Statistics"]
