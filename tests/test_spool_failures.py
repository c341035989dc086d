"""A spool write that fails is a counted drop, never an exception out of flush() or close().

The failures are real: a full tmpfs (mounted when the tests run as root), a file size
limit set in a subprocess, a directory removed while the app runs, a path that cannot be
created again.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import impactagent
from impactagent.core.payload import count_events
from impactagent.delivery.spool import Spool
from tests.scripted_server import refused_url

ROOT = Path(__file__).resolve().parents[1]


def body(n: int, size: int = 0) -> bytes:
    document = {"appName": "shop", "bucket": {
        "start": "2026-11-25T10:00:00.000Z", "stop": "2026-11-25T10:01:00.000Z",
        "toggles": {"f": {"yes": n, "no": 0, "variants": {}}}}, "pad": "x" * size}
    return json.dumps(document).encode()


def leftovers(directory) -> list:
    """Temporary files the spool left behind (there must be none)."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def down_agent(spool_dir, **kwargs):
    """An agent whose server refuses connections: every window goes to the spool."""
    options = {"api_key": "t", "request_timeout": 0.3, "flush_interval": 60,
               "spool_dir": str(spool_dir)}
    options.update(kwargs)
    return impactagent.Agent("shop", url=refused_url(), **options)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 kB tmpfs: writes past it fail with ENOSPC."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(mount_point)], capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def test_a_full_disk_drops_and_counts_what_does_not_fit(tiny_disk):
    spool = Spool(tiny_disk / "spool")
    written, dropped = [], []
    for i in range(1, 8):  # 20 kB each: three fit in 64 kB, then the disk is full
        entry = spool.write(body(i, 20_000))
        (written if entry is not None else dropped).append(i)
    assert written and dropped, (written, dropped)
    assert spool.drops.as_dict() == {"spool_error": sum(dropped)}  # counted in events
    assert leftovers(spool.directory) == []  # half-written temporary files are removed
    assert sorted(json.loads(spool.read(e))["bucket"]["toggles"]["f"]["yes"]
                  for e in spool.entries()) == written  # what was kept is whole


def test_close_on_a_full_disk_counts_the_window_and_does_not_raise(tiny_disk):
    spool_dir = tiny_disk / "spool"
    agent = down_agent(spool_dir)
    fd = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError):  # fill the disk to the last byte
            while True:
                os.write(fd, b"x" * 512)
    finally:
        os.close(fd)
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(41)
    agent.record_flag("f", True)
    assert not agent.flush(timeout=2).ok  # the server is down and the spool is full
    jobs.inc(100)
    agent.close(timeout=2)  # raised OSError before
    stats = agent.statistics()
    assert stats["dropped"] == {"spool_error": 142}
    assert stats["spool"] == {"files": 0, "bytes": 0} and leftovers(spool_dir) == []


FILE_SIZE_LIMIT_APP = textwrap.dedent("""
    import json, resource, sys
    import impactagent
    agent = impactagent.Agent("shop", url=sys.argv[1], api_key="t", request_timeout=0.3,
                              spool_dir=sys.argv[2])
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
    resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))
    jobs = agent.counter("jobs_total", "Jobs", labels=["queue"])
    for queue in range(40):  # one body of a few kB: over the limit
        jobs.labels(f"queue-{queue}").inc(5)
    result = agent.flush(timeout=2)
    agent.close(timeout=2)
    print(json.dumps({"ok": result.ok, "stats": agent.statistics()}))
""")


def test_a_file_size_limit_is_a_counted_drop_in_a_real_process(tmp_path):
    spool_dir = tmp_path / "spool"
    app = tmp_path / "app.py"
    app.write_text(FILE_SIZE_LIMIT_APP)
    ran = subprocess.run([sys.executable, str(app), refused_url(), str(spool_dir)],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert not out["ok"] and out["stats"]["dropped"] == {"spool_error": 200}
    assert "File too large" in ran.stderr  # the drop is logged with its cause
    assert "Traceback" not in ran.stderr
    assert leftovers(spool_dir) == []
    # Only close()'s empty window (a few hundred bytes) fitted under the limit.
    assert [count_events(json.loads(p.read_bytes())) for p in spool_dir.glob("*.json")] in (
        [], [0])


def test_a_directory_removed_while_running_is_created_again_private(tmp_path):
    spool_dir = tmp_path / "var" / "spool"
    agent = down_agent(spool_dir)
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(3)
    agent.flush(timeout=2)
    shutil.rmtree(tmp_path / "var")  # a cleanup job, say: parent and all
    jobs.inc(4)
    agent.flush(timeout=2)
    assert stat.S_IMODE(os.stat(spool_dir).st_mode) == 0o700
    (entry,) = list(spool_dir.glob("*.json"))
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    assert json.loads(entry.read_bytes())["impactMetrics"][0]["samples"][0]["value"] == 4
    agent.close(timeout=2)
    assert "dropped" not in agent.statistics() or agent.statistics()["dropped"] == {}


def test_a_directory_that_cannot_be_created_again_is_a_counted_drop(tmp_path):
    spool_dir = tmp_path / "spool"
    agent = down_agent(spool_dir)
    jobs = agent.counter("jobs_total", "Jobs")
    shutil.rmtree(spool_dir)
    spool_dir.write_text("a file where the directory was")
    jobs.inc(5)
    assert not agent.flush(timeout=2).ok  # raised OSError before
    jobs.inc(6)
    agent.close(timeout=2)  # raised OSError before
    assert agent.statistics()["dropped"] == {"spool_error": 11}
    assert spool_dir.read_text() == "a file where the directory was"


def test_spool_write_never_raises_and_logs_each_kind_of_failure_once(tmp_path, caplog):
    spool = Spool(tmp_path / "spool")
    shutil.rmtree(spool.directory)
    spool.directory.write_text("in the way")
    with caplog.at_level("WARNING", logger="impactagent"):
        assert [spool.write(body(i)) for i in (1, 2, 3)] == [None, None, None]
    assert spool.drops.as_dict() == {"spool_error": 6}
    logged = [r.getMessage() for r in caplog.records if "spool_error" in r.getMessage()]
    assert len(logged) == 1 and str(spool.directory) in logged[0]



def test_a_sent_body_whose_file_cannot_be_removed_is_counted_not_raised(tmp_path):
    """The spooled body is delivered, but its claimed file cannot be removed (here another
    hand put a directory in its place, so unlink fails with EISDIR): flush() returns, and the
    body is counted as possibly duplicated, since whoever finds the file may send it again."""
    from impactagent.delivery.transport import Outcome

    spool_dir = tmp_path / "spool"

    class ReplacingTransport:
        metrics_url = "user transport"
        failing = True

        def post(self, body, timeout):
            if self.failing:
                return Outcome("retry", 503)
            for claimed in spool_dir.glob("*.sending"):
                claimed.unlink()
                claimed.mkdir()
            return Outcome("delivered", 202)

    transport = ReplacingTransport()
    agent = impactagent.Agent("shop", transport=transport, register=False,
                              spool_dir=str(spool_dir))
    agent.counter("jobs_total", "Jobs").inc(3)
    agent.flush(timeout=1)  # 503: spooled
    transport.failing = False
    result = agent.flush(timeout=2)
    delivery = agent.statistics()["delivery"]
    assert result.delivered_bodies == 1, result
    assert delivery["delivered_events"] == 3
    assert delivery["possibly_duplicated_events"] == 3
    agent.close(timeout=1)
