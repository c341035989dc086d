"""A WSGI app whose every worker answers ``/metrics`` with the sum over all workers.

Each other request counts one hit and one flag evaluation and answers with the worker's
pid. The view's directory comes from ``TEST_VIEW_DIR`` (a test's temporary directory).
"""

import os

import impactagent

agent = impactagent.Agent("workers-app", "test")
hits = agent.counter("hits_total", "Requests handled", labels=("path",))
latency = agent.histogram("work_seconds", "Work per request", buckets=(0.5, 1.0))
view = agent.prometheus_workers(os.environ["TEST_VIEW_DIR"], publish_interval=0.1)
metrics = view.wsgi_app()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/metrics":
        return metrics(environ, start_response)
    hits.labels(path=path).inc()
    latency.observe(0.7)
    agent.record_flag("new-checkout", path.endswith("/on"))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
