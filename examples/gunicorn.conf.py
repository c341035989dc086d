"""gunicorn settings for an app that uses impactagent: ``gunicorn -c examples/gunicorn.conf.py``.

The hook that closes each worker's agent as it leaves comes from the package
(:mod:`impactagent.integrations.gunicorn`); ``IMPACTAGENT_AGENT`` says where the agent is,
as ``module:attribute``. Keep ``graceful_timeout`` above the agent's ``shutdown_timeout``.
"""

import os

from impactagent.integrations.gunicorn import worker_exit  # noqa: F401 (a gunicorn hook)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
graceful_timeout = 30  # seconds: longer than the agent's shutdown_timeout (5 by default)

os.environ.setdefault("IMPACTAGENT_AGENT", "examples.flask_app:agent")
