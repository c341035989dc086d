"""gunicorn settings for an app that uses impactagent: ``gunicorn -c examples/gunicorn.conf.py``.

Nothing is needed for the fork itself: each worker's agent resets itself when gunicorn forks
it (zero counts, its own connection id, its own flusher), with ``preload_app`` or without.
What this file adds is the close when a worker leaves (a restart, ``max_requests``, a
scale-down, SIGTERM to the master): its last window is sent then, within the agent's
``shutdown_timeout``, and the result is logged. Keep ``graceful_timeout`` above that
timeout, or gunicorn kills the worker before its agent has closed.

Point ``IMPACTAGENT_AGENT`` at your agent as ``package.module:attribute`` (for the Flask and
Django integrations: ``impactagent.integrations.django:get_agent`` is a function, so use
the module that holds ``agent = get_agent()``, or your Flask extension's module and
``impact``'s agent, e.g. ``shop.app:agent``).
"""

import os
import sys

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
graceful_timeout = 30  # seconds: longer than the agent's shutdown_timeout (5 by default)

#: Where the app keeps its agent, "package.module:attribute".
IMPACTAGENT_AGENT = os.environ.get("IMPACTAGENT_AGENT", "examples.flask_app:agent")


def worker_exit(server, worker):
    """Close the worker's agent: its last window is sent before the worker is gone."""
    module_name, _, attribute = IMPACTAGENT_AGENT.partition(":")
    # Only an app this worker loaded: a worker that failed to import it has nothing to close.
    agent = getattr(sys.modules.get(module_name), attribute, None)
    if agent is None:
        return
    result = agent.close()
    server.log.info("impactagent: worker %s closed its agent: ok=%s, %s events delivered",
                    worker.pid, result.ok, result.delivered_events)
