"""FastAPI with impactagent: request metrics by route template, a flag, and /metrics.

Run it: ``pip install -e ".[examples,prometheus]"`` then
``uvicorn examples.fastapi_app:app --port 8000``, and
``curl -X POST localhost:8000/checkout/beta-ann; curl localhost:8000/metrics``.
"""

from __future__ import annotations

from fastapi import FastAPI

from examples._shared import FLAGS, instrumented
from impactagent.integrations import asgi

shop = instrumented("shop-fastapi")
agent = shop.agent

api = FastAPI()
# FastAPI leaves the matched route in the ASGI scope: the route label is "/checkout/{user}".
api.add_middleware(asgi.ImpactMiddleware, agent=agent, flags=FLAGS)


@api.post("/checkout/{user}")
def checkout(user: str) -> dict:
    # A sync endpoint runs in a worker thread; the flag it decides still labels the request.
    variant = shop.new_checkout(user)
    shop.checkouts.inc()
    return {"user": user, "new_checkout": variant}


@api.get("/health")
async def health() -> dict:
    return {"ok": True}


prometheus = agent.prometheus_asgi_app()


async def app(scope, receive, send) -> None:
    """The ASGI entry point: /metrics for Prometheus, everything else (lifespan too) to
    FastAPI. Not ``api.mount("/metrics", ...)``: a mount only matches below its path, so
    ``GET /metrics`` would be answered with a redirect to ``/metrics/``."""
    if scope["type"] == "http" and scope["path"].rstrip("/") == "/metrics":
        await prometheus(scope, receive, send)
    else:
        await api(scope, receive, send)
