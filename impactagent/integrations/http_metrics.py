"""The two metrics every web middleware records, ``http_server_requests_total`` and
``http_server_request_duration_seconds``, by ``method``, ``route`` (the template, never the
raw path, which would make a series per URL) and ``status_class``, and by the request's
flags when ``flags=``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, Optional, Sequence, Tuple, TypeVar

from ..core.flag_context import state_of

if TYPE_CHECKING:
    from ..agent import Agent

App = TypeVar("App")

#: Where an app or framework hook puts the matched route template for the middleware:
#: ``environ[ROUTE_KEY]`` in WSGI, ``scope[ROUTE_KEY]`` in ASGI.
ROUTE_KEY = "impactagent.route"
UNMATCHED = "unmatched"

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
        # A label set always maps to the same two series: one dict lookup per request.
        self._pairs: Dict[Tuple[str, ...], Tuple[Any, Any]] = {}

    def record(self, method: str, route: Optional[str], status: int, seconds: float) -> None:
        """Count one request and observe its duration."""
        key: Tuple[str, ...] = (_METHODS.get(method, "other"), route or UNMATCHED,
                                _STATUS_CLASSES.get(status, "other"))
        if self.flags:
            key += tuple([state_of(flag) for flag in self.flags])
        pair = self._pairs.get(key)
        if pair is None:
            pair = (self.requests.series_of(*key), self.duration.series_of(*key))
            if len(self._pairs) < 4 * self.requests.max_series:
                self._pairs[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)


class Middleware(Generic[App]):
    """What the WSGI and ASGI middlewares share: the app, the ``route=`` rule, the metrics."""

    def __init__(self, app: App, agent: Agent, *,
                 route: Optional[Callable[[Any], Optional[str]]] = None,
                 flags: Sequence[str] = (), buckets: Sequence[float] = HTTP_BUCKETS,
                 prefix: str = "http_server") -> None:
        self.app = app
        self.route = route
        self.metrics = HttpMetrics(agent, prefix=prefix, buckets=buckets, flags=flags)
