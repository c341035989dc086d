"""The server's write window: unleash-server 8.2.0 answers 202 to a body, holds its flag
counts, and writes all it holds, every app's, about every 5 s, in one statement. Some counts
fail that write, losing the window for every app.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..core.server_limits import (
    DROPPED_VARIANT_NAMES,
    MAX_APP_NAME_LENGTH,
    MAX_VARIANT_COUNT,
    OBJECT_PROTOTYPE_PROPERTIES,
)
from ..server_rules.dates import YEAR_ONE_MS, hour_of

#: The names a plain JavaScript object answers from its prototype.
_PROTOTYPE = OBJECT_PROTOTYPE_PROPERTIES - DROPPED_VARIANT_NAMES

WRITE_PERIOD = 5.0

Row = Tuple[str, str, str, str]  # app, environment, flag, hour


@dataclass(frozen=True)
class Arrival:
    """One flag's counts from one accepted body."""

    at: float
    app: str
    environment: str
    flag: str
    stop_ms: int  # the bucket's stop, milliseconds since 1970
    yes: float
    no: int
    variants: Optional[Dict[str, int]]  # None: the body has none (or null, "", 0, false)

    @property
    def row(self) -> Row:
        return (self.app, self.environment, self.flag, hour_of(self.stop_ms))


@dataclass
class WindowFailure:
    """A write the server fails: when, why, whose, and what was lost."""

    at: float
    reasons: List[str]
    apps: List[str]  # every app with counts in the window
    lost: Dict[str, int] = field(default_factory=dict)  # "yes", "no", "variants": counts
    variants_only: bool = False  # the yes/no rows were written


class WriteWindow:
    """Flag counts arrived since the last write (not thread-safe: the caller's lock)."""

    def __init__(self) -> None:
        self.arrivals: List[Arrival] = []
        self.opened: Optional[float] = None

    def add(self, arrival: Arrival) -> None:
        if self.opened is None:
            self.opened = arrival.at
        self.arrivals.append(arrival)

    def failing_with(self, arrivals: List[Arrival]) -> List[str]:
        """Why the window would fail once ``arrivals`` join it, where neither fails alone."""
        before = set(_failures(self.arrivals, _sums(self.arrivals))[0])
        alone = set(_failures(arrivals, _sums(arrivals))[0])
        joined = self.arrivals + arrivals
        return [reason for reason in _failures(joined, _sums(joined))[0]
                if reason not in before and reason not in alone]

    def write(self) -> Tuple[Dict[Row, Dict[str, Any]], Optional[WindowFailure]]:
        """Empty the window: the rows the server writes, and the failure, if any."""
        arrivals, self.arrivals, self.opened = self.arrivals, [], None
        rows = _sums(arrivals)
        failing, variants_only = _failures(arrivals, rows)
        if not failing:
            return rows, None
        failure = WindowFailure(arrivals[-1].at, failing,
                                sorted({a.app for a in arrivals}), variants_only=variants_only)
        failure.lost["variants"] = sum(n or 0 for row in rows.values()
                                       for n in row["variants"].values())
        if variants_only:
            for row in rows.values():
                row["variants"] = {}
            return rows, failure
        failure.lost["yes"] = sum(row["yes"] for row in rows.values())
        failure.lost["no"] = sum(row["no"] for row in rows.values())
        return {}, failure


def _sums(arrivals: List[Arrival]) -> Dict[Row, Dict[str, Any]]:
    """The rows the arrivals add up to, yes rounded, merged as 8.2.0 merges them. A name of
    ``Object.prototype`` not held adds its count to the prototype's function, whose text
    (``None`` here) fails the write unless a later arrival without the name drops it."""
    rows: Dict[Row, Dict[str, Any]] = {}
    for arrival in arrivals:
        row = rows.get(arrival.row)
        later = arrival.variants or {}
        if row is None:
            rows[arrival.row] = {"yes": arrival.yes, "no": arrival.no, "variants": dict(later)}
            continue
        row["yes"] += arrival.yes
        row["no"] += arrival.no
        held = row["variants"]
        merged: Dict[str, Optional[int]] = {}
        for name, n in later.items():
            if name in held:
                merged[name] = None if held[name] is None else held[name] + n
            else:
                merged[name] = None if name in _PROTOTYPE else n
        for name, n in held.items():
            if name not in merged and name not in _PROTOTYPE:
                merged[name] = n
        row["variants"] = merged
    for row in rows.values():
        row["yes"] = _rounded(row["yes"])
    return rows


def _failures(arrivals: List[Arrival], rows: Dict[Row, Dict[str, Any]]) -> Tuple[List[str], bool]:
    """Why the write of these arrivals fails, and whether only the variant rows fail."""
    failing = _row_failures(arrivals)
    if failing:
        return failing, False
    return _variant_failures(rows), True


def _row_failures(arrivals: List[Arrival]) -> List[str]:
    reasons = []
    for app in sorted({a.app for a in arrivals}):
        if len(app) > MAX_APP_NAME_LENGTH or "\0" in app:
            shown = f"{app[:40]!r}..." if len(app) > 40 else repr(app)
            reasons.append(f"appName {shown} is longer than {MAX_APP_NAME_LENGTH} characters "
                           "or holds NUL")
    if any(a.stop_ms < YEAR_ONE_MS for a in arrivals):
        reasons.append("a bucket's stop is before year 1")
    return reasons


def _variant_failures(rows: Dict[Row, Dict[str, Any]]) -> List[str]:
    reasons = []
    for (app, _env, flag, _hour), row in sorted(rows.items()):
        for name, n in sorted(row["variants"].items()):
            if "\0" in name:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} holds NUL, which "
                               "PostgreSQL text cannot")
            if n is None:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} came in a later "
                               "body of the window than the counts held for it, which lack "
                               f"it: the server added a count to Object.prototype.{name} "
                               "and cannot write the text that makes")
                continue
            if n > MAX_VARIANT_COUNT:
                reasons.append(f"variant {name!r} of {flag!r} from {app!r} counts {n} in one "
                               f"window, over {MAX_VARIANT_COUNT}")
    return reasons


def _rounded(count: float) -> int:
    """PostgreSQL's cast of a fractional count to an integer column: half away from 0."""
    return math.floor(count + 0.5) if count >= 0 else -math.floor(-count + 0.5)
