"""Flask with impactagent: request metrics by route template, a flag, and /metrics.

Run it: ``pip install -e ".[examples,prometheus]"`` then ``python -m examples.flask_app``,
and ``curl -X POST localhost:8000/checkout/beta-ann; curl localhost:8000/metrics``.
"""

from __future__ import annotations

from flask import Flask

from examples._shared import FLAGS, instrumented
from impactagent.integrations.flask import ImpactAgent

shop = instrumented("shop-flask")
agent = shop.agent

app = Flask(__name__)
# The extension labels each request by the rule Flask matched ("/checkout/<user>"), gives it
# a flag scope, and serves the Prometheus scrape.
impact = ImpactAgent(app, agent=agent, flags=FLAGS, metrics_path="/metrics")


@app.post("/checkout/<user>")
def checkout(user: str):
    variant = shop.new_checkout(user)
    shop.checkouts.inc()  # labelled with the flag's state in this request
    return {"user": user, "new_checkout": variant}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8000)
