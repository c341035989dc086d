"""Framework integrations: where each framework's users look for them.

Each integration labels requests (or tasks) by their route *template* and runs each one in
its own flag scope (:mod:`impactagent.core.flag_context`), with no hook for the app to write:

- Django: ``MIDDLEWARE = ["impactagent.integrations.django.ImpactMiddleware", ...]`` and an
  ``IMPACTAGENT = {...}`` dict in ``settings.py`` (:mod:`impactagent.integrations.django`);
- Flask: ``ImpactAgent(app)``, or ``ImpactAgent()`` and ``init_app(app)`` in an app factory
  (:mod:`impactagent.integrations.flask`);
- FastAPI and Starlette: ``app.add_middleware(ImpactMiddleware, agent=agent)``
  (:mod:`impactagent.integrations.fastapi`, :mod:`impactagent.integrations.starlette`);
- Celery: ``instrument_celery(agent)``: a flag scope and a count per task, and the agent
  started in, and closed with, each worker process (:mod:`impactagent.integrations.celery`);
- gunicorn: nothing to add (the agent resets itself in each forked worker);
  :func:`impactagent.integrations.gunicorn.worker_exit` closes it when a worker leaves.

The framework is imported only when its integration is used, so importing this package (or
building the docs) needs none of them. The plain WSGI and ASGI middlewares these build on
are :mod:`impactagent.integrations.wsgi` and :mod:`impactagent.integrations.asgi`.
"""
