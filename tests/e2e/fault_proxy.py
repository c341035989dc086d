"""An HTTP proxy between the agent and the real server that misbehaves on cue.

Each ``POST /api/client/metrics`` takes the next :class:`Fault` from the script (then
``FORWARD``). Every other request is passed through untouched. What each fault means for the
data is the point of the end-to-end tests:

=================  ============================================  ============================
fault              what the proxy does                           what the server stores
=================  ============================================  ============================
``FORWARD``        passes the request on, relays the answer      the body, once
``status(n)``      answers ``n`` itself (``Retry-After`` opt.)   nothing
``RESET``          closes the connection with a TCP reset        nothing
``stall(s)``       holds the request ``s`` seconds, then closes  nothing
``stall_after(s)`` forwards, then holds the answer ``s`` seconds the body, and again on retry
``CORRUPT``        forwards the body cut in half                 nothing (the server says 400)
=================  ============================================  ============================

``stall_after`` is the one fault that can count a body twice: the server stored it, the
client never heard so, and a client that resends cannot know better. The agent counts such
bodies as ``possibly_duplicated_events``; the tests check that number against the server.

If the server is down, the proxy answers 502, as a real reverse proxy does.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from tests.loopback import LoopbackHandler, LoopbackServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "proxy-connection"}


@dataclass(frozen=True)
class Fault:
    """What the proxy does to one metrics POST; see the module's table."""

    name: str
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    reset: bool = False
    stall: float = 0.0
    stall_after: float = 0.0
    corrupt: bool = False


FORWARD = Fault("forward")
RESET = Fault("reset", reset=True)
CORRUPT = Fault("corrupt", corrupt=True)


def status(code: int, retry_after: Optional[str] = None) -> Fault:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(f"{code}" + (f" (Retry-After {retry_after})" if retry_after else ""),
                 status=code, headers=headers)


def stall(seconds: float) -> Fault:
    return Fault(f"stall {seconds:g} s", stall=seconds)


def stall_after(seconds: float) -> Fault:
    return Fault(f"stall {seconds:g} s after the server answered", stall_after=seconds)


@dataclass
class Passage:
    """One metrics POST through the proxy."""

    fault: str
    forwarded: bool  # did the server get the body?
    upstream_status: int  # what the server answered (0: not forwarded, or unreachable)
    relayed_status: int  # what the agent got (0: nothing, the connection was closed)


class FaultProxy(LoopbackServer):
    """Forwards to ``upstream`` (an ``http://127.0.0.1:port`` URL) with scripted faults."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.passages: List[Passage] = []
        self._script: List[Fault] = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        return _ProxyHandler

    def script(self, *faults: Fault) -> None:
        """Queue faults, one per metrics POST; ``FORWARD`` once the script is used up."""
        with self.lock:
            self._script.extend(faults)

    def pending_faults(self) -> int:
        with self.lock:
            return len(self._script)

    def _next_fault(self) -> Fault:
        with self.lock:
            return self._script.pop(0) if self._script else FORWARD

    def _log(self, passage: Passage) -> None:
        with self.lock:
            self.passages.append(passage)

    def faults_seen(self) -> Dict[str, int]:
        """How many metrics POSTs met each fault (``forward`` included)."""
        seen: Dict[str, int] = {}
        with self.lock:
            for passage in self.passages:
                seen[passage.fault] = seen.get(passage.fault, 0) + 1
        return seen


class _ProxyHandler(LoopbackHandler):
    server_ref: FaultProxy

    def do_GET(self) -> None:
        self._pass_through(b"")

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path.split("?")[0] != "/api/client/metrics":
            return self._pass_through(body)
        proxy = self.server_ref
        fault = proxy._next_fault()
        if fault.reset:
            proxy._log(Passage(fault.name, False, 0, 0))
            return self.reset()
        if fault.stall:
            proxy._log(Passage(fault.name, False, 0, 0))
            self.stall(fault.stall)
            self.close_connection = True  # and never forward: the client has given up
            return
        if fault.status:
            proxy._log(Passage(fault.name, False, 0, fault.status))
            return self.answer(fault.status, b"", dict(fault.headers))
        sent = body[: len(body) // 2] if fault.corrupt else body
        upstream_status, headers, answer = self._forward(sent)
        if fault.stall_after:
            # Hold the server's answer until the client has given up, then close: the client
            # never learns that the body was stored.
            proxy._log(Passage(fault.name, upstream_status != 0, upstream_status, 0))
            self.stall(fault.stall_after)
            self.close_connection = True
            return
        proxy._log(Passage(fault.name, upstream_status != 0, upstream_status, upstream_status
                           or 502))
        self._relay(upstream_status, headers, answer)

    def _pass_through(self, body: bytes) -> None:
        self._relay(*self._forward(body))

    def _forward(self, body: bytes) -> tuple:
        """Send this request upstream; (status, headers, body), status 0 if unreachable."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.server_ref.upstream, timeout=30)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        except OSError:
            return 0, [], b""
        finally:
            connection.close()

    def _relay(self, status: int, headers: list, body: bytes) -> None:
        if status == 0:
            return self.answer(502, b'{"error":"upstream unreachable"}')
        kept = {k: v for k, v in headers
                if k.lower() not in HOP_BY_HOP | {"content-length", "content-type"}}
        content_type = next((v for k, v in headers if k.lower() == "content-type"),
                            "application/octet-stream")
        self.answer(status, body, kept, content_type=content_type)
