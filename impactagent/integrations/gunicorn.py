"""gunicorn: :func:`worker_exit` closes each worker's agent as the worker leaves::

    IMPACTAGENT_AGENT=shop:agent gunicorn -c python:impactagent.integrations.gunicorn shop:app

or import ``worker_exit`` into your ``gunicorn.conf.py``. Keep gunicorn's
``graceful_timeout`` above the agent's ``shutdown_timeout``, or the worker is killed first.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..core.reference import NoSuchAttribute, NotAReference, resolve

__all__ = ["AGENT_VARIABLE", "worker_exit"]

#: The environment variable naming the app's agent, as ``module:attribute``.
AGENT_VARIABLE = "IMPACTAGENT_AGENT"


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit`` hook: close the worker's agent and log what it delivered
    (found among modules already imported: nothing is imported at exit)."""
    try:
        found = resolve(os.environ.get(AGENT_VARIABLE, ""), sys.modules.get)
    except NotAReference:
        server.log.warning("impactagent: set %s to where your agent is, as module:attribute "
                           "(e.g. shop:agent), for worker_exit to close it", AGENT_VARIABLE)
        return
    except NoSuchAttribute:  # in no module imported here: no agent to close
        return
    if found is None:
        return
    result = found.close()
    server.log.info("impactagent: worker %s closed its agent: ok=%s, %s events delivered",
                    worker.pid, result.ok, result.delivered_events)
