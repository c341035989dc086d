"""The background thread that flushes on an interval and backs off while the server is down.

Backoff across flushes follows the Unleash SDKs' convention: the next flush waits
``interval x (1 + failures)``, ``failures`` capped at 10, one step back per success, with
+-10% jitter so that a fleet restarted together does not flush in lockstep. A server's
``Retry-After`` is never undercut.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Optional

from . import shutdown
from .delivery import Delivery, FlushResult
from .registration import Registration

logger = logging.getLogger("impactagent")

MAX_FAILURES = 10
#: The longest the thread ever waits between flushes (Event.wait overflows on infinity).
MAX_WAIT_SECONDS = 24 * 3600.0


class IntervalBackoff:
    """The wait before the next flush, given how the last ones went.

    >>> backoff = IntervalBackoff(60.0, jitter=0)
    >>> backoff.failed(); backoff.failed(); backoff.next_delay()
    180.0
    >>> backoff.succeeded(); backoff.next_delay()
    120.0
    """

    def __init__(self, interval: float, *, jitter: float = 0.1) -> None:
        self.interval = interval
        self.jitter = jitter
        self.failures = 0
        self.retry_after = 0.0

    def failed(self, retry_after: float = 0.0) -> None:
        self.failures = min(self.failures + 1, MAX_FAILURES)
        self.retry_after = retry_after

    def succeeded(self) -> None:
        self.failures = max(self.failures - 1, 0)
        self.retry_after = 0.0

    def next_delay(self) -> float:
        delay = self.interval * (1 + self.failures)
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
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
                 registration: Optional[Registration] = None) -> None:
        self.delivery = delivery
        self.registration = registration
        self.backoff = IntervalBackoff(interval)
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="impactagent-flusher",
                                            daemon=True)
            self._thread.start()

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
        shutdown.keep_signals_off_this_thread()
        self._register()
        while not self.stopping.wait(min(self.backoff.next_delay(), MAX_WAIT_SECONDS)):
            # A periodic flush may use up to one interval; it never overlaps the next.
            deadline = time.monotonic() + self.backoff.interval
            try:
                self._register()
                result = self.delivery.flush(deadline, interrupt=self.stopping)
            except Exception:  # a bug must not kill the loop: log it, count it, go on
                logger.exception("impactagent: flush failed unexpectedly; will retry")
                self.delivery.ledger.add("flush_errors")
                self.backoff.failed()
                continue
            self._after(result)

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
        elif result.delivered_bodies:
            self.backoff.succeeded()
