"""What happens when a watched library is imported: the bootstrap calls :func:`instrument`
with the module once it has run. Each installer patches where the library builds the thing
to wrap; one that raises leaves that instrumentation off, logged once, and the app runs on.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from typing import Any, Callable, Dict, List

from ..integrations import asgi
from .process import PROCESS
from .web import DeferredWSGI, DjangoMiddleware, Outermost, wsgi_middleware

_DJANGO_MIDDLEWARE = f"{DjangoMiddleware.__module__}.{DjangoMiddleware.__qualname__}"
_INTEGRATION_MIDDLEWARE = "impactagent.integrations.django.ImpactMiddleware"


def instrument(module_name: str, module: Any) -> None:
    """Instrument the library whose module ``module_name`` was just imported."""
    name, install = INSTALLERS[module_name]
    if not PROCESS.enabled(name):
        return
    try:
        install(module)
        if threading.current_thread() is threading.main_thread():
            # Now, not at the first request: an agent started in the main thread closes on
            # SIGTERM when the app has no handler of its own.
            PROCESS.agent()
    except Exception as error:
        PROCESS.failed(name, error)


def _flask(module: Any) -> None:
    from ..integrations.http_metrics import ROUTE_KEY

    flask_class = module.Flask
    init = flask_class.__init__

    def note_the_rule(sender: Any, **extra: Any) -> None:
        rule = module.request.url_rule
        if rule is not None:
            module.request.environ[ROUTE_KEY] = rule.rule

    def wrap(app: Any) -> Callable[[Any], Any]:
        def middleware(wsgi_app: Any) -> Any:
            if "impactagent" in app.extensions:  # the app uses the Flask integration itself
                return None
            return wsgi_middleware(wsgi_app)
        return middleware

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if PROCESS.enabled("flask"):
            try:
                self.wsgi_app = DeferredWSGI(self.wsgi_app, "flask", wrap(self))
                module.request_started.connect(note_the_rule, self, weak=False)
            except Exception as error:
                PROCESS.failed("flask", error)

    flask_class.__init__ = __init__


def _django(module: Any) -> None:
    setup = module.setup

    @functools.wraps(setup)
    def setup_and_instrument(*args: Any, **kwargs: Any) -> Any:
        result = setup(*args, **kwargs)
        if PROCESS.enabled("django"):
            try:
                from django.conf import settings

                middleware = list(settings.MIDDLEWARE)
                if not {_DJANGO_MIDDLEWARE, _INTEGRATION_MIDDLEWARE} & set(middleware):
                    settings.MIDDLEWARE = [_DJANGO_MIDDLEWARE, *middleware]
            except Exception as error:
                PROCESS.failed("django", error)
        return result

    module.setup = setup_and_instrument


def _asgi(name: str, class_name: str) -> Callable[[Any], None]:
    def install(module: Any) -> None:
        app_class = getattr(module, class_name)
        build = app_class.build_middleware_stack

        @functools.wraps(build)
        def build_middleware_stack(self: Any) -> Any:
            stack = build(self)
            if not PROCESS.enabled(name) or any(
                    getattr(m, "cls", None) is asgi.ImpactMiddleware
                    for m in getattr(self, "user_middleware", ())):
                return stack  # off, or the app added the middleware itself
            try:
                return Outermost(stack)
            except Exception as error:
                PROCESS.failed(name, error)
                return stack

        app_class.build_middleware_stack = build_middleware_stack
    return install


def _celery(signals: Any) -> None:
    lock = threading.Lock()
    started: List[bool] = []  # non-empty once this process's first task has come

    def first_task(sender: Any = None, **extra: Any) -> None:
        # The process serves now, and its UnleashClient knows its flags.
        with lock:
            if started:
                return
            started.append(True)
            signals.task_prerun.disconnect(first_task)
            if not PROCESS.enabled("celery"):
                return
            try:
                from ..integrations.celery import instrument_celery

                instrumentation = instrument_celery(PROCESS.agent(), flags=PROCESS.flags())
            except Exception as error:
                PROCESS.failed("celery", error)
                return
        # Connected during this signal's dispatch: not called for this task, so by hand.
        instrumentation.task_prerun(sender=sender, **extra)

    signals.task_prerun.connect(first_task, weak=False)


def _gunicorn(module: Any) -> None:
    wsgi = module.BaseApplication.wsgi

    @functools.wraps(wsgi)
    def wsgi_instrumented(self: Any) -> Any:
        app = wsgi(self)
        if (not PROCESS.enabled("gunicorn") or isinstance(app, DeferredWSGI)
                or _served_by_another(app)):
            return app
        self.callable = DeferredWSGI(app, "gunicorn", wsgi_middleware)
        return self.callable

    module.BaseApplication.wsgi = wsgi_instrumented


def _served_by_another(app: Any) -> bool:
    """Whether another instrumentation counts ``app``'s requests, or ``app`` is not a WSGI
    app at all (an ASGI app under a uvicorn worker)."""
    call = type(app).__call__ if not inspect.isfunction(app) else app
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return True
    flask = sys.modules.get("flask")
    if flask is not None and isinstance(app, flask.Flask) and PROCESS.enabled("flask"):
        return True
    handlers = sys.modules.get("django.core.handlers.wsgi")
    return (handlers is not None and isinstance(app, handlers.WSGIHandler)
            and PROCESS.enabled("django"))


def _unleash(module: Any) -> None:
    from .sdk import wire

    wire(module.UnleashClient)


# The module whose import triggers each installer, with the instrumentation's name.
INSTALLERS: Dict[str, Any] = {
    "flask": ("flask", _flask),
    "django": ("django", _django),
    "starlette.applications": ("starlette", _asgi("starlette", "Starlette")),
    "fastapi.applications": ("fastapi", _asgi("fastapi", "FastAPI")),
    "celery.signals": ("celery", _celery),
    "gunicorn.app.base": ("gunicorn", _gunicorn),
    "UnleashClient": ("unleash", _unleash),
}
