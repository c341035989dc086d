"""The shared view with real processes: os.fork(), multiprocessing, dead and reused pids,
stale directories, interrupted folds, a disk that refuses, and directories not ours."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import impactagent
from impactagent.prometheus.workers import DirectoryCollector, process
from impactagent.prometheus.workers import directory as files
from impactagent.prometheus.workers.host import encode, worker_name

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def scrape(view) -> dict:
    """name -> summed value over its samples (health series, with a pid, apart)."""
    totals: dict = {}
    for family in text_string_to_metric_families(generate_latest(view.registry()).decode()):
        for s in family.samples:
            key = s.name if "pid" not in s.labels else (s.name, s.labels["pid"])
            totals[key] = totals.get(key, 0) + s.value
    return totals


def published_total(path: Path, sample: str) -> float:
    """The sum of ``sample`` in one worker's published file, as the file has it now (a file
    being replaced meanwhile reads as 0: the caller polls)."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return 0
    return sum(value for _, _, _, samples in document["counts"]
               for name, _, value in samples if name == sample)


def new_agent():
    agent = impactagent.Agent("view", "test")
    return agent, agent.counter("jobs_total", "Jobs"), agent.gauge("busy", "Busy workers")


def in_child(work) -> int:
    """Run ``work`` in a forked child that then leaves through os._exit (no atexit)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def test_forked_children_add_up_and_a_departed_childs_counts_are_kept(tmp_path):
    agent, jobs, busy = new_agent()
    jobs.inc(10)
    busy.set(1)
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)

    def child():
        assert jobs.value == 0  # the child starts at zero: its counts are its own
        jobs.inc(5)
        busy.set(1)
        view.publish()

    in_child(child)
    in_child(child)
    first = scrape(view)
    assert first["jobs_total"] == 20  # the parent's 10 and two departed children's 5
    assert first["busy"] == 1  # a departed worker's gauge is no longer true of anything
    assert [("impactagent_recorded_events_total", str(os.getpid()))] == [
        k for k in first if isinstance(k, tuple) and k[0] == "impactagent_recorded_events_total"]
    jobs.inc(1)
    assert scrape(view)["jobs_total"] == 21
    names = sorted(p.name for p in tmp_path.iterdir())
    # What is left: the lock, the departed total, and this process's own file.
    assert names[:2] == [".lock", "departed.json"] and len(names) == 3
    assert names[2].startswith(f"w-{os.getpid()}-")


def test_after_fork_by_hand_resets_the_view_where_the_server_forks_without_python_hooks(
        tmp_path):
    # uWSGI without py-call-osafterfork forks in C: Python's at-fork hooks never run, and
    # the app calls agent.after_fork() in a post-fork hook. libc's fork() is that fork.
    import ctypes

    agent, jobs, _ = new_agent()
    jobs.inc(10)
    view = agent.prometheus_workers(str(tmp_path), publish_interval=0.05)
    pid = ctypes.CDLL(None).fork()
    if pid == 0:
        code = 1
        try:
            agent.after_fork()
            jobs.inc(5)
            # No publish by hand: the child's own publishing thread must write its file.
            # Its file, not the temporary one a publish writes first and renames over it
            # (w-<pid>-<token>.json.<hex>.tmp): leaving on seeing that one left no file.
            # And its file with the 5 in it: the thread's first publish can come before
            # jobs.inc(5) when the child is descheduled for one interval (0.05 s) after
            # after_fork(); leaving on seeing that one left a file of 0.
            for _ in range(200):  # bounded: 10 s
                if any(p.name.startswith(f"w-{os.getpid()}-") and p.name.endswith(".json")
                       and published_total(p, "jobs_total") == 5 for p in tmp_path.iterdir()):
                    code = 0
                    break
                time.sleep(0.05)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child never published by itself"
    # The child wrote a file of its own: its 5 are added, the parent's 10 are not replaced.
    assert scrape(view)["jobs_total"] == 15


def test_a_killed_worker_not_yet_reaped_is_folded_as_dead(tmp_path):
    # kill -9 leaves a zombie until its parent reaps it: its pid still answers kill(pid, 0),
    # yet it will never publish again. Its counts move to the departed total at once.
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            jobs.inc(7)
            view.publish()
            os.write(write_end, b"published")
            time.sleep(60)  # bounded: killed long before this ends
        finally:
            os._exit(1)
    try:
        assert os.read(read_end, 16) == b"published"
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):  # bounded: until the kernel has made it a zombie
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert scrape(view)["jobs_total"] == 7
        names = sorted(p.name for p in tmp_path.iterdir())
        assert "departed.json" in names
        assert not [n for n in names if n.startswith(f"w-{pid}-")], names
    finally:
        os.close(read_end)
        os.close(write_end)
        os.waitpid(pid, 0)


def square(n: int) -> int:
    from tests.test_workers_view import POOL_COUNTER

    POOL_COUNTER.inc(n)
    return n * n


POOL_COUNTER = None


def test_multiprocessing_children_publish_when_they_end_normally(tmp_path):
    """A multiprocessing child ends with os._exit: without its exit hook, the counts it
    made since its last publish (here: all of them) would never reach the view."""
    global POOL_COUNTER
    agent, POOL_COUNTER, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=3600)
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        assert sum(pool.map(square, range(1, 31), chunksize=1)) == sum(n * n for n in
                                                                      range(1, 31))
        pool.close()
        pool.join()
    assert scrape(view)["jobs_total"] == sum(range(1, 31))


def test_a_directory_whose_writers_and_their_parents_are_gone_starts_a_new_generation(
        tmp_path):
    def leave_a_worker_file():
        agent, jobs, _ = new_agent()
        jobs.inc(7)
        agent.prometheus_workers(str(tmp_path), publish_interval=60).publish()

    # A "previous deploy": a master (the child) whose worker (the grandchild) published.
    in_child(lambda: in_child(leave_a_worker_file) and None)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("w-")]) == 1
    agent, jobs, _ = new_agent()
    jobs.inc(1)
    assert scrape(agent.prometheus_workers(str(tmp_path), publish_interval=60)) \
        ["jobs_total"] == 1


def test_a_worker_that_joined_keeps_the_totals_going_for_the_next_join(tmp_path):
    """An orphaned writer (its parent gone) publishes 7 and runs on; this process joins,
    continuing the totals; the writer ends; a new agent joins. A joined writer is on disk
    from its join on, so the last join continues the totals instead of wiping the 7."""
    ready_r, ready_w = os.pipe()
    end_r, end_w = os.pipe()

    def start_an_orphan_writer():
        if os.fork() == 0:
            try:
                os.close(end_w)  # it ends when this test closes its end, whatever happens
                agent, jobs, _ = new_agent()
                jobs.inc(7)
                agent.prometheus_workers(str(tmp_path), publish_interval=60)
                os.write(ready_w, str(os.getpid()).encode())
                os.read(end_r, 1)
            finally:
                os._exit(0)
        os.read(ready_r, 32)  # it published while its parent (this child) ran; now orphaned

    try:
        in_child(start_an_orphan_writer)
        writer = int(next(p.name.split("-")[1] for p in tmp_path.iterdir()
                          if p.name.startswith("w-")))
        here = process.current()
        counts = [["jobs_total", "counter", "Jobs", [["jobs_total", {}, 2.0]]]]
        DirectoryCollector(tmp_path).host.join(here, worker_name(here.pid, "a joiner"),
                                               encode(here, counts, []))
    finally:
        os.close(end_w)
    for _ in range(500):
        if not process.pid_runs(writer):
            break
        time.sleep(0.01)
    assert not process.pid_runs(writer)
    agent, jobs, _ = new_agent()
    jobs.inc(1)
    assert scrape(agent.prometheus_workers(str(tmp_path), publish_interval=60)) \
        ["jobs_total"] == 10


def test_a_dead_worker_whose_master_still_runs_is_folded_not_wiped(tmp_path):
    """gunicorn -w 1 without --preload: the only worker killed, its replacement joins.
    The master (here: this test process) still runs, so the totals continue."""
    def worker():
        agent, jobs, _ = new_agent()
        jobs.inc(7)
        agent.prometheus_workers(str(tmp_path), publish_interval=60).publish()

    in_child(worker)
    agent, jobs, _ = new_agent()
    jobs.inc(1)
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    assert scrape(view)["jobs_total"] == 8


def test_a_fold_interrupted_before_it_removed_the_file_never_counts_it_twice(tmp_path):
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)

    def child():
        jobs.inc(5)
        view.publish()
        for path in tmp_path.iterdir():  # keep a copy of the child's own file
            if path.name.startswith(f"w-{os.getpid()}-"):
                shutil.copy(path, tmp_path.parent / "kept.json")

    child_pid = in_child(child)
    assert scrape(view)["jobs_total"] == 5  # folded: departed.json holds the 5
    # As if the folder died after writing departed.json and before removing the file:
    name = [n for n in json.loads((tmp_path / "departed.json").read_text())["absorbed"]]
    assert len(name) == 1 and name[0].startswith(f"w-{child_pid}-")
    shutil.copy(tmp_path.parent / "kept.json", tmp_path / name[0])
    assert scrape(view)["jobs_total"] == 5
    assert not (tmp_path / name[0]).exists()


def test_a_reused_pid_does_not_keep_a_dead_writer_alive(tmp_path):
    """A file whose pid runs now, but in a process started at another time, is a dead
    writer's: folded (its counters kept), its gauges gone."""
    if process.current().started is None:
        pytest.skip("needs /proc to tell a process's start time")
    agent, _, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    here = process.current()
    impostor = here._replace(started=here.started - 1)
    counts = [["jobs", "counter", "Jobs",
               [["jobs_total", {"appName": "view", "environment": "test"}, 4]]],
              ["busy", "gauge", "Busy", [["busy", {"appName": "view",
                                                  "environment": "test"}, 9]]]]
    stale = tmp_path / worker_name(os.getpid(), "an impostor")
    stale.write_bytes(encode(impostor, counts, []))
    os.chmod(stale, 0o600)
    totals = scrape(view)
    assert totals["jobs_total"] == 4 and "busy" not in totals
    assert not stale.exists()


def test_a_publish_the_disk_refuses_keeps_the_earlier_counts(tmp_path):
    """A file size limit (as a full disk does) makes the write fail: the publish says so,
    and the worker's file keeps its earlier, whole, counts."""
    import resource
    import signal

    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)

    def child():
        jobs.inc(3)
        assert view.publish()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
        jobs.inc(2)
        assert not view.publish()

    in_child(child)
    assert scrape(view)["jobs_total"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_planted_file_is_not_summed(tmp_path):
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    jobs.inc(1)
    forged = encode(process.current()._replace(pid=os.getppid()), [
        ["jobs", "counter", "Jobs",
         [["jobs_total", {"appName": "view", "environment": "test"}, 1000]]]], [])
    outside = tmp_path.parent / "outside.json"
    outside.write_bytes(forged)
    # a symlink: never read
    (tmp_path / worker_name(os.getppid(), "a symlink")).symlink_to(outside)
    hard = tmp_path / worker_name(os.getppid(), "a hard link")
    os.link(outside, hard)  # a hard link: never read
    assert scrape(view)["jobs_total"] == 1


def test_a_file_named_and_stamped_pid_0_is_not_summed(tmp_path):
    # kill(0, 0) asks this process's group, which always answers: such a file was summed as
    # a live writer's at every scrape, forever.
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    jobs.inc(1)
    planted = tmp_path / worker_name(0, "pid 0")
    planted.write_bytes(encode(process.current()._replace(pid=0, started=None), [
        ["jobs", "counter", "Jobs",
         [["jobs_total", {"appName": "view", "environment": "test"}, 1000]]]], []))
    os.chmod(planted, 0o600)
    assert scrape(view)["jobs_total"] == 1


def test_a_directory_another_user_owns_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(PermissionError, match="not by this user"):
        DirectoryCollector(theirs)


def test_the_default_directory_is_private_and_per_app(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(publish_interval=60)
    assert view.directory.parent == tmp_path / f"impactagent-{os.geteuid()}"
    assert view.directory.name.startswith("prometheus-view-test-")
    assert stat.S_IMODE(view.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / f"impactagent-{os.geteuid()}").stat().st_mode) == 0o700
    jobs.inc(2)
    assert scrape(view)["jobs_total"] == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in view.directory.iterdir())


def test_default_folders_of_apps_whose_names_join_alike_are_apart(tmp_path, monkeypatch):
    # ("shop-api", "prod") and ("shop", "api-prod") were one folder: each scrape showed
    # the other service's series. Names cut at 64 characters collided the same way.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    long = "a" * 64
    pairs = [("shop-api", "prod"), ("shop", "api-prod"), ("shop_api", "prod"),
             (long + "x", "prod"), (long + "y", "prod"), ("shop", "prod\u00e9"),
             ("shop", "prod\u00e8")]
    views = []
    for n, (app, environment) in enumerate(pairs, 1):
        agent = impactagent.Agent(app, environment)
        agent.counter("jobs_total", "Jobs").inc(n)
        views.append(agent.prometheus_workers(publish_interval=60))
    assert len({view.directory for view in views}) == len(pairs)
    for n, view in enumerate(views, 1):
        assert scrape(view)["jobs_total"] == n  # its own series only
    assert views[0].directory.name.startswith("prometheus-shop_api-prod-")  # a hint


def test_files_from_another_pid_namespace_are_left_alone(tmp_path, caplog):
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    foreign = tmp_path / worker_name(1, "a foreign one")
    foreign.write_bytes(encode(process.current()._replace(pid=1, namespace="elsewhere"), [
        ["jobs", "counter", "Jobs",
         [["jobs_total", {"appName": "view", "environment": "test"}, 50]]]], []))
    os.chmod(foreign, 0o600)
    jobs.inc(1)
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        assert scrape(view)["jobs_total"] == 1
    assert foreign.exists() and "another pid namespace" in caplog.text


def test_a_default_folder_someone_else_prepared_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"impactagent-{os.geteuid()}").symlink_to(elsewhere)
    agent, _, _ = new_agent()
    with pytest.raises(PermissionError, match="not a private directory"):
        agent.prometheus_workers()


def jobs_document(value):
    return [["jobs", "counter", "Jobs",
             [["jobs_total", {"appName": "view", "environment": "test"}, value]]]]


def test_a_departed_total_written_before_parents_were_kept_is_still_summed(tmp_path):
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    departed = tmp_path / "departed.json"
    departed.write_text(json.dumps({"v": 1, "absorbed": [], "counts": jobs_document(4)}))
    os.chmod(departed, 0o600)
    jobs.inc(1)
    assert scrape(view)["jobs_total"] == 5

    def child():
        jobs.inc(2)
        view.publish()

    in_child(child)
    assert scrape(view)["jobs_total"] == 7  # the child folded into the old-format total
    # ... which now remembers the child's parent (this process), which still runs.
    here = process.current()
    assert json.loads(departed.read_text())["parents"] == [
        [here.pid, here.started, here.boot, here.namespace]]


def test_a_folded_directory_whose_master_is_gone_starts_a_new_generation(tmp_path):
    """A previous deploy's master served the directory and folded its dead worker; then
    it stopped too. What departed.json holds is that deploy's: the next one starts at 0."""
    def worker():
        agent, jobs, _ = new_agent()
        jobs.inc(7)
        agent.prometheus_workers(str(tmp_path), publish_interval=60).stop()

    def master():
        collector = DirectoryCollector(tmp_path)
        in_child(worker)
        list(collector.collect())  # folds the worker, remembers this master

    in_child(master)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("w-")]
    assert len(json.loads((tmp_path / "departed.json").read_text())["parents"]) == 1
    agent, jobs, _ = new_agent()
    jobs.inc(1)
    assert scrape(agent.prometheus_workers(str(tmp_path), publish_interval=60)) \
        ["jobs_total"] == 1


def test_a_removed_directory_is_made_again_private_and_every_worker_publishes_again(
        tmp_path, caplog):
    shared = tmp_path / "parent" / "shared"
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(shared), publish_interval=60)
    jobs.inc(3)
    assert scrape(view)["jobs_total"] == 3
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        for _ in range(2):
            shutil.rmtree(tmp_path / "parent")  # the directory and its parent
            # Nothing changed since the last publish: the worker publishes again anyway.
            assert scrape(view)["jobs_total"] == 3
    assert caplog.text.count("was removed") == 1  # logged once
    for path in (shared, shared.parent):
        info = os.lstat(path)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in shared.iterdir())


def test_a_symlink_left_where_the_removed_directory_was_is_not_followed(tmp_path):
    shared = tmp_path / "shared"
    agent, jobs, _ = new_agent()
    view = agent.prometheus_workers(str(shared), publish_interval=60)
    shutil.rmtree(shared)
    elsewhere = tmp_path / "elsewhere"
    shared.symlink_to(elsewhere)  # dangling: making the directory would make its target
    jobs.inc(1)
    assert not view.publish()
    assert not os.path.lexists(elsewhere) and shared.is_symlink()


def signals_left_to_the_app_by_every_publisher() -> bool:
    """Whether every workers-view thread of this process blocks SIGTERM and SIGINT, as the
    kernel has it (/proc), so that the app's threads get them; waits up to 5 s for a thread
    just started to block them."""
    wanted = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    deadline = time.monotonic() + 5
    while True:
        publishers = [t for t in threading.enumerate()
                      if t.name == "impactagent-workers-view" and t.is_alive()]
        masks = []
        for thread in publishers:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            masks.append(int(next(line.split()[1] for line in status.splitlines()
                                  if line.startswith("SigBlk:")), 16))
        if publishers and all(mask & wanted == wanted for mask in masks):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_the_publishing_thread_leaves_sigterm_and_sigint_to_the_app(tmp_path):
    # Where the kernel hands a process's SIGTERM to the view's thread while the main thread
    # waits on a lock, the app's handler never runs; in a forked child too.
    agent = new_agent()[0]
    agent.prometheus_workers(str(tmp_path), publish_interval=60)
    assert signals_left_to_the_app_by_every_publisher()

    def child():
        assert signals_left_to_the_app_by_every_publisher()

    in_child(child)


def summed(collector: DirectoryCollector, sample: str) -> float:
    return sum(s.value for metric in collector.collect() for s in metric.samples
               if s.name == sample)


def test_a_worker_that_publishes_and_ends_while_a_scrape_reads_its_file_keeps_its_counts(
        tmp_path):
    """A scrape used to read every file, then ask whether each writer ran: a worker that
    published again and ended in between was folded with the counts it had before, and its
    last file removed unread. Each child here publishes in a loop and ends while the parent
    scrapes in a loop (a file of many series takes a while to parse: the window is wide)."""
    collector = DirectoryCollector(tmp_path)
    expected = 0
    for _ in range(25):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                agent = impactagent.Agent("view", "test")
                jobs = agent.counter("jobs_total", "Jobs", labels=("n",))
                for n in range(400):
                    jobs.labels(n=str(n))
                view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
                for _ in range(20):
                    jobs.labels(n="0").inc()
                    view.publish()
                code = 0
            finally:
                os._exit(code)
        expected += 20
        status = 0
        for _ in range(20_000):  # scrape while the child publishes and ends
            list(collector.collect())
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert summed(collector, "jobs_total") == expected


def fork_with(kind: str) -> int:
    """``os.fork()`` (Python's at-fork hooks run) or libc's ``fork()`` (they do not)."""
    if kind == "os":
        return os.fork()
    import ctypes

    return int(ctypes.CDLL(None).fork())


def lock_held_by_a_thread(path):
    """A thread that holds the directory's lock until the returned event is set."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        with files.locked(path):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    return release, thread


@pytest.mark.parametrize("kind", ["os", "libc"])
def test_a_fork_while_another_thread_holds_the_directory_lock_leaves_it_to_no_one(
        tmp_path, kind):
    # A scrape in another thread holds the lock while the app forks a worker that lives on:
    # once the scrape ends, the parent and the child can each take the lock.
    release, thread = lock_held_by_a_thread(tmp_path)
    done_read, done_write = os.pipe()
    pid = fork_with(kind)
    if pid == 0:
        code = 1
        try:
            os.close(done_write)
            with files.locked(tmp_path, timeout=3):  # waits for the parent's thread
                pass
            os.read(done_read, 1)  # lives on until the parent has taken the lock too
            code = 0
        finally:
            os._exit(code)
    os.close(done_read)
    try:
        release.set()
        thread.join()
        with files.locked(tmp_path, timeout=3):  # the worker still runs
            pass
        assert list(DirectoryCollector(tmp_path).collect()) == []  # a scrape, as well
    finally:
        os.close(done_write)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not take the lock"


def test_the_directory_lock_orders_the_threads_of_one_process(tmp_path):
    # A record lock is the process's: a second thread must still wait for the first.
    release, thread = lock_held_by_a_thread(tmp_path)
    try:
        with pytest.raises(TimeoutError), files.locked(tmp_path, timeout=0.2):
            pass
    finally:
        release.set()
        thread.join()
    with files.locked(tmp_path, timeout=1):
        pass


_WORKERS_OF_PID_1 = """
import os, sys
import impactagent
from impactagent.prometheus.workers import DirectoryCollector
assert os.getpid() == 1
directory = sys.argv[1]
for n in (10, 1):  # a worker ends (gracefully), then the master starts the next
    pid = os.fork()
    if pid == 0:
        agent = impactagent.Agent("view", "test")
        jobs = agent.counter("jobs_total", "Jobs")
        view = agent.prometheus_workers(directory, publish_interval=60)
        jobs.inc(n)
        view.stop()
        os._exit(0)
    os.waitpid(pid, 0)
print(sum(s.value for m in DirectoryCollector(directory).collect() for s in m.samples
          if s.name == "jobs_total"))
"""


def test_a_master_that_is_pid_1_keeps_the_totals_going_between_its_workers(tmp_path):
    # gunicorn as a container's first process, without --preload: each time every worker
    # is gone, the next one must continue the totals, as the master still runs.
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-p", "-f", "--mount-proc", "true"],
                                         capture_output=True).returncode != 0:
        pytest.skip("needs a pid namespace (unshare -p -f --mount-proc), not permitted here")
    result = subprocess.run(
        [unshare, "-p", "-f", "--mount-proc", sys.executable, "-c", _WORKERS_OF_PID_1,
         str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 11


def test_a_child_forked_without_python_hooks_never_publishes_its_parents_counts(tmp_path):
    # uWSGI without py-call-osafterfork and without a post-fork hook: nobody calls
    # agent.after_fork(). The view notices the new pid at its first publish and starts the
    # child at zero there, as the hooks would have.
    agent, jobs, _ = new_agent()
    jobs.inc(10)
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    pid = fork_with("libc")
    if pid == 0:
        code = 1
        try:
            view.publish()
            jobs.inc(5)
            view.publish()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert scrape(view)["jobs_total"] == 15  # the parent's 10, the child's 5: not 25


def test_files_a_killed_fold_absorbed_do_not_come_back_in_a_new_generation(tmp_path):
    # A scraper killed (SIGKILL) after it wrote departed.json and before it removed the
    # files it absorbed; then a new deploy: every old writer and its parent are gone.
    def worker(n):
        def work():
            agent, jobs, _ = new_agent()
            view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
            jobs.inc(n)
            view.stop()
        return work

    in_child(lambda: in_child(worker(7)))  # a worker whose parent is gone too
    pid = os.fork()
    if pid == 0:
        files.remove = lambda path: os.kill(os.getpid(), signal.SIGKILL)
        list(DirectoryCollector(tmp_path).collect())
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    absorbed = json.loads((tmp_path / "departed.json").read_text())["absorbed"]
    assert len(absorbed) == 1 and (tmp_path / absorbed[0]).exists()
    in_child(worker(1))  # the new generation's first worker
    assert summed(DirectoryCollector(tmp_path), "jobs_total") == 1
    assert not (tmp_path / absorbed[0]).exists()


def test_two_views_of_one_agent_on_one_directory_count_it_once(tmp_path):
    # One agent's counts are one file per process (named by the agent and the process),
    # however many views publish them: a second view, or one made again after stop().
    agent, jobs, _ = new_agent()
    jobs.inc(3)
    view = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    again = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    assert scrape(view)["jobs_total"] == 3 and scrape(again)["jobs_total"] == 3
    view.stop()
    assert scrape(agent.prometheus_workers(str(tmp_path), publish_interval=60)) \
        ["jobs_total"] == 3
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("w-")]) == 1
    # Another agent in this process, and this agent in another directory, count apart.
    other, other_jobs, _ = new_agent()
    other_jobs.inc(4)
    assert scrape(other.prometheus_workers(str(tmp_path), publish_interval=60)) \
        ["jobs_total"] == 7
    assert scrape(agent.prometheus_workers(str(tmp_path / "elsewhere"), publish_interval=60)) \
        ["jobs_total"] == 3


def test_two_views_of_one_agent_made_at_once_still_count_it_once(tmp_path):
    # Made by two threads together, both may pass the check before either wrote its file:
    # they then write one file (named by the agent and the process), never two.
    agent, jobs, _ = new_agent()
    jobs.inc(3)
    first = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    for path in tmp_path.glob(f"w-{os.getpid()}-*.json"):
        path.unlink()  # as if the second came before the first published
    second = agent.prometheus_workers(str(tmp_path), publish_interval=60)
    first.publish()
    assert scrape(second)["jobs_total"] == 3


def test_a_departed_file_naming_paths_outside_the_directory_removes_nothing_there(tmp_path):
    # departed.json lists the files its fold absorbed, and a new generation removes them:
    # only worker files of this directory, never a path that leads elsewhere.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    departed = shared / "departed.json"
    departed.write_text(json.dumps({"v": 1, "counts": [], "parents": [],
                                    "absorbed": ["../victim.json", str(victim)]}))
    os.chmod(departed, 0o600)
    agent, jobs, _ = new_agent()
    jobs.inc(1)
    assert scrape(agent.prometheus_workers(str(shared), publish_interval=60))["jobs_total"] == 1
    assert victim.read_text() == "keep me"


def test_the_parent_of_a_namespaces_first_process_never_counts_as_running():
    # getppid() is 0 in a pid namespace's first process (its parent is outside): no
    # process, so it never keeps a generation going.
    here = process.current()
    assert not process.runs(process.Parent(0, None, here.boot, here.namespace), here)
    assert process.runs(process.current().started_by, here)  # this test's own parent runs
