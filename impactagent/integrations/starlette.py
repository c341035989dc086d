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


def metrics_route(agent: Agent, path: str = "/metrics") -> Any:
    """A route serving the Prometheus scrape at exactly ``path`` (``app.mount`` would
    redirect ``/metrics`` to ``/metrics/``)."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def metrics(request: Any) -> Any:
        body, content_type = scrape(agent, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    return Route(path, metrics, methods=["GET"], include_in_schema=False)
