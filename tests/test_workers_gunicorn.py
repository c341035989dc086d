"""One Prometheus view across real gunicorn workers: any worker's scrape is the sum.

Real gunicorn (4 sync workers, with and without ``--preload``) on 127.0.0.1, real
requests, real ``kill -9``. A scrape is answered by whichever worker the kernel hands the
connection to; every one must show the sum, so no counter may ever go down between two
scrapes, and once the load stops the sum must reach the number of requests served.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.loopback import listening_socket

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 4
Sample = Tuple[str, Tuple[Tuple[str, str], ...]]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


class Gunicorn:
    def __init__(self, directory: Path, preload: bool, workers: int = WORKERS,
                 options: Sequence[str] = (), wrapper: Sequence[str] = ()) -> None:
        pytest.importorskip("gunicorn")
        env = dict(os.environ, TEST_VIEW_DIR=str(directory), PYTHONPATH=str(ROOT))
        with listening_socket() as listener:  # see listening_socket: no port race, no polling
            self.port = listener.getsockname()[1]
            self.master = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "gunicorn", *(["--preload"] if preload else []),
                 "-w", str(workers), *options, "-b", f"fd://{listener.fileno()}",
                 # --timeout: a loaded CI machine must not have the master kill a busy
                 # worker (30 s by default) in the middle of what is measured.
                 "--graceful-timeout", "10", "--timeout", "120", "tests.apps.workers_app:app"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()])
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.http.trust_env = False
        try:
            # Waits in the listen queue until a worker has started (bounded by the timeout).
            self.http.get(self.base + "/warm-up", timeout=60, headers={"Connection": "close"})
        except requests.RequestException as error:
            self.master.kill()
            output = self.master.communicate(timeout=60)[0].decode(errors="replace")
            raise AssertionError(f"gunicorn did not start ({error}):\n{output}") from None

    def get(self, path: str, session: requests.Session | None = None) -> str:
        return (session or self.http).get(self.base + path, timeout=10,
                                          headers={"Connection": "close"}).text

    def scrape(self) -> Dict[Sample, float]:
        """The summed samples (the per-worker health series, labelled by pid, left out)."""
        samples = {}
        for family in text_string_to_metric_families(self.get("/metrics")):
            for s in family.samples:
                if "pid" not in s.labels:
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def workers(self) -> Set[str]:
        """The master's live children: its workers' pids (Linux)."""
        pid = self.master.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        return set(children.read_text().split()) if children.exists() else set()

    def stop(self) -> str:
        self.master.send_signal(signal.SIGTERM)
        output = self.master.communicate(timeout=60)[0].decode(errors="replace")
        assert self.master.returncode == 0, output
        return output


def hits(samples: Dict[Sample, float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "hits_total")


def assert_never_down(before: Dict[Sample, float], after: Dict[Sample, float]) -> None:
    for key, value in before.items():
        assert after.get(key, 0.0) >= value, f"{key} went down: {value} -> {after.get(key)}"


def load(server: Gunicorn, paths: List[str], served: Set[str]) -> threading.Thread:
    def run() -> None:
        with requests.Session() as session:
            session.trust_env = False
            for path in paths:
                served.add(server.get(path, session))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def settle(server: Gunicorn, expected: float, last: Dict[Sample, float]
           ) -> Dict[Sample, float]:
    """Scrape (bounded) until the sum reaches ``expected``, never seeing a drop."""
    for _ in range(100):
        now = server.scrape()
        assert_never_down(last, now)
        last = now
        if hits(now) >= expected:
            break
        time.sleep(0.1)
    return last


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_four_workers_under_load_fifty_scrapes_never_go_down_and_end_at_the_total(
        tmp_path, preload):
    server = Gunicorn(tmp_path / "view", preload)
    try:
        served: Set[str] = set()
        loaders = [load(server, [f"/p{i % 3}/{'on' if i % 2 else 'off'}" for i in range(100)],
                        served) for _ in range(3)]
        scrapes = [server.scrape()]
        for _ in range(49):  # 50 scrapes in a row, while the load runs
            scrapes.append(server.scrape())
            assert_never_down(scrapes[-2], scrapes[-1])
        for loader in loaders:
            loader.join(timeout=120)
            assert not loader.is_alive()
        extra = 0  # under a loaded machine the kernel may hand one worker every request
        while len(served) < 2 and extra < 300:
            served.add(server.get("/p0/on"))
            extra += 1
        final = settle(server, 301 + extra, scrapes[-1])
        health_pids = {s.labels["pid"] for f in text_string_to_metric_families(
            server.get("/metrics")) for s in f.samples if "pid" in s.labels}
    finally:
        server.stop()
    assert len(served) > 1, f"expected several workers to serve: {served}"
    assert hits(final) == 301 + extra  # and the warm-up, whichever worker served each
    on = sum(v for (name, labels), v in final.items()
             if name == "impactagent_flag_evaluations_total"
             and ("enabled", "true") in labels)
    assert on == 150 + extra
    assert final[("work_seconds_count", (("appName", "workers-app"),
                                         ("environment", "test")))] == 301 + extra
    # Health stays per worker: one pid label per live process that published.
    assert len(health_pids) >= WORKERS


def test_a_worker_killed_with_sigkill_and_replaced_never_makes_a_counter_drop(tmp_path):
    directory = tmp_path / "view"
    server = Gunicorn(directory, preload=False)
    try:
        served: Set[str] = set()
        load(server, ["/before"] * 60, served).join(timeout=120)
        last = settle(server, 61, server.scrape())
        assert hits(last) == 61  # every worker has published what it served
        victim = sorted(served)[0]
        before = server.workers()
        os.kill(int(victim), signal.SIGKILL)
        requests_after = 0
        for _ in range(200):  # bounded: until gunicorn has started a worker in its place
            server.get("/after")
            requests_after += 1
            now = server.scrape()
            assert_never_down(last, now)
            last = now
            if server.workers() - before:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("gunicorn never replaced the killed worker")
        final = settle(server, 61 + requests_after, last)
        server.scrape()  # folds the killed worker, reaped or still a zombie
        files = sorted(p.name for p in directory.iterdir())
    finally:
        server.stop()
    assert hits(final) == 61 + requests_after
    # The killed worker's counts were folded into the departed total, its file removed.
    assert "departed.json" in files
    assert not [name for name in files if name.startswith(f"w-{victim}-")], files


def test_gunicorn_as_pid_1_keeps_the_totals_while_its_only_worker_is_replaced(tmp_path):
    # gunicorn as a container's first process, without --preload, its one worker replaced
    # every 4 requests (--max-requests): the master still runs, so no restart resets a sum.
    import shutil

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-p", "-f", "--mount-proc", "true"],
                                         capture_output=True).returncode != 0:
        pytest.skip("needs a pid namespace (unshare -p -f --mount-proc), not permitted here")
    server = Gunicorn(tmp_path, preload=False, workers=1, options=["--max-requests", "4"],
                      wrapper=[unshare, "-p", "-f", "--kill-child=SIGTERM", "--mount-proc"])
    try:
        last: Dict[Sample, float] = {}
        for served in range(2, 14):  # the warm-up request was the first
            server.get("/hit")
            last = settle(server, served, last)
            assert hits(last) == served
    finally:
        for gunicorn in server.workers():  # unshare ignores SIGTERM: stop its child, pid 1
            os.kill(int(gunicorn), signal.SIGTERM)
        server.master.communicate(timeout=60)
