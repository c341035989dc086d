"""The one way the agent starts a thread: blocking SIGTERM and SIGINT, which the kernel
could otherwise hand to it, leaving the app's handler unrun."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
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
