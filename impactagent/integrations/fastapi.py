"""FastAPI: the Starlette middleware and scrape route (FastAPI is Starlette underneath)::

    app.add_middleware(ImpactMiddleware, agent=agent, flags=["new-checkout"])
    app.router.routes.append(metrics_route(agent))  # GET /metrics, no redirect
"""

from .starlette import ImpactMiddleware, metrics_route

__all__ = ["ImpactMiddleware", "metrics_route"]
