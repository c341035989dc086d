"""FastAPI: the ASGI middleware of :mod:`impactagent.integrations.asgi` (FastAPI is Starlette
underneath, and leaves the matched route template, ``/checkout/{user}``, in the ASGI scope)::

    from impactagent.integrations.fastapi import ImpactMiddleware, metrics_route

    app = FastAPI()
    app.add_middleware(ImpactMiddleware, agent=agent, flags=["new-checkout"])
    app.router.routes.append(metrics_route(agent))  # GET /metrics, no redirect

Each request runs in its own flag scope, shared with the worker thread a sync endpoint runs
in, so a flag it decides labels its request.
"""

from .starlette import ImpactMiddleware, metrics_route

__all__ = ["ImpactMiddleware", "metrics_route"]
