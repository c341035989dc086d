"""gunicorn: :func:`worker_exit` closes each worker's agent as the worker leaves::

    IMPACTAGENT_AGENT=shop:agent gunicorn -c python:impactagent.integrations.gunicorn shop:app

or import ``worker_exit`` into your ``gunicorn.conf.py``. Keep gunicorn's
``graceful_timeout`` above the agent's ``shutdown_timeout``, or the worker is killed first.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..agent import Agent
from ..core.reference import AttributeFailed, NoSuchAttribute, NotAReference, resolve

__all__ = ["AGENT_VARIABLE", "worker_exit"]

#: The environment variable naming the app's agent, as ``module:attribute``.
AGENT_VARIABLE = "IMPACTAGENT_AGENT"


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit`` hook: close the worker's agent and log what it delivered
    (found among modules already imported: nothing is imported at exit). A reference that
    names something else is one warning line, not a traceback in gunicorn's log."""
    reference = os.environ.get(AGENT_VARIABLE, "")
    try:
        found = resolve(reference, sys.modules.get)
    except NotAReference:
        server.log.warning("impactagent: set %s to where your agent is, as module:attribute "
                           "(e.g. shop:agent), for worker_exit to close it", AGENT_VARIABLE)
        return
    except NoSuchAttribute:  # in no module imported here: no agent to close
        return
    except AttributeFailed as error:
        server.log.warning("impactagent: %s=%s: %s (%s: %s); worker_exit closes no agent",
                           AGENT_VARIABLE, reference, error, type(error.__cause__).__name__,
                           " ".join(str(error.__cause__).split()))
        return
    if found is None:
        return
    if not isinstance(found, Agent):
        server.log.warning("impactagent: %s=%s is a %s, not an impactagent.Agent; set it to "
                           "where your agent is (e.g. shop:agent)", AGENT_VARIABLE, reference,
                           type(found).__name__)
        return
    result = found.close()
    server.log.info("impactagent: worker %s closed its agent: ok=%s, %s events delivered",
                    worker.pid, result.ok, result.delivered_events)
