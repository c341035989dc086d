"""Starlette: the ASGI middleware and a route serving the Prometheus scrape::

    app = Starlette(routes=[...], middleware=[Middleware(ImpactMiddleware, agent=agent)])
    app.router.routes.append(metrics_route(agent))  # GET /metrics, no redirect
"""

from __future__ import annotations

from typing import Any

from ..agent import Agent
from ._config import scrape
from .asgi import ImpactMiddleware

__all__ = ["ImpactMiddleware", "metrics_route"]


class _ScrapeApp:
    """The scrape as an ASGI app (Starlette hands a function endpoint a Request instead)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        accept = b""
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept = value
        body, content_type = scrape(self.agent, accept.decode("latin-1"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode("latin-1")),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def metrics_route(agent: Agent, path: str = "/metrics") -> Any:
    """A route serving the Prometheus scrape at exactly ``path`` (``app.mount`` would
    redirect ``/metrics`` to ``/metrics/``)."""
    from starlette.routing import Route

    return Route(path, _ScrapeApp(agent), methods=["GET"], include_in_schema=False)
