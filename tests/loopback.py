"""A threaded HTTP/1.1 server on an ephemeral 127.0.0.1 port, for test servers to build on.

It can be stopped and started again on the same port (a server that went down and came
back), and ``stop()`` also closes the connections clients kept alive, because a server that
is down answers nothing on those either. ``ScriptedServer`` and the end-to-end
``FaultProxy`` add what they do with a request by subclassing :class:`LoopbackHandler`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar, Dict, Optional


class LoopbackServer:
    """Serves ``handler_class`` on 127.0.0.1; starts at once, on a free port."""

    handler_class: ClassVar[type]  # a LoopbackHandler subclass

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Set by stop(): stalled handlers give up.
        self.stopping = threading.Event()
        self._connections: set = set()  # open client sockets, closed by stop()
        self.port = 0
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.start()

    def start(self) -> None:
        handler = type("Handler", (self.handler_class,), {"server_ref": self})
        httpd = ThreadingHTTPServer.__new__(ThreadingHTTPServer)
        httpd.allow_reuse_address = True
        httpd.daemon_threads = True
        ThreadingHTTPServer.__init__(httpd, ("127.0.0.1", self.port), handler)
        self.port = httpd.server_address[1]
        self.stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; stalled handlers are told to give up (bounded)."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self.lock:
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

    def track(self, connection: socket.socket) -> None:
        """A handler's connection, to be shut down by ``stop()`` if still open."""
        with self.lock:
            self._connections.add(connection)

    def forget(self, connection: socket.socket) -> None:
        """A handler's connection that ended by itself."""
        with self.lock:
            self._connections.discard(connection)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"


class LoopbackHandler(BaseHTTPRequestHandler):
    """Tracks its connection for ``stop()``, stays quiet, and answers or resets."""

    protocol_version = "HTTP/1.1"
    server_ref: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.server_ref.track(self.connection)

    def finish(self) -> None:
        self.server_ref.forget(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def stall(self, seconds: float) -> bool:
        """Wait ``seconds``; True if the server was stopped meanwhile (then the connection
        is to be closed without an answer)."""
        if seconds and self.server_ref.stopping.wait(seconds):
            self.close_connection = True
            return True
        return False

    def reset(self) -> None:
        """Close the connection with a TCP reset and no answer, as a crashing proxy would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def answer(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None,
               content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up first
            self.close_connection = True


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def refused_url() -> str:
    """An http://127.0.0.1 URL on which nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def listening_socket() -> socket.socket:
    """A TCP socket already listening on 127.0.0.1, at a port the kernel chose, for a server
    process to inherit: gunicorn's ``--bind fd://<fileno>`` with ``pass_fds=[fileno]``.

    Better than a free port handed over by number, on two counts. Between the asking and
    gunicorn's own bind another process (the CI runs four suites at once) can take the
    port, and the test then talks to that process instead. And a client can connect at
    once, without polling: its request waits in the listen queue until a worker accepts it,
    however long the workers take to start on a loaded machine, where a short per-request
    timeout (with only connection errors retried) failed while they were still starting.
    Close the test's copy once the server process has started, so that a server that died
    refuses connections instead of leaving them queued."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock
