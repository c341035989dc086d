"""The timing machinery every benchmark here shares: timeit without wrappers, in alternation.

A row is one impactagent statement and any number of peer statements doing the same work.
Every side of a row is timed in turn (ours, peer 1, peer 2, ours, peer 1, ...), several
repeats each, so a slow patch of the machine hits every side alike; a row reports the median
and min-max per side, in nanoseconds per operation, and impactagent's median over each peer's.

The statements are source text whose objects are locals of ``timeit``'s loop (bound in its
setup), so no lambda or wrapper call is timed on any side.
"""

from __future__ import annotations

import statistics
import timeit
from typing import Any, Dict, List, NamedTuple, Optional, Tuple


class Peer(NamedTuple):
    """A peer library's statement for a row, and the ratio impactagent must stay under."""

    name: str
    stmt: str
    target: Optional[float] = None  # impactagent median / peer median <= target; None: context


class Case(NamedTuple):
    """One row: an impactagent statement and its peers' statements doing the same work."""

    operation: str
    ours: str
    peers: Tuple[Peer, ...]
    names: Dict[str, Any]  # the objects the statements use, bound as loop locals


def make_timer(stmt: str, names: Dict[str, Any]) -> timeit.Timer:
    """A ``timeit.Timer`` for ``stmt`` whose names are locals of the timing function."""
    setup = "\n".join(f"{name} = _bench_{name}" for name in names) or "pass"
    return timeit.Timer(stmt, setup=setup,
                        globals={f"_bench_{name}": obj for name, obj in names.items()})


def calibrate(timer: timeit.Timer, seconds: float) -> int:
    """The number of loops that makes one repeat of ``timer`` take about ``seconds``."""
    number = 1000
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= 0.02 or number >= 10_000_000:
            break
        number *= 10
    return max(1000, int(number * seconds / elapsed))


def summary(values: List[float]) -> Dict[str, Any]:
    """Median, min, max and every value, as every table and the JSON dump show them."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


def warm(case: Case) -> None:
    """Run every statement of ``case`` once, so no timing includes a first call (a series
    or flag being created)."""
    for stmt in (case.ours, *(peer.stmt for peer in case.peers)):
        make_timer(stmt, case.names).timeit(1)


def time_case(case: Case, repeat: int, seconds: float) -> Dict[str, Any]:
    """Time every side of ``case`` in alternation; nanoseconds per operation.

    The result has ``ours`` (a :func:`summary`) and ``peers``: for each peer its summary,
    its ratio (impactagent median / peer median), its target and whether it was met.
    """
    stmts = [case.ours, *(peer.stmt for peer in case.peers)]
    timers = [make_timer(stmt, case.names) for stmt in stmts]
    numbers = [calibrate(timer, seconds) for timer in timers]
    ns: List[List[float]] = [[] for _ in timers]
    for _ in range(repeat):
        for side, timer in enumerate(timers):
            ns[side].append(timer.timeit(numbers[side]) / numbers[side] * 1e9)
    ours = summary(ns[0])
    peers = []
    for index, peer in enumerate(case.peers, start=1):
        result = summary(ns[index])
        ratio = ours["median"] / result["median"]
        peers.append({
            "name": peer.name, "stmt": peer.stmt, "number": numbers[index], "result": result,
            "ratio": ratio, "target": peer.target,
            "met": None if peer.target is None else ratio <= peer.target,
        })
    return {"operation": case.operation, "ours_stmt": case.ours, "unit": "ns",
            "number": numbers[0], "ours": ours, "peers": peers}


def cell(result: Dict[str, Any], unit: str, digits: int = 0) -> str:
    """``median unit (min-max)``, the one way every table writes a measurement."""
    return (f"{result['median']:.{digits}f} {unit} "
            f"({result['min']:.{digits}f}-{result['max']:.{digits}f})")


def met_cell(met: Optional[bool]) -> str:
    return {True: "met", False: "**not met**"}.get(met, "")  # type: ignore[arg-type]


def peer_table(rows: List[Dict[str, Any]]) -> str:
    """A markdown table of rows shaped like :func:`time_case`'s: one line per peer.

    A row without peers (a floor) gets one line; a row with a ``target_bytes`` (memory) says
    whether impactagent's own median is under it.
    """
    lines = ["| operation | impactagent (median, min-max) | peer | peer (median, min-max) "
             "| ratio | target | met? |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        unit = row["unit"]
        ours = cell(row["ours"], unit)
        if "target_bytes" in row:
            lines.append(f"| {row['operation']} | {ours} | | | | <= {row['target_bytes']} B "
                         f"| {met_cell(row['met'])} |")
        if not row["peers"] and "target_bytes" not in row:
            lines.append(f"| {row['operation']} | {ours} | | | | | |")
        for peer in row["peers"]:
            target = "(context)" if peer["target"] is None else f"<= {peer['target']}"
            lines.append(f"| {row['operation']} | {ours} | {peer['name']} "
                         f"| {cell(peer['result'], unit)} | {peer['ratio']:.2f} | {target} "
                         f"| {met_cell(peer['met'])} |")
    return "\n".join(lines)
