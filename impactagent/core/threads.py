"""The one way the agent starts a thread of its own.

The kernel hands a process-directed signal to any thread that does not block it; one
handed to an agent thread while the main thread waits where only that signal would wake it
leaves the app's handler unrun. So every agent thread is born blocking SIGTERM and SIGINT.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start ``target(*args)`` on a daemon thread that leaves SIGTERM and SIGINT to the app.

    Raises ``RuntimeError`` where no thread can be started (at interpreter exit)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return thread
    # Blocked here for the moment of the start: a signal arriving meanwhile stays pending
    # and reaches this thread (or another of the app's) when it is unblocked.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    return thread
