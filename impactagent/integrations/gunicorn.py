"""gunicorn: close each worker's agent as the worker leaves, with a hook from the package.

Nothing is needed for the fork itself: each worker's agent resets itself when gunicorn forks
it (zero counts, its own connection id, its own flusher), with ``--preload`` or without, and
a worker's normal exit flushes its last window (``atexit``). :func:`worker_exit` adds a
close when a worker leaves (a restart, ``max_requests``, a scale-down, SIGTERM to the
master) that gunicorn's log shows, with what it delivered. Name your agent in
``IMPACTAGENT_AGENT`` as ``module:attribute`` (``shop:agent``), then either use this module
as gunicorn's config::

    IMPACTAGENT_AGENT=shop:agent gunicorn -c python:impactagent.integrations.gunicorn shop:app

or import the hook into your own ``gunicorn.conf.py``::

    from impactagent.integrations.gunicorn import worker_exit  # noqa: F401 (a gunicorn hook)

Keep gunicorn's ``graceful_timeout`` (30 s by default) above the agent's ``shutdown_timeout``
(5 s), or gunicorn kills the worker before its agent has closed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["AGENT_VARIABLE", "worker_exit"]

#: The environment variable naming the app's agent, as ``module:attribute``.
AGENT_VARIABLE = "IMPACTAGENT_AGENT"


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit`` hook: close the worker's agent and log what it delivered.

    The agent is looked up in the modules this worker already imported: a worker that never
    loaded the app has nothing to close, and nothing is imported at exit."""
    reference = os.environ.get(AGENT_VARIABLE, "")
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        server.log.warning("impactagent: set %s to where your agent is, as module:attribute "
                           "(e.g. shop:agent), for worker_exit to close it", AGENT_VARIABLE)
        return
    found: Any = sys.modules.get(module_name)
    for name in attribute.split("."):
        found = getattr(found, name, None)
    if found is None:
        return
    result = found.close()
    server.log.info("impactagent: worker %s closed its agent: ok=%s, %s events delivered",
                    worker.pid, result.ok, result.delivered_events)
