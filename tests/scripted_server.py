"""A real HTTP server on 127.0.0.1 that answers POST /api/client/metrics from a script.

Tests use it instead of mocking ``requests``: the agent speaks real HTTP, and the server
records every request and adds up what it accepted, the way Unleash would.

    with ScriptedServer() as server:
        server.script(500, Answer(429, headers={"Retry-After": "1"}), Answer(drop=True))
        ...                     # answers are used one per POST, then ``server.default``
        server.totals()         # what the accepted bodies add up to

``POST /api/client/register`` is answered too (202 unless ``script_register`` says otherwise,
401 with a wrong token) and logged apart, in ``registrations``: ``requests`` holds the
metrics POSTs only, so tests that count bodies are not thrown by an agent's registration.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from impactagent.devtools.received import ReceivedMetrics
from tests.loopback import LoopbackHandler, LoopbackServer, refused_url


@dataclass
class Answer:
    """One scripted answer.

    ``delay`` waits before answering (the client may time out; nothing is stored).
    ``delay_after`` stores the body as accepted, then stalls before answering: the case
    where a client that gives up and retries counts the body twice.
    ``drop`` closes the connection with a reset and no answer at all.
    ``trickle`` stores the body, then sends the whole answer (status line included) one
    byte every ``trickle`` seconds: each socket read gets a byte in time, so only a
    deadline over the whole request ends the wait.
    ``broken`` stores the body, then answers a status line whose body breaks: ``"short"``
    (Content-Length promises more than is sent), ``"chunked"`` (a chunk cut off) or
    ``"gzip"`` (Content-Encoding: gzip, but not gzip).
    """

    status: int = 202
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    delay_after: float = 0.0
    drop: bool = False
    trickle: float = 0.0
    broken: str = ""

    def raw(self) -> bytes:
        """The whole answer as bytes on the wire, for ``trickle`` and ``broken``."""
        head = f"HTTP/1.1 {self.status} Scripted\r\nContent-Type: application/json\r\n"
        body = self.body or b'{"ok":true}'
        if self.broken == "short":
            return (f"{head}Content-Length: {len(body) + 100}\r\n\r\n").encode() + body
        if self.broken == "chunked":
            return f"{head}Transfer-Encoding: chunked\r\n\r\n40\r\nonly a few".encode()
        if self.broken == "gzip":
            return (f"{head}Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
                    "\r\n").encode() + body
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Received:
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes
    status: int  # 0 when the connection was dropped
    accepted: bool
    at: float  # time.monotonic() on arrival


class ScriptedServer(LoopbackServer):
    """A threaded HTTP/1.1 server on an ephemeral loopback port; see the module docstring."""

    def __init__(self, *, token: Optional[str] = None, max_body: int = 100_000) -> None:
        self.token = token
        self.max_body = max_body
        self.default: Union[int, Answer] = 202
        self.requests: List[Received] = []
        #: Metrics POSTs that have arrived and taken their scripted answer, counted before
        #: its ``delay`` (``requests`` holds a request only once it is answered or stored):
        #: wait on this to act while a client is inside a held POST.
        self.arrivals = 0
        self.registrations: List[Received] = []
        self._script: List[Union[int, Answer]] = []
        self._register_script: List[Union[int, Answer]] = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        return _Handler

    # -- script and results ------------------------------------------------------------------

    def script(self, *answers: Union[int, Answer]) -> None:
        """Queue answers, one per POST to the metrics endpoint."""
        with self.lock:
            self._script.extend(answers)

    def script_register(self, *answers: Union[int, Answer]) -> None:
        """Queue answers, one per POST to the register endpoint, then 202."""
        with self.lock:
            self._register_script.extend(answers)

    def _next_register_answer(self) -> Answer:
        with self.lock:
            answer = self._register_script.pop(0) if self._register_script else 202
        return answer if isinstance(answer, Answer) else Answer(status=answer)

    def _record_registration(self, received: Received) -> None:
        with self.lock:
            self.registrations.append(received)

    def _next_answer(self) -> Answer:
        with self.lock:
            self.arrivals += 1
            answer = self._script.pop(0) if self._script else self.default
        return answer if isinstance(answer, Answer) else Answer(status=answer)

    def _record(self, received: Received) -> None:
        with self.lock:
            self.requests.append(received)

    def accepted_documents(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.requests if r.accepted]

    def totals(self) -> Dict[str, Any]:
        """What the accepted bodies add up to: counts summed, gauges last, by series (the
        development receiver's aggregation, which the receiver's own tests check)."""
        received = ReceivedMetrics()
        for document in self.accepted_documents():
            received.add(document, environment="")
        return received.totals()

    def counter_total(self, name: str) -> int:
        """The total of counter ``name`` over all its series in the accepted bodies."""
        return sum(v for (metric, _), v in self.totals()["counters"].items() if metric == name)

    def wait_for(self, predicate: Callable[[ScriptedServer], bool], timeout: float = 10) -> bool:
        """Poll ``predicate(self)`` until true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)


class _Handler(LoopbackHandler):
    server_ref: ScriptedServer

    def do_POST(self) -> None:
        owner = self.server_ref
        arrived = time.monotonic()
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}

        def record(status: int, accepted: bool) -> None:
            owner._record(Received("POST", self.path, headers, body, status, accepted, arrived))

        if self.path == "/api/client/register":
            return self._register(body, headers, arrived)
        if self.path != "/api/client/metrics":
            record(404, False)
            return self.answer(404, b'{"error":"not found"}')
        if owner.token is not None and headers.get("authorization") != owner.token:
            record(401, False)
            return self.answer(401, b"")
        if len(body) > owner.max_body:
            record(413, False)
            return self.answer(413, b'{"error":"request entity too large"}')
        try:
            json.loads(body)
        except ValueError:
            record(400, False)
            return self.answer(400, b'{"error":"invalid JSON"}')
        answer = owner._next_answer()
        if answer.drop:
            record(0, False)
            return self.reset()
        if self.stall(answer.delay):
            return
        accepted = 200 <= answer.status < 300
        record(answer.status, accepted)
        if self.stall(answer.delay_after):
            return
        if answer.trickle or answer.broken:
            return self._write_raw(answer)
        self.answer(answer.status, answer.body, answer.headers)

    def _write_raw(self, answer: Answer) -> None:
        self.close_connection = True
        raw = answer.raw()
        try:
            if not answer.trickle:
                self.wfile.write(raw)
                return
            for i in range(len(raw)):
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                if self.stall(answer.trickle):
                    return
        except OSError:  # the client gave up
            pass

    def _register(self, body: bytes, headers: Dict[str, str], arrived: float) -> None:
        owner = self.server_ref
        answer = (Answer(401) if owner.token is not None
                  and headers.get("authorization") != owner.token
                  else owner._next_register_answer())

        def record(status: int) -> None:
            owner._record_registration(Received("POST", self.path, headers, body, status,
                                                200 <= status < 300, arrived))

        if answer.drop:
            record(0)
            return self.reset()
        if self.stall(answer.delay):
            return
        record(answer.status)
        if answer.trickle or answer.broken:
            return self._write_raw(answer)
        self.answer(answer.status, answer.body, answer.headers)


__all__ = ["Answer", "Received", "ScriptedServer", "refused_url"]

