"""Logging across ``fork()``: no handler is caught mid-write when a process forks.

A thread inside a handler's ``emit`` at the fork leaves the child that stream's lock held
for good (``logging`` renews handler locks in a child, not their streams'), and the child
hangs. So the forking thread holds every handler the agent logs through for the moment.
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
    held = []
    for handler in handlers_of(logging.getLogger("impactagent")):
        if handler.lock is not None:
            handler.acquire()
            held.append(handler)
    _held[:] = held


def release_handlers() -> None:
    for handler in reversed(_held):
        with contextlib.suppress(RuntimeError):  # the child's logging may have renewed it
            handler.release()
    _held.clear()


os.register_at_fork(before=hold_handlers, after_in_parent=release_handlers,
                    after_in_child=release_handlers)
