"""A Flask app with the impactagent extension, for gunicorn with examples/gunicorn.conf.py.

The flush interval is an hour: what reaches the server was sent by each worker's close."""

import os

from flask import Flask

from impactagent.integrations.flask import ImpactAgent

app = Flask(__name__)
impact = ImpactAgent(app, app_name="shop-gunicorn", url=os.environ["TEST_UNLEASH_URL"],
                     api_key="default:development.token", flush_interval=3600,
                     request_timeout=2, flags=["new-checkout"])
agent = impact.agent


@app.get("/checkout/<user>")
def checkout(user):
    beta = user.startswith("beta-")
    agent.record_flag("new-checkout", beta, "blue" if beta else None)
    return str(os.getpid())
