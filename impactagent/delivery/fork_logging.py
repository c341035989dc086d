"""Logging across ``fork()``: no handler is caught mid-write when a process forks.

A log handler writes through a stream with a lock of its own (the ``BufferedWriter`` of a
``FileHandler``, say). If another thread is inside a handler's ``emit`` at the moment of
``fork()``, the child inherits that stream's lock held by a thread that does not exist
there: the child's next log line through that handler waits forever, and so does its exit
(``logging.shutdown`` flushes every handler). The agent's own threads log (a registration
that failed, a server that is down), so an app that forks while they do (gunicorn,
multiprocessing, a bare ``os.fork()``) could leave a worker hung on its first warning.
``logging`` renews each handler's lock in the child, but not the stream's.

So, just before a fork, the forking thread takes the lock of every handler the agent's
logger (``impactagent``) writes through, its ancestors' included: a thread inside ``emit``
finishes its line first, and no other thread can start one until the fork is done. The
parent then releases them; in the child, ``logging`` has made them anew (or, where it has
not yet, they are released). Registered once, at import.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import List, Optional

_held: List[logging.Handler] = []


def handlers_of(logger: logging.Logger) -> List[logging.Handler]:
    """Every handler a record logged on ``logger`` reaches (ancestors while propagating)."""
    found: List[logging.Handler] = []
    current: Optional[logging.Logger] = logger
    while current is not None:
        found.extend(h for h in current.handlers if h not in found)
        if not current.propagate:
            break
        current = current.parent
    return found


def hold_handlers() -> None:
    """Before a fork: hold the lock of every handler the agent logs through."""
    held = []
    for handler in handlers_of(logging.getLogger("impactagent")):
        if handler.lock is not None:
            handler.acquire()
            held.append(handler)
    _held[:] = held


def release_handlers() -> None:
    """After a fork (parent and child): let the handlers go again."""
    for handler in reversed(_held):
        # In the child, logging may already have made this handler's lock anew.
        with contextlib.suppress(RuntimeError):
            handler.release()
    _held.clear()


os.register_at_fork(before=hold_handlers, after_in_parent=release_handlers,
                    after_in_child=release_handlers)
