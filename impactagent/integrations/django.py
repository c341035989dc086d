"""Django: request metrics by URL pattern, a flag scope per request, and the agent built once.

Put ``ImpactMiddleware`` first in ``MIDDLEWARE``. ``settings.IMPACTAGENT`` takes every Agent
setting, ``flags``, ``prefix`` and ``buckets``, or ``"agent": "shop.metrics:agent"``. The route
is the pattern as written in ``urls.py``; ``path("metrics", metrics_view)`` serves the scrape.
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
_built: Optional[Tuple[Agent, IntegrationOptions]] = None


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
    """Django middleware: counts, times and flag-scopes every request."""

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
                self.metrics.record(request.method or "", route, status, _perf_counter() - start)
            finally:
                close_scope(token)


def metrics_view(request: Any) -> Any:
    """A Django view serving the Prometheus scrape of :func:`get_agent`'s agent."""
    from django.http import HttpResponse

    body, content_type = scrape(get_agent(), request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
