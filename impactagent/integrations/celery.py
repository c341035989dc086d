"""Celery: a flag scope and a count per task, and the agent in every worker process.

Call :func:`instrument_celery` where the Celery app is made. Each task is counted and timed by
``task`` and ``state``. A prefork child closes its agent at ``worker_process_shutdown``: it
ends with ``os._exit``, which skips ``atexit``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from ..agent import Agent
from ..core.flag_context import ScopeToken, close_scope, open_scope

__all__ = ["TASK_BUCKETS", "CeleryInstrumentation", "instrument_celery"]

TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_LABELS = ("task", "state")
#: The Celery signals received, each by the method of the same name.
_SIGNALS = ("task_prerun", "task_postrun", "worker_process_init", "worker_process_shutdown")
_perf_counter = time.perf_counter


class CeleryInstrumentation:
    """The signal receivers for one agent."""

    def __init__(self, agent: Agent, *, flags: Sequence[str] = (),
                 buckets: Sequence[float] = TASK_BUCKETS, prefix: str = "celery") -> None:
        self.agent = agent
        self.tasks = agent.counter(f"{prefix}_tasks_total", "Celery tasks run",
                                   labels=_LABELS, flags=flags)
        self.duration = agent.histogram(f"{prefix}_task_duration_seconds",
                                        "Time to run a Celery task, in seconds",
                                        labels=_LABELS, buckets=buckets, flags=flags)
        # The scope and start of each running task, by task id, from prerun to postrun.
        self._running: Dict[str, Tuple[ScopeToken, float]] = {}
        self._lock = threading.Lock()
        self._connected = False

    def connect(self) -> CeleryInstrumentation:
        """Connect the receivers (idempotent)."""
        from celery import signals

        if not self._connected:
            for name in _SIGNALS:  # weak=False: bound methods of an object nobody else holds
                getattr(signals, name).connect(getattr(self, name), weak=False)
            self._connected = True
        return self

    def disconnect(self) -> None:
        """Remove the receivers."""
        from celery import signals

        for name in _SIGNALS:
            getattr(signals, name).disconnect(getattr(self, name))
        self._connected = False

    def task_prerun(self, sender: Any = None, task_id: Optional[str] = None, **extra: Any) -> None:
        entry = (open_scope(), _perf_counter())
        with self._lock:
            self._running[str(task_id)] = entry

    def task_postrun(self, sender: Any = None, task_id: Optional[str] = None,
                     state: Optional[str] = None, **extra: Any) -> None:
        with self._lock:
            entry = self._running.pop(str(task_id), None)
        if entry is None:
            return  # prerun ran before we connected
        token, start = entry
        try:
            name = getattr(sender, "name", None) or "unknown"
            outcome = (state or "unknown").lower()
            self.tasks.labels(task=name, state=outcome).inc()
            self.duration.labels(task=name, state=outcome).observe(_perf_counter() - start)
        finally:
            # Postrun in another context than prerun's: nothing there to undo.
            with contextlib.suppress(ValueError):
                close_scope(token)

    def worker_process_init(self, **extra: Any) -> None:
        self.agent.after_fork()  # a no-op where the fork hook ran
        if self.agent.settings.url is not None:
            self.agent.start()

    def worker_process_shutdown(self, **extra: Any) -> None:
        self.agent.close()


def instrument_celery(agent: Agent, *, flags: Sequence[str] = (),
                      buckets: Sequence[float] = TASK_BUCKETS,
                      prefix: str = "celery") -> CeleryInstrumentation:
    """Count, time and flag-scope every Celery task with ``agent``; start and close it in
    each worker process. Returns the receivers (``.disconnect()`` removes them)."""
    return CeleryInstrumentation(agent, flags=flags, buckets=buckets, prefix=prefix).connect()
