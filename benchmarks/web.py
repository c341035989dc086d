"""A real web app under load: gunicorn serving :mod:`benchmarks.webapp`, driven over loopback.

Three gunicorn servers start, one per variant (agent off, agent on, prometheus_client),
each ``gunicorn -w 1 --threads 4 -b 127.0.0.1:<free port> benchmarks.webapp:app`` with
``IMPACTAGENT_BENCH_VARIANT`` set. Each is warmed up, then the variants are driven in turn,
for several rounds (the order rotates each round, so no variant always runs first or last
after a slow patch), each run for a fixed duration with keep-alive connections on
``/users/<id>`` over 200 user ids. The load generator is ``wrk`` if it is on the PATH (one
thread, 8 connections; requests/s and its p99 latency), else a Python client: threads with
``http.client`` keep-alive connections (slower, and it shares the 2 cores with the server,
so its numbers are lower; the ratio is what to read). Afterwards each server's ``/_stats``
shows that it really recorded what it served. Servers bind 127.0.0.1 only, are stopped with
SIGTERM and waited for, and every loop is bounded by a deadline.

Only one worker process: one Python process with the GIL serves at most one core's worth of
requests, so this measures the share of that core the recording costs. With ``wrk`` on the
other core, the server process is the bottleneck, which is what makes the ratio meaningful.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from benchmarks.timing import summary
from benchmarks.webapp import VARIANTS

TARGET = 0.97  # agent on / agent off throughput
P99_TARGET = 1.05  # agent on / agent off p99 latency
CONNECTIONS = 8
USERS = 200
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = 2.0) -> Tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def server(variant: str) -> Iterator[int]:
    """A gunicorn serving ``variant`` on a free loopback port; SIGTERM and wait on exit."""
    port = free_port()
    env = dict(os.environ, IMPACTAGENT_BENCH_VARIANT=variant, PYTHONPATH=REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b",
         f"127.0.0.1:{port}", "--log-level", "warning", "benchmarks.webapp:app"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(port, "/users/ready")[0] == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"gunicorn ({variant}) did not start: {error[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            process.kill()
            process.wait(timeout=10)


# -- load generators ----------------------------------------------------------------------------

# wrk's Lua hook: each request asks for the next of USERS user ids.
WRK_SCRIPT = f"""\
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/users/" .. (counter % {USERS}))
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(port: int, seconds: float) -> Dict[str, float]:
    """Requests/s and p99 latency (ms) of one ``wrk`` run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT)
        script = handle.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", script,
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.remove(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if p99 is None or errors is not None:
        raise RuntimeError(f"wrk reported errors or no p99:\n{out}")
    return {"rps": rps, "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)]}


def run_python_client(port: int, seconds: float) -> Dict[str, float]:
    """The fallback: keep-alive ``http.client`` connections in threads, for ``seconds``."""
    latencies: List[List[float]] = [[] for _ in range(CONNECTIONS)]
    failures: List[str] = []
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, clock, n = latencies[index], time.perf_counter, index
        try:
            while True:
                start = clock()
                if start >= deadline:
                    break
                connection.request("GET", f"/users/{n % USERS}")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(str(response.status))
                    break
                mine.append(clock() - start)
                n += CONNECTIONS
        except (OSError, http.client.HTTPException) as error:
            failures.append(repr(error))
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"the load generator failed: {failures[:3]}")
    every = sorted(x for mine in latencies for x in mine)
    return {"rps": len(every) / elapsed,
            "p99_ms": every[int(0.99 * (len(every) - 1))] * 1e3}


def load_generator() -> str:
    return "wrk" if shutil.which("wrk") else "python http.client"


def web_rows(quick: bool = False) -> Dict[str, Any]:
    """Requests/s and p99 per variant (median, min-max over rounds), and the on/off ratio."""
    rounds, seconds = (1, 3.0) if quick else (3, 8.0)
    drive = run_wrk if shutil.which("wrk") else run_python_client
    runs: Dict[str, List[Dict[str, float]]] = {variant: [] for variant in VARIANTS}
    with contextlib.ExitStack() as stack:
        ports = {variant: stack.enter_context(server(variant)) for variant in VARIANTS}
        for port in ports.values():
            drive(port, 1.0)  # warm-up: imports, series and flags exist before measuring
        for index in range(rounds):
            order = VARIANTS[index % 3:] + VARIANTS[:index % 3]
            for variant in order:
                before = json.loads(get(ports[variant], "/_stats")[1])
                run = drive(ports[variant], seconds)
                after = json.loads(get(ports[variant], "/_stats")[1])
                run["cpu_us"] = cpu_per_request(before, after)
                runs[variant].append(run)
        stats = {variant: json.loads(get(port, "/_stats")[1]) for variant, port in ports.items()}
    rows = {variant: {"rps": summary([r["rps"] for r in results]),
                      "p99_ms": summary([r["p99_ms"] for r in results]),
                      "cpu_us": summary([r["cpu_us"] for r in results]), "stats": stats[variant]}
            for variant, results in runs.items()}
    off = rows["off"]["rps"]["median"]
    for variant in ("on", "prometheus"):
        rows[variant]["ratio_to_off"] = rows[variant]["rps"]["median"] / off
    for variant in VARIANTS:
        rows[variant]["in_process_us"] = in_process_us(variant)
    off_cpu = rows["off"]["cpu_us"]["median"]
    for variant in ("on", "prometheus"):
        rows[variant]["cpu_to_off"] = rows[variant]["cpu_us"]["median"] / off_cpu
    ratio = rows["on"]["ratio_to_off"]
    p99_ratio = rows["on"]["p99_ms"]["median"] / rows["off"]["p99_ms"]["median"]
    # The 'on' server must have recorded 5 flags per request it served.
    served = statistics.fsum(r["rps"] for r in runs["on"]) * seconds
    if stats["on"].get("flag_evaluations", 0) < 5 * 0.9 * served:
        raise RuntimeError(f"the agent recorded too little: {stats['on']}")
    return {"generator": load_generator(), "rounds": rounds, "seconds": seconds,
            "connections": CONNECTIONS, "variants": rows, "ratio_on_off": ratio,
            "met": ratio >= TARGET, "p99_on_off": p99_ratio, "met_p99": p99_ratio <= P99_TARGET,
            "cpu_on_off": rows["on"]["cpu_to_off"],
            "cpu_added_us": rows["on"]["cpu_us"]["median"] - off_cpu,
            "in_process_added_us": rows["on"]["in_process_us"] - rows["off"]["in_process_us"]}


#: Times one variant's WSGI app called directly, in a fresh interpreter: no server, no
#: sockets, no load generator. What the recording itself costs a request, undisturbed.
IN_PROCESS = """
import os, sys, time
from benchmarks.webapp import app
def start_response(status, headers, exc_info=None):
    pass
environs = [{"PATH_INFO": f"/users/{i}", "REQUEST_METHOD": "GET"} for i in range(200)]
for environ in environs:
    app(dict(environ), start_response)
runs = []
for _ in range(7):
    started = time.perf_counter()
    for _ in range(25):
        for environ in environs:
            app(dict(environ), start_response)
    runs.append((time.perf_counter() - started) / (25 * len(environs)) * 1e6)
print(sorted(runs)[len(runs) // 2])
"""


def in_process_us(variant: str) -> float:
    """Microseconds per request of ``variant``'s app called directly (median of 7 runs)."""
    env = dict(os.environ, IMPACTAGENT_BENCH_VARIANT=variant, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", IN_PROCESS], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out.strip().splitlines()[-1])


def cpu_per_request(before: Dict[str, Any], after: Dict[str, Any]) -> float:
    """Microseconds of the worker's CPU (every thread) per request served between two
    ``/_stats`` answers (the second answer's own request is a rounding error)."""
    requests = after["requests"] - before["requests"]
    if requests <= 0:
        raise RuntimeError(f"the server served nothing between two reads: {before}, {after}")
    return (after["cpu_seconds"] - before["cpu_seconds"]) / requests * 1e6


def throughput_cause(result: Dict[str, Any]) -> str:
    """Why throughput missed its target, from the server's own CPU per request."""
    rows = result["variants"]
    off_cpu = rows["off"]["cpu_us"]["median"]
    added = result["in_process_added_us"]
    return (f"the agent's own work, the app called in process, is +{added:.1f} µs per request "
            f"({rows['on']['in_process_us']:.1f} µs against {rows['off']['in_process_us']:.1f}"
            f" µs for the app alone; prometheus_client doing the same work "
            f"+{rows['prometheus']['in_process_us'] - rows['off']['in_process_us']:.1f} µs): "
            f"{added / off_cpu:.1%} of the {off_cpu:.0f} µs of CPU a request costs the gunicorn "
            f"worker. Under gunicorn the worker's CPU per request measured "
            f"{result['cpu_on_off']:.3f}x ({result['cpu_added_us']:+.1f} µs) and requests/s "
            f"{result['ratio_on_off']:.3f}x; the rest is the server sharing 2 cores with the "
            f"load generator (prometheus_client: {rows['prometheus']['ratio_to_off']:.3f}x "
            f"requests/s at {rows['prometheus']['cpu_to_off']:.3f}x CPU)")


NAMES = {"off": "agent off (the app alone)",
         "on": "impactagent on (middleware, 5 flags, 3 metrics)",
         "prometheus": "prometheus_client (same work)"}


def table(result: Dict[str, Any]) -> str:
    lines = ["| variant | requests/s (median, min-max) | p99 latency ms (median, min-max) "
             "| throughput / agent off | worker CPU µs per request (median, min-max) "
             "| CPU / agent off | the app called in process, µs per request |",
             "|---|---|---|---|---|---|---|"]
    for variant, row in result["variants"].items():
        rps, p99, cpu = row["rps"], row["p99_ms"], row["cpu_us"]
        ratio = f"{row['ratio_to_off']:.3f}" if "ratio_to_off" in row else "1"
        cpu_ratio = f"{row['cpu_to_off']:.3f}" if "cpu_to_off" in row else "1"
        lines.append(f"| {NAMES[variant]} | {rps['median']:.0f} ({rps['min']:.0f}-"
                     f"{rps['max']:.0f}) | {p99['median']:.2f} ({p99['min']:.2f}-"
                     f"{p99['max']:.2f}) | {ratio} | {cpu['median']:.1f} ({cpu['min']:.1f}-"
                     f"{cpu['max']:.1f}) | {cpu_ratio} | {row['in_process_us']:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:  # pragma: no cover - a manual helper
    result = web_rows(quick="--quick" in (argv or sys.argv[1:]))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
