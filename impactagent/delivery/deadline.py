"""Calls that end by a deadline, whatever the other side does (a socket timeout bounds each
read, not a request). Every network call runs on a daemon thread; its caller waits until its
deadline, then learns whether the call finished, never started (nothing was sent), or got no
answer (the server may yet store it).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable, Generic, List, Optional, Tuple, TypeVar

from ..core.threads import start_thread

T = TypeVar("T")

FINISHED = "finished"
NOT_STARTED = "not started"
NO_ANSWER = "no answer"

_RECHECK_SECONDS = 0.05  # a deadline may move closer while a caller waits
STUCK_SECONDS = 1.0  # past its deadline, a call's thread is retired for later calls
MAX_STUCK = 2  # retired threads left waiting on their calls, at most


class Job(Generic[T]):
    """One call on the thread; :meth:`when_done` hears its answer if it comes late."""

    __slots__ = ("deadline", "done", "error", "function", "late", "lock", "result", "state")

    def __init__(self, function: Callable[[], T], deadline: Callable[[], float]) -> None:
        self.function = function
        self.deadline = deadline
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.state = NOT_STARTED
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.late: Optional[Callable[[Optional[T]], None]] = None

    def stuck(self) -> bool:
        """Whether the call has run :data:`STUCK_SECONDS` past its deadline without ending."""
        return self.state != FINISHED and time.monotonic() >= self.deadline() + STUCK_SECONDS

    def when_done(self, callback: Callable[[Optional[T]], None]) -> None:
        """Call ``callback(result)`` when the call ends (None if it raised)."""
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


class _Worker:
    """A thread, its queue, and the deadline of the call it is running (None: idle)."""

    __slots__ = ("busy_until", "jobs", "thread")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Optional[Job[Any]]] = queue.SimpleQueue()
        self.thread: Optional[threading.Thread] = None
        self.busy_until: Optional[Callable[[], float]] = None

    def serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:  # retired: another worker took over
                return
            self.busy_until = job.deadline
            job.run()
            self.busy_until = None


class CallThread:
    """Runs calls one at a time on a daemon thread named ``name``. A call running far past
    its deadline gets its thread retired: later calls, and those queued behind it, go to a
    new one (at most :data:`MAX_STUCK` retired threads; past that, calls wait)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pid = -1
        self._worker: Optional[_Worker] = None
        self._retired: List[_Worker] = []
        self._lock = threading.Lock()

    def call(self, function: Callable[[], T], deadline: Callable[[], float]) -> Tuple[str, Job[T]]:
        """Run ``function`` and wait until it ends or ``deadline()`` passes. Returns what
        happened and the job; an exception from ``function`` is raised here."""
        job = Job(function, deadline)
        worker = self._submit(job, None)
        if worker is None:
            job.run()  # the caller's thread runs it
        while not job.done.wait(min(max(deadline() - time.monotonic(), 0), _RECHECK_SECONDS)):
            if time.monotonic() >= deadline():
                break
            if job.state == NOT_STARTED:  # queued behind a call that may have got stuck
                worker = self._submit(job, worker) or worker
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
        self._lock = threading.Lock()
        self._pid = -1

    def start(self) -> bool:
        """Start this process's thread now (Python 3.12 starts none at exit)."""
        with self._lock:
            return self._current() is not None

    def _current(self) -> Optional[_Worker]:
        if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
            self._pid = os.getpid()
            self._worker, self._retired = None, []
        worker = self._worker
        if worker is not None and self._stuck(worker):
            worker.jobs.put(None)
            self._retired.append(worker)
            worker = None
        if worker is None:
            worker = _Worker()
            try:
                worker.thread = start_thread(worker.serve, self.name)
            except RuntimeError:  # at interpreter exit
                return None
            self._worker = worker
        return worker

    def _stuck(self, worker: _Worker) -> bool:
        busy_until = worker.busy_until
        if busy_until is None or time.monotonic() < busy_until() + STUCK_SECONDS:
            return False
        self._retired = [w for w in self._retired if w.thread is not None
                         and w.thread.is_alive()]
        return len(self._retired) < MAX_STUCK

    def _submit(self, job: Job[Any], queued_on: Optional[_Worker]) -> Optional[_Worker]:
        """Queue ``job`` on the current thread unless there already (the first taker runs it)."""
        with self._lock:
            worker = self._current()
            if worker is not None and worker is not queued_on:
                worker.jobs.put(job)
            return worker


def start_or_run(work: Callable[[], object], name: str) -> Optional[threading.Thread]:
    """``work`` on a daemon thread; on this one (None) at exit, where no thread starts."""
    try:
        return start_thread(work, name)
    except RuntimeError:
        work()
        return None
