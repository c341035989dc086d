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

from typing import Any, Dict, Optional, Sequence, Tuple

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

    def __init__(self, agent: Any, *, prefix: str = "http_server",
                 buckets: Sequence[float] = HTTP_BUCKETS, flags: Sequence[str] = ()) -> None:
        self.requests = agent.counter(f"{prefix}_requests_total", "HTTP requests served",
                                      labels=_LABELS, flags=flags)
        self.duration = agent.histogram(f"{prefix}_request_duration_seconds",
                                        "Time to serve an HTTP request, in seconds",
                                        labels=_LABELS, buckets=buckets, flags=flags)
        # Without flags a label set always maps to the same two series: cache the pair and
        # a request costs one dict lookup. With flags the series depend on the context.
        self._pairs: Optional[Dict[Tuple[str, str, str], Tuple[Any, Any]]] = (
            None if flags else {})

    def record(self, method: str, route: Optional[str], status: int, seconds: float) -> None:
        """Count one request and observe its duration."""
        key = (_METHODS.get(method, "other"), route or UNMATCHED,
               _STATUS_CLASSES.get(status, "other"))
        pairs = self._pairs
        if pairs is None:
            self.requests.labels(*key).inc()
            self.duration.labels(*key).observe(seconds)
            return
        pair = pairs.get(key)
        if pair is None:
            pair = (self.requests.labels(*key), self.duration.labels(*key))
            if len(pairs) < 4 * self.requests.max_series:  # bounded like the series
                pairs[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)
