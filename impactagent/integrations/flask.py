"""Flask: an extension that counts, times and flag-scopes every request by its URL rule.

``ImpactAgent(app, app_name=..., flags=[...], metrics_path="/metrics")``, or with an app
factory ``ImpactAgent(agent=agent)`` and ``init_app(app)``. Settings come from
``app.config["IMPACTAGENT"]`` updated by the keywords, as for Django.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from ..agent import Agent
from ._config import IntegrationOptions, scrape
from .http_metrics import ROUTE_KEY
from .wsgi import ImpactMiddleware

__all__ = ["ImpactAgent", "ImpactState"]

EXTENSION_KEY = "impactagent"


class ImpactState(NamedTuple):
    """What the extension keeps per app, in ``app.extensions["impactagent"]``."""

    agent: Agent
    middleware: ImpactMiddleware


class ImpactAgent:
    """The Flask extension: ``ImpactAgent(app, **settings)`` or ``init_app(app)`` later."""

    def __init__(self, app: Any = None, agent: Optional[Agent] = None, *,
                 metrics_path: Optional[str] = None, **settings: Any) -> None:
        self._agent = agent
        self._first: Optional[Agent] = None
        self.metrics_path = metrics_path
        self.settings = settings
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Bind to ``app``: wrap its WSGI app, note the matched rule, and serve the scrape."""
        from flask import request, request_started

        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("impactagent: init_app() was already called for this app")
        mapping = dict(app.config.get("IMPACTAGENT") or {})
        mapping.update(self.settings)
        if self._agent is not None:
            mapping["agent"] = self._agent
        options = IntegrationOptions.split(mapping, "impactagent (Flask)")
        agent = options.build_agent("impactagent (Flask)")
        middleware = ImpactMiddleware(app.wsgi_app, agent, flags=options.flags,
                                      prefix=options.prefix, buckets=options.buckets)
        app.extensions[EXTENSION_KEY] = ImpactState(agent, middleware)
        if self._first is None:
            self._first = agent
        app.wsgi_app = middleware  # Flask's own recipe for WSGI middleware

        def note_the_rule(sender: Any, **extra: Any) -> None:
            # Sent after URL matching and before any before_request function (which may
            # answer the request itself): the route is known for every matched request.
            rule = request.url_rule
            if rule is not None:
                request.environ[ROUTE_KEY] = rule.rule

        # weak=False: the function lives as long as the app; sender=app: this app only.
        request_started.connect(note_the_rule, app, weak=False)
        if self.metrics_path is not None:
            app.add_url_rule(self.metrics_path, "impactagent_metrics",
                             lambda: _scrape_response(agent), methods=["GET"])

    @property
    def agent(self) -> Agent:
        """The agent given; else the current app's, else the first bound app's."""
        if self._agent is not None:
            return self._agent
        from flask import current_app, has_app_context

        state: Optional[ImpactState] = (current_app.extensions.get(EXTENSION_KEY)
                                        if has_app_context() else None)
        if state is not None:
            return state.agent
        if self._first is None:
            raise RuntimeError("impactagent: init_app() was not called yet")
        return self._first


def _scrape_response(agent: Agent) -> Any:
    from flask import Response, request

    body, content_type = scrape(agent, request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)
