"""A request body read as unleash-server 8.2.0 reads one (Node's HTTP parser, Express's
``body-parser``), down to the JSON text, or refused with the status it answers.

>>> decode_body(b'{"a": 1}', "application/json; charset=utf-8", None, 100)
'{"a": 1}'
"""

from __future__ import annotations

import codecs
import re
import zlib
from io import BufferedIOBase
from typing import List, Optional

_DIGITS = re.compile(r"[0-9]+")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n?\Z")


class Refused(Exception):
    """The server answers ``status``; ``close``: where the next request starts is unknown."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.close = close


def read_body(rfile: BufferedIOBase, lengths: List[str], transfer_encoding: Optional[str],
              limit: int, drain: int) -> bytes:
    """The body's bytes as sent (at most ``drain``); raises :class:`Refused`."""
    try:
        if transfer_encoding is None:
            return _read_framed(rfile, lengths, limit, drain)
        codings = [c.strip().lower() for c in transfer_encoding.split(",")]
        if codings[-1] != "chunked":
            raise Refused(400, f"Transfer-Encoding {transfer_encoding!r} is not chunked",
                          close=True)
        return _read_chunked(rfile, limit, drain)
    except TimeoutError:
        raise Refused(408, "the body did not arrive in time", close=True) from None


def decode_body(raw: bytes, content_type: Optional[str], content_encoding: Optional[str],
                limit: int) -> str:
    """The JSON text of a body read by :func:`read_body`; raises :class:`Refused`."""
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
    inflated = _inflated(raw, (content_encoding or "identity").strip().lower(), limit)
    # As iconv-lite: invalid sequences replaced, a byte-order mark dropped.
    return codec.decode(inflated, "replace")[0].removeprefix("\ufeff")


def content_length(values: List[str]) -> Optional[int]:
    """The body's length; None unless every ``Content-Length`` is the same plain decimal."""
    lengths = {value.strip() for value in values}
    if not lengths:
        return 0
    if len(lengths) != 1:
        return None
    (length,) = lengths
    if not _DIGITS.fullmatch(length):
        return None
    digits = length.lstrip("0") or "0"
    # Past any limit anyway, and int() refuses thousands of digits.
    return int(digits) if len(digits) <= 18 else 10 ** 18


def _read_framed(rfile: BufferedIOBase, lengths: List[str], limit: int, drain: int) -> bytes:
    length = content_length(lengths)
    if length is None:
        raise Refused(400, f"invalid Content-Length: {lengths}", close=True)
    body = rfile.read(min(length, drain))
    if len(body) < min(length, drain):
        raise Refused(400, f"body shorter than its Content-Length: {len(body)} of {length} "
                      "bytes", close=True)
    if length > limit:
        raise Refused(413, f"request entity too large: {length} bytes, limit {limit}",
                      close=length > drain)
    return body


def _read_chunked(rfile: BufferedIOBase, limit: int, drain: int) -> bytes:
    chunks: List[bytes] = []
    size = 0
    while True:
        line = _readline(rfile)
        match = _CHUNK_SIZE.match(line)
        if match is None:
            raise Refused(400, "a chunk size is not hexadecimal", close=True)
        n = int(match.group(1), 16)
        if n == 0:
            break
        if size + n > drain:
            raise Refused(413, f"request entity too large: over {drain} bytes", close=True)
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
