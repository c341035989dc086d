"""The background thread that flushes on an interval, and how a fleet of them behaves: no
lockstep (the first flush at a random :func:`phase`), no retry storm (one try per body, and
after a failure a longer random wait, :func:`interval_backoff`, never under a server's
``Retry-After``), so no recovery spike either."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Optional

from ..core.threads import start_thread
from .backoff import Backoff
from .delivery import Delivery, FlushResult
from .registration import Registration
from .transport_api import told

logger = logging.getLogger(__name__)

MAX_STRETCH = 2  # the most intervals a failing agent waits between two flushes
MAX_WAIT_SECONDS = 24 * 3600.0  # Event.wait overflows on infinity


def phase(interval: float, rng: Optional[random.Random] = None) -> float:
    """The first flush's delay: uniform between half an interval and one and a half."""
    uniform = rng.uniform if rng is not None else random.uniform
    return uniform(0.5 * interval, 1.5 * interval)


def interval_backoff(interval: float) -> Backoff:
    """The waits between flushes: ``interval x uniform(1, 1 + min(failures, MAX_STRETCH))``."""
    return Backoff(first=2 * interval, most=(1 + MAX_STRETCH) * interval, least=interval)


class Flusher:
    """Runs ``delivery.flush`` every interval on a daemon thread until stopped, registering
    first and before each flush while ``registration`` is due. The agent's ``close()`` sends
    the last window, not this thread."""

    def __init__(self, delivery: Delivery, interval: float,
                 registration: Optional[Registration] = None) -> None:
        self.delivery = delivery
        self.interval = interval
        self.registration = registration
        self.backoff = interval_backoff(interval)
        self.failures = 0  # in a row, and the last one's Retry-After
        self.retry_after = 0.0
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = start_thread(self._run, "impactagent-flusher")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Stop the thread, cutting retry waits short; True if it ended in time."""
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
            deadline = time.monotonic() + self.interval
            try:
                self._register()
                result = self.delivery.flush(deadline, interrupt=self.stopping, paced=True)
            # BaseException too: signals go to the main thread, so a SystemExit here is a
            # transport's, and must not end the loop. A bug's traceback is ours to show.
            except BaseException as error:
                logger.error("flush failed unexpectedly (%s); will retry",
                             told(error, self.delivery.redact),
                             exc_info=isinstance(error, Exception))
                self.delivery.ledger.add("flush_errors")
                self._failed(0.0)
            else:
                self._after(result)
            delay = self.backoff.wait(self.failures, self.retry_after)

    def _register(self) -> None:
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
