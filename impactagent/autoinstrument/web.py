"""The request middlewares of :mod:`impactagent.integrations`, put in place by themselves,
each made at the process's first request: by then the process is the one that serves (not a
preloading parent) and its ``UnleashClient`` knows the flags that label the metrics."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ..integrations import asgi, wsgi
from ..integrations.wsgi import Environ
from .process import PROCESS

# Set in the ASGI scope by the outermost instrumented app: an app mounted inside it passes
# the request on instead of counting it again.
TIMED = "impactagent.timed"


class MadeAtFirstCall:
    """Serves through ``make()``'s callable, made at the first call; through ``fallback``
    when ``make`` gives None or fails, or instrumentation ``name`` is off."""

    def __init__(self, fallback: Callable[..., Any], name: str,
                 make: Callable[[], Optional[Callable[..., Any]]]) -> None:
        self.name = name
        self._fallback = fallback
        self._make = make
        self._serve: Callable[..., Any] = self._first
        self._lock = threading.Lock()

    def _first(self, *args: Any) -> Any:
        with self._lock:
            if self._serve == self._first:
                made = None
                if PROCESS.enabled(self.name):
                    try:
                        made = self._make()
                    except Exception as error:
                        PROCESS.failed(self.name, error)
                self._serve = made or self._fallback
        return self._serve(*args)


class DeferredWSGI(MadeAtFirstCall):
    """A WSGI app wrapped by ``wrap(app)`` at its first request."""

    def __init__(self, app: Callable[..., Any], name: str,
                 wrap: Callable[[Callable[..., Any]], Optional[Callable[..., Any]]]) -> None:
        super().__init__(app, name, lambda: wrap(app))

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        return self._serve(environ, start_response)


def wsgi_middleware(app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI request middleware around ``app``, with the process's agent and flags."""
    return wsgi.ImpactMiddleware(app, PROCESS.agent(), flags=PROCESS.flags())


class Outermost:
    """The ASGI request middleware around an app's stack: counts each request once, and
    closes the agent at the lifespan's shutdown (uvicorn's exit runs no exit hook)."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.middleware = asgi.ImpactMiddleware(stack, PROCESS.agent(), flags=PROCESS.flags())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if TIMED in scope:
            await self.stack(scope, receive, send)
            return
        scope[TIMED] = True
        if scope["type"] != "lifespan":
            await self.middleware(scope, receive, send)
            return

        async def send_after_closing(message: Any) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                PROCESS.close()  # the requests are over; the server waits for this answer
            await send(message)

        await self.stack(scope, receive, send_after_closing)


class DjangoMiddleware(MadeAtFirstCall):
    """First in ``MIDDLEWARE``: the Django integration's middleware, with the process's
    agent and flags unless ``settings.IMPACTAGENT`` is set."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        super().__init__(get_response, "django", self._integration)
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self._serve(request)

    def _integration(self) -> Any:
        from django.conf import settings

        from ..integrations import django

        if getattr(settings, "IMPACTAGENT", None) is None:
            settings.IMPACTAGENT = {"agent": PROCESS.agent(), "flags": list(PROCESS.flags())}
        return django.ImpactMiddleware(self.get_response)

