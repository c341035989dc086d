"""The ledgers behind ``Agent.statistics()``: every value recorded is delivered, pending, or
counted here as dropped under a reason (the first of each reason and metric logged)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Callable, Protocol

logger = logging.getLogger(__name__)

#: Reasons a recorded value can be dropped, with the sentence logged the first time.
DROP_REASONS: dict[str, str] = {
    "non_finite_value": "a NaN or infinite gauge or histogram value was dropped",
    "unsafe_value": "a gauge value beyond +/-(2**53 - 1), which Unleash refuses, was dropped",
    "unsafe_sum": "a histogram observation that would take the sum sent for its window "
                  "beyond +/-(2**53 - 1), which Unleash refuses, was dropped",
    "cardinality_limit": "a new label set past the metric's series limit was dropped",
    "flag_limit": "a flag count past the limit on distinct flag names was dropped",
    "oversize_item": "a single series too large for any request body was dropped",
    "non_finite_sum": "a histogram whose sum overflowed to infinity was dropped",
    "unsafe_count": "a histogram window whose observations add up past 2**53 - 1, which "
                    "Unleash refuses, was dropped",
    "variant_count_limit": "a flag whose variant count is past 2**31 - 1, which makes "
                           "Unleash lose every app's variant counts of a write window, was "
                           "dropped",
    "rejected_by_server": "the server answered 400 to a request body, so its events were dropped",
    "spool_full": "the oldest spooled request bodies were deleted to stay under the spool cap",
    "spool_corrupt": "a corrupt spool file was moved aside (counted in files)",
    "spool_error": "a request body could not be written to the spool (disk full, directory "
                   "gone), so its events were dropped",
    "too_large": "a request body too large for the server even on its own was dropped",
    "bridged_labels_changed": "a bridged metric's series whose label names are not the ones "
                              "the metric was first bridged with (its source re-defined it "
                              "with other labels) was dropped",
    "empty_label_value": "a bridged metric's series with an empty value for a label, which "
                         "Unleash refuses (with every other impact metric of the body), was "
                         "dropped",
    "not_delivered_by_close": "the agent closed with events the server had not taken, and "
                              "no spool_dir to keep them",
}


class Drops(Protocol):
    """Where drops are counted: the :class:`DropCounter` itself, or a :class:`DropTally`
    that holds them until whoever owns them for good counts them there."""

    def add(self, reason: str, n: int = 1, *, detail: str = "",
            explained: bool = False) -> None: ...


class DropCounter:
    """Thread-safe counts of dropped values by reason (drops are rare: a lock is fine).

    >>> drops = DropCounter()
    >>> drops.add("non_finite_value", detail="gauge 'queue_depth'")
    >>> drops.as_dict()
    {'non_finite_value': 1}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._logged: set[tuple[str, str]] = set()

    def add(self, reason: str, n: int = 1, *, detail: str = "", explained: bool = False) -> None:
        """Count ``n`` values dropped for ``reason``; log the first per reason and ``detail``
        unless the caller ``explained`` it."""
        if self.count(reason, n, detail) and not explained:
            self.warn(reason, detail)

    def count(self, reason: str, n: int, detail: str) -> bool:
        """Count without logging; True the first time for ``reason`` and ``detail``."""
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + n
            first = (reason, detail) not in self._logged
            if first:
                self._logged.add((reason, detail))
        return first

    def warn(self, reason: str, detail: str) -> None:
        """The first drop's line for ``reason`` and ``detail``."""
        sentence = DROP_REASONS.get(reason, f"values were dropped ({reason})")
        logger.warning("%s%s; later drops like it are only counted in "
                       "Agent.statistics()['dropped'][%r]",
                       sentence, f" ({detail})" if detail else "", reason)

    def withdraw(self, reason: str, n: int) -> None:
        """Take back ``n`` values counted under ``reason`` that were delivered after all."""
        with self._lock:
            left = self._counts.get(reason, 0) - n
            if left > 0:
                self._counts[reason] = left
            else:
                self._counts.pop(reason, None)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._counts = {}
        self._logged = set()

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class DropTally:
    """The drops a request-body build makes, counted into ``into`` only by :meth:`commit`:
    a build whose snapshot is given back (taken by close, or the build failed) is built
    again, and only the build that turns it into bodies for good counts them.

    >>> drops = DropCounter()
    >>> tally = DropTally(drops)
    >>> tally.add("oversize_item", 3, detail="flag 'huge'", explained=True)
    >>> drops.as_dict()
    {}
    >>> tell = tally.commit()
    >>> drops.as_dict()
    {'oversize_item': 3}
    >>> tell()  # the first drop's lines, outside any lock
    """

    def __init__(self, into: DropCounter) -> None:
        self.into = into
        self._counts: dict[tuple[str, str, bool], int] = {}  # one build, one thread

    def add(self, reason: str, n: int = 1, *, detail: str = "", explained: bool = False) -> None:
        key = (reason, detail, explained)
        self._counts[key] = self._counts.get(key, 0) + n

    def commit(self) -> Callable[[], None]:
        """Count what was tallied into ``into``, once (the tally is empty after); returns
        what logs the first of each reason, to call outside any lock: a log handler may be
        slow or raise, and the counts are in before it runs."""
        counts, self._counts = self._counts, {}
        first = [(reason, detail) for (reason, detail, explained), n in counts.items()
                 if self.into.count(reason, n, detail) and not explained]

        def tell() -> None:
            for reason, detail in first:
                self.into.warn(reason, detail)
        return tell


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Attempt(Protocol):
    """What the ledger reads of one POST's outcome (delivery's ``Outcome``)."""

    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def detail(self) -> str: ...


class DeliveryLedger:
    """Thread-safe counters of what delivery did; failures keyed by HTTP status or, without
    an answer, by what went wrong."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {
            "attempts": 0, "retries": 0, "delivered_bodies": 0, "delivered_events": 0,
            "possibly_duplicated_events": 0, "empty_windows": 0}
        self._failures: dict[str, int] = {}
        self.last_success: str | None = None
        self.last_error: str | None = None
        self.last_error_detail: str | None = None

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def attempt(self, outcome: Attempt) -> None:
        status = outcome.status
        with self._lock:
            self._counts["attempts"] += 1
            if outcome.kind != "delivered":
                detail = outcome.detail or "error"
                key = str(status) if status is not None else detail.split(":")[0]
                self._failures[key] = self._failures.get(key, 0) + 1
                self.last_error = _now_iso()
                self.last_error_detail = f"HTTP {status}" if status is not None else key

    def delivered(self, events: int) -> None:
        with self._lock:
            self._counts["delivered_bodies"] += 1
            self._counts["delivered_events"] += events
            self.last_success = _now_iso()

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {**self._counts, "failures": dict(self._failures),
                    "last_success": self.last_success, "last_error": self.last_error,
                    "last_error_detail": self.last_error_detail}
