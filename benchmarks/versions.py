"""The recording targets on every Python given: one column per version, met or not met.

``python -m benchmarks --python PATH`` (repeatable, or ``IMPACTAGENT_BENCH_PYTHONS``, paths
separated by ``os.pathsep``) runs the hot path and memory parts again in each of those
interpreters, one after the other, each in a child process of its own
(``python -m benchmarks --only hot_path --only memory --json ...``, from this repository),
and puts every target of those parts side by side with this interpreter's. Each
interpreter needs impactagent and the peers installed (a venv per version with
``pip install -e ".[bench]"``). Every ratio is still a same-run ratio: both sides of a row
were timed in alternation in that one child; only the columns come from different runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.timing import met_cell

Target = Tuple[str, str, Optional[bool]]
ROOT = Path(__file__).resolve().parent.parent


def interpreters(given: Optional[Sequence[str]]) -> List[str]:
    """The interpreters asked for, by ``--python`` or else the environment variable."""
    if given:
        return list(given)
    return [p for p in os.environ.get("IMPACTAGENT_BENCH_PYTHONS", "").split(os.pathsep) if p]


def run_in(python: str, quick: bool) -> Dict[str, Any]:
    """The hot path and memory parts' results, measured by ``python`` in a child process."""
    with tempfile.TemporaryDirectory(prefix="impactagent-bench-") as tmp:
        out = os.path.join(tmp, "results.json")
        command = [python, "-m", "benchmarks", "--only", "hot_path", "--only", "memory",
                   "--json", out] + (["--quick"] if quick else [])
        print(f"running hot_path and memory in {python} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=1800)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"{python} could not run the benchmarks: {last}")
        with open(out) as handle:
            return json.load(handle)  # type: ignore[no-any-return]


def table(columns: List[Tuple[str, List[Target]]]) -> str:
    """One row per target, one column per Python version: what was measured, met or not."""
    names: List[str] = []
    for _, found in columns:
        names += [name for name, _, _ in found if name not in names]
    lines = ["| target | " + " | ".join(f"CPython {version}" for version, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name in names:
        cells = []
        for _, found in columns:
            hit = [(measured, met) for n, measured, met in found if n == name]
            cells.append(f"{hit[0][0]}: {met_cell(hit[0][1]) or 'context'}" if hit else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def columns(results: Dict[str, Any], others: Dict[str, Dict[str, Any]],
            targets_of: Callable[[Dict[str, Any]], List[Target]]) -> List[Tuple[str, List[Target]]]:
    """This interpreter's targets of the hot path and memory parts, then each other's."""
    parts = ("hot_path", "memory", "memory_breakdown")

    def own(found: Dict[str, Any]) -> Dict[str, Any]:
        return {part: found[part] for part in parts if part in found}

    every = [(results["machine"]["python"], own(results))]
    every += [(found["machine"]["python"], own(found)) for found in others.values()]
    return [(version, targets_of(found)) for version, found in every]
