"""The background thread that flushes on an interval, and how a fleet of them behaves.

Thousands of agents report to one server, so what matters is what they do together:

- **No lockstep.** The first flush comes after a random time between half an interval and
  one and a half, and later ones every interval from there: a fleet started together is
  spread over the interval from its first flush on.
- **No retry storm.** A periodic flush tries each body once. After a flush that kept bodies
  (the server is down), the next flush waits ``interval x uniform(1, 1 + failures)``, with
  ``failures`` capped at :data:`MAX_STRETCH`: a failing agent sends less than a healthy one,
  never more, and agents that failed together drift apart. A server's ``Retry-After`` is
  never undercut.
- **No recovery spike.** Those random waits reach the recovered server spread out, and each
  agent delivers its backlog (merged back into one window) at its next flush, within
  ``1 + MAX_STRETCH`` intervals.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Optional

from ..core.threads import start_daemon
from .delivery import Delivery, FlushResult
from .registration import Registration

logger = logging.getLogger(__name__)

#: The most intervals a failing agent waits between two flushes.
MAX_STRETCH = 2
#: The longest the thread ever waits between flushes (Event.wait overflows on infinity).
MAX_WAIT_SECONDS = 24 * 3600.0


class IntervalBackoff:
    """The wait before the next flush, given how the last ones went.

    >>> backoff = IntervalBackoff(60.0, rng=random.Random(7))
    >>> 30 <= backoff.first_delay() < 90, backoff.next_delay()
    (True, 60.0)
    >>> backoff.failed(); backoff.failed(); 60 <= backoff.next_delay() <= 180
    True
    >>> backoff.succeeded(); backoff.next_delay()
    60.0
    """

    def __init__(self, interval: float, *, rng: Optional[random.Random] = None) -> None:
        self.interval = interval
        self.failures = 0
        self.retry_after = 0.0
        self._random = rng if rng is not None else random.Random()

    def first_delay(self) -> float:
        """The agent's phase in the fleet: uniform over an interval's length, from half an
        interval on (a process says nothing in its first half interval, as before)."""
        return self._random.uniform(0.5 * self.interval, 1.5 * self.interval)

    def failed(self, retry_after: float = 0.0) -> None:
        self.failures = min(self.failures + 1, MAX_STRETCH)
        self.retry_after = retry_after

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_after = 0.0

    def next_delay(self) -> float:
        delay = self.interval
        if self.failures:
            delay *= self._random.uniform(1, 1 + self.failures)
        return max(delay, self.retry_after)


class Flusher:
    """Runs ``delivery.flush`` every interval on a daemon thread until stopped.

    The thread is a daemon so that a process never hangs on it at exit; the agent's
    ``close()`` (also run by ``atexit``) is what makes the last window go out.

    With a ``registration``, the thread registers first, then before each flush while the
    registration is still due (it failed for a reason that may pass): the network is only
    ever waited for here, never in ``start()``.
    """

    def __init__(self, delivery: Delivery, interval: float,
                 registration: Optional[Registration] = None,
                 backoff: Optional[IntervalBackoff] = None) -> None:
        self.delivery = delivery
        self.registration = registration
        self.backoff = backoff if backoff is not None else IntervalBackoff(interval)
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = start_daemon(self._run, "impactagent-flusher")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to stop (cutting retry waits short); True if it ended in time."""
        self.stopping.set()
        if self._thread is None:
            return True
        if self._thread is threading.current_thread():
            return False  # close() called from this thread (by a transport): it ends next
        self._thread.join(max(timeout, 0))
        return not self._thread.is_alive()

    def _run(self) -> None:
        self._register()
        delay = self.backoff.first_delay()
        while not self.stopping.wait(min(delay, MAX_WAIT_SECONDS)):
            # A periodic flush may use up to one interval; it never overlaps the next.
            deadline = time.monotonic() + self.backoff.interval
            try:
                self._register()
                result = self.delivery.flush(deadline, interrupt=self.stopping, attempts=1)
            except Exception:  # a bug must not kill the loop: log it, count it, go on
                logger.exception("flush failed unexpectedly; will retry")
                self.delivery.ledger.add("flush_errors")
                self.backoff.failed()
            else:
                self._after(result)
            delay = self.backoff.next_delay()

    def _register(self) -> None:
        """Register if still due; not once the server refused the token for metrics too."""
        registration = self.registration
        if (registration is None or not registration.due or self.stopping.is_set()
                or self.delivery.unauthorized is not None):
            return
        registration.attempt(min(self.delivery.request_timeout, self.backoff.interval))

    def _after(self, result: FlushResult) -> None:
        if result.server_unavailable:
            self.backoff.failed(self.delivery.last_retry_after)
        elif result.delivered_bodies or result.empty_window:
            self.backoff.succeeded()
