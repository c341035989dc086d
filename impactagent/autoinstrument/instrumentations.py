"""The bootstrap calls :func:`instrument` with each watched library once imported; its
installer patches where the library builds the thing to wrap. The request middlewares are made
at the process's first request: by then the process is the one that serves (not a preloading
parent) and its ``UnleashClient`` knows the flags."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..agent import Agent
from ..core.flag_context import flag_state, note_flag
from ..core.flag_decorator import evaluation
from ..integrations import asgi, wsgi
from ..integrations.http_metrics import ROUTE_KEY
from .cli import INSTRUMENTATIONS, disabled_names, listed_flags, settings_from_env, usable_flags

log = logging.getLogger("impactagent.autoinstrument")
T = TypeVar("T")


class Process:
    """What the instrumentations of one process share: its agent (built from the environment
    at first use), the flags that label its metrics (``IMPACTAGENT_FLAGS``, or every flag
    its ``UnleashClient`` knows at the first request or task), and which are on."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._agent: Agent | None = None
        self._flags: tuple[str, ...] | None = None
        try:
            self._off = set(disabled_names())  # and those that failed since
        except ValueError as error:  # `impactagent run` refuses it; set another way:
            log.warning("%s; nothing is instrumented", error)
            self._off = set(INSTRUMENTATIONS)
        #: The ``UnleashClient`` instances made, whose flags may label the metrics.
        self.clients: weakref.WeakSet[Any] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._forget_flags)

    def _forget_flags(self) -> None:
        # A forked worker decides from its own clients; a new lock, as another thread may
        # have held the parent's at the fork.
        self._lock = threading.RLock()
        self._flags = None

    def agent(self) -> Agent:
        """The process's agent (built, and started when it has a URL, on first use)."""
        if self._agent is None:
            with self._lock:
                if self._agent is None:
                    self._agent = Agent(settings=settings_from_env())
                    if self._agent.settings.url is not None:
                        self._agent.start()
        return self._agent

    def flags(self) -> tuple[str, ...]:
        """The flags that label request and task metrics (fixed at the first call)."""
        with self._lock:
            if self._flags is None:
                known = {name for client in list(self.clients) if client.is_initialized
                         for name in client.feature_definitions()}
                self._flags, clashing = usable_flags(listed_flags() or sorted(known))
                if clashing:
                    log.warning("flags %s do not label the metrics: their labels are taken (by "
                                "the metrics' own, or by another flag's)", ", ".join(clashing))
                log.debug("metrics labelled by flags %s", self._flags)
            return self._flags

    def enabled(self, name: str) -> bool:
        """Whether instrumentation ``name`` is on: not disabled, and not failed."""
        return name not in self._off

    def attempt(self, name: str, make: Callable[[], T], otherwise: T) -> T:
        """``make()`` while instrumentation ``name`` is on, else ``otherwise``; ``make``
        raising turns ``name`` off for the rest of the process, said once."""
        if name in self._off:
            return otherwise
        try:
            return make()
        except Exception as error:
            with self._lock:
                first = name not in self._off
                self._off.add(name)
            if first:
                log.warning("the %s instrumentation failed and is off in this process "
                            "(the app runs on without it): %r", name, error, exc_info=error)
            return otherwise


#: What the instrumentations of this process share.
PROCESS = Process()


def instrument(module_name: str, module: Any) -> None:
    """Instrument the library whose module ``module_name`` was just imported."""
    name, install = INSTALLERS[module_name]
    PROCESS.attempt(name, lambda: install(module), None)
    if threading.current_thread() is threading.main_thread():
        # Now, not at the first request: an agent started in the main thread closes on
        # SIGTERM when the app has no handler of its own. Not when the install failed.
        PROCESS.attempt(name, PROCESS.agent, None)


def _after(owner: Any, attribute: str, name: str, hook: Callable[..., Any]) -> None:
    """Make ``owner.attribute`` give ``hook(result, *args, **kwargs)`` while ``name`` is on,
    and its own result when the hook raises (which turns ``name`` off)."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        return PROCESS.attempt(name, lambda: hook(result, *args, **kwargs), result)

    setattr(owner, attribute, patched)


class DeferredWSGI:
    """Serves through ``wrap(inner)``, made at the first call; through ``inner`` when
    ``wrap`` gives None or fails, or instrumentation ``name`` is off."""

    def __init__(self, inner: Callable[..., Any], name: str,
                 wrap: Callable[[Callable[..., Any]], Callable[..., Any] | None]) -> None:
        self._inner, self._name, self._wrap = inner, name, wrap
        self._serve: Callable[..., Any] = self._first
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        return self._serve(*args)

    def _first(self, *args: Any) -> Any:
        with self._lock:
            if self._serve == self._first:
                made = PROCESS.attempt(self._name, lambda: self._wrap(self._inner), None)
                self._serve = made or self._inner
        return self._serve(*args)


def wsgi_middleware(app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI request middleware around ``app``, with the process's agent and flags."""
    return wsgi.ImpactMiddleware(app, PROCESS.agent(), flags=PROCESS.flags())


class Outermost:
    """The ASGI request middleware around an app's stack: counts each request once, and
    closes the agent at the lifespan's shutdown (uvicorn's exit runs no exit hook)."""

    #: Set in the scope by the outermost instrumented app: an app mounted inside it passes
    #: the request on instead of counting it again.
    TIMED = "impactagent.timed"

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.middleware = asgi.ImpactMiddleware(stack, PROCESS.agent(), flags=PROCESS.flags())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.TIMED in scope:
            await self.stack(scope, receive, send)
            return
        scope[self.TIMED] = True
        if scope["type"] != "lifespan":
            await self.middleware(scope, receive, send)
            return

        async def send_after_closing(message: Any) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                PROCESS.agent().close()  # the requests are over; the server waits for this
            await send(message)

        await self.stack(scope, receive, send_after_closing)


def _django_integration(get_response: Callable[[Any], Any]) -> Any:
    from django.conf import settings

    from ..integrations import django as django_integration
    if getattr(settings, "IMPACTAGENT", None) is None:
        settings.IMPACTAGENT = {"agent": PROCESS.agent(), "flags": list(PROCESS.flags())}
    return django_integration.ImpactMiddleware(get_response)


class DjangoMiddleware(DeferredWSGI):
    """First in ``MIDDLEWARE``: the Django integration's middleware, with the process's
    agent and flags unless ``settings.IMPACTAGENT`` is set."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        super().__init__(get_response, "django", _django_integration)


def _flask(module: Any) -> None:
    def note_the_rule(sender: Any, **extra: Any) -> None:
        rule = module.request.url_rule
        if rule is not None:
            module.request.environ[ROUTE_KEY] = rule.rule

    def instrument_app(result: None, app: Any, *args: Any, **kwargs: Any) -> None:
        app.wsgi_app = DeferredWSGI(app.wsgi_app, "flask", lambda wsgi_app: (
            None if "impactagent" in app.extensions  # the app uses the Flask integration
            else wsgi_middleware(wsgi_app)))
        module.request_started.connect(note_the_rule, app, weak=False)

    _after(module.Flask, "__init__", "flask", instrument_app)


def _django(module: Any) -> None:
    ours = f"{DjangoMiddleware.__module__}.{DjangoMiddleware.__qualname__}"
    theirs = "impactagent.integrations.django.ImpactMiddleware"

    def insert_middleware(result: Any, *args: Any, **kwargs: Any) -> Any:
        from django.conf import settings
        middleware = list(settings.MIDDLEWARE)
        if not {ours, theirs} & set(middleware):
            settings.MIDDLEWARE = [ours, *middleware]
        return result

    _after(module, "setup", "django", insert_middleware)


def _asgi(name: str, class_name: str) -> Callable[[Any], None]:
    def outermost(stack: Any, app: Any, *args: Any, **kwargs: Any) -> Any:
        if any(getattr(m, "cls", None) is asgi.ImpactMiddleware
               for m in getattr(app, "user_middleware", ())):
            return stack  # the app added the middleware itself
        return Outermost(stack)

    return lambda module: _after(getattr(module, class_name), "build_middleware_stack", name,
                                 outermost)


def _celery(signals: Any) -> None:
    lock = threading.Lock()
    started: list[bool] = []  # non-empty once this process's first task has come

    def first_task(sender: Any = None, **extra: Any) -> None:
        # The process serves now, and its UnleashClient knows its flags.
        with lock:
            if started:
                return
            started.append(True)
            signals.task_prerun.disconnect(first_task)
            from ..integrations.celery import instrument_celery
            instrumentation = PROCESS.attempt("celery", lambda: instrument_celery(
                PROCESS.agent(), flags=PROCESS.flags()), None)
        if instrumentation is not None:
            # Connected during this signal's dispatch: not called for this task, so by hand.
            instrumentation.task_prerun(sender=sender, **extra)

    signals.task_prerun.connect(first_task, weak=False)


def _gunicorn(module: Any) -> None:
    def deferred(app: Any, application: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(app, DeferredWSGI) or _served_by_another(app):
            return app
        application.callable = DeferredWSGI(app, "gunicorn", wsgi_middleware)
        return application.callable

    _after(module.BaseApplication, "wsgi", "gunicorn", deferred)


def _served_by_another(app: Any) -> bool:
    """Whether another instrumentation counts ``app``'s requests, or ``app`` is not a WSGI
    app at all (an ASGI app under a uvicorn worker)."""
    call = type(app).__call__ if not inspect.isfunction(app) else app
    flask, handlers = sys.modules.get("flask"), sys.modules.get("django.core.handlers.wsgi")
    return (inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)
            or (flask is not None and isinstance(app, flask.Flask) and PROCESS.enabled("flask"))
            or (handlers is not None and isinstance(app, handlers.WSGIHandler)
                and PROCESS.enabled("django")))


def _unleash(module: Any) -> None:
    # Each answer is noted in the flag scope; the SDK counts its own evaluations, so the agent
    # counts them only for a client made with disable_metrics=True.
    def noted(client: Any, name: str, enabled: bool, variant: str | None) -> None:
        if client.unleash_disable_metrics:
            PROCESS.agent().count_evaluation(name, enabled, variant)
        else:
            note_flag(name, flag_state(enabled, variant))

    def known(result: None, client: Any, *args: Any, **kwargs: Any) -> None:
        PROCESS.clients.add(client)  # its flags may label the metrics

    def enabled(answer: Any, client: Any, feature_name: str, *args: Any, **kwargs: Any) -> Any:
        noted(client, feature_name, bool(answer), None)
        return answer

    def variant(answer: Any, client: Any, feature_name: str, *args: Any, **kwargs: Any) -> Any:
        noted(client, feature_name, *evaluation(answer))
        return answer

    for method, hook in (("__init__", known), ("is_enabled", enabled), ("get_variant", variant)):
        _after(module.UnleashClient, method, "unleash", hook)


# The module whose import triggers each installer, with the instrumentation's name.
INSTALLERS: dict[str, Any] = {
    "flask": ("flask", _flask),
    "django": ("django", _django),
    "starlette.applications": ("starlette", _asgi("starlette", "Starlette")),
    "fastapi.applications": ("fastapi", _asgi("fastapi", "FastAPI")),
    "celery.signals": ("celery", _celery),
    "gunicorn.app.base": ("gunicorn", _gunicorn),
    "UnleashClient": ("unleash", _unleash),
}
