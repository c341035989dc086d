"""The durable spool: real files, real subprocesses, a real SIGKILL and a real server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import impactagent
from impactagent.delivery.spool import Spool
from tests.scripted_server import ScriptedServer, refused_url

ROOT = Path(__file__).resolve().parents[1]


def body(n: int, size: int = 0) -> bytes:
    document = {"appName": "shop", "bucket": {
        "start": "2026-11-25T10:00:00.000Z", "stop": "2026-11-25T10:01:00.000Z", "toggles": {
        "f": {"yes": n, "no": 0, "variants": {}}}}, "pad": "x" * size}
    return json.dumps(document).encode()


def test_entries_come_back_in_write_order(tmp_path):
    spool = Spool(tmp_path)
    for i in range(200):  # many within one millisecond: names must still increase
        spool.write(body(i + 1))
    read = [json.loads(spool.read(e))["bucket"]["toggles"]["f"]["yes"] for e in spool.entries()]
    assert read == list(range(1, 201))
    assert len(spool) == 200 and spool.size_bytes() == sum(e.size for e in spool.entries())


def test_claim_release_and_remove(tmp_path):
    spool = Spool(tmp_path)
    first = spool.write(body(1))
    spool.write(body(2))
    claimed = spool.claim(first)
    assert claimed is not None and spool.claim(first) is None  # one taker only
    assert len(spool) == 1
    spool.release(claimed)
    assert spool.entries()[0].path == first.path  # back at its old place
    spool.remove(spool.claim(spool.entries()[0]))
    assert [json.loads(spool.read(e))["bucket"]["toggles"]["f"]["yes"]
            for e in spool.entries()] == [2]


def test_the_cap_drops_the_oldest_and_counts_their_events(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000)
    sizes = [len(body(1, 200))] * 10
    for i in range(10):
        spool.write(body(i + 1, 200))
    kept = [json.loads(spool.read(e))["bucket"]["toggles"]["f"]["yes"] for e in spool.entries()]
    fits = 1000 // sizes[0]
    assert kept == list(range(11 - fits, 11))  # the newest are kept
    assert spool.size_bytes() <= 1000
    assert spool.drops.as_dict() == {"spool_full": sum(range(1, 11 - fits))}


def test_a_body_larger_than_the_spool_is_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    assert spool.write(body(7, 500)) is None
    assert len(spool) == 0 and spool.drops.as_dict() == {"spool_full": 7}


def test_a_corrupt_file_is_moved_aside_and_the_rest_still_read(tmp_path, caplog):
    spool = Spool(tmp_path)
    spool.write(body(1))
    (tmp_path / "00000000000000000000000000.json").write_bytes(b'{"appName": "sh')  # truncated
    spool.write(body(3))
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        bodies = [spool.read(e) for e in spool.entries()]
    assert bodies[0] is None and bodies[1] is not None and bodies[2] is not None
    assert (tmp_path / "corrupt" / "00000000000000000000000000.json").exists()
    assert spool.drops.as_dict() == {"spool_corrupt": 1}
    assert any("is corrupt" in r.getMessage() for r in caplog.records)


def test_leftovers_of_a_crash_are_recovered(tmp_path):
    Spool(tmp_path).write(body(5))
    (entry,) = Spool(tmp_path).entries()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=30)
    stale = entry.path.with_name(f"{entry.path.name}.{int(dead.stdout)}.sending")
    os.rename(entry.path, stale)  # claimed by a process that no longer exists
    old_temp = tmp_path / ".0123.tmp"
    old_temp.write_bytes(b"half")
    os.utime(old_temp, (time.time() - 120, time.time() - 120))
    reopened = Spool(tmp_path)
    assert [e.path for e in reopened.entries()] == [entry.path]
    assert not old_temp.exists()


def test_an_unwritable_directory_fails_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"spool_dir .* is not a writable directory"):
        Spool(blocker / "spool")


CRASHING_APP = textwrap.dedent("""
    import os, signal, sys
    import impactagent
    agent = impactagent.Agent("shop", url=sys.argv[1], api_key="t", request_timeout=0.3,
                              spool_dir=sys.argv[2])
    orders = agent.counter("orders_total", "Orders")
    for flush in range(3):
        for _ in range(100):
            orders.inc()
            agent.record_flag("f", True, "blue")
        agent.flush(timeout=1)      # the server is down: the window goes to the spool
    orders.inc(999)                 # recorded after the last spool write: may be lost
    print(len(os.listdir(sys.argv[2])), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_9_while_the_server_is_down_loses_nothing_spooled(tmp_path):
    spool_dir = tmp_path / "spool"
    app = tmp_path / "app.py"
    app.write_text(CRASHING_APP)
    # PYTHONPATH: the app imports this checkout's impactagent, not an installed one.
    crashed = subprocess.run([sys.executable, str(app), refused_url(), str(spool_dir)],
                             capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout.strip() == "3"  # one spooled body per failed flush
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  spool_dir=str(spool_dir))
        result = agent.flush(timeout=10)
        assert result.ok and result.delivered_bodies == 3  # 3 replayed; the new window
        assert result.empty_window  # was empty, so not sent
        totals = server.totals()
        assert sum(totals["counters"].values()) == 300
        assert totals["flags"]["f"] == {"yes": 300, "no": 0, "variants": {"blue": 300}}
        assert agent.statistics()["spool"] == {"files": 0, "bytes": 0}
        # Replayed oldest first.
        starts = [d["bucket"]["start"] for d in server.accepted_documents()[:3]]
        assert starts == sorted(starts)


def test_spooled_bodies_wait_behind_a_failing_server_in_order(tmp_path):
    with ScriptedServer() as server:
        agent = impactagent.Agent("shop", url=server.api_url, api_key="t",
                                  request_timeout=0.5, spool_dir=str(tmp_path))
        jobs = agent.counter("jobs_total", "Jobs")
        server.stop()
        for _ in range(3):
            jobs.inc(10)
            assert agent.flush(timeout=1).kept_bodies >= 1
        assert agent.statistics()["spool"]["files"] == 3
        server.restart()
        jobs.inc(1)
        assert agent.flush(timeout=10).ok
        assert [d["impactMetrics"][0]["samples"][0]["value"]
                for d in server.accepted_documents()] == [10, 10, 10, 1]
