"""FastAPI with impactagent: request metrics by route template, a flag, and /metrics.

Run it: ``pip install fastapi uvicorn impactagent[prometheus]`` then
``uvicorn examples.fastapi_app:app --port 8000``, and
``curl -X POST localhost:8000/checkout/beta-ann; curl localhost:8000/metrics/``.
"""

from __future__ import annotations

from fastapi import FastAPI

from examples._shared import FLAGS, instrumented
from impactagent import asgi

shop = instrumented("shop-fastapi")
agent = shop.agent

app = FastAPI()
# FastAPI leaves the matched route in the ASGI scope: the route label is "/checkout/{user}".
app.add_middleware(asgi.ImpactMiddleware, agent=agent, flags=FLAGS)
app.mount("/metrics", agent.prometheus_asgi_app())


@app.post("/checkout/{user}")
def checkout(user: str) -> dict:
    # A sync endpoint runs in a worker thread; the flag it decides still labels the request.
    variant = shop.new_checkout(user)
    shop.checkouts.inc()
    return {"user": user, "new_checkout": variant}


@app.get("/health")
async def health() -> dict:
    return {"ok": True}
