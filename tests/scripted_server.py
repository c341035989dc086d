"""A real HTTP server on 127.0.0.1 that answers POST /api/client/metrics from a script.

Tests use it instead of mocking ``requests``: the agent speaks real HTTP, and the server
records every request and adds up what it accepted, the way Unleash would.

    with ScriptedServer() as server:
        server.script(500, Answer(429, headers={"Retry-After": "1"}), Answer(drop=True))
        ...                     # answers are used one per POST, then ``server.default``
        server.totals()         # what the accepted bodies add up to
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Union


@dataclass
class Answer:
    """One scripted answer.

    ``delay`` waits before answering (the client may time out; nothing is stored).
    ``delay_after`` stores the body as accepted, then stalls before answering: the case
    where a client that gives up and retries counts the body twice.
    ``drop`` closes the connection with a reset and no answer at all.
    """

    status: int = 202
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    delay_after: float = 0.0
    drop: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: Dict[str, str]  # lower-case names
    body: bytes
    status: int  # 0 when the connection was dropped
    accepted: bool
    at: float  # time.monotonic() on arrival


class ScriptedServer:
    """A threaded HTTP/1.1 server on an ephemeral loopback port; see the module docstring."""

    def __init__(self, *, token: Optional[str] = None, max_body: int = 100_000) -> None:
        self.token = token
        self.max_body = max_body
        self.default: Union[int, Answer] = 202
        self.requests: List[Received] = []
        self._script: List[Union[int, Answer]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set = set()  # open client sockets, closed by stop()
        self.port = 0
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        httpd = ThreadingHTTPServer.__new__(ThreadingHTTPServer)
        httpd.allow_reuse_address = True
        httpd.daemon_threads = True
        ThreadingHTTPServer.__init__(httpd, ("127.0.0.1", self.port), handler)
        self.port = httpd.server_address[1]
        self._closing.clear()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; stalled handlers are told to give up (bounded)."""
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        # A server that is down answers nothing, on kept-alive connections neither.
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def restart(self) -> None:
        """Stop, then listen again on the same port (a server that went down and came back)."""
        self.stop()
        for _ in range(50):  # bounded: the port may take a moment to be free again
            try:
                self.start()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"could not listen on port {self.port} again")

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    # -- script and results ------------------------------------------------------------------

    def script(self, *answers: Union[int, Answer]) -> None:
        """Queue answers, one per POST to the metrics endpoint."""
        with self._lock:
            self._script.extend(answers)

    def _next_answer(self) -> Answer:
        with self._lock:
            answer = self._script.pop(0) if self._script else self.default
        return answer if isinstance(answer, Answer) else Answer(status=answer)

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def accepted_documents(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [json.loads(r.body) for r in self.requests if r.accepted]

    def totals(self) -> Dict[str, Any]:
        """What the accepted bodies add up to: counts summed, gauges last, by series."""
        flags: Dict[str, Dict[str, Any]] = {}
        counters: Dict[Any, float] = {}
        gauges: Dict[Any, float] = {}
        histograms: Dict[Any, Dict[str, Any]] = {}
        for document in self.accepted_documents():
            for name, toggle in document["bucket"]["toggles"].items():
                total = flags.setdefault(name, {"yes": 0, "no": 0, "variants": {}})
                total["yes"] += toggle["yes"]
                total["no"] += toggle["no"]
                for variant, n in toggle.get("variants", {}).items():
                    total["variants"][variant] = total["variants"].get(variant, 0) + n
            for metric in document.get("impactMetrics") or []:
                for sample in metric["samples"]:
                    key = (metric["name"], frozenset((sample.get("labels") or {}).items()))
                    if metric["type"] == "counter":
                        counters[key] = counters.get(key, 0) + sample["value"]
                    elif metric["type"] == "gauge":
                        gauges[key] = sample["value"]
                    else:
                        total = histograms.setdefault(key, {"count": 0, "sum": 0.0,
                                                            "buckets": {}})
                        total["count"] += sample["count"]
                        total["sum"] += sample["sum"]
                        for bucket in sample["buckets"]:
                            le = bucket["le"]
                            total["buckets"][le] = total["buckets"].get(le, 0) + bucket["count"]
        return {"flags": flags, "counters": counters, "gauges": gauges, "histograms": histograms}

    def wait_for(self, predicate: Callable[[ScriptedServer], bool], timeout: float = 10) -> bool:
        """Poll ``predicate(self)`` until true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_ref._lock:
            self.server_ref._connections.add(self.connection)

    def finish(self) -> None:
        with self.server_ref._lock:
            self.server_ref._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        owner = self.server_ref
        arrived = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}

        def record(status: int, accepted: bool) -> None:
            owner._record(Received("POST", self.path, headers, body, status, accepted, arrived))

        if self.path != "/api/client/metrics":
            record(404, False)
            return self._answer(404, b'{"error":"not found"}')
        if owner.token is not None and headers.get("authorization") != owner.token:
            record(401, False)
            return self._answer(401, b"")
        if len(body) > owner.max_body:
            record(413, False)
            return self._answer(413, b'{"error":"request entity too large"}')
        try:
            json.loads(body)
        except ValueError:
            record(400, False)
            return self._answer(400, b'{"error":"invalid JSON"}')
        answer = owner._next_answer()
        if answer.drop:
            record(0, False)
            # SO_LINGER 0: close with a reset, the way a crashing proxy would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if answer.delay and owner._closing.wait(answer.delay):
            self.close_connection = True
            return
        accepted = 200 <= answer.status < 300
        record(answer.status, accepted)
        if answer.delay_after and owner._closing.wait(answer.delay_after):
            self.close_connection = True
            return
        self._answer(answer.status, answer.body, answer.headers)

    def _answer(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None
                ) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up first
            self.close_connection = True


def refused_url() -> str:
    """An http://127.0.0.1 URL on which nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"
