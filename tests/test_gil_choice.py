"""GIL or free-threaded: the implementation is chosen once at import, and each is exact.

No free-threaded interpreter is at hand, so a child interpreter is told it is one before
its first import (``sysconfig.get_config_var("Py_GIL_DISABLED")``), as
``impactagent.core._gil`` reads it.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

from impactagent.core._gil import LockedCount
from impactagent.core.flags import counted
from tests import child

PACKAGE = Path(__file__).resolve().parent.parent / "impactagent"

FREE_THREADED = """
    import sysconfig
    real = sysconfig.get_config_var
    sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
"""


def test_no_class_body_chooses_between_two_implementations() -> None:
    # An `if` in a class body defines one of two bodies of the same methods: the choice
    # impactagent.core._gil makes once, at import, for every class.
    found = [f"{path.relative_to(PACKAGE.parent)}:{statement.lineno} in {node.name}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ClassDef)
             for statement in node.body if isinstance(statement, ast.If)]
    assert not found, "implementations chosen inside a class body:\n" + "\n".join(found)


def test_a_locked_count_gives_every_number_once_under_racing_threads() -> None:
    count = LockedCount()
    taken: List[List[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(mine: List[int]) -> None:
        start.wait()
        for _ in range(20_000):
            mine.append(next(count))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(mine,)) for mine in taken]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert sorted(n for mine in taken for n in mine) == list(range(80_000))
    assert repr(count) == "count(80000)" and counted(count) == 80_000
    assert iter(count) is count


def _paths(preamble: str) -> Dict[str, Any]:
    result = child.run(preamble + """
    import itertools, json
    import impactagent
    from impactagent.core import _gil
    agent = impactagent.Agent("choice")
    plain = agent.counter("plain_total", "Plain")
    labelled = agent.counter("jobs_total", "Jobs", labels=("queue",)).labels("mail")
    level = agent.gauge("level", "Level")
    for _ in range(5):
        plain.inc()
        labelled.inc()
    level.set(3)
    agent.record_flag("f", True, "blue")
    agent.record_flag("f", False)
    stats = agent.recorder.flags.cumulative()["f"]
    print(json.dumps({
        "atomic": _gil.ATOMIC_C_CALLS,
        # How often each series' own count was advanced: by every inc() of 1 with the GIL,
        # never where every inc() takes the series lock.
        "advanced": [int(itertools.count.__repr__(series).partition("(")[2][:-1])
                     for series in (plain.series()[0], labelled)],
        "values": [plain.value, labelled.value, level.value],
        "flag": [stats.yes, stats.no, stats.variants],
        "count type": _gil.Count.__name__,
    }))
    """)
    assert result.returncode == 0, result.stderr
    seen: Dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_a_build_with_the_gil_advances_counts_without_a_lock() -> None:
    seen = _paths("")
    assert seen["atomic"] is True
    assert seen["advanced"] == [5, 5]
    assert seen["values"] == [5, 5, 3]
    assert seen["flag"] == [1, 1, {"blue": 1}]
    assert seen["count type"] == "count"


def test_a_free_threaded_build_records_every_increment_under_the_series_lock() -> None:
    seen = _paths(FREE_THREADED)
    assert seen["atomic"] is False
    assert seen["advanced"] == [0, 0]  # the family's own inc() too: no lock-free shortcut
    assert seen["values"] == [5, 5, 3]
    assert seen["flag"] == [1, 1, {"blue": 1}]
    assert seen["count type"] == "LockedCount"
