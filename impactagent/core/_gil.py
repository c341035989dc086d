"""Whether one C call runs whole on this interpreter, decided once at import: with the GIL,
``next()`` on an ``itertools.count`` is atomic, so recording advances counts without a lock; a
free-threaded build makes no such promise, even with the GIL switched back on."""

from __future__ import annotations

import itertools
import sys
import sysconfig
import threading
from typing import Callable, Iterator

#: True where ``next()`` on an ``itertools.count`` runs whole (every build with the GIL).
ATOMIC_C_CALLS = (not sysconfig.get_config_var("Py_GIL_DISABLED")
                  and bool(getattr(sys, "_is_gil_enabled", lambda: True)()))


class LockedCount:
    """``itertools.count()`` with ``next()`` under a lock, for builds without the GIL."""

    __slots__ = ("_lock", "_next")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        with self._lock:
            taken = self._next
            self._next = taken + 1
        return taken

    def __repr__(self) -> str:
        with self._lock:
            return f"count({self._next})"


#: The count a flag evaluation advances: one atomic ``next()`` on any build.
Count: Callable[[], Iterator[int]] = itertools.count if ATOMIC_C_CALLS else LockedCount
