"""Delivery health in the log: an outage when it starts (a WARNING), while it lasts (one at
most every :data:`REMIND_SECONDS`), and when it ends (an INFO), not a line per POST."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, Protocol

logger = logging.getLogger(__name__)

REMIND_SECONDS = 300.0


class Flushed(Protocol):
    """What the log needs of one flush's result (delivery's ``FlushResult``)."""

    @property
    def kept_bodies(self) -> int: ...

    @property
    def delivered_bodies(self) -> int: ...

    @property
    def delivered_events(self) -> int: ...


class Health:
    """Tells the log when delivery to ``where`` fails and when it recovers."""

    def __init__(self, where: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._since: Optional[float] = None  # when the outage began
        self._last_line = 0.0
        self._failed_flushes = self._kept = 0  # since the last line

    def after(self, result: Flushed, failure: str, keeping: str) -> None:
        """Note one flush's result, what its last failed attempt said, and where bodies not
        delivered go."""
        with self._lock:
            now = self._clock()
            if result.kept_bodies:
                self._failed(now, result.kept_bodies, failure or "no answer", keeping)
            elif result.delivered_bodies and self._since is not None:
                logger.info("delivery to %s recovered after %.0f s: %d bodies (%d events) "
                            "delivered now", self.where, now - self._since,
                            result.delivered_bodies, result.delivered_events)
                self._since = None

    def _failed(self, now: float, kept: int, failure: str, keeping: str) -> None:
        self._failed_flushes += 1
        self._kept += kept
        if self._since is None:
            self._since = now
        elif now - self._last_line < REMIND_SECONDS:
            return
        first = self._failed_flushes == 1 and now == self._since
        logger.warning(
            "delivery to %s %s (%s); %d bodies %s%s", self.where,
            "failed" if first else "is still failing", failure, self._kept, keeping,
            "" if first else f" (over {self._failed_flushes} flushes since the last line)")
        self._last_line = now
        self._failed_flushes = self._kept = 0
