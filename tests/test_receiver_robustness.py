"""The development receiver under abuse, over raw sockets on 127.0.0.1: malformed lengths get
an answer, short bodies and stalled connections time out, a slow client blocks nobody, and
every view can be read while bodies arrive from several threads.

Every socket has a bounded timeout: a receiver that hangs fails the test instead of hanging
it. Nothing here asserts on how long anything took.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import zlib
from typing import List, Tuple

import pytest
import requests

from impactagent.devtools.received import LOG_SIZE
from impactagent.devtools.received_exposition import text_format
from impactagent.devtools.received_views import page
from impactagent.devtools.receiver import READ_TIMEOUT, Receiver

TOKEN = "default:production.robustness"
HEADERS = {"Authorization": TOKEN, "Content-Type": "application/json"}
#: The test's own patience with a socket: far longer than the receivers' read timeout.
PATIENCE = 10.0


@pytest.fixture
def receiver():
    with Receiver(read_timeout=0.5) as running:
        yield running


def connect(receiver: Receiver) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=PATIENCE)
    sock.settimeout(PATIENCE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by PATIENCE per
    read: a server that neither answers nor closes raises socket.timeout)."""
    chunks = []
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    raise AssertionError("the server kept sending")


def request(content_lengths: List[str], body: bytes) -> bytes:
    head = "".join(f"Content-Length: {v}\r\n" for v in content_lengths)
    return (f"POST /api/client/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{head}\r\n").encode() + body


def status_and_body(answer: bytes) -> Tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def valid_body(with_a_problem: bool = False) -> bytes:
    """One flag count and one counter increment; with a problem a server skips quietly (a
    flag with no counts), so the body is still taken whole."""
    toggles = {"beta": {"yes": 1, "no": 0, "variants": {}}}
    if with_a_problem:
        toggles["idle"] = {"yes": 0, "no": 0, "variants": {}}
    return json.dumps({
        "appName": "raw", "environment": "production",
        "bucket": {"start": "2026-11-25T10:15:00.000Z", "stop": "2026-11-25T10:16:00.000Z",
                   "toggles": toggles},
        "impactMetrics": [{"name": "jobs_total", "help": "Jobs", "type": "counter", "samples": [
            {"labels": {"appName": "raw", "environment": "production"}, "value": 1}]}],
    }).encode()


# -- malformed lengths, short bodies, stalls -----------------------------------------------


@pytest.mark.parametrize("lengths", [["abc"], ["-1"], ["1e3"], ["+2"], ["2", "5"], [""],
                                     ["0x10"]])
def test_a_malformed_content_length_is_answered_400_and_the_connection_closed(
        receiver, lengths):
    with connect(receiver) as sock:
        sock.sendall(request(lengths, b"{}"))
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 400
    assert "Content-Length" in answer["error"]
    assert receiver.received.bodies_accepted == 0


def test_two_equal_content_lengths_are_one_length(receiver):
    body = valid_body()
    with connect(receiver) as sock:
        sock.sendall(request([str(len(body))] * 2, body).replace(
            b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 202


def test_a_chunked_body_is_read_as_the_server_reads_it(receiver):
    """unleash-server takes a chunked body (Node reads it): 202 and stored, with extensions
    and trailers; the server answered 202 where the receiver answered 411."""
    body = b'{"appName": "chunked", "bucket": null}'
    with connect(receiver) as sock:
        sock.sendall(b"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"5;ext=1\r\n" + body[:5] + b"\r\n"
                     + f"{len(body) - 5:x}".encode() + b"\r\n" + body[5:] + b"\r\n"
                     + b"0\r\nX-Trailer: 1\r\n\r\n")
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 202
    assert receiver.received.log[-1].app_name == "chunked"


@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"9\r\n{}\r\n0\r\n\r\n"])
def test_a_broken_chunked_body_is_answered_400_and_the_connection_closed(receiver, chunks):
    with connect(receiver) as sock:
        sock.sendall(b"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunks)
        status, _ = status_and_body(read_until_closed(sock))
    assert status in (400, 408)


def test_a_body_that_stops_arriving_times_out_with_408(receiver):
    with connect(receiver) as sock:
        sock.sendall(request(["100"], b'{"appName": '))  # and then nothing, socket open
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 408 and "did not arrive" in answer["error"]


def test_a_body_cut_short_by_the_client_is_answered_400(receiver):
    with connect(receiver) as sock:
        sock.sendall(request(["100"], b'{"appName": '))
        sock.shutdown(socket.SHUT_WR)  # the client is done sending
        status, answer = status_and_body(read_until_closed(sock))
    assert status == 400 and "shorter than its Content-Length" in answer["error"]


@pytest.mark.parametrize("sent", [b"", b"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\n"])
def test_a_stalled_connection_is_closed_after_the_read_timeout(receiver, sent):
    with connect(receiver) as sock:
        sock.sendall(sent)
        assert read_until_closed(sock) == b""  # closed without an answer, not kept forever


def test_an_idle_keep_alive_connection_is_closed_after_the_read_timeout(receiver):
    body = valid_body()
    with connect(receiver) as sock:
        sock.sendall(request([str(len(body))], body))  # keep-alive: HTTP/1.1's default
        # Answered, then closed once idle for the read timeout (read_until_closed returns).
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 202


def test_slow_clients_do_not_block_the_others(receiver):
    stalled = [connect(receiver) for _ in range(8)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /api/client/metrics HTTP/1.1\r\nContent-Le")  # slowloris
        with requests.Session() as session:
            session.trust_env = False
            answer = session.post(receiver.api_url + "/client/metrics", data=valid_body(),
                                  headers=HEADERS, timeout=PATIENCE)
        assert answer.status_code == 202
        assert receiver.totals("raw")["flags"]["beta"]["yes"] == 1
    finally:
        for sock in stalled:
            sock.close()


def test_the_read_timeout_is_ten_seconds_by_default():
    assert READ_TIMEOUT == 10.0
    assert Receiver().read_timeout == READ_TIMEOUT


# -- views read while bodies arrive --------------------------------------------------------


def test_every_view_is_safe_and_consistent_while_threads_post():
    posters, per_poster = 4, 60
    with Receiver(read_timeout=5) as receiver:
        errors: List[BaseException] = []

        def post(index: int) -> None:
            try:
                with requests.Session() as session:
                    session.trust_env = False
                    for _ in range(per_poster):
                        answer = session.post(
                            receiver.api_url + "/client/metrics", timeout=PATIENCE,
                            data=valid_body(with_a_problem=True),
                            headers=HEADERS)
                        assert answer.status_code == 202, answer.text
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(posters)]
        for thread in threads:
            thread.start()
        reads = 0
        try:
            while any(t.is_alive() for t in threads) and reads < 100_000:
                reads += 1
                totals = receiver.totals("raw")
                # One body adds one flag count and one counter increment: a total read in
                # two steps could see one without the other.
                yes = totals["flags"].get("beta", {"yes": 0})["yes"]
                assert sum(totals["counters"].values()) == yes
                problems = receiver.problems()
                assert all("idle" in problem for problem in problems)
                assert len(receiver.received.log) <= LOG_SIZE
                receiver.received.as_json()
                text_format(receiver.received)
                page(receiver.received, receiver.url)
                assert receiver.received.bodies_accepted >= 0
        finally:
            for thread in threads:
                thread.join(PATIENCE * 2)
        assert errors == []
        assert reads > 0
        expected = posters * per_poster
        totals = receiver.totals("raw")
        assert totals["flags"]["beta"]["yes"] == expected
        assert sum(totals["counters"].values()) == expected
        assert receiver.received.bodies_accepted == expected


def encoded_request(headers: str, body: bytes) -> bytes:
    return (f"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


@pytest.mark.parametrize("headers, body, status", [
    # 20 MB of zeros in 20 kB of gzip: inflated only up to the limit, then 413.
    ("Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
     gzip.compress(b"0" * 20_000_000), 413),
    ("Content-Type: application/json\r\nContent-Encoding: gzip\r\n", b"not gzip", 400),
    ("Content-Type: application/json\r\nContent-Encoding: deflate\r\n",
     zlib.compress(b'{"appName": "x"}')[2:-4], 400),  # raw deflate: no zlib header
    ("Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
     gzip.compress(b'{"appName": "x"}')[:-6], 400),  # cut short
    ("Content-Type: application/json\r\nContent-Encoding: x-gzip\r\n",
     gzip.compress(b'{"appName": "x"}'), 415),
    ("Content-Type: application/json; charset=utf-99\r\n", b'{"appName": "x"}', 415),
    ("Content-Type: application/json; charset=\"UTF-16LE\"\r\n",
     '{"appName": "x"}'.encode("utf-16-le"), 202),
    ("Content-Type: application/json\r\n",
     b'{"appName": "x", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 202),
])
def test_encoded_bodies_are_bounded_and_answered(receiver, headers, body, status):
    with connect(receiver) as sock:
        sock.sendall(encoded_request(headers, body))
        answer = read_until_closed(sock)
    assert status_and_body(answer)[0] == status, answer[:300]


def test_a_chunk_size_past_every_limit_is_refused_without_reading_it(receiver):
    with connect(receiver) as sock:
        sock.sendall(b"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"fffffffffffffff\r\n{}")
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 413


#: Measured against unleash-server 8.2.0 (raw requests, one chunk): a transfer coding before
#: ``chunked`` is not undone (the body is read as it came), and ``chunked`` not last is 400.
TRANSFER_CODINGS = [
    ("gzip, chunked", False, 202),
    ("gzip, chunked", True, 400),  # gzipped bytes, read as they came: not JSON
    ("deflate, chunked", False, 202),
    ("identity, chunked", False, 202),
    ("chunked, gzip", False, 400),
]


@pytest.mark.parametrize("coding, gzipped, status", TRANSFER_CODINGS)
def test_transfer_codings_are_answered_as_the_server_answers_them(receiver, coding, gzipped,
                                                                  status):
    body = b'{"appName": "coded", "bucket": null}'
    payload = gzip.compress(body) if gzipped else body
    with connect(receiver) as sock:
        sock.sendall(b"POST /api/client/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: "
                     + coding.encode() + b"\r\n\r\n"
                     + f"{len(payload):x}".encode() + b"\r\n" + payload + b"\r\n0\r\n\r\n")
        answer, _ = status_and_body(read_until_closed(sock))
    assert answer == status
