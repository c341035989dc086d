"""An ASGI middleware that counts and times every HTTP request, and scopes its flags.

The route label is ``scope["impactagent.route"]``, ``scope["route"]`` as Starlette and
FastAPI leave it, or ``route=lambda scope: ...``; else ``unmatched``. Lifespan and websocket
traffic pass through.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, MutableMapping

from ..core.flag_context import close_scope, open_scope
from .http_metrics import ROUTE_KEY, Middleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_perf_counter = time.perf_counter


class ImpactMiddleware(Middleware[ASGIApp]):
    """Wrap an ASGI app: ``app = ImpactMiddleware(app, agent)``, or with Starlette and
    FastAPI ``app.add_middleware(ImpactMiddleware, agent=agent)``."""

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
                route = scope.get(ROUTE_KEY)
                if route is None:
                    route = getattr(scope.get("route"), "path", None)  # Starlette, FastAPI
                if route is None and self.route is not None:
                    route = self.route(scope)
                self.metrics.record(scope.get("method", ""), route, status, _perf_counter() - start)
            finally:
                close_scope(token)
