"""The request middlewares of :mod:`impactagent.integrations`, put in place by themselves.

Each is made at the process's first request, not when the app is built: by then the
process is the one that serves (a gunicorn worker, not the parent it was forked from), and
its ``UnleashClient`` knows the flags that label the metrics.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ..integrations import asgi, wsgi
from ..integrations.wsgi import Environ
from .process import PROCESS

#: Set in the ASGI scope by the outermost instrumented app: an app mounted inside it (a
#: Starlette app in a FastAPI app) passes the request on instead of counting it again.
TIMED = "impactagent.timed"


class DeferredWSGI:
    """A WSGI app that is wrapped by ``wrap(app)`` at its first request (``None`` from
    ``wrap``, or a failure, or the instrumentation off: served as it is)."""

    def __init__(self, app: Callable[..., Any], name: str,
                 wrap: Callable[[Callable[..., Any]], Optional[Callable[..., Any]]]) -> None:
        self.app = app
        self.name = name
        self._wrap = wrap
        self._serve: Callable[..., Any] = self._first
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        return self._serve(environ, start_response)

    def _first(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        with self._lock:
            if self._serve == self._first:
                self._serve = _made(self.name, lambda: self._wrap(self.app)) or self.app
        return self._serve(environ, start_response)


def wsgi_middleware(app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI request middleware around ``app``, with the process's agent and flags."""
    return wsgi.ImpactMiddleware(app, PROCESS.agent(), flags=PROCESS.flags())


class Outermost:
    """The ASGI request middleware around an app's middleware stack, counting each request
    once however many instrumented apps it passes through, and closing the agent when the
    server says it is shutting down (the lifespan protocol): uvicorn ends by raising the
    SIGTERM it caught again, with the default action, so no exit hook would run."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.middleware = asgi.ImpactMiddleware(stack, PROCESS.agent(), flags=PROCESS.flags())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if TIMED in scope:
            await self.stack(scope, receive, send)
            return
        scope[TIMED] = True
        if scope["type"] == "lifespan":
            await self.stack(scope, receive, _closing_at_shutdown(send))
            return
        await self.middleware(scope, receive, send)


def _closing_at_shutdown(send: Any) -> Any:
    async def send_after_closing(message: Any) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            PROCESS.close()  # the requests are over; the server waits for this answer
        await send(message)
    return send_after_closing


class DjangoMiddleware:
    """First in ``MIDDLEWARE``: the Django integration's middleware, made at the first
    request with the process's agent and flags (unless ``settings.IMPACTAGENT`` says
    otherwise), or the request passed on when the instrumentation is off."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._serve: Callable[[Any], Any] = self._first
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        return self._serve(request)

    def _first(self, request: Any) -> Any:
        with self._lock:
            if self._serve == self._first:
                self._serve = _made("django", self._integration) or self.get_response
        return self._serve(request)

    def _integration(self) -> Any:
        from django.conf import settings

        from ..integrations import django

        if getattr(settings, "IMPACTAGENT", None) is None:
            settings.IMPACTAGENT = {"agent": PROCESS.agent(), "flags": list(PROCESS.flags())}
        return django.ImpactMiddleware(self.get_response)


def _made(name: str, make: Callable[[], Any]) -> Any:
    """``make()``, or None when instrumentation ``name`` is off or fails (then logged)."""
    if not PROCESS.enabled(name):
        return None
    try:
        return make()
    except Exception as error:
        PROCESS.failed(name, error)
        return None
