"""Flask with impactagent: request metrics by route template, a flag, and /metrics.

Run it: ``pip install -e ".[examples,prometheus]"`` then ``python -m examples.flask_app``,
and ``curl -X POST localhost:8000/checkout/beta-ann; curl localhost:8000/metrics``.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from examples._shared import FLAGS, instrumented
from impactagent.integrations import wsgi
from impactagent.integrations.http_metrics import ROUTE_KEY

shop = instrumented("shop-flask")
agent = shop.agent

app = Flask(__name__)


@app.before_request
def name_the_route() -> None:
    # Flask knows the matched rule ("/checkout/<user>"); hand it to the middleware, which
    # shares this environ. The raw path would make a series per user.
    if request.url_rule is not None:
        request.environ[ROUTE_KEY] = request.url_rule.rule


@app.post("/checkout/<user>")
def checkout(user: str):
    variant = shop.new_checkout(user)
    shop.checkouts.inc()  # labelled with the flag's state in this request
    return {"user": user, "new_checkout": variant}


app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    wsgi.ImpactMiddleware(app.wsgi_app, agent, flags=FLAGS),
    {"/metrics": agent.prometheus_wsgi_app()},
)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8000)
