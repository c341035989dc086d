"""Zero-code instrumentation: ``impactagent run [--dry-run] -- <command> [args...]``.

The command runs with :mod:`bootstrap <impactagent.autoinstrument.bootstrap>` first on
``PYTHONPATH``; in each Python process it starts, Flask, Django, FastAPI, Starlette, Celery,
gunicorn's WSGI apps and the official ``UnleashClient`` are instrumented when the app
imports them (:mod:`.instrumentations`), with one agent per process configured from the
environment (:mod:`.process`). See ``docs/zero-code.md``.
"""
