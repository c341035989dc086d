"""A development receiver: ``POST /api/client/metrics`` on 127.0.0.1, answered as a real
Unleash server answers, with every body checked strictly and shown as it aggregates.

>>> from impactagent import Agent
>>> with Receiver() as receiver:
...     agent = Agent("shop", url=receiver.api_url, api_key="default:development.local")
...     agent.record_flag("beta", True)
...     agent.close().ok
...     receiver.received.flags("shop")
True
{'beta': {'yes': 1, 'no': 0, 'variants': {}}}

Each connection has a thread of its own, so a slow client holds up no other; no token is
ever logged. A body is read as Node's HTTP parser and Express's ``body-parser`` read it, or
refused with the status they answer.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hmac
import json
import logging
import re
import threading
import time
import zlib
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote_plus

from ..core.charts import ChartConfig
from ..core.payload import environment_from_token
from ..server_rules.jsvalues import js_string
from ..server_rules.validation import MAX_BODY, REJECTED, check_document, parse_body
from .impact import impact
from .received import ReceivedMetrics, Request
from .received_exposition import exposition
from .received_views import page, previews
from .timeseries import SeriesStore

logger = logging.getLogger("impactagent.devtools.receiver")

#: Bodies over the limit are still read up to this size: the client reads the 413, not a reset.
DRAIN_LIMIT = 16 * 1024 * 1024
READ_TIMEOUT = 10.0


class Receiver:
    """The receiver's HTTP server, run on a daemon thread; a context manager."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", token: str | None = None,
                 max_body: int = MAX_BODY, strict: bool = False, read_timeout: float = READ_TIMEOUT,
                 series: SeriesStore | None = None, charts: Sequence[ChartConfig] = (),
                 features: dict[str, Any] | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.max_body = max_body
        self.strict = strict
        self.read_timeout = read_timeout
        self.received = ReceivedMetrics(series)
        self.charts = list(charts)
        #: What ``GET /api/client/features`` serves (None: 404).
        self.features = None if features is None else json.dumps(features).encode()
        self._running: tuple[ThreadingHTTPServer, threading.Thread] | None = None

    def start(self) -> Receiver:
        """Start serving (idempotent); port 0 picks a free port."""
        if self._running is None:
            handler = type("Handler", (_Handler,), {"receiver": self, "timeout": self.read_timeout})
            server = ThreadingHTTPServer((self.host, self.port), handler)
            server.daemon_threads = True
            self.port = server.server_address[1]
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name="impactagent-receiver", daemon=True)
            thread.start()
            self._running = server, thread
        return self

    def stop(self) -> None:
        if self._running is not None:
            server, thread = self._running
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._running = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The ``url`` to give an agent or an SDK."""
        return self.url + "/api"

    def totals(self, app_name: str | None = None) -> dict[str, Any]:
        """What was received (of one app, if given): ``flags``, ``counters``, ``gauges``,
        ``histograms``, each series keyed by ``(metric name, frozenset of labels)``."""
        return self.received.totals(app_name)

    def problems(self) -> list[str]:
        """Every problem found in the logged bodies (empty: all were clean)."""
        return self.received.problems()

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` until true or ``timeout`` seconds pass (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    def allows(self, authorization: str | None, *, view: bool = False, query: str = "") -> bool:
        """True when no token is configured or the request carries it: the whole
        ``Authorization`` header or after ``Bearer``, and for a ``view`` also as HTTP Basic's
        password or ``?token=`` in the ``query``."""
        if self.token is None:
            return True
        offered = [(authorization or "").strip(), _bearer(authorization)]
        if view:
            offered += [_basic_password(authorization), *parse_qs(query).get("token", [])]
        # No early exit: the answer's timing says nothing.
        return any([hmac.compare_digest(c.encode(), self.token.encode()) for c in offered])

    def answer_metrics(self, body: bytes | str, authorization: str | None, *,
                       size: int | None = None) -> tuple[int, dict[str, Any]]:
        """``(status, JSON answer)`` to a body (``size``: as sent), aggregated if taken."""
        if not self.allows(authorization):
            return 401, {"error": "a valid client token is required in Authorization"}
        document, problems = parse_body(body)
        if document is not None:
            problems = check_document(document)
        app = js_string(document.get("appName", "?")) if document else "?"
        rejected = any(p.outcome == REJECTED for p in problems)
        environment = environment_from_token(_bearer(authorization) or authorization,
                                             (document or {}).get("environment") or "default")
        if document is not None and not rejected:
            problems += self.received.window_problems(document, environment)
        status = 400 if rejected or (self.strict and problems) else 202
        if status == 202 and document is not None:
            problems += self.received.add(document, environment, problems)
        texts = [str(p) for p in problems]
        self.received.note(Request(time.time(), app, status,
                                   len(body) if size is None else size, texts))
        if texts:
            logger.warning("impactagent receiver: body from %r answered %d: %s", app, status,
                           "; ".join(texts))
        if status == 400:
            return 400, {"error": "invalid metrics body", "problems": texts}
        return 202, {"problems": texts} if texts else {}


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    protocol_version = "HTTP/1.1"
    server_version = "impactagent-receiver"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), redacted(format % args))

    def _allowed(self, *, view: bool) -> bool:
        """The token check of every route; answers 401 itself when it fails."""
        query = self.path.partition("?")[2]
        if self.receiver.allows(self.headers.get("Authorization"), view=view, query=query):
            return True
        self._json(401, {"error": "a valid token is required in Authorization"
                         + (" (or ?token=)" if view else "")},
                   {"WWW-Authenticate": 'Basic realm="impactagent receiver"'} if view else None)
        return False

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        try:
            raw = read_body(self.rfile, self.headers, self.receiver.max_body)
            if not self._allowed(view=False):
                return None
            if path == "/api/client/metrics":
                text = decode_body(raw, self.headers, self.receiver.max_body)
                status, answer = self.receiver.answer_metrics(
                    text, self.headers.get("Authorization"), size=len(raw))
                return self._json(status, answer)
        except Refused as refused:
            self.close_connection = self.close_connection or refused.close
            return self._json(refused.status, {"error": refused.message})
        if path == "/api/client/register":
            return self._json(202, {})
        self._json(404, {"error": f"no such endpoint: POST {path}"})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        received = self.receiver.received
        if path == "/api/client/features" and self.receiver.features is not None:
            if self._allowed(view=False):
                self._send(200, self.receiver.features, "application/json")
            return None
        if not self._allowed(view=True):
            return None
        if path in ("/", "/index.html", "/api/impact"):
            query = self.path.partition("?")[2]
            window = _window(query)
            if isinstance(window, str):
                return self._json(400, {"error": window})
            if path == "/api/impact":
                return self._json(200, impact(received.series, window))
            return self._send(200, page(received, self.receiver.url, window=window,
                                        query=query, charts=self.receiver.charts).encode(),
                              "text/html; charset=utf-8")
        if path == "/api/received":
            return self._json(200, received.as_json())
        if path == "/api/charts":
            return self._json(200, {"charts": previews(received.series, self.receiver.charts)})
        if path == "/metrics":
            return self._send(200, *exposition(received, self.headers.get("Accept")))
        self._json(404, {"error": f"no such page: {path}"})

    def _json(self, status: int, answer: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        body = json.dumps(answer).encode() if answer or status != 202 else b""
        self._send(status, body, "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client is gone (reset, closed, timed out): nobody to answer
            self.close_connection = True


#: A query parameter wherever a URL appears in a log line: its name, and its value.
_QUERY_PARAMETER = re.compile(r"([?&;])([^=&;?\s]*)=([^&;?\s'\"]*)")


def redacted(text: str) -> str:
    """``text`` with the value of every query parameter that names a token cut out, however
    often its name is percent-encoded (``?%74oken=``); a line that hides one in another
    value (``?a=1%26token%3D...``) is logged decoded, and cut."""
    cut = _QUERY_PARAMETER.sub(_cut_token, text)
    decoded = _decoded(cut)
    recut = _QUERY_PARAMETER.sub(_cut_token, decoded)
    return recut if recut != decoded else cut


def _cut_token(match: re.Match[str]) -> str:
    if "token" not in _decoded(match.group(2)).lower():
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}=[REDACTED]"


def _decoded(text: str) -> str:
    for _ in range(8):  # bounded: each pass undoes one layer of encoding
        once = unquote_plus(text)
        if once == text:
            break
        text = once
    return text


def _window(query: str) -> float | str | None:
    """``?window=<seconds>`` of ``/api/impact`` (None: the whole kept hour), or why not."""
    values = parse_qs(query).get("window")
    if not values:
        return None
    try:
        window = float(values[-1])
    except ValueError:
        window = float("nan")
    if not 0 < window < float("inf"):
        return f"window must be a number of seconds above 0, got {values[-1]!r}"
    return window


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _basic_password(authorization: str | None) -> str:
    """The password of HTTP Basic (what a browser sends), else ""."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


_DIGITS = re.compile(r"[0-9]+")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n?\Z")


class Refused(Exception):
    """The server answers ``status``; ``close``: where the next request starts is unknown."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.close = status, message, close


def read_body(rfile: BufferedIOBase, headers: Message, limit: int) -> bytes:
    """The body's bytes as sent (at most :data:`DRAIN_LIMIT`); raises :class:`Refused`."""
    transfer_encoding = headers.get("Transfer-Encoding")
    try:
        if transfer_encoding is None:
            return _read_framed(rfile, headers.get_all("Content-Length") or [], limit)
        if transfer_encoding.split(",")[-1].strip().lower() != "chunked":
            raise Refused(400, f"Transfer-Encoding {transfer_encoding!r} is not chunked",
                          close=True)
        return _read_chunked(rfile, limit)
    except TimeoutError:
        raise Refused(408, "the body did not arrive in time", close=True) from None


def decode_body(raw: bytes, headers: Message, limit: int) -> str:
    """The JSON text of a body read by :func:`read_body`; raises :class:`Refused`."""
    content_type = headers.get("Content-Type")
    media_type, _, parameters = (content_type or "").partition(";")
    if media_type.strip().lower() != "application/json":
        raise Refused(415, f"Content-Type {content_type!r} is not application/json")
    charset = _charset(parameters)
    if not charset.startswith("utf-"):
        raise Refused(415, f"unsupported charset {charset!r}: send UTF-8")
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        raise Refused(415, f"unsupported charset {charset!r}: send UTF-8") from None
    inflated = _inflated(raw, headers.get("Content-Encoding") or "identity", limit)
    # As iconv-lite: invalid sequences replaced, a byte-order mark dropped.
    return codec.decode(inflated, "replace")[0].removeprefix("\ufeff")


def _read_framed(rfile: BufferedIOBase, lengths: list[str], limit: int) -> bytes:
    """A body framed by its ``Content-Length``: every one given the same plain decimal."""
    given = {value.strip() for value in lengths} or {"0"}
    if len(given) != 1 or not _DIGITS.fullmatch(min(given)):
        raise Refused(400, f"invalid Content-Length: {lengths}", close=True)
    digits = min(given).lstrip("0") or "0"
    # Past any limit anyway, and int() refuses thousands of digits.
    length = int(digits) if len(digits) <= 18 else 10 ** 18
    drain = DRAIN_LIMIT
    body = rfile.read(min(length, drain))
    if len(body) < min(length, drain):
        raise Refused(400, f"body shorter than its Content-Length: {len(body)} of {length} "
                      "bytes", close=True)
    if length > limit:
        raise Refused(413, f"request entity too large: {length} bytes, limit {limit}",
                      close=length > drain)
    return body


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = _readline(rfile)
        match = _CHUNK_SIZE.match(line)
        if match is None:
            raise Refused(400, "a chunk size is not hexadecimal", close=True)
        n = int(match.group(1), 16)
        if n == 0:
            break
        if size + n > DRAIN_LIMIT:
            raise Refused(413, f"request entity too large: over {DRAIN_LIMIT} bytes", close=True)
        chunk = rfile.read(n)
        if len(chunk) < n or _readline(rfile).strip():
            raise Refused(400, "a chunk is shorter than its size", close=True)
        chunks.append(chunk)
        size += n
    while _readline(rfile).strip():  # trailers, up to the blank line that ends them
        pass
    if size > limit:
        raise Refused(413, f"request entity too large: {size} bytes, limit {limit}")
    return b"".join(chunks)


def _readline(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(65537)
    if not line or len(line) > 65536:
        raise Refused(400, "the chunked body ends early", close=True)
    return line


def _charset(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


def _inflated(raw: bytes, encoding: str, limit: int) -> bytes:
    """``raw`` inflated, never past ``limit + 1`` bytes (a small body may inflate to GB)."""
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return raw
    if encoding not in ("gzip", "deflate"):
        raise Refused(415, f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(raw, limit + 1)
    except zlib.error as error:
        raise Refused(400, f"the {encoding} body does not inflate: {error}") from None
    if len(inflated) > limit:
        raise Refused(413, f"request entity too large: over {limit} bytes inflated")
    if not inflater.eof:
        raise Refused(400, f"the {encoding} body is cut short")
    return inflated
