"""The one way the agent starts a thread of its own.

The kernel hands a process-directed signal (SIGTERM, SIGINT) to any thread that does not
block it. One handed to an agent thread while the main thread waits in a call that only the
signal would interrupt (a multiprocessing worker waiting on its queue's lock) leaves the
app's handler unrun and the process running. So every agent thread blocks both first, and
the app's threads get them, as in a process without the agent.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start ``target(*args)`` on a daemon thread that leaves SIGTERM and SIGINT to the app.

    Raises ``RuntimeError`` where no thread can be started (at interpreter exit)."""
    thread = threading.Thread(target=_without_signals, args=(target, *args), name=name,
                              daemon=True)
    thread.start()
    return thread


def _without_signals(target: Callable[..., Any], *args: Any) -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    target(*args)
