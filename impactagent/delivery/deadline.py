"""Calls that end by a deadline, whatever the other side does.

A socket timeout bounds each read, not a request: a server that trickles its answer a byte
at a time, a DNS lookup, or a user's transport can hold a call far past it. So every call
to the network runs on a daemon thread of the agent's (one for the metrics POSTs, one for
registering, so that neither waits for the other), and the caller waits no later than its
deadline. The caller learns which of three things happened: the call finished (its
result), it never started (withdrawn: an earlier call still holds the thread, so nothing
was sent), or it started and is still running (no answer: the server may yet store it).

The thread is started by :meth:`CallThread.start` (the agent's ``start()``) or on first use,
and lives as long as the process; a forked child starts its own. It must exist before the
interpreter's exit, where Python 3.12 starts no thread: there, without it, the call runs on
the caller's thread, and no deadline holds.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, Generic, Optional, Tuple, TypeVar

from ..core.threads import start_daemon

T = TypeVar("T")

FINISHED = "finished"
NOT_STARTED = "not started"
NO_ANSWER = "no answer"

#: How often a waiting caller looks again at a deadline that may have been moved closer.
_RECHECK_SECONDS = 0.05


class Job(Generic[T]):
    """One call on the thread; :meth:`when_done` hears its answer if it comes late."""

    __slots__ = ("done", "error", "function", "late", "lock", "result", "state")

    def __init__(self, function: Callable[[], T]) -> None:
        self.function = function
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.state = NOT_STARTED
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.late: Optional[Callable[[Optional[T]], None]] = None

    def when_done(self, callback: Callable[[Optional[T]], None]) -> None:
        """Call ``callback(result)`` when the call ends (now, if it has; on the call's
        thread otherwise). The result is None if the call raised."""
        with self.lock:
            if self.state != FINISHED:
                self.late = callback
                return
        callback(self.result)

    def run(self) -> None:
        with self.lock:
            if self.state != NOT_STARTED:
                return  # withdrawn by its caller
            self.state = NO_ANSWER
        try:
            self.result = self.function()
        except BaseException as error:  # handed to the caller, who raises it
            self.error = error
        with self.lock:
            self.state = FINISHED
            late = self.late
        self.done.set()
        if late is not None:
            late(self.result)


class CallThread:
    """Runs calls one at a time on a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pid = -1
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def call(self, function: Callable[[], T], deadline: Callable[[], float]
             ) -> Tuple[str, Job[T]]:
        """Run ``function`` and wait until it ends or ``deadline()`` (a monotonic time,
        read again while waiting: it may move closer) passes. Returns what happened and the
        job (its ``result`` if it finished); an exception from ``function`` is raised here."""
        job = Job(function)
        if not self._submit(job):
            job.run()
        while not job.done.wait(min(max(deadline() - time.monotonic(), 0), _RECHECK_SECONDS)):
            if time.monotonic() >= deadline():
                break
        with job.lock:
            if job.state == NOT_STARTED:
                job.state = "withdrawn"
                return NOT_STARTED, job
            if job.state == NO_ANSWER:
                return NO_ANSWER, job
        if job.error is not None:
            raise job.error
        return FINISHED, job

    def reset_after_fork(self) -> None:
        """In a forked child: no thread yet, and a lock no parent thread holds."""
        self._lock = threading.Lock()
        self._pid = -1

    def start(self) -> bool:
        """Start this process's thread now, if it has none; False where none can start."""
        with self._lock:
            return self._started()

    def _started(self) -> bool:
        if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
            self._pid = os.getpid()
            self._jobs = queue.SimpleQueue()
            self._thread = None
        if self._thread is None:
            try:
                self._thread = start_daemon(self._serve, self.name, self._jobs)
            except RuntimeError:  # at interpreter exit
                return False
        return True

    def _submit(self, job: Job) -> bool:
        with self._lock:
            if not self._started():
                return False  # the caller's thread runs it
            self._jobs.put(job)
            return True

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[Job]) -> None:
        while True:
            jobs.get().run()
