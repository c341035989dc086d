"""A WSGI app for gunicorn --preload: the agent is created and started in the master.

Each request records one flag evaluation and one counter increment; the workers are forked
from the master after the agent exists, which is exactly the case that breaks other SDKs.
"""

import os

import impactagent

agent = impactagent.Agent(
    "preload-app",
    url=os.environ["TEST_UNLEASH_URL"],
    api_key="default:development.token",
    flush_interval=0.5,
    request_timeout=2,
).start()
hits = agent.counter("hits_total", "Requests handled", labels=("path",))
# Recorded in the master before the fork: the master sends it, the workers must not.
agent.record_flag("booted", True)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    hits.labels(path=path).inc()
    agent.record_flag("new-checkout", path.endswith("/on"), "blue" if path.endswith("/on")
                      else None)
    body = f"{os.getpid()} {agent.identity.connection_id}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
