"""SIGTERM: how docker, Kubernetes and systemd stop a service, and the last window with it.

SIGTERM's default action runs no ``atexit`` hook. When an agent starts on the main thread
and SIGTERM has its default disposition, a handler closes every started agent within its
``shutdown_timeout`` and then ends the process as SIGTERM would have (default disposition,
the signal again), so a supervisor sees the same exit status. A handler the app installed,
or an ignored SIGTERM, is left alone (their exit runs ``atexit``); ``handle_sigterm=False``
or ``IMPACTAGENT_HANDLE_SIGTERM=0`` turns it off. The closing runs on helper threads the
handler waits for, boundedly.
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

    def hurry(self) -> None:
        """A flush running now ends at once; a close within ``shutdown_timeout``."""

    def close_by_own_deadline(self) -> None:
        """Close within ``shutdown_timeout``."""

    def abandon(self) -> None:
        """Spool or count at once whatever delivery has not settled."""

#: Environment variable that turns the SIGTERM handler off (0, false, no, off).
ENVIRONMENT_SWITCH = "IMPACTAGENT_HANDLE_SIGTERM"

_started: weakref.WeakSet[Closing] = weakref.WeakSet()
_guard = threading.Lock()
_installed = False
#: Per thread: the flushes and closes in progress (``depth``) and, on the main thread where
#: the handler runs, whether a SIGTERM waits for them to end (``deferred``).
_local = threading.local()
_ending = threading.Event()  # the handler is closing everything: a second SIGTERM waits
#: How long the end waits for an agent's stuck state to be spooled or counted.
_ABANDON_SECONDS = 1.0


def handler_allowed() -> bool:
    """False when the environment turns the handler off."""
    value = os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def enroll(lifecycle: Closing) -> bool:
    """Close ``lifecycle`` on SIGTERM; install the handler if this is the main thread and
    SIGTERM has its default disposition. Returns True if the handler is ours."""
    global _installed
    with _guard:
        _started.add(lifecycle)
        if _installed:
            return signal.getsignal(signal.SIGTERM) is _on_sigterm
        if threading.current_thread() is not threading.main_thread():
            return False  # signal.signal() works in the main thread only
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False  # the app's own handler, or SIG_IGN: theirs to keep
        if multiprocessing.parent_process() is not None:
            return False  # see leave_to_multiprocessing()
        signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True
        return True


def leave_to_multiprocessing() -> None:
    """In a ``multiprocessing`` child: give SIGTERM back its default action.

    A Pool worker waits for its task in a semaphore that a signal does not always interrupt,
    so a Python handler may never run and ``Pool.terminate()`` would wait for good. A child
    dies of SIGTERM as without the agent; one that ends normally closes through
    multiprocessing's exit hooks (see :mod:`.lifecycle`).
    """
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def withdraw(lifecycle: Closing) -> None:
    """Forget a closed lifecycle (the handler stays: other agents may still run)."""
    with _guard:
        _started.discard(lifecycle)


@contextlib.contextmanager
def deferring() -> Iterator[None]:
    """Mark a flush or a close in progress on this thread: a SIGTERM that interrupts it
    waits for it (cut short) to end, instead of ending the process in its middle with the
    body it holds (see :func:`_on_sigterm`)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        # Only the thread the SIGTERM interrupted ends the process: another thread's flush,
        # cut short and ending first, can neither put the disposition back nor let the main
        # thread go on as if no SIGTERM had come.
        if _local.depth == 0 and getattr(_local, "deferred", False):
            _close_all_and_end()  # the SIGTERM this close deferred: now for every agent


def _on_sigterm(signum: int, frame: Optional[Any]) -> None:
    if getattr(_local, "depth", 0):
        # The signal interrupted a flush or a close on this very thread (a multiprocessing
        # child closing at its end when Pool.terminate() sends SIGTERM, say): a close on
        # another thread would wait for what this thread holds. Cut it short, let it finish
        # and settle what it holds, then close every agent and end.
        _local.deferred = True
        for target in list(_started):
            target.hurry()
        return
    _close_all_and_end()


def _close_all_and_end() -> None:
    """Close every started agent, all at once and each within its ``shutdown_timeout``, then
    end; what an agent still holds by then is spooled or counted at once.
    """
    if _ending.is_set():
        # A second SIGTERM (a group kill and a forwarded one, say) interrupted the first's
        # closing on this thread: the first goes on and ends the process.
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
        # Every agent, not only those whose closer is still running: a close already
        # running on another thread (the app's, or one an earlier SIGTERM began) may
        # outlast the closer that gave up waiting for it. Abandoning an agent whose close
        # has ended does nothing.
        late = [_start(target.abandon) for target in targets]
        for abandoning in late:
            if abandoning is not None:
                abandoning.join(_ABANDON_SECONDS)
        _end_as_sigterm()
    finally:  # reached only when cut short (Ctrl-C): a later SIGTERM is handled anew
        _ending.clear()


def _start(work: Callable[[], object]) -> Optional[threading.Thread]:
    """``work`` on a thread of its own; done on this one (None) at the interpreter's exit,
    where Python 3.12 starts no thread (a SIGTERM deferred by the exit's close)."""
    try:
        return start_daemon(work, "impactagent-sigterm")
    except RuntimeError:
        work()
        return None


def _end_as_sigterm() -> None:
    """End as SIGTERM would have: the default disposition, and the signal again."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)  # not reached: the default action ends the process


def _reset_after_fork() -> None:
    """A forked child starts with no close in progress, no deferred signal, and a guard no
    other thread holds (the handler itself is inherited, as it should be)."""
    global _guard, _local, _ending
    _guard = threading.Lock()
    _local = threading.local()
    _ending = threading.Event()


os.register_at_fork(after_in_child=_reset_after_fork)
