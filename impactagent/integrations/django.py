"""Django: request metrics by URL pattern, a flag scope per request, and the agent built once.

In ``settings.py``::

    MIDDLEWARE = [
        "impactagent.integrations.django.ImpactMiddleware",  # first: it times the others too
        # ... Django's own middleware ...
    ]
    IMPACTAGENT = {
        "app_name": "shop",                            # any Agent setting, by its name
        "url": os.environ.get("UNLEASH_URL"),          # without a url, it only records
        "api_key": os.environ.get("UNLEASH_API_TOKEN"),
        "flags": ["new-checkout"],                     # label requests by these flags
    }

and, in your code, the same agent for your own metrics and flags::

    from impactagent.integrations.django import get_agent
    checkouts = get_agent().counter("checkout_total", "Completed checkouts")

``IMPACTAGENT`` takes every :class:`~impactagent.Agent` setting by name (``environment``,
``flush_interval``, ``spool_dir``, ...), and these of the integration: ``flags`` (metrics of
requests labelled by those flags' states in the request), ``prefix`` (``http_server``) and
``buckets``. An app that makes its agent itself gives ``"agent": "shop.metrics:agent"``
(or the Agent object) instead of the settings. A misspelt key is an error, not a default.

The agent is built once per process, on first use, and started when it has a ``url``; it
closes at exit (``atexit``). Under gunicorn or uWSGI, each forked worker's agent resets
itself (zero counts, its own connection id and flusher): nothing to add for the fork. See
:mod:`impactagent.integrations.gunicorn` for closing it when a worker exits.

Each request is counted in ``http_server_requests_total`` and timed in
``http_server_request_duration_seconds`` (:mod:`impactagent.integrations.http_metrics`) with
the route Django resolved: the pattern as written in ``urls.py`` (``checkout/<str:user>``,
included prefixes joined; ``/`` for the root pattern, written ``""``), never the raw path;
``unmatched`` when nothing resolved (a 404, or a middleware that answered first). A view
that raises counts as the 500 Django answers with. The time runs until the response is
made; the body of a streaming response is not timed.

For a Prometheus scrape, add ``path("metrics", metrics_view)`` to ``urlpatterns`` (needs
``impactagent[prometheus]``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple

from ..agent import Agent
from ..core.flag_context import close_scope, open_scope
from ._config import IntegrationOptions, scrape
from .http_metrics import HttpMetrics

__all__ = ["ImpactMiddleware", "get_agent", "metrics_view"]

_perf_counter = time.perf_counter
_lock = threading.Lock()
_built: Optional[Tuple[Agent, IntegrationOptions]] = None  # once per process


def _options_and_agent() -> Tuple[Agent, IntegrationOptions]:
    global _built
    with _lock:
        if _built is None:
            from django.conf import settings
            from django.core.exceptions import ImproperlyConfigured

            configured = getattr(settings, "IMPACTAGENT", None)
            if not isinstance(configured, dict):
                raise ImproperlyConfigured(
                    "impactagent: set IMPACTAGENT = {'app_name': ..., 'url': ..., "
                    "'api_key': ...} in settings.py (see impactagent.integrations.django)")
            options = IntegrationOptions.split(configured)
            _built = (options.build_agent(), options)
        return _built


def get_agent() -> Agent:
    """The process's agent, as ``settings.IMPACTAGENT`` describes it (built on first use)."""
    return _options_and_agent()[0]


class ImpactMiddleware:
    """Django middleware: counts, times and flag-scopes every request (see module doc)."""

    sync_capable = True
    async_capable = False  # under ASGI, Django runs it (and the view) in a thread

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        agent, options = _options_and_agent()
        self.metrics = HttpMetrics(agent, prefix=options.prefix, buckets=options.buckets,
                                   flags=options.flags)

    def __call__(self, request: Any) -> Any:
        start = _perf_counter()
        token = open_scope()
        status = 500  # if a response never comes back
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            try:
                match = getattr(request, "resolver_match", None)
                route = getattr(match, "route", None)
                if match is not None and route == "":
                    route = "/"  # the root pattern, path("", ...): it matched
                self.metrics.record(request.method or "", route, status,
                                    _perf_counter() - start)
            finally:
                close_scope(token)


def metrics_view(request: Any) -> Any:
    """A Django view serving the Prometheus scrape of :func:`get_agent`'s agent."""
    from django.http import HttpResponse

    body, content_type = scrape(get_agent(), request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
