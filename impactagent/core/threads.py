"""The one way the agent starts a thread: blocking SIGTERM and SIGINT, which the kernel
could otherwise hand to it, leaving the app's handler unrun; and the one way it hooks an
object into the process's fork and exit without keeping it alive."""

from __future__ import annotations

import signal
import threading
import weakref
from typing import Any, Callable

_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def start_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start ``target(*args)`` on a daemon thread that leaves SIGTERM and SIGINT to the app
    (``RuntimeError`` at interpreter exit)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return thread
    # A signal arriving meanwhile stays pending until unblocked.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    return thread


def weak_hook(method: Callable[[], Any]) -> Callable[[], None]:
    """A hook (at fork, at exit) that calls the bound ``method`` while its object still
    exists: a hook held by the interpreter must not keep the object alive."""
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        bound = ref()
        if bound is not None:
            bound()
    return hook
