"""Start, flush, close, exit and fork: the agent's life, and the delivery parts it owns.

Why each hook exists:

- ``atexit``: a plain ``exit`` (or the end of a script) must still send the last window.
  The flusher thread is a daemon, so it never holds up exit; ``close`` does the final flush
  on the exiting thread, bounded by ``shutdown_timeout``.
- ``os.register_at_fork``: after ``fork()`` (gunicorn ``--preload``, uWSGI, Celery prefork,
  ``multiprocessing``) the child inherits the parent's counts, locks that another thread may
  have held at the fork, the parent's sockets, and no flusher thread. The child therefore
  starts with zero counts (the parent sends what it recorded), new locks, a new session, a
  new connection id, and, if the parent was flushing, a flusher of its own.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Dict, Optional

from .delivery import Delivery, FlushResult
from .flusher import Flusher
from .payload import Identity, environment_from_token
from .recorder import Recorder
from .settings import Settings
from .statistics import DeliveryLedger
from .transport import Transport


class Lifecycle:
    """The delivery side of one agent: transport, spool, flusher, and their hooks."""

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        environment = environment_from_token(settings.api_key, settings.environment)
        self.identity = Identity.create(settings.app_name, environment, settings.instance_id)
        self.ledger = DeliveryLedger()
        self._lock = threading.Lock()  # start/close/fork against each other
        self._closed: Optional[FlushResult] = None
        self._pid = os.getpid()
        self.spool = None
        self.delivery: Optional[Delivery] = None
        self.flusher: Optional[Flusher] = None
        if settings.metrics_url is None:
            return
        if settings.spool_dir is not None:
            from .spool import Spool

            self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes,
                               drops=recorder.drops)
        transport = Transport(
            settings.metrics_url, settings.api_key or "", self.identity,
            flush_interval=settings.flush_interval, headers=settings.headers,
            verify=settings.verify, proxies=settings.proxies,
        )
        self.delivery = Delivery(
            recorder, transport, request_timeout=settings.request_timeout,
            max_payload_bytes=settings.max_payload_bytes, ledger=self.ledger,
            drops=recorder.drops, spool=self.spool,
        )
        self_ref = weakref.ref(self)
        os.register_at_fork(after_in_child=_call_on(self_ref, Lifecycle.after_fork_in_child))

    # -- start / flush / close ---------------------------------------------------------------

    def start(self) -> None:
        if self.delivery is None:
            raise RuntimeError("this agent has no url: it records, but has nowhere to send")
        with self._lock:
            if self._closed is not None:
                raise RuntimeError("this agent was closed; create a new one to send again")
            if self.flusher is None:
                self.flusher = Flusher(self.delivery, self.settings.flush_interval)
                self.flusher.start()
                atexit.register(_call_on(weakref.ref(self), Lifecycle.close_at_exit))

    def flush(self, timeout: float) -> FlushResult:
        if self.delivery is None:
            return FlushResult(skipped="no url configured")
        return self.delivery.flush(time.monotonic() + timeout)

    def close(self, timeout: float) -> FlushResult:
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            return FlushResult(timed_out=True, skipped="another close is still running")
        try:
            if self._closed is not None:
                return self._closed
            if self.delivery is None:
                self._closed = FlushResult(skipped="no url configured")
                return self._closed
            if self.flusher is not None:
                # Give the thread's flush at most half the time; the final flush needs the rest.
                self.flusher.stop(max(deadline - time.monotonic(), 0) / 2)
            result = self.delivery.flush(deadline)
            self.delivery.set_aside()  # spooled, or counted: never lost without a trace
            self.delivery.transport.close()
            self._closed = result
            return result
        finally:
            self._lock.release()

    def close_at_exit(self) -> None:
        if self.flusher is not None and self._closed is None:
            self.close(self.settings.shutdown_timeout)

    # -- fork --------------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """Reset everything a forked child must not share with its parent (see module doc)."""
        if os.getpid() == self._pid:
            return  # already done (after_fork() called by hand as well as by the hook)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.recorder.reset_after_fork()
        self.ledger = DeliveryLedger()
        self.identity = self.identity._replace(connection_id=str(uuid.uuid4()))
        if self.delivery is None:
            return
        self.delivery.transport.reset_after_fork(self.identity)
        self.delivery.ledger = self.ledger
        self.delivery.lock = threading.Lock()
        if self.spool is not None:
            self.spool.reset_after_fork()
        was_flushing = self.flusher is not None and self._closed is None
        self.flusher = None
        if was_flushing:
            self.start()

    def statistics(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {"delivery": self.ledger.as_dict()}
        if self.delivery is not None:
            result["sending_stopped_by_status"] = self.delivery.unauthorized
        if self.spool is not None:
            result["spool"] = {"files": len(self.spool), "bytes": self.spool.size_bytes()}
        return result


def _call_on(ref: weakref.ref[Lifecycle], method: Callable[[Lifecycle], Any]
             ) -> Callable[[], None]:
    """A hook that calls ``method`` on the object if it still exists (hooks can't be removed,
    and must not keep an agent alive)."""

    def hook() -> None:
        target = ref()
        if target is not None:
            method(target)

    return hook
