"""SIGTERM (how docker, Kubernetes and systemd stop a service) runs no ``atexit`` hook.

When an agent starts on the main thread and SIGTERM has its default disposition, a handler
closes every started agent within its ``shutdown_timeout``, then ends the process as
SIGTERM would have. An app's own handler, or an ignored SIGTERM, is left alone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List, Optional, Protocol

from ..core.threads import start_daemon
from .settings import Settings


class Closing(Protocol):
    """What the handler needs of an agent's lifecycle."""

    settings: Settings

    def hurry(self) -> None: ...

    def close_by_own_deadline(self) -> None: ...

    def abandon(self) -> None: ...


_started: weakref.WeakSet[Closing] = weakref.WeakSet()
_guard = threading.Lock()
_installed = False
#: Per thread: the flushes and closes in progress (``depth``) and, on the main thread where
#: the handler runs, whether a SIGTERM waits for them to end (``deferred``).
_local = threading.local()
_ending = threading.Event()  # the handler is closing everything: a second SIGTERM waits
_ABANDON_SECONDS = 1.0  # for an agent's stuck state to be spooled or counted


def enroll(lifecycle: Closing) -> None:
    """Close ``lifecycle`` on SIGTERM, unless IMPACTAGENT_HANDLE_SIGTERM turns it off;
    install the handler if this is the main thread and SIGTERM has its default action."""
    global _installed
    if os.environ.get("IMPACTAGENT_HANDLE_SIGTERM", "").strip().lower() in ("0", "false",
                                                                            "no", "off"):
        return
    with _guard:
        _started.add(lifecycle)
        if (_installed or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
                or multiprocessing.parent_process() is not None):
            return  # an app's handler or SIG_IGN is theirs; see leave_to_multiprocessing()
        signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True


def leave_to_multiprocessing() -> None:
    """In a ``multiprocessing`` child: give SIGTERM back its default action. A Pool worker
    waits in a semaphore a signal does not always interrupt, so a Python handler may never
    run and ``Pool.terminate()`` would wait for good."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """Mark a flush or a close in progress on this thread: a SIGTERM that interrupts it
    waits for it (cut short) to end, not ending the process with the body it holds."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        # Only the thread the SIGTERM interrupted ends the process.
        if _local.depth == 0 and getattr(_local, "deferred", False):
            _close_all_and_end()


def _on_sigterm(signum: int, frame: Optional[Any]) -> None:
    if getattr(_local, "depth", 0):
        # A close on another thread would wait for what this flush or close holds: cut it
        # short, let it settle what it holds, then close every agent and end.
        _local.deferred = True
        for target in list(_started):
            target.hurry()
        return
    _close_all_and_end()


def _close_all_and_end() -> None:
    """Close every started agent, each within its ``shutdown_timeout``, then end; what an
    agent still holds by then is spooled or counted at once."""
    if _ending.is_set():  # a second SIGTERM interrupted the first's closing: it goes on
        return
    _ending.set()
    try:
        targets: List[Closing] = list(_started)
        closers = [_start(target.close_by_own_deadline) for target in targets]
        deadline = time.monotonic() + max((t.settings.shutdown_timeout for t in targets),
                                          default=0.0) + 1.0
        for closer in closers:
            if closer is not None:
                closer.join(max(deadline - time.monotonic(), 0.0))
        # Every agent: a close running on another thread may outlast its closer.
        late = [_start(target.abandon) for target in targets]
        for abandoning in late:
            if abandoning is not None:
                abandoning.join(_ABANDON_SECONDS)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # end as SIGTERM would have
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)  # not reached: the default action ends the process
    finally:  # reached only when cut short (Ctrl-C): a later SIGTERM is handled anew
        _ending.clear()


def _start(work: Callable[[], object]) -> Optional[threading.Thread]:
    """``work`` on a thread of its own; on this one (None) at exit, where no thread starts."""
    try:
        return start_daemon(work, "impactagent-sigterm")
    except RuntimeError:
        work()
        return None


def _reset_after_fork() -> None:
    """A forked child starts with no close in progress, no deferred signal, a free guard."""
    global _guard, _local, _ending
    _guard = threading.Lock()
    _local = threading.local()
    _ending = threading.Event()


os.register_at_fork(after_in_child=_reset_after_fork)
