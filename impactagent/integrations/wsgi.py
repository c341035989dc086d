"""A WSGI middleware that counts and times every request, and scopes its flags.

The route label is ``environ["impactagent.route"]`` (set by a framework hook or the app) or
``route=lambda environ: ...``; else ``unmatched``. A streamed body is timed until the server
closes it; a whole one (a list) is recorded at once and passed on untouched.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional

from ..core.flag_context import close_scope, open_scope
from .http_metrics import ROUTE_KEY, Middleware

if TYPE_CHECKING:
    from ..core.flag_context import ScopeToken

Environ = Dict[str, Any]

_perf_counter = time.perf_counter


class ImpactMiddleware(Middleware[Callable[..., Iterable[bytes]]]):
    """Wrap a WSGI app: ``app.wsgi_app = ImpactMiddleware(app.wsgi_app, agent)``."""

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = _perf_counter()
        token = open_scope()
        status: List[int] = [500]

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._record(environ, start, token, 500)
            raise
        if body.__class__ is list or body.__class__ is tuple:
            # Whole: the request is over. Returned as is, so the server can send its length.
            self._record(environ, start, token, status[0])
            return body
        return _Response(body, functools.partial(self._record, environ, start, token), status)

    def _record(self, environ: Environ, start: float, token: ScopeToken, status: int) -> None:
        route = environ.get(ROUTE_KEY)
        if route is None and self.route is not None:
            route = self.route(environ)
        try:
            self.metrics.record(environ.get("REQUEST_METHOD", ""), route, status,
                                _perf_counter() - start)
        finally:
            # A server that closes the body from another context: nothing there to undo.
            with contextlib.suppress(ValueError):
                close_scope(token)


class _Response:
    """The app's body, passed through; the request is recorded when the server closes it."""

    __slots__ = ("_body", "_record", "_status")

    def __init__(self, body: Iterable[bytes], record: Callable[[int], None],
                 status: List[int]) -> None:
        self._body = body
        self._record: Optional[Callable[[int], None]] = record  # None once recorded
        self._status = status

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            record, self._record = self._record, None
            if record is not None:
                # An exception while streaming means the client did not get a whole answer.
                record(500 if sys.exc_info()[0] is not None else self._status[0])
