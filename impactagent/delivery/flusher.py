"""The background thread that flushes on an interval, and how a fleet of them behaves.

Thousands of agents report to one server, so what matters is what they do together:

- **No lockstep.** The first flush comes after a random time between half an interval and
  one and a half (:func:`phase`), later ones every interval from there: a fleet started
  together is spread over the interval from its first flush on.
- **No retry storm.** A periodic flush tries each body once. After a flush that kept bodies
  (the server is down), the next waits ``interval x uniform(1, 1 + failures)``, with
  ``failures`` capped at :data:`MAX_STRETCH` (:func:`interval_backoff`), and never less than
  a server's ``Retry-After``: a failing agent sends less than a healthy one, and agents that
  failed together drift apart. The registration is retried on the same schedule.
- **No recovery spike.** Those random waits reach the recovered server spread out, and each
  agent delivers its backlog (merged back into one window) at its next flush.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Optional

from ..core.threads import start_daemon
from .backoff import Backoff
from .delivery import Delivery, FlushResult
from .registration import Registration
from .transport_api import told

logger = logging.getLogger(__name__)

#: The most intervals a failing agent waits between two flushes.
MAX_STRETCH = 2
#: The longest the thread ever waits between flushes (Event.wait overflows on infinity).
MAX_WAIT_SECONDS = 24 * 3600.0


def phase(interval: float, rng: Optional[random.Random] = None) -> float:
    """The first flush's delay, the agent's phase in the fleet: uniform over an interval's
    length, from half an interval on (a process says nothing in its first half interval)."""
    uniform = rng.uniform if rng is not None else random.uniform
    return uniform(0.5 * interval, 1.5 * interval)


def interval_backoff(interval: float) -> Backoff:
    """The waits between flushes: ``interval x uniform(1, 1 + min(failures, MAX_STRETCH))``."""
    return Backoff(first=2 * interval, most=(1 + MAX_STRETCH) * interval, least=interval)


class Flusher:
    """Runs ``delivery.flush`` every interval on a daemon thread until stopped, registering
    first and before each flush while ``registration`` is due (``start()`` never waits for
    the network). A daemon: the agent's ``close()`` sends the last window, not this thread.
    """

    def __init__(self, delivery: Delivery, interval: float,
                 registration: Optional[Registration] = None) -> None:
        self.delivery = delivery
        self.interval = interval
        self.registration = registration
        self.backoff = interval_backoff(interval)
        #: Flushes failed in a row, and the last one's Retry-After (none undercuts it).
        self.failures = 0
        self.retry_after = 0.0
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
        delay = phase(self.interval)
        while not self.stopping.wait(min(delay, MAX_WAIT_SECONDS)):
            # A periodic flush may use up to one interval; it never overlaps the next.
            deadline = time.monotonic() + self.interval
            try:
                self._register()
                result = self.delivery.flush(deadline, interrupt=self.stopping, attempts=1)
            # BaseException too: no Ctrl-C or app's exit reaches this thread (signals go to
            # the main one), so a SystemExit here is a transport's, and must not end the loop.
            # Its text is the transport's (redacted); a bug's traceback is ours.
            except BaseException as error:  # a bug must not kill the loop: log, count, go on
                logger.error("flush failed unexpectedly (%s); will retry",
                             told(error, self.delivery.redact),
                             exc_info=isinstance(error, Exception))
                self.delivery.ledger.add("flush_errors")
                self._failed(0.0)
            else:
                self._after(result)
            delay = self.backoff.wait(self.failures, self.retry_after)

    def _register(self) -> None:
        """Register if still due; not once the server refused the token for metrics too."""
        registration = self.registration
        if (registration is None or not registration.due or self.stopping.is_set()
                or self.delivery.unauthorized is not None):
            return
        registration.attempt(min(self.delivery.request_timeout, self.interval))

    def _after(self, result: FlushResult) -> None:
        if result.server_unavailable:
            self._failed(max(self.delivery.not_before - time.monotonic(), 0.0))
        elif result.delivered_bodies or result.empty_window:
            self.failures, self.retry_after = 0, 0.0

    def _failed(self, retry_after: float) -> None:
        self.failures += 1
        self.retry_after = retry_after
