"""Framework integrations: Django, Flask, FastAPI and Starlette, Celery, gunicorn.

Each labels requests (or tasks) by their route template and runs each in its own flag
scope. A framework is imported only when its integration is used.
"""
