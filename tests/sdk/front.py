"""The server an official SDK is pointed at: flags from the plan, metrics to the receiver.

An SDK needs ``GET /api/client/features`` before it evaluates anything, and the receiver
does not serve flags. ``SdkFront`` answers that itself (``plan.FEATURES``) and relays every
``POST`` under ``/api/client/`` (metrics and register) to the receiver byte for byte, with
the SDK's headers, and the receiver's answer back to the SDK. So the SDK talks to the
receiver as to a real server, and every body it sent is kept as it was on the wire, with the
answer it got and the phase of the run it arrived in.

Two small control routes serve a runner in another process: ``PUT /_phase/<name>`` starts
a phase, ``GET /_posts`` says how many metrics bodies arrived so far.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Dict, List

from tests.loopback import LoopbackHandler, LoopbackServer
from tests.sdk.plan import FEATURES

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "proxy-connection"}


@dataclass(frozen=True)
class Exchange:
    """One POST an SDK made, as it went over the wire, and what the receiver answered."""

    phase: str
    path: str
    body: bytes
    status: int
    answer: bytes


class SdkFront(LoopbackServer):
    """See the module docstring; ``receiver_url`` is the receiver's ``http://host:port``."""

    def __init__(self, receiver_url: str) -> None:
        self.receiver_url = receiver_url
        self.phase = "start"
        self.exchanges: List[Exchange] = []
        self._record_lock = threading.Lock()
        super().__init__()

    def record(self, exchange: Exchange) -> None:
        with self._record_lock:
            self.exchanges.append(exchange)

    def metrics_posts(self) -> List[Exchange]:
        """Every metrics body so far, in arrival order (a copy)."""
        with self._record_lock:
            return [e for e in self.exchanges if e.path == "/api/client/metrics"]


class _FrontHandler(LoopbackHandler):
    server_ref: SdkFront

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/client/features":
            return self.answer(200, json.dumps(FEATURES).encode())
        if path == "/_posts":
            count = len(self.server_ref.metrics_posts())
            return self.answer(200, json.dumps({"metrics": count}).encode())
        self.answer(404, b'{"error": "not served here"}')

    def do_PUT(self) -> None:
        self.read_body()
        if self.path.startswith("/_phase/"):
            self.server_ref.phase = self.path[len("/_phase/"):]
            return self.answer(204, b"")
        self.answer(404, b'{"error": "not served here"}')

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        body = self.read_body()
        if not path.startswith("/api/client/"):
            return self.answer(404, b'{"error": "not served here"}')
        phase = self.server_ref.phase  # the phase the body arrived in
        status, answer, content_type = self._relay(body)
        self.server_ref.record(Exchange(phase, path, body, status, answer))
        self.answer(status, answer, content_type=content_type)

    def _relay(self, body: bytes) -> tuple[int, bytes, str]:
        headers: Dict[str, str] = {name: value for name, value in self.headers.items()
                                   if name.lower() not in HOP_BY_HOP}
        host = self.server_ref.receiver_url.split("://", 1)[1]
        connection = http.client.HTTPConnection(host, timeout=10)
        try:
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            return (response.status, response.read(),
                    response.getheader("Content-Type") or "application/json")
        finally:
            connection.close()


SdkFront.handler_class = _FrontHandler
