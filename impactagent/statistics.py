"""What the agent did with what the app recorded: the ledger behind ``Agent.statistics()``.

Nothing recorded is lost silently. A value is either delivered, still pending, or counted
here as dropped under a reason, and the first drop for each reason is logged once through
``logging.getLogger("impactagent")``.
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, Set, Tuple

logger = logging.getLogger("impactagent")

#: Reasons a recorded value can be dropped, with the sentence logged the first time.
DROP_REASONS: Dict[str, str] = {
    "non_finite_value": "a NaN or infinite gauge or histogram value was dropped",
    "cardinality_limit": "a new label set past the metric's series limit was dropped",
    "flag_limit": "a flag count past the limit on distinct flag names was dropped",
    "oversize_item": "a single series too large for any request body was dropped",
    "non_finite_sum": "a histogram whose sum overflowed to infinity was dropped",
}


class DropCounter:
    """Thread-safe counts of dropped values by reason; drops are rare, so a lock is fine.

    >>> drops = DropCounter()
    >>> drops.add("non_finite_value", detail="gauge 'queue_depth'")
    >>> drops.as_dict()
    {'non_finite_value': 1}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        # (reason, detail) pairs already logged; details name a metric, so this stays small.
        self._logged: Set[Tuple[str, str]] = set()

    def add(self, reason: str, n: int = 1, *, detail: str = "") -> None:
        """Count ``n`` values dropped for ``reason``; log the first for each reason and detail.

        ``detail`` names where the drop happened (a metric), so each misbehaving metric is
        named once in the logs without flooding them.
        """
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + n
            first = (reason, detail) not in self._logged
            if first:
                self._logged.add((reason, detail))
        if first:
            sentence = DROP_REASONS.get(reason, f"values were dropped ({reason})")
            logger.warning(
                "impactagent: %s%s; later drops like it are only counted in "
                "Agent.statistics()['dropped'][%r]",
                sentence, f" ({detail})" if detail else "", reason,
            )

    def as_dict(self) -> Dict[str, int]:
        """Return a copy of the counts by reason."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """Return the number of dropped values over all reasons."""
        with self._lock:
            return sum(self._counts.values())
