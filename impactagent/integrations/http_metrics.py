"""The two metrics every web middleware records, and how a request becomes their labels.

``http_server_requests_total`` (a counter) and ``http_server_request_duration_seconds`` (a
histogram), both labelled by ``method``, ``route`` and ``status_class``:

- ``method``: the HTTP method, or ``other`` for anything non-standard (a client can send any
  word there; each must not become a series);
- ``route``: the route *template* (``/users/{id}``), never the raw path, which would make a
  series per user; ``unmatched`` when the framework did not say (see the middlewares);
- ``status_class``: ``2xx``, ``3xx``, ``4xx``, ``5xx`` (``5xx`` when the app raised).

Both can also carry flag labels (``flags=``), filled from the request's flag scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from ..core.flag_context import state_of

if TYPE_CHECKING:  # the agent is imported to type the seam, not to run it
    from ..agent import Agent

#: Where an app or framework hook puts the matched route template for the middleware:
#: ``environ[ROUTE_KEY]`` in WSGI, ``scope[ROUTE_KEY]`` in ASGI.
ROUTE_KEY = "impactagent.route"
UNMATCHED = "unmatched"

#: Latency buckets in seconds, from a cache hit to a slow page.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                           "CONNECT", "TRACE")}
_STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}
_LABELS = ("method", "route", "status_class")


class HttpMetrics:
    """Defines the request metrics on an agent and records one request at a time."""

    def __init__(self, agent: Agent, *, prefix: str = "http_server",
                 buckets: Sequence[float] = HTTP_BUCKETS, flags: Sequence[str] = ()) -> None:
        self.requests = agent.counter(f"{prefix}_requests_total", "HTTP requests served",
                                      labels=_LABELS, flags=flags)
        self.duration = agent.histogram(f"{prefix}_request_duration_seconds",
                                        "Time to serve an HTTP request, in seconds",
                                        labels=_LABELS, buckets=buckets, flags=flags)
        self.flags = tuple(flags)
        # A label set (flag states included) always maps to the same two series: cache the
        # pair, and a request costs one dict lookup. Bounded like the series themselves.
        self._pairs: Dict[Tuple[str, ...], Tuple[Any, Any]] = {}

    def record(self, method: str, route: Optional[str], status: int, seconds: float) -> None:
        """Count one request and observe its duration."""
        key: Tuple[str, ...] = (_METHODS.get(method, "other"), route or UNMATCHED,
                                _STATUS_CLASSES.get(status, "other"))
        if self.flags:
            # The request's flag states, read once for both metrics.
            key += tuple([state_of(flag) for flag in self.flags])
        pair = self._pairs.get(key)
        if pair is None:
            # The plain lookup: the flag states are in the key already.
            pair = (self.requests.series_of(*key), self.duration.series_of(*key))
            if len(self._pairs) < 4 * self.requests.max_series:
                self._pairs[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)
