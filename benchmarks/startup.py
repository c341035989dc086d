"""``python -m benchmarks.startup``: what ``impactagent run`` adds to the start of an app that
imports none of the instrumented libraries, in one run.

Three ways to start the same app (a script importing ``json``, ``logging`` and
``http.client``, then exiting), timed in turn, ``--runs`` times each (a slow patch of the
machine hits every way alike), wall time from ``fork`` to exit:

- ``plain``: ``python app.py``;
- ``bootstrap``: the same with the bootstrap on ``PYTHONPATH``: what every Python process
  the command starts (each worker) pays;
- ``impactagent run``: ``impactagent run -- python app.py``: the bootstrap plus the
  launcher, which checks the settings and ``exec``s the command (paid once per command).

Prints medians, min-max, each way's difference from ``plain`` in ms and its ratio to it;
``python -c pass`` (an interpreter that starts and does nothing) is there to compare the
launcher's cost with: ``impactagent run`` starts two interpreters, the launcher and the app.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from impactagent.autoinstrument.cli import BOOTSTRAP

APP = "import json, logging, http.client\nprint(json.dumps({'ok': True}))\n"


def commands(app: str) -> Dict[str, List[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "plain": [sys.executable, app],
        "bootstrap": [sys.executable, app],
        "impactagent run": [sys.executable, "-m", "impactagent", "run", "--",
                            sys.executable, app],
    }


def measure(runs: int) -> Dict[str, List[float]]:
    # Bytecode is written (the warm-up run compiles what the timed runs load), as it is for
    # a package pip installed: PYTHONDONTWRITEBYTECODE would time a compile of the
    # bootstrap and of the launcher's modules at every start.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UNLEASH_", "IMPACTAGENT_"))
           and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    with_bootstrap = dict(env, PYTHONPATH=BOOTSTRAP)
    envs = {"python -c pass": env, "plain": env, "bootstrap": with_bootstrap,
            "impactagent run": env}
    times: Dict[str, List[float]] = {name: [] for name in envs}
    with tempfile.TemporaryDirectory() as folder:
        app = os.path.join(folder, "app.py")
        with open(app, "w") as file:
            file.write(APP)
        ways = commands(app)
        for name, command in ways.items():  # warm the file cache once
            subprocess.run(command, env=envs[name], check=True, capture_output=True)
        for _ in range(runs):
            for name, command in ways.items():
                began = time.perf_counter()
                subprocess.run(command, env=envs[name], check=True, capture_output=True)
                times[name].append((time.perf_counter() - began) * 1000)
    return times


def table(times: Dict[str, List[float]]) -> str:
    plain = statistics.median(times["plain"])
    lines = ["| start | median ms | min-max ms | + ms vs plain | ratio to plain |",
             "| --- | --- | --- | --- | --- |"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | "
                     f"{median - plain:+.1f} | {median / plain:.3f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="starts of each way (30)")
    print(table(measure(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
