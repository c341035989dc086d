"""An ASGI middleware that counts and times every HTTP request, and scopes its flags.

>>> from impactagent import Agent
>>> async def app(scope, receive, send):
...     await send({"type": "http.response.start", "status": 204, "headers": []})
...     await send({"type": "http.response.body", "body": b""})
>>> app = ImpactMiddleware(app, Agent("shop"))

The route label is the matched route template: Starlette and FastAPI leave the matched route
in ``scope["route"]``, which is read after the app has answered. Other apps can set
``scope["impactagent.route"]`` or pass ``route=lambda scope: ...``; without either, requests
are labelled ``unmatched``. Lifespan and websocket traffic pass through untouched.

Each request runs in its own flag scope, shared with the tasks and worker threads the
framework runs it in, so metrics labelled by flags see what this request decided.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, MutableMapping, Optional, Sequence

from ..core.flag_context import close_scope, open_scope
from .http_metrics import HTTP_BUCKETS, ROUTE_KEY, HttpMetrics

if TYPE_CHECKING:  # the agent is imported to type the seam, not to run it
    from ..agent import Agent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_perf_counter = time.perf_counter


class ImpactMiddleware:
    """Wrap an ASGI app: ``app = ImpactMiddleware(app, agent)``, or with Starlette and
    FastAPI ``app.add_middleware(ImpactMiddleware, agent=agent)``."""

    def __init__(self, app: ASGIApp, agent: Agent, *,
                 route: Optional[Callable[[Scope], Optional[str]]] = None,
                 flags: Sequence[str] = (), buckets: Sequence[float] = HTTP_BUCKETS,
                 prefix: str = "http_server") -> None:
        self.app = app
        self.route = route
        self.metrics = HttpMetrics(agent, prefix=prefix, buckets=buckets, flags=flags)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = _perf_counter()
        token = open_scope()
        status = 500  # if the app raises before it answers

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            try:
                self.metrics.record(scope.get("method", ""), self._route_of(scope), status,
                                    _perf_counter() - start)
            finally:
                close_scope(token)

    def _route_of(self, scope: Scope) -> Optional[str]:
        route = scope.get(ROUTE_KEY)
        if route is None:
            route = getattr(scope.get("route"), "path", None)  # Starlette, FastAPI
        if route is None and self.route is not None:
            route = self.route(scope)
        return route
