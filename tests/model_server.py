"""A local Unleash stand-in whose answer to each POST is drawn by the test, for the model test.

``DrawnServer`` answers ``POST /api/client/metrics`` on 127.0.0.1 with the next answer in its
queue (then 202): any of the answers a real server, proxy or network gives. It stores what a
real unleash-server would store: a body it answers 2xx to, minus the ``impactMetrics`` array
when one metric in it is invalid (the server drops the whole array while answering 202; the
package's own ``validation`` module says when), and answers 400 to a body the server rejects.

Every request is logged with its answer, so the model test can count, per series, what was
delivered (stored), what the server refused for good (400, or 413 on a body that cannot be
split), and who sent it (the ``unleash-connection-id`` header).

The answers:

=============  ==================================================================================
``accept``     202, stored
``late``       stored, then a stall past the client's timeout before the 202: the one case where
               a client that retries counts twice (``possibly_duplicated_events``)
``moved``      301 to ``/login`` on the same server, a page that answers ``GET`` with 200
``redirect``   307 to another origin (``ForeignServer``), which stores whatever is POSTed to it
``bad``        400
``unauth``     401
``too_large``  413
``limited``    429 with ``Retry-After: 0`` or ``1``
``error``      500 or 503
``reset``      the connection is reset after the body was read, no answer
``stall``      no answer until after the client's timeout; nothing stored
``trickle``    stored, then the whole answer one byte at a time, past the client's deadline: no
               socket read times out, only a deadline over the whole request ends the wait
``cut``        stored, a 202 status line, then an answer body cut short: delivered (the status
               line decides), never to be resent
=============  ==================================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from impactagent.server_rules.validation import DISCARDED, REJECTED, check_document, parse_body
from tests.loopback import LoopbackHandler, LoopbackServer

#: How long a stalled answer waits; the model's agents time out after 0.2 s.
STALL_SECONDS = 0.5

ANSWER_KINDS = ("accept", "late", "moved", "redirect", "bad", "unauth", "too_large", "limited",
                "error", "reset", "stall", "trickle", "cut")

#: The pause between two bytes of a trickled answer.
TRICKLE_SECONDS = 0.05


@dataclass(frozen=True)
class Drawn:
    """One drawn answer: its kind and, where the kind has a choice, which one."""

    kind: str
    variant: int = 0  # limited: Retry-After 0 or 1; error: 500 or 503

    def __repr__(self) -> str:  # shows up in hypothesis's failing-steps listing
        return f"Drawn({self.kind!r}, {self.variant})" if self.variant else f"Drawn({self.kind!r})"


@dataclass
class Seen:
    """One POST to the metrics endpoint and what became of it."""

    body: bytes
    document: Optional[Dict[str, Any]]
    connection_id: str
    answer: str  # the drawn kind, or "invalid" when the server's validation refused it
    status: int  # 0 without an answer
    stored: bool  # the server stored the bucket (and the metrics, unless discarded)
    metrics_discarded: bool  # stored, but the impactMetrics array was thrown away


class ForeignServer(LoopbackServer):
    """Another origin that takes any POST with 202 and keeps it: where a followed 307 lands."""

    def __init__(self) -> None:
        self.bodies: List[bytes] = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        return _ForeignHandler


class _ForeignHandler(LoopbackHandler):
    server_ref: ForeignServer

    def do_POST(self) -> None:
        body = self.read_body()
        with self.server_ref.lock:
            self.server_ref.bodies.append(body)
        self.answer(202, b"")


class DrawnServer(LoopbackServer):
    """See the module docstring. ``queue(*answers)`` replaces the answers still queued."""

    def __init__(self, foreign: ForeignServer) -> None:
        self.foreign = foreign
        self.seen: List[Seen] = []
        self.logins = 0  # GET /login: a followed 301 landed on the login page
        self._queue: List[Drawn] = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        return _DrawnHandler

    def queue(self, *answers: Drawn) -> None:
        """Answer the next POSTs with ``answers``, in order, then with 202."""
        with self.lock:
            self._queue = list(answers)

    def _next(self) -> Drawn:
        with self.lock:
            return self._queue.pop(0) if self._queue else Drawn("accept")

    def _note(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def log(self) -> List[Seen]:
        """Every POST so far, in arrival order (a copy)."""
        with self.lock:
            return list(self.seen)


class _DrawnHandler(LoopbackHandler):
    server_ref: DrawnServer

    def do_GET(self) -> None:
        if self.path == "/login":
            with self.server_ref.lock:
                self.server_ref.logins += 1
            return self.answer(200, b"<html>Please log in</html>", content_type="text/html")
        self.answer(404, b"")

    def do_POST(self) -> None:
        owner = self.server_ref
        body = self.read_body()
        connection = self.headers.get("unleash-connection-id", "")
        if self.path != "/api/client/metrics":
            return self.answer(404, b"")
        drawn = owner._next()
        document, problems = parse_body(body)
        if document is not None:
            problems = check_document(document)

        def note(status: int, stored: bool = False, discarded: bool = False,
                 answer: str = drawn.kind) -> None:
            owner._note(Seen(body, document, connection, answer, status, stored, discarded))

        kind = drawn.kind
        if kind == "reset":
            note(0)
            return self.reset()
        if kind == "stall":
            note(0)
            self.stall(STALL_SECONDS)
            self.close_connection = True
            return None
        if kind == "moved":
            note(301)
            return self.answer(301, b"", {"Location": f"{owner.url}/login"})
        if kind == "redirect":
            note(307)
            return self.answer(307, b"", {"Location": f"{owner.foreign.api_url}/client/metrics"})
        if kind == "unauth":
            note(401)
            return self.answer(401, b"")
        if kind == "too_large":
            note(413)
            return self.answer(413, b'{"error":"request entity too large"}')
        if kind == "limited":
            note(429)
            return self.answer(429, b"", {"Retry-After": str(drawn.variant)})
        if kind == "error":
            status = 503 if drawn.variant else 500
            note(status)
            return self.answer(status, b'{"error":"unavailable"}')
        # What the server's own validation refuses, it refuses before anything else.
        if document is None or any(p.outcome == REJECTED for p in problems):
            note(400, answer="invalid")
            return self.answer(400, json.dumps([str(p) for p in problems]).encode())
        if kind == "bad":
            note(400)
            return self.answer(400, b'{"error":"bad request"}')
        discarded = (any(p.outcome == DISCARDED for p in problems)
                     or bool(unsafe_values(document)))
        note(202, stored=True, discarded=discarded)
        if kind == "late" and self.stall(STALL_SECONDS):
            return None
        if kind == "late":
            self.close_connection = True  # the client gave up long ago
        if kind in ("trickle", "cut"):
            return self._raw_202(trickle=kind == "trickle")
        return self.answer(202, b"")

    def _raw_202(self, *, trickle: bool) -> None:
        self.close_connection = True
        raw = b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{\"ok\""
        try:
            if not trickle:
                self.wfile.write(raw)  # promises 100 bytes, sends 6, hangs up
                return
            for i in range(len(raw)):
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                if self.stall(TRICKLE_SECONDS):
                    return
        except OSError:  # the client gave up
            pass


#: unleash-server (JavaScript) takes a counter value or histogram count only as a safe integer.
MAX_SAFE_INTEGER = 2**53 - 1


def unsafe_values(document: Dict[str, Any]) -> List[str]:
    """What unleash-server's impact-metrics validation refuses beyond the schema (facts from
    its source, issue 13 item 7): a value that is not a number (``true``), an integer past
    2^53 - 1 ("must be a safe number"), one past a double's range ("cannot be infinity").
    Any of them makes it drop the body's whole ``impactMetrics`` array while answering 202."""
    found = []
    for metric in document.get("impactMetrics") or []:
        for sample in metric.get("samples") or []:
            for field in ("value", "count", "sum"):
                value = sample.get(field)
                if field not in sample:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    found.append(f"{metric.get('name')}: {field} {value!r} is not a number")
                elif isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
                    found.append(f"{metric.get('name')}: {field} {value} is not a safe number")
    return found


def start_servers() -> DrawnServer:
    """A drawn-answer server and the foreign origin its 307s point to (``server.foreign``)."""
    return DrawnServer(ForeignServer())


def stop_servers(server: DrawnServer) -> None:
    server.stop()
    server.foreign.stop()


__all__ = ["ANSWER_KINDS", "Drawn", "DrawnServer", "ForeignServer", "Seen", "start_servers",
           "stop_servers"]
