"""What the spool reads is a body this agent wrote, or it is set aside: never sent, never
followed, never blocking.

Real files, FIFOs, symbolic and hard links, a real server on 127.0.0.1. Every read that
could block runs in a thread joined with a timeout, so a regression fails instead of
hanging the suite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import impactagent
from impactagent.core.payload import count_events, payload_from_document, split_payload
from impactagent.delivery.spool import Spool
from tests.scripted_server import ScriptedServer, refused_url

ROOT = Path(__file__).resolve().parents[1]
START, STOP = "2026-11-25T10:00:00.000Z", "2026-11-25T10:01:00.000Z"


def document(yes: int, app: str = "shop") -> dict:
    return {"appName": app, "environment": "default", "bucket": {
        "start": START, "stop": STOP, "toggles": {"f": {"yes": yes, "no": 0, "variants": {}}}},
        "impactMetrics": [
            {"name": "jobs_total", "help": "Jobs", "type": "counter",
             "samples": [{"labels": {"appName": app, "environment": "default"}, "value": yes}]},
            {"name": "depth", "help": "Depth", "type": "gauge",
             "samples": [{"labels": {"appName": app, "environment": "default"}, "value": 1.5}]},
            {"name": "latency", "help": "Latency", "type": "histogram",
             "samples": [{"labels": {"appName": app, "environment": "default"}, "count": yes,
                          "sum": 0.5, "buckets": [{"le": 0.1, "count": 0},
                                                  {"le": "+Inf", "count": yes}]}]}]}


def body(yes: int, app: str = "shop") -> bytes:
    return json.dumps(document(yes, app)).encode()


def flush_in_thread(agent, seconds: float = 20.0):
    """``agent.flush()`` on another thread; fails (instead of hanging) if it blocks."""
    results: list = []
    worker = threading.Thread(target=lambda: results.append(agent.flush(timeout=10)),
                              daemon=True)
    worker.start()
    worker.join(seconds)
    return worker, results


def unblock_fifos(directory: Path) -> None:
    """Open every FIFO under ``directory`` for writing and close it: a reader blocked in
    ``open()`` (the old behaviour) gets end-of-file and its thread can end."""
    for path in directory.rglob("*"):
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            with contextlib.suppress(OSError):  # no reader: nothing to unblock
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def claimed(directory: Path) -> list:
    return [p.name for p in directory.iterdir() if p.name.endswith(".sending")]


def delivered_yes(server: ScriptedServer) -> list:
    return sorted(d["bucket"]["toggles"]["f"]["yes"] for d in server.accepted_documents()
                  if d["bucket"]["toggles"])


# -- item 6: files that are JSON with an appName but not a body ----------------------------

NOT_BODIES = {
    "bucket_is_a_string": {"appName": "x", "bucket": "x"},
    "no_bucket": {"appName": "x"},
    "metrics_not_a_list": dict(document(1), impactMetrics={"name": "jobs_total"}),
    "metrics_of_strings": dict(document(1), impactMetrics=["jobs_total"]),
    "sample_without_value": dict(document(1), impactMetrics=[
        {"name": "jobs_total", "help": "", "type": "counter", "samples": [{"labels": {}}]}]),
    "toggle_without_yes": dict(document(1), bucket={"start": START, "stop": STOP,
                                                   "toggles": {"f": {"no": 1}}}),
    "toggles_a_list": dict(document(1), bucket={"start": START, "stop": STOP, "toggles": []}),
    "metric_without_name": dict(document(1), impactMetrics=[
        {"help": "", "type": "counter", "samples": []}]),
    "samples_null": dict(document(1), impactMetrics=[
        {"name": "a", "help": "", "type": "counter", "samples": None}]),
    "a_list": ["appName"],
}


def test_files_that_are_not_bodies_are_set_aside_and_the_good_ones_delivered(tmp_path, caplog):
    spool = Spool(tmp_path)
    good = [spool.write(body(n)) for n in (1, 2, 3)]
    planted = []
    for index, (what, content) in enumerate(NOT_BODIES.items()):
        # Interleaved with the good files in the queue's order.
        name = f"{good[index % 3].path.stem}{index:02d}-{what}.json"
        (tmp_path / name).write_text(json.dumps(content))
        planted.append(name)
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  spool_dir=str(tmp_path))
        with caplog.at_level(logging.WARNING, logger="impactagent"):
            result = agent.flush(timeout=10)  # raised AttributeError (and others) before
            assert agent.flush(timeout=10).ok  # and every flush after it, too
        agent.close(timeout=5)
    assert result.ok and delivered_yes(server) == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == sorted(planted)
    assert claimed(tmp_path) == [] and list(tmp_path.glob("*.json")) == []
    assert agent.statistics()["dropped"] == {"spool_corrupt": len(NOT_BODIES)}
    assert sum("is corrupt" in r.getMessage() for r in caplog.records) == len(NOT_BODIES)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["", "+Inf", START]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["yes", "no", "value", "count", "le", "name", "x"]),
                      inner, max_size=3),
    max_leaves=8,
)


@st.composite
def damaged_documents(draw):
    """A valid body with one value somewhere in it replaced or removed."""
    root = document(draw(st.integers(0, 5)))
    node = root
    while True:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return root
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON)
        return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_documents())
def test_what_read_returns_can_always_be_sent(damaged):
    """Whatever a file holds, read() either hands out a body delivery can turn into a
    payload (and split, and count) or sets the file aside; it never leaves it claimed."""
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(directory)
        entry = spool.write(json.dumps(damaged).encode())
        assert entry is not None
        taken = spool.claim(entry)
        assert taken is not None
        returned = spool.read(taken)
        if returned is None:
            assert not taken.path.exists()
            assert spool.drops.as_dict() == {"spool_corrupt": 1}
            assert len(list((Path(directory) / "corrupt").iterdir())) == 1
        else:
            payload = payload_from_document(json.loads(returned))
            count_events(payload.document)
            for half in split_payload(payload):
                count_events(half.document)


# -- item 12: directory trust --------------------------------------------------------------

PERMISSIONS_APP = textwrap.dedent("""
    import os, stat, sys
    from impactagent.delivery.spool import Spool
    os.umask(0)  # the most permissive umask: the spool must not depend on it
    spool = Spool(sys.argv[1])
    entry = spool.write(sys.stdin.buffer.read())
    mode = lambda path: oct(stat.S_IMODE(os.stat(path).st_mode))
    print(mode(sys.argv[1]), mode(entry.path))
""")


def test_the_directory_is_created_0700_and_files_0600_whatever_the_umask(tmp_path):
    spool_dir = tmp_path / "new" / "spool"
    ran = subprocess.run([sys.executable, "-c", PERMISSIONS_APP, str(spool_dir)],
                         input=body(1), capture_output=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().split() == ["0o700", "0o600"]


@pytest.mark.parametrize("mode, who", [(0o777, "world"), (0o770, "group"), (0o1777, "world")])
def test_a_shared_directory_is_warned_about_once_and_still_works(tmp_path, caplog, mode, who):
    spool_dir = tmp_path / "shared"
    spool_dir.mkdir()
    os.chmod(spool_dir, mode)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        spool = Spool(spool_dir)
        entry = spool.write(body(1))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert str(spool_dir) in warnings[0] and f"{who}-writable" in warnings[0]
    assert f"chmod 700 {spool_dir}" in warnings[0]
    assert stat.S_IMODE(os.stat(spool_dir).st_mode) == mode  # the admin's: not changed
    assert entry is not None and spool.read(spool.entries()[0]) == body(1)


def test_a_private_directory_gets_no_warning(tmp_path, caplog):
    os.chmod(tmp_path, 0o700)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        Spool(tmp_path).write(body(1))
    assert caplog.records == []


def test_a_symlinked_spool_dir_is_followed_and_its_target_checked(tmp_path, caplog):
    target = tmp_path / "volume"
    target.mkdir(mode=0o700)
    link = tmp_path / "spool"
    link.symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        Spool(link).write(body(1))
    assert caplog.records == [] and len(list(target.glob("*.json"))) == 1
    os.chmod(target, 0o777)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        Spool(link)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "world-writable" in warning and f"a symlink to {str(target)!r}" in warning


def test_a_fifo_never_blocks_the_flusher(tmp_path):
    spool = Spool(tmp_path)
    spool.write(body(1))
    fifo = tmp_path / "00000000000000000000000000.json"  # the oldest: read first
    os.mkfifo(fifo)
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  spool_dir=str(tmp_path))
        try:
            worker, results = flush_in_thread(agent)
            assert not worker.is_alive(), "the flush blocked on a FIFO"
        finally:
            unblock_fifos(tmp_path)
        assert results[0].ok and delivered_yes(server) == [1]
    moved = tmp_path / "corrupt" / fifo.name
    assert stat.S_ISFIFO(os.lstat(moved).st_mode) and claimed(tmp_path) == []
    assert agent.statistics()["dropped"] == {"spool_corrupt": 1}


def test_a_symlink_to_a_fifo_never_blocks_the_flusher(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).write(body(2))
    link = spool_dir / "00000000000000000000000000.json"
    link.symlink_to(outside / "pipe")
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  spool_dir=str(spool_dir))
        try:
            worker, results = flush_in_thread(agent)
            assert not worker.is_alive(), "the flush blocked on a link to a FIFO"
        finally:
            unblock_fifos(outside)
        assert results[0].ok and delivered_yes(server) == [2]
    assert os.path.islink(spool_dir / "corrupt" / link.name)  # the link itself, moved
    assert stat.S_ISFIFO(os.lstat(outside / "pipe").st_mode)  # its target untouched


def test_another_apps_body_behind_a_symlink_is_never_sent(tmp_path):
    other_app = tmp_path / "other-app"
    other_app.mkdir()
    theirs = other_app / "01AAAAAAAAAAAAAAAAAAAAAAAA.json"
    theirs.write_bytes(body(99, app="payroll"))
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).write(body(3))
    (spool_dir / theirs.name).symlink_to(theirs)
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="shop-token",
                                  spool_dir=str(spool_dir))
        assert agent.flush(timeout=10).ok
        agent.close(timeout=5)
    assert {d["appName"] for d in server.accepted_documents()} == {"shop"}
    assert delivered_yes(server) == [3]  # empty windows are not sent
    assert theirs.read_bytes() == body(99, app="payroll")  # neither sent nor moved
    assert os.path.islink(spool_dir / "corrupt" / theirs.name)
    assert agent.statistics()["dropped"] == {"spool_corrupt": 1}


def test_a_hard_link_a_directory_and_a_socket_are_set_aside(tmp_path):
    import socket

    other = tmp_path / "other.json"
    other.write_bytes(body(7, app="payroll"))
    spool = Spool(tmp_path / "spool")
    spool.write(body(4))
    os.link(other, spool.directory / "00000000000000000000000001.json")
    (spool.directory / "00000000000000000000000002.json").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    short = tempfile.mkdtemp(prefix="s")  # a socket path must be short (108 bytes on Linux)
    try:
        listener.bind(os.path.join(short, "s"))
        os.rename(os.path.join(short, "s"), spool.directory / "00000000000000000000000003.json")
        read = [spool.read(spool.claim(e)) for e in spool.entries()]
    finally:
        listener.close()
        os.rmdir(short)
    assert read[:3] == [None, None, None] and json.loads(read[3])["appName"] == "shop"
    assert sorted(p.name for p in (spool.directory / "corrupt").iterdir()) == [
        f"0000000000000000000000000{i}.json" for i in (1, 2, 3)]
    assert other.read_bytes() == body(7, app="payroll")
    assert spool.drops.as_dict() == {"spool_corrupt": 3}


def test_a_corrupt_folder_that_is_a_symlink_is_not_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spool = Spool(tmp_path / "spool")
    (spool.directory / "corrupt").symlink_to(elsewhere)
    (spool.directory / "0.json").write_text('{"appName": "x", "bucket": "x"}')
    (entry,) = spool.entries()
    assert spool.read(spool.claim(entry)) is None
    assert list(elsewhere.iterdir()) == [] and list(spool.directory.glob("0.json*")) == []
    assert spool.drops.as_dict() == {"spool_corrupt": 1}


def test_weird_claim_names_do_not_break_recovery(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=30)
    spool = Spool(tmp_path)
    entry = spool.write(body(5))
    stale = entry.path.with_name(f"{entry.path.name}.{int(dead.stdout)}.sending")
    os.rename(entry.path, stale)
    for weird in ("x.json.abc.sending", "x.json.sending", ".sending", "a.b.c.d.sending"):
        (tmp_path / weird).write_text("{}")
    reopened = Spool(tmp_path)  # raised ValueError (int("abc")) before
    assert [e.path for e in reopened.entries()] == [entry.path]  # the real claim is back
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == sorted(
        ("x.json.abc.sending", "x.json.sending", ".sending", "a.b.c.d.sending"))
    assert claimed(tmp_path) == []


def test_a_spool_that_could_not_be_sent_is_not_lost_by_the_checks(tmp_path):
    """Bodies the agent itself spooled pass every check: nothing real is set aside."""
    agent = impactagent.Agent("shop", url=refused_url(), api_key="t", request_timeout=0.3,
                              spool_dir=str(tmp_path))
    jobs = agent.counter("jobs_total", "Jobs", ["queue"])
    latency = agent.histogram("latency_seconds", "Latency")
    depth = agent.gauge("depth", "Depth")
    for i in range(3):
        jobs.labels(f"q{i}").inc(10)
        latency.observe(0.2 * i)
        depth.set(i)
        agent.record_flag("f", i % 2 == 0, "blue")
        agent.flush(timeout=2)
    agent.close(timeout=2)
    with ScriptedServer() as server:
        fresh = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  spool_dir=str(tmp_path))
        assert fresh.flush(timeout=10).ok
        fresh.close(timeout=5)
        totals = server.totals()
    assert sum(totals["counters"].values()) == 30
    assert totals["flags"]["f"]["yes"] == 2 and totals["flags"]["f"]["no"] == 1
    assert "dropped" not in fresh.statistics() or fresh.statistics()["dropped"] == {}
    assert not (tmp_path / "corrupt").exists()


def test_making_room_sets_a_fifo_aside_without_blocking(tmp_path):
    """The cap's eviction reads the oldest file to count its events: a FIFO there must
    neither block the write nor be counted as events."""
    spool = Spool(tmp_path, max_bytes=len(body(1)) + 10)  # room for one body
    os.mkfifo(tmp_path / "00000000000000000000000000.json")
    spool.write(body(1))
    written: list = []
    try:
        worker = threading.Thread(target=lambda: written.append(spool.write(body(2))),
                                  daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "a write blocked on a FIFO in the spool"
    finally:
        unblock_fifos(tmp_path)
    assert written[0] is not None
    assert [json.loads(spool.read(e))["bucket"]["toggles"]["f"]["yes"]
            for e in spool.entries()] == [2]
    assert spool.drops.as_dict() == {"spool_corrupt": 1, "spool_full": count_events(document(1))}
